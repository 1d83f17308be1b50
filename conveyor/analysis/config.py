"""What the Evaluator computes and judges: ``EvalConfig`` and its parts, plain dataclasses.

They are ``Parameter[EvalConfig]`` values: JSON field by field (conveyor.dsl.parameters), so
the cache key and the store hold the whole configuration, and the executor gets it back equal.
"""

from __future__ import annotations

import difflib
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

OVERALL = "Overall"


@dataclass
class Threshold:
    """The bounds a metric of the whole set must hold for the model to be blessed.

    ``lower_bound``/``upper_bound`` judge the candidate's value alone. ``change`` judges it
    against the baseline scored on the same examples: the candidate must beat the baseline by
    at least ``change`` in the better direction (0: not worse; -0.01: may lose up to 0.01),
    and by ``relative_change`` times the baseline's value when that is set. With no baseline
    (the first model) only the bounds are judged. ``higher_is_better`` is the better direction;
    None takes the metric's own (lower for ``log_loss``, ``brier``, ``mae``, ``mse``, ``rmse``
    and ``mape``, higher for the rest).
    """

    lower_bound: float | None = None
    upper_bound: float | None = None
    change: float | None = None
    relative_change: float | None = None
    higher_is_better: bool | None = None


@dataclass
class FairnessConfig:
    """Features whose every value is a group (a missing value is the group ``(missing)``), and the
    decision thresholds to judge them at; binary tasks only, and at least one of each."""

    features: list[str] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=lambda: [0.5])


@dataclass
class ExplainConfig:
    """Explanations of the model on a sample of eval rows (the ``explain`` extra: shap).

    Args:
        sample_rows: rows drawn (by ``seed``) whose SHAP values are computed and stored.
        background_rows: rows that stand in for a feature "left out" of a coalition.
        top_features: the most important features that get a partial dependence curve.
        grid_points: numeric quantiles, or most frequent categories, on each curve.
        max_evals: model calls per explained row (shap's permutation explainer), at least
            2 x features + 1 (one permutation forward and back); None: 20 x features.
        seed: the draw of the sample and the permutations, from 0 to 2**32 - 1.
    """

    sample_rows: int = 200
    background_rows: int = 50
    top_features: int = 5
    grid_points: int = 10
    max_evals: int | None = None
    seed: int = 0


@dataclass
class ModelCardConfig:
    """What a model card says that no number can: the team writes it, the Evaluator records it in metrics.json.

    ``conveyor show MODEL_ID --model-card OUT`` prints it beside the data, parameters and
    metrics it finds in the store (Google's Model Card Toolkit's "considerations").
    """

    overview: str = ""
    intended_use: str = ""
    limitations: str = ""
    ethical_considerations: str = ""
    owners: list[str] = field(default_factory=list)


@dataclass
class EvalConfig:
    """How to evaluate a model: the label, the slices, the metrics, what must hold, and fairness.

    Args:
        label_key: the raw column that holds the label.
        slicing_specs: lists of feature names, each a slice spec: ``[]`` is the whole set,
            ``["state"]`` one slice per state, ``["state", "product"]`` their cross.
        metrics: names to report (``auc``, ``f1``, ``rmse``, ...); empty: every metric of the task.
        thresholds: metric name to the ``Threshold`` its whole-set value must hold.
        fairness: groups and decision thresholds for the fairness metrics; None for none.
        min_slice_size: a slice with fewer rows is reported as too small, with no metric.
        bootstrap_replicates: Poisson bootstrap replicates for confidence intervals; 0 for none.
        seed: the seed the replicates' weights are drawn from.
        confidence: the intervals' coverage.
        example_weight_key: a column of example weights; None weighs every row 1.
        bucket_boundaries: numeric feature to the boundaries its slices are cut at;
            a float feature in a slicing spec needs them.
        decision_thresholds: the thresholds of the confusion matrices and the fairness
            rates (binary tasks); ROC and PR curves are stored apart, exact, whatever these are.
        calibration_bins: equal-width bins of the calibration curve (binary tasks).
        explain: SHAP values, importance and partial dependence on a sample; None for none.
        model_card: intended use and limitations, for the model card; None for none.
    """

    label_key: str
    slicing_specs: list[list[str]] = field(default_factory=lambda: [[]])
    metrics: list[str] = field(default_factory=list)
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    fairness: FairnessConfig | None = None
    min_slice_size: int = 1
    bootstrap_replicates: int = 0
    seed: int = 0
    confidence: float = 0.95
    example_weight_key: str | None = None
    bucket_boundaries: dict[str, list[float]] = field(default_factory=dict)
    decision_thresholds: list[float] = field(default_factory=lambda: [0.5])
    calibration_bins: int = 10
    explain: ExplainConfig | None = None
    model_card: ModelCardConfig | None = None

    def specs(self) -> list[tuple[str, ...]]:
        """Every slice spec once, the whole set first, fairness features included."""
        out: list[tuple[str, ...]] = [()]
        extra = [[f] for f in self.fairness.features] if self.fairness else []
        for spec in [*self.slicing_specs, *extra]:
            if tuple(spec) not in out:
                out.append(tuple(spec))
        return out

    def features(self) -> list[str]:
        """The raw columns the evaluation reads besides the model's inputs."""
        names = [self.label_key, *(f for spec in self.specs() for f in spec)]
        if self.example_weight_key:
            names.append(self.example_weight_key)
        return list(dict.fromkeys(names))


