"""The walkthrough notebook runs top to bottom in a real kernel, and its pages are in its outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conveyor.metadata import MetadataStore

REPO = Path(__file__).resolve().parents[2]
WALKTHROUGH = REPO / "examples" / "complaints" / "walkthrough.ipynb"
KERNEL = "conveyor-walkthrough"


def _kernel_of_this_interpreter(folder: Path) -> None:
    """A kernelspec that starts this very interpreter, found first through JUPYTER_PATH, so the
    notebook runs against the conveyor under test whatever kernels the machine has installed.
    """
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))


def test_the_walkthrough_notebook_runs_and_shows_every_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    _kernel_of_this_interpreter(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core warns without it
    monkeypatch.setenv("CONVEYOR_ROOT", str(tmp_path / "root"))  # the kernel inherits it: outputs stay out of the repo
    monkeypatch.delenv("CONVEYOR_METADATA", raising=False)

    nb = nbformat.read(WALKTHROUGH, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=240, resources={"metadata": {"path": str(WALKTHROUGH.parent)}}
    )
    client.execute()

    shown = [
        out["data"]["text/html"]
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if "text/html" in out.get("data", {})
    ]
    pages = "\n".join(shown)
    for title in ("ExampleStatistics", "Schema", "ExampleAnomalies", "ModelEvaluation"):
        assert f"<b>{title} " in pages, f"no {title} page among the outputs"
    assert pages.count("<iframe srcdoc=") >= 4
    assert "<script src=" not in pages
    assert "application/vnd.jupyter.widget" not in json.dumps(nb)
    last = nb.cells[-2]["outputs"][0]["data"]["text/plain"]
    assert last == "True"  # the model was blessed: its AUC cleared the bound

    with MetadataStore(f"sqlite:///{tmp_path / 'root' / 'metadata.sqlite'}") as store:
        runs = store.runs(pipeline="interactive")
        assert all(r.status == "succeeded" for r in runs)
        steps = {store.run(r.id).executions.popitem()[1].status for r in runs}
        assert "cached" in steps  # the cells that run a step again find it in the cache
