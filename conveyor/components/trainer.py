"""Trainer: run the user's ``run_fn`` on the transformed examples and keep the model bundle it saves (TFX's Trainer)."""

from __future__ import annotations

import contextlib
import difflib
import json
import random
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor._internal.loader import call_user_fn, function_of, load_step_module
from conveyor.artifacts import (
    Examples,
    HyperParameters,
    Model,
    ModelRun,
    Schema,
    TransformGraph,
    check_splits,
    split_files,
    split_names,
)
from conveyor.dsl.component import Component, ComponentSpec
from conveyor.dsl.parameters import check, is_config
from conveyor.dsl.types import FilePath, Input, Output, Parameter
from conveyor.exceptions import ComponentError, PipelineDefinitionError, TransformError

if TYPE_CHECKING:
    from conveyor.training.fn_args import FnArgs

HYPERPARAMETERS_FILE = "hyperparameters.json"


class Trainer(Component):
    """Train a model with any Python library: the module file's ``run_fn(fn_args)`` fits it on
    the transformed examples and ends with ``conveyor.model.save(model, fn_args)``.

    ``fn_args`` (``conveyor.training.FnArgs``) gives the data ready for ``fit``
    (``X, y = fn_args.train_data()``, ``fn_args.eval_data()``, ``fn_args.train_batches()``),
    the transform graph, the schema, the hyperparameters, where to save, the base model to
    continue from (``fn_args.load_base_model()``) and a metric log (``fn_args.log_metric``)
    written as JSON lines and TensorBoard event files. ``random`` and NumPy (and torch, when the
    module imports it) are seeded with ``seed`` before ``run_fn``; with the same inputs and seed,
    scikit-learn and LightGBM give the same model bytes.

    Args:
        module_file: the Python file with ``run_fn``; its content, and that of the modules of
            yours it imports, is in the cache key: editing either runs the Trainer again.
        examples: Transform's ``transformed_examples``.
        transform_graph: Transform's ``transform_graph``; the bundle carries it, so the model
            takes raw rows.
        schema: the raw data's schema.
        hyperparameters: a Tuner's ``best_hyperparameters`` (``hyperparameters.json``).
        train_args: passed to ``run_fn`` (``num_steps``, ``epochs``, ...); ``train_splits`` and
            ``eval_splits`` name the splits read as training and evaluation data
            (default ``["train"]`` and ``["eval"]``).
        custom_config: anything else ``run_fn`` needs, as JSON: a dict, or a dataclass or pydantic
            model, which ``run_fn`` gets as the dict of its fields' JSON values.
        base_model: a model to continue from (warm start), such as a Resolver's latest blessed one.
        label_key: the transform output that is the label; by default the schema's one feature
            with ``not_in_environments: [SERVING]``.
        seed: the seed set before ``run_fn`` and recorded in the model's properties.

    Outputs:
        model: the bundle ``conveyor.model.save`` wrote; properties ``flavor``, ``task``,
            ``label``, ``seed``, ``feature_count``.
        model_run: ``metrics.jsonl`` and ``tensorboard/``; properties ``metrics_file`` and
            ``tensorboard_dir`` (relative to the artifact's folder) when written.

    Example:
        >>> trainer = Trainer(module_file="trainer.py", examples=transform.outputs["transformed_examples"],
        ...                   transform_graph=transform.outputs["transform_graph"],
        ...                   schema=schema_gen.outputs["schema"], label_key="species")
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        args, kwargs = custom_config_as_json(self.component_spec(), type(self).__name__, args, kwargs)
        super().__init__(*args, **kwargs)
        check_train_args(self.id, self.parameters.get("train_args"))

    @staticmethod
    def execute(
        module_file: Parameter[FilePath],
        examples: Input[Examples],
        transform_graph: Input[TransformGraph],
        schema: Input[Schema],
        hyperparameters: Input[HyperParameters] | None = None,
        train_args: Parameter[dict | None] = None,
        custom_config: Parameter[dict | None] = None,
        base_model: Input[Model] | None = None,
        *,
        model: Output[Model],
        model_run: Output[ModelRun],
        label_key: Parameter[str | None] = None,
        seed: Parameter[int] = 0,
    ) -> None:
        from conveyor.model.features import feature_names
        from conveyor.training.fn_args import METRICS_FILE, TENSORBOARD_DIR

        run_fn = load_run_fn(module_file)
        fn_args, spec = step_fn_args(
            "Trainer", examples, transform_graph, schema, label_key=label_key, train_args=train_args,
            custom_config=custom_config, seed=seed, serving_model_dir=model.uri, model_run_dir=model_run.uri,
            hyperparameters=_hyperparameters(hyperparameters),
            base_model=base_model.uri if base_model is not None else None,
        )  # fmt: skip
        label, splits = fn_args.label_key, fn_args.splits
        print(
            f"training on splits {splits['train']} ({len(fn_args.train_files)} Parquet file(s)), label {label!r}, seed {seed}"
        )
        try:
            with _GLOBAL_GENERATORS:
                seed_everything(seed)
                call_user_fn(run_fn, fn_args, file=module_file, what="run_fn", error=ComponentError)
        finally:
            fn_args.close()
        manifest = _saved_bundle(model.uri, module_file)
        model.properties.update(flavor=manifest.get("flavor"), task=manifest.get("task"), label=label, seed=seed)
        with contextlib.suppress(TransformError):  # text outputs a run_fn read as a table have no matrix columns
            model.properties["feature_count"] = len(feature_names(spec, label))
        if base_model is not None:
            model.properties["base_model"] = base_model.id
        run_files = {"metrics_file": METRICS_FILE, "tensorboard_dir": TENSORBOARD_DIR}
        model_run.properties.update({k: v for k, v in run_files.items() if (Path(model_run.uri) / v).exists()})


def _saved_bundle(folder: str, module_file: str) -> dict[str, Any]:
    """The manifest of the bundle run_fn saved, checked as ``load_model`` checks it: a bundle that
    serving would refuse (a file written beside it after saving) fails the Trainer, not the Pusher."""
    from conveyor.exceptions import ServingError
    from conveyor.model import bundle

    if not (Path(folder) / bundle.MANIFEST).is_file():
        msg = f"Trainer: {module_file}: run_fn returned without saving a model in serving_model_dir; run_fn must end with conveyor.model.save(model, fn_args)."
        raise ComponentError(msg)
    try:
        manifest = bundle.read_manifest(Path(folder))
        bundle.verify(Path(folder), manifest)
    except ServingError as e:
        msg = f"Trainer: {module_file}: the bundle run_fn saved cannot be served: {e} Write nothing into serving_model_dir but conveyor.model.save's bundle; other files go to fn_args.model_run_dir."
        raise ComponentError(msg) from e
    return manifest


def custom_config_as_json(
    spec: ComponentSpec, display: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments with a ``custom_config`` given as a dataclass or pydantic model turned into
    its JSON object (by the one rule of ``conveyor.dsl.parameters``): ``run_fn`` reads it as a dict.
    """
    try:
        bound = spec.binding.bind_partial(*args, **kwargs)
    except TypeError:
        return args, kwargs  # the step says what is wrong with them
    value = bound.arguments.get("custom_config")
    if value is None or not is_config(type(value)):
        return args, kwargs
    bound.arguments["custom_config"] = check(display, "custom_config", type(value), value)
    return bound.args, bound.kwargs


