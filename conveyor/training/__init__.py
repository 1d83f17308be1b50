"""What a Trainer's ``run_fn`` is given: ``FnArgs``, its data accessors and its metric log; and
what a Tuner's ``tuner_fn`` returns: a ``Search``."""

from __future__ import annotations

from conveyor.training.fn_args import FeatureMatrix, FnArgs
from conveyor.training.tuning import Search

__all__ = ["FeatureMatrix", "FnArgs", "Search"]
