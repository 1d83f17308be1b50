"""The Resolver in real pipeline runs on each store backend: the latest blessed model as the
baseline (none the first time), the latest artifact of a type and step, the spans ExampleGen
recorded; found artifacts are recorded as its outputs, never copied, never taken from cache.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conveyor import Input, Output, Parameter, Pipeline, PipelineDefinitionError, component
from conveyor.artifacts import Artifact, Examples, ExampleStatistics, Model, ModelBlessing
from conveyor.components import ExampleGen, Resolver, StatisticsGen
from conveyor.metadata import MetadataStore
from conveyor.orchestration.local import LocalRunner, new_run_id
from conveyor.orchestration.step import run_step
from tests.orchestration.test_step import OnlyTheProtocol


@component
def train(model: Output[Model], *, quality: Parameter[float]) -> None:
    (Path(model.uri) / "quality.json").write_text(json.dumps(quality))
    model.properties["quality"] = quality


@component
def judge(
    model: Input[Model],
    blessing: Output[ModelBlessing],
    baseline_model: Input[Model] | None = None,
    *,
    min_quality: Parameter[float] = 0.5,
) -> None:
    """Blesses a model above ``min_quality`` that beats the baseline, when there is one."""
    quality = json.loads((Path(model.uri) / "quality.json").read_text())
    baseline = json.loads((Path(baseline_model.uri) / "quality.json").read_text()) if baseline_model else None
    blessing.properties.update(
        blessed=quality >= min_quality and (baseline is None or quality > baseline),
        baseline=baseline_model.id if baseline_model else None,
    )


def blessing_pipeline(root: Path, db_url: str, quality: float) -> Pipeline:
    trainer = train(quality=quality)
    latest = Resolver(strategy="latest_blessed_model")
    judged = judge(model=trainer.outputs["model"], baseline_model=latest.outputs["model"])
    return Pipeline("blessing", [judged, latest, trainer], root=root, metadata=db_url)


def test_latest_blessed_model_is_the_baseline_and_the_first_model_has_none(db_url: str, tmp_path: Path) -> None:
    models: list[Artifact] = []
    baselines: list[int | None] = []
    for quality, blessed in ((0.8, True), (0.6, False), (0.9, True), (0.85, False)):
        run = blessing_pipeline(tmp_path, db_url, quality).run()
        assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
        models.append(run.executions["train"].outputs["model"][0])
        blessing = run.executions["judge"].outputs["blessing"][0]
        assert blessing.properties["blessed"] is blessed
        baselines.append(blessing.properties["baseline"])
    first, _, better, _ = models
    # The first model has no baseline; the worse one is compared with the first and the
    # next with the first again (the worse was not blessed); the last with the better.
    assert baselines == [None, first.id, first.id, better.id]
    with MetadataStore(db_url) as store:
        assert store.latest_blessed_model("blessing") == better
        resolutions = store.executions(pipeline="blessing", component="Resolver")
    assert [x.status for x in resolutions] == ["succeeded"] * 4  # never from cache
    assert resolutions[0].outputs == {}
    found = resolutions[-1].outputs["model"][0]
    assert (found.id, found.uri) == (better.id, better.uri)  # the model itself, no copy


def test_with_its_candidate_the_baseline_is_the_model_blessed_before_it_so_a_rerun_is_cached(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'metadata.sqlite'}"

    def run(quality: float) -> tuple[Artifact, int | None, dict[str, str]]:
        trainer = train(quality=quality)
        latest = Resolver(strategy="latest_blessed_model", candidate=trainer.outputs["model"])
        judged = judge(model=trainer.outputs["model"], baseline_model=latest.outputs["model"])
        result = Pipeline("candidate", [trainer, latest, judged], root=tmp_path, metadata=db_url).run()
        assert result.status == "succeeded", {k: e.error for k, e in result.executions.items()}
        blessing = result.executions["judge"].outputs["blessing"][0]
        statuses = {k: x.status for k, x in result.executions.items()}
        return result.executions["train"].outputs["model"][0], blessing.properties["baseline"], statuses

    first, first_baseline, _ = run(0.8)
    again, again_baseline, statuses = run(0.8)  # nothing new: the blessed model is not its own baseline
    assert (again, first_baseline, again_baseline) == (first, None, None)
    assert statuses == {"train": "cached", "Resolver": "succeeded", "judge": "cached"}
    _, better_baseline, _ = run(0.9)
    assert better_baseline == first.id
    with pytest.raises(PipelineDefinitionError, match="candidate goes with strategy='latest_blessed_model'"):
        Resolver(strategy="span_range", candidate=train(quality=0.5).outputs["model"])


def test_a_model_another_pipeline_made_is_judged_against_this_pipelines_blessed_model(
    db_url: str, tmp_path: Path
) -> None:
    """Pipeline "b" blesses a good model, then trains a worse one that pipeline "a" made earlier
    (reused from cache, so with a smaller id): its baseline is b's good model, not none."""

    def run(pipeline: str, quality: float) -> tuple[Artifact, Artifact]:
        trainer = train(quality=quality)
        latest = Resolver(strategy="latest_blessed_model", candidate=trainer.outputs["model"])
        judged = judge(model=trainer.outputs["model"], baseline_model=latest.outputs["model"])
        result = Pipeline(pipeline, [trainer, latest, judged], root=tmp_path, metadata=db_url).run()
        assert result.status == "succeeded", {k: e.error for k, e in result.executions.items()}
        return result.executions["train"].outputs["model"][0], result.executions["judge"].outputs["blessing"][0]

    weak, _ = run("a", 0.6)
    good, good_blessing = run("b", 0.9)
    reused, blessing = run("b", 0.6)
    assert reused == weak and weak.id < good.id  # made by "a", new to "b"
    assert good_blessing.properties == {"blessed": True, "baseline": None}
    assert blessing.properties == {"blessed": False, "baseline": good.id}
    with MetadataStore(db_url) as store:
        assert store.latest_blessed_model("b") == good
        assert store.latest_blessed_model("b", before=good.id) is None
        assert store.latest_blessed_model("a") == weak  # never b's model


