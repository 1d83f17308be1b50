"""Two Pushers of one run, in no order, pushing to one destination: the same model becomes one
version that both report; two models become two versions, neither lost.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from conveyor import Input, Output, Pipeline, component
from conveyor.artifacts import Model, ModelBlessing
from conveyor.components import Pusher
from tests.components.test_pusher import given_blessing, train_bundle, versions
from tests.model import graphs

RUNS = 5


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different models: a bundle's manifest says when it was saved, so a copy would be the same model."""
    folder = tmp_path_factory.mktemp("bundles")
    graph = graphs.saved("binary", folder / "graph", sparse=False)
    return train_bundle(graph, folder / "good"), train_bundle(graph, folder / "shuffled", shuffle_seed=1)


def copied(bundle: Path, name: str) -> Any:
    @component
    def copied_model(model: Output[Model]) -> None:
        shutil.copytree(bundle, model.uri, dirs_exist_ok=True)

    return copied_model().with_id(name)


def blessed_together(model: Any, together: threading.Barrier, name: str) -> Any:
    """A blessing that ends only when the other one does, so that both Pushers start at once."""

    @component
    def blessed(model: Input[Model], blessing: Output[ModelBlessing]) -> None:
        together.wait(timeout=60)
        blessing.properties["blessed"] = True

    return blessed(model=model.outputs["model"]).with_id(name)


def pushed(run: Any, pusher: str) -> dict[str, Any]:
    ex = run.executions[pusher]
    assert ex.status == "succeeded", ex.error
    return ex.outputs["pushed_model"][0].properties


def test_two_pushers_of_one_model_make_one_version_both_report(bundles: tuple[Path, Path], tmp_path: Path) -> None:
    model = copied(bundles[0], "Model")
    blessing = given_blessing(model=model.outputs["model"], blessed=True)
    for attempt in range(RUNS):
        dest = tmp_path / f"serving-{attempt}"
        pushers = [
            Pusher(model.outputs["model"], blessing.outputs["blessing"], push_destination=str(dest)).with_id(name)
            for name in ("PusherA", "PusherB")
        ]
        pipeline = Pipeline("same", [model, blessing, *pushers], root=tmp_path / "root")
        run = pipeline.run(enable_cache=False, max_workers=4)
        a, b = pushed(run, "PusherA"), pushed(run, "PusherB")
        assert versions(dest) == ["1"], f"run {attempt}: one model pushed as versions {versions(dest)}"
        assert sorted([a["pushed"], b["pushed"]]) == [False, True]
        assert a["pushed_version"] == b["pushed_version"] == 1
        assert a["pushed_destination"] == b["pushed_destination"] == str(dest / "1")


def test_two_pushers_of_two_models_make_two_versions(bundles: tuple[Path, Path], tmp_path: Path) -> None:
    for attempt in range(RUNS):
        dest = tmp_path / f"serving-{attempt}"
        together = threading.Barrier(2)
        steps = []
        for name, bundle in zip("AB", bundles, strict=True):
            model = copied(bundle, f"Model{name}")
            blessing = blessed_together(model, together, f"Blessing{name}")
            pusher = Pusher(model.outputs["model"], blessing.outputs["blessing"], push_destination=str(dest))
            steps += [model, blessing, pusher.with_id(f"Pusher{name}")]
        run = Pipeline("two", steps, root=tmp_path / "root").run(enable_cache=False, max_workers=4)
        a, b = pushed(run, "PusherA"), pushed(run, "PusherB")
        assert a["pushed"] and b["pushed"]
        assert sorted([a["pushed_version"], b["pushed_version"]]) == [1, 2]
        assert versions(dest) == ["1", "2"]
        for props, bundle in ((a, bundles[0]), (b, bundles[1])):
            held = Path(props["pushed_destination"]) / "conveyor_model.json"
            assert held.read_bytes() == (bundle / "conveyor_model.json").read_bytes()
