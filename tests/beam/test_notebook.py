"""A notebook moves from this machine to Beam by one argument, with the same results (issue 16).

The same small notebook (InteractiveContext: ExampleGen, StatisticsGen, SchemaGen, Transform)
runs in a real kernel twice: once as written, once with ``beam_pipeline_args`` set in its
first cell to Beam's DirectRunner in multi_processing mode. The statistics and the transform
outputs it leaves are the same.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("apache_beam", reason="the Beam engine needs apache_beam: pip install 'conveyor[beam]'")
nbclient = pytest.importorskip("nbclient", reason="running a notebook needs nbclient (the dev extra)")
nbformat = pytest.importorskip("nbformat", reason="writing a notebook needs nbformat (the dev extra)")

KERNEL = "conveyor-beam-notebook"
BEAM = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]

CELLS = [
    """
    from conveyor.components import ExampleGen, SchemaGen, StatisticsGen, Transform
    from conveyor.interactive import InteractiveContext

    context = InteractiveContext(root="root", beam_pipeline_args=None)
    """,
    """
    gen = ExampleGen(input_base="data")
    context.run(gen)
    """,
    """
    statistics = StatisticsGen(examples=gen.outputs["examples"])
    described = context.run(statistics)
    context.show(statistics.outputs["statistics"])
    """,
    """
    schema = SchemaGen(statistics=statistics.outputs["statistics"])
    context.run(schema)
    transform = Transform(gen.outputs["examples"], schema.outputs["schema"], "preprocessing.py")
    transformed = context.run(transform)
    """,
    """
    import json

    made = {**described.outputs, **transformed.outputs}
    print(json.dumps({key: made[key][0].uri for key in ("statistics", "transform_graph", "transformed_examples")}))
    """,
]

PREPROCESSING = """import conveyor.transform as ct


def preprocessing_fn(inputs):
    return {
        "amount": ct.scale_to_z_score(inputs["amount"]),
        "product": ct.one_hot(ct.compute_and_apply_vocabulary(inputs["product"])),
    }
"""


def _kernel_of_this_interpreter(folder: Path) -> None:
    """A kernelspec that starts this very interpreter, so the notebook runs the conveyor under test."""
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))


def _project(folder: Path) -> Path:
    """Two CSV files of complaint-like rows and the module file, in a folder of their own."""
    rng = np.random.default_rng(7)
    (folder / "data").mkdir(parents=True)
    for n in range(2):
        amount = rng.gamma(2.0, 300.0, size=500).round(2)
        product = rng.choice(["Mortgage", "Credit card", "Student loan"], size=500)
        rows = [f"{a},{p}" for a, p in zip(amount, product, strict=True)]
        (folder / "data" / f"complaints-{n}.csv").write_text("\n".join(["amount,product", *rows]) + "\n")
    (folder / "preprocessing.py").write_text(PREPROCESSING)
    return folder


def _run_notebook(folder: Path, beam_pipeline_args: list[str] | None) -> dict[str, Path]:
    """The notebook run in ``folder``, its first cell given ``beam_pipeline_args``; the folders it printed."""
    cells = [nbformat.v4.new_code_cell(_dedent(source)) for source in CELLS]
    cells[0].source = cells[0].source.replace("beam_pipeline_args=None", f"beam_pipeline_args={beam_pipeline_args!r}")
    nb = nbformat.v4.new_notebook(cells=cells)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=240, resources={"metadata": {"path": str(folder)}})
    client.execute()
    shown = [out for out in nb.cells[2].outputs if "text/html" in out.get("data", {})]
    assert shown, "the statistics cell shows no page"
    printed = "".join(out.get("text", "") for out in nb.cells[-1].outputs if out.get("name") == "stdout")
    return {name: Path(uri) for name, uri in json.loads(printed).items()}


def _dedent(source: str) -> str:
    import textwrap

    return textwrap.dedent(source).strip()


def _statistics(folder: Path) -> dict[str, Any]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(folder.glob("Split-*/statistics.json"))}


def test_a_notebook_on_beam_gives_the_local_statistics_and_transform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _kernel_of_this_interpreter(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core warns without it
    monkeypatch.delenv("CONVEYOR_METADATA", raising=False)
    monkeypatch.delenv("CONVEYOR_ROOT", raising=False)

    local = _run_notebook(_project(tmp_path / "local"), None)
    beam = _run_notebook(_project(tmp_path / "beam"), BEAM)

    assert local["statistics"].is_relative_to(tmp_path / "local")
    assert beam["statistics"].is_relative_to(tmp_path / "beam")
    statistics = _statistics(beam["statistics"])
    assert set(statistics) == {"Split-train", "Split-eval"}
    assert statistics == _statistics(local["statistics"])

    graph = json.loads((beam["transform_graph"] / "transform_graph.json").read_text())
    assert graph == json.loads((local["transform_graph"] / "transform_graph.json").read_text())
    files = sorted(p.relative_to(beam["transformed_examples"]) for p in beam["transformed_examples"].rglob("*.parquet"))
    assert files == sorted(
        p.relative_to(local["transformed_examples"]) for p in local["transformed_examples"].rglob("*.parquet")
    )
    for name in files:
        ours = pq.read_table(beam["transformed_examples"] / name)
        assert ours.num_rows > 0
        assert ours.equals(pq.read_table(local["transformed_examples"] / name)), name
