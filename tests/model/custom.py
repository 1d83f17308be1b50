"""Models of the user's own that no safe format holds, in a light module a fresh process imports fast."""

from __future__ import annotations

from typing import Any

import numpy as np


class Threshold:
    """A binary classifier on the first feature: only pickle can bundle it."""

    classes_ = np.array([0, 1])

    def predict_proba(self, x: Any) -> np.ndarray:
        first = x[:, 0].toarray().ravel() if hasattr(x, "toarray") else np.asarray(x[:, 0])
        p = 1 / (1 + np.exp(-first))
        return np.column_stack([1 - p, p])


class Noisy(Threshold):
    """Predicts differently each time it runs: what ``check_flavor`` must catch."""

    def predict_proba(self, x: Any) -> np.ndarray:
        p = np.random.default_rng().random(x.shape[0])
        return np.column_stack([1 - p, p])
