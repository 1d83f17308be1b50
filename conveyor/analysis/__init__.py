"""Model analysis: metrics, slicing, fairness and confidence intervals, in one mergeable pass.

It takes predict callables (``evaluation.Scorer``), never a bundle: the Evaluator loads the
model and hands its ``predict`` in. Importing this package loads only the config classes.
"""

from conveyor.analysis.config import EvalConfig, ExplainConfig, FairnessConfig, ModelCardConfig, Threshold

__all__ = ["EvalConfig", "ExplainConfig", "FairnessConfig", "ModelCardConfig", "Threshold"]
