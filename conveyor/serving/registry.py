"""The models a server holds: by name, each with the versions it loaded from its folder.

    <base_path>/               what the Pusher writes: one folder per integer version
      3/conveyor_model.json
      5/conveyor_model.json    served: the highest version
    <bundle>/conveyor_model.json   a bundle folder itself (the InfraValidator's candidate): version 1

Every bundle goes through ``load_model``, so its files are checked against their sha256 before
anything is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conveyor.exceptions import ServingError
from conveyor.model.bundle import MANIFEST
from conveyor.model.loading import LoadedModel, load_model

__all__ = ["ModelNotFoundError", "ModelRegistry", "ServedVersion", "latest_version"]

BUNDLE_VERSION = 1
"""The version a bundle folder served directly is given: it has no version folder to name one."""


class ModelNotFoundError(ServingError):
    """A request names a model or version this server does not hold (status 404)."""

    status = 404


@dataclass(frozen=True)
class ServedVersion:
    """One loaded version of a named model."""

    name: str
    version: int
    path: Path
    model: LoadedModel


def latest_version(base_path: Path) -> tuple[int, Path]:
    """The version to serve from ``base_path``: the bundle itself, or its highest integer sub-folder
    that holds a manifest.

    Raises:
        ServingError: the folder is missing, or holds neither a bundle nor a version folder.
    """
    if (base_path / MANIFEST).is_file():
        return BUNDLE_VERSION, base_path
    if not base_path.is_dir():
        msg = f"the model folder {base_path} does not exist; point --model-dir to a bundle or to a folder of version folders."
        raise ServingError(msg)
    # a version counts once its manifest is there: a Pusher writing through a store writes it last
    versions = [int(p.name) for p in base_path.iterdir() if p.name.isdigit() and (p / MANIFEST).is_file()]
    if not versions:
        msg = (
            f"{base_path} holds neither {MANIFEST} nor integer version folders with one (1/, 2/, ...); "
            "point --model-dir to a bundle or to the Pusher's destination."
        )
        raise ServingError(msg)
    return max(versions), base_path / str(max(versions))


class ModelRegistry:
    """The loaded models, looked up by name and optional version.

    Example:
        >>> registry = ModelRegistry()
        >>> registry.load("penguins", "serving/penguins")
        >>> registry.get("penguins").version
        5
    """

    def __init__(self) -> None:
        self._models: dict[str, dict[int, ServedVersion]] = {}

    def load(self, name: str, base_path: str | Path) -> ServedVersion:
        """Load the version to serve of model ``name`` from ``base_path``.

        Raises:
            ServingError: no bundle there, or it fails its sha256 checks or cannot be loaded.
        """
        version, path = latest_version(Path(base_path))
        served = ServedVersion(name, version, path, load_model(path))
        self._models.setdefault(name, {})[version] = served
        return served

    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> list[ServedVersion]:
        """Every loaded version of ``name``, oldest first.

        Raises:
            ModelNotFoundError: no model of that name is served.
        """
        if name not in self._models:
            msg = f"no model named {name!r} is served here; the models served are {self.names()}."
            raise ModelNotFoundError(msg)
        return [self._models[name][v] for v in sorted(self._models[name])]

    def get(self, name: str, version: int | None = None) -> ServedVersion:
        """The version ``version`` of ``name``, or its latest one.

        Raises:
            ModelNotFoundError: the model or that version of it is not served.
        """
        loaded = self.versions(name)
        if version is None:
            return loaded[-1]
        for served in loaded:
            if served.version == version:
                return served
        msg = f"model {name!r} has no version {version} loaded; its versions are {[s.version for s in loaded]}."
        raise ModelNotFoundError(msg)

    @property
    def ready(self) -> bool:
        """True once every named model has a version to serve."""
        return bool(self._models) and all(self._models.values())
