"""Caching by content: what changed runs again, with everything after it, and nothing before."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.metadata import MetadataStore
from tests.helpers import copy_fixture, run_cli


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    return copy_fixture("chain.py", tmp_path)


def run_chain(chain: Path, *extra: str) -> dict[str, str]:
    """Run the chain by the CLI; return each step's status in that run."""
    root = chain.parent / "root"
    done = run_cli("run", str(chain), "--root", str(root), *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    with MetadataStore(f"sqlite:///{root / 'metadata.sqlite'}") as store:
        last = store.runs("chain")[0]
        return {k: x.status for k, x in store.run(last.id).executions.items()}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_same_inputs_are_cached(chain: Path) -> None:
    assert run_chain(chain) == {"first": "succeeded", "second": "succeeded", "third": "succeeded"}
    assert run_chain(chain) == {"first": "cached", "second": "cached", "third": "cached"}


def test_changed_parameter_reruns_that_step_and_downstream_only(chain: Path) -> None:
    run_chain(chain)
    edit(chain, "factor=2)", "factor=3)")
    assert run_chain(chain) == {"first": "cached", "second": "succeeded", "third": "succeeded"}


def test_changed_function_body_reruns(chain: Path) -> None:
    run_chain(chain)
    edit(chain, "[x * factor for x in numbers]", "[x * factor + 1 for x in numbers]")
    assert run_chain(chain) == {"first": "cached", "second": "succeeded", "third": "succeeded"}


def test_body_change_with_same_output_leaves_downstream_cached(chain: Path) -> None:
    run_chain(chain)
    edit(chain, "[x * factor for x in numbers]", "[factor * x for x in numbers]")
    assert run_chain(chain) == {"first": "cached", "second": "succeeded", "third": "cached"}


def test_changed_helper_the_step_calls_reruns_it(chain: Path) -> None:
    run_chain(chain)
    edit(chain, '(out / "COMPLETE").write_text("yes")', '(out / "COMPLETE").write_text("done")')
    assert run_chain(chain) == {"first": "succeeded", "second": "succeeded", "third": "succeeded"}


def test_edit_elsewhere_in_the_file_keeps_the_cache(chain: Path) -> None:
    run_chain(chain)
    edit(chain, "return 1", "return 2")
    assert run_chain(chain) == {"first": "cached", "second": "cached", "third": "cached"}


def test_edited_file_named_by_a_parameter_reruns(chain: Path) -> None:
    run_chain(chain)
    (chain.parent / "notes.txt").write_text("a longer note than before\n")
    assert run_chain(chain) == {"first": "cached", "second": "cached", "third": "succeeded"}


def test_no_cache_runs_everything(chain: Path) -> None:
    run_chain(chain)
    assert run_chain(chain, "--no-cache") == {"first": "succeeded", "second": "succeeded", "third": "succeeded"}


def test_cached_step_reuses_the_same_artifacts(chain: Path) -> None:
    run_chain(chain)
    run_chain(chain)
    with MetadataStore(f"sqlite:///{chain.parent / 'root' / 'metadata.sqlite'}") as store:
        new, old = (store.run(r.id) for r in store.runs("chain"))
        assert new.executions["third"].outputs["report"][0].id == old.executions["third"].outputs["report"][0].id
        assert new.executions["third"].cached_from == old.executions["third"].id
        assert len(store.artifacts(pipeline="chain")) == 3
