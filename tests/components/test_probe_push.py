"""The Pusher's gates and versions, and the InfraValidator's requests, probed from outside: a
blessing that is no verdict or never arrived pushes nothing; a model that already is the newest
version is not pushed again; a full disk names the destination and leaves nothing a server reads;
a model reading a file's bytes is served as a client sends them; a server's error is one line.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Examples, InfraBlessing, Model, ModelBlessing
from conveyor.components import InfraValidator, Pusher, Resolver
from conveyor.components.pusher import newest_copy, push_bundle
from tests.components.test_pusher import given_blessing, given_infra_blessing, pushed_by, train_bundle, versions
from tests.helpers import REPO
from tests.model import graphs


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bundle")
    return train_bundle(graphs.saved("binary", folder / "graph", sparse=False), folder / "model")


def copied_model(bundle: Path) -> Any:
    @component
    def copied(model: Output[Model]) -> None:
        shutil.copytree(bundle, model.uri, dirs_exist_ok=True)

    return copied()


@component
def blessing_holding(model: Input[Model], blessing: Output[ModelBlessing], *, verdict: Parameter[str]) -> None:
    """A blessing whose ``blessed`` is the JSON ``verdict``, as a step of the user's own may write it."""
    blessing.properties["blessed"] = json.loads(verdict)


@pytest.mark.parametrize("verdict", ['"false"', "[false]"])
def test_a_blessing_whose_blessed_is_no_verdict_pushes_nothing(bundle: Path, tmp_path: Path, verdict: str) -> None:
    model = copied_model(bundle)
    blessing = blessing_holding(model=model.outputs["model"], verdict=verdict)
    dest = tmp_path / "serving"
    pusher = Pusher(model.outputs["model"], blessing.outputs["blessing"], push_destination=str(dest))
    props = pushed_by(Pipeline("verdict", [model, blessing, pusher], root=tmp_path / "root").run())
    assert props["pushed"] is False
    assert f"holds blessed={json.loads(verdict)!r}, which is no verdict" in props["reason"]
    assert versions(dest) == []


@pytest.mark.parametrize("empty", ["model_blessing", "infra_blessing"])
def test_a_wired_blessing_that_arrives_empty_pushes_nothing(bundle: Path, tmp_path: Path, empty: str) -> None:
    """A Resolver that finds no blessing gives the Pusher None: nothing judged the model."""
    model = copied_model(bundle)
    blessed = given_blessing(model=model.outputs["model"], blessed=True)
    kind = ModelBlessing if empty == "model_blessing" else InfraBlessing
    found_none = Resolver(strategy="latest_artifact", artifact_type=kind)
    blessings = {
        "model_blessing": blessed.outputs["blessing"],
        "infra_blessing": given_infra_blessing(model=model.outputs["model"], blessed=True).outputs["blessing"],
        empty: found_none.outputs[empty],
    }
    dest = tmp_path / "serving"
    pusher = Pusher(model.outputs["model"], **blessings, push_destination=str(dest))
    steps = [model, blessed, found_none, blessings["infra_blessing"].producer, pusher]
    props = pushed_by(Pipeline("empty", list(dict.fromkeys(steps)), root=tmp_path / "root").run())
    assert props["pushed"] is False
    assert props["reason"].startswith(f"no {kind.__name__} reached the Pusher's {empty}")
    assert versions(dest) == []


@pytest.mark.parametrize("where", ["local", "memory"])
def test_a_model_that_already_is_the_newest_version_is_not_pushed_again(
    bundle: Path, tmp_path: Path, where: str
) -> None:
    """A Pusher run again on the same blessed model (here without the cache; an InfraValidator that
    checks it again on new data does the same) leaves the destination as it is."""
    import fsspec

    dest = str(tmp_path / "serving") if where == "local" else f"memory://probe-push-{os.getpid()}-{tmp_path.name}"
    fs, root = fsspec.core.url_to_fs(dest)
    try:
        model = copied_model(bundle)
        blessing = given_blessing(model=model.outputs["model"], blessed=True)
        pusher = Pusher(model.outputs["model"], blessing.outputs["blessing"], push_destination=dest)
        pipeline = Pipeline("again", [model, blessing, pusher], root=tmp_path / "root")
        first = pushed_by(pipeline.run())
        again = pushed_by(pipeline.run(enable_cache=False))
        assert (first["pushed"], first["pushed_version"]) == (True, 1)
        assert (again["pushed"], again["pushed_version"], again["pushed_destination"]) == (
            False, 1, first["pushed_destination"],
        )  # fmt: skip
        assert again["reason"] == (
            f"model {again['model_id']} already is the newest version, 1, at {first['pushed_destination']}; "
            "not pushed again."
        )
        assert sorted(n.rpartition("/")[2] for n in fs.ls(root, detail=False)) == [".versions", "1"]
    finally:
        if fs.exists(root):
            fs.rm(root, recursive=True)


