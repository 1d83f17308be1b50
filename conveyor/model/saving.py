"""``conveyor.model.save``: a trained model, its transform graph and its signature, as one bundle."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import warnings
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conveyor._version import __version__
from conveyor.exceptions import ConveyorError, InvalidInputError, ServingError
from conveyor.model import bundle
from conveyor.model.features import feature_names
from conveyor.model.flavors import OPT_IN, ModelFlavor, flavor_named, flavor_of, module_names
from conveyor.transform.fitted import FILE_NAME, FittedGraph, load

TASKS = ("binary", "multiclass", "regression")
PROBE_ROWS = 2  # rows of zeros a model scores before its bundle is written
IntFeatures = Callable[[], Collection[str]]

__all__ = ["TASKS", "feature_graph", "integer_label", "raw_classes", "save"]


def save(
    model: Any,
    fn_args: Any = None,
    *,
    path: str | Path | None = None,
    transform_graph: Any = None,
    label: str | None = None,
    task: str | None = None,
    flavor: str | None = None,
    allow_pickle: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a bundle that ``load_model`` verifies and serves on raw rows.

    Args:
        model: a scikit-learn estimator or pipeline, a LightGBM or XGBoost Booster or
            scikit-learn wrapper, an ONNX ModelProto or ``.onnx`` path, a ``torch.nn.Module``
            (see ``conveyor.model.flavors.torch``) or a Keras 3 model. A module made private
            by ``conveyor.privacy.make_private`` is saved as its plain network, and the manifest's
            ``privacy`` records the ε spent so far.
        fn_args: the Trainer's; ``path``, ``transform_graph``, ``label`` and ``metadata``
            default from its ``serving_model_dir``, ``transform_graph``, ``label_key``,
            ``hyperparameters`` and ``seed``; a label passed through from one of its
            ``int_features`` names its classes as ints, and the signature types those
            features ``"dtype": "int64"``.
        path: the bundle's folder, new or empty.
        transform_graph: the TransformGraph the model was trained on (its folder, its
            ``transform_graph.json``, the artifact, or a ``FittedGraph``); copied into the bundle.
        label: the graph output that is the label, left out of the model's features.
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``; found from the model when not given.
        flavor: the flavor's name, when detection should not choose it.
        allow_pickle: permit the ``pickle`` flavor for a model no safe format holds; the
            bundle records it and loading must allow it by name too.
        metadata: JSON values kept in the manifest (seed, hyperparameters, ...).

    Returns:
        The bundle's folder.

    Raises:
        ServingError: the model cannot score the transform graph's features, or gives scores
            its task cannot read (``_check_scores``); the folder is left empty.

    Example:
        >>> conveyor.model.save(LogisticRegression().fit(X, y), fn_args)
    """
    if fn_args is not None:
        path = path if path is not None else fn_args.serving_model_dir
        transform_graph = transform_graph if transform_graph is not None else fn_args.transform_graph
        label = label if label is not None else getattr(fn_args, "label_key", None)
        metadata = {**_trainer_metadata(fn_args), **(metadata or {})}
    int_features = lambda: getattr(fn_args, "int_features", ())  # noqa: E731 - read only when a number feature or a label needs it
    if path is None or transform_graph is None:
        msg = "conveyor.model.save needs fn_args, or path= and transform_graph= (and label= when the graph outputs the label)."
        raise TypeError(msg)
    model, privacy = _unwrap_private(model)
    chosen = _flavor(model, flavor, allow_pickle)
    _check_json(metadata)
    folder = Path(path)
    if folder.exists() and any(folder.iterdir()):
        msg = f"cannot save a model bundle into {folder}: the folder is not empty. Save into a new folder."
        raise ServingError(msg)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        manifest = _write(model, chosen, folder, transform_graph, label, task, metadata, int_features)
    except BaseException:
        for child in folder.iterdir():  # no half bundle left behind; the folder stays, as it was given
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        raise
    if privacy is not None:
        manifest["privacy"] = privacy
    bundle.write_manifest(folder, manifest)
    return folder