def test_a_model_whose_folder_was_removed_by_hand_is_never_found(tmp_path: Path) -> None:
    """The store still calls it LIVE (gc did not remove it); the blessed one before it is the baseline."""
    db_url = f"sqlite:///{tmp_path / 'metadata.sqlite'}"
    runs = [blessing_pipeline(tmp_path, db_url, quality).run() for quality in (0.7, 0.8)]
    first, second = (run.executions["train"].outputs["model"][0] for run in runs)
    shutil.rmtree(second.uri)
    run = blessing_pipeline(tmp_path, db_url, 0.9).run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items()}
    assert run.executions["Resolver"].outputs["model"] == [first]
    assert run.executions["judge"].outputs["blessing"][0].properties["baseline"] == first.id
    latest = Resolver(strategy="latest_artifact", artifact_type=Model).with_id("latest")
    found = Pipeline("blessing", [latest], root=tmp_path, metadata=db_url).run().executions["latest"]
    assert found.outputs["model"][0].id == run.executions["train"].outputs["model"][0].id
    shutil.rmtree(found.outputs["model"][0].uri)
    found = Pipeline("blessing", [latest], root=tmp_path, metadata=db_url).run().executions["latest"]
    assert found.outputs["model"] == [first]


def test_a_step_after_a_resolver_that_found_nothing_runs_alone_with_no_baseline(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'metadata.sqlite'}"
    pipeline = blessing_pipeline(tmp_path, db_url, 0.7)
    assert pipeline.run().status == "succeeded"
    alone = LocalRunner(enable_cache=False).run(pipeline, only="judge")
    assert alone.status == "succeeded", {k: e.error for k, e in alone.executions.items()}
    assert list(alone.executions) == ["judge"]
    assert alone.executions["judge"].outputs["blessing"][0].properties["baseline"] is None


