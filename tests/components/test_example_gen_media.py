"""ExampleGen over folders of audio and images, and the validation steps after it, in real pipeline runs.

The files are written here with soundfile and Pillow; what a user checks is compared with
what was written: the bytes, their sha256 (hashlib), the folder a file lies in, its rate.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conveyor import Pipeline, PipelineDefinitionError
from conveyor.artifacts import Examples
from conveyor.components import ExampleGen, ExampleValidator, ImportSchemaGen, SchemaGen, StatisticsGen

sf = pytest.importorskip("soundfile", reason="the media extra: pip install 'conveyor[media]'")
Image = pytest.importorskip("PIL.Image", reason="the media extra: pip install 'conveyor[media]'")


def write_audio(
    path: Path, seconds: float = 0.5, rate: int = 16000, ext_format: str = "WAV", pitch: float = 440
) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(2 * np.pi * pitch * t), rate, format=ext_format, subtype="PCM_16")
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def write_image(path: Path, size: tuple[int, int], mode: str = "RGB", fmt: str = "PNG") -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.new(mode, size, color=0).save(buf, format=fmt)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def digits(root: Path, n: int = 40, **audio: Any) -> dict[str, bytes]:
    """``n`` clips in folders named by their label, ``yes/`` and ``no/``; relative path -> bytes."""
    written = {}
    for i in range(n):
        rel = f"{'yes' if i % 2 else 'no'}/clip-{i:03d}.wav"
        written[rel] = write_audio(root / rel, pitch=200 + 10 * i, **audio)
    return written


def rows(examples: Any) -> dict[str, dict[str, Any]]:
    """Every row of every split, by its path, with the split it is in."""
    found = {}
    for split in examples.properties["split_names"]:
        for row in pq.read_table(Path(examples.uri) / f"Split-{split}").to_pylist():
            found[row["path"]] = {**row, "split": split}
    return found


def run_gen(tmp_path: Path, gen: ExampleGen, name: str = "media") -> Any:
    run = Pipeline(name, [gen], root=tmp_path / "root").run()
    execution = run.executions[gen.id]
    assert run.status == "succeeded", execution.error
    return execution


def test_a_folder_of_audio_becomes_rows_with_bytes_hash_label_and_metadata(tmp_path: Path) -> None:
    written = digits(tmp_path / "clips")
    gen = ExampleGen(input_base=str(tmp_path / "clips"), input_format="audio")
    examples = run_gen(tmp_path, gen).outputs["examples"][0]
    props = examples.properties
    assert (props["format"], props["quarantined"], props["split_names"]) == ("audio", 0, ["train", "eval"])
    assert sum(props["row_counts"].values()) == 40
    got = rows(examples)
    assert set(got) == set(written)
    for rel, data in written.items():
        row = got[rel]
        assert row["content"] == data
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["label"] == rel.split("/")[0]
        assert (row["format"], row["sample_rate"], row["channels"], row["frames"]) == ("WAV", 16000, 1, 8000)
        assert row["duration"] == 0.5
        assert -14 < row["loudness"] < -13  # a sine of amplitude 0.3: 20 log10(0.3 / sqrt 2) = -13.5 dBFS
    schema = pq.read_schema(next((Path(examples.uri) / "Split-train").glob("*.parquet")))
    assert schema.names == [
        "path",
        "content",
        "sha256",
        "format",
        "sample_rate",
        "channels",
        "frames",
        "duration",
        "loudness",
        "label",
    ]
    assert schema.field("content").type == pa.binary()
    assert Pipeline("media", [gen], root=tmp_path / "root").run().executions["ExampleGen"].status == "cached"


def test_a_files_split_follows_its_path_alone(tmp_path: Path) -> None:
    """New files, or new bytes in a file, move no file to another split."""
    digits(tmp_path / "clips")
    gen = ExampleGen(input_base=str(tmp_path / "clips"), input_format="audio")
    first = rows(run_gen(tmp_path, gen).outputs["examples"][0])
    assert {r["split"] for r in first.values()} == {"train", "eval"}
    for i in range(40, 60):
        write_audio(tmp_path / "clips" / "no" / f"clip-{i:03d}.wav")
    write_audio(tmp_path / "clips" / "no" / "clip-000.wav", seconds=0.25)
    again = rows(run_gen(tmp_path, gen).outputs["examples"][0])
    assert len(again) == 60
    assert again["no/clip-000.wav"]["duration"] == 0.25
    assert {p: again[p]["split"] for p in first} == {p: r["split"] for p, r in first.items()}


def test_files_that_do_not_decode_are_quarantined_with_the_reason_and_counted(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    digits(clips)
    whole = write_audio(clips / "no" / "cut.wav", seconds=1.0)
    (clips / "no" / "cut.wav").write_bytes(whole[: len(whole) // 2])
    write_image(clips / "yes" / "picture.wav", (8, 8))
    write_audio(clips / "yes" / "really-a-wav.flac")  # decodes, as what its bytes are
    (clips / "notes.txt").write_text("recorded in March\n")
    gen = ExampleGen(input_base=str(clips), input_format="audio", max_quarantine_fraction=0.1)
    examples = run_gen(tmp_path, gen).outputs["examples"][0]
    assert examples.properties["quarantined"] == 2
    assert sum(examples.properties["row_counts"].values()) == 41
    assert rows(examples)["yes/really-a-wav.flac"]["format"] == "WAV"
    assert examples.properties["warnings"] == [
        "1 file holds another format than its extension says, and is read as what it holds: "
        "yes/really-a-wav.flac (WAV); rename it, or check where it came from."
    ]
    records = [
        json.loads(line) for line in (Path(examples.uri) / "_quarantine" / "rows.jsonl").read_text().splitlines()
    ]
    assert {(Path(r["file"]).name, r["reason"]) for r in records} == {
        (
            "cut.wav",
            "does not decode as audio: truncated: its header gives 32000 bytes of samples, the file holds 15978",
        ),
        ("picture.wav", "does not decode as audio: Format not recognised; its bytes are a PNG image"),
    }


def test_more_bad_files_than_allowed_fail_the_step_naming_them(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    digits(clips, n=10)
    (clips / "no" / "empty.wav").write_bytes(b"")
    run = Pipeline("strict", [ExampleGen(input_base=str(clips), input_format="audio")], root=tmp_path / "root").run()
    error = run.executions["ExampleGen"].error or ""
    assert run.status == "failed"
    assert "could not read 1 of 11 rows (9.1%), more than max_quarantine_fraction=0.05" in error
    assert "empty.wav: does not decode as audio: the file is empty" in error


def test_images_take_their_labels_from_a_manifest_and_a_changed_manifest_runs_again(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    sizes = {"a.png": ((32, 24), "RGB", "PNG"), "b.jpg": ((16, 16), "L", "JPEG"), "c/d.webp": ((8, 4), "RGBA", "WEBP")}
    written = {rel: write_image(photos / rel, size, mode, fmt) for rel, (size, mode, fmt) in sizes.items()}
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label,taken_by\na.png,cat,ann\nb.jpg,dog,\n")
    gen = ExampleGen(input_base=str(photos), input_format="image", manifest=str(manifest), splits={"all": 1})
    execution = run_gen(tmp_path, gen)
    got = rows(execution.outputs["examples"][0])
    assert {rel: (r["width"], r["height"], r["mode"], r["format"]) for rel, r in got.items()} == {
        rel: (size[0], size[1], mode, fmt) for rel, (size, mode, fmt) in sizes.items()
    }
    assert {rel: r["content"] for rel, r in got.items()} == written
    assert {rel: (r["label"], r["taken_by"]) for rel, r in got.items()} == {
        "a.png": ("cat", "ann"),
        "b.jpg": ("dog", None),
        "c/d.webp": (None, None),
    }
    assert execution.outputs["examples"][0].properties["warnings"] == [
        f"1 file is not in the manifest {manifest}, so its label is blank: c/d.webp."
    ]
    manifest.write_text("path,label,taken_by\na.png,cat,ann\nb.jpg,dog,\nc/d.webp,cat,bob\n")
    again = run_gen(tmp_path, gen)
    assert again.status == "succeeded"
    assert rows(again.outputs["examples"][0])["c/d.webp"]["label"] == "cat"


def test_store_path_keeps_where_each_file_is_instead_of_its_bytes(tmp_path: Path) -> None:
    written = digits(tmp_path / "clips", n=6)
    gen = ExampleGen(input_base=str(tmp_path / "clips"), input_format="audio", store="path")
    got = rows(run_gen(tmp_path, gen).outputs["examples"][0])
    for rel, data in written.items():
        assert "content" not in got[rel]
        assert Path(got[rel]["uri"]).read_bytes() == data
        assert got[rel]["sha256"] == hashlib.sha256(data).hexdigest()


def test_spans_of_media_folders_and_labels_below_them(tmp_path: Path) -> None:
    digits(tmp_path / "clips" / "span-1", n=4)
    second = digits(tmp_path / "clips" / "span-2", n=6)
    gen = ExampleGen(input_base=str(tmp_path / "clips"), input_format="audio", pattern="span-{SPAN}/**")
    examples = run_gen(tmp_path, gen).outputs["examples"][0]
    assert (examples.properties["span"], examples.properties["spans"]) == (2, [2])
    got = rows(examples)
    assert {rel: r["label"] for rel, r in got.items()} == {f"span-2/{rel}": rel.split("/")[0] for rel in second}


def test_row_groups_hold_a_bounded_number_of_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are read and written a few files at a time (here 64 KiB of them), never the whole folder at once."""
    monkeypatch.setattr("conveyor.io.parquet.ROW_GROUP_BYTES", 64 << 10)
    monkeypatch.setattr("conveyor.io.media.BATCH_BYTES", 64 << 10)
    written = digits(tmp_path / "clips", n=30, seconds=1.0)  # 32 KB a file
    out = tmp_path / "out"
    out.mkdir()
    examples = Examples(uri=str(out))
    ExampleGen.execute(examples, input_base=str(tmp_path / "clips"), input_format="audio", splits={"all": 1})
    meta = pq.ParquetFile(next((out / "Split-all").glob("*.parquet"))).metadata
    assert meta.num_rows == len(written)
    assert meta.num_row_groups >= 10
    assert max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) <= 3


