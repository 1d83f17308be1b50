"""Cache keys: a step is not run again when nothing it depends on has changed (DESIGN 6).

key = sha256 of the component type, its code fingerprint (for conveyor's own components, salted
with conveyor's version: their code reaches modules the fingerprint does not follow), its parameters
as JSON (a config object as ``conveyor.dsl.parameters`` writes it: an equal object, the same key), the content
fingerprints of its input artifacts with their properties (a step may read only ``.properties``, an
accuracy written there and no file: two such inputs differ there alone), and the content of every file a ``FilePath`` parameter
names (at an fsspec URL, what the store says of each file: size, mtime, etag), with the
user's modules that a named module file imports. So an edited module, helper or schema file
is never served stale from cache. The code fingerprint follows the user's modules the
executor reaches, and is made anew for every key.

Files a step finds only while it runs (an ONNX model a Transform module names) cannot be in
the key, which is computed before: the step declares them with ``conveyor.depends_on_file``,
the runner records their sha256 with the execution, and ``find_cached`` reuses it only while
every one is unchanged (``conveyor._internal.discovered``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from conveyor._internal.fingerprint import parameter_file_fingerprint
from conveyor._internal.record_limit import dumps
from conveyor.artifacts import Artifact
from conveyor.dsl.component import Node


def code_fingerprint(node: Node) -> str:
    """The step's code as its cache key and its record hold it (see the module docstring)."""
    code = node.spec.code_fingerprint()
    if not node.spec.type_name.startswith("conveyor."):
        return code
    from conveyor._version import __version__

    return hashlib.sha256(f"{code}\0conveyor {__version__}".encode()).hexdigest()


def cache_key(node: Node, inputs: Mapping[str, Sequence[Artifact]], code: str | None = None) -> str:
    """The step's cache key; ``code``, when given, is its ``code_fingerprint`` already made."""
    files = {  # the files the executor reads; the key keeps the names as written
        name: parameter_file_fingerprint(str(node.resolved_path(name)))
        for name, spec in node.spec.parameters.items()
        if spec.names_file and node.parameters.get(name)
    }
    payload = {
        "type": node.spec.type_name,
        "code": code_fingerprint(node) if code is None else code,
        "parameters": node.parameters,
        "inputs": {k: [_content(a) for a in v] for k, v in sorted(inputs.items())},
        "files": files,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _content(artifact: Artifact) -> str | list[str | None]:
    """What an input artifact holds: its files' fingerprint, and its properties if it has any (a
    step may read only an accuracy written there). An artifact without properties keeps the key
    it had before they joined it, so a store's cache outlives that change."""
    return [artifact.fingerprint, dumps(artifact.properties)] if artifact.properties else artifact.fingerprint

