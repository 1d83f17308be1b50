"""The Trainer in real pipeline runs on the penguins: ExampleGen → StatisticsGen → SchemaGen →
Transform → Trainer, with LightGBM and scikit-learn ``run_fn``s; the bundle it keeps, the data
``fn_args`` gives, the metrics it logs, its cache, its seeds and warm start.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from conveyor import Output, Pipeline, component
from conveyor.artifacts import HyperParameters
from conveyor.components import ExampleGen, SchemaGen, StatisticsGen, Trainer, Transform
from conveyor.components.trainer import label_from_schema
from conveyor.exceptions import ComponentError
from conveyor.model import load_model, load_native
from conveyor.model.features import feature_names
from conveyor.training import FeatureMatrix, FnArgs
from conveyor.transform.transformed import read_schema
from tests.datasets import DATA
from tests.helpers import run_cli

pytest.importorskip("lightgbm")

MEASURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]

PREPROCESSING = """\
    import conveyor.transform as ct

    def preprocessing_fn(inputs):
        out = {{n: ct.fill_missing(ct.scale_to_z_score(inputs[n])) for n in {measures}}}
        out["island"] = {island}
        out["sex"] = ct.compute_and_apply_vocabulary(ct.fill_missing(inputs["sex"], "unknown"))
        out["species"] = ct.compute_and_apply_vocabulary(inputs["species"])
        return out
"""
ONE_HOT = 'ct.one_hot(ct.compute_and_apply_vocabulary(inputs["island"]))'
INDEX = 'ct.compute_and_apply_vocabulary(inputs["island"])'

LIGHTGBM = """\
    import lightgbm
    import numpy as np
    import conveyor.model

    def run_fn(fn_args):
        X, y = fn_args.train_data()
        X_eval, y_eval = fn_args.eval_data()
        model = lightgbm.LGBMClassifier(n_estimators=fn_args.train_args.get("num_steps", 6), min_child_samples=5,
                                        subsample=0.8, subsample_freq=1, random_state=fn_args.seed,
                                        deterministic=True, n_jobs=1, verbose=-1)
        model.fit(X, y, init_model=fn_args.load_base_model())
        for step in range(1, model.booster_.current_iteration() + 1):
            proba = model.predict_proba(X_eval, num_iteration=step)
            loss = -np.mean(np.log(proba[np.arange(len(y_eval)), y_eval]))
            fn_args.log_metrics({"eval/logloss": loss, "eval/step_seen": step}, step=step)
        conveyor.model.save(model, fn_args)
"""

SKLEARN = """\
    from sklearn.ensemble import RandomForestClassifier
    import conveyor.model

    def run_fn(fn_args):
        X, y = fn_args.train_data()
        # no random_state: the forest draws from NumPy's global generator, which the Trainer seeds
        model = RandomForestClassifier(n_estimators=5, max_depth=4, n_jobs=1).fit(X, y)
        conveyor.model.save(model, fn_args)
"""


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def penguins_pipeline(
    root: Path, run_fn: str = LIGHTGBM, *, one_hot: bool = True, also: tuple[Any, ...] = (), **trainer: Any
) -> Pipeline:
    """The penguins from CSV to a trained model, with the module files written beside ``root``;
    ``also``: steps whose outputs ``trainer`` names.
    """
    data = root / "data"
    if not data.exists():
        data.mkdir(parents=True)
        shutil.copy(DATA / "penguins" / "penguins.csv", data / "penguins.csv")
    preprocessing = PREPROCESSING.format(measures=MEASURES, island=ONE_HOT if one_hot else INDEX)
    gen = ExampleGen(input_base=str(data), null_values=["NA"])
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    transform = Transform(
        gen.outputs["examples"], schema.outputs["schema"], write(root / "preprocessing.py", preprocessing)
    )
    trained = Trainer(
        module_file=write(root / "trainer.py", run_fn),
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
        label_key=trainer.pop("label_key", "species"),
        **trainer,
    )
    return Pipeline("penguins", [*also, gen, stats, schema, transform, trained], root=root / "root")


def succeeded(pipeline: Pipeline) -> Any:
    run = pipeline.run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items() if e.error}
    return run


def output(run: Any, key: str, step: str = "Trainer") -> Any:
    return run.executions[step].outputs[key][0]


def model_file_hashes(run: Any, step: str = "Trainer") -> dict[str, str]:
    return json.loads((Path(output(run, "model", step).uri) / "conveyor_model.json").read_text())["files"]


def fn_args_of(run: Any, tmp_path: Path) -> FnArgs:
    """The FnArgs a Trainer would build on this run's transformed examples."""
    examples = output(run, "transformed_examples", "Transform").uri
    files = {s: [str(f) for f in sorted((Path(examples) / f"Split-{s}").glob("*.parquet"))] for s in ("train", "eval")}
    return FnArgs(
        train_files=files["train"],
        eval_files=files["eval"],
        examples=examples,
        transform_graph=output(run, "transform_graph", "Transform").uri,
        schema="",
        serving_model_dir=str(tmp_path),
        model_run_dir=str(tmp_path),
        label_key="species",
    )


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars of TensorBoard event files, read as TensorBoard reads them (length-prefixed records)."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One LightGBM run on one-hot islands, shared by the tests that only read it."""
    return succeeded(penguins_pipeline(tmp_path_factory.mktemp("penguins")))


