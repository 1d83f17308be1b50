"""One pass over the examples: every model scored, every slice's metrics, fairness and intervals.

``EvalCombiner`` is of the one Combiner shape (DESIGN 3): a batch is ``(position of its first
row in the split, raw rows)``; each model's ``Scorer`` predicts on the raw rows there, so the
candidate and the baseline are judged on the same examples in the same pass. ``evaluate``
folds it over Parquet files on the step's engine; ``validate`` judges the result.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from conveyor._internal.combiner import Combiner
from conveyor._internal.engine import fold
from conveyor.analysis import fairness
from conveyor.analysis.config import EvalConfig
from conveyor.analysis.intervals import bounds, replicate_weights
from conveyor.analysis.metrics import LOWER_IS_BETTER, METRICS, BinaryMetrics, MulticlassMetrics, RegressionMetrics
from conveyor.analysis.slicing import slice_codes
from conveyor.data.examples import PART_ROWS, parts, read_frames
from conveyor.exceptions import DataValidationError

FORMAT_VERSION = 1
CANDIDATE = "candidate"
BASELINE = "baseline"
# weight columns drawn and summed at once: memory ~ rows x 8 bytes x this, a few times; one
# keeps the arrays small enough for the C allocator to reuse, where larger ones are mapped and
# faulted in afresh each time (measured: 1 column a block ran extract in 2.8 s, 4 in 5.2 s)
REPLICATE_BLOCK = 1
PROBABILITY_SLACK = 1e-6  # past [0, 1] by float32 rounding at most; more is a fault of the model
# metrics that are tables (curves, matrices), which no threshold can bound
_NOT_NUMBERS = frozenset({"calibration", "confusion_matrix", "per_class"})


@dataclass
class Scorer:
    """A model as the evaluation sees it: a predict callable on raw rows, never a bundle.

    ``predict`` returns the loader's outputs (``probability``, ``probabilities`` or ``value``);
    ``target`` gives the label in the model's class space (its transform of the raw label),
    by default the raw ``label_key`` column.
    """

    predict: Callable[[pl.DataFrame], Mapping[str, np.ndarray]]
    task: str
    classes: list[Any] | None = None
    target: Callable[[pl.DataFrame], Any] | None = None


@dataclass
class Rows:
    """The pass's state: the columns of the rows it has seen, in split order (see ``EvalCombiner``)."""

    runs: list[tuple[int, int]]  # (position in the split of a batch's first row, its rows)
    weight: np.ndarray | None  # the example weights; None weighs every row 1
    slices: list[tuple[np.ndarray, list[str]]]  # per slicing spec: each row's code into the sorted names
    outputs: dict[str, tuple[np.ndarray, np.ndarray]]  # per model: label in its terms, prediction


Accumulator = list[Rows]  # in split order; ``compact`` joins them into one


