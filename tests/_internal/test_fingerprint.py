"""Fingerprints of files (local, or at an fsspec URL) and of the code a step runs: an edit to
what a step depends on changes them, an edit to anything else does not.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from conveyor._internal.fingerprint import MISSING, code_fingerprint, file_fingerprint


def rewrite_keeping_size_and_mtime(path: Path, text: str) -> None:
    st = path.stat()
    assert len(text.encode()) == st.st_size
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns


def test_a_same_size_edit_with_the_mtime_restored_changes_the_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "schema.yaml"
    path.write_text("min: 1\n")
    before = file_fingerprint(path)
    rewrite_keeping_size_and_mtime(path, "min: 2\n")
    assert file_fingerprint(path) != before
    assert file_fingerprint(path) == hashlib.sha256(b"min: 2\n").hexdigest()


def test_a_file_remembered_for_a_while_is_still_read_again_after_such_an_edit(tmp_path: Path) -> None:
    """Past the window where timestamps may not tell two edits apart, the inode's change time does."""
    path = tmp_path / "schema.yaml"
    path.write_text("min: 1\n")
    time.sleep(2.2)
    before = file_fingerprint(path)
    assert file_fingerprint(path) == before
    rewrite_keeping_size_and_mtime(path, "min: 2\n")
    assert file_fingerprint(path) == hashlib.sha256(b"min: 2\n").hexdigest()


@pytest.fixture
def memory_folder() -> Iterator[str]:
    fs = fsspec.filesystem("memory")
    folder = f"/fingerprint-{uuid.uuid4().hex}"
    fs.mkdir(folder)
    yield folder
    fs.rm(folder, recursive=True)


def test_a_memory_url_changes_when_a_file_is_added_or_replaced_by_one_of_the_same_size(memory_folder: str) -> None:
    fs = fsspec.filesystem("memory")
    url = f"memory://{memory_folder}"
    fs.pipe(f"{memory_folder}/a.csv", b"x\n1\n")
    first = file_fingerprint(url)
    assert first not in (MISSING, file_fingerprint(f"memory://{memory_folder}/a.csv"))
    fs.pipe(f"{memory_folder}/b.csv", b"x\n2\n")
    second = file_fingerprint(url)
    assert second != first
    fs.pipe(f"{memory_folder}/a.csv", b"x\n3\n")
    assert file_fingerprint(url) not in (first, second)
    assert file_fingerprint(f"memory://{memory_folder}/nothing-here") == MISSING


def test_a_file_url_is_its_local_path(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    assert file_fingerprint(tmp_path.as_uri()) == file_fingerprint(tmp_path) != MISSING
    assert file_fingerprint((tmp_path / "a.csv").as_uri()) == hashlib.sha256(b"x\n1\n").hexdigest()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A folder on sys.path for a user's modules, and a prefix that keeps their names unique."""
    monkeypatch.syspath_prepend(str(tmp_path))
    prefix = f"m{uuid.uuid4().hex[:8]}"
    yield tmp_path, prefix
    for name in [n for n in sys.modules if n.startswith(prefix)]:
        del sys.modules[name]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def load(folder: Path, name: str, text: str) -> Any:
    write(folder / f"{name}.py", text)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def test_a_helper_imported_inside_the_function_is_followed(project: tuple[Path, str]) -> None:
    folder, p = project
    write(folder / f"{p}_helpers.py", "def clean(x):\n    return x.strip()\n")
    write(folder / f"{p}_unrelated.py", "VALUE = 1\n")
    steps = load(folder, f"{p}_steps", f"""
        def step(x):
            from {p}_helpers import clean
            return clean(x)
        """)
    before = code_fingerprint(steps.step)
    write(folder / f"{p}_unrelated.py", "VALUE = 2\n")
    assert code_fingerprint(steps.step) == before
    write(folder / f"{p}_helpers.py", "def clean(x):\n    return x.strip().lower()\n")
    assert code_fingerprint(steps.step) != before


def test_a_function_of_another_module_is_followed_with_what_that_module_imports(project: tuple[Path, str]) -> None:
    folder, p = project
    write(folder / p / "__init__.py", "")
    write(folder / p / "text.py", "from .words import STOP\n\ndef normalize(s):\n    return s.lower()\n")
    write(folder / p / "words.py", "STOP = ['a']\n")
    write(folder / p / "other.py", "X = 1\n")
    steps = load(folder, f"{p}_steps", f"""
        import {p}.text
        from {p}.text import normalize

        def by_name(s):
            return normalize(s)

        def by_attribute(s):
            return {p}.text.normalize(s)
        """)
    functions = [steps.by_name, steps.by_attribute]
    before = [code_fingerprint(f) for f in functions]
    write(folder / p / "other.py", "X = 2\n")
    assert [code_fingerprint(f) for f in functions] == before
    write(folder / p / "words.py", "STOP = ['a', 'the']\n")
    after = [code_fingerprint(f) for f in functions]
    assert after[0] != before[0] and after[1] != before[1]


def test_a_module_level_constant_the_function_reads_is_in_its_fingerprint(project: tuple[Path, str]) -> None:
    folder, p = project
    steps = load(folder, f"{p}_steps", "LIMIT = 3\nOTHER = 1\n\ndef step(x):\n    return x[:LIMIT]\n")
    before = code_fingerprint(steps.step)
    steps.OTHER = 2
    assert code_fingerprint(steps.step) == before
    steps.LIMIT = 4
    assert code_fingerprint(steps.step) != before


def test_a_decorated_function_or_an_object_of_another_module_is_followed(project: tuple[Path, str]) -> None:
    folder, p = project
    write(folder / f"{p}_lib.py", """
        import functools

        @functools.cache
        def normalize(s):
            return s.lower()

        class Cleaner:
            def __call__(self, s):
                return s.strip()
        """)
    steps = load(folder, f"{p}_steps", f"""
        from {p}_lib import Cleaner, normalize

        clean = Cleaner()

        def by_decorated(s):
            return normalize(s)

        def by_object(s):
            return clean(s)
        """)
    functions = [steps.by_decorated, steps.by_object]
    before = [code_fingerprint(f) for f in functions]
    write(folder / f"{p}_lib.py", (folder / f"{p}_lib.py").read_text().replace("s.strip()", "s.strip(' ')"))
    after = [code_fingerprint(f) for f in functions]
    assert after[0] != before[0] and after[1] != before[1]


FINGERPRINT_IN_A_NEW_PROCESS = """
import json, sys
from conveyor._internal.fingerprint import file_fingerprint

def bytes_read():  # what this process has read through read(2), files of any kind
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])

before = bytes_read()
digest = file_fingerprint(sys.argv[1])
print(json.dumps({"digest": digest, "read": bytes_read() - before}))
"""


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="counts a process's reads in /proc/self/io (Linux)")
def test_a_new_process_takes_an_unchanged_large_file_s_hash_from_a_stat_and_reads_an_edited_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = tmp_path / "input" / "complaints.parquet"
    data.parent.mkdir()
    data.write_bytes(b"a" * (4 << 20))
    time.sleep(2.2)  # past the window where timestamps may not tell two edits apart

    def in_a_new_process() -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-c", FINGERPRINT_IN_A_NEW_PROCESS, str(data.parent)],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(done.stdout)

    first = in_a_new_process()
    assert first["read"] >= 4 << 20
    second = in_a_new_process()
    assert second["digest"] == first["digest"] == file_fingerprint(data.parent)
    assert second["read"] < 1 << 20  # a stat and the small file of kept hashes, not the 4 MiB
    assert (tmp_path / "cache" / "conveyor" / "file-hashes.json").is_file()

    rewrite_keeping_size_and_mtime(data, "b" + "a" * ((4 << 20) - 1))
    time.sleep(2.2)  # so that only the inode's change time tells the edit
    third = in_a_new_process()
    assert third["read"] >= 4 << 20
    assert third["digest"] != first["digest"]
    assert third["digest"] == file_fingerprint(data.parent)


