"""The user guide (docs/, mkdocs.yml): it builds, its snippets are modules that import and run.

Every Python snippet of a page is included from docs/snippets/ (pymdownx.snippets), so what a
page shows is what these tests import and run.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
SNIPPETS = DOCS / "snippets"
INCLUDE = re.compile(r'^--8<-- "([^"]+)"$')
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
ROWS = [
    {"plan": "pro", "monthly_fee": 49.0, "tenure_months": 3},
    {"plan": "basic", "monthly_fee": 9.5, "tenure_months": 40},
]


def load_snippet(name: str) -> ModuleType:
    """A snippet module, imported by path under a fresh name (as a pipeline file is)."""
    path = SNIPPETS / name
    spec = importlib.util.spec_from_file_location(f"guide_{path.stem}_{uuid.uuid4().hex[:8]}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_churn_csv(folder: Path, rows: int = 300) -> Path:
    """A churn table where a high fee and a short tenure make churn likelier: learnable, with both classes."""
    rng = random.Random(0)
    lines = ["customer_id,plan,monthly_fee,tenure_months,churned"]
    for i in range(rows):
        fee, tenure = round(rng.uniform(5, 60), 2), rng.randint(1, 72)
        churn = rng.random() < 0.15 + 0.5 * (fee > 35) + 0.25 * (tenure < 12)
        lines.append(f"c{i},{rng.choice(['basic', 'plus', 'pro'])},{fee},{tenure},{int(churn)}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "customers.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    if shutil.which("mkdocs") is None and importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed: pip install -e '.[dev]'")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for page in ("", "concepts/", "components/", "model_bundle/", "serving/", "scaling/"):
        text = re.sub(r"<[^>]+>", "", (tmp_path / "site" / page / "index.html").read_text(encoding="utf-8"))
        assert "--8&lt;--" not in text, f"{page}: an include line or a section marker was left in the page"
    components = re.sub(r"<[^>]+>", "", (tmp_path / "site" / "components" / "index.html").read_text(encoding="utf-8"))
    assert "def preprocessing_fn(inputs):" in components  # the snippet itself, included


def test_every_snippet_imports() -> None:
    modules = sorted(SNIPPETS.glob("*.py"))
    assert modules
    for path in modules:
        load_snippet(path.name)


def test_pages_hold_python_only_as_included_snippets() -> None:
    """A ```python block is one include line of a snippet section that exists; other languages are free."""
    pages = [p for p in sorted(DOCS.glob("*.md")) if p.name not in PAGES_BEFORE_THE_GUIDE]
    assert {p.name for p in pages} >= {"index.md", "concepts.md", "components.md", "model_bundle.md", "serving.md"}
    for page in pages:
        for language, body in FENCE.findall(page.read_text(encoding="utf-8")):
            assert language in ("python", "bash", "console", "yaml", "json", ""), f"{page.name}: ```{language}"
            if language != "python":
                continue
            match = INCLUDE.match(body.strip())
            assert match, f"{page.name}: a ```python block that is not an include:\n{body}"
            file, _, section = match.group(1).partition(":")
            source = (SNIPPETS / file).read_text(encoding="utf-8")
            assert f"--8<-- [start:{section}]" in source, f"{page.name}: no section {section!r} in {file}"


PAGES_BEFORE_THE_GUIDE = {"transform.md", "privacy.md"}
"""Pages written before the guide, with Python copied into them; their snippets are not yet modules."""


def test_relative_links_find_their_files() -> None:
    for page in sorted(DOCS.glob("*.md")):
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_first_pipeline_runs_then_comes_from_cache(tmp_path: Path) -> None:
    write_churn_csv(tmp_path / "data", rows=40)
    first, second = load_snippet("first_pipeline.py").run_twice(str(tmp_path / "data"), str(tmp_path / "root"))
    assert (first, second) == ("succeeded", "cached")
    counts = json.loads(next((tmp_path / "root" / "first" / "count_rows" / "report").glob("*/counts.json")).read_text())
    assert set(counts) == {"train", "eval"}
    assert sum(counts.values()) == 40


@pytest.fixture(scope="module")
def churn_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The components page's pipeline run once, ExampleGen to Pusher, on a table the test writes."""
    base = tmp_path_factory.mktemp("churn")
    pipeline = load_snippet("components.py").create_pipeline(
        str(write_churn_csv(base / "data")), str(base / "root"), str(base / "serving")
    )
    return base, pipeline.run()