class EvalCombiner(Combiner):
    """Every model's metrics in every slice, with bootstrap intervals, from the rows' own columns.

    The state is the rows themselves, as small columns: the prediction (8 bytes), the label
    (1 byte for a binary model), the example weight when one is given (8), and each slicing
    spec's slice as a small code (1 byte up to 256 slices). With the whole set and three
    specs that is 13 bytes a row, 21 with example weights: 100M rows hold 1.3 to 2.1 GB.
    Batches are appended and merged by concatenation in part order; everything is computed
    at ``extract``: one sort by score and per slicing spec a radix sort of it by slice, then
    cumulative sums give AUC, average precision and the confusion counts at every threshold,
    exactly. An exact AUC needs every distinct score of a slice, which for continuous scores
    is every row: state that grows with the rows is its price. When that is too much,
    evaluate a sample of the split; the bootstrap intervals show what the sample costs.
    (Multiclass and regression metrics need no order, but keep the rows too, so that their
    replicates are drawn the same way.)

    The replicates' Poisson weights are drawn at ``extract`` from (seed, replicate, the row's
    position in the split), never stored, ``REPLICATE_BLOCK`` columns at a time on ``workers``
    threads; without example weights they take a byte a row. ``extract`` holds, besides, 12
    to 20 bytes a row of sort indices per slicing spec and about 40 a row for the sort by
    score, the log loss and Brier terms, the calibration bin and the cell. The numbers and
    the bounds are the same whatever the batching, parts or threads.
    """

    def __init__(self, config: EvalConfig, models: Mapping[str, Scorer], workers: int = 1) -> None:
        tasks = {s.task for s in models.values()}
        if len(tasks) != 1:
            msg = f"the models to compare have different tasks {sorted(tasks)}; compare models of one task."
            raise DataValidationError(msg)
        self.config, self.models, self.task = config, dict(models), tasks.pop()
        self.workers = workers
        self.specs = config.specs()
        _check_classes(self.models, self.task)
        if config.fairness is not None and self.task != "binary":
            # its rates are of a positive class at a decision threshold: left out, the asked-for
            # fairness was missing from metrics.json with no word
            msg = (
                f"EvalConfig.fairness compares groups at decision thresholds, which only a binary model has; "
                f"this model is {self.task}: set fairness=None, or slice by {config.fairness.features} to compare its metrics."
            )
            raise DataValidationError(msg)
        if self.task == "binary":
            fair = config.fairness.thresholds if config.fairness else []
            self.kind: Any = BinaryMetrics(config.decision_thresholds, config.calibration_bins, fair)
        elif self.task == "multiclass":
            # every model's classes in one order, so that their confusion matrices line up
            self.classes = list(dict.fromkeys(c for s in models.values() for c in s.classes or []))
            self.kind = MulticlassMetrics(self.classes)
        else:
            self.kind = RegressionMetrics()
        self.names = _checked_names(config, self.task)

    def create(self) -> Accumulator:
        return []

    def add_batch(self, acc: Accumulator, batch: tuple[int, pl.DataFrame]) -> Accumulator:
        start, frame = batch
        if frame.height == 0:
            return acc
        weight = self._weight(frame, start)
        slices = []
        for spec in self.specs:
            codes, names = slice_codes(frame, spec, self.config.bucket_boundaries)
            slices.append((codes.astype(np.min_scalar_type(len(names))), names))
        outputs = {name: self._score(name, scorer, frame, start) for name, scorer in self.models.items()}
        acc.append(Rows([(start, frame.height)], weight, slices, outputs))
        return acc

    def merge(self, accs: Iterable[Accumulator]) -> Accumulator:
        return [rows for acc in accs for rows in acc]

    def compact(self, acc: Accumulator) -> Accumulator:
        return [_join(acc)] if acc else acc

    def extract(self, acc: Accumulator) -> dict[str, Any]:
        if not acc:  # no metric and no threshold has a value: nothing to judge a model on
            msg = "there are no examples to evaluate: the splits have no rows; evaluate a split that has some."
            raise DataValidationError(msg)
        rows = _join(acc)
        states, plans = self._states(rows)
        slices = []
        fairness_by_model = {name: self._fairness(states[name]) for name in self.models}
        for i, spec in enumerate(self.specs):
            for slice_name, state in states[CANDIDATE][i].items():
                entry: dict[str, Any] = {"slice": slice_name, "features": list(spec)}
                if state.rows < self.config.min_slice_size:
                    slices.append({**entry, "too_small": True})
                    continue
                entry.update(self._numbers(state))
                entry["fairness"] = fairness_by_model[CANDIDATE]["slices"].get((i, slice_name))
                for name in self.models:
                    if name != CANDIDATE:
                        entry[name] = self._numbers(states[name][i][slice_name])
                slices.append(entry)
        out: dict[str, Any] = {"format_version": FORMAT_VERSION, "task": self.task, "label_key": self.config.label_key,
                               "models": list(self.models), "slices": slices}  # fmt: skip
        if self.task == "binary":
            from conveyor.analysis.curves import curves

            out["curves"] = {
                name: curves(*rows.outputs[name], rows.weight, plans[name].by_score) for name in self.models
            }
        if self.config.fairness is not None:
            out["fairness"] = fairness_by_model[CANDIDATE]["features"]
            if BASELINE in self.models:
                out["baseline_fairness"] = fairness_by_model[BASELINE]["features"]
        return out

    def _states(self, rows: Rows) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
        """Per model, per slicing spec: slice name to the state its numbers come from, names sorted; and the plans.

        Blocks of weight columns run on ``workers`` threads and are joined in column order,
        so the numbers do not depend on the threads.
        """
        slicings = [(codes, len(names)) for codes, names in rows.slices]
        positions = np.concatenate([np.arange(start, start + n, dtype=np.uint64) for start, n in rows.runs])
        columns = 1 + self.config.bootstrap_replicates

        with ThreadPoolExecutor(max(1, self.workers)) as pool:
            plans = {name: self.kind.prepare(slicings, *rows.outputs[name], pool.map) for name in self.models}

            def block(first: int) -> dict[str, Any]:
                # without example weights every weight is a small integer: a byte a row
                dtype = np.uint8 if rows.weight is None else np.float64
                weights = np.empty((min(REPLICATE_BLOCK, columns - first), len(positions)), dtype=dtype)
                for j, column in enumerate(range(first, first + len(weights))):
                    draws = replicate_weights(self.config.seed, column - 1, positions) if column else 1
                    weights[j] = draws if rows.weight is None else rows.weight * draws
                return {name: self.kind.add(plan, weights, first) for name, plan in plans.items()}

            blocks = list(pool.map(block, range(0, columns, REPLICATE_BLOCK)))
        states = {
            name: [
                dict(zip(names, self.kind.join([b[name][i] for b in blocks]), strict=True))
                for i, (_, names) in enumerate(rows.slices)
            ]
            for name in self.models
        }
        return states, plans

    def _numbers(self, state: Any) -> dict[str, Any]:
        """A slice's metrics and intervals, those the config asks for."""
        values = self.kind.values(state)
        metrics: dict[str, Any] = {"example_count": state.rows}
        metrics.update({k: _number(v[0]) for k, v in values.items()})
        metrics.update(self.kind.details(state))
        metrics = {k: v for k, v in metrics.items() if k in self.names}
        intervals = {}
        if self.config.bootstrap_replicates:
            asked = [k for k in values if k in self.names]
            replicates = np.array([values[k][1:] for k in asked], dtype=np.float64).reshape(len(asked), -1)
            intervals = dict(zip(asked, bounds(replicates, self.config.confidence), strict=True))
        return {"example_count": state.rows, "metrics": metrics, "intervals": intervals}

    def _fairness(self, per_spec: list[dict[str, Any]]) -> dict[str, Any]:
        config = self.config.fairness
        if config is None:
            return {"slices": {}, "features": {}}

        def at_thresholds(state: Any) -> dict[float, dict[str, float | None]]:
            return {t: fairness.rates(self.kind.counts(state, t)) for t in config.thresholds}

        overall = at_thresholds(next(iter(per_spec[0].values()))) if per_spec[0] else {}
        slices, features = {}, {}
        for feature in config.features:
            i = self.specs.index((feature,))
            groups = {n: at_thresholds(s) for n, s in per_spec[i].items() if s.rows >= self.config.min_slice_size}
            slices.update({(i, n): fairness.slice_fairness(r, overall) for n, r in groups.items()})
            features[feature] = fairness.feature_fairness(groups)
        if per_spec[0]:
            slices[(0, next(iter(per_spec[0])))] = fairness.slice_fairness(overall, overall)
        return {"slices": slices, "features": features}

    def _weight(self, frame: pl.DataFrame, start: int) -> np.ndarray | None:
        """The batch's example weights, checked; None when every row weighs 1."""
        key = self.config.example_weight_key
        if key is None:
            return None
        if key not in frame.schema:
            msg = f"example_weight_key {key!r} is not a column of the examples; columns are {', '.join(frame.columns)}."
            raise DataValidationError(msg)
        if not frame.schema[key].is_numeric():
            msg = f"the example weight column {key!r} is {frame.schema[key]}, not a number; give a numeric column."
            raise DataValidationError(msg)
        weight = frame[key].cast(pl.Float64).fill_null(np.nan).to_numpy()
        if np.isnan(weight).any():
            msg = f"the example weight column {key!r} has {int(np.isnan(weight).sum())} missing value(s) near row {start}; fill them or drop those rows."
            raise DataValidationError(msg)
        # a negative or infinite weight gives no metric a meaning (an AUC of -3, a precision of NaN)
        if (bad := ~np.isfinite(weight) | (weight < 0)).any():
            msg = (
                f"the example weight column {key!r} holds {float(weight[bad][0])} near row {start} "
                f"({int(bad.sum())} such value(s)); weights must be finite and at least 0."
            )
            raise DataValidationError(msg)
        return weight

    def _score(self, name: str, scorer: Scorer, frame: pl.DataFrame, start: int) -> tuple[np.ndarray, np.ndarray]:
        """The label in the model's terms (0/1, class index or value) and the prediction the metrics take."""
        raw = scorer.target(frame) if scorer.target is not None else frame[self.config.label_key]
        rows = frame.height
        if (missing := _missing(raw)).any():
            # a batch's count, said as one: the rows after it are not read
            msg = (
                f"the label {self.config.label_key!r} is missing at row {start + int(np.argmax(missing))} of the rows "
                f"evaluated ({int(missing.sum())} of the {rows} from row {start}); drop those rows from the data, or "
                "fill the label, before evaluating."
            )
            raise DataValidationError(msg)
        outputs = scorer.predict(frame)
        if self.task == "regression":
            target = _numbers_of(raw, self.config.label_key)
            return target, _checked_scores(outputs["value"], name, start, None, (rows,))
        classes = list(scorer.classes) if scorer.classes is not None else [0, 1]
        index = _class_index(raw, classes, self.config.label_key, name, start)
        if self.task == "binary":
            return index.astype(np.int8), _checked_scores(outputs["probability"], name, start, (0.0, 1.0), (rows,))
        scores = _checked_scores(outputs["probabilities"], name, start, None, (rows, len(classes)))
        predicted = np.argmax(scores, axis=1)
        common = np.array([self.classes.index(c) for c in classes], dtype=np.int32)  # the model's k-th class among all
        return common[index], common[predicted]


