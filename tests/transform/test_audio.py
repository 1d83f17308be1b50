"""Audio ops against librosa (the oracle for log-mel and MFCC: never imported by conveyor),
resampling against a sine's exact samples and SciPy, and one clip served alone against its batch.

"Within 1e-5" below is relative to each value (``rtol=1e-5``), with no absolute slack for
log-mel and 1e-12 of the clip's largest coefficient for MFCC, where librosa's FFT-based DCT
gives exactly 0 for a silent (constant) frame and a sum gives 1e-14. librosa is fed the same
samples as float64, so both compute in double precision.
"""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import conveyor.transform as ct
from conveyor import Output, Pipeline, component
from conveyor.artifacts import Examples
from conveyor.components.import_schema_gen import ImportSchemaGen
from conveyor.components.transform import Transform
from conveyor.exceptions import TransformError
from conveyor.transform.fit import fit
from conveyor.transform.fitted import FittedGraph
from conveyor.transform.graph import trace
from conveyor.transform.transformed import decode, read_schema

soundfile = pytest.importorskip("soundfile", reason="the audio ops decode with soundfile: pip install 'conveyor[media]'")
pytest.importorskip("soxr", reason="ct.resample's default method is soxr: pip install soxr")
librosa = pytest.importorskip("librosa", reason="librosa is the oracle for log-mel and MFCC (the dev extra)")

RATE = 16000


def tone(seconds: float, rate: int = RATE, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A chirp with some noise, (samples, channels) float32: every mel band gets energy."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    base = 0.4 * np.sin(2 * np.pi * (150 + 900 * rng.random()) * t * (1 + t)) + 0.05 * rng.standard_normal(len(t))
    return np.stack([base * (0.5 + c) / channels for c in range(channels)], axis=1).astype(np.float32)


def wav(samples: np.ndarray, rate: int = RATE, format: str = "WAV", subtype: str = "FLOAT") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=format, subtype=subtype)
    return buffer.getvalue()


CLIPS = [wav(tone(0.4 + 0.15 * i, seed=i)) for i in range(8)] + [
    wav(tone(0.7, rate=22050, seed=20), rate=22050),  # resampled on decoding
    wav(tone(1.3, channels=2, seed=21)),  # mixed to mono
    wav(tone(0.5, seed=22), format="FLAC", subtype="PCM_16"),
]


def fitted(fn: Any, clips: list[bytes | None], batch_rows: int = 4) -> FittedGraph:
    """Traced, fitted over batches on several workers, to JSON and back: what ``ct.load`` gives."""
    outputs = trace(fn, {"audio": "bytes"})
    table = pa.table({"audio": pa.array(clips, pa.binary())})
    fit(outputs, lambda: table.to_batches(max_chunksize=batch_rows), workers=3)
    doc = json.loads(json.dumps(FittedGraph(outputs, {"audio": {"kind": "bytes"}}).to_json(), allow_nan=False))
    return FittedGraph.from_json(doc)


def apply(fn: Any, clips: list[bytes | None]) -> dict[str, np.ndarray]:
    return fitted(fn, clips).apply({"audio": clips})


def one_second(inputs: Any, **mel: Any) -> dict[str, Any]:
    clip = ct.pad_or_trim(ct.decode_audio(inputs["audio"], sample_rate=RATE), RATE)
    return {"clip": clip, "mel": ct.log_mel_spectrogram(clip, **mel)}


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"n_mels": 40, "n_fft": 512, "hop_length": 160},
        {"n_mels": 64, "htk": True, "fmin": 60.0, "fmax": 7600.0},
        {"n_mels": 32, "norm": None, "power": 1.0, "top_db": None},
        {"n_mels": 80, "n_fft": 1024, "ref": 10.0, "amin": 1e-6, "top_db": 40.0},
    ],
)
def test_log_mel_is_librosas(params: dict[str, Any]) -> None:
    out = apply(lambda inputs: one_second(inputs, **params), CLIPS)
    n_mels = params.get("n_mels", 128)
    mel_args = {k: v for k, v in params.items() if k not in ("ref", "amin", "top_db")}
    db_args = {k: v for k, v in params.items() if k in ("ref", "amin", "top_db")}
    for clip, mel in zip(out["clip"], out["mel"], strict=True):
        spectrum = librosa.feature.melspectrogram(y=clip.astype(np.float64), sr=RATE, **mel_args)
        expected = librosa.power_to_db(spectrum, **db_args)
        np.testing.assert_allclose(mel.reshape(n_mels, -1), expected, rtol=1e-5, atol=0)


