"""The InfraValidator in real pipeline runs on the penguins: a good LightGBM model is blessed by
a real ``conveyor serve`` process; a bundle with one changed byte is not, and the reason names the
file; a server that is not ready in time is not blessed, and it is stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor import Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Model
from conveyor.components import InfraValidator
from conveyor.components.infra_validator import NotBlessedError, stop_server, wait_until_ready
from tests.components.test_trainer import output, penguins_pipeline, succeeded

pytest.importorskip("lightgbm")


def with_infra_validator(root: Path, **parameters: Any) -> Pipeline:
    trained = penguins_pipeline(root)
    infra = InfraValidator(
        model=trained.node("Trainer").outputs["model"],
        examples=trained.node("ExampleGen").outputs["examples"],
        **parameters,
    )
    return Pipeline("penguins", [*trained.components, infra], root=root / "root")


@pytest.fixture(scope="module")
def blessed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("infra")
    return root, succeeded(with_infra_validator(root, num_examples=10, rows_per_request=4))


def test_a_good_model_is_infra_blessed(blessed_run: tuple[Path, Any]) -> None:
    blessing = output(blessed_run[1], "blessing", "InfraValidator")
    assert blessing.type_name == "InfraBlessing"
    assert blessing.properties["blessed"] is True, blessing.properties["reason"]
    assert blessing.properties["reason"] == ""
    assert blessing.properties["requests"] == 6  # 10 rows in groups of 4: 3 groups, each in both formats
    assert blessing.properties["latency_ms"] > 0
    assert "REST on http://127.0.0.1:" in (Path(blessing.uri) / "server.log").read_text()


class _Without:
    """A finder that says ``module`` is not installed, as in a Python where conveyor[serve] was not."""

    def __init__(self, module: str) -> None:
        self.module = module

    def find_spec(self, name: str, *_: Any) -> None:
        if name == self.module or name.startswith(f"{self.module}."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def test_a_python_without_the_servers_packages_fails_the_step_not_the_model(
    blessed_run: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An orchestrator's worker with conveyor but not conveyor[serve]: the step says what to install,
    where a verdict of "not blessed" blamed the model and the Pusher skipped it without a word."""
    monkeypatch.setattr(sys, "meta_path", [_Without("prometheus_client"), *sys.meta_path])
    monkeypatch.delitem(sys.modules, "prometheus_client", raising=False)  # imported by an earlier test
    run = with_infra_validator(blessed_run[0], num_examples=5).run()  # a setting no other test's run shares
    step = run.executions["InfraValidator"]
    assert step.status == "failed"
    assert "needs prometheus_client, not installed" in step.error and "pip install 'conveyor[serve]'" in step.error
    assert [a.state for a in step.outputs["blessing"]] == ["ABANDONED"]  # no verdict a Pusher could read


@component
def changed_byte(model: Input[Model], broken: Output[Model]) -> None:
    """A copy of the bundle with one byte of its model file flipped after it was saved."""
    shutil.copytree(model.uri, broken.uri, dirs_exist_ok=True)
    model_file = Path(broken.uri) / "model" / "model.txt"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 1
    model_file.write_bytes(data)


def test_a_bundle_with_one_changed_byte_is_not_blessed_naming_the_file(blessed_run: tuple[Path, Any]) -> None:
    root, _ = blessed_run
    trained = penguins_pipeline(root)
    broken = changed_byte(model=trained.node("Trainer").outputs["model"])
    infra = InfraValidator(model=broken.outputs["broken"], examples=trained.node("ExampleGen").outputs["examples"])
    run = succeeded(Pipeline("penguins", [*trained.components, broken, infra], root=root / "root"))
    blessing = output(run, "blessing", "InfraValidator")
    assert blessing.properties["blessed"] is False
    assert "model/model.txt" in blessing.properties["reason"]
    assert "sha256" in blessing.properties["reason"]


def test_a_server_not_ready_in_time_is_not_blessed(blessed_run: tuple[Path, Any]) -> None:
    root, _ = blessed_run
    run = succeeded(with_infra_validator(root, ready_timeout_seconds=0.01))
    blessing = output(run, "blessing", "InfraValidator")
    assert blessing.properties["blessed"] is False
    assert "not ready 0.01 s after it started" in blessing.properties["reason"]
    assert "server.log" in blessing.properties["reason"]
    assert ".staging" not in blessing.properties["reason"]  # the folder the step wrote in is renamed after it
    assert (Path(blessing.uri) / "server.log").is_file()