def test_the_bundle_predicts_raw_rows(trained: Any) -> None:
    model = output(trained, "model")
    assert model.properties["flavor"] == "lightgbm"
    assert model.properties["task"] == "multiclass"
    assert model.properties["label"] == "species"
    assert model.properties["seed"] == 0
    assert model.properties["feature_count"] == 4 + 3 + 1  # measures, one-hot islands, sex
    rows = pd.read_csv(DATA / "penguins" / "penguins.csv").dropna()
    predicted = load_model(model.uri).predict(rows.drop(columns=["species"]).to_dict("records"))
    # the label is vocabulary-encoded for training; the bundle answers in the raw species
    assert np.mean(np.asarray(predicted["class"]) == rows["species"].to_numpy()) > 0.9


def test_train_data_is_csr_with_a_one_hot_output(trained: Any, tmp_path: Path) -> None:
    fn_args = fn_args_of(trained, tmp_path)
    data = fn_args.train_data()
    X, y = data
    spec = read_schema(fn_args.examples)
    assert sp.issparse(X) and X.format == "csr"
    assert data.feature_names == feature_names(spec, "species")
    assert X.shape == (len(y), len(data.feature_names))
    table = pq.read_table(fn_args.train_files[0])
    assert np.array_equal(y[: table.num_rows], table["species"].to_numpy())
    assert np.allclose(
        X[: table.num_rows, data.feature_names.index("bill_length_mm")].toarray().ravel(),
        table["bill_length_mm"].to_numpy(),
    )


def test_other_formats_give_the_transformed_table(trained: Any, tmp_path: Path) -> None:
    fn_args = fn_args_of(trained, tmp_path)
    rows = len(fn_args.eval_data().y)
    arrow = fn_args.eval_data(format="arrow")
    assert isinstance(arrow, pa.Table) and arrow.num_rows == rows
    assert {"species", "bill_length_mm", "island.indices", "island.values"} <= set(arrow.column_names)
    frame = fn_args.eval_data(format="pandas")
    assert isinstance(frame, pd.DataFrame) and frame["species"].tolist() == arrow["species"].to_pylist()
    polars = fn_args.eval_data(format="polars")
    assert isinstance(polars, pl.DataFrame) and polars["sex"].to_list() == arrow["sex"].to_pylist()
    with pytest.raises(ValueError, match="format must be one of"):
        fn_args.eval_data(format="csv")


def test_train_batches_cover_every_row_once(trained: Any, tmp_path: Path) -> None:
    fn_args = fn_args_of(trained, tmp_path)
    whole = fn_args.train_data()
    batches = list(fn_args.train_batches(batch_rows=50))
    assert all(isinstance(b, FeatureMatrix) and b.X.shape[0] <= 50 for b in batches)
    assert len(batches) > 1
    assert (sp.vstack([b.X for b in batches]) != whole.X).nnz == 0
    assert np.array_equal(np.concatenate([b.y for b in batches]), whole.y)
    eval_rows = sum(len(b.y) for b in fn_args.train_batches(batch_rows=7, split="eval"))
    assert eval_rows == len(fn_args.eval_data().y)


