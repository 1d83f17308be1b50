"""The bundle on disk: ``conveyor_model.json`` and the sha256 of every file it lists.

    <bundle>/
      conveyor_model.json     the manifest: format_version, flavor, task, signature, label,
                              transform_graph, files {relative path: sha256}, created, ...
      model/                  the flavor's files (model.skops, model.txt, model.ubj, ...)
      transform_graph/        a copy of the TransformGraph the model was trained on

Paths are relative and use ``/``, so a bundle may be moved or renamed whole. The manifest is
written last: a folder without one is no bundle. ``verify`` reads every listed file before
anything is deserialised, and refuses a bundle with a file missing, changed, outside it, or
not listed (a loader reads only files whose hash was checked), or a manifest whose fields
differ from its own ``manifest_sha256``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from conveyor.exceptions import ServingError

MANIFEST = "conveyor_model.json"
DIGEST = "manifest_sha256"  # the manifest's own hash, in it
FORMAT_VERSION = 1
MODEL_DIR = "model"
GRAPH_DIR = "transform_graph"
_CHUNK = 1 << 20

__all__ = [
    "FORMAT_VERSION",
    "GRAPH_DIR",
    "MANIFEST",
    "MODEL_DIR",
    "hash_files",
    "manifest_digest",
    "read_manifest",
    "verify",
    "write_manifest",
]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` but the manifest, by relative path, with its sha256."""
    return {relative: sha256(folder / relative) for relative in _relative_files(folder)}