def test_a_resolver_runs_alone_against_the_step_protocols(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'metadata.sqlite'}"
    assert blessing_pipeline(tmp_path, db_url, 0.7).run().status == "succeeded"
    with MetadataStore(db_url) as store:
        run_id = new_run_id()
        store.begin_run("blessing", run_id)
        outcome = run_step(
            Resolver(), {}, OnlyTheProtocol(store), run_id=run_id, root=tmp_path, pipeline_name="blessing"
        )
        store.end_run(run_id, outcome.status)
        assert outcome.status == "succeeded"
        assert outcome.outputs["model"] == [store.latest_blessed_model("blessing")]
        assert store.run(run_id).executions["Resolver"].outputs["model"] == outcome.outputs["model"]


@pytest.mark.parametrize("resolvers_last", [True, False], ids=["after-the-steps", "before-the-steps"])
def test_a_resolver_finds_only_what_earlier_runs_made_whichever_step_of_its_own_run_ends_first(
    db_url: str, tmp_path: Path, resolvers_last: bool
) -> None:
    def run(quality: float) -> tuple[Artifact, dict[str, list[Artifact]]]:
        trainer = train(quality=quality)
        judged = judge(model=trainer.outputs["model"])
        newest = Resolver(strategy="latest_artifact", artifact_type=Model).with_id("newest")
        blessed = Resolver(strategy="latest_blessed_model").with_id("blessed")
        for resolver in (newest, blessed):
            resolver.after(judged) if resolvers_last else trainer.after(resolver)
        result = Pipeline("order", [trainer, judged, newest, blessed], root=tmp_path, metadata=db_url).run()
        assert result.status == "succeeded", {k: e.error for k, e in result.executions.items()}
        found = {k: result.executions[k].outputs.get("model", []) for k in ("newest", "blessed")}
        return result.executions["train"].outputs["model"][0], found

    first, found = run(0.8)
    assert found == {"newest": [], "blessed": []}  # this run's blessed model is no earlier run's
    _, found = run(0.9)
    assert found == {"newest": [first], "blessed": [first]}


@component
def tune(params: Output[Artifact], *, value: Parameter[int]) -> None:
    params.properties["value"] = value


def test_latest_artifact_of_a_type_and_of_one_step(db_url: str, tmp_path: Path) -> None:
    run_ids: list[str] = []

    def run(value: int) -> dict[str, Artifact]:
        made = [train(quality=value / 10), train(quality=value / 10 + 0.01).with_id("train_other")]
        latest_any = Resolver(strategy="latest_artifact", artifact_type=Model).with_id("any")
        latest_train = Resolver(strategy="latest_artifact", artifact_type="Model", producer="train").with_id("mine")
        made[0].after(latest_any, latest_train)  # the Resolvers find what runs before this one made
        made[1].after(made[0])  # train_other's model is the newest
        result = Pipeline("latest", [*made, latest_any, latest_train], root=tmp_path, metadata=db_url).run()
        assert result.status == "succeeded", {k: e.error for k, e in result.executions.items()}
        run_ids.append(result.id)
        return {k: x.outputs["model"][0] for k, x in result.executions.items() if x.outputs.get("model")}

    nothing_yet = Pipeline(
        "latest", [Resolver(strategy="latest_artifact", artifact_type=Model)], root=tmp_path, metadata=db_url
    ).run()
    assert nothing_yet.executions["Resolver"].outputs == {}
    first = run(1)
    second = run(2)
    # The Resolvers find the models of the run before: the newest overall, and the newest `train` made.
    assert second["any"] == first["train_other"]
    assert second["mine"] == first["train"]
    assert run(3)["mine"] == second["train"]
    with MetadataStore(db_url) as store:  # asked again once the run is over (MariaDB once found nothing here)
        assert store.latest_artifacts("Model", "latest", producer="train", outside_run=run_ids[-1]) == [second["train"]]


