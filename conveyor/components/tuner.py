"""Tuner: search the hyperparameters of the user's ``tuner_fn`` with Optuna, for a Trainer (TFX's Tuner)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conveyor.artifacts import Examples, HyperParameters, Schema, TransformGraph
from conveyor.components.trainer import HYPERPARAMETERS_FILE, check_train_args, custom_config_as_json, step_fn_args
from conveyor.dsl.component import Component
from conveyor.dsl.types import FilePath, Input, Output, Parameter
from conveyor.exceptions import PipelineDefinitionError


class Tuner(Component):
    """Find the hyperparameters that score best, by trials of the module file's objective, and
    hand them to a Trainer (``hyperparameters=tuner.outputs["best_hyperparameters"]``).

    The module file defines ``tuner_fn(fn_args)`` returning ``conveyor.training.Search(objective,
    space=None, direction="maximize")``; ``objective(trial, fn_args)`` asks Optuna's ``trial`` for
    values (``trial.suggest_float``, ``suggest_int``, ``suggest_categorical``), trains on
    ``fn_args.train_data()``, and returns its score on ``fn_args.eval_data()``. To be pruned it
    reports a score per step (``trial.report(score, step)``) and raises ``optuna.TrialPruned()``
    when ``trial.should_prune()``. ``fn_args`` is a Trainer's (``conveyor.training.FnArgs``);
    a trial keeps no model. Needs ``pip install 'conveyor[tune]'``.

    Args:
        module_file: the Python file with ``tuner_fn``; its content, and that of the modules of
            yours it imports, is in the cache key: editing either runs the Tuner again.
        examples: Transform's ``transformed_examples``.
        transform_graph: Transform's ``transform_graph``.
        schema: the raw data's schema.
        max_trials: how many trials to run (the grid sampler stops sooner once its grid is done).
        train_args: as a Trainer's: ``train_splits`` and ``eval_splits`` name the splits read.
        custom_config: anything else ``tuner_fn`` needs, as JSON (a dataclass or pydantic model as
            the dict of its fields, as for a Trainer).
        sampler: "tpe" (Optuna's default, random for its first 10 trials), "random", or "grid"
            (``Search.space`` is the grid).
        pruner: "median" (stop a trial whose reported score at a step is worse than the median of
            the completed trials at that step, once two have completed), "hyperband", or None.
        workers: processes that run trials at once; each loads the module file and shares the study.
        seed: seeds the sampler (worker ``i`` uses ``seed + i``, but the grid sampler ``seed`` in
            every worker, which then share one order of the grid) and ``fn_args.seed``.
        label_key: the transform output that is the label; by default the schema's one feature
            with ``not_in_environments: [SERVING]``.

    Outputs:
        best_hyperparameters: ``hyperparameters.json`` (the best trial's parameters, which the
            Trainer reads), ``trials.json`` (every trial's number, parameters, value, state,
            intermediate values and process id) and ``study.journal`` (the Optuna study, which
            ``optuna.load_study`` opens with a ``JournalStorage``); properties ``best_value``,
            ``best_trial``, and ``trials_complete``, ``trials_pruned``, ``trials_failed``.

    Example:
        >>> tuner = Tuner(module_file="tuner.py", examples=transform.outputs["transformed_examples"],
        ...               transform_graph=transform.outputs["transform_graph"],
        ...               schema=schema_gen.outputs["schema"], max_trials=20, workers=2)
        >>> trainer = Trainer(..., hyperparameters=tuner.outputs["best_hyperparameters"])
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Refuse a sampler, pruner, budget or split names that cannot run when the pipeline is built,
        not after its inputs are made; keep a config object given as ``custom_config`` as its JSON."""
        args, kwargs = custom_config_as_json(self.component_spec(), type(self).__name__, args, kwargs)
        super().__init__(*args, **kwargs)
        check_train_args(self.id, self.parameters.get("train_args"))
        from conveyor.training.tuning import settings_refusal

        p = self.parameters
        if refusal := settings_refusal(p["max_trials"], p["sampler"], p["pruner"], p["workers"]):
            msg = f"{self.id}(): {refusal}"
            raise PipelineDefinitionError(msg)

    @staticmethod
    def execute(
        module_file: Parameter[FilePath],
        examples: Input[Examples],
        transform_graph: Input[TransformGraph],
        schema: Input[Schema],
        max_trials: Parameter[int] = 10,
        train_args: Parameter[dict | None] = None,
        custom_config: Parameter[dict | None] = None,
        *,
        best_hyperparameters: Output[HyperParameters],
        sampler: Parameter[str] = "tpe",
        pruner: Parameter[str | None] = "median",
        workers: Parameter[int] = 1,
        seed: Parameter[int] = 0,
        label_key: Parameter[str | None] = None,
    ) -> None:
        from conveyor.training.tuning import tune

        fn_args, _ = step_fn_args(
            "Tuner", examples, transform_graph, schema, label_key=label_key, train_args=train_args,
            custom_config=custom_config, seed=seed,
            serving_model_dir="", model_run_dir="",  # each trial gets a scratch folder
        )  # fmt: skip
        print(f"tuning {module_file}: {max_trials} trial(s), sampler {sampler}, pruner {pruner}, {workers} worker(s)")
        result = tune(
            module_file,
            fn_args,
            best_hyperparameters.uri,
            max_trials=max_trials,
            sampler=sampler,
            pruner=pruner,
            workers=workers,
            seed=seed,
        )
        (Path(best_hyperparameters.uri) / HYPERPARAMETERS_FILE).write_text(
            json.dumps(result.best_params, indent=1) + "\n", encoding="utf-8"
        )
        print(f"best value {result.best_value:.6g} (trial {result.best_trial}): {result.best_params}")
        best_hyperparameters.properties.update(
            best_value=result.best_value,
            best_trial=result.best_trial,
            trials_complete=result.states.get("COMPLETE", 0),
            trials_pruned=result.states.get("PRUNED", 0),
            trials_failed=result.states.get("FAIL", 0),
        )
