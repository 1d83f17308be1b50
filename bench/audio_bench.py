"""Issue 17: log-mel features of one-second clips, conveyor beside librosa, in one run.

The clips (16 kHz mono, a chirp and noise each, 16-bit WAV bytes as ExampleGen's audio input
stores them) are made first, unclocked. Then each side turns every clip's bytes into
librosa's default log-mel spectrogram (128 mel bands, n_fft 2048, hop 512, power_to_db with
top_db 80), padded or cut to one second first:

1. conveyor: ``ct.decode_audio`` → ``ct.pad_or_trim`` → ``ct.log_mel_spectrogram``, traced
   and applied to an Arrow table of the bytes (``FittedGraph.apply(workers=1)``: one thread,
   as the Transform component gives each row group one; the table in chunks of about 32 MiB).
2. librosa: for each clip, ``soundfile.read`` (float32, as ``librosa.load`` gives), padded,
   ``librosa.power_to_db(librosa.feature.melspectrogram(y=clip, sr=16000))``.

Both decode with soundfile; the decoding alone is timed too, so the spectrogram's share shows.
The outputs are compared: conveyor computes in float64, librosa in the float32 of its input,
so they agree to float32's precision (the largest difference is printed, in dB); on the first
clips librosa is also run on float64 samples, where the two agree to 1e-10 dB. Each side runs
``--repeats`` times; the best run counts.

Then the feature library (``--library``; after the log-mel part unless ``--no-library``): the
same clips as WAV files in ten label folders, through a real pipeline, ExampleGen
(``input_format="audio"``) → StatisticsGen → SchemaGen → Transform (the spoken-digits example's
``module.py``: 40-band log-mel, z-scored per band) → Embedder with the example's
``embedder.onnx`` (a small 1-D conv net, 40 x 101 log-mel cells to 64 values). A first
pipeline computes every row; a second, with its own root and the same library, none. Each
Embedder's seconds are the runner's own; the two outputs are compared value for value. This is
done twice, each time with a library of its own: with the Embedder's output keeping every input
column (the default: the 4,040 log-mel values are rewritten beside the embedding) and with
``keep_columns=["label"]`` (the feature library as a feature table: the label and the embedding).

    python bench/audio_bench.py [--clips 10000] [--repeats 1] [--json] [--library | --no-library]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import soundfile

RATE = 16000
EXACT_CHECK = 50  # clips librosa also runs on in float64
SPOKEN_DIGITS = Path(__file__).resolve().parents[1] / "examples" / "spoken_digits"


def make_clips(n: int, seed: int = 0) -> list[bytes]:
    """``n`` one-second WAV files (PCM 16) of chirps in noise, a little shorter or longer than a second."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n):
        t = np.arange(int(RATE * rng.uniform(0.8, 1.2))) / RATE
        y = 0.4 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t * (1 + t)) + 0.05 * rng.standard_normal(len(t))
        buffer = io.BytesIO()
        soundfile.write(buffer, y, RATE, format="WAV", subtype="PCM_16")
        clips.append(buffer.getvalue())
    return clips


def decode(data: bytes) -> np.ndarray:
    samples, _ = soundfile.read(io.BytesIO(data), dtype="float32")
    clip = np.zeros(RATE, dtype=np.float32)
    clip[: min(len(samples), RATE)] = samples[:RATE]
    return clip


def run_conveyor(clips: list[bytes]) -> tuple[float, np.ndarray]:
    import conveyor.transform as ct
    from conveyor.transform.fitted import FittedGraph
    from conveyor.transform.graph import trace

    def preprocessing_fn(inputs: Any) -> dict[str, Any]:
        clip = ct.pad_or_trim(ct.decode_audio(inputs["audio"], sample_rate=RATE), RATE)
        return {"mel": ct.log_mel_spectrogram(clip)}

    graph = FittedGraph(trace(preprocessing_fn, {"audio": "bytes"}), {"audio": {"kind": "bytes", "required": True}})
    table = pa.table({"audio": pa.array(clips, pa.binary())})
    graph.apply(table.slice(0, 2))  # warm: the filters, the FFT plan
    start = time.perf_counter()
    mel = graph.apply(table, workers=1)["mel"]
    return time.perf_counter() - start, mel


def run_librosa(clips: list[bytes]) -> tuple[float, np.ndarray]:
    import librosa

    librosa.power_to_db(librosa.feature.melspectrogram(y=decode(clips[0]), sr=RATE))  # warm
    out = np.empty((len(clips), 128 * 32))
    start = time.perf_counter()
    for i, data in enumerate(clips):
        out[i] = librosa.power_to_db(librosa.feature.melspectrogram(y=decode(data), sr=RATE)).ravel()
    return time.perf_counter() - start, out


def run_decode(clips: list[bytes]) -> float:
    start = time.perf_counter()
    for data in clips:
        decode(data)
    return time.perf_counter() - start


def exact_difference(clips: list[bytes], mel: np.ndarray) -> float:
    """The largest difference, in dB, from librosa on the same samples as float64."""
    import librosa

    worst = 0.0
    for i, data in enumerate(clips[:EXACT_CHECK]):
        expected = librosa.power_to_db(librosa.feature.melspectrogram(y=decode(data).astype(np.float64), sr=RATE))
        worst = max(worst, float(np.abs(expected.ravel() - mel[i]).max()))
    return worst