def test_statistics_schema_and_validation_on_the_metadata_columns(tmp_path: Path) -> None:
    """A domain of sample_rate 16000 only flags the one 22050 Hz file; a second span of longer clips drifts."""
    clips = tmp_path / "clips"
    for i in range(40):
        write_audio(clips / "span-1" / f"{'yes' if i % 2 else 'no'}/{i}.wav", seconds=0.5 + i / 100)
        write_audio(clips / "span-2" / f"{'yes' if i % 2 else 'no'}/{i}.wav", seconds=1.5 + i / 100)
    write_audio(clips / "span-2" / "yes" / "odd-rate.wav", seconds=1.7, rate=22050)

    def gens() -> tuple[ExampleGen, ExampleGen, StatisticsGen, StatisticsGen]:
        old = ExampleGen(input_base=str(clips), input_format="audio", pattern="span-{SPAN}/**", span=1)
        new = ExampleGen(input_base=str(clips), input_format="audio", pattern="span-{SPAN}/**", span=2)
        old, new = old.with_id("span_1"), new.with_id("span_2")
        old_stats = StatisticsGen(examples=old.outputs["examples"]).with_id("stats_1")
        new_stats = StatisticsGen(examples=new.outputs["examples"]).with_id("stats_2")
        return old, new, old_stats, new_stats

    old, new, old_stats, new_stats = gens()
    inferred = SchemaGen(statistics=old_stats.outputs["statistics"])
    checked = ExampleValidator(statistics=old_stats.outputs["statistics"], schema=inferred.outputs["schema"])
    run = Pipeline("audio", [old, new, old_stats, new_stats, inferred, checked], root=tmp_path / "root").run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items() if e.error}
    stats = json.loads(
        (Path(run.executions["stats_1"].outputs["statistics"][0].uri) / "Split-train" / "statistics.json").read_text()
    )
    features = stats["features"]
    assert features["sample_rate"]["type"] == "int"
    assert (features["sample_rate"]["min"], features["sample_rate"]["max"]) == (16000, 16000)
    assert features["duration"]["type"] == "float"
    assert 0.5 <= features["duration"]["min"] < features["duration"]["max"] <= 0.9
    assert {v["value"] for v in features["label"]["top_values"]} == {"yes", "no"}
    schema = yaml.safe_load((Path(run.executions["SchemaGen"].outputs["schema"][0].uri) / "schema.yaml").read_text())
    by_name = {f["name"]: f for f in schema["features"]}
    assert by_name["label"]["domain"]["values"] == ["no", "yes"]
    assert "domain" not in by_name["path"]  # every path is seen once: not a category
    for name in ("sample_rate", "channels", "frames", "duration", "loudness"):
        assert by_name[name]["type"] in ("int", "float")
    anomalies = Path(run.executions["ExampleValidator"].outputs["anomalies"][0].uri)
    for split in ("train", "eval"):
        assert json.loads((anomalies / f"Split-{split}" / "anomalies.json").read_text())["anomalies"] == []

    by_name["sample_rate"]["domain"] = {"min": 16000, "max": 16000}
    by_name["duration"]["drift_comparator"] = {"jensen_shannon": 0.1}
    edited = tmp_path / "schema.yaml"
    edited.write_text(yaml.safe_dump(schema))
    old, new, old_stats, new_stats = gens()
    imported = ImportSchemaGen(schema_file=str(edited))
    validator = ExampleValidator(
        statistics=new_stats.outputs["statistics"],
        schema=imported.outputs["schema"],
        baseline_statistics=old_stats.outputs["statistics"],
        fail_on="never",
    )
    run = Pipeline("audio", [old, new, old_stats, new_stats, imported, validator], root=tmp_path / "root").run()
    assert run.status == "succeeded", {k: e.error for k, e in run.executions.items() if e.error}
    assert run.executions["span_1"].status == "cached"
    found = []
    for split in ("train", "eval"):
        doc = json.loads((Path(validator_uri(run)) / f"Split-{split}" / "anomalies.json").read_text())
        found += [(a["feature"], a["kind"]) for a in doc["anomalies"]]
    assert ("sample_rate", "OUT_OF_RANGE") in found
    assert found.count(("sample_rate", "OUT_OF_RANGE")) == 1  # the one split the odd file is in
    assert ("duration", "DRIFT_JENSEN_SHANNON") in found
    assert {f for f, _ in found} <= {"sample_rate", "duration", "frames", "loudness", "path", "sha256", "content"}


