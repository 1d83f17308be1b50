"""Anomalies injected into a clean real dataset, each found with the right kind; the clean copy gives none."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conveyor.data.anomalies import Anomaly, validate
from conveyor.data.schema import DatasetConstraints, Domain, Feature, Presence, Schema, infer_schema
from conveyor.data.statistics import StatisticsCombiner
from conveyor.exceptions import DataValidationError
from tests.datasets import DATA


def stats_of(df: pd.DataFrame | pa.Table) -> dict:
    c = StatisticsCombiner()
    accs = [c.create(), c.create()]
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    for i, batch in enumerate(table.to_batches(5000)):
        c.add_batch(accs[i % 2], batch)
    return c.extract(c.merge(accs))


def problems(found: list[Anomaly]) -> set[tuple[str | None, str]]:
    return {(a.feature, a.kind) for a in found if a.severity != "info"}


def one(found: list[Anomaly], feature: str | None, kind: str) -> Anomaly:
    hits = [a for a in found if (a.feature, a.kind) == (feature, kind)]
    assert len(hits) == 1, (feature, kind, [(a.feature, a.kind, a.severity) for a in found])
    return hits[0]


@pytest.fixture(scope="module")
def adult() -> tuple[pd.DataFrame, pd.DataFrame, dict, dict, Schema]:
    """Train and eval halves of UCI Adult, their statistics, and the schema inferred from both."""
    df = pd.read_csv(DATA / "adult" / "adult.csv")
    mask = np.random.default_rng(5).random(len(df)) < 0.8
    train, ev = df[mask].reset_index(drop=True), df[~mask].reset_index(drop=True)
    train_stats, eval_stats = stats_of(train), stats_of(ev)
    return train, ev, train_stats, eval_stats, infer_schema([train_stats, eval_stats])


@pytest.fixture
def schema(adult: tuple) -> Schema:
    return copy.deepcopy(adult[4])


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return pd.read_csv(DATA / "penguins" / "penguins.csv")


def test_the_clean_copy_gives_no_anomaly(adult: tuple, schema: Schema) -> None:
    _, _, train_stats, eval_stats, _ = adult
    for f in schema.features:
        f.drift_comparator = {"auto": True}
        f.skew_comparator = {"auto": True}
    found = validate(eval_stats, schema, baseline=train_stats, serving=train_stats)
    assert problems(found) == set()
    assert validate(train_stats, schema) == []
    measured = {a.kind for a in found}
    assert measured == {"DRIFT_WASSERSTEIN", "DRIFT_JENSEN_SHANNON", "SKEW_WASSERSTEIN", "SKEW_JENSEN_SHANNON"}
    for a in found:
        assert a.severity == "info"
        assert a.details["value"] is not None
        assert a.details["threshold"] > 0
        json.dumps(a.to_dict(), allow_nan=False)


def test_a_new_category(adult: tuple, schema: Schema) -> None:
    ev = adult[1].copy()
    ev.loc[:4, "workclass"] = "Space-force"
    a = one(validate(stats_of(ev), schema), "workclass", "OUT_OF_DOMAIN_VALUES")
    assert a.severity == "error"
    assert a.details["values"] == [{"value": "Space-force", "count": 5}]
    assert "'Space-force' (5)" in a.description
    schema.feature("workclass").domain.min_mass = 0.99  # TFDV's min_domain_mass lets a little through
    assert problems(validate(stats_of(ev), schema)) == set()


@pytest.mark.parametrize("min_mass", [0.7, 0.8, 0.9, 0.97])
def test_min_domain_mass_is_met_at_exactly_that_share(min_mass: float) -> None:
    inside = round(100 * min_mass)
    schema = Schema([Feature("c", "string", domain=Domain(values=["a"], min_mass=min_mass))])
    assert validate(stats_of(pd.DataFrame({"c": ["a"] * inside + ["z"] * (100 - inside)})), schema) == []
    one_more = pd.DataFrame({"c": ["a"] * (inside - 1) + ["z"] * (101 - inside)})
    assert one(validate(stats_of(one_more), schema), "c", "OUT_OF_DOMAIN_VALUES").details["distinct"] == 1


@pytest.mark.parametrize(("before", "after"), [(4, 3), (7, 6), (8, 7), (3, 2), (6, 5)])
def test_l_infinity_at_exactly_its_threshold_is_no_drift_or_skew(before: int, after: int) -> None:
    """Shares of 4 and 3 in 10 differ by 0.1, and TFDV flags only a distance above the threshold."""
    schema = Schema([Feature("c", "string", drift_comparator={"l_infinity": 0.1}, skew_comparator={"l_infinity": 0.1})])
    baseline = stats_of(pd.DataFrame({"c": ["a"] * before + ["b"] * (10 - before)}))
    current = stats_of(pd.DataFrame({"c": ["a"] * after + ["b"] * (10 - after)}))
    found = validate(current, schema, baseline=baseline, serving=baseline)
    assert [(a.kind, a.severity, a.details["value"]) for a in found] == [
        ("DRIFT_L_INFINITY", "info", 0.1),
        ("SKEW_L_INFINITY", "info", 0.1),
    ]
    one_more = stats_of(pd.DataFrame({"c": ["a"] * (after - 1) + ["b"] * (11 - after)}))
    assert one(validate(one_more, schema, baseline=baseline), "c", "DRIFT_L_INFINITY").severity == "error"


def test_a_missing_column_and_a_new_one(adult: tuple, schema: Schema) -> None:
    ev = adult[1].drop(columns=["education"]).assign(extra=1)
    found = validate(stats_of(ev), schema)
    assert problems(found) == {("education", "MISSING_COLUMN"), ("extra", "NEW_COLUMN")}
    assert one(found, "education", "MISSING_COLUMN").severity == "error"
    assert one(found, "extra", "NEW_COLUMN").severity == "warning"


@pytest.mark.parametrize(
    ("presence", "missing"),
    [
        (None, False),
        (Presence(min_fraction=0.0), False),
        (Presence(min_count=0), False),
        (Presence(min_fraction=0.01), True),
        (Presence(min_count=1), True),
    ],
)
def test_a_missing_column_is_an_anomaly_only_when_its_presence_requires_it(
    adult: tuple, presence: Presence | None, missing: bool
) -> None:
    """TFDV's SCHEMA_MISSING_COLUMN: the column is absent and presence asks for min_fraction or min_count above 0."""
    schema = Schema([Feature("age", "int"), Feature("education", "string", presence=presence)])
    found = validate(stats_of(adult[1][["age"]]), schema)
    assert problems(found) == ({("education", "MISSING_COLUMN")} if missing else set())


