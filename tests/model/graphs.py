"""For the model tests: a small raw table, and transform graphs fitted on it as Transform fits them.

``amount`` and ``product`` are required, ``state`` and ``narrative`` optional, the targets
never sent when serving. The mixed graph has sparse outputs (one-hot, tf-idf), the dense one
numbers only, so both kinds of matrix are exercised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import conveyor.transform as ct
from conveyor.transform.fit import fit
from conveyor.transform.fitted import FittedGraph
from conveyor.transform.graph import trace

INPUTS = {
    "amount": {"kind": "number", "required": True},
    "product": {"kind": "string", "required": True},
    "state": {"kind": "string", "required": False},
    "narrative": {"kind": "string", "required": False},
    "disputed": {"kind": "number", "required": False},
    "segment": {"kind": "string", "required": False},
    "price": {"kind": "number", "required": False},
}
TARGETS = {"binary": "disputed", "multiclass": "segment", "regression": "price"}
WORDS = ["late", "fee", "charge", "loan", "denied", "refund", "credit", "report", "error", "call"]


def table(n: int = 120, seed: int = 0) -> pa.Table:
    """Raw rows where each target depends on the features, with a few values missing."""
    rng = np.random.default_rng(seed)
    amount = rng.normal(100.0, 30.0, n)
    product = rng.choice(["mortgage", "card", "loan", "auto"], n)
    state = rng.choice(["CA", "NY", "TX"], n).astype(object)
    state[::9] = None
    narrative = [" ".join(rng.choice(WORDS, rng.integers(1, 6))) for _ in range(n)]
    score = (
        (amount - 100) / 30 + (product == "card") + np.array(["fee" in t for t in narrative]) + rng.normal(0, 0.5, n)
    )
    amount_with_gaps = amount.copy()
    amount_with_gaps[::11] = np.nan
    return pa.table(
        {
            "amount": amount_with_gaps,
            "product": product,
            "state": pa.array(state, pa.string()),
            "narrative": narrative,
            "disputed": (score > 0.5).astype(np.int64),
            "segment": np.where(score < 0, "low", np.where(score < 1.2, "mid", "high")),
            "price": 50 + 10 * score,
        }
    )


def preprocessing_fn(task: str, *, sparse: bool) -> Any:
    target = TARGETS[task]

    def fn(inputs: Any) -> dict[str, Any]:
        amount = ct.fill_missing(inputs["amount"], 100.0)
        out = {
            "amount": ct.scale_to_z_score(amount),
            "product": ct.compute_and_apply_vocabulary(inputs["product"]),
        }
        if sparse:
            out["state"] = ct.one_hot(ct.compute_and_apply_vocabulary(inputs["state"], num_oov_buckets=1))
            out["narrative"] = ct.tfidf(ct.split(ct.lower(inputs["narrative"])))
        else:
            out["amount_bucket"] = ct.bucketize(amount, 4)
        out[target] = inputs[target]
        return out

    return fn


def fitted(task: str, *, sparse: bool, data: pa.Table | None = None) -> FittedGraph:
    """The graph for ``task``, fitted on ``data`` (default ``table()``) over several batches."""
    data = table() if data is None else data
    outputs = trace(preprocessing_fn(task, sparse=sparse), {name: spec["kind"] for name, spec in INPUTS.items()})
    fit(outputs, lambda: data.to_batches(max_chunksize=50), workers=2)
    return FittedGraph(outputs, INPUTS)


def saved(task: str, folder: Path, *, sparse: bool) -> Path:
    """A TransformGraph artifact folder for ``task``, as Transform writes it."""
    fitted(task, sparse=sparse).save(folder)
    return folder


def requests(n: int = 6) -> list[dict[str, Any]]:
    """Raw rows as a client sends them: no targets, one row without its optional features."""
    rows = table(n, seed=1).select(["amount", "product", "state", "narrative"]).to_pylist()
    rows[0] = {"amount": rows[0]["amount"], "product": rows[0]["product"]}
    return rows