def test_the_latest_artifact_is_the_newest_in_this_pipeline_even_if_another_pipeline_made_it_first(
    db_url: str, tmp_path: Path
) -> None:
    def run(pipeline: str, quality: float) -> tuple[Artifact, list[Artifact]]:
        trainer = train(quality=quality)
        previous = Resolver(strategy="latest_artifact", artifact_type=Model, candidate=trainer.outputs["model"])
        result = Pipeline(pipeline, [trainer, previous], root=tmp_path, metadata=db_url).run()
        assert result.status == "succeeded", {k: e.error for k, e in result.executions.items()}
        return result.executions["train"].outputs["model"][0], result.executions["Resolver"].outputs.get("model", [])

    old, _ = run("a", 0.1)
    newer, _ = run("b", 0.2)
    reused, previous = run("b", 0.1)  # a's model, from cache: new to "b"
    assert reused == old and old.id < newer.id
    assert previous == [newer]
    with MetadataStore(db_url) as store:
        assert store.latest_artifacts("Model", "b") == [old]
        assert store.latest_artifacts("Model", "b", before=old.id) == [newer]
        assert store.latest_artifacts("Model", "a") == [old]


def write_span(base: Path, span: int, version: int, rows: int) -> None:
    folder = base / f"span-{span}" / f"v{version}"
    folder.mkdir(parents=True)
    lines = ["x,y"] + [f"{i},{span * 100 + version}" for i in range(rows)]
    (folder / "data.csv").write_text("\n".join(lines) + "\n")


def test_span_range_takes_the_newest_version_of_each_span_in_range(db_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    gens = {}
    for span, version in ((1, 0), (2, 0), (2, 1), (3, 0), (4, 0)):  # span 2 is delivered again, as version 1
        write_span(data, span, version, rows=20)
        gen = ExampleGen(input_base=str(data), pattern="span-{SPAN}/v{VERSION}/*.csv", span=span)
        run = Pipeline("spans", [gen], root=tmp_path / "root", metadata=db_url).run()
        assert run.status == "succeeded", run.executions["ExampleGen"].error
        gens[span, version] = run.executions["ExampleGen"].outputs["examples"][0]
        assert gens[span, version].properties["version"] == version

    def resolve(**kwargs: object) -> list[Artifact]:
        node = Resolver(strategy="span_range", **kwargs)  # type: ignore[arg-type]
        run = Pipeline("spans", [node], root=tmp_path / "root", metadata=db_url).run()
        assert run.status == "succeeded", run.executions["Resolver"].error
        return run.executions["Resolver"].outputs.get("examples", [])

    assert resolve(start_span=2, end_span=3) == [gens[2, 1], gens[3, 0]]
    assert resolve(start_span=2) == [gens[2, 1], gens[3, 0], gens[4, 0]]
    assert resolve(end_span=2, latest_spans=1) == [gens[2, 1]]
    assert resolve(start_span=7) == []


def test_a_wrong_strategy_or_type_fails_when_the_pipeline_is_built() -> None:
    with pytest.raises(PipelineDefinitionError, match="Did you mean 'latest_blessed_model'"):
        Resolver(strategy="latest_blesed_model")
    with pytest.raises(PipelineDefinitionError, match="needs artifact_type"):
        Resolver(strategy="latest_artifact")
    spans = Resolver(strategy="span_range")
    with pytest.raises(PipelineDefinitionError, match="type mismatch"):
        Pipeline("bad", [spans, judge(model=spans.outputs["examples"])])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"strategy": "latest_blessed_model", "producer": "Trainer"}, "does not use producer; it takes only candidate"),
        ({"strategy": "latest_blessed_model", "artifact_type": Model}, "does not use artifact_type"),
        ({"strategy": "latest_artifact", "artifact_type": Model, "latest_spans": 2}, "does not use latest_spans"),
        ({"strategy": "span_range", "artifact_type": Model}, "does not use artifact_type"),
        ({"strategy": "span_range", "start_span": 5, "end_span": 2}, "start_span 5 is after end_span 2"),
        ({"strategy": "span_range", "latest_spans": 0}, "latest_spans must be 1 or more"),
    ],
    ids=["producer ignored", "type ignored", "spans ignored", "type for spans", "empty range", "no spans"],
)
def test_an_argument_the_strategy_would_ignore_or_a_range_that_finds_nothing_fails_when_built(
    arguments: dict[str, object], message: str
) -> None:
    """Run, each would find something else than asked (any step's model), or nothing, with no word."""
    with pytest.raises(PipelineDefinitionError, match=message):
        Resolver(**arguments)  # type: ignore[arg-type]