def _join(pieces: list[Rows]) -> Rows:
    """One ``Rows`` of several, in their order; slice codes renumbered into the union of the names."""
    if len(pieces) == 1:
        return pieces[0]
    slices = []
    for i in range(len(pieces[0].slices)):
        names = sorted({name for piece in pieces for name in piece.slices[i][1]})
        index = {name: k for k, name in enumerate(names)}
        dtype = np.min_scalar_type(len(names))
        codes = [np.array([index[n] for n in p.slices[i][1]], dtype=dtype)[p.slices[i][0]] for p in pieces]
        slices.append((np.concatenate(codes), names))
    weight = None if pieces[0].weight is None else np.concatenate([p.weight for p in pieces])  # type: ignore[misc]
    outputs = {
        name: (
            np.concatenate([p.outputs[name][0] for p in pieces]),
            np.concatenate([p.outputs[name][1] for p in pieces]),
        )
        for name in pieces[0].outputs
    }
    return Rows([run for p in pieces for run in p.runs], weight, slices, outputs)


def _checked_names(config: EvalConfig, task: str) -> list[str]:
    known = METRICS[task]
    for name in [*config.metrics, *config.thresholds]:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; {task} metrics are {', '.join(known)}."
            msg = f"EvalConfig names the metric {name!r}, which a {task} model does not have{hint}"
            raise DataValidationError(msg)
    for name, threshold in config.thresholds.items():
        if name in _NOT_NUMBERS:
            msg = f"EvalConfig thresholds {name!r}, which is a table, not a number; set thresholds on numbers such as {known[2]!r}."
            raise DataValidationError(msg)
        bounds = ("lower_bound", "upper_bound", "change", "relative_change")
        if all(getattr(threshold, b) is None for b in bounds):
            msg = f"EvalConfig's threshold on {name!r} sets no bound, so it judges nothing; set one of {', '.join(bounds)}."
            raise DataValidationError(msg)
    # a threshold's metric is computed whether or not ``metrics`` names it
    return list(dict.fromkeys([*config.metrics, *config.thresholds])) if config.metrics else known


