"""ROC and precision-recall curves of the whole set, exact at the thresholds they pass through.

The page draws them; the metrics (``auc``, ``auc_pr``) come from the exact pass in ``metrics``.
A curve holds at most ``POINTS`` points, at distinct scores spread evenly by rank, so a million
rows give the same small ``metrics.json`` as a thousand. A row is called positive when its score
is at least the threshold, as scikit-learn's ``roc_curve`` and ``precision_recall_curve`` do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

POINTS = 101


def curves(
    target: np.ndarray,
    scores: np.ndarray,
    weight: np.ndarray | None = None,
    by_score: np.ndarray | None = None,
    points: int = POINTS,
) -> dict[str, Any]:
    """``{"thresholds", "roc": [[fpr, tpr], ...], "pr": [[recall, precision], ...]}``, thresholds falling.

    ``by_score``: the rows sorted by score, rising, when the caller has sorted them already
    (the order of tied rows does not change a point). Empty lists when the rows hold only one
    class (no curve is defined).
    """
    w = np.ones(len(scores)) if weight is None else np.asarray(weight, dtype=np.float64)
    order = np.argsort(-scores, kind="stable") if by_score is None else by_score[::-1]
    if weight is not None:  # a row of weight 0 is no point, as in scikit-learn (it would be a 0/0 precision)
        order = order[w[order] != 0]
    s, positive = scores[order], np.asarray(target)[order] == 1
    tp = np.cumsum(np.where(positive, w[order], 0.0))
    fp = np.cumsum(np.where(positive, 0.0, w[order]))
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1] if len(s) else np.zeros(0, dtype=np.intp)
    if not len(last) or tp[-1] <= 0 or fp[-1] <= 0:
        return {"thresholds": [], "roc": [], "pr": []}
    keep = last[np.unique(np.linspace(0, len(last) - 1, min(points, len(last))).round().astype(np.intp))]
    tp_k, fp_k = tp[keep], fp[keep]
    tpr, fpr = tp_k / tp[-1], fp_k / fp[-1]
    precision = tp_k / (tp_k + fp_k)
    return {
        "thresholds": s[keep].tolist(),
        "roc": [[0.0, 0.0], *np.column_stack([fpr, tpr]).tolist()],
        "pr": np.column_stack([tpr, precision]).tolist(),
    }