def _write(
    model: Any,
    chosen: ModelFlavor,
    folder: Path,
    transform_graph: Any,
    label: str | None,
    task: str | None,
    metadata: Mapping[str, Any] | None,
    int_features: IntFeatures = tuple,
) -> dict[str, Any]:
    graph = _copy_graph(transform_graph, folder / bundle.GRAPH_DIR)
    features = feature_graph(graph, label)
    names = feature_names(features.describe(), None)
    _check_fitted_names(model, names)
    encoded = chosen.classes(model)
    classes = raw_classes(graph, label, encoded, int_features)
    task = _task(task, classes)
    (folder / bundle.MODEL_DIR).mkdir()
    _, options = chosen.save(model, folder / bundle.MODEL_DIR)
    _check_scores(model, chosen, task, classes, options, names, features)
    manifest: dict[str, Any] = {
        "format_version": bundle.FORMAT_VERSION,
        "flavor": chosen.name,
        "task": task,
        "signature": {"inputs": _inputs(features, int_features), "outputs": _outputs(task, classes)},
        "label": label,
        "transform_graph": f"{bundle.GRAPH_DIR}/{FILE_NAME}",
        "files": bundle.hash_files(folder),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "classes": classes,
        "feature_names": names,
        "flavor_options": options,
        "metadata": dict(metadata or {}),
        "conveyor_version": __version__,
    }
    if classes != encoded:
        manifest["encoded_classes"] = encoded  # the model's own classes, in the same order
    if chosen.name in OPT_IN:
        manifest["pickle"] = True
    return manifest


def feature_graph(graph: FittedGraph, label: str | None) -> FittedGraph:
    """The graph without the label's output: what predicting runs, so the label is never read."""
    return FittedGraph({name: node for name, node in graph.outputs.items() if name != label}, graph.inputs)


def raw_classes(
    graph: FittedGraph, label: str | None, classes: list[Any] | None, int_features: IntFeatures = tuple
) -> list[Any] | None:
    """The classes as raw label values when the label output is the vocabulary index of the raw label,
    or ints when it is an integer label (``integer_label``) that the model learnt as floats.

    A model trained on ``ct.compute_and_apply_vocabulary(inputs[label])`` learnt indices; its
    class ``i`` is the vocabulary's term ``i``, so predictions and the Evaluator speak in the
    values the data holds ("Yes", "Adelie"), and the probability columns keep the model's order.
    A bool label learnt as 0 and 1 (XGBoost, ONNX) names False and True; any other label (a float,
    a transformed string) keeps the model's classes.

    Raises:
        ServingError: the model learnt an index outside the vocabulary (an OOV bucket or the
            default value), which no raw value names.
    """
    terms = _label_terms(graph, label)
    if classes is None or not all(_is_index(c) for c in classes):
        return classes
    if _bool_label(graph, label) and set(classes) <= {0, 1}:
        return [bool(c) for c in classes]  # XGBoost, a LightGBM Booster, ONNX learn a bool label as 0 and 1
    if terms is None:
        return [int(c) for c in classes] if label is not None and integer_label(graph, label, int_features) else classes
    outside = [c for c in classes if not 0 <= c < len(terms)]
    if outside:
        msg = (
            f"the label {label!r} is a vocabulary index and the model learnt the class {outside[0]!r}, outside its "
            f"{len(terms)} terms (an OOV bucket or default_value), which no raw label names; give the label's "
            "vocabulary no top_k, frequency_threshold or num_oov_buckets, or drop those rows before Transform."
        )
        raise ServingError(msg)
    return [terms[int(c)] for c in classes]


def integer_label(graph: FittedGraph, label: str, int_features: IntFeatures) -> bool:
    """Whether the label output holds whole numbers by type: ``ct.cast(x, "int")``, or one of
    ``int_features()`` (the schema's int features, read only then) passed through. Transform writes
    it as float64, NaN where a row has no label, yet a user who trained on 0 and 1 expects 0 and 1.
    """
    node = graph.outputs.get(label)
    if node is None or node.kind != "number":
        return False
    if node.op == "cast":
        return bool(node.params.get("to") == "int")
    return node.op == "input" and node.params["name"] in int_features()


def _bool_label(graph: FittedGraph, label: str | None) -> bool:
    node = graph.outputs.get(label) if label is not None else None
    return node is not None and node.kind == "bool"