def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _missing(values: Any) -> np.ndarray:
    """Which values are missing: null, or NaN among floats."""
    if isinstance(values, pl.Series):
        missing = values.is_null() | values.is_nan() if values.dtype.is_float() else values.is_null()
        return missing.fill_null(True).to_numpy()
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return np.isnan(array)
    return np.array([v is None for v in array], dtype=bool) if array.dtype == object else np.zeros(len(array), bool)


def _numbers_of(raw: Any, label_key: str) -> np.ndarray:
    if isinstance(raw, pl.Series) and not raw.dtype.is_numeric():
        msg = f"the label {label_key!r} is {raw.dtype}, but a regression model is scored against numbers; give a numeric label."
        raise DataValidationError(msg)
    values = (raw.cast(pl.Float64).to_numpy() if isinstance(raw, pl.Series) else np.asarray(raw)).astype(np.float64)
    if not np.isfinite(values).all():
        msg = f"the label {label_key!r} holds {float(values[~np.isfinite(values)][0])}; drop or fix the infinite labels before evaluating."
        raise DataValidationError(msg)
    return values


def _check_classes(models: Mapping[str, Scorer], task: str) -> None:
    """A binary model has two classes, a multiclass one names its own: a label is matched to a class by its value."""
    for name, scorer in models.items():
        classes = scorer.classes
        if task == "binary" and classes is not None and len(classes) != 2:
            msg = f"the {name} model is binary but has the classes {list(classes)}; a binary model has two classes."
            raise DataValidationError(msg)
        if task == "multiclass" and (classes is None or len(classes) == 0):
            msg = (
                f"the {name} multiclass model names no classes, so no label can be matched to its scores; "
                "give the model a classes_ attribute (its labels in score order) before conveyor.model.save."
            )
            raise DataValidationError(msg)


