"""StatisticsGen: per-split (and per-slice) statistics of an Examples artifact."""

from __future__ import annotations

import os
from pathlib import Path

from conveyor.artifacts import Examples, ExampleStatistics
from conveyor.dsl.component import Component
from conveyor.dsl.types import Input, Output, Parameter


class StatisticsGen(Component):
    """Statistics of every split: ``<uri>/Split-<name>/statistics.json``.

    Row groups are read and summarised in parallel, each thread with its own accumulator,
    then merged: memory stays at one row group per thread whatever the data's size.

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
        from conveyor.data.examples import fold_row_groups, split_files, split_names
        from conveyor.data.statistics import StatisticsCombiner, write_statistics

        combiner = StatisticsCombiner([[s] if isinstance(s, str) else s for s in slices])
        done = []
        for split in split_names(examples.uri):
            if split in exclude_splits:
                continue
            acc = fold_row_groups(
                split_files(examples.uri, split), combiner.create, combiner.add_batch, combiner.merge, os.cpu_count() or 2
            )
            stats = combiner.extract(acc)
            write_statistics(stats, Path(statistics.uri) / f"Split-{split}" / "statistics.json")
            statistics.properties.setdefault("num_examples", {})[split] = stats["num_examples"]
            print(f"{split}: {stats['num_examples']} examples, {len(stats['features'])} features")
            done.append(split)
        statistics.properties["split_names"] = done
