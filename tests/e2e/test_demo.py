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
    assert sorted(p.name for p in serving.iterdir()) == ["1"]

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
    assert sorted(p.name for p in serving.iterdir()) == ["1"]