def test_shuffled_batches_hold_every_row_once_in_an_order_each_epoch_draws(trained: Any, tmp_path: Path) -> None:
    fn_args = fn_args_of(trained, tmp_path)
    whole = fn_args.train_data()

    def rows(epoch: int) -> list[tuple[float, ...]]:
        batches = list(fn_args.train_batches(batch_rows=50, shuffle=True, epoch=epoch))
        assert all(b.X.shape[0] <= 50 for b in batches)
        x = sp.vstack([b.X for b in batches]).toarray()
        y = np.concatenate([b.y for b in batches])
        return [(*r, label) for r, label in zip(x.tolist(), y.tolist(), strict=True)]

    in_order = [(*r, label) for r, label in zip(whole.X.toarray().tolist(), whole.y.tolist(), strict=True)]
    first, again, second = rows(0), rows(0), rows(1)
    assert sorted(first) == sorted(second) == sorted(in_order)  # every row, with its own label, once
    assert first == again  # the seed and the epoch decide the order
    assert first != in_order and first != second


def test_metrics_go_to_json_lines_and_tensorboard(trained: Any) -> None:
    run_dir = Path(output(trained, "model_run").uri)
    assert output(trained, "model_run").properties == {
        "metrics_file": "metrics.jsonl",
        "tensorboard_dir": "tensorboard",
    }
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [(m["step"], m["value"]) for m in logged if m["name"] == "eval/logloss"]
    assert [s for s, _ in losses] == list(range(1, 7))  # ROUNDS iterations, one line each
    assert losses[-1][1] < losses[0][1]
    scalars = tensorboard_scalars(run_dir / "tensorboard")
    assert [s for s, _ in scalars["eval/logloss"]] == [s for s, _ in losses]
    assert [v for _, v in scalars["eval/logloss"]] == pytest.approx([v for _, v in losses], rel=1e-6)  # float32 there
    assert [s for s, _ in scalars["eval/step_seen"]] == list(range(1, 7))


def test_show_says_how_to_open_tensorboard(trained: Any) -> None:
    model_run = output(trained, "model_run")
    root = Path(model_run.uri).parents[3]
    done = run_cli("show", str(model_run.id), "--root", str(root))
    assert done.returncode == 0, done.stderr
    assert f"tensorboard --logdir {Path(model_run.uri) / 'tensorboard'}" in done.stdout
    step = run_cli("show", "latest/Trainer", "--root", str(root))
    assert str(Path(model_run.uri) / "metrics.jsonl") in step.stdout


def test_dense_features_give_a_dense_matrix_and_the_seed_reaches_numpy(tmp_path: Path) -> None:
    """SKLEARN's forest has no random_state: only the Trainer's seed of NumPy makes it repeat."""
    first = succeeded(penguins_pipeline(tmp_path, SKLEARN, one_hot=False, seed=7))
    X, _ = fn_args_of(first, tmp_path).train_data()
    assert isinstance(X, np.ndarray) and X.ndim == 2
    assert output(first, "model").properties["seed"] == 7
    same = succeeded(penguins_pipeline(tmp_path / "again", SKLEARN, one_hot=False, seed=7))
    other = succeeded(penguins_pipeline(tmp_path / "other", SKLEARN, one_hot=False, seed=8))
    probabilities = {
        name: load_native(output(run, "model").uri).predict_proba(X)
        for name, run in {"first": first, "same": same, "other": other}.items()
    }
    assert np.array_equal(probabilities["same"], probabilities["first"])
    assert not np.array_equal(probabilities["other"], probabilities["first"])


DRAWS = """\
    import json, random, time
    from pathlib import Path
    import numpy as np
    from sklearn.dummy import DummyClassifier
    import conveyor.model

    def run_fn(fn_args):
        draws = []
        for _ in range(5):  # slow draws: a Trainer beside this one would interleave its own
            draws.append([float(np.random.random()), random.random()])
            time.sleep(0.02)
        Path(fn_args.model_run_dir, "draws.json").write_text(json.dumps(draws))
        conveyor.model.save(DummyClassifier().fit(*fn_args.train_data()), fn_args)
"""


