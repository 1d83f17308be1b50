"""A span_range Resolver gives each span once, even when ExampleGen read spans together
(``"all"`` after single spans, a rolling ``"latest:2"``): a step reading them all must not
read a span's rows twice.
"""

from __future__ import annotations

import json
from pathlib import Path

from conveyor import Input, Output, Pipeline, component
from conveyor.artifacts import Artifact, Examples
from conveyor.components import ExampleGen, Resolver


@component
def rows_per_span(spans: Input[list[Examples]], counts: Output[Artifact]) -> None:
    """The spans each Examples holds and its rows, as a step reading them all sees them."""
    import pyarrow.parquet as pq

    found = [
        (a.properties["spans"], sum(pq.ParquetFile(f).metadata.num_rows for f in Path(a.uri).rglob("*.parquet")))
        for a in spans
    ]
    (Path(counts.uri) / "counts.json").write_text(json.dumps(found))


def read(data: Path, root: Path, span: int | str) -> None:
    gen = ExampleGen(input_base=str(data), pattern="span-{SPAN}.csv", span=span)
    run = Pipeline("spans", [gen], root=root).run()
    assert run.status == "succeeded", run.executions["ExampleGen"].error


def test_spans_read_together_and_alone_are_each_given_once(tmp_path: Path) -> None:
    data, root = tmp_path / "data", tmp_path / "root"
    data.mkdir()
    rows = {1: 10, 2: 20, 3: 30, 4: 40}
    for span in (1, 2, 3):
        (data / f"span-{span}.csv").write_text("x\n" + "".join(f"{i}\n" for i in range(rows[span])))
        read(data, root, span)
    read(data, root, "all")  # spans 1-3 once more, together
    (data / "span-4.csv").write_text("x\n" + "".join(f"{i}\n" for i in range(rows[4])))
    read(data, root, "latest:2")  # spans 3 and 4 together

    resolver = Resolver(strategy="span_range")
    counted = rows_per_span(spans=resolver.outputs["examples"])
    run = Pipeline("spans", [resolver, counted], root=root).run()
    assert run.status == "succeeded", run.executions["rows_per_span"].error
    found = json.loads((Path(run.executions["rows_per_span"].outputs["counts"][0].uri) / "counts.json").read_text())
    read_spans = [span for spans, _ in found for span in spans]
    assert sorted(read_spans) == [1, 2, 3, 4]
    assert sum(n for _, n in found) == sum(rows.values())
    assert found[-1] == [[3, 4], rows[3] + rows[4]]  # the newest read of span 3 is kept
