"""The metrics of a slice, from state that merges exactly: one kind a task.

Each kind turns a batch into one state per slice (``batch``), merges two states (``merge``),
does buffered work (``compact``) and gives the slice's numbers (``values``: one array entry a
replicate, entry 0 the data as it is; ``details``: curves and tables of entry 0). Weights are
a matrix, a column per replicate, so bootstrap replicates ride in the same state.

* Binary: the weight of positives and negatives per distinct score. AUC, average precision,
  log loss, Brier and every threshold's confusion matrix follow exactly, as scikit-learn
  computes them from the rows. Memory grows with the distinct scores of a slice, not its rows.
* Multiclass: the confusion matrix (true class x predicted class).
* Regression: weight, mean and squared deviations of the label (Chan's merge), sums of errors.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BINARY = ["example_count", "weighted_example_count", "accuracy", "precision", "recall", "f1", "auc", "auc_pr",
          "log_loss", "brier", "calibration", "confusion_matrix"]  # fmt: skip
MULTICLASS = ["example_count", "weighted_example_count", "accuracy", "macro_f1", "micro_f1", "per_class"]
REGRESSION = ["example_count", "weighted_example_count", "mae", "mse", "rmse", "mape", "r2"]
METRICS = {"binary": BINARY, "multiclass": MULTICLASS, "regression": REGRESSION}
_EPS = np.finfo(np.float64).eps


def group_starts(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stable order that groups equal codes, and where each code's run starts in it (codes 0..n-1, all present)."""
    order = np.argsort(codes, kind="stable")
    return order, np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])


