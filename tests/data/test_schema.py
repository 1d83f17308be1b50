"""The schema: inference from real statistics, the YAML a person edits, and bad files named by line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conveyor.data.anomalies import validate
from conveyor.data.schema import DatasetConstraints, Domain, Feature, Presence, Schema, infer_schema
from conveyor.data.statistics import StatisticsCombiner
from conveyor.exceptions import DataValidationError
from tests.datasets import DATA

CONTRACT_EXAMPLE = """\
features:
  - {name: product, type: string, presence: {min_fraction: 1.0}, domain: {values: [Mortgage, Debt collection]}}
  - {name: state, type: string, skew_comparator: {l_infinity: 0.01},
     drift_comparator: {l_infinity: 0.05}}
  - {name: amount, type: float, domain: {min: 0.0, max: 1.0e6},
     drift_comparator: {jensen_shannon: 0.1}}
  - {name: consumer_disputed, type: int, not_in_environments: [SERVING]}
default_environments: [TRAINING, SERVING]
"""


def stats_of(df: pd.DataFrame) -> dict:
    c = StatisticsCombiner()
    acc = c.create()
    for batch in pa.Table.from_pandas(df, preserve_index=False).to_batches(4000):
        c.add_batch(acc, batch)
    return c.extract(acc)


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return pd.read_csv(DATA / "adult" / "adult.csv")


@pytest.fixture(scope="module")
def complaints() -> pd.DataFrame:
    return pd.read_csv(DATA / "consumer_complaints" / "complaints.csv", low_memory=False)


def test_the_contract_example_loads() -> None:
    schema = Schema.from_yaml(CONTRACT_EXAMPLE)
    assert [f.name for f in schema.features] == ["product", "state", "amount", "consumer_disputed"]
    assert schema.feature("product") == Feature(
        "product", "string", presence=Presence(min_fraction=1.0), domain=Domain(values=["Mortgage", "Debt collection"])
    )
    assert schema.feature("state").skew_comparator == {"l_infinity": 0.01}
    assert schema.feature("amount").domain == Domain(min=0.0, max=1e6)
    assert schema.feature("consumer_disputed").not_in_environments == ["SERVING"]
    assert schema.default_environments == ["TRAINING", "SERVING"]
    assert Schema.from_yaml(schema.to_yaml()) == schema


def test_inferred_types_presence_and_domains(adult: pd.DataFrame, complaints: pd.DataFrame) -> None:
    schema = infer_schema(stats_of(adult))
    age, workclass, sex = schema.feature("age"), schema.feature("workclass"), schema.feature("sex")
    assert (age.type, age.presence, age.domain) == ("int", Presence(min_fraction=1.0), None)
    observed = adult.workclass.notna().mean()
    assert workclass.presence == Presence(min_fraction=np.floor(100 * 0.9 * observed) / 100)
    assert workclass.domain.values == sorted(adult.workclass.dropna().unique())
    assert sex.domain.values == ["Female", "Male"]
    c = infer_schema(stats_of(complaints))
    assert c.feature("product").domain.values == sorted(complaints["product"].dropna().unique())
    assert c.feature("consumer_complaint_narrative").domain is None  # free text
    assert c.feature("company").domain is None  # more than 100 values
    assert c.feature("zip_code").domain is None
    assert c.feature("complaint_id").type == "int"


def test_ranges_only_when_asked(adult: pd.DataFrame) -> None:
    stats = stats_of(adult)
    assert infer_schema(stats).feature("age").domain is None
    ranged = infer_schema(stats, infer_ranges=True)
    assert ranged.feature("age").domain == Domain(min=int(adult.age.min()), max=int(adult.age.max()))
    assert ranged.feature("workclass").domain.values is not None


def test_inference_over_splits_is_their_union() -> None:
    train = pd.DataFrame({"color": ["red", "blue"] * 50, "x": list(range(100)), "note": ["a"] * 100})
    evaluation = pd.DataFrame({"color": ["red", "green"] * 5, "x": [0.5] * 10, "note": [None, "a"] * 5})
    schema = infer_schema([stats_of(train), stats_of(evaluation)])
    assert schema.feature("color").domain.values == ["blue", "green", "red"]
    assert schema.feature("x").type == "float"
    assert schema.feature("note").presence == Presence(min_fraction=0.45)


def test_an_empty_split_leaves_presence_as_the_other_splits_show_it() -> None:
    """A small file can leave the eval split empty; that says nothing about which columns are required."""
    train = pd.DataFrame({"color": ["red", "blue"] * 50, "x": [1.5] * 100, "note": [None, "a"] * 50})
    schema = infer_schema([stats_of(train), stats_of(train.head(0))])
    assert schema == infer_schema(stats_of(train))
    assert schema.feature("color").presence == Presence(min_fraction=1.0)
    assert schema.feature("note").presence == Presence(min_fraction=0.45)
    lacking = infer_schema([stats_of(train), stats_of(train[["x"]])])  # a split with rows and no column
    assert lacking.feature("color").presence == Presence(min_fraction=0.0)


def test_inferred_ranges_accept_the_data_they_were_inferred_from() -> None:
    finite = np.random.default_rng(4).normal(size=300)
    columns = {
        "both": np.concatenate([finite, [np.inf, -np.inf]]),
        "high": np.concatenate([finite, [np.inf, np.inf]]),
        "finite": np.concatenate([finite, [0.0, 1.0]]),
    }
    stats = stats_of(pd.DataFrame(columns))
    schema = infer_schema(stats, infer_ranges=True)
    assert validate(stats, schema) == []
    assert schema.feature("both").domain == Domain(min=-np.inf, max=np.inf)
    assert schema.feature("high").domain == Domain(min=finite.min(), max=np.inf)
    assert schema.feature("finite").domain == Domain(min=finite.min(), max=finite.max())
    assert Schema.from_yaml(schema.to_yaml()) == schema


def test_splits_of_different_types_give_one_type_and_a_domain_of_that_type() -> None:
    """A zip code read as int in one split and as string in others: the type with the most values wins."""
    numbers = stats_of(pd.DataFrame({"zip": [2134, 10001] * 10}))
    codes = stats_of(pd.DataFrame({"zip": ["02134", "10001", "SW1A"] * 10}))
    for splits in ([codes, codes, numbers], [numbers, codes], [codes, numbers]):
        schema = infer_schema(splits, infer_ranges=True)
        assert schema.feature("zip") == Feature(
            "zip", "string", Presence(min_fraction=1.0), Domain(values=["02134", "10001", "SW1A"])
        )
        assert [[a.kind for a in validate(s, schema)] for s in (codes, numbers)] == [[], ["UNEXPECTED_TYPE"]]


def test_ids_of_a_small_sample_and_wide_columns_are_not_categorical() -> None:
    df = pd.DataFrame({"id": [f"id{i}" for i in range(40)], "kind": ["a", "b", "c", "d"] * 10})
    schema = infer_schema(stats_of(df), max_categorical=3)
    assert schema.feature("id").domain is None
    assert schema.feature("kind").domain is None
    assert infer_schema(stats_of(df)).feature("kind").domain.values == ["a", "b", "c", "d"]


def test_yaml_round_trip_reads_like_the_contract(adult: pd.DataFrame, complaints: pd.DataFrame, tmp_path: Path) -> None:
    for df in (adult, complaints):
        schema = infer_schema(stats_of(df), infer_ranges=True)
        schema.features[0].drift_comparator = {"auto": True}
        schema.features[1].skew_comparator = {"l_infinity": 0.01, "jensen_shannon": 0.05}
        schema.features[-1].not_in_environments = ["SERVING"]
        schema.default_environments = ["TRAINING", "SERVING"]
        schema.dataset_constraints = DatasetConstraints(
            min_examples_count=100, num_examples_drift={"min_fraction": 0.5}
        )
        schema.save(tmp_path / "schema.yaml")
        assert Schema.load(tmp_path / "schema.yaml") == schema
        assert Schema.load(tmp_path) == schema  # an artifact folder works too
    text = infer_schema(stats_of(adult)).to_yaml()
    assert text.startswith("features:\n  - {name: age, type: int, presence: {min_fraction: 1.0}}\n")
    assert "  - {name: sex, type: string, presence: {min_fraction: 1.0}, domain: {values: [Female, Male]}}\n" in text
    assert "        - Self-emp-not-inc\n" in text  # a long domain is one value per line
    assert max(len(line) for line in text.splitlines()) <= 100


def test_values_yaml_would_misread_are_quoted() -> None:
    schema = Schema([Feature("answer", "string", domain=Domain(values=["Yes", "No", "02134", "null", "1.5", "on"]))])
    assert Schema.from_yaml(schema.to_yaml()) == schema


def test_every_character_survives_the_round_trip() -> None:
    """U+0085 (NEL, cp1252's ellipsis read as Latin-1) came back a space: clean data then left its own domain."""
    chars = [chr(c) for c in range(0x3000) if not 0xD800 <= c < 0xE000] + ["\ufeff", "\U0001f600"]
    values = [f"a{c}b" for c in chars] + chars
    schema = Schema([Feature("text", "string", domain=Domain(values=values)), Feature("caf\x85é", "int")])
    assert Schema.from_yaml(schema.to_yaml()) == schema


BAD_FILES = [
    ("features:\n  - {name: a, type: int\n", 3, "not valid YAML"),
    ("features:\n\t- {name: a, type: int}\n", 2, "(a tab: YAML indents with spaces)"),
    (
        "features:\n  - {name: a, type: int}\n  - {name: b, type: str}\n",
        3,
        "unknown type 'str'. Did you mean 'string'?",
    ),
    (
        "features:\n  - name: a\n    type: int\n    presense: {min_fraction: 1.0}\n",
        4,
        "unknown key 'presense'. Did you mean 'presence'?",
    ),
    ("feature:\n  - {name: a, type: int}\n", 1, "unknown key 'feature'. Did you mean 'features'?"),
    (
        "features:\n  - {name: a, type: int, presence: {min_fraction: high}}\n",
        2,
        "min_fraction must be a number, got 'high'",
    ),
    ("features:\n  - {name: a, type: int,\n     presence: {min_fraction: 1.5}}\n", 3, "between 0 and 1, got 1.5"),
    ("features:\n  - {name: a, type: int}\n  - {name: a, type: float}\n", 3, "feature 'a' is given twice"),
    ("features:\n  - {name: a, type: int, type: float}\n", 2, "key 'type' is given twice"),
    (
        "features:\n  - {name: t, type: string,\n     domain: {values: [Yes, No]}}\n",
        3,
        "quote values YAML reads as something else",
    ),
    (
        "features:\n  - {name: a, type: int}\n  - {name: b, type: float, drift_comparator: {l_infinty: 0.1}}\n",
        3,
        "Did you mean 'l_infinity'?",
    ),
    ("features:\n  - {name: a, type: int, drift_comparator: {auto: 0.5}}\n", 2, "auto must be true or false"),
    ("features:\n  - {name: a, type: int, domain: {min: 5, max: 1}}\n", 2, "domain.min (5) is above domain.max (1)"),
    ("features:\n  - {name: a, type: float, domain: {values: [1.0]}}\n", 2, "takes a range {min, max}"),
    ("features:\n  - {type: int}\n", 2, "needs a name and a type"),
    ("features: {name: a}\n", 1, "features must be a list"),
    ("features:\n  - {name: a, type: int, not_in_environments: SERVING}\n", 2, "must be a list"),
    ("", 1, "the schema file is empty"),
    ("features:\n  - {name: a, type: int,\n     presence: {min_count: !!int x}}\n", 3, "cannot read 'x' as !!int"),
    ("features:\n  - {name: !!python/name:os.system a, type: int}\n", 2, "cannot read 'a' as !!python/name:os.system"),
    ("features:\n  - {name: a, type: int, !foo presence: {}}\n", 2, "cannot read 'presence' as !foo"),
    (
        "features:\n  - {name: label, type: int, not_in_environments: [serving]}\ndefault_environments: [TRAINING, SERVING]\n",
        2,
        "unknown environment 'serving'. Did you mean 'SERVING'?",
    ),
    ("features:\n  - {name: a, type: int, in_environments: [TRAINNG]}\n", 2, "Did you mean 'TRAINING'?"),
    ("features: []\ndefault_environments: [TRAINING, SERVNG]\n", 2, "unknown environment 'SERVNG'"),
    (
        "features: []\ndataset_constraints: {min_examples_count: 10, max_examples_count: 5}\n",
        2,
        "min_examples_count (10) is above max_examples_count (5)",
    ),
    (
        "features: []\ndataset_constraints:\n  num_examples_drift: {min_fraction: 2, max_fraction: 0.5}\n",
        3,
        "min_fraction (2) is above max_fraction (0.5)",
    ),
    ("features:\n  - {name: a, type: string,\n     domain: {values: [x, y, x]}}\n", 3, "domain.values lists 'x' twice"),
    ("features:\n  - {name: '', type: int}\n", 2, "a feature's name is empty"),
    (
        "features:\n  - {name: a, type: int, domain: {min: 0, min_mass: 0.9}}\n",
        2,
        "min_mass is the share of values in domain.values",
    ),
    ("features:\n  - {name: a, type: other, domain: {values: [x]}}\n", 2, "an other feature takes no domain"),
    ("features:\n  - {name: a, type: float, domain: {min: .nan}}\n", 2, "domain.min must be a number, got '.nan'"),
    ("features:\n  - {name: [a], type: int, typo: 1}\n", 2, "a feature: unknown key 'typo'"),
]


@pytest.mark.parametrize(("text", "line", "words"), BAD_FILES)
def test_a_bad_file_is_named_with_its_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "schema.yaml"
    path.write_text(text)
    with pytest.raises(DataValidationError) as e:
        Schema.load(path)
    assert str(e.value).startswith(f"{path}:{line}: ")
    assert words in str(e.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="Cannot read the schema file"):
        Schema.load(tmp_path / "nope.yaml")


def test_environments_follow_tfdv() -> None:
    schema = Schema.from_yaml(
        "features:\n"
        "  - {name: x, type: int}\n"
        "  - {name: label, type: int, not_in_environments: [SERVING]}\n"
        "  - {name: debug, type: int, in_environments: [DEBUG]}\n"
        "default_environments: [TRAINING, SERVING]\n"
    )
    x, label, debug = schema.features
    assert schema.in_environment(x, "SERVING")
    assert not schema.in_environment(label, "SERVING")
    assert schema.in_environment(label, "TRAINING")
    assert schema.in_environment(debug, "DEBUG")
    assert not schema.in_environment(debug, "TRAINING")
    assert not schema.in_environment(x, "DEBUG")
    schema.check_environment("DEBUG")
    Schema.from_yaml("features:\n  - {name: label, type: int, not_in_environments: [SERVING]}\n").check_environment(
        "TRAINING"
    )
    with pytest.raises(DataValidationError, match="Did you mean 'SERVING'"):
        schema.check_environment("SERVNG")
    with pytest.raises(DataValidationError, match="Did you mean 'SERVING'"):
        schema.check_environment("serving")


def test_environments_of_ones_own_are_not_taken_for_typos() -> None:
    schema = Schema.from_yaml(
        "features:\n"
        "  - {name: a, type: int, in_environments: [EXPORT, SERVING_EU]}\n"
        "  - {name: b, type: int, not_in_environments: [TRAINING2]}\n"
        "default_environments: [TRAINING, SERVING, SERVING_EU, TRAINING2]\n"
    )
    assert schema.environments() == {"TRAINING", "SERVING", "SERVING_EU", "TRAINING2", "EXPORT"}
