"""``FnArgs``: what a Trainer hands ``run_fn``, with the transformed data ready for ``fit``.

The transformed examples are Parquet as Transform wrote them (``conveyor.transform.transformed``).
``train_data()`` reads the training splits into one feature matrix, SciPy CSR when an output
is sparse (one-hot, bag-of-words, tf-idf) and dense NumPy otherwise, plus the label vector and
the feature names: what scikit-learn, LightGBM and XGBoost take. ``train_batches()`` gives the
same in batches, one file's row groups at a time, for training loops that must not hold it all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.exceptions import ComponentError

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
FORMATS = ("matrix", "arrow", "pandas", "polars")


@dataclass(frozen=True)
class FeatureMatrix:
    """Features as one matrix, the label as a vector, and a name per matrix column.

    Unpacks as ``X, y = fn_args.train_data()``.
    """

    X: Any
    """SciPy CSR when any transform output is sparse, else a dense 2-D NumPy array."""
    y: Any
    """The label, a 1-D NumPy array of the data's type: an int label is int64 (float64 with NaN when a
    row has none: drop those rows before ``fit``), a vocabulary index int64, a bool bool, a string object."""
    feature_names: list[str]

    def __iter__(self) -> Iterator[Any]:
        return iter((self.X, self.y))


@dataclass
class FnArgs:
    """The arguments of ``run_fn(fn_args)``: where the data and artifacts are, and helpers to read them.

    Example:
        >>> def run_fn(fn_args):
        ...     X, y = fn_args.train_data()
        ...     model = lightgbm.LGBMClassifier(random_state=fn_args.seed, **fn_args.hyperparameters).fit(X, y)
        ...     fn_args.log_metric("accuracy", model.score(*fn_args.eval_data()), step=1)
        ...     conveyor.model.save(model, fn_args)
    """

    train_files: list[str]
    """The Parquet files of the transformed training splits, in row order."""
    eval_files: list[str]
    """The Parquet files of the transformed evaluation splits ([] when the examples have none)."""
    examples: str
    """The transformed examples' folder (``Split-<name>/*.parquet``, ``transformed_schema.json``)."""
    transform_graph: str
    """The TransformGraph artifact's folder: ``conveyor.transform.load(fn_args.transform_graph)``."""
    schema: str
    """The raw data's ``schema.yaml``."""
    serving_model_dir: str
    """Where ``conveyor.model.save(model, fn_args)`` writes the model bundle."""
    model_run_dir: str
    """Where training's own files go: ``metrics.jsonl``, ``tensorboard/``, checkpoints."""
    label_key: str
    """The transform output that is the label."""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    """A Tuner's best values (``hyperparameters.json``), or {}."""
    custom_config: dict[str, Any] = field(default_factory=dict)
    train_args: dict[str, Any] = field(default_factory=dict)
    """As given to the Trainer: ``num_steps``, ``epochs``, ... for ``run_fn`` to use."""
    base_model: str | None = None
    """The folder of a model bundle to continue from (warm start), or None."""
    seed: int = 0
    """Already set in ``random`` and NumPy (and torch when imported); pass it to the library too."""
    splits: dict[str, list[str]] = field(default_factory=lambda: {"train": ["train"], "eval": ["eval"]})
    """The split names read as training and as evaluation data."""
    _writer: Any = field(default=None, init=False, repr=False)
    _tensorboard_checked: bool = field(default=False, init=False, repr=False)

    def train_data(self, format: str = "matrix", label: str | None = None) -> Any:
        """The training splits: a ``FeatureMatrix`` (``X, y``), or with ``format`` "arrow", "pandas"
        or "polars" the transformed table (every output and the label; a vector output is a list
        column, a sparse one two: ``<name>.indices`` and ``<name>.values``).

        Args:
            label: the label output; ``label_key`` when None.
        """
        return self._read(self.train_files, "train", format, label)

    def eval_data(self, format: str = "matrix", label: str | None = None) -> Any:
        """The evaluation splits, as ``train_data`` gives the training ones."""
        return self._read(self.eval_files, "eval", format, label)

    def train_batches(
        self,
        batch_rows: int = 4096,
        split: str | None = None,
        label: str | None = None,
        shuffle: bool = False,
        epoch: int = 0,
    ) -> Iterator[FeatureMatrix]:
        """``FeatureMatrix`` batches of at most ``batch_rows`` rows, every row once, in order;
        only one batch (with ``shuffle``, one row group) is in memory at a time.

        Args:
            split: a split name; the training splits when None.
            shuffle: visit the row groups in a random order and the rows of each in a random
                order: rows stored in time order (the usual case) otherwise end every epoch
                on the latest ones. Bounded memory, so not a full shuffle: rows meet only
                rows of their own row group (up to 131,072) in a batch.
            epoch: with ``shuffle``, the epoch number; the order is drawn from it and
                ``seed``, so each epoch differs and a rerun repeats them.

        Example (a torch ``DataLoader`` over the batches):
            >>> class Batches(torch.utils.data.IterableDataset):
            ...     def __iter__(self):
            ...         return ((torch.as_tensor(b.X), torch.as_tensor(b.y)) for b in fn_args.train_batches(256))
            >>> loader = torch.utils.data.DataLoader(Batches(), batch_size=None)
        """
        import pyarrow.parquet as pq

        from conveyor.transform.transformed import decode

        if batch_rows < 1:
            msg = f"train_batches: batch_rows must be at least 1, got {batch_rows}."
            raise ValueError(msg)
        files = self.train_files if split is None else self._split_files(split)
        label = label or self.label_key
        spec = self.spec
        whole = self._whole_labels(files, label)
        if not shuffle:
            for file in files:
                # pre-buffered, a file's reader keeps every row group it read: memory grew with the file
                for batch in pq.ParquetFile(file, pre_buffer=False).iter_batches(batch_rows):
                    yield _batch(decode(batch, spec), spec, label, whole)
            return
        import numpy as np

        rng = np.random.default_rng([self.seed, epoch])
        groups = [(file, i) for file in files for i in range(pq.ParquetFile(file).num_row_groups)]
        for g in rng.permutation(len(groups)):
            file, i = groups[g]
            table = pq.ParquetFile(file).read_row_group(i)
            table = table.take(rng.permutation(table.num_rows))
            for batch in table.to_batches(batch_rows):
                yield _batch(decode(batch, spec), spec, label, whole)

    def load_base_model(self, *, trusted: Sequence[str] = (), allow_pickle: bool = False) -> Any:
        """The warm-start model as its library's object (a LightGBM Booster, ...), or None.

        Args:
            trusted: as for ``conveyor.model.load_model``: the classes of yours the base model
                holds (a torch module saved with ``conveyor_init``, a skops type).
            allow_pickle: load a base model saved with ``allow_pickle=True``.
        """
        if self.base_model is None:
            return None
        from conveyor.model import load_native

        return load_native(self.base_model, trusted=trusted, allow_pickle=allow_pickle)

    def log_metric(self, name: str, value: float, step: int) -> None:
        """Record one value, as ``log_metrics({name: value}, step)``."""
        self.log_metrics({name: value}, step)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Append per-step metrics to ``metrics.jsonl`` (a line each: name, value, step, time)
        and, with tensorboardX installed, to TensorBoard event files in ``tensorboard/``.
        """
        now = time.time()
        with (Path(self.model_run_dir) / METRICS_FILE).open("a", encoding="utf-8") as out:
            for name, value in metrics.items():
                out.write(json.dumps({"name": name, "value": float(value), "step": int(step), "time": now}) + "\n")
        writer = self._tensorboard()
        if writer is not None:
            for name, value in metrics.items():
                writer.add_scalar(name, float(value), int(step), walltime=now)

    def close(self) -> None:
        """Flush and close the TensorBoard writer (the Trainer calls it after ``run_fn``)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    @property
    def spec(self) -> dict[str, dict[str, Any]]:
        """Each transform output's kind, dtype and width (``transformed_schema.json``)."""
        from conveyor.transform.transformed import read_schema

        return read_schema(self.examples)

    @property
    def int_features(self) -> list[str]:
        """The schema's int features: a label passed through from one is int64 in ``y`` and in the
        bundle's classes, as the data holds it."""
        from conveyor.data.schema import Schema

        return [f.name for f in Schema.load(self.schema).features if f.type == "int"] if self.schema else []

    def _whole_labels(self, files: list[str], label: str) -> bool:
        """Whether ``y`` is int64: an integer label (``conveyor.model.saving.integer_label``) that
        every row of ``files`` has; Transform stores it as float64, NaN where a row has none.
        """
        import numpy as np
        import pyarrow.parquet as pq

        from conveyor.model.saving import integer_label
        from conveyor.transform.fitted import load

        if not integer_label(load(self.transform_graph), label, lambda: self.int_features):
            return False
        for file in files:  # a row group at a time: the whole column is 8 bytes a row of the split
            parquet = pq.ParquetFile(file, pre_buffer=False)
            for i in range(parquet.num_row_groups):
                if np.isnan(parquet.read_row_group(i, columns=[label]).column(0).to_numpy()).any():
                    return False
        return True

    def _tensorboard(self) -> Any:
        if not self._tensorboard_checked:
            self._tensorboard_checked = True
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                print(
                    f"metrics go to {METRICS_FILE} only; TensorBoard files need tensorboardX: pip install 'conveyor[tensorboard]'"
                )
                return None
            self._writer = SummaryWriter(str(Path(self.model_run_dir) / TENSORBOARD_DIR))
        return self._writer

    def _split_files(self, split: str) -> list[str]:
        from conveyor.artifacts import check_splits, split_names
        from conveyor.data.examples import split_files

        check_splits([split], split_names(self.examples), what="train_batches: split", error=ValueError)
        return [str(f) for f in split_files(self.examples, split)]

    def _read(self, files: list[str], role: str, format: str, label: str | None) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if format not in FORMATS:
            msg = f"{role}_data: format must be one of {list(FORMATS)}, got {format!r}."
            raise ValueError(msg)
        if not files:
            msg = (
                f"{role}_data: the transformed examples at {self.examples} hold no {role} split "
                f"(looked for {self.splits.get(role)}); name the splits to read in the Trainer's "
                f"train_args, e.g. {{'{role}_splits': [...]}}."
            )
            raise ComponentError(msg)
        if format != "matrix":
            table = pa.concat_tables([pq.read_table(f) for f in files])
            if format == "arrow":
                return table
            if format == "pandas":
                return table.to_pandas()
            import polars as pl

            return pl.from_arrow(table)
        from conveyor.transform.transformed import decode

        spec = self.spec
        label = label or self.label_key
        whole = self._whole_labels(files, label)
        # A row group at a time, then stacked: the split's table, its decoded columns and the
        # matrix held at once took 3.7x the matrix (3 GB for 800k rows with tf-idf; measured).
        parts = [
            _batch(decode(parquet.read_row_group(i), spec), spec, label, whole)
            for parquet in (pq.ParquetFile(f, pre_buffer=False) for f in files)
            for i in range(parquet.num_row_groups)
        ]
        return _stacked(parts) if parts else _batch(decode(pq.read_table(files[0]), spec), spec, label, whole)


def _stacked(parts: list[FeatureMatrix]) -> FeatureMatrix:
    """Row-group matrices as one, in order."""
    import numpy as np
    import scipy.sparse as sp

    if len(parts) == 1:
        return parts[0]
    xs = [p.X for p in parts]
    matrix = sp.vstack(xs, format="csr") if sp.issparse(xs[0]) else np.concatenate(xs)
    return FeatureMatrix(matrix, np.concatenate([p.y for p in parts]), parts[0].feature_names)


def _batch(columns: Any, spec: dict[str, dict[str, Any]], label: str, whole_labels: bool) -> FeatureMatrix:
    import numpy as np

    from conveyor.model.features import label_vector, to_matrix

    matrix, names = to_matrix(columns, spec, label)
    y = label_vector(columns, label)
    return FeatureMatrix(matrix, y.astype(np.int64) if whole_labels else y, names)
