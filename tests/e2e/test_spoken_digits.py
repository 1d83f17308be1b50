"""The spoken digits example as a user runs it: ``conveyor run`` on a copy of the example, the
accuracy on voices the model never heard, the embedding's comparison, and the pushed model
served by ``conveyor serve`` answering a base64 FLAC with what the loader gives in process.
Regenerating the data (espeak-ng) and the embedding net (torch) are slow tests of their own.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conveyor import MetadataStore
from conveyor.model import load_model
from tests.helpers import REPO, conveyor_cmd, run_cli

EXAMPLE = REPO / "examples" / "spoken_digits"
for module, extra in [("soundfile", "media"), ("soxr", "media"), ("sklearn", "demo"), ("onnxruntime", "onnx")]:
    pytest.importorskip(module, reason=f"the spoken digits example needs {module}: pip install 'conveyor[{extra}]'")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example (its pushed models stay out of the repository), run once."""
    folder = tmp_path_factory.mktemp("spoken") / "spoken_digits"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("serving", "conveyor_root", "__pycache__"))
    run = run_cli("run", str(folder / "pipeline.py"), "--root", "root", cwd=folder.parent, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "(10 succeeded)" in run.stdout, run.stdout
    return folder


def artifact(project: Path, step: str, output: str) -> Path:
    with MetadataStore(f"sqlite:///{project.parent / 'root' / 'metadata.sqlite'}") as store:
        (found,) = [a for a in store.artifacts(pipeline="spoken_digits") if Path(a.uri).parts[-3:-1] == (step, output)]
    return Path(found.uri)


def test_the_model_names_digits_said_by_voices_it_never_heard(project: Path) -> None:
    metrics = json.loads((artifact(project, "Evaluator", "evaluation") / "metrics.json").read_text())
    overall = metrics["slices"][0]
    assert overall["example_count"] == 90  # three held-out voices, ten digits, three takes
    assert overall["metrics"]["accuracy"] > 0.6  # chance is 0.1
    assert metrics["validation"]["blessed"]
    pushed = sorted(p for p in (project / "serving" / "spoken_digits").iterdir() if not p.name.startswith("."))
    assert [p.name for p in pushed] == ["1"]


def test_the_embedding_goes_through_the_feature_library_and_is_compared(project: Path) -> None:
    embedded = artifact(project, "Embedder", "embedded_examples")
    with MetadataStore(f"sqlite:///{project.parent / 'root' / 'metadata.sqlite'}") as store:
        (embedder,) = [a for a in store.artifacts(pipeline="spoken_digits") if Path(a.uri) == embedded]
    assert embedder.properties["rows_computed"] == 360
    assert len(embedder.properties["outputs"]) == 64
    comparison = json.loads((artifact(project, "compare_features", "comparison") / "comparison.json").read_text())
    accuracy = comparison["eval_accuracy"]
    assert set(accuracy) == {"log_mel", "embedding", "log_mel_and_embedding"}
    assert min(accuracy.values()) > 0.6


@pytest.fixture(scope="module")
def rest(project: Path) -> Iterator[str]:
    bundle = project / "serving" / "spoken_digits"
    command = [*conveyor_cmd(), "serve", "--model-dir", str(bundle), "--model-name", "digits", "--rest-port", "0", "--grpc-port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    address = next((line.split()[2] for line in server.stdout if line.startswith("REST on ")), None)
    if address is None:
        server.wait()
        pytest.fail(f"conveyor serve exited with {server.returncode} before it listened")
    yield address.removeprefix("http://")
    server.terminate()
    server.wait(timeout=30)
    server.stdout.close()


def test_the_served_model_answers_a_base64_file_as_the_loader_does(project: Path, rest: str) -> None:
    clips = [project / "data" / "7" / "en-gb-f3-0.flac", project / "data" / "2" / "en-us-m4-1.flac"]
    files = [clip.read_bytes() for clip in clips]
    body = {"instances": [{"content": {"b64": base64.b64encode(f).decode()}} for f in files]}
    host, port = rest.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("POST", "/v1/models/digits:predict", body=json.dumps(body).encode())
    response = connection.getresponse()
    status, answer = response.status, json.loads(response.read())
    connection.close()
    assert status == 200, answer
    expected = load_model(project / "serving" / "spoken_digits" / "1").predict({"content": files})
    served = np.array([p["probabilities"] for p in answer["predictions"]])
    np.testing.assert_allclose(served, expected["probabilities"], rtol=1e-12)
    assert [p["class"] for p in answer["predictions"]] == expected["class"].tolist()


@pytest.mark.slow
def test_make_data_regenerates_the_shipped_clips(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("make_data.py needs espeak-ng: apt-get install espeak-ng")
    shutil.copy(EXAMPLE / "make_data.py", tmp_path)
    subprocess.run([sys.executable, str(tmp_path / "make_data.py")], check=True, capture_output=True)
    assert (tmp_path / "data" / "manifest.csv").read_text() == (EXAMPLE / "data" / "manifest.csv").read_text()
    made = {p.relative_to(tmp_path / "data"): _sha256(p) for p in (tmp_path / "data").rglob("*.flac")}
    shipped = {p.relative_to(EXAMPLE / "data"): _sha256(p) for p in (EXAMPLE / "data").rglob("*.flac")}
    assert made == shipped  # the same espeak-ng version (1.51) as made them


@pytest.mark.slow
def test_export_embedder_trains_and_exports_a_net_onnxruntime_runs(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="export_embedder.py trains with torch: pip install 'conveyor[torch]'")
    import onnxruntime

    out = tmp_path / "embedder.onnx"
    command = [sys.executable, str(EXAMPLE / "export_embedder.py"), "--root", "root", "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, cwd=tmp_path, timeout=600)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    mel = np.random.default_rng(0).standard_normal((3, 40 * 101)).astype(np.float32)
    (embedding,) = session.run(None, {"mel": mel})
    assert embedding.shape == (3, 64)
    assert not (EXAMPLE / "root").exists()  # --root is read from the working directory


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