def test_components_pipeline_runs_to_a_pushed_model(churn_run: tuple[Path, object]) -> None:
    base, run = churn_run
    assert run.status == "succeeded", [(k, e.status, e.error) for k, e in run.executions.items() if e.status == "failed"]
    assert all(e.status == "succeeded" for e in run.executions.values())
    blessing = run.executions["Evaluator"].outputs["blessing"][0]
    assert blessing.properties["blessed"] is True
    assert run.executions["InfraValidator"].outputs["blessing"][0].properties["blessed"] is True
    pushed = run.executions["Pusher"].outputs["pushed_model"][0].properties
    assert pushed["pushed_version"] == 1
    assert (base / "serving" / "1" / "conveyor_model.json").is_file()


def test_model_bundle_snippets_predict_raw_rows(churn_run: tuple[Path, object]) -> None:
    from sklearn.linear_model import LogisticRegression  # the oracle: the same model read back by hand

    from conveyor.model import load_native

    base, _ = churn_run
    bundle = base / "serving" / "1"
    snippet = load_snippet("model_bundle.py")
    by_rows, by_columns = snippet.predict_raw(str(bundle)), snippet.predict_columns(str(bundle))
    assert by_rows["probability"].shape == (2,)
    assert by_rows["probability"].tolist() == by_columns["probability"].tolist()
    assert isinstance(load_native(bundle), LogisticRegression)
    assert snippet.describe(str(bundle)).startswith("sklearn binary model; needs monthly_fee, tenure_months, plan")


def test_every_manifest_key_is_in_the_pages_table(churn_run: tuple[Path, object]) -> None:
    manifest = json.loads((churn_run[0] / "serving" / "1" / "conveyor_model.json").read_text())
    page = (DOCS / "model_bundle.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| ((?:`\w+`(?:, )?)+) \|", page, re.MULTILINE)
    documented = {key for row in rows for key in re.findall(r"`(\w+)`", row)}
    assert set(manifest) - documented == set(), "keys conveyor_model.json holds that docs/model_bundle.md leaves out"


def test_a_changed_bundle_file_is_refused(churn_run: tuple[Path, object], tmp_path: Path) -> None:
    from conveyor.exceptions import ServingError

    copy = shutil.copytree(churn_run[0] / "serving" / "1", tmp_path / "bundle")
    with (copy / "model" / "linear.json").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ServingError, match=r"model/linear\.json does not match the sha256"):
        load_snippet("model_bundle.py").predict_raw(str(copy))


def test_serving_snippet_answers_as_the_bundle_does(churn_run: tuple[Path, object]) -> None:
    from conveyor.model import load_model

    serving = churn_run[0] / "serving"
    answer = load_snippet("serving.py").ask_server(str(serving), ROWS)
    expected = load_model(serving / "1").predict(ROWS)
    assert [p["probability"] for p in answer["predictions"]] == pytest.approx(expected["probability"].tolist())


def test_concepts_snippets_read_the_store(churn_run: tuple[Path, object]) -> None:
    base, run = churn_run
    concepts = load_snippet("concepts.py")
    url = f"sqlite:///{base / 'root' / 'metadata.sqlite'}"
    assert concepts.last_run_steps(url, "churn") == {k: e.status for k, e in run.executions.items()}
    model = run.executions["Trainer"].outputs["model"][0]
    lines = concepts.where_from(url, model.id)
    assert any("Examples made by ExampleGen" in line for line in lines)
    assert any("TransformGraph made by Transform" in line for line in lines)


def test_spans_snippet_reads_the_newest_span(tmp_path: Path) -> None:
    for span, rows in ((1, 10), (2, 20)):
        folder = tmp_path / "exports" / f"span-{span}"
        folder.mkdir(parents=True)
        (folder / "day.csv").write_text("x,y\n" + "".join(f"{i},{span}\n" for i in range(rows)))
    run = load_snippet("concepts.py").daily_pipeline(str(tmp_path / "exports"), str(tmp_path / "root")).run()
    assert run.status == "succeeded"
    examples = run.executions["ExampleGen"].outputs["examples"][0].properties
    assert examples["span"] == 2
    assert sum(examples["row_counts"].values()) == 20


def test_scaling_snippet_reads_an_fsspec_url(tmp_path: Path) -> None:
    import fsspec

    memory = fsspec.filesystem("memory")
    folder = f"/guide-{uuid.uuid4().hex[:8]}"
    memory.pipe(f"{folder}/customers.csv", (write_churn_csv(tmp_path / "data", rows=30) / "customers.csv").read_bytes())
    try:
        pipeline = load_snippet("scaling.py").create_pipeline(
            f"memory://{folder}/", str(tmp_path / "root"), f"sqlite:///{tmp_path / 'store.sqlite'}"
        )
        run = pipeline.run()
    finally:
        memory.rm(folder, recursive=True)
    assert run.status == "succeeded"
    assert sum(run.executions["ExampleGen"].outputs["examples"][0].properties["row_counts"].values()) == 30