def test_a_pushed_version_removed_by_hand_is_pushed_again_not_reported_from_cache(bundle: Path, tmp_path: Path) -> None:
    """The cache does not hide a version a user deleted: the Pusher runs again and pushes anew."""
    model = copied_model(bundle)
    blessing = given_blessing(model=model.outputs["model"], blessed=True)
    dest = tmp_path / "serving"
    pusher = Pusher(model.outputs["model"], blessing.outputs["blessing"], push_destination=str(dest))
    pipeline = Pipeline("removed", [model, blessing, pusher], root=tmp_path / "root")
    assert pushed_by(pipeline.run())["pushed_version"] == 1
    assert pipeline.run().executions["Pusher"].status == "cached"  # the version is there: nothing to do
    shutil.rmtree(dest / "1")
    run = pipeline.run()
    assert run.executions["Pusher"].status == "succeeded"
    assert (pushed_by(run)["pushed"], pushed_by(run)["pushed_version"]) == (True, 2)  # a number is never given twice
    assert versions(dest) == ["2"]
    assert pipeline.run().executions["Pusher"].status == "cached"


def test_an_older_version_is_pushed_again_to_be_the_newest(bundle: Path, tmp_path: Path) -> None:
    """Only the newest version counts: the model of version 1 pushed after another is version 3."""
    other = train_bundle(bundle.parent / "graph", tmp_path / "other", shuffle_seed=1)
    dest = str(tmp_path / "serving")
    assert push_bundle(bundle, dest)[0] == 1
    assert newest_copy(bundle, dest) == (1, f"{dest}/1")
    assert push_bundle(other, dest)[0] == 2
    assert newest_copy(bundle, dest) is None


FULL_DISK_PUSH = """
import json, shutil, sys
from pathlib import Path
from conveyor import Input, Output, Pipeline, component
from conveyor.artifacts import Model, ModelBlessing
from conveyor.components import Pusher

bundle, dest, root = sys.argv[1:4]

@component
def copied(model: Output[Model]) -> None:
    shutil.copytree(bundle, model.uri, dirs_exist_ok=True)

@component
def blessed(model: Input[Model], blessing: Output[ModelBlessing]) -> None:
    blessing.properties["blessed"] = True

model = copied()
blessing = blessed(model=model.outputs["model"])
pusher = Pusher(model.outputs["model"], blessing.outputs["blessing"], push_destination=dest)
step = Pipeline("full", [model, blessing, pusher], root=root).run().executions["Pusher"]
print(json.dumps({"status": step.status, "error": step.error}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a small disk of its own: tmpfs in a mount namespace")
def test_a_full_disk_fails_the_push_naming_the_destination_and_leaves_nothing(bundle: Path, tmp_path: Path) -> None:
    """The copy fills the disk part way: the error names the push destination's disk (not the
    pipeline root's, which has room), in one line, and no version or staging folder is left."""
    disk = tmp_path / "disk"
    disk.mkdir()
    dest = disk / "serving"
    # 16 pages, 15 of them filled: the bundle's first file fits, the next does not
    shell = (
        f'mount -t tmpfs -o size=64k tmpfs "{disk}" && head -c 61440 /dev/zero > "{disk}/filler" && '
        f'"{sys.executable}" -c "$0" "{bundle}" "{dest}" "{tmp_path / "root"}" && find "{disk}" -mindepth 1'
    )
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", shell, FULL_DISK_PUSH],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    if done.returncode != 0 and "mount" in done.stderr and "Traceback" not in done.stderr:
        pytest.skip(f"cannot mount a small disk here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    said, *left = done.stdout.splitlines()
    step = json.loads(said)
    assert step["status"] == "failed"
    assert step["error"].splitlines()[0] == (
        f"No space left on device (ENOSPC) writing {dest}: free space on that disk, then run again."
    )
    assert sorted(Path(p).relative_to(disk).as_posix() for p in left) == ["filler", "serving"]


def infra_blessing_of(model: Any, examples: Any, root: Path, **parameters: Any) -> Any:
    infra = InfraValidator(model=model.outputs["model"], examples=examples.outputs["examples"], **parameters)
    run = Pipeline("infra", [model, examples, infra], root=root).run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items() if e.error}
    return run.executions["InfraValidator"].outputs["blessing"][0]