def test_a_comparator_on_a_column_the_split_lacks_warns(adult: tuple) -> None:
    """An optional column is no MISSING_COLUMN, so its comparator says it could not compare, never a silent pass."""
    schema = Schema([Feature("age", "int"), Feature("education", "string", presence=Presence(min_fraction=0.0))])
    schema.feature("education").drift_comparator = {"l_infinity": 0.1}
    found = validate(stats_of(adult[1][["age"]]), schema, baseline=stats_of(adult[1]))
    a = one(found, "education", "COMPARATOR_TREATMENT_DATA_MISSING")
    assert a.severity == "warning"
    assert a.description == "education is not in this split, so its drift cannot be measured."


def test_a_type_change(adult: tuple, schema: Schema) -> None:
    ev = adult[1].assign(age=adult[1].age.astype(str))
    a = one(validate(stats_of(ev), schema), "age", "UNEXPECTED_TYPE")
    assert (a.details["expected"], a.details["found"]) == ("int", "string")
    ints_as_floats = adult[1].assign(hours_per_week=adult[1].hours_per_week.astype(float))
    schema.feature("hours_per_week").type = "float"
    assert problems(validate(stats_of(adult[1]), schema)) == set()  # an int where a float is expected is fine
    assert problems(validate(stats_of(ints_as_floats), schema)) == set()


