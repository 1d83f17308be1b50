"""Poisson bootstrap intervals: the oracle's replicates give the same bounds, they cover the value,
and the same seed gives the same bounds whatever the batching, the part sizes and the threads.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from conveyor.analysis import EvalConfig
from conveyor.analysis.evaluation import Scorer, evaluate
from conveyor.analysis.intervals import bounds, poisson_weights
from tests.analysis import scored

REPLICATES = 20
CONFIG = EvalConfig("label", [[], ["group"]], bootstrap_replicates=REPLICATES, seed=11)
CANDIDATE = {"candidate": Scorer(scored.binary, "binary", [0, 1])}


def test_bounds_equal_the_oracles_on_the_same_poisson_weights_and_cover_its_value() -> None:
    frame = scored.examples(4000)
    got = scored.by_name(scored.evaluate(frame, CONFIG, CANDIDATE, batch=999))
    y, p = frame["label"].to_numpy(), frame["score"].to_numpy()
    weights = poisson_weights(11, REPLICATES, 0, frame.height)
    for metric, oracle in [("auc", skm.roc_auc_score), ("log_loss", skm.log_loss), ("f1", None)]:
        if oracle is None:
            replicates = [skm.f1_score(y, p > 0.5, sample_weight=weights[:, r]) for r in range(REPLICATES)]
            value = skm.f1_score(y, p > 0.5)
        else:
            replicates = [oracle(y, p, sample_weight=weights[:, r]) for r in range(REPLICATES)]
            value = oracle(y, p)
        lower, upper = got["Overall"]["intervals"][metric]
        assert [lower, upper] == pytest.approx(np.quantile(replicates, [0.025, 0.975]), abs=1e-9)
        assert lower <= value <= upper


def test_poisson_weights_depend_on_the_row_position_alone() -> None:
    whole = poisson_weights(5, 3, 0, 10_000)
    assert np.array_equal(poisson_weights(5, 3, 2_500, 100), whole[2_500:2_600])
    assert whole.mean() == pytest.approx(1.0, abs=0.03)
    assert whole.var() == pytest.approx(1.0, abs=0.05)
    assert not np.array_equal(poisson_weights(6, 3, 0, 10_000), whole)


def test_bounds_of_each_metric_skip_the_replicates_that_could_not_compute_it() -> None:
    values = np.array([[0.8, 0.6, 0.9, 0.7], [np.nan] * 4, [0.5, np.nan, 0.4, 0.9]])
    got = bounds(values, 0.9)
    assert got[0] == pytest.approx(np.quantile(values[0], [0.05, 0.95]), abs=1e-12)
    assert got[1] is None
    assert got[2] == pytest.approx(np.quantile([0.5, 0.4, 0.9], [0.05, 0.95]), abs=1e-12)


def test_same_seed_same_bounds_whatever_the_batches_parts_and_threads(tmp_path: Path) -> None:
    frame = scored.examples(6000)
    path = tmp_path / "part-0.parquet"
    pq.write_table(frame.to_arrow(), path, row_group_size=500)
    runs = [
        evaluate([path], CONFIG, CANDIDATE, workers, part_rows)
        for workers, part_rows in [(1, 10**6), (2, 1000), (3, 1500)]
    ]
    assert runs[0] == runs[1] == runs[2]
    in_memory = scored.evaluate(frame, CONFIG, CANDIDATE, batch=777)
    assert in_memory["slices"] == runs[0]["slices"]


def test_weighted_bounds_equal_the_oracles_on_the_weights_times_the_poisson_draws() -> None:
    frame = scored.examples(3000, seed=4)
    config = EvalConfig("label", [["group"]], bootstrap_replicates=REPLICATES, seed=3, example_weight_key="weight")
    got = scored.by_name(scored.evaluate(frame, config, CANDIDATE, batch=640))
    weights = poisson_weights(3, REPLICATES, 0, frame.height) * frame["weight"].to_numpy()[:, None]
    for group in ["a", "b", "c"]:
        rows = (frame["group"] == group).to_numpy()
        y, p, w = frame["label"].to_numpy()[rows], frame["score"].to_numpy()[rows], weights[rows]
        for metric, oracle in [("auc", skm.roc_auc_score), ("auc_pr", skm.average_precision_score)]:
            replicates = [oracle(y, p, sample_weight=w[:, r]) for r in range(REPLICATES)]
            expected = np.quantile(replicates, [0.025, 0.975])
            assert got[f"group={group}"]["intervals"][metric] == pytest.approx(expected, abs=1e-9), (group, metric)


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_a_replicate_that_drew_none_of_a_small_slices_rows_gives_no_value(task: str) -> None:
    """The oracle: scikit-learn on each replicate that holds a row (it refuses all-zero weights), then percentiles."""
    few = pl.Series(np.arange(40) < 3)  # three positives scored 0.8: every replicate holding one scores 1 (r2: 0)
    frame = scored.examples(40).with_columns(
        group=pl.when(few).then(pl.lit("few")).otherwise(pl.lit("many")),
        label=pl.when(few).then(1).otherwise("label"),
        score=pl.when(few).then(0.8).otherwise("score"),
    )
    if task == "binary":
        scorer = CANDIDATE["candidate"]
        names = {
            m.__name__[:-6]: partial(m, zero_division=0) for m in (skm.precision_score, skm.recall_score, skm.f1_score)
        }
    else:
        scorer = Scorer(lambda f: {"value": f["score"].to_numpy()}, "regression")
        names = {"r2": skm.r2_score}
    config = EvalConfig("label", [["group"]], bootstrap_replicates=200, seed=3)
    got = scored.by_name(scored.evaluate(frame, config, {"candidate": scorer}))["group=few"]["intervals"]
    weights = poisson_weights(3, 200, 0, 40)[:3]
    assert (weights.sum(axis=0) == 0).sum() > 5  # e^-3 of the replicates hold none of the 3 rows
    y, p = frame["label"].to_numpy()[:3], frame["score"].to_numpy()[:3]
    for name, oracle in names.items():
        drawn = [r for r in range(200) if weights[:, r].sum() > 0]
        guess = p > 0.5 if task == "binary" else p
        values = np.array([[oracle(y, guess, sample_weight=weights[:, r]) for r in drawn]])
        assert got[name] == pytest.approx(bounds(values, 0.95)[0], abs=1e-12), name


def test_a_row_group_past_the_scored_rows_is_scored_in_slices_with_the_same_result(tmp_path: Path) -> None:
    """A file written as one row group (a writer that never flushes) was scored at once: a
    model's transformed features for all its rows held together."""
    from conveyor.analysis.evaluation import SCORED_ROWS

    frame = scored.examples(SCORED_ROWS * 2 + 123)
    whole, grouped = tmp_path / "whole.parquet", tmp_path / "grouped.parquet"
    pq.write_table(frame.to_arrow(), whole, row_group_size=frame.height)
    pq.write_table(frame.to_arrow(), grouped, row_group_size=5000)
    largest = []

    def binary(rows: pl.DataFrame) -> dict[str, np.ndarray]:
        largest.append(rows.height)
        return scored.binary(rows)

    got = evaluate([whole], CONFIG, {"candidate": Scorer(binary, "binary", [0, 1])}, 1)
    assert max(largest) == SCORED_ROWS
    assert got == evaluate([grouped], CONFIG, CANDIDATE, 2)
