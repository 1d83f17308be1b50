"""What the pages name must exist: CLI commands and options, anchors, Transform ops.

The snippets run in test_guide.py; these catch the drift of prose, which nothing runs: a
`conveyor run --option` renamed in the CLI, a heading renamed under a link, an op removed.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "examples").glob("*/README.md"))]
COMMAND = re.compile(r"\bconveyor ([a-z]+)\b([^`\n#|;&]*)")
OPTION = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")
LINK = re.compile(r"\]\(([^)\s]*)\)")
BEAM_OPTIONS = {
    "--runner",
    "--temp_location",
    "--environment_type",
    "--sdk_container_image",
    "--dask_npartitions",
    "--default_sdk_harness_log_level",
}
"""Apache Beam's pipeline options, which docs/scaling.md names in `beam_pipeline_args`."""


def cli_options() -> dict[str, set[str]]:
    from conveyor.cli.main import cli

    return {name: {o for p in c.params for o in (*p.opts, *p.secondary_opts)} for name, c in cli.commands.items()}


def test_every_conveyor_command_line_names_options_it_has() -> None:
    """`conveyor <command> ... --option` in a page or an example's docstring: the command takes it."""
    commands = cli_options()
    sources = PAGES + sorted((REPO / "examples").glob("*/*.py"))
    wrong = []
    for source in sources:
        for match in COMMAND.finditer(source.read_text(encoding="utf-8")):
            command, rest = match.groups()
            if command not in commands:
                continue  # "conveyor runs a pipeline": prose, not a command line
            line = match.group(0).strip()
            wrong += [f"{source.name}: {line}" for o in OPTION.findall(rest) if o not in commands[command]]
    assert not wrong, "options the CLI does not have:\n" + "\n".join(wrong)


def test_every_option_in_prose_belongs_to_a_command() -> None:
    """An inline `--option` alone (`--only STEP`) is some command's, or one of Beam's."""
    known = set().union(*cli_options().values()) | BEAM_OPTIONS
    pages = [p for p in PAGES if p.name != "benchmarks.md"]  # it names the benchmark scripts' own flags
    found = [(p.name, o) for p in pages for o in re.findall(r"`(--[a-z][\w-]*)", p.read_text(encoding="utf-8"))]
    assert len(found) > 20
    unknown = [f"{page}: {o}" for page, o in found if o not in known]
    assert not unknown, unknown


def slug(heading: str) -> str:
    """The anchor mkdocs' toc gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return re.sub(r"\s+", "-", text)


def test_links_and_their_anchors_resolve() -> None:
    """Every relative link of the README, the guide and the examples' READMEs, anchor included."""
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            path, _, anchor = target.partition("#")
            file = page.parent / path if path else page
            assert file.exists(), f"{page.relative_to(REPO)} links to {target}, which does not exist"
            if anchor and file.suffix == ".md":
                headings = {slug(h) for h in re.findall(r"^#+ (.*)$", file.read_text(encoding="utf-8"), re.MULTILINE)}
                assert anchor in headings, f"{page.relative_to(REPO)} links to {target}: no such heading"


def test_every_op_in_the_transform_table_exists() -> None:
    import conveyor.transform as ct

    page = (REPO / "docs" / "transform.md").read_text(encoding="utf-8")
    rows = [line.split("|")[2] for line in page.splitlines() if line.startswith("| ") and "`" in line]
    ops = {m.group(1) for cell in rows for m in re.finditer(r"`([a-z_][a-z0-9_]*)(?:\(|`)", cell)}
    named_after_others = {"apply_saved_model", "melspectrogram", "power_to_db", "resample_poly"}  # TFT's, librosa's
    options = {"top_k", "frequency_threshold", "num_oov_buckets", "default_value"}  # parameters the table names
    assert len(ops) > 40
    assert not [op for op in ops - named_after_others - options if not hasattr(ct, op)]


def test_every_extra_named_exists() -> None:
    """`pip install 'conveyor[x]'`, `.[x]` and `conveyor[x]` name extras of pyproject.toml."""
    import tomllib

    extras = set(
        tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    )
    named = {
        (page.name, extra)
        for page in PAGES
        for group in re.findall(r"(?:conveyor|\.)\[([\w,-]+)\]", page.read_text(encoding="utf-8"))
        for extra in group.split(",")
    }
    assert len(named) > 10
    assert not [f"{page}: {extra}" for page, extra in named if extra not in extras]


def test_the_evaluator_metrics_listed_are_those_of_each_task() -> None:
    """docs/components.md lists the metric names by task: each list is the Evaluator's, whole."""
    from conveyor.analysis.metrics import METRICS

    text = " ".join((REPO / "docs" / "components.md").read_text(encoding="utf-8").split())
    listed = re.search(r"The metrics by task: binary (.*?); multiclass (.*?); regression (.*?); each also (.*?)\. ", text)
    assert listed is not None, "the sentence listing the metrics by task is gone"
    names = [re.findall(r"`(\w+)`", group) for group in listed.groups()]
    common = set(names[3])
    for task, documented in zip(("binary", "multiclass", "regression"), names[:3], strict=True):
        assert set(documented) | common == set(METRICS[task]), task
