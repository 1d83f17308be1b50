"""The Tuner in real pipeline runs on the penguins (ExampleGen → ... → Transform → Tuner →
Trainer): it picks the better setting, its pruner stops a hopeless trial, its workers are
processes sharing one study, and its best hyperparameters reach a Trainer's ``run_fn``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from conveyor import Pipeline
from conveyor.components import Trainer, Tuner
from conveyor.exceptions import ComponentError, PipelineDefinitionError
from conveyor.model import load_native
from conveyor.training.tuning import tune
from tests.components.test_trainer import fn_args_of, output, penguins_pipeline, succeeded, write
from tests.helpers import run_cli

pytest.importorskip("optuna")
LogisticRegression = pytest.importorskip("sklearn.linear_model").LogisticRegression

ABSURD_C, SANE_C = 1e-6, 10.0

LOGISTIC = f"""\
    from sklearn.linear_model import LogisticRegression
    from conveyor.training import Search

    def tuner_fn(fn_args):
        X, y = fn_args.train_data()
        X_eval, y_eval = fn_args.eval_data()

        def objective(trial, fn_args):
            C = trial.suggest_float("C", {ABSURD_C}, {SANE_C}, log=True)
            return LogisticRegression(C=C, max_iter=500).fit(X, y).score(X_eval, y_eval)

        return Search(objective, space={{"C": [{ABSURD_C}, {SANE_C}]}})
"""

BOOSTING_BY_ROUND = """\
    import optuna
    from sklearn.ensemble import GradientBoostingClassifier
    from conveyor.training import Search

    def tuner_fn(fn_args):
        X, y = fn_args.train_data()
        X_eval, y_eval = fn_args.eval_data()

        def objective(trial, fn_args):
            # a leaf of 1000 rows, more than the data has, allows no split: the model guesses the prior
            leaf = trial.suggest_categorical("min_samples_leaf", [5, 1000])
            model = GradientBoostingClassifier(min_samples_leaf=leaf, n_estimators=1, warm_start=True, random_state=0)
            for rounds in range(1, 6):
                score = model.set_params(n_estimators=rounds).fit(X, y).score(X_eval, y_eval)
                trial.report(score, rounds)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return score

        return Search(objective)
"""

TRAIN_WITH_HYPERPARAMETERS = """\
    from sklearn.linear_model import LogisticRegression
    import conveyor.model

    def run_fn(fn_args):
        model = LogisticRegression(max_iter=500, **fn_args.hyperparameters)
        conveyor.model.save(model.fit(*fn_args.train_data()), fn_args)
"""


def tuned_pipeline(root: Path, tuner_module: str, **tuner: Any) -> Pipeline:
    """The penguins through Transform, a Tuner, and a Trainer fed its best hyperparameters."""
    base = penguins_pipeline(root, TRAIN_WITH_HYPERPARAMETERS)
    trainer = base.components[-1]
    inputs = {k: trainer.inputs[k] for k in ("examples", "transform_graph", "schema")}
    tuning = Tuner(module_file=write(root / "tuner.py", tuner_module), label_key="species", **inputs, **tuner)
    tuned = Trainer(
        module_file=str(root / "trainer.py"),
        hyperparameters=tuning.outputs["best_hyperparameters"],
        label_key="species",
        **inputs,
    ).with_id("TunedTrainer")
    return Pipeline("penguins", [*base.components[:-1], tuning, tuned], root=base.root)


def trials_of(run: Any) -> list[dict[str, Any]]:
    return json.loads((Path(output(run, "best_hyperparameters", "Tuner").uri) / "trials.json").read_text())["trials"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the module's runs, so that the steps before the Tuner run once."""
    return tmp_path_factory.mktemp("penguins")


@pytest.fixture(scope="module")
def grid_run(root: Path) -> Any:
    return succeeded(tuned_pipeline(root, LOGISTIC, max_trials=5, sampler="grid"))


def test_the_tuner_picks_the_sane_setting_and_the_trainer_uses_it(grid_run: Any, tmp_path: Path) -> None:
    X, y = fn_args_of(grid_run, tmp_path).train_data()
    X_eval, y_eval = fn_args_of(grid_run, tmp_path).eval_data()
    accuracy = {C: LogisticRegression(C=C, max_iter=500).fit(X, y).score(X_eval, y_eval) for C in (ABSURD_C, SANE_C)}
    assert accuracy[SANE_C] > 0.9 > 0.6 > accuracy[ABSURD_C]  # the oracle: the settings are clearly apart
    trials = trials_of(grid_run)
    assert len(trials) == 2  # the grid is done after its two points, though max_trials is 5
    assert {t["params"]["C"]: t["value"] for t in trials} == pytest.approx(accuracy)
    assert all(t["state"] == "COMPLETE" and t["pid"] == os.getpid() for t in trials)
    best = output(grid_run, "best_hyperparameters", "Tuner")
    assert json.loads((Path(best.uri) / "hyperparameters.json").read_text()) == {"C": SANE_C}
    winner = next(t["number"] for t in trials if t["params"]["C"] == SANE_C)
    assert best.properties == {
        "best_value": pytest.approx(accuracy[SANE_C]),
        "best_trial": winner,
        "trials_complete": 2,
        "trials_pruned": 0,
        "trials_failed": 0,
    }
    assert load_native(output(grid_run, "model", "TunedTrainer").uri).C == SANE_C


