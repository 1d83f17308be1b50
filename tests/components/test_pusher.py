"""The Pusher: only a blessed (and infra-blessed) model reaches the destination, as a new integer
version that appears whole, however many pushes race; a worse model is not pushed, a better one is.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.neural_network import MLPClassifier

from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.analysis.config import EvalConfig, Threshold
from conveyor.artifacts import Examples, InfraBlessing, Model, ModelBlessing
from conveyor.components import Evaluator, Pusher, Resolver
from conveyor.components.pusher import claim_version, push_bundle, push_to_store
from conveyor.model import label_vector, load_model, save, to_matrix
from conveyor.model.bundle import MANIFEST
from conveyor.serving.registry import latest_version
from conveyor.transform.fitted import load
from tests.helpers import REPO
from tests.model import graphs

HELD_OUT = graphs.table(400, seed=3)


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return graphs.saved("binary", tmp_path_factory.mktemp("graph"), sparse=False)


def train_bundle(graph: Path, path: Path, shuffle_seed: int | None = None) -> Path:
    """A logistic regression on the graph's features; labels shuffled by the seed make a worse one."""
    fitted = load(graph)
    columns = fitted.apply(graphs.table(300, seed=0))
    x, _ = to_matrix(columns, fitted.describe(), "disputed")
    y = label_vector(columns, "disputed").astype(np.int64)
    if shuffle_seed is not None:
        y = np.random.default_rng(shuffle_seed).permutation(y)
    return save(LogisticRegression().fit(x, y), path=path, transform_graph=graph, label="disputed")


