"""A pipeline the export tests hand to Airflow and Kubeflow: a fan-out, a join and a retry.

make -> double -> report, make -> total (retried twice), and report runs after total through
``.after`` alone, with no artifact between them.
"""

from __future__ import annotations

import json
from pathlib import Path

from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact, Examples


def numbers_in(artifact: Artifact) -> list[int]:
    return json.loads((Path(artifact.uri) / "numbers.json").read_text())


@component
def make(examples: Output[Examples], *, n: Parameter[int] = 4) -> None:
    (Path(examples.uri) / "numbers.json").write_text(json.dumps(list(range(n))))


@component
def double(examples: Input[Examples], doubled: Output[Examples]) -> None:
    (Path(doubled.uri) / "numbers.json").write_text(json.dumps([2 * x for x in numbers_in(examples)]))


@component
def total(examples: Input[Examples], summed: Output[Artifact]) -> None:
    (Path(summed.uri) / "numbers.json").write_text(json.dumps([sum(numbers_in(examples))]))


@component
def report(doubled: Input[Examples], written: Output[Artifact]) -> None:
    (Path(written.uri) / "numbers.json").write_text(json.dumps(numbers_in(doubled)[::-1]))


def create_pipeline() -> Pipeline:
    made = make(n=4)
    doubled = double(examples=made.outputs["examples"])
    summed = total(examples=made.outputs["examples"]).with_retries(2)
    reported = report(doubled=doubled.outputs["doubled"]).after(summed)
    return Pipeline(name="fanout", components=[made, doubled, summed, reported])
