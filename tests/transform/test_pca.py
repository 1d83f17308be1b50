"""PCA and covariance against scikit-learn and NumPy on penguins and adult."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.compute as pc
import pytest
from sklearn.decomposition import PCA

import conveyor.transform as ct
from conveyor.exceptions import TransformError
from conveyor.transform.analyzers import Covariance
from tests.transform.fitting import fit_apply, fit_graph, fitted_value, numbers, table
from tests.transform.test_ops import ADULT_NUMBERS, PENGUIN_NUMBERS


def assert_equal_up_to_sign(ours: np.ndarray, expected: np.ndarray) -> None:
    """Equal but for each component's sign, to 1e-9 of the data's spread (the first component)."""
    assert ours.shape == expected.shape
    scale = np.abs(expected).max()
    for j in range(expected.shape[1]):
        sign = np.sign(ours[:, j] @ expected[:, j])
        np.testing.assert_allclose(sign * ours[:, j], expected[:, j], rtol=0, atol=1e-9 * scale)


@pytest.mark.parametrize(
    ("dataset", "names", "output_dim"),
    [("penguins", PENGUIN_NUMBERS, 2), ("penguins", PENGUIN_NUMBERS, 4), ("adult", ADULT_NUMBERS, 3)],
)
def test_pca_of_columns_matches_sklearn(dataset: str, names: list[str], output_dim: int) -> None:
    t = table(dataset)
    if dataset == "penguins":  # sklearn takes no NaN: the two rows missing body mass miss all four
        t = t.filter(pc.is_valid(t.column("body_mass_g")))
    graph = fit_graph(
        lambda inputs: {"pc": ct.pca([inputs[n] for n in names], output_dim)},
        t,
        batch_rows=40 if dataset == "penguins" else 3000,
    )
    pca = PCA(output_dim).fit(numbers(t, *names))
    assert_equal_up_to_sign(graph.apply(t)["pc"], pca.transform(numbers(t, *names)))
    fitted = fitted_value(graph, "pca")
    np.testing.assert_allclose(fitted["mean"], pca.mean_, rtol=1e-12)
    components = np.asarray(fitted["components"])
    assert (components[np.arange(output_dim), np.abs(components).argmax(axis=1)] > 0).all()  # the documented sign


def test_pca_of_a_stacked_column_and_missing_rows() -> None:
    t = table("penguins")

    def preprocessing_fn(inputs: Any) -> dict[str, Any]:
        x = ct.stack([inputs[n] for n in PENGUIN_NUMBERS])
        return {
            "x": x,
            "pc": ct.pca(x, 2),
            "pc_filled": ct.pca([ct.fill_missing(inputs[n], 0.0) for n in PENGUIN_NUMBERS], 2),
        }

    out = fit_apply(preprocessing_fn, t, batch_rows=30)
    x = numbers(t, *PENGUIN_NUMBERS)
    complete = ~np.isnan(x).any(axis=1)
    np.testing.assert_array_equal(out["x"], x)
    assert_equal_up_to_sign(out["pc"][complete], PCA(2).fit_transform(x[complete]))
    assert np.isnan(out["pc"][~complete]).all()
    assert_equal_up_to_sign(out["pc_filled"], PCA(2).fit_transform(np.nan_to_num(x, nan=0.0)))


def test_covariance_accumulator_merges_to_numpy_covariance() -> None:
    x = numbers(table("adult"), *ADULT_NUMBERS)
    acc = Covariance(2)
    parts = [
        acc.add_batch(acc.add_batch(acc.create(), x[i : i + 1000]), x[i + 1000 : i + 3000]) for i in range(0, len(x), 3000)
    ]
    merged = acc.merge([acc.merge(parts[::2]), acc.create(), acc.merge(parts[1::2])])
    np.testing.assert_allclose(Covariance.covariance(merged), np.cov(x, rowvar=False, ddof=0), rtol=1e-10)
    np.testing.assert_allclose(merged[1], x.mean(axis=0), rtol=1e-12)


def test_pca_says_what_is_wrong_at_the_users_line() -> None:
    with pytest.raises(
        TransformError,
        match=r"test_pca.py:\d+: ct.pca needs 1 <= output_dim <= the number of input columns \(4\), got 5",
    ):
        fit_graph(lambda inputs: {"pc": ct.pca([inputs[n] for n in PENGUIN_NUMBERS], 5)}, table("penguins"))
    with pytest.raises(TransformError, match=r"ct\.stack takes a number or bool column, got a string column"):
        fit_graph(lambda inputs: {"pc": ct.pca([inputs["species"], inputs["year"]], 1)}, table("penguins"))