def test_decoding_is_soundfiles_mixed_as_librosa_mixes_resampled_by_soxr() -> None:
    import soxr

    out = apply(lambda inputs: {"clip": ct.pad_or_trim(ct.decode_audio(inputs["audio"], sample_rate=RATE), 2 * RATE)}, CLIPS)
    for data, clip in zip(CLIPS, out["clip"], strict=True):
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        mono = librosa.to_mono(samples.T)
        expected = soxr.resample(mono, rate, RATE) if rate != RATE else mono
        assert np.array_equal(clip[: len(expected)], expected.astype(np.float64))
        assert not clip[len(expected) :].any()  # padded with zeros


def test_mfcc_is_librosas_from_clips_or_from_a_log_mel_column() -> None:
    def fn(inputs: Any) -> dict[str, Any]:
        out = one_second(inputs, n_mels=64)
        out["from_mel"] = ct.mfcc(out["mel"], n_mfcc=13)
        out["from_clip"] = ct.mfcc(out["clip"])
        return out

    out = apply(fn, CLIPS)
    for i, clip in enumerate(out["clip"].astype(np.float64)):
        expected13 = librosa.feature.mfcc(y=clip, sr=RATE, n_mels=64, n_mfcc=13)
        np.testing.assert_allclose(out["from_mel"][i].reshape(13, -1), expected13, rtol=1e-5, atol=1e-12 * np.abs(expected13).max())
        expected20 = librosa.feature.mfcc(y=clip, sr=RATE)
        np.testing.assert_allclose(out["from_clip"][i].reshape(20, -1), expected20, rtol=1e-5, atol=1e-12 * np.abs(expected20).max())


@pytest.mark.parametrize(("method", "error"), [("soxr", 2e-4), ("polyphase", 1e-3)])
def test_resampling_keeps_a_sine_where_it_is(method: str, error: float) -> None:
    """A 440 Hz sine at 44.1 kHz brought to 16 kHz is the sine sampled at 16 kHz: the exact
    oracle, away from the ends, where each method's filter starts from silence. SciPy's
    default Kaiser window ripples more in the pass band than soxr's filter.
    """
    t = np.arange(44100) / 44100
    sine = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = apply(lambda inputs: {"clip": ct.pad_or_trim(ct.resample(ct.decode_audio(inputs["audio"], sample_rate=44100), RATE, method=method), RATE)}, [wav(sine[:, None], 44100)])
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)
    middle = slice(500, RATE - 500)
    np.testing.assert_allclose(out["clip"][0][middle], expected[middle], atol=error)


def test_polyphase_resampling_is_scipys_of_the_clips() -> None:
    from scipy.signal import resample_poly

    def fn(inputs: Any) -> dict[str, Any]:
        clip = ct.pad_or_trim(ct.decode_audio(inputs["audio"], sample_rate=RATE), RATE)
        return {
            "clip": clip,
            "poly": ct.resample(clip, 22050, method="polyphase"),
            "soxr": ct.resample(clip, 22050),
        }

    out = apply(fn, CLIPS[:4])
    assert out["poly"].shape == out["soxr"].shape == (4, 22050)
    for clip, poly in zip(out["clip"], out["poly"], strict=True):
        assert np.array_equal(poly, resample_poly(clip.astype(np.float32), 441, 320).astype(np.float32))


def test_a_dense_resample_is_as_wide_as_traced() -> None:
    """The width the graph declares when tracing is the length each method gives (soxr rounds, SciPy rounds up)."""

    def fn(inputs: Any) -> dict[str, Any]:
        clip = ct.pad_or_trim(ct.decode_audio(inputs["audio"], sample_rate=RATE), 1001)
        return {"soxr": ct.resample(clip, 44100), "poly": ct.resample(clip, 44100, method="polyphase")}

    graph = fitted(fn, CLIPS[:2])
    out = graph.apply({"audio": CLIPS[:2]})
    assert [node.width for node in graph.outputs.values()] == [out["soxr"].shape[1], out["poly"].shape[1]] == [2759, 2760]


def test_pad_or_trim_keeps_the_start_and_a_missing_clip_is_nan() -> None:
    short, long = tone(0.25), tone(2.0, seed=1)
    out = apply(lambda inputs: {"clip": ct.pad_or_trim(ct.decode_audio(inputs["audio"], sample_rate=RATE), RATE)}, [wav(short), wav(long), None])
    assert np.array_equal(out["clip"][0][: len(short)], short[:, 0]) and not out["clip"][0][len(short) :].any()
    assert np.array_equal(out["clip"][1], long[:RATE, 0])
    assert np.isnan(out["clip"][2]).all()