def test_trainers_of_one_run_each_draw_their_own_seeds_sequence(tmp_path: Path) -> None:
    """Two Trainers with the same seed, free to run at once: each draws what its seed alone gives."""
    pipeline = penguins_pipeline(tmp_path, DRAWS, seed=3)
    first = pipeline.components[-1]
    second = Trainer(module_file=first.parameters["module_file"], examples=first.inputs["examples"],
                     transform_graph=first.inputs["transform_graph"], schema=first.inputs["schema"],
                     label_key="species", seed=3).with_id("Trainer2")  # fmt: skip
    run = succeeded(Pipeline("penguins", [*pipeline.components, second], root=pipeline.root))
    rng, np_rng = __import__("random").Random(3), np.random.RandomState(3)
    expected = [[np_rng.random_sample(), rng.random()] for _ in range(5)]
    for step in ("Trainer", "Trainer2"):
        assert json.loads((Path(output(run, "model_run", step).uri) / "draws.json").read_text()) == expected


def test_same_inputs_and_seed_give_the_same_sklearn_bytes(tmp_path: Path) -> None:
    pipeline = penguins_pipeline(tmp_path, SKLEARN, seed=7)
    first = succeeded(pipeline)
    again = succeeded(Pipeline("penguins", list(pipeline.components), root=pipeline.root, enable_cache=False))
    assert again.executions["Trainer"].status == "succeeded"
    assert model_file_hashes(again) == model_file_hashes(first)


def test_same_inputs_and_seed_give_the_same_lightgbm_bytes(tmp_path: Path) -> None:
    pipeline = penguins_pipeline(tmp_path)
    first = succeeded(pipeline)
    again = succeeded(Pipeline("penguins", list(pipeline.components), root=pipeline.root, enable_cache=False))
    assert again.executions["Trainer"].status == "succeeded"
    assert model_file_hashes(again) == model_file_hashes(first)
    other_seed = succeeded(penguins_pipeline(tmp_path, seed=1))  # bagging draws other rows
    assert model_file_hashes(other_seed)["model/model.txt"] != model_file_hashes(first)["model/model.txt"]


HELPED = LIGHTGBM.replace(
    "import conveyor.model\n", "import conveyor.model\n    from trainer_rounds import ROUNDS\n"
).replace('get("num_steps", 6)', 'get("num_steps", ROUNDS)')


def test_cached_until_the_module_a_module_it_imports_or_the_data_changes(tmp_path: Path) -> None:
    (tmp_path / "trainer_rounds.py").write_text("ROUNDS = 5\n")

    def trainer_status(run_fn: str = HELPED) -> str:
        return succeeded(penguins_pipeline(tmp_path, run_fn)).executions["Trainer"].status

    assert trainer_status() == "succeeded"
    assert trainer_status() == "cached"
    (tmp_path / "trainer_rounds.py").write_text("ROUNDS = 4\n")
    assert trainer_status() == "succeeded"
    assert trainer_status() == "cached"
    assert trainer_status(HELPED.replace("min_child_samples=5", "min_child_samples=6")) == "succeeded"
    csv = tmp_path / "data" / "penguins.csv"
    csv.write_text("".join(csv.read_text().splitlines(keepends=True)[:-5]))
    assert trainer_status() == "succeeded"


def test_warm_start_continues_from_the_base_model(tmp_path: Path) -> None:
    pipeline = penguins_pipeline(tmp_path, train_args={"num_steps": 3})
    first = pipeline.components[-1]
    warm = Trainer(
        module_file=str(tmp_path / "trainer.py"),
        examples=first.inputs["examples"],
        transform_graph=first.inputs["transform_graph"],
        schema=first.inputs["schema"],
        base_model=first.outputs["model"],
        train_args={"num_steps": 3},
        label_key="species",
    ).with_id("WarmTrainer")
    run = succeeded(Pipeline("penguins", [*pipeline.components, warm], root=pipeline.root))
    trees = {step: load_native(output(run, "model", step).uri).num_trees() for step in ("Trainer", "WarmTrainer")}
    assert trees["WarmTrainer"] == 2 * trees["Trainer"] == 2 * 3 * 3  # 3 classes, 3 rounds each time
    assert output(run, "model", "WarmTrainer").properties["base_model"] == output(run, "model").id


