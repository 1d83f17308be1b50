"""The InfraValidator in real pipeline runs on the penguins: a good LightGBM model is blessed by
a real ``conveyor serve`` process; a bundle with one changed byte is not, and the reason names the
file; a server that is not ready in time is not blessed, and it is stopped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conveyor import Input, Output, Pipeline, component
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


def test_a_server_that_never_answers_is_given_up_on_and_stopped(tmp_path: Path) -> None:
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    log = tmp_path / "server.log"
    log.write_text("")
    try:
        with pytest.raises(NotBlessedError, match="not ready"):
            wait_until_ready(silent, 9, 0.3, log)  # port 9 (discard): nothing answers there
    finally:
        stop_server(silent)
    assert silent.returncode is not None