def config_refusal(config: Any) -> str | None:
    """What is wrong with an ``EvalConfig`` before any example is read (None if nothing): the
    Evaluator says it when the pipeline is built. A slice spec given as a bare name would be
    read letter by letter, and boundaries of a feature no spec slices by would cut nothing."""
    if not isinstance(config, EvalConfig):
        return None  # the parameter's own type check says it
    specs = config.slicing_specs
    if not isinstance(specs, list | tuple) or not all(
        isinstance(spec, list | tuple) and all(isinstance(f, str) for f in spec) for spec in specs
    ):
        return f"EvalConfig.slicing_specs is a list of slice specs, each a list of feature names ([] is the whole set), as [[], ['state']]; got {specs!r}."
    fairness = config.fairness
    for name, part, kind in (("fairness", fairness, FairnessConfig), ("explain", config.explain, ExplainConfig)):
        if part is not None and not isinstance(part, kind):
            return f"EvalConfig.{name} is a {type(part).__name__}; set it to {kind.__name__}(...) or None."
    if fairness is not None and not (
        isinstance(fairness.features, list | tuple) and all(isinstance(f, str) for f in fairness.features)
    ):
        return f"FairnessConfig.features is a list of feature names, as ['sex']; got {fairness.features!r}."
    if fairness is not None and not fairness.features:
        return "FairnessConfig.features is empty, so no group is compared; name the features whose values are the groups, as ['sex'], or set fairness=None."
    if (why := _settings_refusal(config)) is not None:
        return why
    if config.explain is not None and (why := _explain_refusal(config.explain)) is not None:
        return why
    for name, threshold in config.thresholds.items():
        if (why := threshold_refusal(threshold)) is not None:
            return f"EvalConfig's threshold on {name!r}: {why}"
    sliced = list(dict.fromkeys(f for spec in config.specs() for f in spec))
    for name in config.bucket_boundaries:
        if name not in sliced:
            close = difflib.get_close_matches(str(name), sliced, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            return f"EvalConfig.bucket_boundaries names {name!r}, which no slicing spec or fairness feature slices by: they slice by {sliced}.{hint}"
    return None


def _settings_refusal(config: EvalConfig) -> str | None:
    """Why a count, the coverage or a decision threshold cannot be what was meant (None if all can):
    each failed mid-run with numpy's words (``confidence=95``, ``bootstrap_replicates=-3``,
    ``calibration_bins=0``), or judged every row negative (a NaN threshold)."""
    counts = {"bootstrap_replicates": 0, "min_slice_size": 0, "calibration_bins": 1}
    for name, least in counts.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            return f"EvalConfig.{name} is {value!r}; it must be a whole number of at least {least}."
    if isinstance(config.seed, bool) or not isinstance(config.seed, numbers.Integral):
        return f"EvalConfig.seed is {config.seed!r}; it must be a whole number."
    confidence = config.confidence
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        return f"EvalConfig.confidence is {confidence!r}; it is a coverage between 0 and 1, as 0.95 (not 95)."
    fair = config.fairness.thresholds if config.fairness is not None else []
    for where, thresholds in (("EvalConfig.decision_thresholds", config.decision_thresholds),
                              ("FairnessConfig.thresholds", fair)):  # fmt: skip
        if not isinstance(thresholds, list | tuple):
            return f"{where} is {thresholds!r}; give a list of probabilities, as [0.5]."
        for t in thresholds:
            if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 <= t <= 1:
                return f"{where} holds {t!r}; a decision threshold is a probability in [0, 1], as 0.5."
    if config.fairness is not None and not fair:
        return "FairnessConfig.thresholds is empty, so no rate is computed; give the decision thresholds to judge the groups at, as [0.5]."
    return None


def _explain_refusal(settings: ExplainConfig) -> str | None:
    """Why an ``ExplainConfig`` cannot be what was meant (None if it can): no sample row failed
    after the whole evaluation pass as if the examples were empty, a negative ``top_features``
    drew curves for all features but the last, no grid point drew empty curves, and a budget
    under shap's least failed mid-run in its words."""
    least = {"sample_rows": 1, "background_rows": 1, "top_features": 0, "grid_points": 1, "max_evals": 3}
    for name, low in least.items():
        value = getattr(settings, name)
        if name == "max_evals" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            return f"ExplainConfig.{name} is {value!r}; it must be a whole number of at least {low}."
    seed = settings.seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        return f"ExplainConfig.seed is {seed!r}; it must be a whole number from 0 to 2**32 - 1 (numpy's legacy seed, which shap takes)."
    return None


_BOUNDS = ("lower_bound", "upper_bound", "change", "relative_change")


def threshold_refusal(threshold: Any) -> str | None:
    """Why a ``Threshold`` could never judge (None if it can): one no model could pass, or none
    fail, would bless or refuse every model in silence."""
    if not isinstance(threshold, Threshold):
        return f"it is a {type(threshold).__name__}; give a Threshold(lower_bound=..., change=...)."
    for bound in _BOUNDS:
        value = getattr(threshold, bound)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
        ):
            return f"{bound} is {value!r}; it must be a finite number (or None)."
    if all(getattr(threshold, b) is None for b in _BOUNDS):
        return f"it sets no bound, so it judges nothing; set one of {', '.join(_BOUNDS)}."
    low, high = threshold.lower_bound, threshold.upper_bound
    if low is not None and high is not None and low > high:
        return f"lower_bound {low} is above upper_bound {high}, so no model can hold it; swap them."
    if threshold.higher_is_better is not None and not isinstance(threshold.higher_is_better, bool):
        return f"higher_is_better is {threshold.higher_is_better!r}; it must be True, False or None (the metric's own)."
    return None