def test_a_run_fn_that_saves_nothing_fails_clearly(tmp_path: Path) -> None:
    run = penguins_pipeline(tmp_path, "def run_fn(fn_args):\n    fn_args.train_data()\n").run()
    assert run.executions["Trainer"].status == "failed"
    assert "run_fn must end with conveyor.model.save(model, fn_args)" in run.executions["Trainer"].error


@pytest.fixture(scope="module")
def faulty_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the runs of faulty module files, so that the steps before the Trainer run once."""
    return tmp_path_factory.mktemp("faulty")


def failed_trainer(root: Path, run_fn: str, **trainer: Any) -> str:
    run = penguins_pipeline(root, run_fn, **trainer).run()
    assert run.executions["Trainer"].status == "failed"
    return run.executions["Trainer"].error.splitlines()[0]


@pytest.mark.parametrize(
    ("run_fn", "first_line"),
    [
        (
            "def helper(row):\n    return row['nope']\n\ndef run_fn(fn_args):\n    helper({})\n",
            "trainer.py:2: run_fn raised KeyError: 'nope'",
        ),
        ("import sys\n\ndef run_fn(fn_args):\n    sys.exit(3)\n", "trainer.py:4: run_fn raised SystemExit: 3"),
        (
            "def run_fn():\n    pass\n",
            "trainer.py:1: run_fn raised TypeError: run_fn() takes 0 positional arguments but 1 was given",
        ),
        (
            "def run_fn(fn_args):\n    fn_args.train_data(format='csv')\n",
            "trainer.py:2: run_fn raised ValueError: train_data: format must be one of",
        ),
    ],
    ids=["raises", "sys.exit", "no argument", "a bad call of fn_args"],
)
def test_a_run_fn_that_fails_names_the_users_line(faulty_root: Path, run_fn: str, first_line: str) -> None:
    """The error's first line, what `conveyor run` shows, says where in the module file: sys.exit
    included, which otherwise ended the whole run, no step recorded, no word said."""
    head = failed_trainer(faulty_root, run_fn)
    assert head.startswith("ComponentError: ") and f"{faulty_root / first_line}" in head


def test_a_file_written_beside_the_bundle_fails_the_trainer(faulty_root: Path) -> None:
    """Serving refuses a bundle holding a file its manifest does not list: the Trainer says so, not the Pusher."""
    stray = SKLEARN + "        (Path(fn_args.serving_model_dir) / 'notes.txt').write_text('mine')\n"
    head = failed_trainer(
        faulty_root, stray.replace("import conveyor.model", "import conveyor.model\n    from pathlib import Path")
    )
    assert (
        "the bundle run_fn saved cannot be served" in head
        and "holds notes.txt, which conveyor_model.json does not list" in head
    )
    assert "other files go to fn_args.model_run_dir" in head


@component
def listed(best_hyperparameters: Output[HyperParameters]) -> None:
    """Hyperparameters that are no object of name to value."""
    (Path(best_hyperparameters.uri) / "hyperparameters.json").write_text("[1, 2]")


def test_hyperparameters_that_are_no_object_are_a_clear_error(faulty_root: Path) -> None:
    best = listed()
    head = failed_trainer(faulty_root, FIELDS, also=(best,), hyperparameters=best.outputs["best_hyperparameters"])
    assert "hyperparameters.json hold a JSON list, not an object of name to value" in head


@dataclasses.dataclass
class TrainingConfig:
    """A custom_config as a user writes one."""

    model: str = "forest"
    layers: tuple[int, ...] = (3, 4)


def test_custom_config_may_be_a_dataclass_run_fn_reads_as_a_dict(faulty_root: Path) -> None:
    run = succeeded(penguins_pipeline(faulty_root, FIELDS, custom_config=TrainingConfig(layers=(5,))))
    seen = json.loads((Path(output(run, "model_run").uri) / "seen.json").read_text())
    assert seen["custom_config"] == {"model": "forest", "layers": [5]}


def test_without_label_key_the_schema_must_name_one(tmp_path: Path) -> None:
    run = penguins_pipeline(tmp_path, label_key=None).run()
    assert run.executions["Trainer"].status == "failed"
    assert "pass label_key=" in run.executions["Trainer"].error


FIELDS = """\
    import json
    from pathlib import Path
    import lightgbm
    import conveyor.model

    def run_fn(fn_args):
        seen = {k: getattr(fn_args, k) for k in ("hyperparameters", "custom_config", "train_args", "label_key", "seed", "splits", "base_model")}
        seen["exists"] = {k: Path(getattr(fn_args, k)).exists() for k in ("examples", "transform_graph", "schema", "serving_model_dir", "model_run_dir")}
        seen["files"] = {"train": len(fn_args.train_files), "eval": len(fn_args.eval_files)}
        (Path(fn_args.model_run_dir) / "seen.json").write_text(json.dumps(seen))
        model = lightgbm.LGBMClassifier(n_estimators=2, verbose=-1, **fn_args.hyperparameters)
        conveyor.model.save(model.fit(*fn_args.train_data()), fn_args)
