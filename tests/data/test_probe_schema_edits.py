"""A schema edited by hand, as a TFDV user curates one: each edit changes the report, each bad edit names its line."""

from __future__ import annotations

import codecs
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from conveyor.data.anomalies import Anomaly, validate
from conveyor.data.schema import Domain, Feature, Schema, infer_schema
from conveyor.data.statistics import StatisticsCombiner
from conveyor.exceptions import DataValidationError


def stats_of(df: pd.DataFrame) -> dict:
    c = StatisticsCombiner()
    acc = c.create()
    for batch in pa.Table.from_pandas(df, preserve_index=False).to_batches():
        c.add_batch(acc, batch)
    return c.extract(acc)


DATA = pd.DataFrame(
    {
        "product": ["Mortgage", "Debt", "Card", "Card"] * 25,
        "score": [0.5, 1.5, 2.5, 3.5] * 25,
        "label": [0, 1] * 50,
    }
)


def problems(found: list[Anomaly]) -> set[tuple[str | None, str]]:
    return {(a.feature, a.kind) for a in found if a.severity != "info"}


def test_a_deprecated_feature_is_checked_for_nothing() -> None:
    """TFDV skips a DEPRECATED feature; here the key was refused, so a user could only delete it (a NEW_COLUMN)."""
    text = (
        "features:\n"
        "  - {name: product, type: string, domain: {values: [Mortgage]}, deprecated: true,\n"
        "     drift_comparator: {l_infinity: 0.0}}\n"
        "  - {name: score, type: int, presence: {min_fraction: 1.0}, deprecated: true}\n"
        "  - {name: gone, type: int, presence: {min_count: 5}, deprecated: true}\n"
        "  - {name: label, type: int}\n"
    )
    schema = Schema.from_yaml(text)
    assert [f.deprecated for f in schema.features] == [True, True, True, False]
    shifted = DATA.assign(product="Card")
    assert problems(validate(stats_of(DATA), schema, baseline=stats_of(shifted))) == set()
    assert not [a for a in validate(stats_of(DATA), schema, baseline=stats_of(shifted)) if a.feature != "label"]
    schema.features[0].deprecated = False
    assert problems(validate(stats_of(DATA), schema)) == {("product", "OUT_OF_DOMAIN_VALUES")}
    assert Schema.from_yaml(Schema.from_yaml(text).to_yaml()) == Schema.from_yaml(text)
    assert "deprecated" not in infer_schema(stats_of(DATA)).to_yaml()  # false is not written
    with pytest.raises(DataValidationError, match=r"^<schema>:2: feature 'a': deprecated must be true or false"):
        Schema.from_yaml("features:\n  - {name: a, type: int, deprecated: 1}\n")


def test_an_empty_domain_is_refused_and_never_written() -> None:
    """`domain: {}` allowed anything without a word, while `values: []` allows nothing: say so."""
    with pytest.raises(DataValidationError, match=r"^<schema>:3: feature 'product': the domain is empty"):
        Schema.from_yaml("features:\n  - {name: label, type: int}\n  - {name: product, type: string, domain: {}}\n")
    built = Schema([Feature("product", "string", domain=Domain())])
    assert Schema.from_yaml(built.to_yaml()).features == [Feature("product", "string")]
    nothing = Schema.from_yaml("features:\n  - {name: product, type: string, domain: {values: []}}\n")
    assert problems(validate(stats_of(DATA[["product"]]), nothing)) == {("product", "OUT_OF_DOMAIN_VALUES")}


def test_in_and_not_in_environments_together_are_refused() -> None:
    """in_environments decides alone (TFDV's rule), so a not_in_environments beside it was silently ignored."""
    text = "features:\n  - name: label\n    type: int\n    in_environments: [TRAINING]\n    not_in_environments: [SERVING]\n"
    with pytest.raises(DataValidationError, match=r"^<schema>:5: feature 'label': in_environments alone decides"):
        Schema.from_yaml(text)


def test_a_utf16_file_is_read_and_another_encoding_is_named_by_line(tmp_path: Path) -> None:
    """Notepad's "Unicode" is UTF-16 with a mark (YAML allows it); Latin-1 was a byte offset and no advice."""
    text = "# mine\nfeatures:\n  - {name: product, type: string, domain: {values: [Café]}}\n"
    path = tmp_path / "schema.yaml"
    for data in (codecs.BOM_UTF16_LE + text.encode("utf-16-le"), codecs.BOM_UTF8 + text.encode(), text.encode()):
        path.write_bytes(data)
        assert Schema.load(path).features[0].domain == Domain(values=["Café"])
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(DataValidationError) as e:
        Schema.load(path)
    assert str(e.value) == f"{path}:3: not UTF-8 text (byte 0xe9); save the schema file as UTF-8."


def test_a_name_given_twice_names_both_lines() -> None:
    """The check compared every pair of features (20,000 took minutes); it now names where the first one is."""
    text = "features:\n" + "".join(f"  - {{name: f{i}, type: int}}\n" for i in range(3)) + "  - {name: f1, type: int}\n"
    with pytest.raises(DataValidationError, match=r"^<schema>:5: feature 'f1' is given twice \(first on line 3\)\."):
        Schema.from_yaml(text)


def test_what_the_report_says_names_what_was_expected_and_found_with_counts() -> None:
    schema = Schema.from_yaml(
        "features:\n"
        "  - {name: product, type: string}\n"
        "  - {name: score, type: float, presence: {min_count: 500}}\n"
        "  - {name: zip, type: string, presence: {min_fraction: 0.5}}\n"
        "  - {name: label, type: int, in_environments: [SERVING]}\n"
        "default_environments: [TRAINING, SERVING]\n"
    )
    found = {a.kind: a for a in validate(stats_of(DATA), schema)}
    assert found["MISSING_COLUMN"].description == (
        "zip is not in the data (0 of 100 examples); the schema asks for a value in at least 50.00% of examples."
    )
    assert found["MISSING_COLUMN"].details["min_fraction"] == 0.5
    assert found["PRESENCE_TOO_LOW"].description == (
        "score has a value in 100 of 100 examples; the schema asks for at least 500."
    )
    # A feature that lives only in SERVING, seen in training data: no talk of a label leaking into serving.
    assert found["NOT_IN_ENVIRONMENT"].description == (
        "label holds values in 100 of 100 examples of TRAINING data, where the schema says it does not belong; "
        "drop it, or change its environments in the schema."
    )
    schema.features[-1].in_environments, schema.features[-1].not_in_environments = [], ["SERVING"]
    leaked = {a.kind: a for a in validate(stats_of(DATA), schema, environment="SERVING")}
    assert "(a label in serving data may leak the answer)" in leaked["NOT_IN_ENVIRONMENT"].description
