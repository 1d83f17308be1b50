"""StatisticsGen on Apache Beam writes the statistics a local run writes, and is recorded the same way.

The oracle is the local engine's run of the same pipeline on the same files: every number of
``statistics.json`` (counts, means to the last bit, quantiles, top values, the sketches'
estimates) is compared exactly, since the Beam engine merges the parts in the local fold's order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("apache_beam", reason="the Beam engine needs apache_beam: pip install 'conveyor[beam]'")

from conveyor import Pipeline
from conveyor._internal import engine
from conveyor.artifacts import ExampleStatistics
from conveyor.components import ExampleGen, StatisticsGen
from conveyor.data.statistics import StatisticsCombiner, summarize_splits
from conveyor.orchestration.beam.engine import BeamEngine

STATES = ["CA", "NY", "TX", "FL", "WA", "OR", "IL", "GA"]


def _write_csvs(folder: Path) -> None:
    """Three files of complaint-like rows: amounts across magnitudes, a state, a product, blanks."""
    rng = np.random.default_rng(16)
    folder.mkdir()
    for n in range(3):
        rows = 1500
        amount = (rng.lognormal(3, 2, size=rows) * rng.choice([1e-3, 1, 1e3], size=rows)).round(6)
        count = rng.integers(0, 40, size=rows)
        state = rng.choice(STATES, size=rows)
        product = rng.choice([f"product {i}" for i in range(60)], size=rows)
        lines = ["amount,count,state,product"] + [
            f"{'' if i % 23 == 0 else a},{c},{s},{p}"
            for i, (a, c, s, p) in enumerate(zip(amount, count, state, product, strict=True))
        ]
        (folder / f"part-{n}.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("statistics") / "data"
    _write_csvs(folder)
    return folder


def _run(data: Path, root: Path, beam_pipeline_args: list[str] | None) -> Any:
    """ExampleGen then StatisticsGen (with a slice by state) into ``root``: the StatisticsGen execution."""
    gen = ExampleGen(str(data))
    statistics = StatisticsGen(examples=gen.outputs["examples"], slices=["state"])
    run = Pipeline("beam_statistics", [gen, statistics], root=root, beam_pipeline_args=beam_pipeline_args).run()
    execution = run.executions[statistics.id]
    assert execution.status == "succeeded", execution.error
    return execution


def _statistics(execution: Any) -> dict[str, Any]:
    """Each split's parsed statistics.json, by split name."""
    artifact = execution.outputs["statistics"][0]
    folder = Path(artifact.uri)
    return {
        split: json.loads((folder / f"Split-{split}" / ExampleStatistics.SPLIT_FILE).read_text())
        for split in artifact.properties["split_names"]
    }


@pytest.fixture(scope="module")
def local(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _run(data, tmp_path_factory.mktemp("local"), None)


def test_statistics_gen_on_beam_writes_the_local_statistics(
    data: Path, local: Any, tmp_path: Path, beam_args: list[str]
) -> None:
    ours = _run(data, tmp_path, beam_args)

    theirs_stats = _statistics(local)
    assert set(theirs_stats) == {"train", "eval"}
    assert theirs_stats["train"]["features"]["amount"]["mean"] is not None
    assert len(theirs_stats["train"]["slices"]) == len(STATES)
    assert _statistics(ours) == theirs_stats

    # Recorded as a local run is: the same key, parameters, properties, and files to the byte.
    [artifact], [their_artifact] = ours.outputs["statistics"], local.outputs["statistics"]
    assert (ours.component_type, ours.parameters, ours.cache_key) == (
        local.component_type,
        local.parameters,
        local.cache_key,
    )
    assert artifact.properties == their_artifact.properties
    assert artifact.fingerprint == their_artifact.fingerprint
    assert Path(ours.log_uri).read_text().count("examples,") == 2  # the executor's prints, one a split


def test_a_failing_worker_fails_the_step_with_its_error_in_the_log(
    data: Path, tmp_path: Path, beam_args: list[str]
) -> None:
    """A slice by a feature the examples lack fails inside the workers' add_batch."""
    gen = ExampleGen(str(data))
    statistics = StatisticsGen(examples=gen.outputs["examples"], slices=["county"]).with_beam_pipeline_args(beam_args)
    run = Pipeline("beam_statistics", [gen, statistics], root=tmp_path).run()

    execution = run.executions[statistics.id]
    assert run.executions[gen.id].status == "succeeded"
    assert execution.status == "failed"
    assert execution.error.startswith(
        "DataValidationError: Cannot slice by 'county': the examples have no such feature"
    )
    log = Path(execution.log_uri).read_text()
    assert "Cannot slice by 'county'" in log
    assert "Raised on a Beam worker, in part" in log


def test_many_parts_fold_on_beam_to_the_local_bytes(tmp_path: Path, dask_beam_args: list[str]) -> None:
    """Twenty parts of one file, with a text column past the exact bounds (hashed counts, HyperLogLog)."""
    rng = np.random.default_rng(7)
    rows = 24_000
    table = pa.table(
        {
            "amount": rng.lognormal(3, 3, size=rows),
            "state": rng.choice(STATES, size=rows),
            "ticket": [f"t{v}" for v in rng.integers(0, 15_000, size=rows)],
        }
    )
    path = tmp_path / "examples.parquet"
    pq.write_table(table, path, row_group_size=1_200)
    combiner = StatisticsCombiner([["state"]])

    def statistics() -> dict[str, Any]:
        accs = summarize_splits({"train": [path]}, combiner, 2, part_rows=1_200)
        return combiner.extract(accs["train"])

    local = statistics()
    with engine.using(BeamEngine(dask_beam_args)):
        on_beam = statistics()
    assert not local["features"]["ticket"]["value_counts"]["exact"]
    assert on_beam == local