def test_show_prints_the_best_hyperparameters(grid_run: Any, root: Path) -> None:
    best = output(grid_run, "best_hyperparameters", "Tuner")
    shown = run_cli("show", str(best.id), "--root", str(root / "root"))
    assert shown.returncode == 0, shown.stderr
    assert f"best         C {json.dumps(SANE_C)}" in shown.stdout.splitlines()


def test_each_finished_trial_prints_the_best_value_so_far(grid_run: Any) -> None:
    log = Path(grid_run.executions["Tuner"].log_uri).read_text()
    progress = [line for line in log.splitlines() if line.startswith("trial ")]
    best = output(grid_run, "best_hyperparameters", "Tuner").properties
    assert len(progress) == 2
    assert progress[-1].endswith(f"2/2 done, best {best['best_value']:.6g} (trial {best['best_trial']})")


def test_cached_until_the_tuner_module_changes(grid_run: Any, root: Path) -> None:
    again = succeeded(tuned_pipeline(root, LOGISTIC, max_trials=5, sampler="grid"))
    assert again.executions["Tuner"].status == "cached"
    edited = succeeded(
        tuned_pipeline(root, LOGISTIC.replace("max_iter=500", "max_iter=400"), max_trials=5, sampler="grid")
    )
    assert edited.executions["Tuner"].status == "succeeded"


def test_the_median_pruner_stops_hopeless_trials(grid_run: Any, tmp_path: Path) -> None:
    module = write(tmp_path / "boosting.py", BOOSTING_BY_ROUND)
    result = tune(
        module, fn_args_of(grid_run, tmp_path), str(tmp_path), max_trials=8, sampler="random", pruner="median"
    )
    trials = json.loads((tmp_path / "trials.json").read_text())["trials"]
    assert result.best_params == {"min_samples_leaf": 5}
    pruned = [t for t in trials if t["state"] == "PRUNED"]
    assert pruned, trials
    assert all(t["params"]["min_samples_leaf"] == 1000 and len(t["intermediate_values"]) < 5 for t in pruned)
    second_complete = [t["number"] for t in trials if t["state"] == "COMPLETE"][1]
    late_hopeless = [t for t in trials if t["number"] > second_complete and t["params"]["min_samples_leaf"] == 1000]
    assert all(t["state"] == "PRUNED" for t in late_hopeless)
    assert result.states == {"COMPLETE": len(trials) - len(pruned), "PRUNED": len(pruned)}
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert all(list(t["intermediate_values"]) == ["1", "2", "3", "4", "5"] for t in complete)


@pytest.mark.parametrize("pruner", ["hyperband", None])
def test_hyperband_prunes_only_hopeless_trials_and_none_prunes_nothing(
    grid_run: Any, tmp_path: Path, pruner: str | None
) -> None:
    module = write(tmp_path / "boosting.py", BOOSTING_BY_ROUND)
    result = tune(module, fn_args_of(grid_run, tmp_path), str(tmp_path), max_trials=8, sampler="random", pruner=pruner)
    trials = json.loads((tmp_path / "trials.json").read_text())["trials"]
    pruned = [t["params"]["min_samples_leaf"] for t in trials if t["state"] == "PRUNED"]
    assert pruned == ([1000] * len(pruned) if pruner else [])
    assert len(pruned) > 0 if pruner else result.states == {"COMPLETE": 8}
    assert result.best_params == {"min_samples_leaf": 5}


def test_two_workers_run_trials_in_two_processes(root: Path) -> None:
    run = succeeded(tuned_pipeline(root, LOGISTIC, max_trials=4, sampler="random", workers=2))
    trials = trials_of(run)
    assert [t["state"] for t in trials] == ["COMPLETE"] * 4
    pids = {t["pid"] for t in trials}
    assert len(pids) == 2 and os.getpid() not in pids
    assert (Path(output(run, "best_hyperparameters", "Tuner").uri) / "study.journal").is_file()
    log = Path(run.executions["Tuner"].log_uri).read_text()
    assert "4/4 done, best" in log


