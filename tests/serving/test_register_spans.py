"""The prediction register read back as ExampleGen spans when the versions served differ in the
features they read: every part of a model's day must have the columns the others have."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.artifacts import Examples
from conveyor.components import ExampleGen
from conveyor.model import label_vector, save, to_matrix
from conveyor.serving.config import ModelConfig, PredictionLogConfig, VersionPolicy
from conveyor.transform.fitted import load
from tests.model import graphs

pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def two_signatures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 1 reads amount and product; version 2, the canary, also state and narrative."""
    root = tmp_path_factory.mktemp("signatures")
    for version, sparse in ((1, False), (2, True)):
        graph_dir = graphs.saved("multiclass", root / f"graph{version}", sparse=sparse)
        graph = load(graph_dir)
        columns = graph.apply(graphs.table())
        x, _ = to_matrix(columns, graph.describe(), "segment")
        model = LogisticRegression(max_iter=500).fit(x, label_vector(columns, "segment"))
        save(model, path=root / "segments" / str(version), transform_graph=graph_dir, label="segment")
    return root / "segments"


def test_parts_of_versions_reading_other_features_make_one_readable_span(two_signatures: Path, tmp_path: Path) -> None:
    """A canary reading a feature the stable version does not: a part holding only the stable
    version's requests lacked that column, and ExampleGen refused the day's span."""
    from conveyor.serving import ModelServer

    log = PredictionLogConfig(tmp_path / "predictions", sample_rate=1.0, flush_rows=1)
    model = ModelConfig("segments", two_signatures, VersionPolicy("all"), {"stable": 1, "canary": 2})
    rows = graphs.requests(4)
    sent = 0
    with ModelServer({"segments": model}, rest_port=0, grpc_port=0, poll_seconds=0, prediction_log=log) as server:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        client = http.client.HTTPConnection(host, int(port), timeout=30)
        for label in ("stable", "canary", "stable", "stable"):
            client.request("POST", f"/v1/models/segments/labels/{label}:predict", json.dumps({"instances": rows}))
            response = client.getresponse()
            assert response.status == 200, response.read()
            response.read()
            sent += len(rows)
        client.close()

    parts = sorted((tmp_path / "predictions" / "segments").glob("*/part-*.parquet"))
    assert len(parts) == 4
    assert {tuple(pq.read_schema(p).names) for p in parts} == {tuple(pq.read_schema(parts[0]).names)}
    (tmp_path / "examples").mkdir()
    examples = Examples(uri=str(tmp_path / "examples"))
    ExampleGen.execute(
        examples, input_base=str(tmp_path / "predictions" / "segments"), pattern="{YYYY}-{MM}-{DD}/*.parquet"
    )
    assert sum(examples.properties["row_counts"].values()) == sent
    read = [
        row
        for s in examples.properties["split_names"]
        for row in pq.read_table(tmp_path / "examples" / f"Split-{s}").to_pylist()
    ]
    assert {row["model_version"] for row in read} == {1, 2}
    sent_narratives = sorted([r["narrative"] for r in rows if "narrative" in r] * 4)
    assert sorted(row["narrative"] for row in read if row["narrative"] is not None) == sent_narratives, (
        "the narrative as sent is logged for the rows of either version"
    )
