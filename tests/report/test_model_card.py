"""The model card: a differential-privacy guarantee is stated, and a model whose step failed has no card."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import Output, component
from conveyor.artifacts import Model
from conveyor.cli.model_card import gather
from conveyor.exceptions import ArtifactError, ComponentError
from conveyor.interactive import InteractiveContext
from conveyor.report.model_card import model_card_html, model_card_markdown

PRIVACY = {"mechanism": "DP-SGD", "library": "opacus", "accountant": "prv", "epsilon": 3.997, "delta": 0.000318,
           "noise_multiplier": 0.975, "max_grad_norm": 1.0, "sample_rate": 0.1, "steps": 50, "target_epsilon": 4.0}  # fmt: skip


def test_a_private_model_card_states_its_guarantee() -> None:
    card = {"title": "Model card", "model": {"id": 3, "flavor": "torch", "privacy": PRIVACY}}
    line = "differential privacy: ε=3.997 (δ=0.000318), noise multiplier 0.975, max grad norm 1.0, target ε=4, 50 steps"
    assert f"| privacy | {line} |" in model_card_markdown(card)
    assert f'<td class="l">privacy</td><td class="l">{line}</td>' in model_card_html(card)
    assert "privacy" not in model_card_markdown({"model": {"id": 4}})


def test_a_check_that_failed_by_a_hair_shows_a_value_apart_from_its_bound() -> None:
    checks = [{"metric": "auc", "kind": "lower_bound", "threshold": 0.8, "value": 0.7996, "passed": False},
              {"metric": "accuracy", "kind": "change", "threshold": 0.0, "value": 0.8006, "baseline": 0.8014,
               "passed": False}]  # fmt: skip
    card = model_card_markdown({"blessing": {"id": 9, "blessed": False, "checks": checks}})
    assert "| auc | lower_bound | 0.8 | 0.7996 | - | no |" in card
    assert "| accuracy | change | 0 | 0.8006 | 0.8014 | no |" in card


@component
def failed_training(model: Output[Model]) -> None:
    msg = "no data."
    raise ValueError(msg)


def test_a_failed_step_names_its_error_once_and_its_model_has_no_card(tmp_path: Path) -> None:
    with InteractiveContext(root=tmp_path / "root") as context:
        step = failed_training()
        with pytest.raises(ComponentError, match=r"failed: ValueError: no data\. Its log") as failed:
            context.run(step)
        assert ".." not in str(failed.value)
        [model] = context.store.artifacts(type="Model")
        with pytest.raises(ArtifactError, match=rf"^Model {model.id} is ABANDONED: the step that made it did not"):
            gather(context.store, model)
