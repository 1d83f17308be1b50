"""One step, runnable on its own: ``run_step`` against the store Protocols, and a pipeline run one
step per process (``conveyor run FILE --only STEP``), which records what one ``conveyor run`` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conveyor import Output, component
from conveyor.artifacts import Examples
from conveyor.metadata import MetadataStore
from conveyor.metadata.protocols import StepStore
from conveyor.orchestration.local import new_run_id
from conveyor.orchestration.step import run_step
from tests.helpers import FIXTURES, run_cli


@component
def produce(examples: Output[Examples]) -> None:
    print("producing")
    (Path(examples.uri) / "value.json").write_text(json.dumps(1))


class OnlyTheProtocol:
    """A real store seen through ``StepStore`` alone: a step that asks for more fails."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        allowed = {n for n in dir(StepStore) if not n.startswith("_")}
        assert name in allowed, f"run_step used {name}, which is not in the step Protocols"
        return getattr(self._store, name)


def test_a_step_runs_alone_against_the_step_protocols(db_url: str, tmp_path: Path) -> None:
    node = produce()
    with MetadataStore(db_url) as store:
        outcomes = []
        for _ in range(2):
            run_id = new_run_id()
            store.begin_run("alone", run_id)
            outcomes.append(run_step(node, {}, OnlyTheProtocol(store), run_id=run_id, root=tmp_path, pipeline_name="alone"))
            store.end_run(run_id, outcomes[-1].status)
        made, cached = outcomes
        assert (made.status, cached.status) == ("succeeded", "cached")
        assert [a.id for a in cached.outputs["examples"]] == [a.id for a in made.outputs["examples"]]
        ex = store.run(run_id).executions["produce"]
        assert ex.status == "cached" and ex.outputs["examples"][0].state == "LIVE"
        log = Path(store.execution(ex.cached_from or 0).log_uri or "").read_text()
        assert "producing" in log  # the step's prints went to its log, with no runner around it


def recorded(url: str) -> dict[str, Any]:
    """What the store holds of pipeline ``chain``, without ids, times, run ids or folders."""
    with MetadataStore(url) as store:
        execs = store.executions(pipeline="chain")
        arts = store.artifacts(pipeline="chain")

    def events(groups: dict[str, list[Any]]) -> dict[str, list[tuple[str, str | None]]]:
        return {k: [(a.type_name, a.fingerprint) for a in v] for k, v in sorted(groups.items())}

    return {
        "executions": sorted(
            (x.component_id, x.component_type, x.status, x.cache_key, x.code_fingerprint, json.dumps(x.parameters))
            for x in execs
        ),
        "events": sorted(
            (x.component_id, json.dumps(events(x.inputs)), json.dumps(events(x.outputs))) for x in execs
        ),
        "artifacts": sorted((a.type_name, a.fingerprint or "", a.state or "") for a in arts),
    }


def test_a_pipeline_run_one_step_per_process_records_what_one_run_does(db_url: str, tmp_path: Path) -> None:
    pipeline = str(FIXTURES / "chain.py")
    for step in ("first", "second", "third"):
        done = run_cli("run", pipeline, "--only", step, "--root", str(tmp_path / "steps"), "--metadata", db_url)
        assert done.returncode == 0, done.stdout + done.stderr
    whole = f"sqlite:///{tmp_path / 'whole' / 'metadata.sqlite'}"
    done = run_cli("run", pipeline, "--root", str(tmp_path / "whole"), "--metadata", whole)
    assert done.returncode == 0, done.stdout + done.stderr
    one_by_one, at_once = recorded(db_url), recorded(whole)
    assert [x[:3] for x in at_once["executions"]] == [
        ("first", "chain.first", "succeeded"), ("second", "chain.second", "succeeded"), ("third", "chain.third", "succeeded")
    ]
    assert one_by_one == at_once