def _relative_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p != folder / MANIFEST)


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> Path:
    """Write the manifest with its own ``manifest_sha256``: its fields (classes, task, label)
    decide what a prediction means, so an edit of them is refused like an edit of a file."""
    path = folder / MANIFEST
    sealed = {**manifest, DIGEST: manifest_digest(manifest)}
    path.write_text(json.dumps(sealed, indent=1, allow_nan=False) + "\n")
    return path


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """The sha256 of the manifest's fields but ``manifest_sha256``, as canonical JSON."""
    fields = {k: v for k, v in manifest.items() if k != DIGEST}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of the bundle at ``folder``, checked for the fields loading needs.

    Raises:
        ServingError: no manifest, not JSON, a field missing, or a format this version cannot read.
    """
    path = folder / MANIFEST
    if not folder.exists():
        msg = f"no model bundle at {folder}: the folder does not exist. Point to the folder conveyor.model.save wrote."
        raise ServingError(msg)
    if not path.is_file():
        msg = f"{folder} is not a model bundle: it has no {MANIFEST}. Point to the folder conveyor.model.save wrote."
        raise ServingError(msg)
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        msg = f"{path} is not valid JSON ({e}); the bundle is damaged: save the model again."
        raise ServingError(msg) from e
    if not isinstance(manifest, dict):
        msg = f"{path} holds a JSON {type(manifest).__name__}, not the manifest's object; it was not written by conveyor.model.save."
        raise ServingError(msg)
    missing = [k for k in ("format_version", "flavor", "task", "transform_graph", "files") if k not in manifest]
    if missing:
        msg = f"{path} lacks {missing}; it was not written by conveyor.model.save."
        raise ServingError(msg)
    version = manifest["format_version"]
    if type(version) is not int or version != FORMAT_VERSION:
        msg = f"{path} has bundle format {version!r}; this conveyor reads format {FORMAT_VERSION}: upgrade conveyor or save the model again."
        raise ServingError(msg)
    _check_fields(manifest, path)
    return dict(manifest)


TASKS = ("binary", "multiclass", "regression")  # as conveyor.model.saving.TASKS
_SCALARS = (str, int, float, bool)


def _check_fields(manifest: Mapping[str, Any], path: Path) -> None:
    """Refuse a field of the wrong type before anything reads it, naming it: a bundle written by
    hand or by another tool would otherwise load and fail at its first request."""
    signature = manifest.get("signature", {})
    parts = signature if _is_map(signature, dict) else {}
    inputs = parts.get("inputs", {})
    checks: list[tuple[str, bool, str]] = [
        ("flavor", isinstance(manifest["flavor"], str), "a flavor's name, a string"),
        ("task", manifest["task"] in TASKS, f"one of {list(TASKS)}"),
        ("transform_graph", isinstance(manifest["transform_graph"], str), "a relative path, a string"),
        ("files", _is_map(manifest["files"], str), "an object of relative path -> sha256 string"),
        ("signature", _is_map(signature, dict), 'an object of "inputs" and "outputs" objects'),
        (
            "signature.inputs",
            _is_map(inputs, dict) and all(_is_input(spec) for spec in inputs.values()),
            'an object of raw feature -> {"kind": string, "required": true or false}',
        ),
        ("signature.outputs", _is_map(parts.get("outputs", {}), dict), "an object of output -> {dtype, shape}"),
        ("label", isinstance(manifest.get("label"), str | None), "the label's name, a string, or null"),
        ("classes", _is_list(manifest.get("classes"), _SCALARS, null=True), "a list of class labels, or null"),
        ("encoded_classes", _is_list(manifest.get("encoded_classes"), _SCALARS, null=True), "a list of class labels"),
        ("feature_names", _is_list(manifest.get("feature_names", []), (str,)), "a list of strings"),
        ("flavor_options", isinstance(manifest.get("flavor_options", {}), dict), "an object"),
        ("pickle", isinstance(manifest.get("pickle", False), bool), "true or false"),
        ("privacy", isinstance(manifest.get("privacy"), dict | None), "an object, or null"),
    ]
    for field, ok, wanted in checks:
        if not ok:
            value = manifest
            for key in field.split("."):
                value = value.get(key) if isinstance(value, dict) else None
            shown = json.dumps(value)
            msg = (
                f"{path}: {field} must be {wanted}; got {shown if len(shown) <= 60 else shown[:57] + '...'}. "
                "The bundle was not written by conveyor.model.save: save the model again."
            )
            raise ServingError(msg)


def _is_map(value: Any, kind: type) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, kind) for k, v in value.items())


def _is_input(spec: Mapping[str, Any]) -> bool:
    return isinstance(spec.get("kind"), str) and isinstance(spec.get("required", False), bool)


def _is_list(value: Any, kinds: tuple[type, ...], *, null: bool = False) -> bool:
    if value is None:
        return null
    return isinstance(value, list) and all(isinstance(v, kinds) for v in value)


def verify(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse the bundle unless every listed file is inside it and has its recorded sha256.

    Raises:
        ServingError: naming the first file that is outside the bundle, missing, changed or unlisted.
    """
    recorded = manifest.get(DIGEST)
    if recorded is not None and recorded != manifest_digest(manifest):  # bundles saved before it came have none
        msg = (
            f"the model bundle {folder} was changed after it was saved: {MANIFEST} itself does not match its "
            f"{DIGEST}. The bundle is refused; save the model again."
        )
        raise ServingError(msg)
    unlisted = sorted(set(_relative_files(folder)) - set(manifest["files"]))
    if unlisted:
        msg = f"the model bundle {folder} holds {unlisted[0]}, which {MANIFEST} does not list; the bundle is refused: save the model again."
        raise ServingError(msg)
    for relative, expected in manifest["files"].items():
        parts = PurePosixPath(relative).parts
        if PurePosixPath(relative).is_absolute() or ".." in parts or not parts:
            msg = f"{folder / MANIFEST} lists {relative!r}, a path outside the bundle; the bundle is refused."
            raise ServingError(msg)
        path = folder.joinpath(*parts)
        if not path.is_file():
            msg = f"the model bundle {folder} is incomplete: {relative} is missing. Copy the whole bundle, or save the model again."
            raise ServingError(msg)
        if sha256(path) != expected:
            msg = (
                f"the model bundle {folder} was changed after it was saved: {relative} does not match the sha256 "
                f"in {MANIFEST}. The bundle is refused; save the model again or restore the file."
            )
            raise ServingError(msg)