def _ratio(num: np.ndarray, den: np.ndarray, empty: float = 0.0) -> np.ndarray:
    """num / den, ``empty`` where den is 0 (scikit-learn's zero_division)."""
    out = np.full(np.shape(num), empty, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


@dataclass
class ScoreTable:
    """Weights of positives and negatives per distinct score, scores ascending (after ``compact``)."""

    scores: np.ndarray
    pos: np.ndarray  # (distinct scores, replicates + 1)
    neg: np.ndarray


@dataclass
class BinaryState:
    rows: int
    tables: list[ScoreTable] = field(default_factory=list)


def _reduce(scores: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> ScoreTable:
    """Equal scores summed, in the entries' order (so the sums are the same whatever the threads)."""
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if s.size else np.zeros(0, dtype=np.intp)
    if not s.size:
        return ScoreTable(s, pos[:0], neg[:0])
    return ScoreTable(s[starts], np.add.reduceat(pos[order], starts), np.add.reduceat(neg[order], starts))


class BinaryMetrics:
    def __init__(self, decision_thresholds: list[float], calibration_bins: int) -> None:
        self.decision_thresholds = decision_thresholds
        self.calibration_bins = calibration_bins

    def batch(
        self, codes: np.ndarray, n: int, target: np.ndarray, scores: np.ndarray, weights: np.ndarray
    ) -> list[BinaryState]:
        positive, negative = weights * target[:, None], weights * (1 - target[:, None])
        order = np.lexsort((scores, codes))
        c, s = codes[order], scores[order]
        starts = np.flatnonzero(np.r_[True, (c[1:] != c[:-1]) | (s[1:] != s[:-1])])
        pos = np.add.reduceat(positive[order], starts)
        neg = np.add.reduceat(negative[order], starts)
        bounds = np.r_[np.searchsorted(c[starts], np.arange(n)), len(starts)]
        rows = np.bincount(codes, minlength=n)
        return [
            BinaryState(int(rows[k]), [ScoreTable(s[starts[a:b]], pos[a:b], neg[a:b])])
            for k, (a, b) in enumerate(itertools.pairwise(bounds))
        ]

    def merge(self, a: BinaryState, b: BinaryState) -> BinaryState:
        return BinaryState(a.rows + b.rows, a.tables + b.tables)

    def compact(self, state: BinaryState) -> BinaryState:
        if len(state.tables) > 1:
            t = state.tables
            table = _reduce(np.concatenate([x.scores for x in t]), np.concatenate([x.pos for x in t]),
                            np.concatenate([x.neg for x in t]))  # fmt: skip
            state.tables = [table]
        return state

    def table(self, state: BinaryState) -> ScoreTable:
        return self.compact(state).tables[0]

    def counts(self, state: BinaryState, threshold: float) -> dict[str, np.ndarray]:
        """tp, fp, fn, tn per replicate when a score above ``threshold`` is called positive."""
        t = self.table(state)
        above = np.searchsorted(t.scores, threshold, side="right")
        tp, fp = t.pos[above:].sum(0), t.neg[above:].sum(0)
        return {"tp": tp, "fp": fp, "fn": t.pos.sum(0) - tp, "tn": t.neg.sum(0) - fp}

    def values(self, state: BinaryState) -> dict[str, np.ndarray]:
        t = self.table(state)
        s = t.scores[:, None]
        p, n = t.pos.sum(0), t.neg.sum(0)
        w = p + n
        c = self.counts(state, 0.5)
        tps, fps = np.cumsum(t.pos[::-1], 0), np.cumsum(t.neg[::-1], 0)
        tpr = np.vstack([np.zeros_like(p), tps]) / np.where(p > 0, p, np.nan)
        fpr = np.vstack([np.zeros_like(n), fps]) / np.where(n > 0, n, np.nan)
        auc = (
            np.sum(np.diff(fpr, axis=0) * (tpr[1:] + tpr[:-1]) / 2, axis=0)
            if len(t.scores)
            else np.full_like(p, np.nan)
        )
        precision_at = _ratio(tps, tps + fps)
        recall_gain = np.diff(np.vstack([np.zeros_like(p), tps]), axis=0) / np.where(p > 0, p, np.nan)
        clipped = np.clip(s, _EPS, 1 - _EPS)
        return {
            "weighted_example_count": w,
            "accuracy": _ratio(c["tp"] + c["tn"], w, np.nan),
            "precision": _ratio(c["tp"], c["tp"] + c["fp"]),
            "recall": _ratio(c["tp"], p),
            "f1": _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"]),
            "auc": auc,
            "auc_pr": np.sum(recall_gain * precision_at, axis=0),
            "log_loss": _ratio(-(t.pos * np.log(clipped) + t.neg * np.log(1 - clipped)).sum(0), w, np.nan),
            "brier": _ratio((t.pos * (1 - s) ** 2 + t.neg * s**2).sum(0), w, np.nan),
        }

    def details(self, state: BinaryState) -> dict[str, Any]:
        t = self.table(state)
        weight = t.pos[:, 0] + t.neg[:, 0]
        edges = np.linspace(0.0, 1.0, self.calibration_bins + 1)
        bins = np.searchsorted(edges[1:-1], t.scores)
        total = np.bincount(bins, weights=weight, minlength=self.calibration_bins)
        true = np.bincount(bins, weights=t.pos[:, 0], minlength=self.calibration_bins)
        predicted = np.bincount(bins, weights=t.scores * weight, minlength=self.calibration_bins)
        calibration = [
            {"bin": [float(edges[i]), float(edges[i + 1])], "weight": float(total[i]),
             "prob_true": float(true[i] / total[i]), "prob_pred": float(predicted[i] / total[i])}
            for i in np.flatnonzero(total)
        ]  # fmt: skip
        matrices = []
        for threshold in self.decision_thresholds:
            c = {k: float(v[0]) for k, v in self.counts(state, threshold).items()}
            matrices.append({"threshold": threshold, **c})
        return {"calibration": calibration, "confusion_matrix": matrices}


@dataclass
class MulticlassState:
    rows: int
    confusion: np.ndarray  # (replicates + 1, true class, predicted class)


class MulticlassMetrics:
    def __init__(self, classes: list[Any]) -> None:
        self.classes = classes

    def batch(
        self, codes: np.ndarray, n: int, target: np.ndarray, predicted: np.ndarray, weights: np.ndarray
    ) -> list[MulticlassState]:
        k = len(self.classes)
        cell = (codes * k + target) * k + predicted
        confusion = np.stack(
            [np.bincount(cell, weights=weights[:, r], minlength=n * k * k) for r in range(weights.shape[1])]
        )
        confusion = confusion.reshape(weights.shape[1], n, k, k)
        rows = np.bincount(codes, minlength=n)
        return [MulticlassState(int(rows[i]), confusion[:, i]) for i in range(n)]

    def merge(self, a: MulticlassState, b: MulticlassState) -> MulticlassState:
        return MulticlassState(a.rows + b.rows, a.confusion + b.confusion)

    def compact(self, state: MulticlassState) -> MulticlassState:
        return state

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
    sums: np.ndarray  # (6, replicates + 1): weight, label mean, label squared deviations, |e|, e², |e|/|y|


class RegressionMetrics:
    def batch(
        self, codes: np.ndarray, n: int, target: np.ndarray, predicted: np.ndarray, weights: np.ndarray
    ) -> list[RegressionState]:
        order, starts = group_starts(codes)
        w, y = weights[order], target[order, None]
        error = np.abs(predicted[order, None] - y)
        weight = np.add.reduceat(w, starts)
        mean = _ratio(np.add.reduceat(w * y, starts), weight)
        m2 = np.add.reduceat(w * (y - np.repeat(mean, np.diff(np.r_[starts, len(order)]), axis=0)) ** 2, starts)
        sums = [weight, mean, m2, np.add.reduceat(w * error, starts), np.add.reduceat(w * error**2, starts),
                np.add.reduceat(w * error / np.maximum(np.abs(y), _EPS), starts)]  # fmt: skip
        rows = np.bincount(codes, minlength=n)
        return [RegressionState(int(rows[i]), np.stack([x[i] for x in sums])) for i in range(n)]

    def merge(self, a: RegressionState, b: RegressionState) -> RegressionState:
        wa, wb = a.sums[0], b.sums[0]
        total = wa + wb
        delta = b.sums[1] - a.sums[1]
        mean = a.sums[1] + _ratio(delta * wb, total)
        m2 = a.sums[2] + b.sums[2] + _ratio(delta**2 * wa * wb, total)
        return RegressionState(a.rows + b.rows, np.vstack([total, mean, m2, a.sums[3:] + b.sums[3:]]))

    def compact(self, state: RegressionState) -> RegressionState:
        return state

    def values(self, state: RegressionState) -> dict[str, np.ndarray]:
        w, _, m2, absolute, squared, percentage = state.sums
        mse = _ratio(squared, w, np.nan)
        # scikit-learn's r2: 1 when both the error and the label's spread are 0, 0 when only the spread is
        r2 = np.where(m2 != 0, 1 - _ratio(squared, m2), np.where(squared == 0, 1.0, 0.0))
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
