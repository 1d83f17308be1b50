"""The schema's page (``conveyor show ID --html``, a notebook's frame): one row a feature."""

from __future__ import annotations

from pathlib import Path

from conveyor.data.schema import Domain, Feature, Schema
from conveyor.report.notebook import schema_artifact_html
from tests.report.test_statistics import parse


def test_a_deprecated_feature_says_so_in_its_checks_column(tmp_path: Path) -> None:
    """A deprecated feature is checked for nothing: the page must not show it as checked like the others."""
    Schema(
        features=[
            Feature("age", "int", domain=Domain(min=17, max=90)),
            Feature("old_score", "float", drift_comparator={"l_infinity": 0.1}, deprecated=True),
        ]
    ).save(tmp_path / "schema.yaml")
    doc = parse(schema_artifact_html(str(tmp_path), "Schema 1"))
    head = [th.text() for th in doc.all("thead")[0].all("th")]
    checks = {
        row.all("td")[0].text(): row.all("td")[head.index("checks")].text() for row in doc.all("tbody")[0].all("tr")
    }
    assert checks["old_score"].startswith("deprecated: checked for nothing")
    assert "l_infinity" in checks["old_score"]  # what the file still holds stays visible
    assert "deprecated" not in checks["age"]
