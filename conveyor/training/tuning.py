"""The hyperparameter search behind the Tuner, on Optuna: samplers, pruners, worker processes.

The user's module defines ``tuner_fn(fn_args)`` returning a ``Search``: an objective that
trains on ``fn_args.train_data()`` and scores on ``fn_args.eval_data()`` with the values it
asks of Optuna's ``trial``. The study lives in a journal file (``study.journal``) beside the
trials' record, so worker processes share it: each loads the module file again and runs its
share of the trials, and the calling process prints a line per finished trial as the journal
grows. Workers are fresh interpreters (``python -c``), never forks and never a re-import of
the caller's main script, so a pipeline file without a ``__main__`` guard is safe.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from conveyor._internal.extras import require
from conveyor._internal.loader import call_user_fn, function_of, load_step_module, user_line
from conveyor.exceptions import ComponentError
from conveyor.training.fn_args import FnArgs

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", None)
DIRECTIONS = ("maximize", "minimize")
JOURNAL_FILE = "study.journal"
TRIALS_FILE = "trials.json"
STUDY_NAME = "tuner"
MEDIAN_STARTUP_TRIALS = 2
"""Trials that complete before the median pruner judges others: few, as a Tuner's budget is small."""
_POLL_SECONDS = 0.3
_ERROR_MARK = "conveyor-tuner-error: "  # a worker's last line when it fails, as the step's error


@dataclass(frozen=True)
class Search:
    """What ``tuner_fn(fn_args)`` returns: the objective to optimise, and for the grid sampler its grid.

    Args:
        objective: ``objective(trial, fn_args) -> float``; it asks for values with
            ``trial.suggest_float("C", 1e-3, 10, log=True)``, ``suggest_int``,
            ``suggest_categorical``, and may report a score per step with
            ``trial.report(value, step)``, then stop when ``trial.should_prune()``
            (``raise optuna.TrialPruned()``).
        space: the grid, a list of values per name, which the "grid" sampler needs.
        direction: "maximize" (accuracy) or "minimize" (loss).

    Example:
        >>> def tuner_fn(fn_args):
        ...     def objective(trial, fn_args):
        ...         model = LogisticRegression(C=trial.suggest_float("C", 1e-3, 10, log=True))
        ...         return model.fit(*fn_args.train_data()).score(*fn_args.eval_data())
        ...     return conveyor.training.Search(objective)
    """

    objective: Callable[[Any, FnArgs], float]
    space: Mapping[str, Sequence[Any]] | None = None
    direction: str = "maximize"

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            msg = f"Search: direction must be one of {list(DIRECTIONS)}, got {self.direction!r}."
            raise ValueError(msg)
        if not callable(self.objective):
            msg = f"Search: objective must be a function objective(trial, fn_args) -> float, got {self.objective!r}."
            raise TypeError(msg)
        if self.space is not None and (refusal := _grid_refusal(self.space)):
            msg = f"Search: space must map each name to a list of its values, e.g. {{'C': [0.1, 1.0]}}; {refusal}"
            raise TypeError(msg)


def _grid_refusal(space: Any) -> str | None:
    """What makes ``space`` no grid (None if nothing): a string would be a grid of its letters,
    and a name without values a grid of no points."""
    if not isinstance(space, Mapping):
        return f"got {type(space).__name__} {space!r}."
    for name, values in space.items():
        if isinstance(values, str | bytes | Mapping) or not hasattr(values, "__len__"):
            return f"got {name!r}: {values!r}."
        if len(values) == 0:
            return f"{name!r} has no values."
    return None


@dataclass(frozen=True)
class TuningResult:
    """The outcome of a search: the best trial, and how many trials ended in each state."""

    best_params: dict[str, Any]
    best_value: float
    best_trial: int
    states: dict[str, int] = field(default_factory=dict)
    """Trials by state: COMPLETE, PRUNED, FAIL."""