def validator_uri(run: Any) -> str:
    return str(run.executions["ExampleValidator"].outputs["anomalies"][0].uri)


def test_media_parameters_are_checked_when_the_pipeline_is_built(tmp_path: Path) -> None:
    with pytest.raises(PipelineDefinitionError, match=r"store must be 'bytes' .* or 'path' .*; got 'pixels'"):
        ExampleGen(input_base=str(tmp_path), input_format="image", store="pixels")
    with pytest.raises(PipelineDefinitionError, match=r"store and manifest are for input_format='audio' or 'image'"):
        ExampleGen(input_base=str(tmp_path), input_format="csv", manifest=str(tmp_path / "labels.csv"))
    with pytest.raises(PipelineDefinitionError, match=r"one of csv, parquet, jsonl, avro, audio, image"):
        ExampleGen(input_base=str(tmp_path), input_format="video")


def test_input_splits_keep_each_folders_files_in_its_split(tmp_path: Path) -> None:
    for i in range(5):
        write_image(tmp_path / "photos" / "train" / ("cat" if i % 2 else "dog") / f"{i}.png", (4, 4))
        write_image(tmp_path / "photos" / "test" / ("cat" if i % 2 else "dog") / f"{i}.png", (4, 4))
    gen = ExampleGen(
        input_base=str(tmp_path / "photos"), input_format="image", input_splits={"train": "train/**", "test": "test/**"}
    )
    examples = run_gen(tmp_path, gen).outputs["examples"][0]
    assert examples.properties["row_counts"] == {"train": 5, "test": 5}
    got = rows(examples)
    assert {(rel, r["split"], r["label"]) for rel, r in got.items()} == {
        (f"{split}/{'cat' if i % 2 else 'dog'}/{i}.png", split, "cat" if i % 2 else "dog")
        for split in ("train", "test")
        for i in range(5)
    }


