"""``conveyor demo`` as a new user runs it: a blessed model pushed and served from a folder, a
report whose links all lead somewhere, and a second run that reuses every step.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conveyor import MetadataStore
from conveyor.model import load_model
from tests.helpers import run_cli


def test_the_demo_pushes_a_blessed_model_writes_a_report_and_is_cached_the_second_time(tmp_path: Path) -> None:
    for library in ("sklearn", "skops", "starlette", "uvicorn"):
        pytest.importorskip(library)
    from sklearn.metrics import roc_auc_score

    first = run_cli("demo", "--root", "demo", cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    root = tmp_path / "demo"
    serving = root / "example" / "serving" / "complaints"
    assert "blessed: yes" in first.stdout, first.stdout
    assert f"pushed: version 1 at {serving / '1'}" in first.stdout
    assert f"conveyor serve --model-dir {serving} --model-name complaints" in first.stdout
    assert sorted(p.name for p in serving.iterdir() if not p.name.startswith(".")) == ["1"]  # .versions: claims

    # The AUC it prints is the pushed model's on the raw eval rows, as scikit-learn counts it.
    with MetadataStore(f"sqlite:///{root / 'metadata.sqlite'}") as store:
        (examples,) = [a for a in store.artifacts(type="Examples") if "ExampleGen" in a.uri]
    eval_rows = pq.read_table(Path(examples.uri) / "Split-eval")
    model = load_model(serving / "1")
    disputed = np.asarray(eval_rows["consumer_disputed"].to_pylist()) == "Yes"
    auc = roc_auc_score(disputed, model.predict(eval_rows)["probability"])
    printed = re.search(r"eval AUC (\d\.\d{3}), accuracy", first.stdout)
    assert printed is not None, first.stdout
    assert float(printed[1]) == pytest.approx(auc, abs=0.0005)
    assert auc > 0.6  # the threshold it was blessed on: better than a coin

    index = root / "report" / "index.html"
    links = re.findall(r'href="([^"]+)"', index.read_text(encoding="utf-8"))
    assert {"statistics.html", "anomalies.html", "evaluation.html", "model_card.html"} <= set(links)
    for link in links:
        page = (index.parent / link).read_text(encoding="utf-8")
        assert len(page) > 1000, link
    assert "Debt collection" in (index.parent / "evaluation.html").read_text(encoding="utf-8")  # sliced by product

    second = run_cli("demo", "--root", "demo", cwd=tmp_path, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "fully cached" in second.stdout, second.stdout
    assert "pushed: version 1 at" in second.stdout  # the same version, not pushed again
    assert sorted(p.name for p in serving.iterdir() if not p.name.startswith(".")) == ["1"]  # .versions: claims


def test_new_span_checks_drift_trains_warm_and_the_lineage_tells_which_spans_made_each_version(tmp_path: Path) -> None:
    for library in ("sklearn", "skops", "starlette", "uvicorn"):
        pytest.importorskip(library)
    refused = run_cli("demo", "--root", "demo", "--new-span", cwd=tmp_path, timeout=120)
    assert refused.returncode == 2  # a user's error, as every command says one
    assert "run `conveyor demo` first" in refused.stderr

    first = run_cli("demo", "--root", "demo", cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "newest span: 1" in first.stdout
    assert "drift: nothing to compare with before this span" in first.stdout
    assert "warm start: none" in first.stdout

    second = run_cli("demo", "--root", "demo", "--new-span", cwd=tmp_path, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    out = second.stdout
    assert "new data: span 2" in out and "newest span: 2" in out
    assert "trained on: spans 1, 2, 6,483 rows" in out  # both spans, every row of the sample
    # The label's share jumps from 56% to 92% disputed: the drift check measures it.
    drift = re.search(r"drift: against the previous span \(statistics (\d+)\): (\d+) of (\d+) features moved", out)
    assert drift is not None, out
    assert "consumer_disputed" in out.split("drift: against")[1].splitlines()[0]
    with MetadataStore(f"sqlite:///{tmp_path / 'demo' / 'metadata.sqlite'}") as store:
        first_stats = next(a for a in store.artifacts(type="ExampleStatistics") if "StatisticsGen" in a.uri)
        models = [a for a in store.artifacts(type="Model") if "Trainer" in a.uri]
        assert int(drift[1]) == first_stats.id
        assert f"warm start: from model {models[0].id}, the last blessed" in out
        trainer = store.executions(component="Trainer", status="succeeded")[-1]
        assert [a.id for a in trainer.inputs["base_model"]] == [models[0].id]
    assert re.search(rf"against model {models[0].id}, the last blessed: auc \d\.\d{{3}} vs \d\.\d{{3}} on the same rows", out)
    versions = re.findall(r"version (\d+): model (\d+), from spans ([\d, ]+)", out)
    assert versions[0] == ("1", str(models[0].id), "1")
    if "pushed: version 2" in out:  # pushed only when it did no worse than version 1 on span 2's rows
        assert versions[1] == ("2", str(models[1].id), "1, 2")
    index = (tmp_path / "demo" / "report" / "index.html").read_text(encoding="utf-8")
    assert f"version 1: model {models[0].id}, from spans 1" in index
    assert "spans 1, 2, 6,483 rows" in index
    # the drift the summary reports is on the anomalies page too: the previous span's statistics beside the new
    anomalies = (tmp_path / "demo" / "report" / "anomalies.html").read_text(encoding="utf-8")
    assert "train · baseline" in anomalies and "eval · baseline" in anomalies

    again = run_cli("demo", "--root", "demo", cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "fully cached" in again.stdout, again.stdout  # the warm-start model stays the same while the data does
    assert "newest span: 2" in again.stdout

    none_left = run_cli("demo", "--root", "demo", "--new-span", cwd=tmp_path, timeout=300)
    assert none_left.returncode == 2
    assert "there is no new span to add" in none_left.stderr


def test_a_root_the_demo_cannot_write_in_is_one_line_naming_it_and_the_way_out(tmp_path: Path) -> None:
    """A read-only folder (run as root here, a file where the folder goes) was a traceback."""
    for library in ("sklearn", "skops", "starlette", "uvicorn"):
        pytest.importorskip(library)
    (tmp_path / "taken").write_text("a file, not a folder")
    refused = run_cli("demo", "--root", "taken/demo", cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    assert refused.stderr.startswith(f"error: Cannot copy the example into {tmp_path / 'taken' / 'demo' / 'example'}: ")
    assert "conveyor demo --root DIR" in refused.stderr
    assert (tmp_path / "taken").read_text() == "a file, not a folder"
