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
_UNDECIDED = 255
# rows drawn a step: the mix's 64-bit temporaries stay in a core's cache (half the time a million rows take at once)
_CHUNK = 1 << 16


def _prefix_table() -> np.ndarray:
    """Per leading 16 bits of a 53-bit draw: its Poisson value, or ``_UNDECIDED`` when the rest of the bits can change it.

    The values are small integers (at most 19), kept as ``uint8``: a replicate's weights then
    take a byte a row, which keeps their gathers into sorted order in cache.
    """
    prefix = np.arange(2**_PREFIX_BITS, dtype=np.float64)
    low = np.searchsorted(_CDF, prefix * 2.0**-_PREFIX_BITS, side="right")
    high = np.searchsorted(_CDF, ((prefix + 1) * 2.0 ** (53 - _PREFIX_BITS) - 1) * 2.0**-53, side="right")
    return np.where(low == high, low, _UNDECIDED).astype(np.uint8)


_BY_PREFIX = _prefix_table()


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of 64-bit words whose outputs look uniform."""
    return _mix(x + _GOLDEN)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser after its first addition, in place."""
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
    """Replicate ``replicate``'s Poisson(1) weight of each row at ``positions`` (uint64) of a split, as ``uint8``."""
    base = splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    key = splitmix64(base ^ np.uint64(replicate))
    weights = np.empty(len(positions), dtype=np.uint8)
    for start in range(0, len(positions), _CHUNK):
        mixed = positions[start : start + _CHUNK] ^ key
        mixed += _GOLDEN
        mixed = _mix(mixed)  # its top 53 bits are the draw: the uniform draw is (mixed >> 11) x 2^-53
        prefix = mixed >> np.uint64(64 - _PREFIX_BITS)
        chunk = _BY_PREFIX[prefix.view(np.intp)]  # below 2^16: the same numbers as signed
        # the few draws whose leading bits straddle a step of the CDF: the exact inversion
        edge = np.flatnonzero(chunk == _UNDECIDED)
        draws = (mixed[edge] >> np.uint64(11)).astype(np.float64)
        chunk[edge] = np.searchsorted(_CDF, draws * 2.0**-53, side="right")
        weights[start : start + _CHUNK] = chunk
    return weights


def bounds(values: np.ndarray, confidence: float) -> list[list[float] | None]:
    """Per row of ``(metrics, replicates)`` values, the percentile interval of those a replicate could compute.

    None for a row without any. The rows whose every value is finite take one quantile call.
    """
    tail = (1.0 - confidence) / 2.0
    tails = [tail, 1.0 - tail]
    finite = np.isfinite(values)
    seen = finite.any(axis=1)
    whole = finite.all(axis=1) & seen
    out: list[list[float] | None] = [None] * len(values)
    if whole.any():
        rows = np.flatnonzero(whole).tolist()
        for i, interval in zip(rows, np.quantile(values[whole], tails, axis=1).T.tolist(), strict=True):
            out[i] = interval
    for i in np.flatnonzero(seen & ~whole).tolist():
        out[i] = np.quantile(values[i][finite[i]], tails).tolist()
    return out
