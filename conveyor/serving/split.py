"""A canary or A/B split: requests that name no version or label go to a label chosen by weight.

    models:
      - name: complaints
        base_path: serving/complaints
        version_policy: {all: true}
        labels: {stable: 3, canary: 5}
        split: {stable: 90, canary: 10}
        sticky_key: user_id        # a request header, else a feature of the request's first row

Without a sticky key each request draws a label at random. With one, the key's value is hashed
to a point in [0, 1) that always falls on the same label while the weights stay as they are,
so a user sees one version, not a mix. A number is hashed by its value, not the form it came in
(``_key_text``): 7, 7.0 and 7e0 in JSON, an INT64 or FP64 tensor, and the text "7" (as a header
carries it) are one key; NaN or an infinity is no key, as null is: the request draws at random.
A label whose version is not loaded yet (a canary named before the Pusher writes it) takes no
share: its weight goes to the others until it is.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Split", "sticky_value"]

_SCALE = float(1 << 64)


@dataclass(frozen=True)
class Split:
    """Weights by label: a label's share of the requests is its weight over the sum."""

    weights: Mapping[str, int]

    def choose(self, served: Callable[[str], bool], key: str | None = None) -> str | None:
        """The label a request goes to: drawn by weight among the labels ``served`` says are
        loaded, by the hash of ``key`` when one is given; None when no label of the split is loaded."""
        labels = [(label, weight) for label, weight in self.weights.items() if weight > 0 and served(label)]
        if not labels:
            return None
        point = _hash_point(key) if key is not None else random.random()  # routing, not a secret
        target = point * sum(weight for _, weight in labels)
        for label, weight in labels:
            target -= weight
            if target < 0:
                return label
        return labels[-1][0]


def _hash_point(key: str) -> float:
    """``key`` as a point in [0, 1), the same on every server and every run."""
    # surrogatepass: a lone surrogate ("\ud800", which JSON's escapes can send) is hashed too; any
    # other key gives the UTF-8 bytes it gave before, so clients keep their label
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def sticky_value(name: str, headers: Mapping[str, str | bytes], rows: Any) -> str | None:
    """The value of the sticky key ``name``: a request header (case-insensitive), else the
    feature of that name in the first row (rows as a list of objects, or columns by name); None
    when the request has none, or it is NaN or infinite."""
    header = headers.get(name.lower())
    if header is not None:
        return _key_text(header)
    if isinstance(rows, list):
        value = rows[0].get(name) if rows and isinstance(rows[0], dict) else None
    elif isinstance(rows, Mapping):
        column = rows.get(name)
        value = column[0] if column is not None and len(column) else None
    else:
        value = None
    return None if value is None else _key_text(value)


def _key_text(value: Any) -> str | None:
    """The text a sticky key's value is hashed as. A whole number is its integer digits, so the id 7
    is one key as 7, 7.0 or 7e0 in JSON, an INT64 or FP64 tensor, and as the text "7" a header or
    a string feature carries (the digits 7 hashed before, so an int key keeps its label); another
    number is its shortest text in its own precision (an FP32 0.1 is "0.1", as JSON's 0.1). Text
    is hashed as it is ("7.0" and "007" are other keys than 7), bytes (gRPC's binary metadata, a
    key named ``...-bin``) as their UTF-8 text, as REST's header is, a bool as True or False.
    NaN is a missing value (an FP64 tensor's null is one), and an infinity no id (JSON's 1e400
    and 1e500 both read as it): hashed as "nan" or "inf", every such request went to one version,
    so they are None, drawn at random as a request without the key is."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, np.integer):
        value = int(value)
    elif isinstance(value, np.floating):
        value = float(str(value))  # NumPy writes a float32 in the fewest digits that read back as it
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
