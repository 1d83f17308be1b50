"""``conveyor show EVALUATION --html`` and ``conveyor show MODEL --model-card`` on what a real pipeline recorded."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from conveyor.report.page import format_number
from tests.e2e.test_report_cli import CHROMIUM, read_png
from tests.helpers import FIXTURES, run_cli
from tests.report.test_statistics import parse

pytest.importorskip("shap")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Penguins' sex: a logistic regression evaluated against a stump, explained, with a model card's considerations."""
    root = tmp_path_factory.mktemp("evaluation")
    done = run_cli("run", str(FIXTURES / "evaluation_pipeline.py"), "--root", str(root))
    assert done.returncode == 0, done.stdout + done.stderr
    return root


@pytest.fixture(scope="module")
def outputs(root: Path) -> dict[str, dict]:
    """Each step's outputs as ``show --json`` gives them, by step and output key."""
    run_id = json.loads(run_cli("runs", "--root", str(root), "--json").stdout)[0]["id"]
    steps = json.loads(run_cli("show", run_id, "--root", str(root), "--json").stdout)["executions"]
    return {x["component_id"]: {k: v[0] for k, v in x["outputs"].items()} for x in steps}


def metrics_of(outputs: dict[str, dict]) -> dict:
    return json.loads((Path(outputs["Evaluator"]["evaluation"]["uri"]) / "metrics.json").read_text())


def test_the_evaluation_page_of_a_real_run(root: Path, outputs: dict[str, dict]) -> None:
    evaluation = outputs["Evaluator"]["evaluation"]
    out = root / "evaluation.html"
    done = run_cli("show", str(evaluation["id"]), "--html", str(out), "--root", str(root))
    assert done.returncode == 0, done.stderr
    doc = parse(out.read_text(encoding="utf-8"))
    assert doc.all("h1")[0].text().startswith(f"ModelEvaluation {evaluation['id']} · Evaluator, run-")
    sections = [s.attrs.get("id") for s in doc.all("section")]
    assert sections == ["validation", "slices", "comparison", "plots", "fairness", "explanations"]
    overall = metrics_of(outputs)["slices"][0]["metrics"]
    row = next(tr for tr in doc.all("tr") if tr.attrs.get("data-slice") == "Overall")
    auc = next(td for td in row.all("td") if td.attrs.get("data-metric") == "auc")
    assert auc.all("div")[0].text() == format_number(overall["auc"])
    explained = json.loads((Path(evaluation["uri"]) / "explanations.json").read_text())
    assert {f["feature"] for f in explained["importance"]} == {
        "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "species",
    }  # fmt: skip


def test_the_model_card_holds_the_data_fingerprint_and_the_metrics(root: Path, outputs: dict[str, dict]) -> None:
    model = outputs["Trainer"]["model"]
    out = root / "card"
    done = run_cli("show", str(model["id"]), "--model-card", str(out), "--root", str(root))
    assert done.returncode == 0, done.stderr
    markdown = (out / "model_card.md").read_text(encoding="utf-8")
    examples = outputs["sexed_penguins"]["examples"]
    fingerprint = json.loads(run_cli("show", str(examples["id"]), "--root", str(root), "--json").stdout)["fingerprint"]
    assert fingerprint and fingerprint in markdown
    overall = metrics_of(outputs)["slices"][0]
    line = next(x for x in markdown.splitlines() if x.startswith("| Overall |"))
    assert format_number(overall["metrics"]["auc"]) in line.split(" | ")
    assert "Field teams sexing birds they cannot handle; \\<not\\> for breeding decisions." in markdown
    assert "## Validation (blessed," in markdown
    doc = parse((out / "model_card.html").read_text(encoding="utf-8"))
    assert "<not>" in doc.text() and fingerprint in doc.text()


def test_a_model_card_of_something_else_is_one_line(root: Path, outputs: dict[str, dict]) -> None:
    evaluation = outputs["Evaluator"]["evaluation"]
    done = run_cli("show", str(evaluation["id"]), "--model-card", str(root / "x"), "--root", str(root))
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"error: --model-card takes a Model artifact; artifact {evaluation['id']} is ModelEvaluation."
    )


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (Debian: apt-get install chromium)")
def test_a_browser_draws_the_evaluation(root: Path, outputs: dict[str, dict]) -> None:
    """Headless Chromium screenshots the page: the candidate's blue and the baseline's vermillion curves are drawn."""
    out = root / "browser.html"
    assert (
        run_cli(
            "show", str(outputs["Evaluator"]["evaluation"]["id"]), "--html", str(out), "--root", str(root)
        ).returncode
        == 0
    )
    png = root / "browser.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1280,2600", out.as_uri()],
            capture_output=True, timeout=120, check=False, env={**os.environ, "HOME": profile},
        )  # fmt: skip
    assert png.exists() and png.stat().st_size > 20_000, "no screenshot, or a near-empty one"
    width, height, pixels = read_png(png.read_bytes())
    assert (width, height) == (1280, 2600)
    counted = Counter(pixels)
    seen = {rgb: counted[rgb] for rgb in ((0x00, 0x72, 0xB2), (0xD5, 0x5E, 0x00), (0x1B, 0x7F, 0x3B))}
    assert all(n > 200 for n in seen.values()), (
        f"candidate blue, baseline vermillion and the blessed green drawn: {seen}"
    )
    assert len(counted) > 50, "a page of text and charts, not a blank image"


def test_show_prints_the_metrics_of_each_slice_and_the_checks(root: Path, outputs: dict[str, dict]) -> None:
    """In the terminal, without --html: the numbers a user came for, as metrics.json holds them."""
    evaluation = outputs["Evaluator"]["evaluation"]
    shown = run_cli("show", str(evaluation["id"]), "--root", str(root))
    assert shown.returncode == 0, shown.stderr
    result = metrics_of(outputs)
    overall = result["slices"][0]
    line = next(x for x in shown.stdout.splitlines() if x.startswith("  Overall: "))
    assert f"auc {format_number(overall['metrics']['auc'])}" in line
    baseline = next(x for x in shown.stdout.splitlines() if x.startswith(f"    {result['models'][1]}: "))
    assert f"auc {format_number(overall[result['models'][1]]['metrics']['auc'])}" in baseline
    checks = [x for x in shown.stdout.splitlines() if x.startswith("check ")]
    assert len(checks) == len(result["validation"]["checks"])
    for line, check in zip(checks, result["validation"]["checks"], strict=True):
        assert line.split()[1:3] == [check["metric"], check["kind"]]
        assert line.endswith("held" if check["passed"] else "FAILED")