def test_the_same_seed_proposes_the_same_trials(grid_run: Any, tmp_path: Path) -> None:
    module = write(tmp_path / "quadratic.py", QUADRATIC)
    fn_args = fn_args_of(grid_run, tmp_path)

    def proposed(folder: str, seed: int) -> list[float]:
        (tmp_path / folder).mkdir()
        tune(module, fn_args, str(tmp_path / folder), max_trials=4, sampler="tpe", seed=seed)
        return [t["params"]["x"] for t in json.loads((tmp_path / folder / "trials.json").read_text())["trials"]]

    assert proposed("first", 3) == proposed("again", 3) != proposed("other", 4)


GRID_OF_SIX = """\
    import numpy as np
    from conveyor.training import Search

    def tuner_fn(fn_args):
        def objective(trial, fn_args):
            return 10 * trial.suggest_int("x", 0, 10) + trial.suggest_categorical("c", [1, 2])
        return Search(objective, space={"x": np.arange(1, 4), "c": [1, 2]})  # NumPy values, as users write grids
"""


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_the_grid_is_tried_point_by_point_however_many_workers(grid_run: Any, tmp_path: Path, workers: int) -> None:
    """Workers that shuffled the grid each their own way tried some points twice and missed others,
    the best among them."""
    module = write(tmp_path / "grid.py", GRID_OF_SIX)
    result = tune(module, fn_args_of(grid_run, tmp_path), str(tmp_path), max_trials=6, sampler="grid", workers=workers)
    trials = json.loads((tmp_path / "trials.json").read_text())["trials"]
    tried = sorted((t["params"]["x"], t["params"]["c"]) for t in trials)
    assert tried == [(x, c) for x in (1, 2, 3) for c in (1, 2)]
    assert (result.best_params, result.best_value) == ({"x": 3, "c": 2}, 32.0)


QUADRATIC = """\
    from conveyor.training import Search

    def tuner_fn(fn_args):
        return Search(lambda trial, fn_args: (trial.suggest_float("x", -5, 5) - 2) ** 2, direction="minimize")
"""


FLOAT32_SCORE = """\
    import numpy as np
    from conveyor.training import Search

    def tuner_fn(fn_args):
        def objective(trial, fn_args):
            x = trial.suggest_float("x", -5, 5)
            return np.mean(np.array([-(x - 2) ** 2], dtype=np.float32))  # a float32 metric, as torch or ONNX give
        return Search(objective)
"""