def test_a_server_that_never_answers_is_given_up_on_and_stopped(tmp_path: Path) -> None:
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    log = tmp_path / "server.log"
    log.write_text("")
    try:
        with pytest.raises(NotBlessedError, match="not ready"):
            wait_until_ready(silent, 0.3, log)  # it never says which port it bound
    finally:
        stop_server(silent)
    assert silent.returncode is not None


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"num_examples": 0}, "num_examples must be 1 or more; got 0"),
        ({"rows_per_request": 0}, "rows_per_request must be 1 or more; got 0"),
        ({"ready_timeout_seconds": -1.0}, "ready_timeout_seconds must be more than 0"),
        ({"request_timeout_seconds": 0.0}, "request_timeout_seconds must be more than 0"),
        ({"tolerance": -1e-6}, "tolerance must be 0 or more"),
    ],
    ids=["num_examples", "rows_per_request", "ready_timeout_seconds", "request_timeout_seconds", "tolerance"],
)
def test_a_setting_that_sends_no_request_fails_when_the_pipeline_is_built(
    tmp_path: Path, setting: dict[str, Any], message: str
) -> None:
    """Run, it would leave a good model unblessed blaming the server (rows_per_request=0), or fail
    with a bare ValueError from pyarrow (num_examples=0)."""
    from conveyor import PipelineDefinitionError

    trained = penguins_pipeline(tmp_path)
    with pytest.raises(PipelineDefinitionError, match=message):
        InfraValidator(
            model=trained.node("Trainer").outputs["model"],
            examples=trained.node("ExampleGen").outputs["examples"],
            **setting,
        )


STEP_THAT_DIES = """
import sys, time
from pathlib import Path
from conveyor.components.infra_validator import request, start_server, wait_until_ready
bundle, log = sys.argv[1], Path(sys.argv[2])
with log.open("wb") as out:
    server = start_server(bundle, out)
port = wait_until_ready(server, 120.0, log)
assert request(port, "GET", "/v2/health/ready", None, timeout=5.0)[0] == 200
print(server.pid, port, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    """Running, not a zombie that no one has reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the server is bound to its step's process on Linux")
def test_the_server_ends_when_the_steps_process_is_killed(blessed_run: tuple[Path, Any], tmp_path: Path) -> None:
    """A runner stopped by SIGKILL (or an orchestrator's SIGTERM) runs no ``finally``: the server
    must not stay behind, holding its port."""
    bundle = output(blessed_run[1], "model").uri
    command = [sys.executable, "-c", STEP_THAT_DIES, bundle, str(tmp_path / "server.log")]
    server_pid = None
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as step:
        try:
            assert step.stdout is not None
            server_pid, port = map(int, step.stdout.readline().split())
            assert alive(server_pid)
            # The port is the one the server bound itself and named: none picked beforehand that another could take.
            assert f"REST on http://127.0.0.1:{port} " in (tmp_path / "server.log").read_text()
        finally:
            step.kill()
    try:
        for _ in range(300):  # the server shuts down on its own: wait for it, up to a minute
            if not alive(server_pid):
                break
            time.sleep(0.2)
        assert not alive(server_pid), f"the model server {server_pid} outlived the step that started it"
    finally:
        if alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)


TORCH_MODULE = """
import torch


class Scorer(torch.nn.Module):
    '''Raises on every batch ("raises"), or is slow on a batch of one row ("slow on one row").'''

    def __init__(self, width: int, mode: str):
        super().__init__()
        self.linear = torch.nn.Linear(width, 1)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "raises":
            raise RuntimeError("this model cannot score")
        if self.mode == "slow on one row" and x.shape[0] == 1:
            busy = torch.zeros(1)
            for _ in range(300000):
                busy = busy + 1
        return torch.sigmoid(self.linear(x))
"""


@component
def torch_scorer(model: Output[Model], *, graph: Parameter[str], module: Parameter[str], mode: Parameter[str]) -> None:
    import importlib.util

    import torch

    from conveyor.model import save, to_matrix
    from conveyor.transform.fitted import load
    from tests.model import graphs
    from tests.model.unfit import swap_model

    spec = importlib.util.spec_from_file_location("scorer", module)
    scorer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scorer)
    fitted = load(graph)
    width = to_matrix(fitted.apply(graphs.table(5, seed=0)), fitted.describe(), "disputed")[0].shape[1]
    fitting = torch.nn.Linear(width, 1)
    fitting.classes_ = [0, 1]
    save(fitting, path=model.uri, transform_graph=graph, label="disputed")  # scripted by the torch flavor
    swap_model(model.uri, scorer.Scorer(width, mode))  # save, scoring zeros first, refuses one that raises


def torch_infra_run(tmp_path: Path, mode: str, **parameters: Any) -> Any:
    pytest.importorskip("torch")
    from tests.components.test_pusher import held_out
    from tests.model import graphs

    module = tmp_path / "scorer.py"  # TorchScript reads the module's source from a file
    module.write_text(TORCH_MODULE)
    graph = graphs.saved("binary", tmp_path / "graph", sparse=False)
    scorer = torch_scorer(graph=str(graph), module=str(module), mode=mode)
    examples = held_out()
    infra = InfraValidator(model=scorer.outputs["model"], examples=examples.outputs["examples"], **parameters)
    return succeeded(Pipeline("torch", [scorer, examples, infra], root=tmp_path / "root"))


