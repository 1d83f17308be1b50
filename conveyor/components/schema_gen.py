"""SchemaGen: a first schema inferred from statistics, written as YAML to be read and edited."""

from __future__ import annotations

from pathlib import Path

from conveyor.artifacts import ExampleStatistics, Schema, check_splits, split_dir, split_names
from conveyor.dsl.component import Component
from conveyor.dsl.types import Input, Output, Parameter


class SchemaGen(Component):
    """Infer ``<uri>/schema.yaml`` from the statistics of every split, taken together.

    The union of the splits (as TFX's SchemaGen updates its schema with each split) keeps a
    category that only the eval split happens to hold from being an anomaly of that split.
    Types, presence and the categorical domains of strings are inferred; numeric ranges only
    with ``infer_ranges``; comparators and environments are for the user to add, then to
    bring back with ImportSchemaGen.

    Args:
        statistics: StatisticsGen's output.
        schema: where ``schema.yaml`` goes.
        infer_ranges: add ``domain: {min, max}`` to numeric features, from what was seen.
        max_categorical: a string with more distinct values gets no ``domain.values``.
        exclude_splits: splits not to infer from; a name the statistics do not hold fails the step.

    Example:
        >>> schema_gen = SchemaGen(statistics=stats.outputs["statistics"], infer_ranges=True)
    """

    @staticmethod
    def execute(
        statistics: Input[ExampleStatistics],
        schema: Output[Schema],
        *,
        infer_ranges: Parameter[bool] = False,
        max_categorical: Parameter[int] = 100,
        exclude_splits: Parameter[list] = (),
    ) -> None:
        from conveyor.data.schema import infer_schema
        from conveyor.data.statistics import read_statistics
        from conveyor.exceptions import ArtifactError

        splits = split_names(statistics.uri)
        check_splits(exclude_splits, splits, what="SchemaGen: exclude_splits")
        used = [s for s in splits if s not in exclude_splits]
        if not used:
            msg = f"No statistics to infer a schema from at {statistics.uri} (splits: {splits}, excluded: {list(exclude_splits)})."
            raise ArtifactError(msg)
        inferred = infer_schema(
            [read_statistics(split_dir(statistics.uri, s) / ExampleStatistics.SPLIT_FILE) for s in used],
            infer_ranges=infer_ranges,
            max_categorical=max_categorical,
        )
        inferred.save(Path(schema.uri) / Schema.FILE)
        categorical = sum(1 for f in inferred.features if f.domain is not None and f.domain.values is not None)
        schema.properties.update(num_features=len(inferred.features), inferred_from=used)
        print(f"schema: {len(inferred.features)} features ({categorical} categorical), inferred from {', '.join(used)}")
