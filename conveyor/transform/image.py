"""Images in ``preprocessing_fn``: decode, resize to a fixed size, normalise.

A decoded image is an ``image`` value: a list of ``(height, width, channels)`` uint8 arrays,
None where missing; images differ in size until ``resize`` makes them a dense column whose
rows are ``(height, width, channels)`` flattened (the node's ``shape`` param says so), as
Pillow and NumPy lay them out. Decoding and resizing are Pillow's, one image at a time (the
work is per file); the rest is vectorised over the batch, element by element, so a row
served alone gets the bits of its batch.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from conveyor._internal.extras import require
from conveyor.exceptions import TransformError
from conveyor.transform.audio import file_bytes
from conveyor.transform.graph import Column, checked, derive, fail
from conveyor.transform.kernels import as_dense, kernel

_MODES = {"RGB": 3, "L": 1, "RGBA": 4}
_METHODS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def decode_image(x: Column, *, mode: str = "RGB") -> Column:
    """Image file contents (png, jpeg, webp, gif: what Pillow reads) converted to ``mode``:
    "RGB", "L" (grey) or "RGBA". A missing value gives a missing image.
    Needs ``pip install 'conveyor[media]'``.

    Example:
        >>> image = ct.decode_image(inputs["image"], mode="L")
    """
    x = checked("decode_image", x, ("bytes",))
    if mode not in _MODES:
        msg = f"ct.decode_image converts to mode 'RGB', 'L' or 'RGBA', got {mode!r}."
        raise fail(msg)
    return derive("decode_image", (x,), "image", {"mode": mode, "channels": _MODES[mode]})


def resize(x: Column, height: int, width: int, *, method: str = "bilinear") -> Column:
    """Each image resized to ``height`` x ``width`` by Pillow's ``Image.resize`` with the filter
    ``method`` (its "bilinear", "bicubic", "lanczos", "nearest", "box" or "hamming"): a dense
    column of ``height * width * channels`` values 0-255 (NaN for a missing image).

    Example:
        >>> pixels = ct.resize(ct.decode_image(inputs["image"]), 224, 224)
    """
    x = checked("resize", x, ("image",))
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, int) or value < 1:
            msg = f"ct.resize needs {name} >= 1 in pixels, got {value!r}."
            raise fail(msg)
    if method not in _METHODS:
        msg = f"ct.resize's method is one of {list(_METHODS)}, got {method!r}."
        raise fail(msg)
    channels = x.node.params["channels"]
    params = {"height": height, "width": width, "method": method, "shape": [height, width, channels]}
    return derive("resize", (x,), "dense", params, width=height * width * channels)


def normalize(x: Column, *, mean: float | Sequence[float] | None = None, std: float | Sequence[float] | None = None, scale: float = 255.0) -> Column:
    """Values divided by ``scale`` (pixels 0-255 to [0, 1]), then, given ``mean`` and ``std``
    (one number, or one per channel: the last axis of the rows' shape), ``(x / scale - mean) / std``,
    as torchvision's ``ToTensor`` and ``Normalize`` do. For a mean and std learned from the
    training data, use ``ct.scale_to_z_score(x, per_axis=-1)``.

    Example:
        >>> ct.normalize(pixels, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    """
    x = checked("normalize", x, ("dense",))
    if (mean is None) != (std is None):
        msg = "ct.normalize takes mean= and std= together, or neither."
        raise fail(msg)
    if not isinstance(scale, int | float) or not scale > 0:
        msg = f"ct.normalize needs a scale > 0, got {scale!r}."
        raise fail(msg)
    shape = x.node.params.get("shape") or ([x.node.width] if x.node.width is not None else None)
    params: dict[str, Any] = {"scale": float(scale), "mean": _per_channel("mean", mean, shape), "std": _per_channel("std", std, shape)}
    if params["std"] is not None and 0.0 in params["std"]:
        msg = f"ct.normalize needs every std > 0, got {std!r}."
        raise fail(msg)
    if shape is not None:
        params["shape"] = shape
    return derive("normalize", (x,), "dense", params, width=x.node.width)


def _per_channel(name: str, value: Any, shape: list[int] | None) -> list[float] | None:
    """``value`` as a list of floats, one or one per channel."""
    if value is None:
        return None
    values = [value] if isinstance(value, int | float) else list(value)
    if not all(isinstance(v, int | float) for v in values) or not values:
        msg = f"ct.normalize's {name} must be a number or a list of numbers, got {value!r}."
        raise fail(msg)
    channels = shape[-1] if shape else None
    if len(values) != 1 and len(values) != channels:
        msg = f"ct.normalize's {name} has {len(values)} values; give one, or one per channel ({channels})."
        raise fail(msg)
    return [float(v) for v in values]


@kernel("decode_image")
def _decode_image(p: dict[str, Any], x: Any) -> list[np.ndarray | None]:
    pil = require("PIL.Image", "media", "ct.decode_image")
    out: list[np.ndarray | None] = []
    for data in file_bytes(x, "decode_image"):
        if data is None:
            out.append(None)
            continue
        try:
            with pil.open(io.BytesIO(data)) as image:
                pixels = np.asarray(image.convert(p["mode"]))
        except (OSError, ValueError, SyntaxError) as e:  # Pillow's errors for what it cannot read
            msg = f"ct.decode_image: {len(data)} bytes do not decode as an image ({e}); ExampleGen's image input quarantines such files."
            raise TransformError(msg) from e
        out.append(pixels.reshape(pixels.shape[0], pixels.shape[1], p["channels"]))
    return out


@kernel("resize")
def _resize(p: dict[str, Any], images: list[np.ndarray | None]) -> np.ndarray:
    pil = require("PIL.Image", "media", "ct.resize")
    height, width, channels = p["shape"]
    method = getattr(pil.Resampling, p["method"].upper())
    out = np.empty((len(images), height, width, channels), dtype=np.float32)
    for i, pixels in enumerate(images):
        if pixels is None:
            out[i] = np.nan
            continue
        image = pil.fromarray(pixels[:, :, 0] if channels == 1 else pixels)
        out[i] = np.asarray(image.resize((width, height), resample=method)).reshape(height, width, channels)
    return out.reshape(len(images), -1)


@kernel("normalize")
def _normalize(p: dict[str, Any], x: Any) -> np.ndarray:
    values = as_dense(x) / p["scale"]
    if p["mean"] is None:
        return values
    channels = len(p["mean"]) if len(p["mean"]) > 1 else len(p["std"])
    rows = values.reshape(len(values), -1, channels)
    return ((rows - np.asarray(p["mean"])) / np.asarray(p["std"])).reshape(len(values), -1)