def test_a_folder_behind_an_fsspec_url_gives_the_same_rows_and_splits(tmp_path: Path) -> None:
    written = digits(tmp_path / "clips", n=12)
    fs = fsspec.filesystem("memory")
    for rel, data in written.items():
        fs.pipe_file(f"/media-test/clips/{rel}", data)
    found = {}
    try:
        for where in (str(tmp_path / "clips"), "memory://media-test/clips"):
            out = tmp_path / f"out-{len(found)}"
            out.mkdir()
            examples = Examples(uri=str(out))
            ExampleGen.execute(examples, input_base=where, input_format="audio", store="path")
            found[where] = rows(examples)
        local, remote = found.values()
        for rel, data in written.items():
            with fsspec.open(remote[rel]["uri"], "rb") as f:
                assert f.read() == data
    finally:
        fs.rm("/media-test", recursive=True)
    assert [{k: v for k, v in r.items() if k != "uri"} for r in local.values()] == [
        {k: v for k, v in r.items() if k != "uri"} for r in remote.values()
    ]


def test_on_beam_the_files_decode_on_its_workers_into_the_same_rows(tmp_path: Path) -> None:
    pytest.importorskip("apache_beam", reason="the Beam engine needs apache_beam: pip install 'conveyor[beam]'")
    clips = tmp_path / "clips"
    digits(clips, n=12)
    (clips / "no" / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    write_audio(clips / "top.flac")
    found = []
    for args in (None, ["--runner=DirectRunner"]):
        gen = ExampleGen(input_base=str(clips), input_format="audio", max_quarantine_fraction=0.2)
        run = Pipeline("media", [gen], root=tmp_path / f"root-{len(found)}", beam_pipeline_args=args).run()
        assert run.status == "succeeded", run.executions["ExampleGen"].error
        examples = run.executions["ExampleGen"].outputs["examples"][0]
        props = {k: v for k, v in examples.properties.items() if k != "fingerprint"}
        found.append((props, rows(examples)))
    assert found[0] == found[1]
    assert found[0][0]["quarantined"] == 1
    assert len(found[0][0]["warnings"]) == 2  # top.flac: a WAV, and in no label folder