def load_run_fn(path: str) -> Callable[..., Any]:
    """``run_fn`` of a module file, imported as Transform imports ``preprocessing_fn``: the
    user's modules it uses are declared, so an edit to one runs the Trainer again.
    """
    loaded = load_step_module(path, what="module file", error=ComponentError)
    return function_of(loaded, "run_fn", purpose="run_fn(fn_args), which Trainer calls", error=ComponentError)


def step_fn_args(
    what: str,
    examples: Examples,
    transform_graph: TransformGraph,
    schema: Schema,
    *,
    label_key: str | None,
    train_args: dict[str, Any] | None,
    custom_config: dict[str, Any] | None,
    seed: int,
    **fields: Any,
) -> tuple[FnArgs, dict[str, dict[str, Any]]]:
    """The ``fn_args`` a Trainer's ``run_fn`` or a Tuner's ``tuner_fn`` gets, and the transformed
    examples' spec; ``fields`` are the step's own (model folders, hyperparameters, base model).

    Raises:
        ComponentError: (its message starts with ``what``) the examples are not Transform's, or
            the label is unknown or not an output of ``preprocessing_fn``.
    """
    from conveyor.training.fn_args import FnArgs
    from conveyor.transform.transformed import SCHEMA_FILE, read_schema

    if not (Path(examples.uri) / SCHEMA_FILE).exists():
        msg = f"{what}: examples at {examples.uri} have no {SCHEMA_FILE}; pass Transform's outputs['transformed_examples']."
        raise ComponentError(msg)
    spec = read_schema(examples.uri)
    label = label_key or label_from_schema(schema.uri, what)
    if label not in spec:
        close = difflib.get_close_matches(label, sorted(spec), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        msg = f"{what}: the label {label!r} is not an output of preprocessing_fn, which returns {sorted(spec)}.{hint} Return the label from it, or pass label_key."
        raise ComponentError(msg)
    train_args = dict(train_args or {})
    splits = _splits(examples.uri, train_args, what)
    _check_train_rows(examples.uri, splits["train"], what)
    fn_args = FnArgs(
        train_files=[str(f) for s in splits["train"] for f in split_files(examples.uri, s)],
        eval_files=[str(f) for s in splits["eval"] for f in split_files(examples.uri, s)],
        examples=examples.uri,
        transform_graph=transform_graph.uri,
        schema=str(Path(schema.uri) / Schema.FILE),
        label_key=label,
        custom_config=dict(custom_config or {}),
        train_args=train_args,
        seed=seed,
        splits=splits,
        **fields,
    )
    return fn_args, spec


def label_from_schema(schema_uri: str, what: str = "Trainer") -> str:
    """The one feature the schema keeps out of SERVING: what the model predicts."""
    from conveyor.data.schema import Schema as SchemaFile

    schema = SchemaFile.load(schema_uri)
    candidates = [f.name for f in schema.features if not schema.in_environment(f, "SERVING")]
    if len(candidates) != 1:
        found = f"features {candidates}" if candidates else "no feature"
        msg = f"{what}: the schema marks {found} with not_in_environments: [SERVING], so the label is not known; pass label_key='<the label output>'."
        raise ComponentError(msg)
    return candidates[0]


# Trainers of one process take turns: random's, NumPy's and torch's generators are global, so
# two run_fns at once would draw from each other's seeded sequences.
_GLOBAL_GENERATORS = threading.Lock()


def seed_everything(seed: int) -> None:
    """Seed the global generators run_fn may use: random, NumPy, and torch once imported (by the module file)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        import torch  # not sys.modules' entry: another thread may still be importing it; this waits

        torch.manual_seed(seed)


def _splits(uri: str, train_args: dict[str, Any], what: str) -> dict[str, list[str]]:
    """The training and evaluation split names; a named split the examples lack is an error, and
    so is a missing ``train`` split; a missing ``eval`` split, by default, leaves none to evaluate on."""
    held = split_names(uri)
    splits = {
        "train": list(train_args.get("train_splits", ["train"])),
        "eval": list(train_args.get("eval_splits", ["eval"])),
    }
    for role, names in splits.items():
        if role == "train" or f"{role}_splits" in train_args:
            check_splits(names, held, what=f"{what}: train_args['{role}_splits']", error=ComponentError)
        splits[role] = [s for s in names if s in held]
    return splits


def _check_train_rows(uri: str, train: list[str], what: str) -> None:
    """Refuse training splits with no row, by name: run_fn would fail in the library's own words
    (scikit-learn's "Found array with 0 sample(s)"), which do not say which split was empty."""
    import pyarrow.parquet as pq

    rows = {s: sum(pq.read_metadata(f).num_rows for f in split_files(uri, s)) for s in split_names(uri)}
    if not any(rows[s] for s in train):
        counts = ", ".join(f"{s}: {n}" for s, n in rows.items())
        msg = (f"{what}: the examples at {uri} hold no rows in {' or '.join(map(repr, train)) or 'no split'} (rows per split: "
               f"{counts}), so there is nothing to train on; give that split rows (ExampleGen's input, splits or "
               "span), or name a split that has some in train_args['train_splits'].")  # fmt: skip
        raise ComponentError(msg)


def check_train_args(display: str, train_args: Any) -> None:
    """Refuse, when the pipeline is built, split names that are not a list of strings: a string
    would be read letter by letter."""
    for key in ("train_splits", "eval_splits"):
        names = (train_args or {}).get(key) if isinstance(train_args, dict) else None
        if names is not None and not (isinstance(names, list | tuple) and all(isinstance(n, str) for n in names)):
            msg = f"{display}(): train_args['{key}'] must be a list of split names, e.g. ['train']; got {names!r}."
            raise PipelineDefinitionError(msg)


def _hyperparameters(artifact: HyperParameters | None) -> dict[str, Any]:
    if artifact is None:
        return {}
    path = Path(artifact.uri) / HYPERPARAMETERS_FILE
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        msg = f"Trainer: cannot read the hyperparameters {path}: {e}. A Tuner's best_hyperparameters hold it."
        raise ComponentError(msg) from e
    if not isinstance(values, dict):
        msg = f"Trainer: the hyperparameters {path} hold a JSON {type(values).__name__}, not an object of name to value, as a Tuner's best_hyperparameters hold."
        raise ComponentError(msg)
    return values
