"""ExampleGen over media folders as users lay them out: odd file names, manifests out of step
with the folder, symbolic links, files that go away mid-run. Nothing may drop out unseen.

The clips are written with the standard library's ``wave``; soundfile reads them back.
"""

from __future__ import annotations

import io
import os
import wave
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest

from conveyor import Pipeline
from conveyor.components import ExampleGen

pytest.importorskip("soundfile", reason="the media extra: pip install 'conveyor[media]'")


def write_wav(path: Path, frames: int = 400, pitch: float = 440) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = (0.3 * np.sin(2 * np.pi * pitch * np.arange(frames) / 8000) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(samples.tobytes())
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def clips(root: Path, n: int = 6) -> None:
    for i in range(n):
        write_wav(root / ("yes" if i % 2 else "no") / f"c{i}.wav", pitch=200 + 20 * i)


def run_gen(tmp_path: Path, **options: Any) -> Any:
    gen = ExampleGen(input_format="audio", splits={"all": 1}, **options)
    execution = Pipeline("media", [gen], root=tmp_path / "root").run().executions["ExampleGen"]
    assert execution.status == "succeeded", execution.error
    return execution.outputs["examples"][0]


def paths(examples: Any) -> set[str]:
    return set(pq.read_table(Path(examples.uri) / "Split-all").column("path").to_pylist())


def test_a_file_whose_name_holds_a_newline_is_a_row_like_any_other(tmp_path: Path) -> None:
    clips(tmp_path / "clips")
    data = write_wav(tmp_path / "clips" / "no" / "take\n2.wav")
    examples = run_gen(tmp_path, input_base=str(tmp_path / "clips"))
    assert "no/take\n2.wav" in paths(examples)
    assert sum(examples.properties["row_counts"].values()) == 7
    table = pq.read_table(Path(examples.uri) / "Split-all").to_pylist()
    assert next(r for r in table if r["path"] == "no/take\n2.wav")["content"] == data


def test_manifest_lines_whose_file_is_not_there_are_named_and_other_spans_files_are_not(tmp_path: Path) -> None:
    base = tmp_path / "clips"
    clips(base / "span-1")
    clips(base / "span-2")
    manifest = tmp_path / "labels.csv"
    lines = ["span-1/no/c0.wav,old", "span-2/no/c0.wav,a", "span-2/yes/c1.wav,b", "span-2/no/gone.wav,c"]
    manifest.write_text("path,label\n" + "\n".join(lines) + "\n")
    examples = run_gen(tmp_path, input_base=str(base), pattern="span-{SPAN}/**", manifest=str(manifest))
    assert examples.properties["spans"] == [2]
    assert [w for w in examples.properties["warnings"] if "not under input_base" in w] == [
        f"1 line of the manifest {manifest} names a file not under input_base, so it has no row: "
        "span-2/no/gone.wav; bring it back, or fix or remove that line."
    ]


def test_links_to_folders_and_to_nothing_are_named_not_left_out_unseen(tmp_path: Path) -> None:
    base = tmp_path / "photos"
    clips(base)
    clips(tmp_path / "elsewhere" / "cats", n=3)
    write_wav(tmp_path / "elsewhere" / "one.wav")
    os.symlink(tmp_path / "elsewhere" / "cats", base / "cats")  # a class folder kept on another disk
    os.symlink(base, base / "yes" / "loop")
    os.symlink(tmp_path / "elsewhere" / "one.wav", base / "yes" / "linked.wav")  # a link to a file is read
    os.symlink(tmp_path / "nowhere.wav", base / "no" / "dangling.wav")
    examples = run_gen(tmp_path, input_base=str(base))
    assert "yes/linked.wav" in paths(examples)
    assert [w for w in examples.properties["warnings"] if "not followed" in w] == [
        "3 links lead to a folder or to nothing, and are not followed: cats, no/dangling.wav, yes/loop; "
        "copy the files in, or read that folder as an input_base of its own."
    ]


def test_a_file_gone_before_it_is_read_is_quarantined_with_the_reason(tmp_path: Path) -> None:
    """A folder still being synced: a file listed, then removed, is one bad row, not a traceback."""
    from conveyor.io.media import FileReader

    fs = fsspec.filesystem("file")
    for store in ("bytes", "path"):
        decoded = FileReader("audio", fs, str(tmp_path), store)(str(tmp_path / "gone.wav"))
        assert decoded.row is None
        assert decoded.reason == "cannot be read (FileNotFoundError: No such file or directory)"
