"""The artifact types: what components consume and produce, and where each keeps its files.

An artifact is a directory (``uri``) plus a record in the metadata store: its id, type,
properties, a content fingerprint and its state (``ArtifactState``). A user's own type is a
subclass of ``Artifact``; the class name is the type name unless ``TYPE_NAME`` says otherwise.

The layouts are here and nowhere else. A type kept in splits has one folder a split,
``<uri>/Split-<name>/`` (``split_dir``, ``split_names``): Examples hold Parquet files there
(``split_files``), ExampleStatistics and ExampleAnomalies one file each (``SPLIT_FILE``). A type
kept in one file names it in ``FILE`` (``schema.yaml``, ``transform_graph.json``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from conveyor.exceptions import ArtifactError

__all__ = [
    "SPLIT_PREFIX",
    "Artifact",
    "ArtifactState",
    "ExampleAnomalies",
    "ExampleStatistics",
    "Examples",
    "HyperParameters",
    "InfraBlessing",
    "Model",
    "ModelBlessing",
    "ModelEvaluation",
    "ModelRun",
    "PushedModel",
    "Schema",
    "TransformGraph",
    "artifact_class",
    "check_columns",
    "check_splits",
    "split_dir",
    "split_files",
    "split_names",
]

SPLIT_PREFIX = "Split-"


class ArtifactState(StrEnum):
    """Where an artifact is in its life (docs/guarantees.md 1).

    Its values are the strings the store keeps and JSON shows: ``ArtifactState.LIVE == "LIVE"``.
    """

    PENDING = "PENDING"
    """Its step is running: the files may be half written."""
    LIVE = "LIVE"
    """Renamed into place whole and recorded: a reader sees all of it."""
    ABANDONED = "ABANDONED"
    """Its step failed or its process died; kept for a look until ``conveyor gc``."""
    DELETED = "DELETED"
    """Removed by ``conveyor gc``; the record stays, so lineage still tells what existed."""


class Artifact:
    """A typed, immutable directory of outputs, recorded in the metadata store.

    Example:
        >>> a = Examples(uri="/data/examples/1", properties={"span": 3})
        >>> a.type_name, a.properties["span"]
        ('Examples', 3)
    """

    TYPE_NAME: ClassVar[str | None] = None

    def __init__(
        self,
        uri: str = "",
        *,
        id: int | None = None,
        properties: dict[str, Any] | None = None,
        fingerprint: str | None = None,
        state: str = ArtifactState.PENDING,
        type_name: str | None = None,
    ) -> None:
        self.id = id
        self.uri = uri
        self.properties: dict[str, Any] = dict(properties or {})
        self.fingerprint = fingerprint
        self.state = state
        self._type_name = type_name

    @classmethod
    def type_name_of(cls) -> str:
        return cls.TYPE_NAME or cls.__name__

    @property
    def type_name(self) -> str:
        return self._type_name or self.type_name_of()

    def __repr__(self) -> str:
        return f"{self.type_name}(id={self.id}, uri={self.uri!r}, state={self.state})"

    def _repr_html_(self) -> str:
        """How Jupyter shows an artifact: its type's static page (``conveyor.report.notebook``), loaded on call."""
        from conveyor.report.notebook import artifact_html

        return artifact_html(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Artifact):
            return NotImplemented
        return (self.id, self.uri, self.type_name) == (other.id, other.uri, other.type_name)

    def __hash__(self) -> int:
        return hash((self.id, self.uri, self.type_name))


class Examples(Artifact):
    """Rows split into ``Split-<name>/part-*.parquet`` (Transform's keep their input files' names)."""

    SPLIT_FILES: ClassVar[str] = "*.parquet"


class ExampleStatistics(Artifact):
    """Per-split statistics: ``Split-<name>/statistics.json``."""

    SPLIT_FILE: ClassVar[str] = "statistics.json"


class Schema(Artifact):
    """The data's schema: ``schema.yaml``."""

    FILE: ClassVar[str] = "schema.yaml"


class ExampleAnomalies(Artifact):
    """Per-split anomalies: ``Split-<name>/anomalies.json``."""

    SPLIT_FILE: ClassVar[str] = "anomalies.json"