def embedder_seconds(
    root: Path, data: Path, library: Path, keep: list[str] | None
) -> tuple[float, dict[str, Any], Any]:
    """One pipeline up to the Embedder on its own root: the Embedder's seconds as the runner records
    them, its output's properties, and the output's embedding columns.
    """
    import pyarrow.parquet as pq

    from conveyor import Pipeline
    from conveyor.components import Embedder, ExampleGen, SchemaGen, StatisticsGen, Transform

    seconds: dict[str, float] = {}
    gen = ExampleGen(input_base=str(data), input_format="audio")
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    transform = Transform(examples=gen.outputs["examples"], schema=schema.outputs["schema"],
                          module_file=str(SPOKEN_DIGITS / "module.py"))  # fmt: skip
    embedder = Embedder(examples=transform.outputs["transformed_examples"], model=str(SPOKEN_DIGITS / "embedder.onnx"),
                        columns=["mel"], library=str(library), keep_columns=keep)  # fmt: skip
    run = Pipeline(root.name, [gen, stats, schema, transform, embedder], root=root).run(
        progress=lambda step, status, s: seconds.__setitem__(step, s) if s is not None else None
    )
    if run.status != "succeeded":
        failed = [e.error for e in run.executions.values() if e.error]
        msg = f"the {root.name} pipeline failed: {failed}"
        raise SystemExit(msg)
    output = run.executions["Embedder"].outputs["embedded_examples"][0]
    names = output.properties["outputs"]
    table = pq.read_table(Path(output.uri), columns=names)
    return seconds["Embedder"], output.properties, table


KEEPS = {"every column": None, "label alone": ["label"]}


def run_library(clips: list[bytes]) -> dict[str, Any]:
    """For each output shape of ``KEEPS``, the Embedder's first run (every clip through the model)
    against its second (none).
    """
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for i, data in enumerate(clips):
            folder = work / "clips" / str(i % 10)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"clip-{i:05d}.wav").write_bytes(data)
        for n, (shape, keep) in enumerate(KEEPS.items()):
            library = work / f"library-{n}"
            first, done_first, out_first = embedder_seconds(work / f"first-{n}", work / "clips", library, keep)
            second, done_second, out_second = embedder_seconds(work / f"second-{n}", work / "clips", library, keep)
            results[shape] = {
                "first_s": first,
                "second_s": second,
                "second_over_first": second / first,
                "first": {k: done_first[k] for k in ("rows_computed", "rows_reused")},
                "second": {k: done_second[k] for k in ("rows_computed", "rows_reused")},
                "outputs_equal": out_first.equals(out_second),
                "embedding_width": out_first.num_columns,
            }
    return {"clips": len(clips), "keeping": results}


def print_library(result: dict[str, Any]) -> None:
    width = next(iter(result["keeping"].values()))["embedding_width"]
    print(f"{result['clips']} clips, feature library: 40-band log-mel -> spoken digits' embedder.onnx "
          f"({width} values), Embedder step as the runner records it:")  # fmt: skip
    for shape, r in result["keeping"].items():
        print(f"  output keeping {shape}:")
        for name in ("first", "second"):
            done = r[name]
            print(
                f"    {name:6} run {r[f'{name}_s']:7.2f} s  {done['rows_computed']} rows computed, {done['rows_reused']} reused"
            )
        print(f"    second / first = {r['second_over_first']:.1%} (goal < 5%); outputs equal: {r['outputs_equal']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--library", action="store_true", help="only the feature library's part")
    parser.add_argument("--no-library", action="store_true", help="only the log-mel part")
    args = parser.parse_args()
    clips = make_clips(args.clips)
    if args.library:
        library = run_library(clips)
        if args.json:
            print(json.dumps(library, indent=1))
        else:
            print_library(library)
        return
    import librosa

    times: dict[str, list[float]] = {"conveyor": [], "librosa": [], "decode": []}
    for _ in range(args.repeats):
        seconds, ours = run_conveyor(clips)
        times["conveyor"].append(seconds)
        seconds, theirs = run_librosa(clips)
        times["librosa"].append(seconds)
        times["decode"].append(run_decode(clips))
    best = {side: min(values) for side, values in times.items()}
    result = {
        "clips": args.clips,
        "seconds": best,
        "per_clip_ms": {side: 1e3 * s / args.clips for side, s in best.items()},
        "speedup": best["librosa"] / best["conveyor"],
        "speedup_without_decoding": (best["librosa"] - best["decode"]) / (best["conveyor"] - best["decode"]),
        "max_abs_db_vs_librosa_float32": float(np.abs(ours - theirs).max()),
        "max_abs_db_vs_librosa_float64": exact_difference(clips, ours),
        "versions": {"librosa": librosa.__version__, "numpy": np.__version__, "python": platform.python_version()},
    }
    if not args.no_library:
        result["library"] = run_library(clips)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{args.clips} one-second clips, log-mel (128 x 32) from WAV bytes, best of {args.repeats}:")
    for side in ("conveyor", "librosa", "decode"):
        print(f"  {side:9} {best[side]:8.2f} s  {result['per_clip_ms'][side]:6.3f} ms a clip")
    print(
        f"  conveyor is {result['speedup']:.2f}x librosa ({result['speedup_without_decoding']:.2f}x on the spectrogram alone)"
    )
    print(
        f"  largest difference: {result['max_abs_db_vs_librosa_float32']:.2e} dB from librosa in float32, "
        f"{result['max_abs_db_vs_librosa_float64']:.2e} dB from librosa in float64 (first {EXACT_CHECK} clips)"
    )
    if "library" in result:
        print_library(result["library"])


if __name__ == "__main__":
    main()
