"""The metrics of a slice, computed at extract from the rows' own columns: one kind a task.

Each kind sorts or indexes the rows once (``prepare``: one plan per model, over every slicing
spec), then takes blocks of weight columns (``add``: a ``(columns, rows)`` array, rows in split
order; column 0 the data as it is, then the bootstrap replicates) and gives each spec's numbers
for those columns; ``join`` puts a spec's blocks together, one state a slice. ``values`` gives
a slice's numbers, one array entry a weight column; ``details`` curves and tables of column 0.

* Binary: the rows sorted by score once; per slicing spec, a radix sort of that order by slice
  gives the positives and the negatives each sorted by (slice, score); cumulative weights over
  them give AUC (each positive against the negatives below it), average precision and every
  threshold's confusion counts exactly, as scikit-learn computes them from the rows. Without
  example weights a replicate's weights are small integers, a byte a row, and sum exactly.
  Log loss and Brier are sums over the cells (rows that share every spec's slice).
* Multiclass: the confusion matrix (true class x predicted class), by bincount.
* Regression: weight, mean and squared deviations of the label, sums of errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

BINARY = ["example_count", "weighted_example_count", "accuracy", "precision", "recall", "f1", "auc", "auc_pr",
          "log_loss", "brier", "calibration", "confusion_matrix"]  # fmt: skip
MULTICLASS = ["example_count", "weighted_example_count", "accuracy", "macro_f1", "micro_f1", "per_class"]
REGRESSION = ["example_count", "weighted_example_count", "mae", "mse", "rmse", "mape", "r2"]
METRICS = {"binary": BINARY, "multiclass": MULTICLASS, "regression": REGRESSION}
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "mae", "mse", "rmse", "mape"})
_EPS = np.finfo(np.float64).eps

Slicing = tuple[np.ndarray, int]  # each row's slice code, and the number of slices


def _ratio(num: np.ndarray, den: np.ndarray, empty: float = 0.0) -> np.ndarray:
    """num / den, ``empty`` where den is 0 (scikit-learn's zero_division)."""
    out = np.full(np.shape(num), empty, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


@dataclass
class BinaryState:
    """A slice's numbers, one entry a weight column, and its calibration sums (column 0)."""

    rows: int
    numbers: dict[str, np.ndarray]
    counts: dict[float, dict[str, np.ndarray]]  # threshold -> tp, fp, fn, tn
    calibration: np.ndarray  # (3, bins): weight, weight of positives, weight x score


@dataclass
class BinaryBlock:
    """Every slice's numbers for a block of weight columns: ``(columns, slices)`` arrays."""

    rows: np.ndarray
    numbers: dict[str, np.ndarray]
    counts: dict[float, dict[str, np.ndarray]]
    calibration: np.ndarray | None  # (slices, 3, bins), in the block that holds column 0


@dataclass
class _Side:
    """The positive (or negative) rows of one slicing spec, sorted by (slice, score), ties in split order."""

    order: np.ndarray  # the rows, sorted, as positions in split order
    slice_start: np.ndarray  # where each slice's rows start, then their number
    above: dict[float, np.ndarray]  # threshold -> per slice, its first row scored above it


@dataclass
class _SortedSpec:
    """One slicing spec's positives and negatives, and where each stands among the other side."""

    codes: np.ndarray  # each row's slice, in split order
    rows: np.ndarray  # rows per slice
    of_cell: np.ndarray  # each cell's slice (see ``_BinaryPlan.cells``)
    positive: _Side
    negative: _Side
    first_tie: np.ndarray | None  # per positive: the first positive of its score; None when positives do not tie
    negatives_below: np.ndarray  # per positive: negatives scored below it, its slice's and those before
    negatives_through: np.ndarray | None  # the same, scored at most as high; None when no score is tied across sides


@dataclass
class _BinaryPlan:
    """A model's rows: per row its log loss and Brier terms and calibration bin, and each spec sorted.

    A cell is the rows that share their slice in every spec: a replicate sums its log loss and
    Brier terms once per cell, and each spec adds its cells up, instead of summing per spec.
    """

    label: np.ndarray
    scores: np.ndarray
    by_score: np.ndarray  # the rows by score, ties in split order
    loss: np.ndarray  # (2, rows)
    bins: np.ndarray
    cells: np.ndarray  # each row's cell
    cell_count: int
    specs: list[_SortedSpec]


class BinaryMetrics:
    def __init__(self, decision_thresholds: list[float], calibration_bins: int, thresholds: list[float]) -> None:
        """``thresholds``: every threshold ``counts`` will be asked for (0.5 and the decision ones included)."""
        self.decision_thresholds = decision_thresholds
        self.calibration_bins = calibration_bins
        self.thresholds = sorted({0.5, *decision_thresholds, *thresholds})

    def prepare(
        self, slicings: list[Slicing], target: np.ndarray, scores: np.ndarray, run: Callable[..., Iterable[Any]] = map
    ) -> _BinaryPlan:
        """Sorts every slicing spec's rows; ``run`` maps over the specs (``map``, or a thread pool's)."""
        by_score, sorted_scores, tied = _by_score(scores)
        clipped = np.clip(scores, _EPS, 1 - _EPS)
        loss = np.stack([-(target * np.log(clipped) + (1 - target) * np.log(1 - clipped)), (target - scores) ** 2])
        bins = np.searchsorted(np.linspace(0.0, 1.0, self.calibration_bins + 1)[1:-1], scores)
        cells, cell_count = _cells(slicings, len(scores))
        # one row of each cell (any row of a cell has its slices); cells no row falls in read row 0, and sum to 0
        cell_row = np.zeros(cell_count, dtype=np.intp)
        cell_row[cells] = np.arange(len(cells))
        # per row: its class and how many thresholds it is scored above, for every spec's confusion counts
        band = np.zeros(len(scores), dtype=np.intp)
        for t in self.thresholds:
            band += scores > t
        band += target.astype(np.intp) * (len(self.thresholds) + 1)
        # scores only when two rows share one: without ties no row needs its group
        ranked = (by_score, target[by_score], sorted_scores if tied else None, band)
        specs = list(run(lambda slicing: self._sorted(*slicing, ranked, cell_row), slicings))
        return _BinaryPlan(target, scores, by_score, loss, bins, cells, cell_count, specs)

    def _sorted(self, codes: np.ndarray, n: int, ranked: tuple[Any, ...], cell_row: np.ndarray) -> _SortedSpec:
        """The rows sorted by (slice, score): a stable sort by slice (a radix sort) of the rows sorted by score.

        Its indices are kept as ``intp`` (8 bytes): ``np.take`` converts any other type first.
        """
        by_score, sorted_target, sorted_scores, band = ranked
        # per slice, class (negatives, positives) and threshold band: the rows; their sums give each side's starts
        bands = len(self.thresholds) + 1
        counts = np.bincount(codes.astype(np.intp) * (2 * bands) + band, minlength=2 * n * bands).reshape(n, 2, bands)
        rows = counts.sum(axis=(1, 2))
        order = np.argsort(codes[by_score], kind="stable")
        positive = sorted_target[order] == 1
        at_positive = np.flatnonzero(positive)
        if sorted_scores is None:
            first_tie, neg_before, neg_through = None, at_positive - np.arange(len(at_positive)), None
        else:
            slices = np.repeat(np.arange(n), rows)
            first_tie, neg_before, neg_through = _ties(slices, sorted_scores[order], positive, at_positive)
        order = by_score[order]
        sides = []
        for side, mask in ((1, positive), (0, ~positive)):
            start = np.r_[0, np.cumsum(counts[:, side].sum(axis=1))]
            at_most = np.cumsum(counts[:, side], axis=1)  # rows scored at most each threshold
            above = {t: start[:-1] + at_most[:, j] for j, t in enumerate(self.thresholds)}
            sides.append(_Side(order[mask], start, above))
        return _SortedSpec(codes, rows, codes[cell_row], sides[0], sides[1], first_tie, neg_before, neg_through)

    def add(self, plan: _BinaryPlan, weights: np.ndarray, first: int) -> list[BinaryBlock]:
        """``weights``: ``uint8`` when every weight is a small integer (no example weights), else float."""
        cell_loss = [_sums(plan.cells, plan.cell_count, weights * term) for term in plan.loss]
        return [self._block(plan, spec, weights, cell_loss, first) for spec in plan.specs]

    def _block(
        self, plan: _BinaryPlan, spec: _SortedSpec, weights: np.ndarray, cell_loss: list[np.ndarray], first: int
    ) -> BinaryBlock:
        """Every slice's numbers for a block of weight columns, from cumulative sums over the sorted rows.

        ``cum_p[:, i]``/``cum_n[:, i]``: the weight of the positives / negatives before the
        ``i``-th, over the whole sorted split; a slice's own sums are differences of these.
        Integer weights sum exactly in float64, as scikit-learn's do.
        """
        n, pos, neg = len(spec.rows), spec.positive, spec.negative
        losses = [_sums(spec.of_cell, n, x) for x in cell_loss]
        # gathers straight from split order: a byte a row of integer weights stays in cache
        w_p, w_n = np.take(weights, pos.order, axis=1), np.take(weights, neg.order, axis=1)
        cum_p, cum_n = _cumulative(w_p), _cumulative(w_n)
        end_p, end_n = cum_p[:, pos.slice_start[1:]], cum_n[:, neg.slice_start[1:]]
        total_p, total_n = end_p - cum_p[:, pos.slice_start[:-1]], end_n - cum_n[:, neg.slice_start[:-1]]
        total_w = total_p + total_n
        # AUC: each positive ranks above the negatives of its slice below it and half those tied with it,
        # 2 x area = sum over positives of w x (cum_n[below] + cum_n[through] - 2 cum_n[slice start]);
        # the slice's start is taken off each term, not off the sum: a slice weighing little after
        # slices weighing much would lose its area to the rounding of their large sums
        per_positive = np.diff(pos.slice_start)
        slice_start_n = np.repeat(cum_n[:, neg.slice_start[:-1]], per_positive, axis=1)
        below = np.take(cum_n, spec.negatives_below, axis=1)
        below -= slice_start_n  # the negatives of its slice scored below it
        if spec.negatives_through is None:
            twice_area = 2 * _segment_sums(below * w_p, pos.slice_start)
        else:
            ranked = np.take(cum_n, spec.negatives_through, axis=1)
            ranked -= slice_start_n
            ranked += below
            ranked *= w_p
            twice_area = _segment_sums(ranked, pos.slice_start)
            del ranked
        del slice_start_n
        # average precision: each positive adds its weight / P x the precision at its score
        true = np.repeat(end_p, per_positive, axis=1)
        true -= cum_p[:, :-1] if spec.first_tie is None else np.take(cum_p, spec.first_tie, axis=1)
        called = below
        called -= np.repeat(total_n, per_positive, axis=1)
        np.subtract(true, called, out=called)  # negatives at or above, and the positives
        true *= w_p
        np.divide(true, called, out=true, where=called > 0)
        auc_pr = _segment_sums(true, pos.slice_start)
        del true, called, below
        counts = {}
        for t in self.thresholds:
            tp, fp = end_p - cum_p[:, pos.above[t]], end_n - cum_n[:, neg.above[t]]
            counts[t] = {"tp": tp, "fp": fp, "fn": total_p - tp, "tn": total_n - fp}
        c = counts[0.5]
        # no weight at all (a replicate that drew none of the slice's rows) is no sample: no number, not scikit-learn's 0
        empty = np.where(total_w == 0, np.nan, 0.0)
        numbers = {
            "weighted_example_count": total_w,
            "accuracy": _ratio(c["tp"] + c["tn"], total_w, np.nan),
            "precision": _ratio(c["tp"], c["tp"] + c["fp"]) + empty,
            "recall": _ratio(c["tp"], total_p) + empty,
            "f1": _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"]) + empty,
            "auc": _ratio(twice_area, 2 * total_p * total_n, np.nan),
            "auc_pr": _ratio(auc_pr, total_p, np.nan),
            "log_loss": _ratio(losses[0], total_w, np.nan),
            "brier": _ratio(losses[1], total_w, np.nan),
        }
        calibration = self._calibration(plan, spec, weights[0]) if first == 0 else None
        return BinaryBlock(spec.rows, numbers, counts, calibration)

    def _calibration(self, plan: _BinaryPlan, spec: _SortedSpec, weight: np.ndarray) -> np.ndarray:
        """Per slice: weight, weight of positives and weight x score in each calibration bin."""
        n, bins = len(spec.rows), self.calibration_bins
        key = spec.codes.astype(np.int64) * bins + plan.bins
        sums = [
            np.bincount(key, weights=x, minlength=n * bins) for x in (weight, weight * plan.label, weight * plan.scores)
        ]
        return np.stack(sums).reshape(3, n, bins).transpose(1, 0, 2)

    def join(self, blocks: list[BinaryBlock]) -> list[BinaryState]:
        """A slicing spec's blocks, in column order, as one state per slice."""
        numbers = {m: np.concatenate([b.numbers[m] for b in blocks]) for m in blocks[0].numbers}
        counts = {
            t: {m: np.concatenate([b.counts[t][m] for b in blocks]) for m in x} for t, x in blocks[0].counts.items()
        }
        calibration = blocks[0].calibration
        assert calibration is not None, "the first block holds column 0"
        return [
            BinaryState(int(rows), {m: v[:, i] for m, v in numbers.items()},
                        {t: {m: v[:, i] for m, v in x.items()} for t, x in counts.items()}, calibration[i])
            for i, rows in enumerate(blocks[0].rows)
        ]  # fmt: skip

    def counts(self, state: BinaryState, threshold: float) -> dict[str, np.ndarray]:
        """tp, fp, fn, tn per weight column when a score above ``threshold`` is called positive."""
        return state.counts[threshold]

    def values(self, state: BinaryState) -> dict[str, np.ndarray]:
        return state.numbers

    def details(self, state: BinaryState) -> dict[str, Any]:
        total, true, predicted = state.calibration
        edges = np.linspace(0.0, 1.0, self.calibration_bins + 1)
        calibration = [
            {"bin": [float(edges[i]), float(edges[i + 1])], "weight": float(total[i]),
             "prob_true": float(true[i] / total[i]), "prob_pred": float(predicted[i] / total[i])}
            for i in np.flatnonzero(total)
        ]  # fmt: skip
        matrices = []
        for threshold in self.decision_thresholds:
            c = {k: float(v[0]) for k, v in state.counts[threshold].items()}
            matrices.append({"threshold": threshold, **c})
        return {"calibration": calibration, "confusion_matrix": matrices}


def _cumulative(sorted_weights: np.ndarray) -> np.ndarray:
    """Per column, the weight before each row and the total last: ``(columns, rows + 1)``."""
    out = np.empty((len(sorted_weights), sorted_weights.shape[1] + 1))
    out[:, 0] = 0.0
    out[:, 1:] = sorted_weights  # a cumsum that casts as it goes takes twice as long
    np.cumsum(out[:, 1:], axis=1, out=out[:, 1:])
    return out


def _segment_sums(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per column, the sum of ``values[:, starts[i]:starts[i + 1]]`` for each ``i``; 0 when empty."""
    sums = np.zeros((len(values), len(starts) - 1))
    filled = np.flatnonzero(np.diff(starts) > 0)
    if filled.size:
        sums[:, filled] = np.add.reduceat(values, starts[filled], axis=1)
    return sums


def _by_score(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """The rows by score, ties in split order; the sorted scores; whether two rows share a score.

    A quicksort (about four times faster than a stable sort of a million floats) whose runs of
    equal scores are then put in split order, as a stable sort leaves them.
    """
    order = np.argsort(scores)
    sorted_scores = scores[order]
    tied = sorted_scores[1:] == sorted_scores[:-1]
    if tied.any():
        in_run = np.flatnonzero(np.r_[tied, False] | np.r_[False, tied])
        run = np.cumsum(np.r_[True, ~tied])[in_run]
        order[in_run] = order[in_run][np.argsort(run * len(scores) + order[in_run])]
    return order, sorted_scores, bool(tied.any())


def _ties(
    slices: np.ndarray, scores: np.ndarray, positive: np.ndarray, at_positive: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Per positive of rows sorted by (slice, score): the first positive of its score, the negatives before it.

    And the negatives scored at most as high (indices over the sorted sides); None where no score ties.
    """
    # rows of one (slice, score) are a group
    new = np.r_[True, (slices[1:] != slices[:-1]) | (scores[1:] != scores[:-1])]
    group = (np.cumsum(new) - 1)[at_positive]
    group_start = np.flatnonzero(new)
    ends = np.r_[group_start[1:], len(scores)]
    positives = np.r_[0, np.cumsum(positive)]
    first_tie = positives[group_start][group]
    neg_before = (group_start - positives[group_start])[group]
    neg_through = (ends - positives[ends])[group]
    return (
        None if np.array_equal(first_tie, np.arange(len(first_tie))) else first_tie,
        neg_before,
        None if np.array_equal(neg_before, neg_through) else neg_through,
    )


def _cells(slicings: list[Slicing], rows: int) -> tuple[np.ndarray, int]:
    """Each row's cell (its slice in every spec, as one number) and the number of cells, at most ``rows``."""
    cells, count = np.zeros(rows, dtype=np.intp), 1
    for codes, n in slicings:
        if n > 1:
            cells, count = cells * n + codes, count * n
            if count > rows:  # only the crosses present
                present, cells = np.unique(cells, return_inverse=True)
                cells, count = cells.reshape(-1), len(present)
    return cells, count


def _sums(codes: np.ndarray, n: int, weights: np.ndarray) -> np.ndarray:
    """Per weight column, the sum over each slice's rows: ``(columns, slices)``."""
    if n == 1:
        return weights.sum(axis=1, keepdims=True)
    return np.stack([np.bincount(codes, weights=row, minlength=n) for row in weights])


@dataclass
class MulticlassState:
    rows: int
    confusion: np.ndarray  # (weight columns, true class, predicted class)


class MulticlassMetrics:
    def __init__(self, classes: list[Any]) -> None:
        self.classes = classes

    def prepare(
        self,
        slicings: list[Slicing],
        target: np.ndarray,
        predicted: np.ndarray,
        run: Callable[..., Iterable[Any]] = map,
    ) -> list[tuple[Any, ...]]:
        k = len(self.classes)
        return [((codes.astype(np.int64) * k + target) * k + predicted, n, np.bincount(codes, minlength=n))
                for codes, n in slicings]  # fmt: skip

    def add(self, plan: list[tuple[Any, ...]], weights: np.ndarray, first: int) -> list[tuple[np.ndarray, np.ndarray]]:
        k, out = len(self.classes), []
        for cell, n, rows in plan:
            confusion = np.stack([np.bincount(cell, weights=w, minlength=n * k * k) for w in weights])
            out.append((rows, confusion.reshape(len(weights), n, k, k)))
        return out

    def join(self, blocks: list[tuple[np.ndarray, np.ndarray]]) -> list[MulticlassState]:
        confusion = np.concatenate([b[1] for b in blocks])
        return [MulticlassState(int(rows), confusion[:, i]) for i, rows in enumerate(blocks[0][0])]

    def _per_class(self, confusion: np.ndarray) -> dict[str, np.ndarray]:
        tp = np.diagonal(confusion, axis1=1, axis2=2)
        truth, called = confusion.sum(2), confusion.sum(1)
        return {"tp": tp, "truth": truth, "called": called, "f1": _ratio(2 * tp, truth + called)}

    def values(self, state: MulticlassState) -> dict[str, np.ndarray]:
        c = self._per_class(state.confusion)
        w = state.confusion.sum((1, 2))
        seen = (c["truth"] + c["called"]) > 0  # scikit-learn's macro average: labels present in truth or prediction
        accuracy = _ratio(c["tp"].sum(1), w, np.nan)
        return {
            "weighted_example_count": w,
            "accuracy": accuracy,
            "macro_f1": _ratio((c["f1"] * seen).sum(1), seen.sum(1), np.nan),
            "micro_f1": accuracy,
        }

    def details(self, state: MulticlassState) -> dict[str, Any]:
        c = {k: v[0] for k, v in self._per_class(state.confusion).items()}
        precision, recall = _ratio(c["tp"], c["called"]), _ratio(c["tp"], c["truth"])
        per_class = {
            str(name): {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(c["f1"][i]),
                        "support": float(c["truth"][i])}
            for i, name in enumerate(self.classes)
        }  # fmt: skip
        return {"per_class": per_class}


@dataclass
class RegressionState:
    rows: int
    sums: np.ndarray  # (5, weight columns): weight, label squared deviations, |e|, e², |e|/|y|


class RegressionMetrics:
    def prepare(
        self,
        slicings: list[Slicing],
        target: np.ndarray,
        predicted: np.ndarray,
        run: Callable[..., Iterable[Any]] = map,
    ) -> tuple[Any, ...]:
        error = np.abs(predicted - target)
        terms = np.stack([error, error**2, error / np.maximum(np.abs(target), _EPS)])
        return [(codes, n, np.bincount(codes, minlength=n)) for codes, n in slicings], target, terms

    def add(self, plan: tuple[Any, ...], weights: np.ndarray, first: int) -> list[tuple[np.ndarray, np.ndarray]]:
        specs, target, terms = plan
        out = []
        for codes, n, rows in specs:
            weight = _sums(codes, n, weights)
            mean = _ratio(_sums(codes, n, weights * target), weight)
            deviations = _sums(codes, n, weights * (target - mean[:, codes]) ** 2)
            out.append((rows, np.stack([weight, deviations, *(_sums(codes, n, weights * term) for term in terms)])))
        return out

    def join(self, blocks: list[tuple[np.ndarray, np.ndarray]]) -> list[RegressionState]:
        sums = np.concatenate([b[1] for b in blocks], axis=1)
        return [RegressionState(int(rows), sums[:, :, i]) for i, rows in enumerate(blocks[0][0])]

    def values(self, state: RegressionState) -> dict[str, np.ndarray]:
        w, m2, absolute, squared, percentage = state.sums
        mse = _ratio(squared, w, np.nan)
        # scikit-learn's r2: 1 when both the error and the label's spread are 0, 0 when only the spread is
        r2 = np.where(m2 != 0, 1 - _ratio(squared, m2), np.where(squared == 0, 1.0, 0.0))
        if state.rows < 2:  # scikit-learn's too: one row has no spread to explain
            r2 = np.full_like(r2, np.nan)
        r2[w == 0] = np.nan  # a replicate that drew none of the slice's rows explains nothing
        return {
            "weighted_example_count": w,
            "mae": _ratio(absolute, w, np.nan),
            "mse": mse,
            "rmse": np.sqrt(mse),
            "mape": _ratio(percentage, w, np.nan),
            "r2": r2,
        }

    def details(self, state: RegressionState) -> dict[str, Any]:
        return {}
