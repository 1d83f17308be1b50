"""``conveyor gc`` and ``conveyor schedule`` on a store a team has used for a year.

Old runs are written in bulk, as the recorder writes them (``add_old_runs``): each run's
ingest, train, evaluate and push, its PushedModel recorded not pushed, as the Pusher records a
model that was not blessed. The newest runs are real ones, made by the runner.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import update

from conveyor.metadata import MetadataStore
from conveyor.metadata import schema as s
from conveyor.metadata.records import Run
from conveyor.orchestration.gc import collect
from conveyor.orchestration.root import check_root
from conveyor.orchestration.schedule import _last_read
from tests.helpers import run_cli
from tests.metadata.test_probe_scale import add_old_runs
from tests.metadata.test_store import run_pipeline

OLD_TYPES = ("Examples", "Model", "ModelBlessing", "PushedModel")  # what each old run made, one of each


class CountingStore(MetadataStore):
    """A store that counts the runs its readers were handed, and the times they asked for a step's executions."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.runs_read = 0
        self.execution_reads = 0

    def runs(self, *args: object, **kwargs: object) -> list[Run]:
        found = super().runs(*args, **kwargs)  # type: ignore[arg-type]
        self.runs_read += len(found)
        return found

    def executions(self, *args: object, **kwargs: object) -> list:  # type: ignore[type-arg]
        self.execution_reads += 1
        return super().executions(*args, **kwargs)  # type: ignore[arg-type]


def a_year(db_url: str, root: Path, old: int) -> list[str]:
    """``old`` runs of pipeline "year", none of them pushed, each output holding a file of 10,000 bytes,
    then two real runs, the newest pushed; returns the old runs' ids."""
    with MetadataStore(db_url) as store:
        check_root(root, store)
        names = add_old_runs(store, root, old, "year")
        with store._engine.begin() as conn:
            pushed_type = store._type_id(conn, "PushedModel")
            conn.execute(
                update(s.artifacts)
                .where(s.artifacts.c.type_id == pushed_type)
                .values(properties=json.dumps({"pushed": False, "reason": "not blessed"}))
            )
        for a in store.artifacts(pipeline="year"):
            (Path(a.uri) / "part.bin").write_bytes(b"x" * 10_000)
    run_pipeline(db_url, root, name="year", threshold=0.9)  # not blessed: not pushed
    run_pipeline(db_url, root, name="year", lr=0.6)
    return names


def old_artifacts(db_url: str, old_runs: list[str]) -> dict[int, str]:
    """The old runs' artifacts: id -> type name."""
    with MetadataStore(db_url) as store:
        return {
            a.id: a.type_name
            for name in old_runs
            for x in store.run(name).executions.values()
            for arts in x.outputs.values()
            for a in arts
            if a.id is not None
        }


def test_gc_of_a_years_runs_sums_them_up_and_names_each_only_when_asked(db_url: str, tmp_path: Path) -> None:
    """``gc --keep-last 5`` on 10,000 runs printed one line per artifact it removed (49,986 lines)."""
    root = tmp_path / "root"
    old = old_artifacts(db_url, a_year(db_url, root, 150))
    store_flags = ["--root", str(root), "--metadata", db_url, "--keep-last", "2"]

    listed = run_cli("gc", *store_flags, "--dry-run", "--list")
    assert listed.returncode == 0, listed.stderr
    named = [line.split()[4] for line in listed.stdout.splitlines() if line.startswith("  would remove old ")]
    assert sorted(int(i) for i in named) == sorted(old)

    as_json = run_cli("gc", *store_flags, "--dry-run", "--json")
    assert as_json.returncode == 0, as_json.stderr
    plan = json.loads(as_json.stdout)
    assert {a["id"]: a["type"] for a in plan["expired"]} == old
    assert {a["bytes"] for a in plan["expired"]} == {10_000}
    assert plan["bytes"] == 10_000 * len(old)
    assert all(Path(a["uri"]).is_dir() for a in plan["expired"]), "a dry run removed something"

    done = run_cli("gc", *store_flags)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    each = ", ".join(f"150 {t} (1.4 MiB)" for t in OLD_TYPES)  # 150 x 10,000 bytes
    assert lines[0] == f"  removed 600 old artifact(s), 5.7 MiB: {each}"
    assert lines[1].startswith("Removed 600 item(s), 5.7 MiB; kept 2 run(s)")
    assert "--list names each one" in lines[1]
    with MetadataStore(db_url) as store:
        assert {i: store.artifact(i).state for i in old} == dict.fromkeys(old, "DELETED")


