"""Files in requests: a real ``conveyor serve`` process with an audio model (WAV bytes in) and an
image model (PNG bytes in) answers base64 in TF Serving's JSON and BYTES tensors in the Open
Inference Protocol (JSON as base64, raw over the binary extension and gRPC) with what
``load_model(...).predict`` gives on the same bytes; bad base64 or bytes that are no audio are
400s that say so.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import conveyor.transform as ct
from conveyor.model import label_vector, load_model, save, to_matrix
from conveyor.transform.fit import fit
from conveyor.transform.fitted import FittedGraph
from conveyor.transform.graph import trace
from tests.helpers import conveyor_cmd

soundfile = pytest.importorskip(
    "soundfile", reason="the audio model decodes with soundfile: pip install 'conveyor[media]'"
)
pytest.importorskip("soxr", reason="ct.decode_audio resamples with soxr: pip install 'conveyor[media]'")
Image = pytest.importorskip("PIL.Image", reason="the image model decodes with Pillow: pip install 'conveyor[media]'")
linear_model = pytest.importorskip("sklearn.linear_model")
grpcclient = pytest.importorskip("tritonclient.grpc")
httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

RATE = 8000


def wav(pitch: float, seed: int) -> bytes:
    """Half a second of a tone with noise, 16-bit WAV: low tones are class 0, high ones class 1."""
    rng = np.random.default_rng(seed)
    t = np.arange(RATE // 2) / RATE
    samples = 0.3 * np.sin(2 * np.pi * pitch * t) + 0.02 * rng.standard_normal(len(t))
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def png(bright: bool, seed: int) -> bytes:
    """A 12x12 RGB image, dark (class 0) or bright (class 1), with noise."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(170 if bright else 80, 40, (12, 12, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def audio_fn(inputs: Any) -> dict[str, Any]:
    clip = ct.pad_or_trim(ct.decode_audio(inputs["audio"], sample_rate=RATE), RATE // 2)
    mel = ct.log_mel_spectrogram(clip, n_fft=256, hop_length=128, n_mels=16)
    return {"mel": ct.scale_to_z_score(mel, per_axis=0), "label": inputs["label"]}


def image_fn(inputs: Any) -> dict[str, Any]:
    pixels = ct.normalize(ct.resize(ct.decode_image(inputs["image"]), 6, 6, method="box"))
    return {"pixels": pixels, "label": inputs["label"]}


def bundle(folder: Path, fn: Any, feature: str, files: list[bytes], labels: list[int]) -> Path:
    """A logistic regression on ``fn``'s features of ``files``, saved as a bundle whose graph reads the bytes."""
    inputs = {feature: {"kind": "bytes", "required": True}, "label": {"kind": "number", "required": False}}
    outputs = trace(fn, {name: spec["kind"] for name, spec in inputs.items()})
    table = pa.table({feature: pa.array(files, pa.binary()), "label": pa.array(labels, pa.int64())})
    fit(outputs, lambda: table.to_batches(max_chunksize=8))
    graph = FittedGraph(outputs, inputs)
    graph.save(folder / "graph")
    columns = graph.apply(table)
    x, _ = to_matrix(columns, graph.describe(), "label")
    model = linear_model.LogisticRegression(max_iter=500).fit(x, label_vector(columns, "label"))
    return save(model, path=folder / "serving" / "1", transform_graph=folder / "graph", label="label")


CLIPS = [wav(200 + 40 * i, i) for i in range(6)] + [wav(1500 + 60 * i, 10 + i) for i in range(6)]
IMAGES = [png(False, i) for i in range(6)] + [png(True, 10 + i) for i in range(6)]
LABELS = [0] * 6 + [1] * 6
ASKED = {"audio": [wav(260, 40), wav(1650, 41), wav(900, 42)], "image": [png(True, 40), png(False, 41)]}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    bundle(root / "audio", audio_fn, "audio", CLIPS, LABELS)
    bundle(root / "image", image_fn, "image", IMAGES, LABELS)
    (root / "models.yaml").write_text(
        "models:\n  - {name: audio, base_path: audio/serving}\n  - {name: image, base_path: image/serving}\n"
    )
    return root


@pytest.fixture(scope="module")
def addresses(root: Path) -> Iterator[dict[str, str]]:
    command = [*conveyor_cmd(), "serve", "--config", str(root / "models.yaml"), "--rest-port", "0", "--grpc-port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    said: dict[str, str] = {}
    for line in server.stdout:
        if line.startswith(("REST on ", "gRPC on ")):
            said[line.split()[0]] = line.split()[2].removeprefix("http://")
        if len(said) == 2:
            break
    else:
        server.wait()
        pytest.fail(f"conveyor serve exited with {server.returncode} before it listened")
    yield said
    server.terminate()
    server.wait(timeout=30)
    server.stdout.close()


def expected(root: Path, name: str, files: list[bytes]) -> np.ndarray:
    """The loader's probabilities for the raw files, in this process."""
    return load_model(root / name / "serving" / "1").predict({name: files})["probability"]


def post(address: str, path: str, body: Any) -> tuple[int, Any]:
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("POST", path, body=json.dumps(body).encode())
    response = connection.getresponse()
    status, text = response.status, response.read()
    connection.close()
    return status, json.loads(text)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_the_bundles_signature_and_the_servers_metadata_say_the_input_is_bytes(
    root: Path, addresses: dict[str, str]
) -> None:
    assert load_model(root / "audio" / "serving" / "1").signature["inputs"] == {
        "audio": {"kind": "bytes", "required": True}
    }
    metadata = httpclient.InferenceServerClient(addresses["REST"]).get_model_metadata("image")
    assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]


@pytest.mark.parametrize("name", ["audio", "image"])
@pytest.mark.parametrize("form", ["b64 object", "base64 text", "columns"])
def test_a_base64_file_in_tf_servings_json_gets_the_loaders_answer(
    root: Path, addresses: dict[str, str], name: str, form: str
) -> None:
    files = ASKED[name]
    if form == "columns":
        body: dict[str, Any] = {"inputs": {name: [b64(f) for f in files]}}
    else:
        body = {"instances": [{name: {"b64": b64(f)} if form == "b64 object" else b64(f)} for f in files]}
    status, answer = post(addresses["REST"], f"/v1/models/{name}:predict", body)
    assert status == 200, answer
    got = answer["outputs"]["probability"] if form == "columns" else [p["probability"] for p in answer["predictions"]]
    np.testing.assert_allclose(got, expected(root, name, files), rtol=1e-12)
    assert (np.asarray(got) > 0.5).tolist() == ([False, True, False] if name == "audio" else [True, False])


def test_one_clip_alone_takes_the_one_row_path_and_classify_reads_b64_too(
    root: Path, addresses: dict[str, str]
) -> None:
    clip = ASKED["audio"][1]
    status, answer = post(addresses["REST"], "/v1/models/audio:predict", {"instances": [{"audio": {"b64": b64(clip)}}]})
    assert status == 200
    assert answer["predictions"][0]["probability"] == pytest.approx(expected(root, "audio", [clip])[0], rel=1e-12)
    status, answer = post(addresses["REST"], "/v1/models/audio:classify", {"examples": [{"audio": b64(clip)}]})
    assert status == 200
    assert answer["results"][0][1][1] == pytest.approx(expected(root, "audio", [clip])[0], rel=1e-12)


@pytest.mark.parametrize("name", ["audio", "image"])
@pytest.mark.parametrize("kind", ["http-json", "http-binary", "grpc"])
def test_a_bytes_tensor_in_the_open_inference_protocol_gets_the_loaders_answer(
    root: Path, addresses: dict[str, str], name: str, kind: str
) -> None:
    files = ASKED[name]
    if kind == "grpc":
        client: Any = grpcclient.InferenceServerClient(addresses["gRPC"])
        tensor = grpcclient.InferInput(name, [len(files)], "BYTES")
        tensor.set_data_from_numpy(np.array(files, dtype=object))  # raw bytes, in raw_input_contents
    else:
        client = httpclient.InferenceServerClient(addresses["REST"])
        tensor = httpclient.InferInput(name, [len(files)], "BYTES")
        if kind == "http-json":  # JSON carries text: a file goes as base64
            tensor.set_data_from_numpy(np.array([b64(f) for f in files], dtype=object), binary_data=False)
        else:
            tensor.set_data_from_numpy(np.array(files, dtype=object), binary_data=True)
    result = client.infer(name, [tensor])
    client.close()
    np.testing.assert_allclose(result.as_numpy("probability"), expected(root, name, files), rtol=1e-12)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"instances": [{"audio": "not base64!"}]}, r"row 0\[\"audio\"\] is not base64"),
        ({"instances": [{"audio": {"b64": "QUJ"}}]}, r"is not base64"),
        ({"instances": [{"audio": {"b64": 12}}]}, r'the one object a value may be is \{"b64"'),
        ({"instances": [{"audio": 12}]}, r"holds a file's bytes, sent as base64 text"),
        ({"inputs": {"audio": [b64(b"RIFF....WAVE but no audio")]}}, r"do not decode as audio"),
    ],
)
def test_what_is_no_base64_or_no_audio_is_a_400_that_says_so(addresses: dict[str, str], body: Any, said: str) -> None:
    status, answer = post(addresses["REST"], "/v1/models/audio:predict", body)
    assert status == 400
    assert re.search(said, answer["error"]), answer["error"]


def test_bad_base64_in_an_inference_request_is_a_400_naming_the_input(addresses: dict[str, str]) -> None:
    client = httpclient.InferenceServerClient(addresses["REST"])
    tensor = httpclient.InferInput("audio", [1], "BYTES")
    tensor.set_data_from_numpy(np.array(["%%%"], dtype=object), binary_data=False)
    with pytest.raises(InferenceServerException, match=r"element 0 of input 'audio' is not base64"):
        client.infer("audio", [tensor])
    client.close()
