"""StatisticsGen: per-split (and per-slice) statistics of an Examples artifact."""

from __future__ import annotations

import os

from conveyor.artifacts import Examples, ExampleStatistics, check_splits, split_dir
from conveyor.dsl.component import Component
from conveyor.dsl.types import Input, Output, Parameter


class StatisticsGen(Component):
    """Statistics of every split: ``<uri>/Split-<name>/statistics.json``.

    Parts of a few row groups, of every split at once, run on threads, each into an accumulator
    of its own, merged in file order: memory stays at a few accumulators whatever the data's
    size, and the same examples give the same bytes whatever the threads do, or the Beam workers
    with ``beam_pipeline_args`` (the same fold, in the same order). ``slices`` names
    features (or lists of features) whose every value gets statistics of its own under
    ``"slices"``, e.g. ``"state=CA"``. ``exclude_splits`` names splits to leave out; a name the
    examples do not hold fails the step, as does leaving no split.

    Example:
        >>> stats = StatisticsGen(examples=gen.outputs["examples"], slices=[["state"]])
    """

    @staticmethod
    def execute(
        examples: Input[Examples],
        statistics: Output[ExampleStatistics],
        *,
        slices: Parameter[list] = (),
        exclude_splits: Parameter[list] = (),
    ) -> None:
        from conveyor.data.examples import split_files, split_names
        from conveyor.data.statistics import StatisticsCombiner, summarize_splits, write_statistics
        from conveyor.exceptions import ArtifactError

        held = split_names(examples.uri)
        check_splits(exclude_splits, held, what="StatisticsGen: exclude_splits")
        splits = [s for s in held if s not in exclude_splits]
        if not splits:
            msg = f"StatisticsGen: exclude_splits={list(exclude_splits)} leaves none of the splits {held}."
            raise ArtifactError(msg)
        combiner = StatisticsCombiner([[s] if isinstance(s, str) else s for s in slices])
        files = {split: split_files(examples.uri, split) for split in splits}
        accumulators = summarize_splits(files, combiner, os.cpu_count() or 2)
        for split in splits:
            stats = combiner.extract(accumulators.get(split) or combiner.create())
            write_statistics(stats, split_dir(statistics.uri, split) / ExampleStatistics.SPLIT_FILE)
            statistics.properties.setdefault("num_examples", {})[split] = stats["num_examples"]
            print(f"{split}: {stats['num_examples']} examples, {len(stats['features'])} features")
        statistics.properties["split_names"] = splits