def test_gc_reads_the_kept_runs_and_resolves_each_folder_once_however_many_runs_there_are(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gc read every run of each pipeline to keep the last N, and resolved the real path of each
    of the tens of thousands of folders it might remove, one lstat per part of each path."""
    root = tmp_path / "root"
    a_year(db_url, root, 300)
    real, resolved = os.path.realpath, []
    monkeypatch.setattr(os.path, "realpath", lambda p, *a, **k: resolved.append(os.fspath(p)) or real(p, *a, **k))
    with CountingStore(db_url) as store:
        plan = collect(store, root, keep_last=2, dry_run=True)
    monkeypatch.setattr(os.path, "realpath", real)
    assert len(plan.expired) == 4 * 300
    assert store.runs_read == 2
    folders = {os.path.dirname(a.uri) for a in plan.expired}  # <root>/year/<step>/<output>: four
    assert len(resolved) <= 1 + len(folders), f"{len(resolved)} paths resolved: {resolved[:3]} ..."


def test_after_gc_everything_a_kept_run_or_a_pushed_model_traces_back_to_is_there(db_url: str, tmp_path: Path) -> None:
    """The oracle, and a Pusher that did not push keeps nothing: every run has a PushedModel,
    pushed or not, and gc kept the whole lineage of each, so that --keep-last freed nothing."""
    root = tmp_path / "root"
    old = old_artifacts(db_url, a_year(db_url, root, 40))
    pushed_before = run_pipeline(db_url, root, name="year", lr=0.7)  # pushed, then two runs not pushed
    for lr in (0.8, 0.9):
        run_pipeline(db_url, root, name="year", lr=lr, threshold=0.95)
    with MetadataStore(db_url) as store:
        plan = collect(store, root, keep_last=2)
        kept = [store.run(r) for r in plan.kept_runs]
        starts = {
            a.id
            for r in kept
            for x in r.executions.values()
            for arts in (*x.inputs.values(), *x.outputs.values())
            for a in arts
        }
        starts.add(pushed_before.executions["push"].outputs["pushed"][0].id)
        needed = {i: a for start in starts for i, a in store.lineage(start or 0).artifacts.items()}
        assert {i: a.state for i, a in needed.items()} == dict.fromkeys(needed, "LIVE")
        gone = {a.id for a in plan.expired}
        assert set(old) <= gone
        assert not gone & set(needed)
        for i in gone:
            assert store.artifact(i).state == "DELETED"
    missing = [a.uri for a in needed.values() if not Path(a.uri).is_dir()]
    assert not missing, f"gc removed what a kept run or a pushed model needs: {missing[:3]}"
    still = [a.uri for a in plan.expired if Path(a.uri).exists()]
    assert not still, f"gc left old folders it says it removed: {still[:3]}"
    assert pushed_before.executions["train"].outputs["model"][0].id in needed


def test_the_span_a_step_last_read_is_found_among_the_newest_runs_however_many_there_are(
    db_url: str, tmp_path: Path
) -> None:
    """``schedule`` read every run of the pipeline to find the span its ExampleGen last read,
    though the newest run that succeeded most often tells."""
    with MetadataStore(db_url) as store:
        names = add_old_runs(store, tmp_path, 400, "year")
        read = {x.run_id: x.outputs["examples"][0].id for x in store.executions(pipeline="year", component="ingest")}
        a = s.artifacts
        with store._engine.begin() as conn:
            for span, name in enumerate(names):  # oldest first: span 0, 1, ...
                conn.execute(update(a).where(a.c.id == read[name]).values(properties=json.dumps({"span": span})))
            # the newest twelve runs failed: their spans do not count, and the first page holds none that does
            conn.execute(update(s.contexts).where(s.contexts.c.name.in_(names[-12:])).values(status="failed"))
    with CountingStore(db_url) as store:
        assert _last_read(store, "year", "ingest") == (400 - 13, -1)
        assert _last_read(store, "other", "ingest") is None
    assert store.execution_reads == 1  # the newest run that succeeded, and no other
    assert store.runs_read <= 4 * 13, f"{store.runs_read} runs read to find the 13th newest"