def test_a_required_feature_going_missing(adult: tuple, schema: Schema) -> None:
    ev = adult[1].copy()
    ev.loc[ev.index[::3], "sex"] = None
    a = one(validate(stats_of(ev), schema), "sex", "PRESENCE_TOO_LOW")
    assert a.details["min_fraction"] == 1.0
    assert a.details["fraction"] == pytest.approx(ev.sex.notna().mean())
    ev["sex"] = None
    assert ("sex", "PRESENCE_TOO_LOW") in problems(validate(stats_of(ev), schema))


def test_a_shifted_numeric_distribution_with_auto(adult: tuple, schema: Schema) -> None:
    train, ev, train_stats, *_ = adult
    schema.feature("age").drift_comparator = {"auto": True}
    schema.feature("hours_per_week").drift_comparator = {"auto": True}
    schema.feature("hours_per_week").type = "float"  # scaled below, so through the sketch
    older = ev.assign(age=ev.age + 10, hours_per_week=ev.hours_per_week * 1.5)
    found = validate(stats_of(older), schema, baseline=train_stats)
    assert problems(found) == {("age", "DRIFT_WASSERSTEIN"), ("hours_per_week", "DRIFT_WASSERSTEIN")}
    a = one(found, "age", "DRIFT_WASSERSTEIN")
    assert a.details["auto"]
    assert a.details["threshold"] == 0.1
    assert a.details["value"] == pytest.approx(10 / train.age.std(ddof=0), rel=0.05)
    assert "above the threshold 0.1" in a.description


def test_small_samples_take_the_k_s_chi_square_and_z_tests(penguins: pd.DataFrame) -> None:
    schema = infer_schema(stats_of(penguins))
    for name in ("body_mass_g", "island", "sex"):
        schema.feature(name).drift_comparator = {"auto": True}
    moved = penguins.assign(body_mass_g=penguins.body_mass_g + 500)
    moved.loc[moved.index[:120], "island"] = "Dream"
    moved.loc[moved.index[:150], "sex"] = "male"
    found = validate(stats_of(moved), schema, baseline=stats_of(penguins))
    assert problems(found) == {
        ("body_mass_g", "DRIFT_KS"),
        ("island", "DRIFT_CHI_SQUARED"),
        ("sex", "DRIFT_Z_PROPORTION"),
    }
    assert one(found, "body_mass_g", "DRIFT_KS").details["value"] < 0.05
    assert problems(validate(stats_of(penguins), schema, baseline=stats_of(penguins))) == set()


def test_explicit_comparators(adult: tuple, schema: Schema) -> None:
    _, ev, train_stats, *_ = adult
    schema.feature("workclass").drift_comparator = {"l_infinity": 0.05, "chi_squared": 0.01}
    schema.feature("hours_per_week").drift_comparator = {"jensen_shannon": 0.05, "ks": 0.01}
    schema.feature("hours_per_week").type = "float"
    moved = ev.assign(hours_per_week=ev.hours_per_week * 1.5)
    moved.loc[moved.workclass == "Private", "workclass"] = "Self-emp-inc"
    found = validate(stats_of(moved), schema, baseline=train_stats)
    assert problems(found) == {
        ("workclass", "DRIFT_L_INFINITY"),
        ("workclass", "DRIFT_CHI_SQUARED"),
        ("hours_per_week", "DRIFT_JENSEN_SHANNON"),
        ("hours_per_week", "DRIFT_KS"),
    }
    linf = one(found, "workclass", "DRIFT_L_INFINITY").details
    assert linf["at"] in ("Private", "Self-emp-inc")
    assert linf["value"] == pytest.approx(abs(linf["reference_share"] - linf["current_share"]))


def test_train_serving_skew(adult: tuple, schema: Schema) -> None:
    train, _, train_stats, *_ = adult
    schema.feature("workclass").skew_comparator = {"l_infinity": 0.01}
    serving = train.sample(3000, random_state=1)
    serving.loc[serving.workclass == "Private", "workclass"] = np.where(
        np.arange((serving.workclass == "Private").sum()) % 2 == 0, "Private", "Self-emp-inc"
    )
    found = validate(train_stats, schema, serving=stats_of(serving))
    a = one(found, "workclass", "SKEW_L_INFINITY")
    assert a.severity == "error"
    assert a.details["at"] in ("Private", "Self-emp-inc")
    assert a.details["value"] > 0.01
    assert "serving" in a.description
    calm = validate(train_stats, schema, serving=stats_of(train.sample(8000, random_state=2)))
    assert one(calm, "workclass", "SKEW_L_INFINITY").severity == "info"


