"""InteractiveContext: steps one at a time, recorded and cached; artifacts that show themselves as static pages."""

from __future__ import annotations

import html
import itertools
import json
import linecache
import re
import sys
import textwrap
import types
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conveyor import Input, Output, component
from conveyor.analysis import EvalConfig, Threshold
from conveyor.artifacts import Artifact, Examples
from conveyor.components import Evaluator, ExampleValidator, SchemaGen, StatisticsGen, Trainer, Transform
from conveyor.exceptions import ComponentError, ConveyorError
from conveyor.interactive import InteractiveContext
from conveyor.metadata import MetadataStore
from conveyor.report import notebook
from tests.fixtures.evaluation_pipeline import HERE, PENGUINS, sexed_penguins


@component
def broken_step(examples: Input[Examples], report: Output[Artifact]) -> None:
    msg = "the report cannot be written"
    raise ValueError(msg)


@component
def after_broken(report: Input[Artifact], summary: Output[Artifact]) -> None:
    """Never runs: the step before it fails."""


@pytest.fixture(scope="module")
def worked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The penguins from rows to an evaluation, a step a call, as a notebook would run them."""
    root = tmp_path_factory.mktemp("interactive") / "root"
    with InteractiveContext(root=root) as context:
        rows = sexed_penguins(csv_file=str(PENGUINS))
        stats = StatisticsGen(examples=rows.outputs["examples"])
        schema = SchemaGen(statistics=stats.outputs["statistics"])
        check = ExampleValidator(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"])
        transform = Transform(rows.outputs["examples"], schema.outputs["schema"], str(HERE / "preprocessing.py"))
        trainer = Trainer(
            module_file=str(HERE / "trainer.py"),
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema.outputs["schema"],
            label_key="sex",
        )
        config = EvalConfig(
            label_key="sex", slicing_specs=[[], ["island"]], thresholds={"auc": Threshold(lower_bound=0.7)}
        )
        evaluator = Evaluator(rows.outputs["examples"], trainer.outputs["model"], eval_config=config)
        steps = [rows, stats, schema, check, transform, trainer, evaluator]
        results = {step.id: context.run(step) for step in steps}
        pages = {
            "statistics": context.show(stats.outputs["statistics"])._repr_html_(),
            "anomalies": context.show(check.outputs["anomalies"])._repr_html_(),
        }
        yield {"root": root, "context": context, "results": results, "steps": steps, "pages": pages}


def _framed_page(fragment: str) -> str:
    """The page inside the fragment's iframe, as the browser reads its srcdoc."""
    found = re.search(r'<iframe srcdoc="([^"]*)"', fragment)
    assert found, fragment[:300]
    return html.unescape(found[1])


def test_each_run_leaves_its_artifacts_and_a_run_in_the_store(worked: dict[str, Any]) -> None:
    results = worked["results"]
    assert [r.status for r in results.values()] == ["succeeded"] * 7
    evaluation = results["Evaluator"].outputs["evaluation"][0]
    assert evaluation.type_name == "ModelEvaluation"
    assert evaluation.state == "LIVE"
    assert (Path(evaluation.uri) / "metrics.json").is_file()
    assert results["Evaluator"].outputs["blessing"][0].properties["blessed"] is True
    with MetadataStore(f"sqlite:///{worked['root'] / 'metadata.sqlite'}") as store:
        runs = store.runs(pipeline="interactive")
        assert len(runs) >= 7
        assert {r.id for r in runs} >= {r.run_id for r in results.values()}
        lineage = store.lineage(evaluation.id)
        assert "Trainer" in {x.component_id for x in lineage.executions.values()}


def test_running_a_cell_again_finds_the_step_in_the_cache(worked: dict[str, Any]) -> None:
    context, results = worked["context"], worked["results"]
    rows = worked["steps"][0]
    again = StatisticsGen(examples=rows.outputs["examples"])  # the cell run again builds the step anew
    result = context.run(again)
    assert result.status == "cached"
    assert result.outputs["statistics"] == results["StatisticsGen"].outputs["statistics"]


def test_a_step_whose_input_has_not_run_here_is_refused_with_its_name(worked: dict[str, Any]) -> None:
    # The store has finished StatisticsGen before, but not in this context: its outputs would be a guess.
    with InteractiveContext(root=worked["root"]) as fresh:
        rows = sexed_penguins(csv_file=str(PENGUINS)).with_id("penguin_rows")
        stats = StatisticsGen(examples=rows.outputs["examples"])
        with pytest.raises(ConveyorError, match=r"StatisticsGen takes its inputs from penguin_rows, which has not run"):
            fresh.run(stats)


