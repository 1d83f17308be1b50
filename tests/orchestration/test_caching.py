"""Caching by content: what changed runs again, with everything after it, and nothing before."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor import Output, Pipeline, component
from conveyor.artifacts import Examples
from conveyor.metadata import MetadataStore
from tests.helpers import copy_fixture, run_cli


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    return copy_fixture("chain.py", tmp_path)


def run_chain(chain: Path, *extra: str) -> dict[str, str]:
    """Run the chain by the CLI; return each step's status in that run."""
    root = chain.parent / "root"
    done = run_cli("run", str(chain), "--root", str(root), *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    with MetadataStore(f"sqlite:///{root / 'metadata.sqlite'}") as store:
        last = store.runs("chain")[0]
        return {k: x.status for k, x in store.run(last.id).executions.items()}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_same_inputs_are_cached(chain: Path) -> None:
    assert run_chain(chain) == {"first": "succeeded", "second": "succeeded", "third": "succeeded"}
    assert run_chain(chain) == {"first": "cached", "second": "cached", "third": "cached"}


def test_changed_parameter_reruns_that_step_and_downstream_only(chain: Path) -> None:
    run_chain(chain)
    edit(chain, "factor=2)", "factor=3)")
    assert run_chain(chain) == {"first": "cached", "second": "succeeded", "third": "succeeded"}


def test_changed_function_body_reruns(chain: Path) -> None:
    run_chain(chain)
    edit(chain, "[x * factor for x in numbers]", "[x * factor + 1 for x in numbers]")
    assert run_chain(chain) == {"first": "cached", "second": "succeeded", "third": "succeeded"}


def test_body_change_with_same_output_leaves_downstream_cached(chain: Path) -> None:
    run_chain(chain)
    edit(chain, "[x * factor for x in numbers]", "[factor * x for x in numbers]")
    assert run_chain(chain) == {"first": "cached", "second": "succeeded", "third": "cached"}


def test_changed_helper_the_step_calls_reruns_it(chain: Path) -> None:
    run_chain(chain)
    edit(chain, '(out / "COMPLETE").write_text("yes")', '(out / "COMPLETE").write_text("done")')
    assert run_chain(chain) == {"first": "succeeded", "second": "succeeded", "third": "succeeded"}


def test_edit_elsewhere_in_the_file_keeps_the_cache(chain: Path) -> None:
    run_chain(chain)
    edit(chain, "return 1", "return 2")
    assert run_chain(chain) == {"first": "cached", "second": "cached", "third": "cached"}


def test_edited_file_named_by_a_parameter_reruns(chain: Path) -> None:
    run_chain(chain)
    (chain.parent / "notes.txt").write_text("a longer note than before\n")
    assert run_chain(chain) == {"first": "cached", "second": "cached", "third": "succeeded"}


def test_no_cache_runs_everything(chain: Path) -> None:
    run_chain(chain)
    assert run_chain(chain, "--no-cache") == {"first": "succeeded", "second": "succeeded", "third": "succeeded"}


def test_cached_step_reuses_the_same_artifacts(chain: Path) -> None:
    run_chain(chain)
    run_chain(chain)
    with MetadataStore(f"sqlite:///{chain.parent / 'root' / 'metadata.sqlite'}") as store:
        new, old = (store.run(r.id) for r in store.runs("chain"))
        assert new.executions["third"].outputs["report"][0].id == old.executions["third"].outputs["report"][0].id
        assert new.executions["third"].cached_from == old.executions["third"].id
        assert len(store.artifacts(pipeline="chain")) == 3


# --- what a step depends on beyond its own file: remote inputs, and the user's other modules ---


def example_gen_rows(tmp_path: Path, input_base: str) -> tuple[str, list[int]]:
    """Run ExampleGen alone in this process; its status and the sorted values of column x."""
    from conveyor.components.example_gen import ExampleGen

    run = Pipeline("remote", [ExampleGen(input_base)], root=tmp_path / "root").run()
    ex = run.executions["ExampleGen"]
    assert ex.status in ("succeeded", "cached"), ex.error
    uri = Path(ex.outputs["examples"][0].uri)
    return ex.status, sorted(x for part in uri.glob("Split-*/*.parquet") for x in pq.read_table(part)["x"].to_pylist())


@pytest.fixture
def memory_base() -> Iterator[str]:
    import fsspec

    folder = f"/caching-{uuid.uuid4().hex}"
    yield folder
    fsspec.filesystem("memory").rm(folder, recursive=True)


def test_example_gen_on_a_memory_url_reruns_when_a_file_is_added_or_replaced(tmp_path: Path, memory_base: str) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe(f"{memory_base}/a.csv", b"x,y\n1,a\n2,b\n")
    url = f"memory://{memory_base}"
    assert example_gen_rows(tmp_path, url) == ("succeeded", [1, 2])
    assert example_gen_rows(tmp_path, url) == ("cached", [1, 2])
    fs.pipe(f"{memory_base}/b.csv", b"x,y\n3,c\n")
    assert example_gen_rows(tmp_path, url) == ("succeeded", [1, 2, 3])
    fs.pipe(f"{memory_base}/a.csv", b"x,y\n5,a\n6,b\n")  # the same size
    assert example_gen_rows(tmp_path, url) == ("succeeded", [3, 5, 6])
    assert example_gen_rows(tmp_path, url) == ("cached", [3, 5, 6])


def test_example_gen_on_a_file_url_reruns_when_a_file_is_replaced(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("x,y\n1,a\n2,b\n")
    assert example_gen_rows(tmp_path, data.as_uri()) == ("succeeded", [1, 2])
    assert example_gen_rows(tmp_path, data.as_uri()) == ("cached", [1, 2])
    (data / "a.csv").write_text("x,y\n7,a\n8,b\n")
    assert example_gen_rows(tmp_path, data.as_uri()) == ("succeeded", [7, 8])


MODULES_PIPELINE = """\
from pathlib import Path

import {lib}
from {lib}.text import normalize

from conveyor import Output, Pipeline, component
from conveyor.artifacts import Artifact


@component
def by_name(report: Output[Artifact]) -> None:
    (Path(report.uri) / "out.txt").write_text(normalize("Hello"))


@component
def by_attribute(report: Output[Artifact]) -> None:
    (Path(report.uri) / "out.txt").write_text({lib}.text.normalize("Hello"))


@component
def imports_inside(report: Output[Artifact]) -> None:
    from {helpers} import shout

    (Path(report.uri) / "out.txt").write_text(shout("Hello"))


pipeline = Pipeline(name="modules", components=[by_name(), by_attribute(), imports_inside()])
"""


def run_modules(pipeline: Path) -> dict[str, tuple[str, str]]:
    """Run by the CLI; each step's status and what it wrote."""
    root = pipeline.parent / "root"
    done = run_cli("run", str(pipeline), "--root", str(root))
    assert done.returncode == 0, done.stdout + done.stderr
    with MetadataStore(f"sqlite:///{root / 'metadata.sqlite'}") as store:
        executions = store.run(store.runs("modules")[0].id).executions
        return {k: (x.status, (Path(x.outputs["report"][0].uri) / "out.txt").read_text()) for k, x in executions.items()}


def test_an_edit_to_a_module_of_the_users_that_a_step_calls_reruns_it(tmp_path: Path) -> None:
    """By a name imported at the top of the pipeline file, by ``module.attribute``, or by an
    import inside the step's body; an edit to a module none of them uses keeps the cache.
    """
    lib, helpers = f"lib_{uuid.uuid4().hex[:8]}", f"helpers_{uuid.uuid4().hex[:8]}"
    (tmp_path / lib).mkdir()
    (tmp_path / lib / "__init__.py").write_text("")
    (tmp_path / lib / "text.py").write_text("from .words import suffix\n\n\ndef normalize(s):\n    return s.lower() + suffix\n")
    (tmp_path / lib / "words.py").write_text('suffix = "."\n')
    (tmp_path / lib / "other.py").write_text("X = 1\n")
    (tmp_path / f"{helpers}.py").write_text("def shout(s):\n    return s.upper()\n")
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(MODULES_PIPELINE.format(lib=lib, helpers=helpers))

    assert run_modules(pipeline) == {
        "by_name": ("succeeded", "hello."), "by_attribute": ("succeeded", "hello."), "imports_inside": ("succeeded", "HELLO")
    }
    edit(tmp_path / lib / "other.py", "X = 1", "X = 2")
    assert {k: s for k, (s, _) in run_modules(pipeline).items()} == {
        "by_name": "cached", "by_attribute": "cached", "imports_inside": "cached"
    }
    edit(tmp_path / lib / "words.py", '"."', '"!!"')  # a new size: Python's bytecode cache tells edits by size and second
    assert run_modules(pipeline) == {
        "by_name": ("succeeded", "hello!!"), "by_attribute": ("succeeded", "hello!!"), "imports_inside": ("cached", "HELLO")
    }
    edit(tmp_path / f"{helpers}.py", "s.upper()", "s.upper() + '?'")
    assert run_modules(pipeline) == {
        "by_name": ("cached", "hello!!"), "by_attribute": ("cached", "hello!!"), "imports_inside": ("succeeded", "HELLO?")
    }



TRANSFORM_MODULE = """\
def preprocessing_fn(inputs):
    from {helpers} import scale

    return {{"x_scaled": scale(inputs["x"])}}
"""


@component
def raw(examples: Output[Examples]) -> None:
    for split, xs in {"train": [1.0, 2.0], "eval": [3.0]}.items():
        (Path(examples.uri) / f"Split-{split}").mkdir()
        pq.write_table(pa.table({"x": xs}), Path(examples.uri) / f"Split-{split}" / "part-00000.parquet")


def transform_outputs(tmp_path: Path) -> tuple[str, list[float]]:
    """Run raw data -> ImportSchemaGen -> Transform in this process; Transform's status and x_scaled."""
    from conveyor.components.import_schema_gen import ImportSchemaGen
    from conveyor.components.transform import Transform

    data = raw()
    schema = ImportSchemaGen(schema_file=str(tmp_path / "schema.yaml"))
    transform = Transform(data.outputs["examples"], schema.outputs["schema"], str(tmp_path / "module.py"))
    run = Pipeline("transform", [data, schema, transform], root=tmp_path / "root").run()
    ex = run.executions["Transform"]
    assert ex.status in ("succeeded", "cached"), ex.error
    uri = Path(ex.outputs["transformed_examples"][0].uri)
    return ex.status, sorted(x for part in uri.glob("Split-*/*.parquet") for x in pq.read_table(part)["x_scaled"].to_pylist())


def test_an_edit_to_a_helper_imported_inside_preprocessing_fn_reruns_transform(tmp_path: Path) -> None:
    helpers = f"helpers_{uuid.uuid4().hex[:8]}"
    (tmp_path / "schema.yaml").write_text("features:\n  - {name: x, type: float}\n")
    (tmp_path / "module.py").write_text(TRANSFORM_MODULE.format(helpers=helpers))
    (tmp_path / f"{helpers}.py").write_text(textwrap.dedent("""\
        def scale(x):
            return x * 2
        """))
    (tmp_path / "unrelated.py").write_text("X = 1\n")
    assert transform_outputs(tmp_path) == ("succeeded", [2.0, 4.0, 6.0])
    edit(tmp_path / "unrelated.py", "X = 1", "X = 2")
    assert transform_outputs(tmp_path) == ("cached", [2.0, 4.0, 6.0])
    edit(tmp_path / f"{helpers}.py", "x * 2", "x * 2 + 1")
    assert transform_outputs(tmp_path) == ("succeeded", [3.0, 5.0, 7.0])
    assert transform_outputs(tmp_path) == ("cached", [3.0, 5.0, 7.0])


MODULE_FILE_PIPELINE = """\
import runpy
import sys
from pathlib import Path

from conveyor import FilePath, Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact


@component
def runs_module_file(report: Output[Artifact], *, module_file: Parameter[FilePath]) -> None:
    sys.path.insert(0, str(Path(module_file).parent))
    (Path(report.uri) / "out.txt").write_text(runpy.run_path(module_file)["greet"]("Hello"))


pipeline = Pipeline(name="modules", components=[runs_module_file(module_file=str(Path(__file__).parent / "code" / "steps.py"))])
"""


def test_an_edit_to_a_module_that_a_module_file_parameter_imports_reruns_the_step(tmp_path: Path) -> None:
    """A component of the user's that loads its own ``module_file``: the modules beside it that it
    imports are in the key as the file itself is.
    """
    helpers = f"helpers_{uuid.uuid4().hex[:8]}"
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "steps.py").write_text(f"def greet(s):\n    from {helpers} import shout\n    return shout(s)\n")
    (tmp_path / "code" / f"{helpers}.py").write_text("def shout(s):\n    return s.upper()\n")
    (tmp_path / "code" / "unrelated.py").write_text("X = 1\n")
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(MODULE_FILE_PIPELINE)
    assert run_modules(pipeline) == {"runs_module_file": ("succeeded", "HELLO")}
    edit(tmp_path / "code" / "unrelated.py", "X = 1", "X = 2")
    assert run_modules(pipeline) == {"runs_module_file": ("cached", "HELLO")}
    edit(tmp_path / "code" / f"{helpers}.py", "s.upper()", "s.upper() + '!'")
    assert run_modules(pipeline) == {"runs_module_file": ("succeeded", "HELLO!")}