def test_l_infinity_on_a_numeric_feature_is_a_warning_not_zero(penguins: pd.DataFrame) -> None:
    schema = infer_schema(stats_of(penguins))
    schema.feature("bill_length_mm").drift_comparator = {"l_infinity": 0.1}
    found = validate(
        stats_of(penguins), schema, baseline=stats_of(penguins.assign(bill_length_mm=penguins.bill_length_mm * 2))
    )
    a = one(found, "bill_length_mm", "COMPARATOR_NOT_APPLICABLE")
    assert a.severity == "warning"
    assert "jensen_shannon" in a.description
    assert not [x for x in found if x.kind == "DRIFT_L_INFINITY"]


@pytest.mark.parametrize(
    ("filler", "kind"),
    [
        (np.nan, "COMPARATOR_TREATMENT_DATA_MISSING"),  # NaN counts as present: no PRESENCE_TOO_LOW says it
        (np.inf, "COMPARATOR_NOT_APPLICABLE"),  # a value, but none the tests can place
    ],
)
def test_a_column_gone_all_nan_or_infinite_is_not_measured_in_silence(
    penguins: pd.DataFrame, filler: float, kind: str
) -> None:
    schema = infer_schema(stats_of(penguins))
    schema.feature("body_mass_g").drift_comparator = {"ks": 0.05, "wasserstein": 0.1, "jensen_shannon": 0.1}
    schema.feature("body_mass_g").skew_comparator = {"auto": True}
    table = pa.Table.from_pandas(penguins, preserve_index=False)
    column = table.schema.get_field_index("body_mass_g")
    broken = stats_of(table.set_column(column, "body_mass_g", pa.array([filler] * len(penguins))))  # NaN, not null
    drift = [a for a in validate(broken, schema, baseline=stats_of(penguins)) if a.feature == "body_mass_g"]
    assert {a.kind for a in drift} == {kind}
    assert all(a.severity == "warning" for a in drift)
    skew = [a for a in validate(stats_of(penguins), schema, serving=broken) if a.feature == "body_mass_g"]
    assert [(a.kind, a.severity) for a in skew] == [
        ("COMPARATOR_CONTROL_DATA_MISSING" if np.isnan(filler) else "COMPARATOR_NOT_APPLICABLE", "warning")
    ]