def _label_terms(graph: FittedGraph, label: str | None) -> list[Any] | None:
    """The vocabulary's terms, in index order, when the label output applies it to the raw label input."""
    node = graph.outputs.get(label) if label is not None else None
    if node is None or node.op != "apply_vocabulary" or node.kind != "number":
        return None
    raw, vocabulary = node.inputs
    terms = vocabulary.params.get("value")
    if raw.op != "input" or vocabulary.op not in ("vocabulary", "literal") or not isinstance(terms, list):
        return None
    return terms


def _is_index(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and float(value).is_integer()


def _flavor(model: Any, name: str | None, allow_pickle: bool) -> ModelFlavor:
    if name in OPT_IN or (name is None and allow_pickle and not _detected(model)):
        if not allow_pickle:
            msg = f"flavor {name!r} loads through pickle, which runs code from the file; pass allow_pickle=True to bundle it anyway."
            raise ServingError(msg)
        return flavor_named("pickle")
    return flavor_named(name) if name is not None else flavor_of(model)


def _unwrap_private(model: Any) -> tuple[Any, dict[str, Any] | None]:
    """An Opacus-wrapped module as the plain network, with its differential-privacy record."""
    if "opacus" not in module_names(model):
        return model, None
    from conveyor import privacy  # Opacus is imported only for a model that already uses it

    return privacy.for_bundle(model)


def _detected(model: Any) -> bool:
    try:
        flavor_of(model)
    except ServingError:
        return False
    return True


def _copy_graph(source: Any, dest: Path) -> FittedGraph:
    """Copy the graph into the bundle (its folder byte for byte; a file or object re-saved)."""
    if isinstance(source, FittedGraph):
        source.save(dest)
        return load(dest)
    src = Path(getattr(source, "uri", source))
    if src.is_dir():
        if not (src / FILE_NAME).is_file():
            msg = f"no {FILE_NAME} in {src}; pass the TransformGraph artifact's folder as transform_graph."
            raise ServingError(msg)
        shutil.copytree(src, dest)
    else:
        load(src).save(dest)
    return load(dest)


def _check_fitted_names(model: Any, names: list[str]) -> None:
    """Refuse an estimator fitted on a frame whose columns are not the graph's, in its order: it is
    handed the graph's columns by position, so it would read one feature as another."""
    fitted = getattr(model, "feature_names_in_", None)  # scikit-learn's, and LightGBM's and XGBoost's wrappers'
    if fitted is None or (fitted := [str(n) for n in fitted]) == names:
        return
    at = next((i for i, (a, b) in enumerate(zip(fitted, names, strict=False)) if a != b), min(len(fitted), len(names)))
    shown = lambda columns: ", ".join(columns[:6]) + (", ..." if len(columns) > 6 else "")  # noqa: E731
    differ = lambda columns: repr(columns[at]) if at < len(columns) else "none"  # noqa: E731
    msg = (
        f"the {type(model).__name__} was fitted on the {len(fitted)} columns [{shown(fitted)}], not on the "
        f"{len(names)} of its transform graph [{shown(names)}] in their order (column {at}: {differ(fitted)}, "
        f"the graph's {differ(names)}); serving hands it the graph's columns by position, so it would read one "
        "feature as another. Fit it on fn_args.train_data(), or a frame of its feature_names in their order."
    )
    raise ServingError(msg)


def _check_scores(
    model: Any,
    chosen: ModelFlavor,
    task: str,
    classes: list[Any] | None,
    options: Mapping[str, Any],
    names: list[str],
    features: FittedGraph,
) -> None:
    """Score rows of zeros as serving scores rows, so that a model that cannot take the transform
    graph's features (trained on other columns) or gives scores its task cannot read (three
    columns for two classes, a classifier without ``classes_`` read as a regressor) is refused
    when saved, naming what it was given, not by the Evaluator or the server in its library's words.
    A value a model refuses (``InvalidInputError``: a NaN, an infinity after a log) is a row's
    fault, which serving answers per request: no reason to refuse the model.
    """
    import numpy as np
    import scipy.sparse as sp

    from conveyor.model.loading import outputs  # loading reads the bundles saving writes: imported on call

    sparse = any(s["kind"] == "sparse" for s in features.describe().values())
    matrix = sp.csr_matrix((PROBE_ROWS, len(names))) if sparse else np.zeros((PROBE_ROWS, len(names)))
    labels = None if classes is None else np.asarray(classes)
    cause: Exception | None = None
    try:
        with warnings.catch_warnings():  # what zeros make a model say (a log's divide by zero) is no news to its user
            warnings.simplefilter("ignore")
            scores = outputs(chosen.predict(model, matrix, task, options), task, labels)
    except InvalidInputError:
        return
    except Exception as e:
        problem, cause = _cause(e), e
    else:
        counts = [f"{len(values)} {name!r}" for name, values in scores.items() if len(values) != PROBE_ROWS]
        if not counts:
            return
        problem = f"it answered {', '.join(counts)} values"
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    read = f"a {task} model" + (f" of the classes {classes}" if classes is not None else "")
    msg = (
        f"the {chosen.name} model cannot score the features of its transform graph as {read}: given "
        f"{PROBE_ROWS} rows of its {len(names)} columns ({shown}), {problem}. Train it on the columns "
        "of fn_args.train_data() and, for a classifier, set classes_ to its labels in output order."
    )
    raise ServingError(msg) from cause


def _cause(error: BaseException) -> str:
    """An error in one line, a library's with its type: terminal colours dropped, TorchScript's
    script traceback and Keras's list of the call's arguments left out."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    if lines and "TorchScript interpreter" in lines[0]:
        lines = lines[-1:]  # the cause comes last, after the scripted code's traceback
    kept = itertools.takewhile(lambda line: not line.startswith("Arguments received"), lines)
    said = " ".join(kept).rstrip(". ")
    return said if isinstance(error, ConveyorError) else f"{type(error).__name__}: {said}"


def _task(task: str | None, classes: list[Any] | None) -> str:
    if classes is not None and len(classes) < 2:
        msg = (
            f"the classifier learnt only the classes {classes}, so it has no choice to make; "
            "train it on rows of two classes or more (check the label and the training split)."
        )
        raise ServingError(msg)
    if task is None:
        return "regression" if classes is None else "binary" if len(classes) == 2 else "multiclass"
    if task not in TASKS:
        msg = f"task must be one of {list(TASKS)}, got {task!r}."
        raise ServingError(msg)
    if classes is not None and (task == "regression" or (task == "binary" and len(classes) != 2)):
        msg = f"task={task!r} does not fit a classifier with the classes {classes}; leave task out to have it found."
        raise ServingError(msg)
    return task


def _inputs(graph: FittedGraph, int_features: IntFeatures = tuple) -> dict[str, dict[str, Any]]:
    """The raw features predicting reads, with their kind and whether a request must hold them; a
    number feature the schema types int says ``"dtype": "int64"``, so that the prediction log
    writes it as the training data holds it."""
    declared = graph.inputs
    ints = set(int_features()) if any(node.kind == "number" for node in graph.plan.inputs) else set()
    out = {}
    for node in graph.plan.inputs:
        name = node.params["name"]
        out[name] = {"kind": node.kind, "required": bool(declared.get(name, {}).get("required", False))}
        if node.kind == "number" and name in ints:
            out[name]["dtype"] = "int64"
    return out


def _outputs(task: str, classes: list[Any] | None) -> dict[str, dict[str, Any]]:
    if task == "regression":
        return {"value": {"dtype": "float64", "shape": [-1]}}
    kinds = {type(c) for c in classes or [0]}
    dtype = "string" if str in kinds else "bool" if kinds == {bool} else "float64" if float in kinds else "int64"
    if task == "binary":
        return {"probability": {"dtype": "float64", "shape": [-1]}, "class": {"dtype": dtype, "shape": [-1]}}
    width = len(classes) if classes is not None else -1
    return {"probabilities": {"dtype": "float64", "shape": [-1, width]}, "class": {"dtype": dtype, "shape": [-1]}}


def _trainer_metadata(fn_args: Any) -> dict[str, Any]:
    return {
        key: getattr(fn_args, key) for key in ("seed", "hyperparameters") if getattr(fn_args, key, None) is not None
    }


def _check_json(metadata: Mapping[str, Any] | None) -> None:
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as e:
        msg = f"metadata must hold JSON values (str, number, bool, None, list, dict): {e}"
        raise TypeError(msg) from e