def test_an_objective_may_return_a_numpy_number_and_the_best_is_the_highest(grid_run: Any, tmp_path: Path) -> None:
    module = write(tmp_path / "float32.py", FLOAT32_SCORE)
    result = tune(module, fn_args_of(grid_run, tmp_path), str(tmp_path), max_trials=6, sampler="random", seed=1)
    trials = json.loads((tmp_path / "trials.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE"] * 6
    best = max(trials, key=lambda t: t["value"])
    assert (result.best_trial, result.best_params, result.best_value) == (best["number"], best["params"], best["value"])
    assert result.best_value == pytest.approx(-((best["params"]["x"] - 2) ** 2), rel=1e-6)


INFINITE_SCORES = """\
    import math
    from conveyor.training import Search

    def tuner_fn(fn_args):
        def objective(trial, fn_args):
            x = trial.suggest_float("x", -5, 5)
            return -math.inf if trial.number % 2 else -((x - 2) ** 2)  # a diverged trial: a loss of inf
        return Search(objective)
"""


def test_an_infinite_score_is_kept_as_standard_json_and_never_the_best(grid_run: Any, tmp_path: Path) -> None:
    module = write(tmp_path / "infinite.py", INFINITE_SCORES)
    result = tune(module, fn_args_of(grid_run, tmp_path), str(tmp_path), max_trials=4, sampler="random", seed=1)
    text = (tmp_path / "trials.json").read_text()
    trials = json.loads(text, parse_constant=lambda c: pytest.fail(f"trials.json holds {c}, which is not JSON"))
    assert [t["value"] for t in trials["trials"]][1::2] == ["-inf", "-inf"]
    finite = [t for t in trials["trials"] if isinstance(t["value"], float)]
    assert result.best_value == max(t["value"] for t in finite)


def test_a_missing_tuner_fn_is_a_clear_error(root: Path) -> None:
    misnamed = LOGISTIC.replace("def tuner_fn", "def tuner_fun")
    run = tuned_pipeline(root, misnamed, max_trials=2).run()
    error = run.executions["Tuner"].error
    assert "tuner.py: defines no tuner_fn(fn_args), which Tuner calls. Did you mean 'tuner_fun'?" in error
    assert run.executions["TunedTrainer"].status != "succeeded"


RAISES = "from conveyor.training import Search\n\ndef objective(trial, fn_args):\n    return 1 / 0\n\ndef tuner_fn(fn_args):\n    return Search(objective)\n"


@pytest.mark.parametrize(
    ("module", "settings", "message"),
    [
        (
            'def tuner_fn(fn_args):\n    return {"C": [1, 2]}\n',
            {},
            "tuner_fn returned dict; it must return conveyor.training.Search",
        ),
        (QUADRATIC, {"sampler": "grid"}, "the grid sampler needs the grid; return Search(objective, space="),
        (QUADRATIC, {"sampler": "bayes"}, "sampler must be one of ['tpe', 'random', 'grid'], got 'bayes'"),
        (RAISES, {}, "bad.py:4: a trial's objective raised ZeroDivisionError: division by zero"),
        (
            RAISES,
            {"workers": 2},
            "Tuner: worker 0 failed: <path>bad.py:4: a trial's objective raised ZeroDivisionError",
        ),
        (QUADRATIC.replace("** 2", "** 2 > 1"), {}, "the objective returned True; it must return a number"),
        (
            RAISES.replace("    return Search", "    fn_args.train_data(label='nope')\n    return Search"),
            {},
            "bad.py:7: the label 'nope' is not among the transformed features",
        ),
        (
            RAISES.replace("return 1 / 0", "raise SystemExit(2)"),
            {},
            "bad.py:4: a trial's objective raised SystemExit: 2",
        ),
        ("def tuner_fn():\n    pass\n", {}, "bad.py:1: tuner_fn raised TypeError: tuner_fn() takes 0 positional"),
        (
            QUADRATIC.replace('direction="minimize"', 'space={"x": []}'),
            {"sampler": "grid"},
            "bad.py:4: tuner_fn raised TypeError: Search: space must map each name to a list of its values, "
            "e.g. {'C': [0.1, 1.0]}; 'x' has no values.",
        ),
        (
            QUADRATIC.replace('direction="minimize"', 'space={"x": "125"}'),
            {"sampler": "grid"},
            "Search: space must map each name to a list of its values, e.g. {'C': [0.1, 1.0]}; got 'x': '125'.",
        ),
    ],
    ids=[
        "not a Search",
        "grid without space",
        "unknown sampler",
        "objective raises",
        "in a worker",
        "not a number",
        "tuner_fn raises",
        "sys.exit in an objective",
        "tuner_fn without an argument",
        "a grid of no points",
        "a grid of letters",
    ],
)
def test_a_bad_search_is_a_clear_error(
    grid_run: Any, tmp_path: Path, module: str, settings: dict[str, Any], message: str
) -> None:
    path = write(tmp_path / "bad.py", module)
    with pytest.raises(ComponentError, match=re.escape(message).replace("<path>", r"\S*")):
        tune(path, fn_args_of(grid_run, tmp_path), str(tmp_path), max_trials=2, **settings)


def test_a_search_that_fails_keeps_the_trials_that_ran_before(grid_run: Any, tmp_path: Path) -> None:
    """The folder a failed step keeps says what ran: the first trial completed, the second raised."""
    raises_late = RAISES.replace("return 1 / 0", "return 1 / trial.number if trial.number else 0.5")
    path = write(tmp_path / "late.py", raises_late.replace("1 / trial.number if", "1 / (trial.number - 1) if"))
    with pytest.raises(ComponentError, match="ZeroDivisionError"):
        tune(path, fn_args_of(grid_run, tmp_path), str(tmp_path), max_trials=3)
    trials = json.loads((tmp_path / "trials.json").read_text())["trials"]
    assert [(t["number"], t["state"], t["value"]) for t in trials] == [(0, "COMPLETE", 0.5), (1, "FAIL", None)]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sampler": "bayes"}, "Tuner(): sampler must be one of ['tpe', 'random', 'grid'], got 'bayes'."),
        ({"pruner": "early"}, "Tuner(): pruner must be one of ['median', 'hyperband', None], got 'early'."),
        ({"max_trials": 0}, "Tuner(): max_trials and workers must be whole numbers, at least 1; got max_trials=0."),
        ({"workers": -1}, "Tuner(): max_trials and workers must be whole numbers, at least 1; got workers=-1."),
    ],
    ids=["sampler", "pruner", "no trials", "no workers"],
)
def test_a_setting_that_cannot_run_is_refused_when_the_pipeline_is_built(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    """Found at run time, it would fail only after Transform had run; it is the pipeline's error, at once."""
    with pytest.raises(PipelineDefinitionError, match=re.escape(message)):
        tuned_pipeline(tmp_path, QUADRATIC, **settings)