@dataclass(frozen=True)
class _Job:
    """One worker's share of a search, as it travels to a worker process (JSON)."""

    module_file: str
    fn_args: dict[str, Any]
    journal: str
    sampler: str
    pruner: str | None
    seed: int
    n_trials: int


def load_tuner_fn(path: str) -> Callable[..., Any]:
    """``tuner_fn`` of a module file, imported as the Trainer imports ``run_fn``: the user's
    modules it uses are declared, so an edit to one runs the Tuner again.
    """
    loaded = load_step_module(path, what="module file", error=ComponentError)
    return function_of(loaded, "tuner_fn", purpose="tuner_fn(fn_args), which Tuner calls", error=ComponentError)


def search_of(module_file: str, fn_args: FnArgs) -> Search:
    """The ``Search`` that the module's ``tuner_fn(fn_args)`` returns, or a clear error."""
    search = call_user_fn(load_tuner_fn(module_file), fn_args, file=module_file, what="tuner_fn", error=ComponentError)
    if not isinstance(search, Search):
        msg = f"{module_file}: tuner_fn returned {type(search).__name__}; it must return conveyor.training.Search(objective, space=None, direction='maximize')."
        raise ComponentError(msg)
    return search


def tune(
    module_file: str,
    fn_args: FnArgs,
    out_dir: str,
    *,
    max_trials: int,
    sampler: str = "tpe",
    pruner: str | None = "median",
    workers: int = 1,
    seed: int = 0,
) -> TuningResult:
    """Run ``max_trials`` trials of the module's search and record them in ``out_dir``.

    ``out_dir`` gets ``study.journal`` (Optuna's study, shared by the workers) and
    ``trials.json`` (every trial's number, parameters, value, state, intermediate values and
    the pid of the process that ran it). With ``workers`` above 1 the trials run in that many
    processes, each with its share of the budget and its sampler seeded ``seed + worker``
    (the grid sampler ``seed`` in each, so that they share one order of the grid).

    Args:
        sampler: "tpe", "random" or "grid" (which needs ``Search.space`` and stops when the
            grid is done).
        pruner: "median" (a trial whose reported value at a step is worse than the median of
            completed trials at that step, once two have completed), "hyperband", or None.

    Raises:
        ComponentError: a bad setting, a ``tuner_fn`` or objective that fails (with its file and
            line), or no trial completed.
    """
    optuna = require("optuna", "tune", "the Tuner")
    _check_settings(max_trials, sampler, pruner, workers)
    module_file = os.path.abspath(module_file)
    search = search_of(module_file, fn_args)
    if sampler == "grid" and not search.space:
        msg = f"{module_file}: the grid sampler needs the grid; return Search(objective, space={{'name': [values, ...]}}) from tuner_fn."
        raise ComponentError(msg)
    if sampler == "grid":  # the grid sampler stops the study once every point is tried
        max_trials = min(max_trials, math.prod(len(values) for values in (search.space or {}).values()))
    journal = str(Path(out_dir) / JOURNAL_FILE)
    workers = min(workers, max_trials)
    shares = [max_trials // workers + (i < max_trials % workers) for i in range(workers)]
    job = _Job(module_file, _fields(fn_args), journal, sampler, pruner, seed, shares[0])
    progress = _Progress(max_trials, search.direction)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress lines say it once
    study = None
    try:
        study = optuna.create_study(storage=_storage(journal), study_name=STUDY_NAME, direction=search.direction)
        if workers == 1:
            _optimize(job, search, fn_args, callback=lambda s, _: progress.show(s.get_trials(deepcopy=False)))
        else:
            # trial n takes the n-th point of the grid as shuffled by the seed: the workers must shuffle
            # alike, or one's point n is another's point m, tried twice while a third point is never tried
            seeds = [seed if sampler == "grid" else seed + i for i in range(workers)]
            jobs = [replace(job, n_trials=n, seed=s) for n, s in zip(shares, seeds, strict=True)]
            _in_processes(jobs, study, progress)
    except BaseException:
        if study is not None:  # the trials before the fault, for the folder a failed step keeps
            with contextlib.suppress(Exception):
                _write_trials(Path(out_dir) / TRIALS_FILE, study.get_trials(deepcopy=False), job)
        raise
    finally:
        optuna.logging.set_verbosity(verbosity)
    trials = study.get_trials(deepcopy=False)
    _write_trials(Path(out_dir) / TRIALS_FILE, trials, job)
    return _result(trials, search.direction, module_file)


def settings_refusal(max_trials: Any, sampler: Any, pruner: Any, workers: Any) -> str | None:
    """What is wrong with these settings (None if nothing): the Tuner says it when the pipeline is built."""
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        return f"sampler must be one of {list(SAMPLERS)}, got {sampler!r}."
    if pruner is not None and (not isinstance(pruner, str) or pruner not in PRUNERS):
        return f"pruner must be one of {list(PRUNERS)}, got {pruner!r}."
    for name, value in (("max_trials", max_trials), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            return f"max_trials and workers must be whole numbers, at least 1; got {name}={value!r}."
    return None


def _check_settings(max_trials: int, sampler: str, pruner: str | None, workers: int) -> None:
    if refusal := settings_refusal(max_trials, sampler, pruner, workers):
        msg = f"Tuner: {refusal}"
        raise ComponentError(msg)


def _storage(journal: str) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    return JournalStorage(JournalFileBackend(journal, lock_obj=JournalFileOpenLock(journal)))


def _fields(fn_args: FnArgs) -> dict[str, Any]:
    return {f.name: getattr(fn_args, f.name) for f in fields(FnArgs) if f.init}


def _sampler(name: str, seed: int, space: Mapping[str, Sequence[Any]] | None) -> Any:
    import optuna

    if name == "grid":
        # NumPy values (np.logspace, np.arange) as Python ones: the study's journal is JSON
        grid = {param: [v.item() if hasattr(v, "item") else v for v in values] for param, values in (space or {}).items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(name: str | None) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def _optimize(job: _Job, search: Search, fn_args: FnArgs, callback: Callable[[Any, Any], None] | None = None) -> None:
    """Run this job's trials against the shared study, in this process."""
    import optuna

    study = optuna.load_study(
        study_name=STUDY_NAME,
        storage=_storage(job.journal),
        sampler=_sampler(job.sampler, job.seed, search.space),
        pruner=_pruner(job.pruner),
    )

    def objective(trial: Any) -> float:
        trial.set_user_attr("pid", os.getpid())
        value = search.objective(trial, fn_args)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):  # NumPy's numbers too, not np.bool_
            msg = f"{job.module_file}: the objective returned {value!r}; it must return a number (the score of the trial)."
            raise ComponentError(msg)
        return float(value)

    with tempfile.TemporaryDirectory(prefix="conveyor-trial-") as scratch:
        # a trial keeps no model: whatever it saves or logs goes to a folder removed afterwards
        fn_args = replace(fn_args, serving_model_dir=scratch, model_run_dir=scratch)
        try:
            study.optimize(objective, n_trials=job.n_trials, callbacks=[callback] if callback else None)
        except ComponentError:
            raise
        except (Exception, SystemExit) as e:  # sys.exit in an objective would end the run without a word
            msg = (
                f"{user_line(e, job.module_file, job.module_file)}: a trial's objective raised {type(e).__name__}: {e}"
            )
            raise ComponentError(msg) from e
        finally:
            fn_args.close()


def run_worker() -> None:
    """A worker process's entry: read a job (JSON) on stdin, run its trials, exit 1 with the error on failure."""
    job = _Job(**json.loads(sys.stdin.read()))
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        fn_args = FnArgs(**job.fn_args)
        _optimize(job, search_of(job.module_file, fn_args), fn_args)
    except ComponentError as e:
        print(f"{_ERROR_MARK}{e}", file=sys.stderr)
        sys.exit(1)


def _in_processes(jobs: list[_Job], study: Any, progress: _Progress) -> None:
    """Run each job in a worker process, printing progress from the journal until all end."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-c", "from conveyor.training.tuning import run_worker; run_worker()"]
    with tempfile.TemporaryDirectory(prefix="conveyor-tuner-") as logs:
        running = []
        for i, job in enumerate(jobs):
            log = open(Path(logs) / f"worker-{i}.log", "w+", encoding="utf-8")  # noqa: SIM115 (closed below)
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env)
            assert process.stdin is not None
            process.stdin.write(json.dumps(job.__dict__).encode())
            process.stdin.close()
            running.append((process, log))
        try:
            while any(p.poll() is None for p, _ in running):
                time.sleep(_POLL_SECONDS)
                progress.show(study.get_trials(deepcopy=False))
            progress.show(study.get_trials(deepcopy=False))
        finally:
            for process, _ in running:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        outputs = []
        for process, log in running:
            log.seek(0)
            outputs.append((process.returncode, log.read()))
            log.close()
    for i, (_, text) in enumerate(outputs):
        for line in text.splitlines():
            if not line.startswith(_ERROR_MARK):
                print(f"worker {i}: {line}")
    for i, (code, text) in enumerate(outputs):
        if code != 0:
            lines = text.splitlines()
            marked = [line.removeprefix(_ERROR_MARK) for line in lines if line.startswith(_ERROR_MARK)]
            msg = f"Tuner: worker {i} failed: {(marked or lines or [f'exit code {code}'])[-1]}"
            raise ComponentError(msg)


class _Progress:
    """Prints one line per finished trial, with the best value so far."""

    def __init__(self, total: int, direction: str) -> None:
        self.total = total
        self.pick = max if direction == "maximize" else min
        self.shown: set[int] = set()

    def show(self, trials: Sequence[Any]) -> None:
        import optuna

        done = [t for t in trials if t.state.is_finished()]
        complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
        for trial in sorted(done, key=lambda t: t.number):
            if trial.number in self.shown:
                continue
            self.shown.add(trial.number)
            state = trial.state.name.lower()
            if trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values:
                state += f" at step {max(trial.intermediate_values)}"
            value = "" if trial.value is None else f" value {trial.value:.6g}"
            best = ""
            if complete:
                top = self.pick(complete, key=lambda t: t.value)
                best = f", best {top.value:.6g} (trial {top.number})"
            print(f"trial {trial.number} {state}{value} {trial.params}: {len(self.shown)}/{self.total} done{best}")


def _write_trials(path: Path, trials: Sequence[Any], job: _Job) -> None:
    record = {
        "sampler": job.sampler,
        "pruner": job.pruner,
        "seed": job.seed,
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "params": t.params,
                "value": _json_number(t.value),
                "intermediate_values": {str(step): _json_number(v) for step, v in sorted(t.intermediate_values.items())},
                "pid": t.user_attrs.get("pid"),
                "started": t.datetime_start.isoformat() if t.datetime_start else None,
                "finished": t.datetime_complete.isoformat() if t.datetime_complete else None,
            }
            for t in trials
        ],
    }
    path.write_text(json.dumps(record, indent=1, default=_json_value) + "\n", encoding="utf-8")


def _json_number(value: float | None) -> float | str | None:
    """A score as standard JSON: an infinite or NaN one as text ("inf"), which JSON has no number for."""
    return value if value is None or math.isfinite(value) else str(float(value))


def _json_value(value: Any) -> Any:
    """NumPy numbers (which a user's categorical choices may be) as JSON numbers, anything else as text."""
    return value.item() if hasattr(value, "item") else str(value)


def _result(trials: Sequence[Any], direction: str, module_file: str) -> TuningResult:
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)]
    if not complete:
        msg = f"Tuner: no trial of {module_file} completed ({states}); see trials.json, and let the objective finish some trials (prune less, or raise max_trials)."
        raise ComponentError(msg)
    best = (max if direction == "maximize" else min)(complete, key=lambda t: t.value)
    return TuningResult(dict(best.params), float(best.value), best.number, states)
