"""The prediction log on a disk that fills: one line naming the folder and ENOSPC per part it
cannot write (it was a traceback each time), the model answers all along, and the log goes on
once space is freed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.model import label_vector, save, to_matrix
from conveyor.serving.config import PredictionLogConfig
from conveyor.serving.register import PredictionLog
from conveyor.serving.registry import ModelRegistry
from conveyor.transform.fitted import load
from tests.disk import fill
from tests.model import graphs


def test_a_full_disk_loses_the_part_in_one_line_and_the_log_goes_on_when_space_is_freed(
    tmp_path: Path, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    graph_dir = graphs.saved("binary", tmp_path / "graph", sparse=False)
    graph = load(graph_dir)
    columns = graph.apply(graphs.table())
    x, _ = to_matrix(columns, graph.describe(), "disputed")
    model = LogisticRegression().fit(x, label_vector(columns, "disputed"))
    save(model, path=tmp_path / "disputes" / "1", transform_graph=graph_dir, label="disputed")
    served = ModelRegistry().load("disputes", tmp_path / "disputes")
    rows = graphs.requests(3)
    outputs = served.model.predict(rows)
    fill(small_disk / "filler")

    log = PredictionLog(PredictionLogConfig(small_disk / "log", flush_seconds=600)).start()
    log.record("r1", served, rows, outputs)
    with caplog.at_level(logging.ERROR, logger="conveyor.serving.register"):
        log.close()
    [said] = caplog.records
    assert said.exc_info is None
    message = said.getMessage()
    assert message.startswith(f"could not write the prediction log of model 'disputes' under {small_disk / 'log'}")
    assert message.endswith(": No space left on device (ENOSPC); rows not logged: 3")

    (small_disk / "filler").unlink()
    log.start().record("r2", served, rows, outputs)
    log.close()
    [part] = (small_disk / "log" / "disputes").glob("*/*")
    assert part.name.startswith("part-") and part.suffix == ".parquet"
    assert pq.read_table(part).column("request_id").to_pylist() == ["r2"] * 3
