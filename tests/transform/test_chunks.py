"""A large apply runs in chunks that read their own rows and write 1-D outputs into place; the
result must be the one-piece result to the bit, whatever form the data comes in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import conveyor.transform as ct
from conveyor.transform import fitted
from conveyor.transform.kernels import stack_csr
from tests.transform.test_apply import INPUTS, adult, fit_and_save, preprocessing_fn


def _same(a: dict[str, object], b: dict[str, object]) -> None:
    assert list(a) == list(b)
    for name in a:
        x, y = a[name], b[name]
        if sp.issparse(x):
            assert sp.issparse(y)
            assert type(x) is type(y)
            x.check_format(full_check=True)
            for part in ("data", "indices", "indptr"):
                assert getattr(x, part).dtype == getattr(y, part).dtype, (name, part)
                assert np.array_equal(getattr(x, part), getattr(y, part)), (name, part)
        else:
            assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
            assert x.dtype == y.dtype, name
            assert x.tobytes() == y.tobytes() if x.dtype != object else x.tolist() == y.tolist(), name


@pytest.mark.parametrize("form", ["table", "record batch", "columns", "pandas"])
def test_chunked_apply_equals_one_piece(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    table = adult().slice(0, 5_000)  # education_num and capital_gain hold nulls in some chunks only
    graph = ct.load(fit_and_save(preprocessing_fn, table, INPUTS, tmp_path))
    whole = graph.apply(table)
    data = {
        "table": table,
        "record batch": table.combine_chunks().to_batches()[0],
        "columns": {name: table.column(name) for name in table.column_names},
        "pandas": table.to_pandas(),
    }[form]
    monkeypatch.setattr(fitted, "APPLY_CHUNK", 700)
    _same(graph.apply(data, workers=3), whole)


def test_stack_csr_is_scipy_vstack() -> None:
    parts = [sp.random(rows, 9, density=0.3, format="csr", random_state=i) for i, rows in enumerate([40, 0, 17, 1])]
    ours, theirs = stack_csr(parts), sp.vstack(parts, format="csr")
    ours.check_format(full_check=True)
    assert ours.shape == theirs.shape
    for part in ("data", "indices", "indptr"):
        assert getattr(ours, part).dtype == getattr(theirs, part).dtype
        assert np.array_equal(getattr(ours, part), getattr(theirs, part))


def test_wide_rows_are_applied_in_chunks_of_about_a_set_size_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = adult().slice(0, 5_000)
    graph = ct.load(fit_and_save(preprocessing_fn, table, INPUTS, tmp_path))
    whole = graph.apply(table)
    monkeypatch.setattr(fitted, "APPLY_CHUNK_BYTES", table.nbytes // 7)  # as if each row were wide
    assert 700 <= fitted._chunk_rows(table) <= 720
    _same(graph.apply(table, workers=2), whole)
    monkeypatch.setattr(fitted, "APPLY_CHUNK_BYTES", 1)
    assert fitted._chunk_rows(table) == 64  # never fewer rows than that
    _same(graph.apply(table, workers=2), whole)
