"""Decoding audio and images: metadata of real files of each format, and files that do not decode.

The files are made here with soundfile and Pillow; the expected numbers are what was written
(sample rate, frames, size, mode) and, for loudness, the RMS of the samples soundfile reads back.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from conveyor.exceptions import DataValidationError
from conveyor.io.media import (
    FileReader,
    MediaInput,
    NotDecodable,
    audio_metadata,
    image_metadata,
    looks_like,
    read_manifest,
)
from conveyor.io.plan import Source

sf = pytest.importorskip("soundfile", reason="the media extra: pip install 'conveyor[media]'")
Image = pytest.importorskip("PIL.Image", reason="the media extra: pip install 'conveyor[media]'")

AUDIO = [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_24"), ("ogg", "OGG", "VORBIS")]
IMAGES = [("png", "PNG", "RGBA"), ("jpg", "JPEG", "L"), ("webp", "WEBP", "RGB")]


def sine(seconds: float, rate: int, channels: int = 1, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    wave = amplitude * np.sin(2 * np.pi * 441.0 * t)
    return np.repeat(wave[:, None], channels, axis=1) * np.linspace(1.0, 0.5, channels)


def audio_bytes(ext: str, seconds: float = 1.0, rate: int = 16000, channels: int = 1, amplitude: float = 0.5) -> bytes:
    fmt, subtype = {e: (f, s) for e, f, s in AUDIO}[ext]
    buf = io.BytesIO()
    sf.write(buf, sine(seconds, rate, channels, amplitude), rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def image_bytes(ext: str, size: tuple[int, int] = (48, 32), mode: str | None = None) -> bytes:
    fmt, default_mode = {e: (f, m) for e, f, m in IMAGES}[ext]
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGBA").convert(mode or default_mode).save(buf, format=fmt)
    return buf.getvalue()


def rms_dbfs(data: bytes) -> float:
    samples, _ = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    return 20 * math.log10(math.sqrt(float(np.mean(samples**2))))


@pytest.mark.parametrize(("ext", "fmt", "subtype"), AUDIO)
def test_audio_metadata_of_each_format_is_what_was_written(ext: str, fmt: str, subtype: str) -> None:
    data = audio_bytes(ext, seconds=3.0, rate=22050, channels=2)  # 66,150 frames: more than one block
    got = audio_metadata(io.BytesIO(data))
    assert got["format"] == fmt
    assert (got["sample_rate"], got["channels"], got["frames"]) == (22050, 2, 66150)
    assert got["duration"] == pytest.approx(3.0)
    assert got["loudness"] == pytest.approx(rms_dbfs(data), abs=1e-9)


def test_loudness_of_a_full_scale_sine_is_minus_3_dbfs_and_silence_is_minus_infinity() -> None:
    buf = io.BytesIO()
    sf.write(buf, sine(1.0, 48000, amplitude=1.0), 48000, format="WAV", subtype="FLOAT")
    assert audio_metadata(io.BytesIO(buf.getvalue()))["loudness"] == pytest.approx(20 * math.log10(math.sqrt(0.5)))
    buf = io.BytesIO()
    sf.write(buf, np.zeros(1600), 16000, format="WAV", subtype="PCM_16")
    assert audio_metadata(io.BytesIO(buf.getvalue()))["loudness"] == -math.inf


@pytest.mark.parametrize(("ext", "fmt", "mode"), IMAGES)
def test_image_metadata_of_each_format_is_what_was_written(ext: str, fmt: str, mode: str) -> None:
    assert image_metadata(io.BytesIO(image_bytes(ext, (48, 32)))) == {
        "format": fmt,
        "width": 48,
        "height": 32,
        "mode": mode,
    }


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
def test_a_truncated_audio_file_does_not_decode(ext: str) -> None:
    data = audio_bytes(ext)
    with pytest.raises(NotDecodable) as e:
        audio_metadata(io.BytesIO(data[: len(data) // 2]))
    if ext == "wav":  # libsndfile reads what is there: the header tells that half is missing
        assert str(e.value) == "truncated: its header gives 32000 bytes of samples, the file holds 15978"


@pytest.mark.parametrize("ext", ["png", "jpg", "webp"])
def test_a_truncated_image_does_not_decode(ext: str) -> None:
    data = image_bytes(ext)
    with pytest.raises(NotDecodable):
        image_metadata(io.BytesIO(data[: len(data) // 2]))


def reader(kind: str, root: Path, store: str = "bytes") -> FileReader:
    return FileReader(kind, fsspec.filesystem("file"), str(root), store)


def test_the_reader_gives_a_row_with_the_files_bytes_and_sha256(tmp_path: Path) -> None:
    data = audio_bytes("flac")
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "bark.flac").write_bytes(data)
    got = reader("audio", tmp_path)(str(tmp_path / "dog" / "bark.flac"))
    assert got.reason is None
    assert got.row is not None
    assert got.row["path"] == "dog/bark.flac"
    assert got.row["content"] == data
    assert got.row["sha256"] == hashlib.sha256(data).hexdigest()
    by_path = reader("audio", tmp_path, store="path")(str(tmp_path / "dog" / "bark.flac")).row
    assert by_path is not None
    assert by_path["uri"] == str(tmp_path / "dog" / "bark.flac")
    assert "content" not in by_path
    assert {k: v for k, v in by_path.items() if k != "uri"} == {k: v for k, v in got.row.items() if k != "content"}


def test_a_file_of_the_other_kind_under_an_audio_extension_says_what_it_holds(tmp_path: Path) -> None:
    (tmp_path / "clip.wav").write_bytes(image_bytes("png"))
    (tmp_path / "empty.ogg").write_bytes(b"")
    (tmp_path / "cut.wav").write_bytes(audio_bytes("wav")[:30])
    read = reader("audio", tmp_path)
    assert read(str(tmp_path / "clip.wav")).reason == (
        "does not decode as audio: Format not recognised; its bytes are a PNG image"
    )
    assert read(str(tmp_path / "empty.ogg")).reason == "does not decode as audio: the file is empty"
    cut = read(str(tmp_path / "cut.wav")).reason
    assert cut is not None
    assert cut.startswith("does not decode as audio: ")
    assert "its bytes are" not in cut  # a broken WAV under .wav: nothing to add


def test_audio_under_an_image_extension_says_what_it_holds(tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(audio_bytes("flac"))
    got = reader("image", tmp_path)(str(tmp_path / "photo.jpg"))
    assert got.reason == "does not decode as an image: cannot identify image file; its bytes are FLAC audio"


def test_magic_numbers() -> None:
    assert looks_like(audio_bytes("wav")[:16]) == ("WAV", "WAV audio")
    assert looks_like(image_bytes("webp")[:16]) == ("WEBP", "a WEBP image")
    assert looks_like(b"hello, world....") is None


def write_manifest(path: Path, table: pa.Table) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pcsv.write_csv(table, path)
    return path


@pytest.mark.parametrize("name", ["labels.csv", "labels.parquet"])
def test_a_manifest_gives_each_relative_path_its_columns_with_their_types(tmp_path: Path, name: str) -> None:
    table = pa.table({"path": ["./a/1.wav", "b\\2.wav"], "digit": [1, 2], "speaker": ["ann", None]})
    fields, rows = read_manifest(str(write_manifest(tmp_path / name, table)), {"path", "sha256"})
    assert [(f.name, f.type) for f in fields] == [("digit", pa.int64()), ("speaker", pa.string())]
    assert rows == {"a/1.wav": {"digit": 1, "speaker": "ann"}, "b/2.wav": {"digit": 2, "speaker": None}}


def test_manifest_mistakes_are_named(tmp_path: Path) -> None:
    no_path = write_manifest(tmp_path / "a.csv", pa.table({"paths": ["x.wav"], "label": ["1"]}))
    with pytest.raises(DataValidationError, match=r"no 'path' column \(did you mean 'paths'\? rename it\)"):
        read_manifest(str(no_path), set())
    twice = write_manifest(tmp_path / "b.csv", pa.table({"path": ["x.wav", "./x.wav"], "label": ["1", "2"]}))
    with pytest.raises(DataValidationError, match=r"lists 'x.wav' twice"):
        read_manifest(str(twice), set())
    clash = write_manifest(tmp_path / "c.csv", pa.table({"path": ["x.wav"], "sha256": ["0"]}))
    with pytest.raises(DataValidationError, match=r"columns \['sha256'\] that ExampleGen fills"):
        read_manifest(str(clash), {"sha256"})
    with pytest.raises(DataValidationError, match=r"must be a .csv, .tsv or .parquet"):
        read_manifest(str(tmp_path / "labels.json"), set())


def test_one_source_at_a_time_gives_what_the_stream_gives_and_the_input_travels(tmp_path: Path) -> None:
    """``rows`` (a worker of another engine, after the input was shipped there) and ``batches``
    (threads of this machine) give the same rows, quarantine and warnings."""
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.png").write_bytes(image_bytes("png"))
    (tmp_path / "cat" / "b.png").write_bytes(image_bytes("jpg"))  # a JPEG under .png: read, with a warning
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "c.webp").write_bytes(image_bytes("webp")[:40])
    (tmp_path / "top.jpg").write_bytes(image_bytes("jpg"))  # above the label folders: no label
    (tmp_path / "notes.txt").write_text("not an image")
    paths = sorted(str(p) for p in tmp_path.rglob("*.*"))
    sources = [Source(p, Path(p).stat().st_size) for p in paths]

    def read(one_at_a_time: bool) -> tuple[list[dict], list[str], list[str], list[str]]:
        fmt = MediaInput("image", fsspec.filesystem("file"), str(tmp_path), {None: "**"})
        fmt.prepare(sources)
        if one_at_a_time:
            fmt = pickle.loads(pickle.dumps(fmt))
        found, bad = [], []
        for source in sources:
            on_bad = lambda line, reason, text, path=source.path: bad.append(f"{Path(path).name}: {reason}")  # noqa: E731
            if one_at_a_time:
                batches = fmt.rows(fmt.open(source), source, on_bad, fmt.warn) if fmt.admit(source, None) else []
            else:
                batches = fmt.batches(source, on_bad)
            found += [row for batch, _ in batches for row in batch.to_pylist()]
        return found, bad, fmt.warnings(), fmt.notes

    streamed, one = read(False), read(True)
    assert streamed == one
    found, bad, warnings, notes = streamed
    assert [(r["path"], r["format"], r.get("label")) for r in found] == [
        ("cat/a.png", "PNG", "cat"),
        ("cat/b.png", "JPEG", "cat"),
        ("top.jpg", "JPEG", None),
    ]
    assert bad == ["c.webp: does not decode as an image: could not create decoder object"]
    assert warnings == [
        "1 file holds another format than its extension says, and is read as what it holds: cat/b.png (JPEG); "
        "rename it, or check where it came from.",
        "1 file is not in a label folder, so its label is blank: top.jpg.",
    ]
    assert notes == [f"ExampleGen reads image files and leaves out {tmp_path}/notes.txt: not an image extension."]
