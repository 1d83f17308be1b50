"""The handwritten-digits example as a user runs it: its PNG files are scikit-learn's digits,
and ``conveyor run`` turns them into a pushed model that reads PNG bytes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conveyor import MetadataStore
from conveyor.model import load_model
from tests.helpers import REPO, run_cli

pytest.importorskip("sklearn")
Image = pytest.importorskip("PIL.Image", reason="images decode with Pillow: pip install 'conveyor[media]'")

EXAMPLE = REPO / "examples" / "digits"


def test_the_shipped_png_files_are_scikit_learns_digits_with_their_labels() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    files = sorted(EXAMPLE.glob("data/*/*.png"))
    assert len(files) == len(digits.target) == 1797
    for file in files:
        index = int(file.stem)
        assert int(file.parent.name) == digits.target[index], file
        with Image.open(file) as image:
            assert image.mode == "L"
            pixels = np.asarray(image)
        assert np.array_equal(pixels, digits.images[index].astype(np.uint16) * 255 // 16), file


def test_conveyor_run_trains_and_pushes_a_model_that_reads_the_eval_pngs_right(tmp_path: Path) -> None:
    example = shutil.copytree(EXAMPLE, tmp_path / "digits", ignore=shutil.ignore_patterns("serving"))
    first = run_cli("run", str(example / "pipeline.py"), "--root", "root", cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "(8 succeeded)" in first.stdout, first.stdout
    second = run_cli("run", str(example / "pipeline.py"), "--root", "root", cwd=tmp_path, timeout=300)
    assert "(8 cached)" in second.stdout, second.stdout

    with MetadataStore(f"sqlite:///{tmp_path / 'root' / 'metadata.sqlite'}") as store:
        outputs = {Path(a.uri).parts[-3:-1]: a for a in store.artifacts(pipeline="digits")}
    examples = outputs["ExampleGen", "examples"]
    assert examples.properties["row_counts"]["train"] + examples.properties["row_counts"]["eval"] == 1797
    assert examples.properties["quarantined"] == 0

    # The pushed bundle, fed the eval split's raw rows as ExampleGen wrote them: PNG bytes in, digits out.
    (pushed,) = [p for p in (example / "serving" / "digits").iterdir() if not p.name.startswith(".")]  # .versions
    eval_rows = pq.read_table(Path(examples.uri) / "Split-eval")
    predicted = load_model(pushed).predict(eval_rows.select(["content"]))["class"]
    accuracy = np.mean(np.asarray(predicted) == np.asarray(eval_rows["label"].to_pylist()))
    assert accuracy > 0.9
    metrics = json.loads((Path(outputs["Evaluator", "evaluation"].uri) / "metrics.json").read_text())
    overall = next(s for s in metrics["slices"] if s["features"] == [])
    assert overall["metrics"]["accuracy"] == pytest.approx(accuracy)
    assert metrics["validation"]["blessed"] is True

    # One file from the folder, as a client would send it.
    one = (example / "data" / "7" / "0007.png").read_bytes()
    assert list(load_model(pushed).predict([{"content": one}])["class"]) == ["7"]
