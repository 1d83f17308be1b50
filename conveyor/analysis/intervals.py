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
_PREFIX_BITS = 16


def _prefix_table() -> tuple[np.ndarray, np.ndarray]:
    """Per leading 16 bits of a 53-bit draw: its Poisson value, and whether the rest of the bits can change it."""
    prefix = np.arange(2**_PREFIX_BITS, dtype=np.float64)
    low = np.searchsorted(_CDF, prefix * 2.0**-_PREFIX_BITS, side="right")
    high = np.searchsorted(_CDF, ((prefix + 1) * 2.0 ** (53 - _PREFIX_BITS) - 1) * 2.0**-53, side="right")
    return low.astype(np.float64), low != high


_BY_PREFIX, _UNDECIDED = _prefix_table()


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of 64-bit words whose outputs look uniform."""
    z = x + _GOLDEN
    shifted = np.empty_like(z)  # in place: two buffers for the whole mix
    for shift, mix in ((30, _MIX1), (27, _MIX2)):
        np.right_shift(z, np.uint64(shift), out=shifted)
        z ^= shifted
        z *= mix
    np.right_shift(z, np.uint64(31), out=shifted)
    z ^= shifted
    return z


def poisson_weights(seed: int, replicates: int, start: int, rows: int) -> np.ndarray:
    """Poisson(1) weights of rows ``start .. start + rows`` of a split: shape ``(rows, replicates)``."""
    positions = np.arange(start, start + rows, dtype=np.uint64)
    out = np.empty((rows, replicates))
    for r in range(replicates):
        out[:, r] = replicate_weights(seed, r, positions)
    return out


def replicate_weights(seed: int, replicate: int, positions: np.ndarray) -> np.ndarray:
    """Replicate ``replicate``'s Poisson(1) weight of each row at ``positions`` (uint64) of a split."""
    base = splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    key = splitmix64(base ^ np.uint64(replicate))
    draws = splitmix64(positions ^ key) >> np.uint64(11)  # 53 bits: the uniform draw is draws x 2^-53
    prefix = (draws >> np.uint64(53 - _PREFIX_BITS)).astype(np.intp)
    weights = _BY_PREFIX[prefix]
    # the few draws whose leading bits straddle a step of the CDF: the exact inversion
    edge = np.flatnonzero(_UNDECIDED[prefix])
    weights[edge] = np.searchsorted(_CDF, draws[edge].astype(np.float64) * 2.0**-53, side="right")
    return weights


def bounds(values: np.ndarray, confidence: float) -> list[float] | None:
    """The percentile interval of replicate values (those a replicate could compute); None without any."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    tail = (1.0 - confidence) / 2.0
    return [float(np.quantile(finite, tail)), float(np.quantile(finite, 1.0 - tail))]
