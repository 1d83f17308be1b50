"""What a Trainer's ``run_fn`` is given: ``FnArgs``, its data accessors and its metric log."""

from __future__ import annotations

from conveyor.training.fn_args import FeatureMatrix, FnArgs

__all__ = ["FeatureMatrix", "FnArgs"]