@component
def count_span_rows(spans: Input[list[Examples]], counts: Output[Artifact]) -> None:
    """A step over every span the Resolver picked: ``Input[list[...]]`` gets them all, in span order."""
    import pyarrow.parquet as pq

    found = [
        (a.properties["span"], sum(pq.ParquetFile(f).metadata.num_rows for f in Path(a.uri).rglob("*.parquet")))
        for a in spans
    ]
    (Path(counts.uri) / "counts.json").write_text(json.dumps(found))


def test_a_step_taking_a_list_gets_every_span_the_resolver_picked(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for span, rows in ((1, 10), (2, 20), (3, 30)):
        write_span(data, span, 0, rows=rows)
        gen = ExampleGen(input_base=str(data), pattern="span-{SPAN}/v{VERSION}/*.csv", span=span)
        assert Pipeline("spans", [gen], root=tmp_path / "root").run().status == "succeeded"
    spans = Resolver(strategy="span_range", start_span=2)
    count = count_span_rows(spans=spans.outputs["examples"])
    run = Pipeline("spans", [spans, count], root=tmp_path / "root").run()
    assert run.status == "succeeded", run.executions["count_span_rows"].error
    counts = json.loads((Path(run.executions["count_span_rows"].outputs["counts"][0].uri) / "counts.json").read_text())
    assert counts == [[2, 20], [3, 30]]


def test_with_a_candidate_latest_artifact_is_the_one_made_before_it_the_previous_spans_statistics(
    db_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"

    def run_newest_span() -> tuple[Artifact, list[Artifact]]:
        gen = ExampleGen(input_base=str(data), pattern="span-{SPAN}/v{VERSION}/*.csv")
        stats = StatisticsGen(examples=gen.outputs["examples"])
        previous = Resolver(
            strategy="latest_artifact", artifact_type=ExampleStatistics, producer="StatisticsGen",
            candidate=stats.outputs["statistics"],
        )  # fmt: skip
        run = Pipeline("drift", [gen, stats, previous], root=tmp_path / "root", metadata=db_url).run()
        assert run.status == "succeeded", run.executions
        return run.executions["StatisticsGen"].outputs["statistics"][0], run.executions["Resolver"].outputs.get(
            "example_statistics", []
        )

    write_span(data, 1, 0, rows=10)
    first, found = run_newest_span()
    assert found == []  # the first span has nothing before it
    write_span(data, 2, 0, rows=20)
    second, found = run_newest_span()
    assert found == [first]
    again, found = run_newest_span()  # nothing new: StatisticsGen comes from cache, the answer stays
    assert again == second
    assert found == [first]
    with pytest.raises(PipelineDefinitionError, match="candidate goes with"):
        Resolver(strategy="span_range", candidate=second)  # type: ignore[arg-type]


def test_a_span_range_follows_its_producer_in_the_same_pipeline_so_this_runs_span_is_among_them(
    tmp_path: Path,
) -> None:
    """With no artifact between them it could run first, and miss the span its own run was reading."""
    data = tmp_path / "data"
    for span in (1, 2):
        write_span(data, span, 0, rows=10 * span)
        gen = ExampleGen(input_base=str(data), pattern="span-{SPAN}/v{VERSION}/*.csv", span=span)
        assert Pipeline("spans", [gen], root=tmp_path / "root").run().status == "succeeded"
    write_span(data, 3, 0, rows=30)
    spans = Resolver(strategy="span_range", latest_spans=2)  # listed first, and no .after(gen)
    count = count_span_rows(spans=spans.outputs["examples"])
    gen = ExampleGen(input_base=str(data), pattern="span-{SPAN}/v{VERSION}/*.csv")
    pipeline = Pipeline("spans", [spans, count, gen], root=tmp_path / "root")
    assert [n.id for n in pipeline.order] == ["ExampleGen", "Resolver", "count_span_rows"]
    run = pipeline.run()
    assert run.status == "succeeded", run.executions["count_span_rows"].error
    counts = json.loads((Path(run.executions["count_span_rows"].outputs["counts"][0].uri) / "counts.json").read_text())
    assert counts == [[2, 20], [3, 30]]