def test_auto_false_turns_the_comparison_off_even_for_a_column_with_no_values() -> None:
    schema = Schema([Feature("x", "float", drift_comparator={"auto": False}, skew_comparator={"auto": False})])
    values = stats_of(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    nulls = stats_of(pa.table({"x": pa.array([None] * 3, pa.float64())}))
    assert validate(nulls, schema, baseline=values, serving=values) == []
    assert validate(values, schema, baseline=nulls, serving=nulls) == []
    assert validate(values, schema, baseline=values, serving=values) == []


def test_out_of_range(adult: tuple) -> None:
    schema = infer_schema([adult[2], adult[3]], infer_ranges=True)
    ev = adult[1].copy()
    ev.loc[:9, "age"] = 150
    a = one(validate(stats_of(ev), schema), "age", "OUT_OF_RANGE")
    assert a.details["domain_max"] == 90
    assert a.details["share_above"] == pytest.approx(10 / len(ev), abs=0.01)


def test_dataset_level_anomalies(adult: tuple, schema: Schema) -> None:
    _, ev, train_stats, eval_stats, _ = adult
    found = validate(stats_of(ev.head(0)), schema)
    assert problems(found) == {(None, "EMPTY_DATASET")}
    schema.dataset_constraints = DatasetConstraints(min_examples_count=10_000, num_examples_drift={"min_fraction": 0.5})
    found = validate(eval_stats, schema, baseline=train_stats)
    assert problems(found) == {(None, "LOW_NUM_EXAMPLES"), (None, "DRIFT_NUM_EXAMPLES")}
    schema.dataset_constraints = DatasetConstraints(max_examples_count=100)
    assert problems(validate(eval_stats, schema)) == {(None, "HIGH_NUM_EXAMPLES")}
    assert one(found, None, "DRIFT_NUM_EXAMPLES").details["ratio"] == pytest.approx(
        eval_stats["num_examples"] / train_stats["num_examples"]
    )


def test_rows_after_a_baseline_of_none_are_past_max_fraction() -> None:
    """TFDV's COMPARATOR_HIGH_NUM_EXAMPLES 'versus the previous span, which has 0'; it was silence."""
    schema = Schema(
        [Feature("x", "float")], dataset_constraints=DatasetConstraints(num_examples_drift={"max_fraction": 2.0})
    )
    empty = stats_of(pd.DataFrame({"x": pd.Series([], dtype=float)}))
    a = one(validate(stats_of(pd.DataFrame({"x": [1.0] * 100})), schema, baseline=empty), None, "DRIFT_NUM_EXAMPLES")
    assert a.severity == "error"
    assert (
        a.description
        == "The split has 100 examples and the baseline none: more than any fraction of it (allowed: 0 to 2.0)."
    )
    assert a.to_dict()["details"]["ratio"] == "inf"


def test_environments(adult: tuple, schema: Schema) -> None:
    _, ev, train_stats, *_ = adult
    schema.default_environments = ["TRAINING", "SERVING"]
    schema.feature("income").not_in_environments = ["SERVING"]
    schema.feature("income").skew_comparator = {"l_infinity": 0.01}
    requests = stats_of(ev.drop(columns=["income"]))
    assert problems(validate(requests, schema, environment="SERVING")) == set()
    assert problems(validate(requests, schema, environment="TRAINING")) == {("income", "MISSING_COLUMN")}
    leaked = validate(stats_of(ev), schema, environment="SERVING")
    assert problems(leaked) == {("income", "NOT_IN_ENVIRONMENT")}
    skew = validate(train_stats, schema, serving=requests)  # the label is not compared with serving data
    assert problems(skew) == set()
    assert not [a for a in skew if a.feature == "income"]
    with pytest.raises(DataValidationError, match="Did you mean 'SERVING'"):
        validate(requests, schema, environment="SERVNG")


def test_a_comparison_without_control_data_is_a_warning(adult: tuple, schema: Schema) -> None:
    _, ev, *_ = adult
    schema.feature("workclass").drift_comparator = {"l_infinity": 0.1}
    baseline = stats_of(ev.drop(columns=["workclass"]))
    a = one(validate(stats_of(ev), schema, baseline=baseline), "workclass", "COMPARATOR_CONTROL_DATA_MISSING")
    assert a.severity == "warning"
    assert a.description == "workclass is not in the baseline statistics, so its drift cannot be measured."
    emptied = stats_of(ev.assign(workclass=None))
    a = one(validate(emptied, schema, baseline=stats_of(ev)), "workclass", "COMPARATOR_TREATMENT_DATA_MISSING")
    assert a.description.startswith("workclass has no values (only nulls or NaN) in this split, so its drift")


def test_descriptions_are_one_sentence_with_the_numbers(adult: tuple, schema: Schema) -> None:
    _, ev, train_stats, *_ = adult
    schema.feature("workclass").domain = Domain(values=["Private"])
    schema.feature("age").drift_comparator = {"ks": 0.05, "wasserstein": 0.1}
    found = validate(stats_of(ev.assign(age=(ev.age * 1.3).round().astype(int))), schema, baseline=train_stats)
    for a in found:
        assert a.description.endswith(".")
        assert a.description.count(". ") == 0, a.description
        assert any(ch.isdigit() for ch in a.description), a.description
    ks = one(found, "age", "DRIFT_KS")
    assert "K-S p-value" in ks.description
    assert "D = " in ks.description