def test_a_model_that_loads_but_raises_on_a_request_is_not_blessed_and_the_step_succeeds(tmp_path: Path) -> None:
    blessing = output(torch_infra_run(tmp_path, "raises", num_examples=2), "blessing", "InfraValidator")
    assert blessing.properties["blessed"] is False
    assert blessing.properties["reason"] == (
        "the model cannot predict in-process on the sample rows: Error: builtins.RuntimeError: this model cannot score"
    )


def test_a_model_slower_than_the_request_timeout_is_not_blessed_naming_the_setting(tmp_path: Path) -> None:
    run = torch_infra_run(tmp_path, "slow on one row", num_examples=2, rows_per_request=1, request_timeout_seconds=0.2)
    blessing = output(run, "blessing", "InfraValidator")
    assert blessing.properties["blessed"] is False
    assert blessing.properties["reason"] == (
        "a predict request for rows 0..0 got no answer within 0.2 s (request_timeout_seconds)."
    )


def model_servers_of(parent: int) -> set[int]:
    """The ``conveyor serve`` processes an InfraValidator in process ``parent`` has started."""
    found = set()
    for child in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError):  # a process that ended while looked at
            ppid = int((child / "stat").read_text().rpartition(")")[2].split()[1])
            if ppid == parent and b"--model-name\0candidate" in (child / "cmdline").read_bytes():
                found.add(int(child.name))
    return found


def stop_model_servers(stop: threading.Event) -> None:
    """SIGTERM each model server this process starts, as soon as it starts, as a user's `kill` would."""
    reached: set[int] = set()
    while not stop.is_set():
        for pid in model_servers_of(os.getpid()) - reached:
            os.kill(pid, signal.SIGTERM)
            reached.add(pid)
        time.sleep(0.01)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the server through /proc")
def test_a_server_stopped_from_outside_is_no_verdict_and_the_next_run_checks_the_model_again(
    blessed_run: tuple[Path, Any],
) -> None:
    """A not-blessed verdict made by a server someone stopped, cached, kept the model from being pushed on every later run."""
    root, _ = blessed_run
    stop = threading.Event()
    watcher = threading.Thread(target=stop_model_servers, args=(stop,))
    watcher.start()
    try:
        run = with_infra_validator(root, num_examples=9).run()
    finally:
        stop.set()
        watcher.join()
    stopped = run.executions["InfraValidator"]
    assert stopped.status == "failed"
    assert "the model server was stopped from outside (" in stopped.error
    assert "no verdict on the model, so the next run checks it again" in stopped.error

    again = succeeded(with_infra_validator(root, num_examples=9)).executions["InfraValidator"]
    assert again.status == "succeeded"  # checked again, not the stopped check from cache
    assert again.outputs["blessing"][0].properties["blessed"] is True


INFRA_PIPELINE = """
import sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.components.test_infra_validator import with_infra_validator
pipeline = with_infra_validator(Path({root!r}), num_examples=7)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the server through /proc")
def test_ctrl_c_lets_the_infra_validator_finish_its_checks_on_a_server_it_never_reaches(
    blessed_run: tuple[Path, Any], tmp_path: Path
) -> None:
    """A terminal's Ctrl-C goes to its whole foreground group: it reached the model server, whose
    death mid-check left `conveyor demo` with a good model not blessed, and nothing pushed."""
    from tests.e2e.test_interrupt import ctrl_c_as_at_a_terminal
    from tests.helpers import conveyor_cmd, run_cli

    root, _ = blessed_run
    (tmp_path / "pipeline.py").write_text(INFRA_PIPELINE.format(repo=str(Path(__file__).parents[2]), root=str(root)))
    run = subprocess.Popen(
        [*conveyor_cmd(), "run", "pipeline.py"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=ctrl_c_as_at_a_terminal, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not model_servers_of(run.pid):
        assert run.poll() is None and time.monotonic() < deadline, "the InfraValidator never started its server"
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C, to the run's process group as a terminal sends it
    _, err = run.communicate(timeout=120)
    assert "Interrupted: no step starts now; waiting for InfraValidator to finish" in err
    shown = run_cli("show", "latest/InfraValidator", "--root", str(root / "root"), cwd=tmp_path)
    assert "succeeded" in shown.stdout.splitlines()[0], shown.stdout + shown.stderr
    assert "InfraValidator: blessed" in shown.stdout, shown.stdout  # its log's last lines
