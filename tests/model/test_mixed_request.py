"""A request whose rows hold a feature as different Python types scores each row as it scores alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.exceptions import InvalidInputError
from conveyor.model import load_model, save


def test_rows_of_mixed_types_score_as_each_alone(training: Any, tmp_path: Path) -> None:
    folder, x, y = training("binary", True)
    model = load_model(
        save(LogisticRegression().fit(x, y), path=tmp_path / "bundle", transform_graph=folder, label="disputed")
    )
    rows: list[dict[str, Any]] = [
        {"amount": 120.0, "product": "card"},
        {"amount": "80", "product": "5", "state": None},
        {"amount": None, "product": "loan", "state": float("nan"), "narrative": "7"},
        {"amount": 95, "product": np.str_("auto"), "state": "CA"},
    ]
    alone = [model.predict([row]) for row in rows]
    for data in (rows, iter(rows), pd.DataFrame(rows)):
        together = model.predict(data)
        np.testing.assert_array_equal(together["probability"], [a["probability"][0] for a in alone])
        assert together["class"].tolist() == [a["class"][0] for a in alone]
    odd = [rows[0], {"amount": 80, "product": 5}]  # a number for a string feature: refused, not read as "5"
    for data in (odd, pd.DataFrame(odd)):
        with pytest.raises(InvalidInputError, match=r"^row 1\['product'\] is 5, which is no string"):
            model.predict(data)
