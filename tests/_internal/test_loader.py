"""The one loader of a user's file: its errors name the user's line, ``sys.path`` stays as it was,
the file imports its neighbours at its top and later inside its functions, code elsewhere does
not see them, and loads in several threads at once each get their own whole module.
"""

from __future__ import annotations

import importlib
import sys
import threading
import uuid
from pathlib import Path

import pytest

from conveyor._internal.discovered import collecting
from conveyor._internal.loader import load_file, load_step_module
from conveyor.exceptions import ConveyorError, TransformError


def project(folder: Path, main: str, **neighbours: str) -> Path:
    """A folder with ``main.py`` and the neighbour modules given as name=source."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in neighbours.items():
        (folder / f"{name}.py").write_text(source)
    (folder / "main.py").write_text(main)
    return folder / "main.py"


def unique(stem: str) -> str:
    return f"{stem}_{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = 1\ndef f(:\n    pass\n", "{path}:2: the module file does not parse: invalid syntax. Fix it and run again."),
        ("x = 1\n\nraise KeyError('columns')\n", "{path}:3: importing the module file raised KeyError: 'columns'"),
        ("import os\nimport {missing}\n", "{path}:2: importing the module file raised ModuleNotFoundError: No module named '{missing}'"),
    ],
)
def test_an_error_names_the_users_file_and_line(tmp_path: Path, source: str, message: str) -> None:
    missing = unique("nothing")
    path = project(tmp_path, source.format(missing=missing))
    with pytest.raises(TransformError) as e:
        load_file(str(path), name=unique("m"), what="module file", error=TransformError)
    assert str(e.value) == message.format(path=path, missing=missing)


def test_an_error_in_a_neighbour_names_the_line_that_imported_it(tmp_path: Path) -> None:
    helper = unique("helper")
    path = project(tmp_path, f"import os\nimport {helper}\n", **{helper: "x = 1\nraise ValueError('bad helper')\n"})
    with pytest.raises(ConveyorError, match=r"main\.py:2: importing the pipeline file raised ValueError: bad helper"):
        load_file(str(path), name=unique("m"), what="pipeline file", error=ConveyorError)


def test_a_missing_file_is_named_with_where_it_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ConveyorError, match=r"^Pipeline file 'nope\.py' does not exist \(looked for /"):
        load_file("nope.py", name=unique("m"), what="pipeline file", error=ConveyorError)


def test_neighbours_are_imported_at_the_top_and_inside_functions_with_sys_path_unchanged(tmp_path: Path) -> None:
    top, inside = unique("top"), unique("inside")
    main = f"import {top}\n\ndef later():\n    import {inside}\n    return {top}.VALUE + {inside}.VALUE\n"
    path = project(tmp_path, main, **{top: "VALUE = 1\n", inside: "VALUE = 2\n"})
    before = list(sys.path)
    module = load_file(str(path), name=unique("m"), what="module file", error=ConveyorError).module
    assert sys.path == before
    assert module.later() == 3  # the import inside the function runs now, after the load
    assert sys.path == before


def test_code_outside_the_folder_does_not_see_its_modules(tmp_path: Path) -> None:
    hidden = unique("hidden")
    path = project(tmp_path, f"def get():\n    import {hidden}\n    return {hidden}.VALUE\n", **{hidden: "VALUE = 7\n"})
    module = load_file(str(path), name=unique("m"), what="module file", error=ConveyorError).module
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(hidden)
    assert module.get() == 7


def test_modules_loaded_in_threads_at_once_are_each_whole(tmp_path: Path) -> None:
    count = 8
    barrier = threading.Barrier(count)
    results: dict[int, object] = {}
    paths = []
    for i in range(count):
        helper = unique(f"helper{i}")
        main = f"import {helper}\n\ndef value():\n    return {helper}.VALUE\n"
        paths.append(project(tmp_path / f"p{i}", main, **{helper: f"VALUE = {i}\n"}))
    before = list(sys.path)

    def load(i: int) -> None:
        barrier.wait()
        try:
            results[i] = load_file(str(paths[i]), name=unique("m"), what="module file", error=ConveyorError).module.value()
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=load, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: i for i in range(count)}
    assert sys.path == before


def test_a_step_module_declares_its_neighbours_and_forgets_one_once_edited(tmp_path: Path) -> None:
    helper = unique("helper")
    path = project(tmp_path, f"def value():\n    from {helper} import VALUE\n    return VALUE\n", **{helper: "VALUE = 1\n"})
    with collecting() as declared:
        loaded = load_step_module(str(path), what="module file", error=TransformError)
    assert list(declared) == [str(tmp_path / f"{helper}.py")]
    assert loaded.module.value() == 1
    (tmp_path / f"{helper}.py").write_text("VALUE = 22\n")
    again = load_step_module(str(path), what="module file", error=TransformError)
    assert again.module.value() == 22


def test_two_projects_each_import_their_own_neighbour_of_the_same_name(tmp_path: Path) -> None:
    # Both have a settings module: the second project must not get the first one's from sys.modules.
    name = unique("settings")
    main = f"import {name}\n\nVALUE = {name}.VALUE\n"
    first = project(tmp_path / "one", main, **{name: "VALUE = 1\n"})
    second = project(tmp_path / "two", main, **{name: "VALUE = 2\n"})
    values = [load_step_module(str(p), what="module file", error=TransformError).module.VALUE for p in (first, second)]
    assert values == [1, 2]


def test_a_module_object_naming_a_relative_file_is_not_taken_for_the_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch makes ``torch.ops`` a module object whose ``__file__`` is ``_ops.py``: no file of the user's."""
    import types

    package = unique("lib")
    fake = types.ModuleType(f"{package}.ops")
    fake.__file__ = "_ops.py"
    parent = types.ModuleType(package)
    parent.ops = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, package, parent)
    monkeypatch.setitem(sys.modules, f"{package}.ops", fake)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "_ops.py").write_text("")  # even with such a file in the working folder
    path = project(tmp_path / "project", f"from {package} import ops\n\ndef run():\n    return ops\n")
    with collecting() as declared:
        load_step_module(str(path), what="module file", error=TransformError)
    assert list(declared) == []
