"""On Beam, awkward data gives the local run's bytes, and an error on a worker comes back as itself.

Awkward: a split with no rows, a split of one row, row groups of two rows (so many parts), a
column null in every row, a slice. The oracle is the local engine's run of the same pipeline;
Beam runs in this process (``--runner=DirectRunner``), which is what keeps the test fast.
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("apache_beam", reason="the Beam engine needs apache_beam: pip install 'conveyor[beam]'")

from conveyor import Output, Parameter, Pipeline, component
from conveyor._internal.combiner import Combiner
from conveyor.analysis import EvalConfig
from conveyor.artifacts import Examples
from conveyor.components import Evaluator, SchemaGen, StatisticsGen, Trainer, Transform
from conveyor.exceptions import DataValidationError
from conveyor.orchestration.beam.engine import BeamEngine
from tests.beam.conftest import DIRECT

IN_PROCESS = ["--runner=DirectRunner"]

PREPROCESSING = """
    import conveyor.transform as ct


    def preprocessing_fn(inputs):
        return {
            "x": ct.scale_to_z_score(inputs["x"]),
            "q": ct.bucketize(inputs["x"], 4),
            "c": ct.one_hot(ct.compute_and_apply_vocabulary(inputs["c"])),
            "blank": ct.fill_missing(inputs["blank"]),
            "y": ct.compute_and_apply_vocabulary(inputs["y"]),
        }
"""

TRAINER = """
    from sklearn.linear_model import LogisticRegression

    import conveyor.model


    def run_fn(fn_args):
        X, y = fn_args.train_data()
        conveyor.model.save(LogisticRegression().fit(X, y), fn_args)
"""

SPLIT_ROWS = {"train": 60, "eval": 30, "one": 1, "empty": 0}


@component
def awkward_examples(examples: Output[Examples], seed: Parameter[int] = 1) -> None:
    """Splits of 60, 30, 1 and 0 rows in row groups of two; ``blank`` is null in every row."""
    rng = random.Random(seed)
    for split, rows in SPLIT_ROWS.items():
        x = [rng.gauss(0, 1) for _ in range(rows)]
        table = pa.table(
            {
                "x": pa.array(x, pa.float64()),
                "c": [rng.choice("abc") for _ in range(rows)],
                "blank": pa.array([None] * rows, pa.float64()),
                "y": ["yes" if v + rng.gauss(0, 0.5) > 0 else "no" for v in x],
            }
        )
        folder = Path(examples.uri) / f"Split-{split}"
        folder.mkdir(parents=True)
        pq.write_table(table, folder / "part-00000.parquet", row_group_size=2)
    examples.properties.update(split_names=list(SPLIT_ROWS), row_counts=SPLIT_ROWS)


def _output_files(project: Path, root: Path, beam_pipeline_args: list[str] | None) -> dict[str, bytes]:
    """StatisticsGen, Transform and the Evaluator run once into ``root``: every file they wrote, by path."""
    (project / "preprocessing.py").write_text(textwrap.dedent(PREPROCESSING))
    (project / "trainer.py").write_text(textwrap.dedent(TRAINER))
    gen = awkward_examples()
    statistics = StatisticsGen(examples=gen.outputs["examples"], slices=["c"])
    schema = SchemaGen(statistics=statistics.outputs["statistics"])
    transform = Transform(gen.outputs["examples"], schema.outputs["schema"], str(project / "preprocessing.py"))
    trainer = Trainer(
        module_file=str(project / "trainer.py"),
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
        label_key="y",
    )
    config = EvalConfig(label_key="y", slicing_specs=[[], ["c"]], bootstrap_replicates=10)
    evaluator = Evaluator(gen.outputs["examples"], trainer.outputs["model"], eval_config=config)
    steps = [gen, statistics, schema, transform, trainer, evaluator]
    run = Pipeline("awkward", steps, root=root, beam_pipeline_args=beam_pipeline_args).run()
    files = {}
    for step in (statistics, transform, evaluator):
        execution = run.executions[step.id]
        assert execution.status == "succeeded", execution.error
        for key, artifacts in execution.outputs.items():
            folder = Path(artifacts[0].uri)
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    files[f"{step.id}/{key}/{path.relative_to(folder)}"] = path.read_bytes()
    return files


def test_awkward_splits_on_beam_give_the_local_runs_bytes(tmp_path: Path) -> None:
    local = _output_files(tmp_path, tmp_path / "local", None)
    on_beam = _output_files(tmp_path, tmp_path / "beam", IN_PROCESS)

    assert "StatisticsGen/statistics/Split-empty/statistics.json" in local
    assert "Transform/transformed_examples/Split-one/part-00000.parquet" in local
    assert sorted(on_beam) == sorted(local)
    assert [path for path in local if on_beam[path] != local[path]] == []


class RefusingMerge(Combiner):
    """Lists its parts, and refuses to merge part 3 into the parts before it, as a type clash would."""

    def create(self) -> list[int]:
        return []

    def add_batch(self, acc: list[int], batch: int) -> list[int]:
        return [*acc, batch]

    def merge(self, accs: Iterable[list[int]]) -> list[int]:
        accs = list(accs)
        if accs[1:] == [[3]]:
            raise DataValidationError("column 'x' is float in part 0 and text in part 3; make them one type")
        return [part for acc in accs for part in acc]

    def extract(self, acc: list[int]) -> list[int]:
        return acc


def one_batch(part: int) -> list[int]:
    return [part]


@pytest.mark.parametrize("args", [IN_PROCESS, DIRECT], ids=["in-process", "processes"])
def test_a_merge_that_fails_on_a_worker_raises_its_own_error(args: list[str]) -> None:
    """Beam raised it as its own: a ComponentError, "RuntimeError: conveyor.exceptions..." or
    "[while running 'Merge in part order/KeyWithVoid']" after the text, its traceback lost."""
    with pytest.raises(DataValidationError) as raised:
        BeamEngine(args).fold(RefusingMerge(), [0, 1, 2, 3, 4], one_batch, 2)

    assert str(raised.value) == "column 'x' is float in part 0 and text in part 3; make them one type"
    notes = "\n".join(raised.value.__notes__)
    assert "Raised on a Beam worker, merging part 3" in notes
    assert "in merge" in notes
