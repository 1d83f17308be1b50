"""``conveyor gc``: remove what killed and failed runs left, and old artifacts nobody needs.

Always removed: ABANDONED artifacts (the outputs of steps that failed or whose process died)
and staging folders no running step owns. With ``keep_last=N``, also the LIVE artifacts of
runs older than the last N of their pipeline, except any artifact that a kept run or a pushed
model traces back to. Records stay (state DELETED), so lineage still tells what existed.

Leftovers go files first, records after: on a full disk the store may not take a write until
their files are gone, and nothing can take them meanwhile. An old LIVE artifact goes the other
way round, as a run may take it from the cache while gc looks: gc marks it DELETED only if it is
still LIVE and no run took it since gc counted its uses (``MetadataStore.delete_unused``), and
removes the files of only what it marked; the plan lists the others as ``taken``. A cache hit
checks its outputs are still LIVE under the same row locks (``record_cached``), and runs its
step when gc got them first; a step that takes one as its input (``--from``, ``--only``) reads
its state under them too (``record_start``), and fails saying so when gc got it first. A gc
stopped between marking and removing leaves folders of DELETED artifacts: the next gc removes
them (``deleted``), and changes no record.

Only what lies inside the root, symlinks and ``..`` resolved, is ever removed. A store's paths
are absolute, so a copied root's store still names the original's folders; those artifacts are
left in place with their records as they were, and the plan lists them as ``outside``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.artifacts import Artifact, ArtifactState
from conveyor.exceptions import MetadataError
from conveyor.metadata.records import ExecutionStatus
from conveyor.metadata.store import MetadataStore
from conveyor.orchestration.root import check_root


@dataclass
class GcPlan:
    root: str = ""  # the root's real path: nothing outside it is removed
    abandoned: list[Artifact] = field(default_factory=list)
    expired: list[Artifact] = field(default_factory=list)
    taken: list[Artifact] = field(default_factory=list)  # expired, but a run took them while gc looked: left alone
    deleted: list[Artifact] = field(default_factory=list)  # DELETED, their folders left by a gc that stopped
    staging: list[Path] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    kept_runs: list[str] = field(default_factory=list)
    bytes: int = 0
    sizes: dict[str, int] = field(default_factory=dict)  # path -> the bytes removed there (or that would be)


def _size(path: str | Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def _protected(store: MetadataStore, keep_last: int, plan: GcPlan) -> set[int]:
    """Artifacts the last ``keep_last`` runs of each pipeline, a run still going, or a pushed model trace back to.

    Only those runs are read, the running ones first: a run that ends between the two reads is
    kept all the same. A PushedModel whose Pusher did not push (``pushed`` false: its model was
    not blessed, or already served) keeps nothing, or every run with a Pusher would be kept.
    """
    touched: set[int] = set()
    for pipeline in store.pipelines():
        running = store.runs(pipeline, status=ExecutionStatus.RUNNING)
        kept = dict.fromkeys(r.id for r in [*store.runs(pipeline, limit=keep_last), *running])
        plan.kept_runs.extend(kept)
        for run_id in kept:
            for ex in store.run(run_id).executions.values():
                for arts in (*ex.inputs.values(), *ex.outputs.values()):
                    touched.update(a.id for a in arts if a.id is not None)
    pushed = store.artifacts(type="PushedModel", state=ArtifactState.LIVE)
    touched.update(a.id for a in pushed if a.id is not None and a.properties.get("pushed") is not False)
    return store.upstream_closure(touched)


def collect(store: MetadataStore, root: str | Path, *, keep_last: int | None = None, dry_run: bool = False) -> GcPlan:
    """Find what can go and, unless ``dry_run``, remove it; returns what was (or would be) removed.

    Raises:
        MetadataError: the root belongs to another store, or the store cannot record what was removed.
    """
    check_root(root, store)
    dead = set(store.dead_runs())
    with contextlib.suppress(MetadataError):  # a full disk: their steps count as ended all the same
        store.reap_dead_runs()
    plan = GcPlan(root=os.path.realpath(root))
    plan.abandoned = store.artifacts(state=ArtifactState.ABANDONED)
    plan.deleted = [a for a in store.artifacts(state=ArtifactState.DELETED) if os.path.lexists(a.uri)]
    for stage in Path(root).glob("*/*/*/.staging-*"):
        exec_id = stage.name.removeprefix(".staging-")
        if not exec_id.isdigit() or _is_running(store, int(exec_id), dead):
            continue
        plan.staging.append(stage)
    uses: dict[int, int] = {}
    if keep_last is not None:
        # LIVE listed before what the kept runs use: an output that goes LIVE in between is no
        # candidate, where listed after it would be one that no kept run was yet seen to make.
        # Their uses are counted before too: a run that takes one after is seen by its count.
        live = store.artifacts(state=ArtifactState.LIVE)
        uses = store.uses(a.id for a in live if a.id is not None)
        protected = _protected(store, keep_last, plan)
        plan.expired = [a for a in live if a.id not in protected]
    candidates = [a.uri for a in plan.abandoned + plan.expired + plan.deleted] + [str(p) for p in plan.staging]
    outside = _outside(candidates, plan.root)
    plan.outside = sorted(outside)
    plan.abandoned = [a for a in plan.abandoned if a.uri not in outside]
    plan.expired = [a for a in plan.expired if a.uri not in outside]
    plan.deleted = [a for a in plan.deleted if a.uri not in outside]
    plan.staging = [p for p in plan.staging if str(p) not in outside]
    leftovers = [a.uri for a in plan.abandoned + plan.deleted] + [str(p) for p in plan.staging]
    if dry_run:
        plan.bytes = _sizes(leftovers + [a.uri for a in plan.expired], plan.sizes)
        return plan
    plan.bytes = _sizes(leftovers, plan.sizes)
    for path in leftovers:
        _remove(path)
    store.set_artifact_state([a.id for a in plan.abandoned if a.id is not None], ArtifactState.DELETED)
    if plan.expired:
        deleted = store.delete_unused({a.id: uses[a.id] for a in plan.expired if a.id is not None})
        plan.taken = [a for a in plan.expired if a.id not in deleted]
        plan.expired = [a for a in plan.expired if a.id in deleted]
        plan.bytes += _sizes([a.uri for a in plan.expired], plan.sizes)
        for a in plan.expired:
            _remove(a.uri)
    return plan


def _sizes(paths: list[str], sizes: dict[str, int]) -> int:
    """The bytes under ``paths``, each path's put in ``sizes``."""
    for p in paths:
        sizes[p] = _size(p) if os.path.exists(p) else 0
    return sum(sizes[p] for p in paths)


def _outside(paths: list[str], root: str) -> set[str]:
    """The paths whose removal would touch what lies outside the real path ``root``.

    A symlink is removed, not followed, so it counts where the link itself is. The real path of
    each folder that holds them is found once (an lstat per part of the path): a year of runs
    leaves tens of thousands of artifacts in as many folders as the pipelines have outputs.
    """
    below = os.path.join(root, "")  # a real path ends in no separator, but "/" does
    real: dict[str, str] = {}
    outside = set()
    for path in paths:
        folder, name = os.path.split(path)
        if name in ("", ".", ".."):
            where = os.path.realpath(path)
        else:
            if folder not in real:
                real[folder] = os.path.realpath(folder)
            where = os.path.join(real[folder], name)
        if not where.startswith(below):
            outside.add(path)
    return outside


def _remove(path: str) -> None:
    """Remove a folder, or a file where a staging folder would go."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _is_running(store: MetadataStore, exec_id: int, dead_runs: set[str]) -> bool:
    try:
        found = store.execution(exec_id)
    except MetadataError:  # an execution this store does not know: a leftover from elsewhere
        return False
    return found.status == ExecutionStatus.RUNNING and found.run_id not in dead_runs