def _checked_scores(
    values: Any, model: str, start: int, bounds: tuple[float, float] | None, shape: tuple[int, ...]
) -> np.ndarray:
    """A model's predictions as floats, refused when one is NaN or infinite (or, for a probability, outside ``bounds``):
    a NaN sorts as no number does, and would give an AUC, an accuracy and a blessing that mean nothing.

    Refused too when they are not of ``shape`` (one a row; a multiclass model's, one a class): a
    column too many or too few would pair scores with the wrong class, or the wrong row.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.shape != shape:
        per_row = f", one per class of {shape[1]}" if len(shape) == 2 else ""
        msg = (
            f"the {model} model gave predictions of shape {array.shape} for the {shape[0]} rows near row {start}; "
            f"they must be of shape {shape}{per_row}: fix the model's predict."
        )
        raise DataValidationError(msg)
    bad = ~np.isfinite(array)
    if bounds is not None:  # a float32 model's rounding (1.0000001) is no fault: it is clipped
        bad |= (array < bounds[0] - PROBABILITY_SLACK) | (array > bounds[1] + PROBABILITY_SLACK)
    if bad.any():
        what = "finite" if bounds is None else f"probabilities in [{bounds[0]:g}, {bounds[1]:g}]"
        msg = (
            f"the {model} model predicted {float(array[bad].flat[0])} near row {start} ({int(bad.sum())} such value(s)); "
            f"its predictions must be {what}: fix the model or its inputs."
        )
        raise DataValidationError(msg)
    return array if bounds is None else np.clip(array, *bounds)


def _class_index(raw: Any, classes: list[Any], label_key: str, model: str = CANDIDATE, start: int = 0) -> np.ndarray:
    """Each label's position in the ``model``'s classes (``raw``: the rows evaluated from row ``start``).

    A label is a class when Python's ``==`` says so (1, 1.0 and True are one label); text is
    never a number. A label that is no class is refused, never counted as a wrong prediction;
    the message names the model (the baseline may be the one trained on other labels) and a
    class the label is written close to (UCI's test file writes ``>50K.`` for ``>50K``).
    """
    values = raw.to_numpy() if isinstance(raw, pl.Series) else np.asarray(raw)
    unique, inverse = np.unique(values, return_inverse=True)
    inverse = inverse.reshape(-1)
    positions = []
    for value in unique.tolist():
        match = [i for i, c in enumerate(classes) if c == value]
        positions.append(match[0] if match else -1)
    if unknown := [v for v, i in zip(unique.tolist(), positions, strict=True) if i < 0]:
        bad = np.isin(inverse, [k for k, i in enumerate(positions) if i < 0])
        shown = ", ".join(map(repr, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
        whose = "the model's" if model == CANDIDATE else f"the {model} model's"
        other = "evaluate a model" if model == CANDIDATE else f"compare with a {model} model"
        # a batch's count, said as one: the rows after it are not read
        at = f"at row {start + int(np.argmax(bad))} of the rows evaluated ({int(bad.sum())} of the {len(bad)} from row {start})"
        msg = f"the label {label_key!r} holds {shown} {at}: not among {whose} classes {classes}; "
        texts = [c for c in classes if isinstance(c, str)]
        close = [(v, difflib.get_close_matches(v.strip(), texts, n=1)) for v in unknown if isinstance(v, str)]
        close = [(v, match[0]) for v, match in close if match]
        if {str(v) for v in unknown} <= {str(c) for c in classes}:
            kinds = type(unknown[0]).__name__, type(classes[0]).__name__
            msg += f"the label is {kinds[0]}, the classes {kinds[1]}: cast the label column to the classes' type."
        elif close:
            near = ", ".join(f"{v!r} is close to {c!r}" for v, c in close[:5])
            msg += f"{near}: write the labels as {whose} classes are written, or {other} trained on these labels."
        else:
            msg += f"{other} trained on these labels, or drop those rows."
        raise DataValidationError(msg)
    return np.asarray(positions, dtype=np.int64)[inverse]


SCORED_ROWS = 1 << 15
"""The most rows scored at once: a model's transformed features for a batch are held while it scores."""


def evaluate(
    files: list[Path], config: EvalConfig, models: Mapping[str, Scorer], workers: int, part_rows: int = PART_ROWS
) -> dict[str, Any]:
    """The evaluation of Parquet files in one pass: parts on ``workers`` threads, merged in file order.

    The replicates are computed at the end on ``workers`` threads too.

    Every row's position in the files picks its bootstrap weights, so the numbers and the
    bounds are the same whatever the threads or the part sizes.
    """
    combiner = EvalCombiner(config, models, workers)
    chunks = parts(files, part_rows)
    starts = np.r_[0, np.cumsum([_rows(part) for part in chunks])].astype(int)

    def batches(numbered: tuple[int, list[tuple[Path, int]]]) -> Iterator[tuple[int, pl.DataFrame]]:
        start = numbered[0]
        for frame in read_frames(numbered[1]):
            # a row group of a million rows, scored at once through a text transform, took gigabytes
            for offset in range(0, frame.height, SCORED_ROWS):
                yield start + offset, frame.slice(offset, SCORED_ROWS)
            start += frame.height

    return combiner.extract(fold(combiner, list(zip(starts[:-1].tolist(), chunks, strict=True)), batches, workers))


def _rows(part: list[tuple[Path, int]]) -> int:
    return sum(pq.ParquetFile(path).metadata.row_group(i).num_rows for path, i in part)


def validate(result: Mapping[str, Any], config: EvalConfig) -> dict[str, Any]:
    """Every threshold of the config judged on the whole set: its value, the baseline's, and whether it held.

    With no baseline (the first model) only the value bounds are judged. With no threshold at
    all nothing is: the model is not blessed, as in TFX, so that a forgotten threshold never
    pushes a model.
    """
    overall = result["slices"][0]
    # whether a baseline was scored, not whether its numbers are there: a whole set under
    # min_slice_size has none, and must fail its change thresholds, not skip them
    compared = BASELINE in result["models"]
    baseline = overall.get(BASELINE, {}).get("metrics", {})
    checks = []
    for name, threshold in config.thresholds.items():
        value = overall.get("metrics", {}).get(name)
        base = baseline.get(name)
        kinds = ["lower_bound", "upper_bound", *(["change", "relative_change"] if compared else [])]
        better = threshold.higher_is_better
        higher = better if better is not None else name not in LOWER_IS_BETTER
        for kind in kinds:
            bound = getattr(threshold, kind)
            if bound is not None:
                passed = _holds(kind, value, base, bound, higher)
                checks.append({"metric": name, "kind": kind, "threshold": bound, "value": value, "baseline": base,
                               "higher_is_better": higher, "passed": passed})  # fmt: skip
    return {"blessed": bool(config.thresholds) and all(c["passed"] for c in checks), "checks": checks}


def not_blessed_reason(result: Mapping[str, Any], config: EvalConfig, validation: Mapping[str, Any]) -> str | None:
    """Why ``validate`` did not bless the model, with the numbers, and what would change that, in
    a sentence a Pusher can repeat; None when it is blessed.
    """
    if validation["blessed"]:
        return None
    compared = BASELINE in result["models"]
    if not config.thresholds:
        metric = {"binary": "auc", "multiclass": "accuracy"}.get(result.get("task", ""), "rmse")
        bound = "upper_bound=..." if metric in LOWER_IS_BETTER else "lower_bound=..."
        baseline = "" if compared else ", and no baseline_model was given"
        return (f"EvalConfig sets no thresholds{baseline}: a model is blessed only when it meets its thresholds, "
                f"baseline or not; add one, such as thresholds={{{metric!r}: Threshold({bound}, change=0.0)}}.")  # fmt: skip
    checks, small = validation["checks"], result["slices"][0].get("too_small")
    why_no_value = "" if small else " (undefined there, as an AUC with one class)"
    failed = [_failure(c, why_no_value) for c in checks if not c["passed"]]
    where = (
        f"the whole set, which has fewer rows than min_slice_size={config.min_slice_size}: lower it" if small
        else f"the whole set of {result['slices'][0].get('example_count')} examples"
    )  # fmt: skip
    return (f"{'; '.join(failed)} ({len(failed)} of {len(checks)} threshold checks failed, on {where}). "
            "Improve the model or its data, or change EvalConfig.thresholds.")  # fmt: skip


def _failure(check: Mapping[str, Any], why_no_value: str) -> str:
    """One failed check in words: the value, the baseline's, and the bound it missed."""
    metric, kind, bound, value, base = (check[k] for k in ("metric", "kind", "threshold", "value", "baseline"))
    if value is None:
        return f"{metric} has no value{why_no_value}, so {kind}={bound} cannot hold"
    if kind in ("lower_bound", "upper_bound"):
        return f"{metric} {value:.4g} is {'below' if kind == 'lower_bound' else 'above'} its {kind} {bound}"
    if base is None:
        return f"{metric} {value:.4g}, but the baseline has no {metric}, so {kind}={bound} cannot hold"
    gain = (value - base) if check["higher_is_better"] else (base - value)
    needed = "" if kind == "change" else f", a gain of {bound * abs(base):.4g} here"
    return f"{metric} {value:.4g} against the baseline's {base:.4g}: a gain of {gain:+.4g}, short of {kind}={bound}{needed}"


def _holds(kind: str, value: float | None, base: float | None, bound: float, higher_is_better: bool) -> bool:
    """Whether one threshold holds; an undefined value (a slice with one class has no AUC) never does."""
    if value is None:
        return False
    if kind == "lower_bound":
        return value >= bound
    if kind == "upper_bound":
        return value <= bound
    if base is None:
        return False
    gain = (value - base) if higher_is_better else (base - value)
    return gain >= (bound if kind == "change" else bound * abs(base))