"""


@component
def tuned(best_hyperparameters: Output[HyperParameters]) -> None:
    """A Tuner's output, as the Trainer reads it."""
    (Path(best_hyperparameters.uri) / "hyperparameters.json").write_text(json.dumps({"num_leaves": 4}))


def test_fn_args_carries_every_field_run_fn_needs(tmp_path: Path) -> None:
    best = tuned()
    options = {
        "hyperparameters": best.outputs["best_hyperparameters"],
        "custom_config": {"note": "penguins"},
        "seed": 3,
    }
    failed = penguins_pipeline(tmp_path, FIELDS, also=(best,), train_args={"eval_splits": ["holdout"]}, **options).run()
    assert (
        "train_args['eval_splits']=['holdout'] names the split 'holdout', which is not there: the splits are ['eval', 'train']"
        in failed.executions["Trainer"].error
    )
    run = succeeded(penguins_pipeline(tmp_path, FIELDS, also=(best,), train_args={"num_steps": 2}, **options))
    seen = json.loads((Path(output(run, "model_run").uri) / "seen.json").read_text())
    assert seen == {
        "hyperparameters": {"num_leaves": 4},
        "custom_config": {"note": "penguins"},
        "train_args": {"num_steps": 2},
        "label_key": "species",
        "seed": 3,
        "splits": {"train": ["train"], "eval": ["eval"]},
        "base_model": None,
        "exists": dict.fromkeys(["examples", "transform_graph", "schema", "serving_model_dir", "model_run_dir"], True),
        "files": {"train": 1, "eval": 1},
    }
    assert "[num_leaves: 4]" in (Path(output(run, "model").uri) / "model" / "model.txt").read_text()
    assert output(run, "model_run").properties == {}  # no metrics logged: none promised


def test_without_tensorboardx_metrics_go_to_json_lines_only(
    trained: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as when it is not installed
    fn_args = fn_args_of(trained, tmp_path)
    fn_args.log_metric("loss", 0.5, step=1)
    fn_args.log_metrics({"loss": 0.25, "auc": 0.9}, step=2)
    fn_args.close()
    assert [json.loads(line)["value"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [
        0.5,
        0.25,
        0.9,
    ]
    assert not (tmp_path / "tensorboard").exists()
    assert capsys.readouterr().out.count("pip install 'conveyor[tensorboard]'") == 1


def test_the_label_is_the_one_feature_serving_lacks(tmp_path: Path) -> None:
    write(
        tmp_path / "schema.yaml",
        """\
        features:
          - {name: island, type: string}
          - {name: species, type: string, not_in_environments: [SERVING]}
        default_environments: [TRAINING, SERVING]
    """,
    )
    assert label_from_schema(str(tmp_path)) == "species"
    write(
        tmp_path / "schema.yaml",
        """\
        features:
          - {name: island, type: string, not_in_environments: [SERVING]}
          - {name: species, type: string, not_in_environments: [SERVING]}
    """,
    )
    with pytest.raises(ComponentError, match=r"marks features \['island', 'species'\] .* pass label_key="):
        label_from_schema(str(tmp_path))
