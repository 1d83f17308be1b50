"""A Threshold that no model could pass, or none fail, is refused when the pipeline is built."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conveyor import Output, component
from conveyor.analysis import EvalConfig, Threshold
from conveyor.artifacts import Examples, Model
from conveyor.components import Evaluator
from conveyor.exceptions import PipelineDefinitionError


@component
def made(examples: Output[Examples], model: Output[Model]) -> None:
    pass


@pytest.mark.parametrize(
    ("threshold", "message"),
    [
        (Threshold(change=math.nan), "change is nan; it must be a finite number"),
        (
            Threshold(lower_bound=0.9, upper_bound=0.1),
            "lower_bound 0.9 is above upper_bound 0.1, so no model can hold it",
        ),
        (Threshold(change="0.1"), "change is '0.1'; it must be a finite number"),  # type: ignore[arg-type]
        (Threshold(lower_bound=True), "lower_bound is True; it must be a finite number"),  # type: ignore[arg-type]
        (Threshold(lower_bound=0.5, higher_is_better="no"), "higher_is_better is 'no'; it must be True, False or None"),  # type: ignore[arg-type]
        (Threshold(higher_is_better=True), "it sets no bound, so it judges nothing"),
    ],
    ids=["nan change", "bounds crossed", "text", "bool", "direction as text", "no bound"],
)
def test_a_threshold_that_cannot_judge_fails_when_the_pipeline_is_built(threshold: Threshold, message: str) -> None:
    """Each ran: nan or crossed bounds blessed no model with no word why, text failed mid-run, 'no' read as true."""
    step = made()
    config = EvalConfig(label_key="y", thresholds={"auc": threshold})
    with pytest.raises(PipelineDefinitionError, match=f"threshold on 'auc': {message}"):
        Evaluator(examples=step.outputs["examples"], model=step.outputs["model"], eval_config=config)


def test_numpy_numbers_and_one_sided_bounds_are_thresholds() -> None:
    step = made()
    config = EvalConfig(
        label_key="y",
        thresholds={
            "auc": Threshold(lower_bound=np.float64(0.6), change=-0.01),
            "log_loss": Threshold(upper_bound=np.int64(1)),
        },
    )
    Evaluator(examples=step.outputs["examples"], model=step.outputs["model"], eval_config=config)