def png(bright: bool, seed: int) -> bytes:
    """An 8x8 RGB image, dark (class 0) or bright (class 1), with noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(170 if bright else 80, 40, (8, 8, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def image_fn(inputs: Any) -> dict[str, Any]:
    import conveyor.transform as ct

    return {"pixels": ct.normalize(ct.resize(ct.decode_image(inputs["image"]), 4, 4)), "label": inputs["label"]}


def image_table() -> pa.Table:
    return pa.table(
        {
            "image": pa.array([png(i % 2 == 1, i) for i in range(12)], pa.binary()),
            "label": pa.array([i % 2 for i in range(12)], pa.int64()),
        }
    )


@component
def image_model(model: Output[Model], *, folder: Parameter[str]) -> None:
    """A logistic regression on the pixels of PNG files, its bundle reading the files' bytes."""
    from sklearn.linear_model import LogisticRegression

    from conveyor.model import label_vector, save, to_matrix
    from conveyor.transform.fit import fit
    from conveyor.transform.fitted import FittedGraph
    from conveyor.transform.graph import trace

    inputs = {"image": {"kind": "bytes", "required": True}, "label": {"kind": "number", "required": False}}
    table = image_table()
    outputs = trace(image_fn, {name: spec["kind"] for name, spec in inputs.items()})
    fit(outputs, lambda: table.to_batches(max_chunksize=6))
    graph = FittedGraph(outputs, inputs)
    graph.save(Path(folder) / "graph")
    x, _ = to_matrix(graph.apply(table), graph.describe(), "label")
    fitted = LogisticRegression(max_iter=500).fit(x, label_vector(graph.apply(table), "label"))
    save(fitted, path=model.uri, transform_graph=Path(folder) / "graph", label="label")


@component
def image_examples(examples: Output[Examples]) -> None:
    folder = Path(examples.uri) / "Split-eval"
    folder.mkdir()
    pq.write_table(image_table(), folder / "part-00000.parquet")


def test_a_model_reading_a_files_bytes_is_infra_blessed(tmp_path: Path) -> None:
    """The requests carry an image's bytes as base64, as a client sends them; sent as Python's
    ``str(bytes)`` the server refused every one, and no image or audio model was ever blessed."""
    pytest.importorskip("PIL.Image", reason="the image model decodes with Pillow: pip install 'conveyor[media]'")
    model = image_model(folder=str(tmp_path))
    blessing = infra_blessing_of(model, image_examples(), tmp_path / "root", num_examples=4, rows_per_request=2)
    assert blessing.properties["blessed"] is True, blessing.properties["reason"]
    assert blessing.properties["requests"] == 4


SCORER = """
import torch


class Scorer(torch.nn.Module):
    def __init__(self, width: int, mode: str):
        super().__init__()
        self.linear = torch.nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 2:
            raise RuntimeError("this model cannot score two rows")
        return torch.sigmoid(self.linear(x))
"""


def test_a_server_error_of_many_lines_is_a_reason_of_one(tmp_path: Path) -> None:
    """In-process the four rows go as one batch and score; the server gets two at a time, and
    answers with TorchScript's two tracebacks: the reason keeps their first and last line."""
    pytest.importorskip("torch")
    from tests.components.test_infra_validator import torch_scorer
    from tests.components.test_pusher import held_out

    module = tmp_path / "scorer.py"  # TorchScript reads the module's source from a file
    module.write_text(SCORER)
    graph = graphs.saved("binary", tmp_path / "graph", sparse=False)
    scorer = torch_scorer(graph=str(graph), module=str(module), mode="")
    blessing = infra_blessing_of(scorer, held_out(), tmp_path / "root", num_examples=4, rows_per_request=2)
    reason = blessing.properties["reason"]
    assert blessing.properties["blessed"] is False
    assert "\n" not in reason
    assert reason.startswith(
        "the server answered 500 to rows 0..1 in the row format: the server failed on this request:"
    )
    assert reason.endswith("... builtins.RuntimeError: this model cannot score two rows")