class TransformGraph(Artifact):
    """A fitted preprocessing graph: ``transform_graph.json``."""

    FILE: ClassVar[str] = "transform_graph.json"


class Model(Artifact):
    """A model bundle: ``conveyor_model.json`` and the files it lists."""


class ModelRun(Artifact):
    """What training left besides the model: logs, TensorBoard files."""


class HyperParameters(Artifact):
    """The best hyperparameters a Tuner found."""


class ModelEvaluation(Artifact):
    """Sliced metrics and the validation result: ``metrics.json``."""


class ModelBlessing(Artifact):
    """Whether a model passed evaluation (property ``blessed``)."""


class InfraBlessing(Artifact):
    """Whether a model loaded and answered in a real server (property ``blessed``)."""


class PushedModel(Artifact):
    """A model copied to its serving destination (properties ``pushed``, ``pushed_version``)."""


def artifact_class(type_name: str) -> type[Artifact]:
    """Find the ``Artifact`` subclass for a stored type name; ``Artifact`` if none is loaded."""
    stack: list[type[Artifact]] = [Artifact]
    while stack:
        cls = stack.pop()
        if cls.type_name_of() == type_name:
            return cls
        stack.extend(cls.__subclasses__())
    return Artifact


def make_artifact(type_name: str, **fields: Any) -> Artifact:
    """An artifact object of the right class for a stored record."""
    cls = artifact_class(type_name)
    return cls(**fields, type_name=None if cls.type_name_of() == type_name else type_name)


def split_dir(uri: str | Path, name: str) -> Path:
    """The folder of split ``name`` of an artifact kept in splits: ``<uri>/Split-<name>``."""
    return Path(uri) / f"{SPLIT_PREFIX}{name}"


def split_names(uri: str | Path) -> list[str]:
    """The splits an artifact holds (its ``Split-<name>`` folders), sorted; [] when it holds none."""
    return sorted(p.name.removeprefix(SPLIT_PREFIX) for p in Path(uri).glob(f"{SPLIT_PREFIX}*") if p.is_dir())


def check_splits(
    names: Iterable[Any], held: Sequence[str], *, what: str, error: type[Exception] = ArtifactError
) -> None:
    """Fail on a name in ``names`` that is not one of the splits ``held``.

    Every parameter that names splits (``exclude_splits``, ``splits_analyze``) checks its names
    here before anything is read or written: a misspelt split would otherwise be silently left
    in, or left out. ``what`` is who asks, as ``"StatisticsGen: exclude_splits"``.
    """
    names = list(names)
    if (unknown := _unknown(names, held)) is not None:
        name, hint = unknown
        msg = f"{what}={names} names the split {name!r}, which is not there: the splits are {list(held)}.{hint}"
        raise error(msg)


def check_columns(
    names: Iterable[Any],
    held: Sequence[str],
    *,
    what: str,
    where: str = "the examples",
    error: type[Exception] = ArtifactError,
) -> None:
    """Fail on a name in ``names`` that is not one of the columns ``held``, as ``check_splits`` fails on a split.

    Every parameter that names columns (a label, slicing and fairness features, a model's input
    columns) checks them here before the step's heavy work: a misspelt one would otherwise fail
    deep in it, or be silently left out. ``what`` is who asks, as ``"Evaluator: EvalConfig.label_key"``.
    """
    if (unknown := _unknown(names, held)) is not None:
        name, hint = unknown
        msg = f"{what} names the column {name!r}, which is not in {where}: the columns are {list(held)}.{hint}"
        raise error(msg)


def _unknown(names: Iterable[Any], held: Sequence[str]) -> tuple[Any, str] | None:
    """The first of ``names`` not in ``held``, with a " Did you mean ...?" of the closest held one ("" if none)."""
    import difflib

    for name in names:
        if name not in held:
            close = difflib.get_close_matches(str(name), [str(h) for h in held], n=1)
            return name, f" Did you mean {close[0]!r}?" if close else ""
    return None


def split_files(uri: str | Path, name: str) -> list[Path]:
    """The Parquet files of split ``name`` of an Examples artifact, sorted: the order its rows are in."""
    return sorted(split_dir(uri, name).glob(Examples.SPLIT_FILES))