def test_a_failed_step_says_why_and_what_follows_it_is_refused(worked: dict[str, Any]) -> None:
    context, rows = worked["context"], worked["steps"][0]
    broken = broken_step(examples=rows.outputs["examples"])
    with pytest.raises(ComponentError, match=r"broken_step failed: ValueError: the report cannot be written"):
        context.run(broken)
    with pytest.raises(ConveyorError, match=r"after_broken takes its inputs from broken_step, which failed"):
        context.run(after_broken(report=broken.outputs["report"]))


@pytest.mark.parametrize(
    ("step", "key", "expected"),
    [
        ("StatisticsGen", "statistics", ["Numeric features", "bill_length_mm", "<svg"]),
        ("SchemaGen", "schema", ["bill_length_mm", "island", "Biscoe"]),
        ("ExampleValidator", "anomalies", ["Anomalies", "No anomalies in train, eval."]),
        ("Evaluator", "evaluation", ["blessed", "island=Biscoe", "auc"]),
    ],
)
def test_an_artifact_shows_its_whole_page_framed_and_static(
    worked: dict[str, Any], step: str, key: str, expected: list[str]
) -> None:
    artifact = worked["results"][step].outputs[key][0]
    fragment = artifact._repr_html_()
    assert fragment.startswith(
        f'<div style="font:13px system-ui,sans-serif;margin:4px 0"><b>{artifact.type_name} {artifact.id}</b>'
    )
    page = _framed_page(fragment)
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    for text in expected:
        assert text in page
    for fetched in ("<script src", "<link ", "http://", "https://", "widget"):
        assert fetched not in page.lower()
        assert fetched not in fragment.split("<iframe", 1)[0].lower()


def test_shown_anomalies_stand_beside_the_statistics_they_were_checked_against(worked: dict[str, Any]) -> None:
    alone = _framed_page(worked["results"]["ExampleValidator"].outputs["anomalies"][0]._repr_html_())
    beside = _framed_page(worked["pages"]["anomalies"])
    assert "Numeric features" not in alone
    assert "Numeric features" in beside
    assert "bill_length_mm" in beside


def test_other_artifacts_show_their_properties(worked: dict[str, Any]) -> None:
    blessing = worked["results"]["Evaluator"].outputs["blessing"][0]
    fragment = blessing._repr_html_()
    assert "<iframe" not in fragment
    assert "blessed" in fragment
    assert "<code>true</code>" in fragment


def test_a_page_too_big_for_a_notebook_names_the_command_that_writes_it(
    worked: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notebook, "MAX_INLINE_CHARS", 1_000)
    statistics = worked["results"]["StatisticsGen"].outputs["statistics"][0]
    fragment = statistics._repr_html_()
    assert "<iframe" not in fragment
    assert f"conveyor show {statistics.id} --html page.html" in fragment


def test_show_takes_a_result_or_a_list_and_refuses_a_channel_not_run_here(worked: dict[str, Any]) -> None:
    context, results = worked["context"], worked["results"]
    assert context.show(results["Transform"]).data.count("<b>") == 2  # transform_graph and transformed_examples
    assert context.show(results["SchemaGen"].outputs["schema"])._repr_html_().count("<iframe") == 1
    unrun = StatisticsGen(examples=sexed_penguins(csv_file=str(PENGUINS)).outputs["examples"])
    with pytest.raises(ConveyorError, match=r"StatisticsGen has not run in this InteractiveContext"):
        context.show(unrun.outputs["statistics"])


def test_show_of_something_not_an_artifact_says_what_it_takes(tmp_path: Path) -> None:
    with InteractiveContext(root=tmp_path / "root") as context:
        with pytest.raises(ConveyorError, match=r"context.show\(\) takes an artifact, .*; got int 1\."):
            context.show([1, 2])
        with pytest.raises(ConveyorError, match=r"got str 'statistics'\."):
            context.show("statistics")  # type: ignore[arg-type]


Cell = Callable[..., None]


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cell:
    """Runs cells as a Jupyter kernel does: in a ``__main__`` with no file, each cell compiled from
    a file named by a hash of its text that is not on disk, its source kept in ``linecache``;
    ``source=False``: as a plain REPL, where no source is kept.
    """
    main = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    count = itertools.count(1)

    def run_cell(text: str, source: bool = True) -> None:
        text = textwrap.dedent(text)
        name = str(tmp_path / f"ipykernel_0/{zlib.crc32(text.encode())}.py") if source else f"<stdin-{next(count)}>"
        if source:
            monkeypatch.setitem(linecache.cache, name, (len(text), None, text.splitlines(True), name))
        exec(compile(text, name, "exec"), main.__dict__)

    return run_cell


IMPORTS_CELL = """
from pathlib import Path
from conveyor import Output, Parameter, component
from conveyor.artifacts import Artifact
"""
WRITE_CELL = textwrap.dedent("""
    @component
    def write(report: Output[Artifact], *, n: Parameter[int] = 1) -> None:
        Path(report.uri).mkdir(parents=True, exist_ok=True)
        (Path(report.uri) / "n.txt").write_text(str(scale(n)))
""")


