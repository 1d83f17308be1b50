"""A pipeline root belongs to one metadata store: another store is refused with one line saying what to do."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from conveyor import Output, Parameter, Pipeline, component
from conveyor.artifacts import Examples
from conveyor.exceptions import MetadataError
from conveyor.interactive import InteractiveContext
from conveyor.metadata import MetadataStore
from conveyor.orchestration.gc import collect
from conveyor.orchestration.root import MARKER, bind_root, check_root
from tests.helpers import run_cli


@component
def produce(examples: Output[Examples], *, value: Parameter[int] = 1) -> None:
    (Path(examples.uri) / "value.json").write_text(json.dumps(value))


def pipeline(root: Path, metadata: str | None = None) -> Pipeline:
    return Pipeline("rooted", [produce()], root=root, metadata=metadata)


PIPELINE_FILE = """
import json
from pathlib import Path
from conveyor import Output, Pipeline, component
from conveyor.artifacts import Examples

@component
def produce(examples: Output[Examples]) -> None:
    (Path(examples.uri) / "value.json").write_text(json.dumps(1))

pipeline = Pipeline("rooted", [produce()])
"""


def test_a_root_whose_store_was_deleted_is_refused_with_what_to_do(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert pipeline(root).run().status == "succeeded"
    for f in root.glob("metadata.sqlite*"):
        f.unlink()
    with pytest.raises(MetadataError) as e:
        pipeline(root).run()
    message = str(e.value)
    assert "\n" not in message
    assert f"is not the one the root {root.resolve()} was made with" in message
    assert "use a new root (--root), or delete" in message
    assert sorted(p.name for p in (root / "rooted" / "produce" / "examples").iterdir()) == ["1"]
    assert not list(root.glob("metadata.sqlite*")), "the refusal leaves no new, empty store behind"


def test_the_cli_says_it_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPELINE_FILE)
    assert run_cli("run", "p.py", cwd=tmp_path).returncode == 0
    (tmp_path / "conveyor_root" / "metadata.sqlite").unlink()
    again = run_cli("run", "p.py", cwd=tmp_path)
    assert again.returncode == 2
    assert "Traceback" not in again.stderr
    [line] = again.stderr.strip().splitlines()
    assert line.startswith("error: The metadata store at sqlite:///") and "was deleted or replaced" in line
    assert not (tmp_path / "conveyor_root" / "metadata.sqlite").exists()
    # the commands that read the store say it is gone, not "run a pipeline first"
    for command in (["gc", "--dry-run"], ["runs"]):
        read = run_cli(*command, cwd=tmp_path)
        assert read.returncode == 2
        assert "the root ./conveyor_root was made with one" in read.stderr and "deleted or moved" in read.stderr


def test_a_folder_where_the_store_file_should_be_is_named_by_every_command(tmp_path: Path) -> None:
    """``run`` said only SQLite's "unable to open database file", and the commands that read the
    store said it "was deleted or moved"."""
    (tmp_path / "p.py").write_text(PIPELINE_FILE)
    assert run_cli("run", "p.py", cwd=tmp_path).returncode == 0
    store = tmp_path / "conveyor_root" / "metadata.sqlite"
    for f in store.parent.glob("metadata.sqlite*"):
        f.unlink()
    store.mkdir()
    (store / "kept.txt").write_text("a user's file")
    url = f"sqlite:///{store}"
    for command in (["run", "p.py"], ["runs"], ["gc", "--dry-run"], ["show", "latest"], ["runs", "--metadata", url]):
        said = run_cli(*command, cwd=tmp_path)
        assert said.returncode == 2, (command, said.stderr)
        [line] = said.stderr.strip().splitlines()
        assert "metadata.sqlite is a folder, where the metadata store's SQLite file should be" in line, command
        assert "move or rename the folder" in line
        assert "unable to open" not in line and "deleted or moved" not in line
    assert (store / "kept.txt").read_text() == "a user's file"


def test_a_root_used_with_one_store_is_refused_to_another(tmp_path: Path, db_url: str) -> None:
    """Either way round: the default SQLite store then ``db_url``, and ``db_url`` then another SQLite store."""
    default_root, url_root = tmp_path / "default", tmp_path / "by-url"
    assert pipeline(default_root).run().status == "succeeded"
    with pytest.raises(MetadataError, match=r"belongs to the metadata store at sqlite:///.*default/metadata\.sqlite"):
        pipeline(default_root, db_url).run()

    assert pipeline(url_root, db_url).run().status == "succeeded"
    with MetadataStore(db_url) as store:
        shown = store.display_url
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    with pytest.raises(MetadataError) as e:
        pipeline(url_root, other).run()
    assert f"belongs to the metadata store at {shown}" in str(e.value)
    assert f"run with --metadata {shown}, or give this store a root of its own" in str(e.value)
    assert not (tmp_path / "other.sqlite").exists()
    with pytest.raises(MetadataError, match="belongs to the metadata store"):
        InteractiveContext(root=url_root, metadata=other)
    assert not (tmp_path / "other.sqlite").exists()
    with MetadataStore(other) as store:
        assert store.runs() == []
        with pytest.raises(MetadataError, match="belongs to the metadata store"):
            collect(store, url_root)


def test_a_root_without_a_marker_is_bound_to_the_store_that_runs_in_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    pipeline(root).run()
    (root / MARKER).unlink()
    assert pipeline(root).run().status == "succeeded"
    with MetadataStore(f"sqlite:///{root / 'metadata.sqlite'}") as store:
        assert json.loads((root / MARKER).read_text())["store"] == store.identity


class _GatedStore(MetadataStore):
    """A store held, on its way to bind a root, after it found the root free and before it writes the marker."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.at_gate, self.go_on = threading.Event(), threading.Event()

    @property
    def display_url(self) -> str:  # read only to write the marker (or to refuse the root)
        self.at_gate.set()
        self.go_on.wait(30)
        return super().display_url


def test_of_two_stores_binding_a_fresh_root_at_once_one_wins_and_the_other_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with _GatedStore(f"sqlite:///{tmp_path / 'a.sqlite'}") as late, MetadataStore(f"sqlite:///{tmp_path / 'b.sqlite'}") as first:
        outcome: list[BaseException | None] = []

        def bind_late() -> None:
            try:
                bind_root(root, late)
                outcome.append(None)
            except MetadataError as e:
                outcome.append(e)

        thread = threading.Thread(target=bind_late)
        thread.start()
        assert late.at_gate.wait(30), "the late store never reached its gate"
        bind_root(root, first)  # binds while the late store holds between its check and its write
        late.go_on.set()
        thread.join(30)
        assert isinstance(outcome[0], MetadataError), "both stores took the root"
        assert f"belongs to the metadata store at {first.display_url}" in str(outcome[0])
        assert check_root(root, first) is True
        assert [p.name for p in root.iterdir()] == [MARKER], "no partial marker is left behind"
