"""The model bundle guide (docs/model_bundle.md): load a bundle and predict on raw rows."""

from __future__ import annotations

import json
from pathlib import Path


# --8<-- [start:predict]
def predict_raw(bundle_dir: str) -> dict:
    """Score raw rows, as they come from the source: the bundle applies its transform graph first."""
    from conveyor.model import load_model

    model = load_model(bundle_dir)  # every file's sha256 is checked before anything is read
    rows = [
        {"plan": "pro", "monthly_fee": 49.0, "tenure_months": 3},
        {"plan": "basic", "monthly_fee": 9.5, "tenure_months": 40},
    ]
    return model.predict(rows)  # {"probability": array([...]), "class": array([...])}, one entry per row


# --8<-- [end:predict]


# --8<-- [start:columns]
def predict_columns(bundle_dir: str) -> dict:
    """The same model on a dict of columns (an Arrow table or a pandas or Polars frame works too)."""
    from conveyor.model import load_model

    model = load_model(bundle_dir)
    return model.predict({"plan": ["pro", "basic"], "monthly_fee": [49.0, 9.5], "tenure_months": [3, 40]})


# --8<-- [end:columns]


# --8<-- [start:manifest]
def describe(bundle_dir: str) -> str:
    """What the manifest says: the flavor, the task and the raw inputs a request must send."""
    manifest = json.loads((Path(bundle_dir) / "conveyor_model.json").read_text())
    required = [name for name, spec in manifest["signature"]["inputs"].items() if spec["required"]]
    return f"{manifest['flavor']} {manifest['task']} model; needs {', '.join(required)}; {len(manifest['files'])} files hashed"


# --8<-- [end:manifest]