def test_channels_kept_one_after_the_other() -> None:
    stereo = tone(0.5, channels=2, seed=3)

    def fn(inputs: Any) -> dict[str, Any]:
        clip = ct.pad_or_trim(ct.decode_audio(inputs["audio"], sample_rate=RATE, mono=False, channels=2), RATE)
        return {"clip": clip, "mel": ct.log_mel_spectrogram(clip, n_mels=40)}

    graph = fitted(fn, [wav(stereo)])
    out = graph.apply({"audio": [wav(stereo)]})
    planar = out["clip"][0].reshape(2, RATE)
    assert np.array_equal(planar[:, : len(stereo)], stereo.T)
    expected = librosa.power_to_db(librosa.feature.melspectrogram(y=planar.astype(np.float64), sr=RATE, n_mels=40))
    np.testing.assert_allclose(out["mel"][0].reshape(2, 40, -1), expected, rtol=1e-5, atol=0)
    assert graph.describe()["mel"]["shape"] == [2, 40, 32]
    with pytest.raises(TransformError, match=r"channels=2\) got a file of 1 channel"):
        graph.apply({"audio": [wav(tone(0.5))]})


def every_op(inputs: Any) -> dict[str, Any]:
    audio = ct.decode_audio(inputs["audio"], sample_rate=RATE)
    clip = ct.pad_or_trim(audio, RATE)
    mel = ct.log_mel_spectrogram(clip, n_mels=48)
    return {
        "clip": clip,
        "low": ct.pad_or_trim(ct.resample(audio, 8000), 8000),
        "low_poly": ct.resample(clip, 8000, method="polyphase"),
        "mel": mel,
        "mfcc": ct.mfcc(mel, n_mfcc=13),
        "mel_z_per_band": ct.scale_to_z_score(mel, per_axis=0),
        "mel_z_per_cell": ct.scale_to_z_score(mel),
        "mel_0_1": ct.scale_to_0_1(mel, per_axis=-1),
        "short_window": ct.log_mel_spectrogram(ct.pad_or_trim(audio, 4000), n_fft=256, n_mels=20),
    }


def test_one_clip_alone_gets_the_bits_of_its_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    mono = [c for c in CLIPS if soundfile.info(io.BytesIO(c)).channels == 1]
    clips = [*mono, None]
    graph = fitted(every_op, clips)
    batch = graph.apply({"audio": clips})

    def refuse(*_: Any) -> Any:
        raise AssertionError("the batch path ran for one row")

    monkeypatch.setattr("conveyor.transform.fitted.read_inputs", refuse)
    for i, clip in enumerate(clips):
        alone = graph.apply({"audio": clip})
        for name, value in batch.items():
            assert alone[name].shape == (1, value.shape[1]), name
            assert alone[name].tobytes() == value[i : i + 1].tobytes(), f"{name} of clip {i}"


def test_per_bin_statistics_are_numpys_over_the_training_rows() -> None:
    def fn(inputs: Any) -> dict[str, Any]:
        mel = one_second(inputs, n_mels=24)["mel"]
        return {
            "mel": mel,
            "z_band": ct.scale_to_z_score(mel, per_axis=0),
            "z_cell": ct.scale_to_z_score(mel),
            "unit": ct.scale_to_0_1(mel, per_axis=0),
        }

    clips = [*CLIPS, None]  # a missing clip: left out of the statistics
    out = apply(fn, clips)
    mel = out["mel"][:-1].reshape(-1, 24, 32)
    bands = mel.transpose(1, 0, 2).reshape(24, -1)
    mean, std = bands.mean(axis=1), bands.std(axis=1)
    np.testing.assert_allclose(out["z_band"][:-1].reshape(-1, 24, 32), (mel - mean[:, None]) / std[:, None], rtol=1e-9, atol=1e-12)
    flat = out["mel"][:-1]
    np.testing.assert_allclose(out["z_cell"][:-1], (flat - flat.mean(axis=0)) / flat.std(axis=0), rtol=1e-9, atol=1e-12)
    low, high = bands.min(axis=1)[:, None], bands.max(axis=1)[:, None]
    np.testing.assert_allclose(out["unit"][:-1].reshape(-1, 24, 32), (mel - low) / (high - low), rtol=1e-12, atol=1e-15)
    assert np.isnan(out["z_band"][-1]).all()