def _ran(context: InteractiveContext, main: dict[str, Any]) -> tuple[str, str]:
    """(status, what the step wrote) of the cell ``context.run(write())``."""
    result = context.run(main["write"]())
    return result.status, (Path(result.outputs["report"][0].uri) / "n.txt").read_text()


def test_a_step_defined_in_a_notebook_cell_is_cached_while_the_cell_is_edited_elsewhere(
    kernel: Cell, tmp_path: Path
) -> None:
    main = sys.modules["__main__"].__dict__
    kernel(IMPORTS_CELL)
    kernel("def scale(n):\n    return n * 2\n")
    kernel(WRITE_CELL)
    with InteractiveContext(root=tmp_path / "root") as context:
        assert _ran(context, main) == ("succeeded", "2")
        kernel(WRITE_CELL + "print('written')\n")  # the cell's other lines changed, the step did not
        assert main["write"].spec.type_name == "__main__.write"
        assert _ran(context, main) == ("cached", "2")


def test_a_helper_defined_again_in_a_later_cell_runs_the_step_again(kernel: Cell, tmp_path: Path) -> None:
    main = sys.modules["__main__"].__dict__
    kernel(IMPORTS_CELL)
    kernel("def scale(n):\n    return n * 2\n")
    kernel(WRITE_CELL)
    with InteractiveContext(root=tmp_path / "root") as context:
        assert _ran(context, main) == ("succeeded", "2")
        kernel("def scale(n):\n    return n * 3\n")  # the step's cell is not run again
        assert _ran(context, main) == ("succeeded", "3")
        kernel("def scale(n):\n    return n * 3\n")  # the same helper, run again
        assert _ran(context, main) == ("cached", "3")


def test_a_step_made_by_a_factory_is_keyed_by_what_the_factory_was_given(kernel: Cell, tmp_path: Path) -> None:
    main = sys.modules["__main__"].__dict__
    factory = "def make(factor):\n    def scale(n):\n        return n * factor\n"
    kernel(IMPORTS_CELL)
    kernel(factory + textwrap.indent(WRITE_CELL, "    ") + "    return write\n")
    with InteractiveContext(root=tmp_path / "root") as context:
        for factor, expected in [(2, ("succeeded", "2")), (5, ("succeeded", "5")), (2, ("cached", "2"))]:
            main["write"] = main["make"](factor)
            assert _ran(context, main) == expected


def test_a_step_typed_at_a_prompt_with_no_source_kept_runs_again_when_edited(kernel: Cell, tmp_path: Path) -> None:
    main = sys.modules["__main__"].__dict__
    kernel(IMPORTS_CELL, source=False)
    kernel("def scale(n):\n    return n * 2\n", source=False)
    kernel(WRITE_CELL, source=False)
    with InteractiveContext(root=tmp_path / "root") as context:
        assert _ran(context, main) == ("succeeded", "2")
        kernel(WRITE_CELL.replace("str(scale(n))", "str(scale(n) + 1)"), source=False)
        assert _ran(context, main) == ("succeeded", "3")
        kernel(WRITE_CELL.replace("str(scale(n))", "str(scale(n) + 1)"), source=False)
        assert _ran(context, main) == ("cached", "3")


NOTEBOOK = [
    "from conveyor.interactive import InteractiveContext\ncontext = InteractiveContext(root='root')" + IMPORTS_CELL,
    "def scale(n):\n    return n * 2",
    WRITE_CELL + "first = context.run(write()).status",
    WRITE_CELL + "print('the same step, the cell edited below it')\nagain = context.run(write()).status",
    "def scale(n):\n    return n * 3",
    "print(first, again, context.run(write()).status, write.spec.type_name)",
]


def test_a_real_kernel_hits_the_cache_when_nothing_changed_and_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbclient = pytest.importorskip("nbclient", reason="running a notebook needs nbclient (the dev extra)")
    nbformat = pytest.importorskip("nbformat", reason="writing a notebook needs nbformat (the dev extra)")
    pytest.importorskip("ipykernel", reason="running a notebook needs ipykernel (the dev extra)")
    spec = tmp_path / "jupyter" / "kernels" / "conveyor-interactive"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": spec.name, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")

    def printed() -> str:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK])
        resources = {"metadata": {"path": str(tmp_path)}}
        nbclient.NotebookClient(nb, kernel_name=spec.name, timeout=120, resources=resources).execute()
        return "".join(out.get("text", "") for out in nb.cells[-1].outputs).strip()

    assert printed() == "succeeded cached succeeded __main__.write"
    assert printed() == "cached cached cached __main__.write"  # a new kernel on the same root