def test_the_kept_hashes_stay_few_and_a_damaged_file_of_them_is_only_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor._internal import fingerprint

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(fingerprint, "_KEEP_MIN_BYTES", 1)
    monkeypatch.setattr(fingerprint, "_KEEP_ENTRIES", 2)
    kept = tmp_path / "cache" / "conveyor" / "file-hashes.json"
    kept.parent.mkdir(parents=True)
    kept.write_text('{"half a')
    files = [tmp_path / f"{name}.csv" for name in "abc"]
    for f in files:
        f.write_text(f"x\n{f.stem}\n")
    time.sleep(2.2)
    for f in files:
        assert file_fingerprint(f) == hashlib.sha256(f.read_bytes()).hexdigest()
    entries = json.loads(kept.read_text())
    assert sorted(entries) == [str(files[1]), str(files[2])]
    assert entries[str(files[2])][5] == hashlib.sha256(b"x\nc\n").hexdigest()


def test_steps_fingerprinting_their_code_at_once_do_not_trip_the_ast_converter() -> None:
    """CPython 3.11 keeps ast.parse's recursion depth per interpreter: two threads converting
    at once, with the garbage collector switching them mid-way, fail with a SystemError."""
    import inspect
    import json.decoder
    import sys
    import threading
    import time

    from conveyor._internal.fingerprint import _imports_of

    source = inspect.getsource(json.decoder).encode() * 8
    errors: list[BaseException] = []

    class Cycle:  # freed by the collector, which runs its __del__ in whichever thread it interrupts
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            time.sleep(0)

    def fingerprint() -> None:
        for _ in range(20):
            junk = [Cycle() for _ in range(300)]
            del junk
            try:
                assert _imports_of(source)
            except SystemError as e:
                errors.append(e)
                return

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=fingerprint) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []



def test_a_parse_that_lost_the_race_to_one_outside_conveyor_is_done_again() -> None:
    """Python 3.11 also parses to format a traceback, in any thread, outside conveyor's lock: a
    fingerprint taken meanwhile (``inspect.getsource`` of a class parses its module) met the
    converter's SystemError once (``conveyor demo``'s rerun, at its Evaluator). That error is
    the race's, not the source's: the parse is done again; any other SystemError is raised."""
    from conveyor._internal.fingerprint import _AST_RACE, _parsed

    lost = iter([SystemError(f"{_AST_RACE} (before=48, after=41)")] * 3)

    def parse_racing() -> ast.Module:
        if (e := next(lost, None)) is not None:
            raise e
        return ast.parse("import json")

    assert isinstance(_parsed(parse_racing), ast.Module)

    def broken() -> None:
        raise SystemError("something else")

    with pytest.raises(SystemError, match="something else"):
        _parsed(broken)