def test_what_the_audio_ops_refuse_names_the_line() -> None:
    def signal_out(inputs: Any) -> dict[str, Any]:
        return {"audio": ct.decode_audio(inputs["audio"], sample_rate=RATE)}

    with pytest.raises(TransformError, match=r"test_audio.py:\d+: .*'audio' is a signal column, not a feature; make one of it with ct.pad_or_trim"):
        trace(signal_out, {"audio": "bytes"})
    with pytest.raises(TransformError, match=r"ct.decode_audio takes a bytes column, got a string column"):
        trace(lambda inputs: {"x": ct.decode_audio(inputs["name"], sample_rate=RATE)}, {"name": "string"})
    with pytest.raises(TransformError, match=r"n_fft must be even"):
        trace(lambda inputs: one_second(inputs, n_fft=401), {"audio": "bytes"})
    with pytest.raises(TransformError, match=r"ct.pad_or_trim takes a signal column, got a number column"):
        trace(lambda inputs: {"x": ct.pad_or_trim(inputs["n"], 10)}, {"n": "number"})
    with pytest.raises(TransformError, match=r"per_axis must be an axis of the rows' shape \[128, 32\], got 2"):
        trace(lambda inputs: {"x": ct.scale_to_z_score(one_second(inputs)["mel"], per_axis=2)}, {"audio": "bytes"})


def test_bytes_that_are_no_audio_fail_with_what_to_do() -> None:
    graph = fitted(lambda inputs: {"clip": ct.pad_or_trim(ct.decode_audio(inputs["audio"], sample_rate=RATE), RATE)}, CLIPS[:2])
    with pytest.raises(TransformError, match=r"bytes do not decode as audio .*quarantines such files") as caught:
        graph.apply({"audio": b"RIFF but not really a wav file"})
    assert "object at 0x" not in str(caught.value)  # libsndfile's reason, not a buffer's repr
    with pytest.raises(TransformError, match=r"bytes do not decode as audio"):
        graph.apply({"audio": [CLIPS[0], CLIPS[10][:40]]})  # a flac file cut in its header


@component
def audio_examples(examples: Output[Examples]) -> None:
    """A tiny Examples of wav bytes and a label, as ExampleGen's audio input writes it."""
    for split, seeds in {"train": range(6), "eval": range(6, 8)}.items():
        folder = Path(examples.uri) / f"Split-{split}"
        folder.mkdir()
        table = pa.table({
            "audio": pa.array([wav(tone(0.5 + 0.1 * s, seed=s)) for s in seeds], pa.binary()),
            "label": pa.array([s % 2 for s in seeds], pa.int64()),
        })
        pq.write_table(table, folder / "part-00000.parquet", row_group_size=3)


def test_transform_writes_log_mel_features_of_wav_bytes(tmp_path: Path) -> None:
    (tmp_path / "schema.yaml").write_text(textwrap.dedent("""\
        features:
          - {name: audio, type: other, presence: {min_fraction: 1.0}}
          - {name: label, type: int, not_in_environments: [SERVING]}
    """))
    (tmp_path / "module.py").write_text(textwrap.dedent("""\
        import conveyor.transform as ct

        def preprocessing_fn(inputs):
            clip = ct.pad_or_trim(ct.decode_audio(inputs["audio"], sample_rate=16000), 16000)
            mel = ct.log_mel_spectrogram(clip, n_mels=40)
            return {"mel": mel, "mel_z": ct.scale_to_z_score(mel, per_axis=0), "label": inputs["label"]}
    """))
    gen = audio_examples()
    schema = ImportSchemaGen(schema_file=str(tmp_path / "schema.yaml"))
    transform = Transform(gen.outputs["examples"], schema.outputs["schema"], str(tmp_path / "module.py"))
    run = Pipeline("audio", [gen, schema, transform], root=tmp_path / "root").run()
    assert run.executions["Transform"].status == "succeeded", run.executions["Transform"].error
    examples_uri = Path(run.executions["Transform"].outputs["transformed_examples"][0].uri)
    graph_uri = Path(run.executions["Transform"].outputs["transform_graph"][0].uri)
    spec = read_schema(examples_uri)
    assert spec["mel"] == {"kind": "dense", "dtype": "float64", "width": 40 * 32, "shape": [40, 32]}
    raw = pq.read_table(Path(gen_uri(run)) / "Split-eval" / "part-00000.parquet")
    written = decode(pq.read_table(examples_uri / "Split-eval" / "part-00000.parquet"), spec)
    graph = ct.load(graph_uri)
    for i, data in enumerate(raw.column("audio").to_pylist()):
        served = graph.apply({"audio": data})
        assert served["mel"].tobytes() == written["mel"][i : i + 1].tobytes()
        assert served["mel_z"].tobytes() == written["mel_z"][i : i + 1].tobytes()
        samples, _ = soundfile.read(io.BytesIO(data), dtype="float32")
        clip = np.zeros(16000)
        clip[: len(samples)] = samples[:16000]
        expected = librosa.power_to_db(librosa.feature.melspectrogram(y=clip, sr=16000, n_mels=40))
        np.testing.assert_allclose(written["mel"][i].reshape(40, 32), expected, rtol=1e-5, atol=0)


def gen_uri(run: Any) -> str:
    return run.executions["audio_examples"].outputs["examples"][0].uri
