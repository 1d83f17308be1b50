"""Cache keys: a step is not run again when nothing it depends on has changed (DESIGN 6).

key = sha256 of the component type, its code fingerprint, its parameters, the content
fingerprints of its input artifacts, and the content of every file a ``FilePath`` parameter
names. So an edited module or schema file is never served stale from cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence

from conveyor._internal.fingerprint import hash_path
from conveyor.artifacts import Artifact
from conveyor.dsl.component import Node

_memo: dict[tuple[str, int, int], str] = {}


def file_fingerprint(path: str) -> str:
    """Content hash of a file or folder; remembered per (path, size, mtime) in this process."""
    p = os.path.abspath(path)
    try:
        st = os.stat(p)
    except OSError:
        return "missing"
    if os.path.isdir(p):
        return hash_path(p)
    key = (p, st.st_size, st.st_mtime_ns)
    if key not in _memo:
        _memo[key] = hash_path(p)
    return _memo[key]


def cache_key(node: Node, inputs: Mapping[str, Sequence[Artifact]]) -> str:
    files = {
        name: file_fingerprint(str(node.parameters[name]))
        for name, spec in node.spec.parameters.items()
        if spec.names_file and node.parameters.get(name)
    }
    payload = {
        "type": node.spec.type_name,
        "code": node.spec.code_fingerprint(),
        "parameters": node.parameters,
        "inputs": {k: [a.fingerprint for a in v] for k, v in sorted(inputs.items())},
        "files": files,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