@pytest.fixture(scope="module")
def bundle(graph: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_bundle(graph, tmp_path_factory.mktemp("bundle") / "model")


@pytest.fixture(scope="module")
def large_bundle(graph: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of some megabytes (a wide network), so that a copy takes long enough to be caught half done."""
    fitted = load(graph)
    columns = fitted.apply(graphs.table(300, seed=0))
    x, _ = to_matrix(columns, fitted.describe(), "disputed")
    y = label_vector(columns, "disputed").astype(np.int64)
    with warnings.catch_warnings():  # two iterations do not converge, and need not
        warnings.simplefilter("ignore", ConvergenceWarning)
        network = MLPClassifier(hidden_layer_sizes=(700, 700), max_iter=2, random_state=0).fit(x, y)
    return save(network, path=tmp_path_factory.mktemp("large") / "model", transform_graph=graph, label="disputed")


def accuracy(bundle: str | Path) -> float:
    return float(accuracy_score(np.asarray(HELD_OUT.column("disputed")), load_model(bundle).predict(HELD_OUT)["class"]))


@component
def trained(model: Output[Model], *, graph: Parameter[str], shuffle_seed: Parameter[int | None] = None) -> None:
    train_bundle(Path(graph), Path(model.uri), shuffle_seed)


@component
def held_out(examples: Output[Examples]) -> None:
    """The held-out rows as an ExampleGen's eval split."""
    folder = Path(examples.uri) / "Split-eval"
    folder.mkdir()
    pq.write_table(HELD_OUT, folder / "part-00000.parquet")


@component
def given_blessing(model: Input[Model], blessing: Output[ModelBlessing], *, blessed: Parameter[bool]) -> None:
    blessing.properties["blessed"] = blessed


@component
def given_infra_blessing(model: Input[Model], blessing: Output[InfraBlessing], *, blessed: Parameter[bool]) -> None:
    blessing.properties["blessed"] = blessed


def pushed_by(run: object) -> dict[str, object]:
    ex = run.executions["Pusher"]  # type: ignore[attr-defined]
    assert ex.status == "succeeded", ex.error
    return ex.outputs["pushed_model"][0].properties


def versions(dest: Path) -> list[str]:
    return sorted((n for n in os.listdir(dest) if not n.startswith(".")), key=int) if dest.exists() else []


def test_a_worse_model_is_not_pushed_and_a_better_one_is(graph: Path, tmp_path: Path) -> None:
    dest = tmp_path / "serving" / "disputes"
    config = EvalConfig(label_key="disputed", thresholds={"accuracy": Threshold(lower_bound=0.5, change=0.0)})
    outcomes = []
    for shuffle_seed in (1, None, 2):  # weak but first, then better, then worse
        examples = held_out()
        model = trained(graph=str(graph), shuffle_seed=shuffle_seed)
        baseline = Resolver(strategy="latest_blessed_model")
        evaluator = Evaluator(
            examples=examples.outputs["examples"], model=model.outputs["model"],
            baseline_model=baseline.outputs["model"], eval_config=config,
        )  # fmt: skip
        pusher = Pusher(
            model=model.outputs["model"], model_blessing=evaluator.outputs["blessing"], push_destination=str(dest)
        )
        run = Pipeline("push", [examples, model, baseline, evaluator, pusher], root=tmp_path / "root").run()
        assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
        outcomes.append((pushed_by(run), run.executions["trained"].outputs["model"][0]))
    (first, first_model), (better, better_model), (worse, _) = outcomes
    assert (first["pushed"], first["pushed_version"]) == (True, 1)
    assert (better["pushed"], better["pushed_version"]) == (True, 2)
    assert (worse["pushed"], worse["pushed_version"], worse["pushed_destination"]) == (False, None, None)
    assert "not blessed: accuracy" in str(worse["reason"])
    assert versions(dest) == ["1", "2"]
    assert better["pushed_destination"] == str(dest / "2")
    assert accuracy(dest / "2") == accuracy(better_model.uri) > accuracy(dest / "1") == accuracy(first_model.uri)


def test_a_new_verdict_on_the_same_model_is_acted_on_not_taken_from_cache(graph: Path, tmp_path: Path) -> None:
    """The model is cached, the Evaluator runs again under a changed threshold: its verdict is new,
    and so is the Pusher's step (a blessing's properties are not in a cache key, its files are)."""
    dest = tmp_path / "serving"
    pushed = []
    for lower_bound in (0.99, 0.5, 0.99):  # not blessed, then blessed when the bar is lowered, then not again
        examples, model = held_out(), trained(graph=str(graph))
        config = EvalConfig(label_key="disputed", thresholds={"accuracy": Threshold(lower_bound=lower_bound)})
        evaluator = Evaluator(examples=examples.outputs["examples"], model=model.outputs["model"], eval_config=config)
        pusher = Pusher(
            model=model.outputs["model"], model_blessing=evaluator.outputs["blessing"], push_destination=str(dest)
        )
        run = Pipeline("verdicts", [examples, model, evaluator, pusher], root=tmp_path / "root").run()
        assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
        assert run.executions["trained"].status == "cached" or not pushed
        outcome = run.executions["Pusher"].outputs["pushed_model"][0].properties
        pushed.append((outcome["pushed"], outcome["pushed_version"]))
    assert pushed == [(False, None), (True, 1), (False, None)]  # the last the first run's, from cache
    assert versions(dest) == ["1"]


@pytest.mark.parametrize(
    ("blessed", "infra", "pushed"),
    [(True, None, True), (True, True, True), (False, None, False), (True, False, False), (False, True, False)],
)
def test_only_a_blessed_and_infra_blessed_model_is_pushed(
    bundle: Path, tmp_path: Path, blessed: bool, infra: bool | None, pushed: bool
) -> None:
    @component
    def copied(model: Output[Model]) -> None:
        shutil.copytree(bundle, model.uri, dirs_exist_ok=True)

    model = copied()
    blessing = given_blessing(model=model.outputs["model"], blessed=blessed)
    steps = [model, blessing]
    infra_blessing = None
    if infra is not None:
        infra_step = given_infra_blessing(model=model.outputs["model"], blessed=infra)
        steps.append(infra_step)
        infra_blessing = infra_step.outputs["blessing"]
    dest = tmp_path / "serving"
    pusher = Pusher(model.outputs["model"], blessing.outputs["blessing"], infra_blessing, push_destination=str(dest))
    pipeline = Pipeline("gate", [*steps, pusher], root=tmp_path / "root")
    props = pushed_by(pipeline.run())
    assert props["pushed"] is pushed
    assert versions(dest) == (["1"] if pushed else [])
    if not pushed:
        assert props["reason"].startswith("InfraBlessing" if blessed else "ModelBlessing")
        return
    assert accuracy(dest / "1") == accuracy(bundle)
    again = pipeline.run()  # the same blessed model: the Pusher comes from cache, no second version
    assert again.executions["Pusher"].status == "cached"
    assert versions(dest) == ["1"]


def test_push_destination_is_relative_to_the_pipeline_file(bundle: Path) -> None:
    @component
    def copied(model: Output[Model]) -> None: ...

    model = copied()
    blessing = given_blessing(model=model.outputs["model"], blessed=True)
    pusher = Pusher(model=model.outputs["model"], model_blessing=blessing.outputs["blessing"], push_destination="out")
    assert pusher.resolved_parameters()["push_destination"] == str(Path(__file__).parent / "out")
    assert pusher.parameters["push_destination"] == "out"  # the record and the cache key keep it as written


def test_pushes_in_threads_and_processes_get_distinct_increasing_versions(bundle: Path, tmp_path: Path) -> None:
    dest = tmp_path / "serving"
    assert [push_bundle(bundle, str(dest))[0] for _ in range(2)] == [1, 2]
    with ThreadPoolExecutor(6) as pool:
        threaded = [f.result()[0] for f in [pool.submit(push_bundle, bundle, str(dest)) for _ in range(6)]]
    with ProcessPoolExecutor(3, mp_context=get_context("spawn")) as pool:
        forked = [f.result()[0] for f in [pool.submit(push_bundle, bundle, str(dest)) for _ in range(6)]]
    assert sorted(threaded) == list(range(3, 9))
    assert sorted(forked) == list(range(9, 15))
    assert versions(dest) == [str(v) for v in range(1, 15)]
    assert push_bundle(bundle, str(dest))[0] == 15
    assert [n for n in os.listdir(dest) if n.startswith(".")] == [".versions"]  # no staging folder left behind


def test_a_version_removed_by_hand_is_not_given_again(bundle: Path, tmp_path: Path) -> None:
    """A server that loaded version 3 would never look at a new 3: the next push is 4."""
    dest = tmp_path / "serving"
    assert [push_bundle(bundle, str(dest))[0] for _ in range(3)] == [1, 2, 3]
    shutil.rmtree(dest / "3")
    assert push_bundle(bundle, str(dest))[0] == 4
    assert versions(dest) == ["1", "2", "4"]


def test_a_reader_polling_the_destination_never_sees_a_partial_version(large_bundle: Path, tmp_path: Path) -> None:
    dest = tmp_path / "serving"
    bundle = large_bundle
    expected = load_model(bundle).predict(HELD_OUT)["probability"]
    checked: list[str] = []
    problems: list[str] = []
    done = threading.Event()

    def poll() -> None:
        while True:
            last = done.is_set()
            for name in versions(dest):
                if name in checked:
                    continue
                checked.append(name)
                try:  # verifies every file's sha256 against conveyor_model.json
                    np.testing.assert_array_equal(load_model(dest / name).predict(HELD_OUT)["probability"], expected)
                except Exception as e:
                    problems.append(f"version {name}: {e!r}")
            if last:
                return

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        with ProcessPoolExecutor(
            2, mp_context=get_context("spawn")
        ) as pool:  # pushes while the reader runs, not between its turns
            pushed = [f.result()[0] for f in [pool.submit(push_bundle, bundle, str(dest)) for _ in range(12)]]
    finally:
        done.set()
        reader.join()
    assert problems == []
    assert sorted(pushed) == list(range(1, 13))
    assert sorted(checked, key=int) == [str(v) for v in range(1, 13)]


def test_an_fsspec_destination_gets_versions_with_the_manifest(bundle: Path, tmp_path: Path) -> None:
    base = f"memory://serving-{secrets.token_hex(4)}"
    url = f"{base}/disputes"
    fs, root = fsspec.core.url_to_fs(url)
    try:
        assert push_bundle(bundle, url) == (1, f"{url}/1")
        assert push_bundle(bundle, url) == (2, f"{url}/2")
        with ThreadPoolExecutor(6) as pool:
            threaded = [f.result()[0] for f in [pool.submit(push_bundle, bundle, url) for _ in range(6)]]
        assert len(set(threaded)) == 6
        assert min(threaded) > 2
        assert push_bundle(bundle, url)[0] > max(threaded)
        names = {n.rpartition("/")[2] for n in fs.ls(root, detail=False)}
        assert names == {".versions", "1", "2", *(str(v) for v in threaded), str(max(threaded) + 1)}
        fs.get(f"{root}/{max(threaded)}", str(tmp_path / "copy"), recursive=True)
        assert accuracy(tmp_path / "copy") == accuracy(bundle)
    finally:
        fs.rm(base, recursive=True)


class StoreLikeFolder(LocalFileSystem):
    """A local folder that behaves as an object store does, and that every process shares
    (``memory://`` is one per process): a file appears whole (copied aside, then renamed into
    place), a move is a copy then a delete and takes as long, and no folder is ever renamed.
    """

    def cp_file(self, path1: str, path2: str, **kwargs: object) -> None:
        aside = f"{self._parent(path2)}/.part-{secrets.token_hex(4)}"
        super().cp_file(path1, aside, **kwargs)
        os.replace(aside, self._strip_protocol(path2))

    def mv(self, path1: str, path2: str, recursive: bool = False, **kwargs: object) -> None:
        self.copy(path1, path2, recursive=recursive)
        self.rm(path1, recursive=recursive)


def push_as_to_a_store(bundle: Path, dest: Path) -> int:
    return push_to_store(StoreLikeFolder(auto_mkdir=True), bundle, str(dest))


def complete_versions(dest: Path) -> list[str]:
    """The versions a server counts: integer folders that hold their manifest."""
    return [name for name in versions(dest) if (dest / name / MANIFEST).is_file()]


def test_pushes_through_a_store_protocol_get_distinct_increasing_versions(bundle: Path, tmp_path: Path) -> None:
    dest = tmp_path / "serving"
    assert [push_as_to_a_store(bundle, dest) for _ in range(2)] == [1, 2]
    with ProcessPoolExecutor(4, mp_context=get_context("spawn")) as pool:
        racing = [f.result() for f in [pool.submit(push_as_to_a_store, bundle, dest) for _ in range(12)]]
    assert len(set(racing)) == 12
    assert min(racing) > 2  # a gap may stay where every contender for a number stepped back
    after = push_as_to_a_store(bundle, dest)
    assert after > max(racing)
    assert complete_versions(dest) == versions(dest) == [str(v) for v in sorted([1, 2, *racing, after])]
    claims = [name.partition("-")[0] for name in os.listdir(dest / ".versions")]
    assert sorted(claims, key=int) == versions(dest)  # one marker a version: the losers took theirs back
    assert [n for n in os.listdir(dest) if n.startswith(".push-")] == []
    assert accuracy(dest / str(max(racing))) == accuracy(bundle)


def test_a_server_passes_over_a_version_still_being_filled(bundle: Path, tmp_path: Path) -> None:
    dest = tmp_path / "serving"
    assert push_as_to_a_store(bundle, dest) == 1
    filling = shutil.copytree(bundle, dest / "2")
    (filling / MANIFEST).unlink()  # the manifest is moved last
    assert latest_version(dest) == (1, dest / "1")


def claim_after(start: threading.Barrier, dest: Path, count: int) -> list[int]:
    start.wait()  # every process claims at once, so that their listings and writes interleave
    return [claim_version(StoreLikeFolder(auto_mkdir=True), str(dest)) for _ in range(count)]


def test_racing_claims_each_win_a_number_of_their_own(tmp_path: Path) -> None:
    dest = tmp_path / "serving"
    with get_context("spawn").Manager() as manager, ProcessPoolExecutor(4, mp_context=get_context("spawn")) as pool:
        start = manager.Barrier(4)
        won = [f.result() for f in [pool.submit(claim_after, start, dest, 30) for _ in range(4)]]
    every = [v for claims in won for v in claims]
    assert len(set(every)) == len(every) == 120
    assert all(claims == sorted(set(claims)) for claims in won)  # each process's next number is higher
    markers = [name.partition("-")[0] for name in os.listdir(dest / ".versions")]
    assert sorted(map(int, markers)) == sorted(every)


def test_a_reader_never_sees_a_partial_version_pushed_through_a_store_protocol(
    large_bundle: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "serving"
    expected = load_model(large_bundle).predict(HELD_OUT)["probability"]
    checked: list[str] = []
    problems: list[str] = []
    done = threading.Event()

    def check(path: Path) -> None:
        try:  # verifies every file's sha256 against conveyor_model.json
            np.testing.assert_array_equal(load_model(path).predict(HELD_OUT)["probability"], expected)
        except Exception as e:
            problems.append(f"{path.name}: {e!r}")

    def poll() -> None:
        while True:
            last = done.is_set()
            if complete_versions(dest):
                check(latest_version(dest)[1])  # what conveyor serve would load now
            for name in complete_versions(dest):
                if name not in checked:
                    checked.append(name)
                    check(dest / name)
            if last:
                return

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
            pushed = [f.result() for f in [pool.submit(push_as_to_a_store, large_bundle, dest) for _ in range(8)]]
    finally:
        done.set()
        reader.join()
    assert problems == []
    assert sorted(checked, key=int) == [str(v) for v in sorted(pushed)]
    assert len(set(pushed)) == 8


def test_a_damaged_bundle_is_not_pushed(bundle: Path, tmp_path: Path) -> None:
    from conveyor.exceptions import ServingError

    damaged = shutil.copytree(bundle, tmp_path / "damaged")
    (damaged / "model" / "linear.json").write_bytes(b"not the model")
    with pytest.raises(ServingError, match=r"model/linear\.json does not match the sha256"):
        push_bundle(damaged, str(tmp_path / "serving"))
    assert os.listdir(tmp_path / "serving") == []


@pytest.mark.parametrize("where", ["serving", "serving/complaints"], ids=["the folder", "a folder under it"])
def test_a_push_destination_in_the_way_of_a_file_is_a_clear_error_naming_it(
    bundle: Path, tmp_path: Path, where: str
) -> None:
    from conveyor.exceptions import ComponentError

    (tmp_path / "serving").write_text("not a folder")
    with pytest.raises(ComponentError, match=re.escape(f"{tmp_path / 'serving'} is a file, not a folder")):
        push_bundle(bundle, str(tmp_path / where))
    assert (tmp_path / "serving").read_text() == "not a folder"


def test_a_read_only_push_destination_is_a_clear_error(bundle: Path, tmp_path: Path) -> None:
    from conveyor.exceptions import ComponentError

    dest = tmp_path / "serving"
    dest.mkdir()
    dest.chmod(0o555)
    try:
        if os.access(dest, os.W_OK):
            pytest.skip("this user writes into read-only folders (root)")
        with pytest.raises(ComponentError, match=re.escape(f"cannot push to {dest}: Permission denied")):
            push_bundle(bundle, str(dest))
    finally:
        dest.chmod(0o755)
    assert os.listdir(dest) == []


def test_only_folders_named_in_ascii_digits_are_versions_as_the_server_reads_them(bundle: Path, tmp_path: Path) -> None:
    """``str.isdigit`` takes "²" (which ``int`` refuses) and "٣" (which it reads as 3); the server takes neither."""
    dest = tmp_path / "serving"
    for name in ("²", "٣", "v7", "latest"):
        (dest / name).mkdir(parents=True)
    assert push_bundle(bundle, str(dest))[0] == 1
    assert latest_version(dest)[0] == 1


def test_an_infra_blessing_of_another_model_does_not_let_a_model_be_pushed(graph: Path, tmp_path: Path) -> None:
    """The InfraValidator served model A; a Pusher wired to push model B with A's InfraBlessing must not."""
    from conveyor.components import InfraValidator

    served = trained(graph=str(graph)).with_id("served")
    other = trained(graph=str(graph), shuffle_seed=1).with_id("other")
    examples = held_out()
    infra = InfraValidator(model=served.outputs["model"], examples=examples.outputs["examples"], num_examples=4)
    blessing = given_blessing(model=other.outputs["model"], blessed=True)
    dest = tmp_path / "serving"
    pusher = Pusher(
        other.outputs["model"], blessing.outputs["blessing"], infra.outputs["blessing"], push_destination=str(dest)
    )
    run = Pipeline("miswired", [served, other, examples, infra, blessing, pusher], root=tmp_path / "root").run()

    infra_blessing = run.executions["InfraValidator"].outputs["blessing"][0]
    assert infra_blessing.properties["blessed"] is True, infra_blessing.properties["reason"]
    props = pushed_by(run)
    assert props["pushed"] is False
    model_id = run.executions["other"].outputs["model"][0].id
    assert props["reason"] == (
        f"InfraBlessing {infra_blessing.id} judged model {infra_blessing.properties['model']}, not model {model_id}."
    )
    assert versions(dest) == []


def test_a_read_only_bundle_is_pushed_and_its_version_can_be_removed(bundle: Path, tmp_path: Path) -> None:
    """A bundle on a read-only mount, or made read-only to protect it: its copy must still be flushed
    (which opened each file for writing) and moved into place (moving a folder needs it writable)."""
    source = shutil.copytree(bundle, tmp_path / "read-only")
    for path in [source, *source.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    dest = tmp_path / "serving"
    push = f"from conveyor.components.pusher import push_bundle; print(push_bundle({str(source)!r}, {str(dest)!r})[0])"
    command = [sys.executable, "-c", push]
    if os.geteuid() == 0:  # root writes anywhere: without these capabilities it is held to the modes, as a user is
        if shutil.which("setpriv") is None:
            pytest.skip("running as root, and no setpriv to drop the capability to write anywhere")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", *command]
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["1"]
        assert versions(dest) == ["1"]
        np.testing.assert_array_equal(
            load_model(dest / "1").predict(HELD_OUT)["probability"], load_model(bundle).predict(HELD_OUT)["probability"]
        )
        assert [p.name for p in dest.iterdir() if p.name.startswith(".push-")] == []
    finally:
        for path in [source, *source.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(dest / "1")  # as an operator would, without first making it writable


@pytest.mark.parametrize("destination", ["", "  "])
def test_an_empty_push_destination_fails_when_the_pipeline_is_built(graph: Path, destination: str) -> None:
    """Resolved against the pipeline file's folder, it would push versions into that folder."""
    from conveyor import PipelineDefinitionError

    model = trained(graph=str(graph))
    blessing = given_blessing(model=model.outputs["model"], blessed=True)
    with pytest.raises(PipelineDefinitionError, match="push_destination must name the folder or URL"):
        Pusher(model.outputs["model"], blessing.outputs["blessing"], push_destination=destination)
