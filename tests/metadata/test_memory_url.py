"""An in-memory SQLite URL is refused in one line that says why: each connection of the store
(a writer, a reader, one per step thread) would open its own empty database."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import Output, Pipeline, component
from conveyor.artifacts import Artifact
from conveyor.exceptions import MetadataError
from conveyor.metadata import MetadataStore


@component
def write(out: Output[Artifact]) -> None:
    (Path(out.uri) / "x.txt").write_text("x")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_store_is_refused_naming_the_url(url: str, tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match=r"names an in-memory SQLite database.*name a file") as opened:
        MetadataStore(url)
    assert repr(url) in str(opened.value)
    pipeline = Pipeline(name="p", components=[write()], root=tmp_path / "root", metadata=url)
    with pytest.raises(MetadataError, match="names an in-memory SQLite database"):
        pipeline.run()
    assert not (tmp_path / "root").exists()
