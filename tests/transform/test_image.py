"""Image ops on PNG and JPEG bytes made with Pillow: decoding as Pillow reads, resizing against a
block mean computed with NumPy, normalising as torchvision's ToTensor and Normalize define it,
fitted per-channel statistics, and one image served alone against its batch.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import conveyor.transform as ct
from conveyor.exceptions import TransformError
from conveyor.transform.fit import fit
from conveyor.transform.fitted import FittedGraph
from conveyor.transform.graph import trace

Image = pytest.importorskip("PIL.Image", reason="the image ops decode with Pillow: pip install 'conveyor[media]'")


def encoded(pixels: np.ndarray, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format)
    return buffer.getvalue()


RNG = np.random.default_rng(0)
PIXELS = [RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in [(16, 16), (32, 24), (9, 40), (64, 64)]]
IMAGES = [
    *(encoded(p) for p in PIXELS),
    encoded(RNG.integers(0, 256, size=(20, 20), dtype=np.uint8)),  # grey, converted to RGB
    encoded(RNG.integers(0, 256, size=(30, 10, 4), dtype=np.uint8)),  # RGBA
    encoded(PIXELS[1], "JPEG"),
]


def fitted(fn: Any, images: list[bytes | None]) -> FittedGraph:
    outputs = trace(fn, {"image": "bytes"})
    table = pa.table({"image": pa.array(images, pa.binary())})
    fit(outputs, lambda: table.to_batches(max_chunksize=3), workers=3)
    doc = json.loads(json.dumps(FittedGraph(outputs, {"image": {"kind": "bytes"}}).to_json(), allow_nan=False))
    return FittedGraph.from_json(doc)


def pillow(data: bytes, mode: str = "RGB") -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert(mode))


def test_decoding_is_pillows_and_box_resizing_is_the_block_mean() -> None:
    def fn(inputs: Any) -> dict[str, Any]:
        return {
            "same": ct.resize(ct.decode_image(inputs["image"]), 16, 16, method="nearest"),
            "half": ct.resize(ct.decode_image(inputs["image"]), 8, 8, method="box"),
            "grey": ct.resize(ct.decode_image(inputs["image"], mode="L"), 4, 4, method="box"),
        }

    graph = fitted(fn, IMAGES)
    out = graph.apply({"image": [IMAGES[0]]})
    assert np.array_equal(out["same"][0].reshape(16, 16, 3), PIXELS[0])  # same size: the pixels as decoded
    blocks = PIXELS[0].reshape(8, 2, 8, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(out["half"][0].reshape(8, 8, 3), blocks, atol=1.0)  # Pillow's fixed point, in uint8
    grey = pillow(IMAGES[0], "L").reshape(4, 4, 4, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(out["grey"][0].reshape(4, 4), grey, atol=1.0)
    assert graph.describe()["grey"]["shape"] == [4, 4, 1]


def test_every_format_and_mode_decodes_as_pillow_converts_it() -> None:
    out = fitted(lambda inputs: {"x": ct.resize(ct.decode_image(inputs["image"], mode="RGBA"), 12, 12)}, IMAGES).apply({"image": IMAGES})
    for data, row in zip(IMAGES, out["x"], strict=True):
        with Image.open(io.BytesIO(data)) as image:
            expected = np.asarray(image.convert("RGBA").resize((12, 12), resample=Image.Resampling.BILINEAR))
        assert np.array_equal(row.reshape(12, 12, 4), expected)


def test_normalize_is_torchvisions_to_tensor_then_normalize() -> None:
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

    def fn(inputs: Any) -> dict[str, Any]:
        pixels = ct.resize(ct.decode_image(inputs["image"]), 16, 16)
        return {"pixels": pixels, "unit": ct.normalize(pixels), "standard": ct.normalize(pixels, mean=mean, std=std)}

    out = fitted(fn, IMAGES).apply({"image": IMAGES})
    unit = out["pixels"] / 255.0
    assert np.array_equal(out["unit"], unit)
    expected = (unit.reshape(-1, 16, 16, 3) - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(out["standard"].reshape(-1, 16, 16, 3), expected, rtol=1e-15, atol=0)


def test_fitted_per_channel_statistics_are_numpys() -> None:
    def fn(inputs: Any) -> dict[str, Any]:
        pixels = ct.resize(ct.decode_image(inputs["image"]), 8, 8)
        return {"pixels": pixels, "z": ct.scale_to_z_score(pixels, per_axis=-1), "z_pixel": ct.scale_to_z_score(pixels)}

    images = [*IMAGES, None]
    out = fitted(fn, images).apply({"image": images})
    pixels = out["pixels"][:-1].reshape(-1, 8, 8, 3)
    channels = pixels.reshape(-1, 3)
    expected = (pixels - channels.mean(axis=0)) / channels.std(axis=0)
    np.testing.assert_allclose(out["z"][:-1].reshape(-1, 8, 8, 3), expected, rtol=1e-9, atol=1e-12)
    flat = out["pixels"][:-1]
    np.testing.assert_allclose(out["z_pixel"][:-1], (flat - flat.mean(axis=0)) / flat.std(axis=0), rtol=1e-9, atol=1e-12)
    assert np.isnan(out["z"][-1]).all() and np.isnan(out["pixels"][-1]).all()  # a missing image


def every_op(inputs: Any) -> dict[str, Any]:
    rgb = ct.resize(ct.decode_image(inputs["image"]), 10, 14, method="bicubic")
    return {
        "rgb": rgb,
        "grey": ct.resize(ct.decode_image(inputs["image"], mode="L"), 5, 5, method="lanczos"),
        "unit": ct.normalize(rgb),
        "standard": ct.normalize(rgb, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3]),
        "z_channel": ct.scale_to_z_score(rgb, per_axis=2),
        "z_pixel": ct.scale_to_z_score(rgb),
        "range": ct.scale_to_0_1(rgb, per_axis=-1),
    }


def test_one_image_alone_gets_the_bits_of_its_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    images = [*IMAGES, None]
    graph = fitted(every_op, images)
    batch = graph.apply({"image": images})

    def refuse(*_: Any) -> Any:
        raise AssertionError("the batch path ran for one row")

    monkeypatch.setattr("conveyor.transform.fitted.read_inputs", refuse)
    for i, data in enumerate(images):
        alone = graph.apply({"image": data})
        for name, value in batch.items():
            assert alone[name].tobytes() == value[i : i + 1].tobytes(), f"{name} of image {i}"


def test_what_is_no_image_fails_with_what_to_do() -> None:
    graph = fitted(lambda inputs: {"x": ct.resize(ct.decode_image(inputs["image"]), 4, 4)}, IMAGES[:2])
    with pytest.raises(TransformError, match=r"bytes do not decode as an image .*quarantines such files"):
        graph.apply({"image": IMAGES[0][: len(IMAGES[0]) // 2]})  # a truncated PNG
    with pytest.raises(TransformError, match=r"bytes do not decode as an image"):
        graph.apply({"image": b"GIF89a but no more"})
    with pytest.raises(TransformError, match=r"'pixels' is a image column, not a feature; make one of it with ct.resize"):
        trace(lambda inputs: {"pixels": ct.decode_image(inputs["image"])}, {"image": "bytes"})
    with pytest.raises(TransformError, match=r"mean has 2 values; give one, or one per channel \(3\)"):
        trace(lambda inputs: {"x": ct.normalize(ct.resize(ct.decode_image(inputs["image"]), 4, 4), mean=[0.5, 0.5], std=[1.0, 1.0])}, {"image": "bytes"})


@pytest.mark.parametrize("arrow_type", [pa.binary(), pa.large_binary(), pa.binary_view()])
def test_bytes_decode_from_every_arrow_binary_type(arrow_type: pa.DataType) -> None:
    """Polars hands binary columns over as binary_view (the Evaluator's frames): the same pixels."""
    graph = fitted(lambda inputs: {"pixels": ct.resize(ct.decode_image(inputs["image"]), 16, 16)}, IMAGES)
    out = graph.apply(pa.table({"image": pa.array(IMAGES[:1], arrow_type)}))
    assert np.array_equal(out["pixels"][0].reshape(16, 16, 3), PIXELS[0])
