"""Confidence intervals by Poisson bootstrap, kept inside the combiners: no second pass.

Replicate ``r`` weighs each row by a Poisson(1) draw, a function of ``(seed, r, the row's
position in the split)`` alone (a counter-based hash, not a stream): any batching, any number
of threads and the Beam engine draw the same weights, so the same seed gives the same bounds.
An interval is the percentile interval of the replicates' values.
"""

from __future__ import annotations

import math

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _poisson_cdf() -> np.ndarray:
    """P(K <= k) for K ~ Poisson(1), up to the k past which the rest is below a double's resolution."""
    terms = [math.exp(-1.0) / math.factorial(k) for k in range(20)]
    return np.cumsum(terms)


_CDF = _poisson_cdf()


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of 64-bit words whose outputs look uniform."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def poisson_weights(seed: int, replicates: int, start: int, rows: int) -> np.ndarray:
    """Poisson(1) weights of rows ``start .. start + rows`` of a split: shape ``(rows, replicates)``."""
    positions = np.arange(start, start + rows, dtype=np.uint64)
    out = np.empty((rows, replicates), dtype=np.float64)
    base = splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    for r in range(replicates):
        key = splitmix64(base ^ np.uint64(r))
        uniform = (splitmix64(positions ^ key) >> np.uint64(11)).astype(np.float64) * 2.0**-53
        out[:, r] = np.searchsorted(_CDF, uniform, side="right")
    return out


def bounds(values: np.ndarray, confidence: float) -> list[float] | None:
    """The percentile interval of replicate values (those a replicate could compute); None without any."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    tail = (1.0 - confidence) / 2.0
    return [float(np.quantile(finite, tail)), float(np.quantile(finite, 1.0 - tail))]
