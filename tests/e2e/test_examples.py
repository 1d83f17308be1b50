"""The example projects as a user runs them: ``conveyor run`` from another folder, then the model they keep."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import MetadataStore
from conveyor.model import load_model
from tests.helpers import REPO, run_cli

PENGUINS = REPO / "examples" / "penguins" / "pipeline.py"


def test_the_penguins_example_trains_a_model_that_names_species_from_raw_rows(tmp_path: Path) -> None:
    pytest.importorskip("lightgbm")
    first = run_cli("run", str(PENGUINS), "--root", "root", cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "(6 succeeded)" in first.stdout
    second = run_cli("run", str(PENGUINS), "--root", "root", cwd=tmp_path, timeout=300)
    assert "(6 cached)" in second.stdout, second.stdout
    with MetadataStore(f"sqlite:///{tmp_path / 'root' / 'metadata.sqlite'}") as store:
        (bundle,) = store.artifacts(type="Model")
    model = load_model(bundle.uri)
    assert (model.task, model.classes) == ("multiclass", ["Adelie", "Chinstrap", "Gentoo"])
    rows = [
        {"island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 15.0, "flipper_length_mm": 218, "body_mass_g": 4950},
        {"island": "Torgersen", "bill_length_mm": 38.9, "bill_depth_mm": 18.8, "flipper_length_mm": 190, "sex": "female"},
    ]  # one lacks sex, the other its mass: optional features may be missing
    assert list(model.predict(rows)["class"]) == ["Gentoo", "Adelie"]
