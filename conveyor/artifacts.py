"""The artifact types: what components consume and produce.

An artifact is a directory (``uri``) plus a record in the metadata store: its id, type,
properties and a content fingerprint. A user's own type is a subclass of ``Artifact``; the
class name is the type name unless ``TYPE_NAME`` says otherwise.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "Artifact",
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
]


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
        state: str = "PENDING",
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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Artifact):
            return NotImplemented
        return (self.id, self.uri, self.type_name) == (other.id, other.uri, other.type_name)

    def __hash__(self) -> int:
        return hash((self.id, self.uri, self.type_name))


class Examples(Artifact):
    """Rows split into ``Split-<name>/part-*.parquet``."""


class ExampleStatistics(Artifact):
    """Per-split statistics: ``Split-<name>/statistics.json``."""


class Schema(Artifact):
    """The data's schema: ``schema.yaml``."""


class ExampleAnomalies(Artifact):
    """Per-split anomalies: ``Split-<name>/anomalies.json``."""


class TransformGraph(Artifact):
    """A fitted preprocessing graph: ``transform_graph.json``."""


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
