"""Make the spoken digits: "zero" to "nine" said by espeak-ng, noise mixed in, 16 kHz mono FLAC.

    python examples/spoken_digits/make_data.py          # rewrites data/ beside this file

Needs the espeak-ng program (Debian, Ubuntu: ``apt-get install espeak-ng``; macOS: ``brew
install espeak-ng``), NumPy, SciPy and soundfile. Each of 12 voices (an English accent with a
voice variant) says each digit 3 times, at a speed, pitch, loudness, start and noise (white,
pink or brown, 5 to 30 dB below the speech) drawn from a seeded generator: 360 clips. Nine
voices are for training, three are held out for evaluation, so the eval split measures
digits said by voices the model never heard. ``data/manifest.csv`` lists every clip with its
label, voice, speed, pitch, noise, signal-to-noise ratio and split.

The same espeak-ng version (1.51 made the shipped files) gives the same files, bit for bit.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

RATE = 16000
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_VOICES = [
    "en-us+m1", "en-us+f2", "en-gb+m3", "en-gb+f4", "en-gb-scotland+m2",
    "en-029+f1", "en-gb-x-rp+m5", "en-us+klatt2", "en-gb-x-gbclan+f5",
]  # fmt: skip
EVAL_VOICES = ["en-us+m4", "en-gb+f3", "en-gb-x-gbcwmd+m6"]
TAKES = 3
SEED = 17
DATA = Path(__file__).resolve().parent / "data"


def main() -> None:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        sys.exit("make_data.py needs the espeak-ng program: apt-get install espeak-ng (or brew install espeak-ng).")
    import soundfile

    rng = np.random.default_rng(SEED)
    if DATA.exists():
        shutil.rmtree(DATA)
    rows = []
    for split, voices in (("train", TRAIN_VOICES), ("eval", EVAL_VOICES)):
        for voice in voices:
            for digit, word in enumerate(WORDS):
                for take in range(TAKES):
                    speed, pitch = int(rng.integers(110, 211)), int(rng.integers(20, 81))
                    speech = spoken(espeak, voice, word, speed, pitch)
                    noise, snr = ["white", "pink", "brown"][rng.integers(3)], float(rng.uniform(5, 30))
                    clip = mixed(speech, noise, snr, rng)
                    path = f"{digit}/{voice.replace('+', '-')}-{take}.flac"
                    (DATA / path).parent.mkdir(parents=True, exist_ok=True)
                    soundfile.write(DATA / path, clip, RATE, format="FLAC", subtype="PCM_16")
                    rows.append({
                        "path": path, "label": digit, "voice": voice, "speed": speed, "pitch": pitch,
                        "noise": noise, "snr_db": round(snr, 2), "split": split,
                    })  # fmt: skip
    with (DATA / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    size = sum(p.stat().st_size for p in DATA.rglob("*.flac"))
    print(f"{len(rows)} clips, {size / 1e6:.1f} MB of FLAC in {DATA}")


def spoken(espeak: str, voice: str, word: str, speed: int, pitch: int) -> np.ndarray:
    """The word as espeak-ng says it, at 16 kHz, its leading and trailing silence cut."""
    import soundfile
    from scipy.signal import resample_poly

    command = [espeak, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word]
    wav = subprocess.run(command, check=True, capture_output=True).stdout
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float64")
    samples = resample_poly(samples, RATE, rate) if rate != RATE else samples
    loud = np.flatnonzero(np.abs(samples) > 0.02 * np.abs(samples).max())
    return samples[loud[0] : loud[-1] + 1]


def mixed(speech: np.ndarray, noise: str, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """The speech at a random loudness and start, in noise ``snr_db`` below it, at most one second."""
    speech = speech[: int(0.85 * RATE)] * 10 ** (rng.uniform(-14, -2) / 20) / np.abs(speech).max()
    lead, tail = int(rng.uniform(0.02, 0.15) * RATE), int(rng.uniform(0.02, 0.1) * RATE)
    clip = np.zeros(min(RATE, lead + len(speech) + tail))
    clip[lead : lead + len(speech)] = speech[: len(clip) - lead]
    hiss = coloured(noise, len(clip), rng)
    hiss *= np.sqrt(np.mean(speech**2)) / np.sqrt(np.mean(hiss**2)) / 10 ** (snr_db / 20)
    return np.clip(clip + hiss, -1.0, 1.0)


def coloured(noise: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """White noise, or shaped to fall 3 dB (pink) or 6 dB (brown) an octave."""
    white = rng.standard_normal(n)
    if noise == "white":
        return white
    spectrum = np.fft.rfft(white)
    frequency = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    spectrum /= frequency ** (0.5 if noise == "pink" else 1.0)
    return np.fft.irfft(spectrum, n)


if __name__ == "__main__":
    main()
