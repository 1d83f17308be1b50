"""ExampleValidator: each split's statistics against the schema, a baseline (drift) and serving data (skew)."""

from __future__ import annotations

import json
from typing import Any

from conveyor.artifacts import (
    SPLIT_PREFIX,
    ExampleAnomalies,
    ExampleStatistics,
    Schema,
    check_splits,
    split_dir,
    split_names,
)
from conveyor.dsl.component import Component
from conveyor.dsl.types import Input, Output, Parameter
from conveyor.exceptions import PipelineDefinitionError

FAIL_ON = ("error", "warning", "never")
SHOWN = 20


class ExampleValidator(Component):
    """Write ``<uri>/Split-<name>/anomalies.json`` for every split, and fail on what ``fail_on`` says.

    Each split is checked against the schema in ``environment``; for drift against the same
    split of ``baseline_statistics`` (or its only split); for skew against
    ``serving_statistics`` (the same split, else its only one). ``anomalies.json`` holds
    ``{"anomalies": [...], "measurements": [...], "counts": {...}}``: ``anomalies`` the
    errors and warnings, ``measurements`` every distance measured (severity ``info``).

    Args:
        statistics: the statistics to check.
        schema: the schema to check them against.
        anomalies: where the anomalies go.
        baseline_statistics: the previous span's statistics, for drift.
        serving_statistics: statistics of serving requests, for skew.
        environment: TRAINING, SERVING or another the schema names.
        fail_on: ``"error"``, ``"warning"`` or ``"never"``: an anomaly this severe or worse
            fails the step, and the steps after it are skipped.
        exclude_splits: splits not to check; a name the statistics do not hold fails the step.

    Raises:
        DataValidationError: an anomaly reached ``fail_on``; the message lists them.
        ArtifactError: ``exclude_splits`` names a split the statistics do not hold, or leaves
            no split to check.

    Example:
        >>> validator = ExampleValidator(statistics=stats.outputs["statistics"],
        ...                              schema=schema_gen.outputs["schema"], fail_on="warning")
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.parameters["fail_on"] not in FAIL_ON:
            import difflib

            close = difflib.get_close_matches(str(self.parameters["fail_on"]), FAIL_ON, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            msg = f"{self.id}: fail_on must be one of {', '.join(FAIL_ON)}; got {self.parameters['fail_on']!r}.{hint}"
            raise PipelineDefinitionError(msg)

    @staticmethod
    def execute(
        statistics: Input[ExampleStatistics],
        schema: Input[Schema],
        anomalies: Output[ExampleAnomalies],
        baseline_statistics: Input[ExampleStatistics] | None = None,
        serving_statistics: Input[ExampleStatistics] | None = None,
        *,
        environment: Parameter[str] = "TRAINING",
        fail_on: Parameter[str] = "error",
        exclude_splits: Parameter[list] = (),
    ) -> None:
        from conveyor.data.anomalies import SEVERITIES, at_least, validate
        from conveyor.data.schema import Schema as SchemaModel
        from conveyor.exceptions import DataValidationError

        check_splits(exclude_splits, split_names(statistics.uri), what="ExampleValidator: exclude_splits")
        rules = SchemaModel.load(schema.uri)
        baselines = _splits(baseline_statistics.uri) if baseline_statistics is not None else None
        servings = _splits(serving_statistics.uri) if serving_statistics is not None else None
        checked = _splits(statistics.uri, exclude_splits)
        if not checked:
            from conveyor.exceptions import ArtifactError

            msg = (
                f"No statistics to validate at {statistics.uri} (splits: {split_names(statistics.uri)}, "
                f"excluded: {list(exclude_splits)}): a validator that checks nothing would pass anything."
            )
            raise ArtifactError(msg)
        failing: list[str] = []
        counts: dict[str, dict[str, int]] = {}
        for split, stats in checked.items():
            baseline = _matching(baselines, split, "baseline_statistics")
            serving = _matching(servings, split, "serving_statistics")
            found = validate(stats, rules, environment=environment, baseline=baseline, serving=serving)
            counts[split] = {s: sum(a.severity == s for a in found) for s in SEVERITIES}
            doc = {
                "anomalies": [a.to_dict() for a in found if a.severity != "info"],
                "measurements": [a.to_dict() for a in found if a.severity == "info"],
                "counts": counts[split],
            }
            out = split_dir(anomalies.uri, split) / ExampleAnomalies.SPLIT_FILE
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(doc, indent=1, default=str, allow_nan=False))
            print(_summary(split, found))
            failing += [
                f"{split}: {a.feature or '(dataset)'}: {a.kind}: {a.description.rstrip('.')}"
                for a in found
                if fail_on != "never" and at_least(a.severity, fail_on)
            ]
        anomalies.properties.update(split_names=sorted(counts), counts=counts, environment=environment)
        if failing:
            listed = "; ".join(failing[:SHOWN]) + (f"; and {len(failing) - SHOWN} more" if len(failing) > SHOWN else "")
            msg = (
                f"ExampleValidator found {len(failing)} anomal{'y' if len(failing) == 1 else 'ies'} at or above "
                f"{fail_on!r}: {listed}. Fix the data, or relax the schema and import it with ImportSchemaGen, "
                f"or set fail_on='never'."
            )
            raise DataValidationError(msg)


def _splits(uri: str, exclude: list[str] | tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    from conveyor.data.statistics import read_statistics

    return {
        name: read_statistics(split_dir(uri, name) / ExampleStatistics.SPLIT_FILE)
        for name in split_names(uri)
        if name not in exclude
    }


def _matching(splits: dict[str, dict[str, Any]] | None, split: str, what: str) -> dict[str, Any] | None:
    """The same split, or the only one; None when no statistics were given."""
    if splits is None:
        return None
    if split in splits:
        return splits[split]
    if len(splits) == 1:
        return next(iter(splits.values()))
    from conveyor.exceptions import ArtifactError

    msg = f"{what} has splits {sorted(splits)} and none is named {split!r}; give statistics with that split, or with one split."
    raise ArtifactError(msg)


def _summary(split: str, found: list[Any]) -> str:
    """The step log's view: counts, then one line per error or warning, and per measurement past
    auto's threshold on a feature no comparator checks (no anomaly, but drift the log should show)."""
    n = {s: sum(a.severity == s for a in found) for s in ("error", "warning", "info")}
    lines = [f"{SPLIT_PREFIX}{split}: {n['error']} errors, {n['warning']} warnings, {n['info']} measurements"]
    for a in found:
        if a.severity != "info" or a.details.get("drifted"):
            lines.append(f"  {a.severity:<7} {a.kind:<28} {a.description}")
    return "\n".join(lines)
