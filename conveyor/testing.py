"""Conformance checks that third-party code can run too: ``check_flavor`` holds a model flavor to the bundle's contract.

from conveyor.testing import check_flavor

def test_my_flavor(tmp_path):
    check_flavor(model, raw_rows, transform_graph=graph_dir, label="label", tmp_path=tmp_path)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.exceptions import ServingError
from conveyor.model.bundle import read_manifest
from conveyor.model.loading import LoadedModel, load_model
from conveyor.model.saving import save
from conveyor.transform.fitted import load

__all__ = ["check_flavor"]

_TASK_OUTPUTS = {"binary": {"probability", "class"}, "multiclass": {"probabilities", "class"}, "regression": {"value"}}

# Runs in a fresh interpreter: loads the bundle with pickle's loaders disabled (unless the
# bundle was saved with allow_pickle), predicts the rows, and writes the outputs as .npz.
_CHILD = textwrap.dedent(
    """
    import json, pickle, sys
    import numpy as np
    args = json.loads(sys.argv[1])
    if not args["allow_pickle"]:
        def refuse(*_, **__):
            raise AssertionError("the bundle was unpickled, though it was saved without allow_pickle")
        pickle.load = pickle.loads = refuse
    from conveyor.model import load_model
    if args["rows_format"] == "json":
        with open(args["rows"]) as f:
            rows = json.load(f)
    else:
        import pyarrow as pa
        rows = pa.ipc.open_file(args["rows"]).read_all()
    model = load_model(args["bundle"], trusted=args["trusted"], allow_pickle=args["allow_pickle"])
    out = model.predict(rows)
    np.savez(args["out"], **{k: v.astype(str) if v.dtype == object else v for k, v in out.items()})
    """
)


def check_flavor(
    model: Any,
    rows: Any,
    *,
    transform_graph: Any,
    label: str | None,
    task: str | None = None,
    tmp_path: str | Path | None = None,
    trusted: Iterable[str] = (),
    allow_pickle: bool = False,
) -> LoadedModel:
    """Save ``model`` as a bundle and check what every flavor must hold to.

    The bundle loads in a fresh Python process and predicts ``rows`` (raw records, through
    the bundled transform graph) exactly as the in-memory model does, every output
    ``np.array_equal``; and it is refused, naming the file, when any listed file has one
    byte changed. Returns the bundle loaded in this process. The bundle is written under
    ``tmp_path``, or in a temporary folder removed afterwards.

    Raises:
        AssertionError: saying which check failed and how.
    """
    trusted = list(trusted)
    root = Path(tempfile.mkdtemp(prefix="check_flavor-", dir=tmp_path))
    try:
        return _check(model, rows, root, transform_graph, label, task, trusted, allow_pickle)
    finally:
        if tmp_path is None:
            shutil.rmtree(root, ignore_errors=True)


def _check(
    model: Any,
    rows: Any,
    root: Path,
    transform_graph: Any,
    label: str | None,
    task: str | None,
    trusted: list[str],
    allow_pickle: bool,
) -> LoadedModel:
    path = save(
        model, path=root / "bundle", transform_graph=transform_graph, label=label, task=task, allow_pickle=allow_pickle
    )
    manifest = read_manifest(path)
    graph = load(path / manifest["transform_graph"])
    expected = LoadedModel(path, manifest, model, graph).predict(rows)
    names = _TASK_OUTPUTS[manifest["task"]]
    assert set(expected) == names, f"a {manifest['task']} model must give {sorted(names)}, gave {sorted(expected)}"
    n = _count(rows)
    for name, value in expected.items():
        assert len(value) == n, f"output {name!r} has {len(value)} entries for {n} rows"

    child, out = _start_fresh_process(path, rows, root, trusted, allow_pickle)  # runs while this one checks
    try:
        loaded = load_model(path, trusted=trusted, allow_pickle=allow_pickle)
        _assert_same(expected, loaded.predict(rows), "the bundle loaded in this process")
        for relative in manifest["files"]:
            _assert_tamper_refused(path, relative, root, trusted, allow_pickle)
    finally:
        _, stderr = child.communicate(timeout=300)
    assert child.returncode == 0, f"loading and predicting in a fresh process failed:\n{stderr[-3000:]}"
    with np.load(out, allow_pickle=False) as saved:
        _assert_same(expected, {name: saved[name] for name in saved.files}, "the bundle loaded in a fresh process")
    return loaded


def _count(rows: Any) -> int:
    if hasattr(rows, "num_rows"):
        return int(rows.num_rows)
    if isinstance(rows, Mapping):
        return len(next(iter(rows.values())))
    return len(rows)


def _start_fresh_process(
    path: Path, rows: Any, root: Path, trusted: list[str], allow_pickle: bool
) -> tuple[subprocess.Popen[str], Path]:
    rows_file, rows_format = _write_rows(rows, root)
    out = root / "fresh_outputs.npz"
    args = {
        "bundle": str(path),
        "rows": str(rows_file),
        "rows_format": rows_format,
        "out": str(out),
        "trusted": trusted,
        "allow_pickle": allow_pickle,
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    command = [sys.executable, "-c", _CHILD, json.dumps(args)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env), out


def _write_rows(rows: Any, root: Path) -> tuple[Path, str]:
    """The rows as JSON when they are plain Python values (as a request sends them), else Arrow IPC."""
    try:
        text = json.dumps(rows)
    except TypeError:
        import pyarrow as pa

        table = rows if isinstance(rows, pa.Table) else pa.table(rows)
        path = root / "rows.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        return path, "arrow"
    path = root / "rows.json"
    path.write_text(text)
    return path, "json"


def _assert_same(expected: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], where: str) -> None:
    assert set(got) == set(expected), f"{where} gave outputs {sorted(got)}, the in-memory model {sorted(expected)}"
    for name, want in expected.items():
        want = want.astype(str) if want.dtype == object else want
        value = got[name].astype(str) if got[name].dtype == object else got[name]
        same = np.array_equal(want, value, equal_nan=want.dtype.kind == "f")
        assert same, f"{where} predicts {name!r} differently from the in-memory model:\n{value[:5]!r}\nvs\n{want[:5]!r}"


def _assert_tamper_refused(path: Path, relative: str, root: Path, trusted: list[str], allow_pickle: bool) -> None:
    copy = root / "tampered"
    shutil.copytree(path, copy)
    try:
        target = copy / relative
        data = bytearray(target.read_bytes())
        if data:
            data[len(data) // 2] ^= 0x01
        else:
            data.append(0)
        target.write_bytes(bytes(data))
        error = _load_error(copy, trusted, allow_pickle)
    finally:
        shutil.rmtree(copy)
    if error is None:
        msg = f"a bundle with one byte of {relative} changed was loaded; it must be refused"
        raise AssertionError(msg)
    if relative not in error:
        msg = f"a bundle with {relative} changed was refused, but the error does not name it: {error}"
        raise AssertionError(msg)


def _load_error(path: Path, trusted: list[str], allow_pickle: bool) -> str | None:
    """The message ``load_model`` refuses the bundle with, or None when it loads."""
    try:
        load_model(path, trusted=trusted, allow_pickle=allow_pickle)
    except ServingError as e:
        return str(e)
    return None
