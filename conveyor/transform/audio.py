"""Audio in ``preprocessing_fn``: decode, resample, fix the length, log-mel and MFCC features.

A decoded clip is a ``signal`` (its rate known when tracing): an Arrow ``list<float>`` array,
one row of samples per clip, channel after channel, null where the clip is missing.
``pad_or_trim`` makes it a dense column of fixed width; ``log_mel_spectrogram`` and ``mfcc``
give dense columns whose rows are ``(n_mels, frames)`` matrices flattened (librosa's layout);
the node's ``shape`` param and the transformed schema say which.

The features follow librosa's defaults (n_fft 2048, hop 512, centred frames padded
with zeros, periodic Hann window, 128 Slaney mel bands with Slaney norm and librosa's float32
filters, power 2, ``power_to_db`` with ref 1, amin 1e-10, top_db 80 per clip, DCT-II ortho),
computed in float64 with NumPy and SciPy. Each step is the same arithmetic for every frame,
whatever the batch: the FFT is per frame and the mel and DCT projections are sparse products
summed in a fixed order (BLAS would sum in an order that depends on the number of rows), so
a clip served alone gets the bits it got in Transform.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa

from conveyor._internal.extras import require
from conveyor.exceptions import TransformError
from conveyor.transform.graph import Column, Node, checked, derive, fail
from conveyor.transform.kernels import kernel

_METHODS = ("soxr", "polyphase")
# The windowed frames a step of the spectrogram holds: about a core's L2 cache. Larger steps
# spill to memory; 64 one-second clips (35 MB) took 1.7x as long as 4 (2 MB), measured.
_CHUNK_BYTES = 2 << 20


# -- the ops -------------------------------------------------------------------------------

def decode_audio(x: Column, *, sample_rate: int, mono: bool = True, channels: int | None = None, method: str = "soxr") -> Column:
    """Audio file contents (wav, flac, ogg: what libsndfile reads) as float32 samples at
    ``sample_rate``; a file at another rate is resampled as ``ct.resample`` does with ``method``.

    ``mono`` mixes the channels into one by their mean (as librosa's ``to_mono``); with
    ``mono=False`` every file must have ``channels`` channels, kept one after the other.
    A missing value gives a missing clip. Needs ``pip install 'conveyor[media]'``.

    Example:
        >>> audio = ct.decode_audio(inputs["audio"], sample_rate=16000)
    """
    x = checked("decode_audio", x, ("bytes",))
    _check_rate("decode_audio", sample_rate)
    _check_method("decode_audio", method)
    if mono:
        channels = 1
    elif not isinstance(channels, int) or channels < 1:
        msg = f"ct.decode_audio with mono=False needs channels=, the number every file has; got {channels!r}."
        raise fail(msg)
    params = {"sample_rate": sample_rate, "mono": bool(mono), "channels": channels, "method": method}
    return derive("decode_audio", (x,), "signal", params)


def resample(x: Column, sample_rate: int, *, method: str = "soxr") -> Column:
    """Clips brought to ``sample_rate`` from the rate they have (known from ``decode_audio``).

    ``method="soxr"``: libsoxr's high quality (``soxr.resample``, its default "HQ");
    ``"polyphase"``: SciPy's ``resample_poly`` with its default Kaiser window. A signal keeps
    its length in seconds (rounded as the method rounds); a dense column of fixed-length clips
    stays dense, of the new length.
    """
    x = checked("resample", x, ("signal", "dense"))
    _check_rate("resample", sample_rate)
    _check_method("resample", method)
    rate, channels = _rate(x, "resample"), _channels(x.node)
    params = {"from_rate": rate, "sample_rate": sample_rate, "method": method, "channels": channels}
    if x.kind == "signal":
        return derive("resample", (x,), "signal", params)
    length = _resampled_length(_shape(x.node)[-1], rate, sample_rate, method)
    shape = [channels, length] if channels > 1 else [length]
    return derive("resample", (x,), "dense", params | {"shape": shape}, width=channels * length)


def pad_or_trim(x: Column, length: int) -> Column:
    """Each clip cut to its first ``length`` samples, or padded with zeros to them: a dense
    column of ``channels * length`` values (a missing clip gives NaN).

    Example:
        >>> clip = ct.pad_or_trim(audio, 16000)  # one second at 16 kHz
    """
    x = checked("pad_or_trim", x, ("signal",))
    if not isinstance(length, int) or length < 1:
        msg = f"ct.pad_or_trim needs a length >= 1 in samples, got {length!r}."
        raise fail(msg)
    channels = _channels(x.node)
    params = {"length": length, "channels": channels, "sample_rate": x.node.params["sample_rate"]}
    params["shape"] = [channels, length] if channels > 1 else [length]
    return derive("pad_or_trim", (x,), "dense", params, width=channels * length)


def log_mel_spectrogram(
    x: Column,
    *,
    sample_rate: int | None = None,
    n_fft: int = 2048,
    hop_length: int = 512,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
    power: float = 2.0,
    ref: float = 1.0,
    amin: float = 1e-10,
    top_db: float | None = 80.0,
) -> Column:
    """``librosa.power_to_db(librosa.feature.melspectrogram(y=clip, sr=sample_rate, ...))``
    of each fixed-length clip (``pad_or_trim``), with the same parameters and defaults; ``top_db``
    clips each clip at its own maximum (over its channels) minus ``top_db``.

    Each row is the ``(n_mels, frames)`` matrix flattened, frames = 1 + length // hop_length
    (per channel, one after the other). ``sample_rate`` defaults to the clips' own.

    Example:
        >>> mel = ct.log_mel_spectrogram(ct.pad_or_trim(audio, 16000), n_mels=64)
    """
    x = checked("log_mel_spectrogram", x, ("dense",))
    rate = sample_rate if sample_rate is not None else _rate(x, "log_mel_spectrogram")
    _check_rate("log_mel_spectrogram", rate)
    fmax = float(rate) / 2 if fmax is None else float(fmax)
    bad = _bad_mel_params(n_fft, hop_length, n_mels, fmin, fmax, rate, norm, power, amin, top_db)
    if bad:
        msg = f"ct.log_mel_spectrogram: {bad}."
        raise fail(msg)
    channels = _channels(x.node)
    frames = 1 + _shape(x.node)[-1] // hop_length
    params = {
        "sample_rate": rate, "n_fft": n_fft, "hop_length": hop_length, "n_mels": n_mels, "fmin": float(fmin), "fmax": fmax,
        "htk": bool(htk), "norm": norm, "power": float(power), "ref": float(ref), "amin": float(amin),
        "top_db": None if top_db is None else float(top_db), "channels": channels,
    }
    params["shape"] = [channels, n_mels, frames] if channels > 1 else [n_mels, frames]
    return derive("log_mel_spectrogram", (x,), "dense", params, width=channels * n_mels * frames)


def mfcc(x: Column, *, n_mfcc: int = 20, **mel: Any) -> Column:
    """``librosa.feature.mfcc``: the first ``n_mfcc`` coefficients of the DCT-II (ortho) of the
    log-mel spectrogram over the mel axis, no liftering; rows are ``(n_mfcc, frames)`` flattened.

    ``x`` is a log-mel column (``log_mel_spectrogram``), or fixed-length clips, whose log-mel
    spectrogram is made with ``mel`` (its keyword arguments).

    Example:
        >>> coefficients = ct.mfcc(ct.pad_or_trim(audio, 16000), n_mfcc=13)
    """
    x = checked("mfcc", x, ("dense",))
    if x.node.op != "log_mel_spectrogram" or mel:
        x = log_mel_spectrogram(x, **mel)
    n_mels = x.node.params["n_mels"]
    if not isinstance(n_mfcc, int) or not 1 <= n_mfcc <= n_mels:
        msg = f"ct.mfcc needs 1 <= n_mfcc <= n_mels ({n_mels}), got {n_mfcc!r}."
        raise fail(msg)
    *lead, _, frames = x.node.params["shape"]
    params = {"n_mfcc": n_mfcc, "n_mels": n_mels, "shape": [*lead, n_mfcc, frames]}
    return derive("mfcc", (x,), "dense", params, width=int(np.prod(lead, dtype=int)) * n_mfcc * frames)


# -- what the ops check when tracing ---------------------------------------------------------

def _check_rate(fn: str, rate: Any) -> None:
    if not isinstance(rate, int) or isinstance(rate, bool) or rate < 1:
        msg = f"ct.{fn} needs a sample_rate in Hz as an int >= 1, got {rate!r}."
        raise fail(msg)


def _check_method(fn: str, method: str) -> None:
    if method not in _METHODS:
        msg = f"ct.{fn} resamples with method 'soxr' or 'polyphase', got {method!r}."
        raise fail(msg)


def _rate(x: Column, fn: str) -> int:
    rate = x.node.params.get("sample_rate")
    if not isinstance(rate, int):
        msg = f"ct.{fn} cannot tell the sample rate of this column ({x.node.op}); pass sample_rate=."
        raise fail(msg)
    return rate


def _channels(node: Node) -> int:
    return int(node.params.get("channels", 1))


def _shape(node: Node) -> list[int]:
    shape = node.params.get("shape")
    if shape is None:
        if node.width is None:
            msg = f"the length of the clips of this column ({node.op}) is not known; make them with ct.pad_or_trim."
            raise fail(msg)
        return [node.width]
    return list(shape)


def _bad_mel_params(n_fft: Any, hop: Any, n_mels: Any, fmin: float, fmax: float, rate: int, norm: Any, power: float, amin: float, top_db: Any) -> str:
    """What is wrong with the spectrogram's parameters, or ""."""
    for name, value in (("n_fft", n_fft), ("hop_length", hop), ("n_mels", n_mels)):
        if not isinstance(value, int) or value < 1:
            return f"{name} must be an int >= 1, got {value!r}"
    if n_fft % 2:
        return f"n_fft must be even (librosa pads n_fft // 2 on each side), got {n_fft}"
    if not 0 <= fmin < fmax <= rate / 2:
        return f"needs 0 <= fmin < fmax <= sample_rate / 2 ({rate / 2}), got fmin={fmin}, fmax={fmax}"
    if norm not in ("slaney", None):
        return f"norm must be 'slaney' or None, got {norm!r}"
    if power not in (1.0, 2.0):
        return f"power must be 1.0 (magnitude) or 2.0 (power), got {power!r}"
    if amin <= 0 or (top_db is not None and top_db < 0):
        return f"amin must be > 0 and top_db >= 0 or None, got amin={amin}, top_db={top_db}"
    return ""


def _resampled_length(length: int, from_rate: int, to_rate: int, method: str) -> int:
    """The length a clip of ``length`` samples has once resampled, as each method rounds it."""
    if method == "soxr":
        return (2 * length * to_rate + from_rate) // (2 * from_rate)  # soxr.resample: n * out / in, rounded
    up, down = _ratio(from_rate, to_rate)
    return -(-length * up // down)  # resample_poly: ceil(n * up / down)


def _ratio(from_rate: int, to_rate: int) -> tuple[int, int]:
    g = int(np.gcd(from_rate, to_rate))
    return to_rate // g, from_rate // g


# -- signals: Arrow list<float> arrays, one clip a row ---------------------------------------

def clips(signal: pa.Array) -> list[np.ndarray | None]:
    """The rows of a signal as float32 NumPy views (None where missing)."""
    if isinstance(signal, pa.ChunkedArray):
        signal = signal.combine_chunks()
    values = signal.values.to_numpy(zero_copy_only=False)
    offsets = signal.offsets.to_numpy()
    valid = signal.is_valid().to_numpy(zero_copy_only=False)
    return [values[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(signal))]


def to_signal(rows: list[np.ndarray | None]) -> pa.ListArray:
    """Clips (None where missing) as a signal."""
    lengths = np.array([0 if r is None else r.size for r in rows], dtype=np.int64)
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    present = [np.asarray(r, dtype=np.float32).ravel() for r in rows if r is not None]
    values = np.concatenate(present) if present else np.zeros(0, dtype=np.float32)
    mask = pa.array([r is None for r in rows]) if any(r is None for r in rows) else None
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), mask=mask)


def file_bytes(x: Any, fn: str) -> list[bytes | None]:
    """A bytes column's values; a string column is refused (a path is not the file)."""
    if isinstance(x, pa.ChunkedArray):
        x = x.combine_chunks()
    if not isinstance(x, pa.Array):
        x = pa.array(x)
    if pa.types.is_binary_view(x.type):  # Polars' binary, as the Evaluator's frames hold it
        x = x.cast(pa.large_binary())
    if not (pa.types.is_binary(x.type) or pa.types.is_large_binary(x.type) or pa.types.is_null(x.type)):
        msg = f"ct.{fn} takes the files' contents (binary), got a column of {x.type}."
        raise TransformError(msg)
    return x.to_pylist()


# -- the kernels -----------------------------------------------------------------------------

@kernel("decode_audio")
def _decode_audio(p: dict[str, Any], x: Any) -> pa.ListArray:
    soundfile = require("soundfile", "media", "ct.decode_audio")
    rows: list[np.ndarray | None] = []
    for data in file_bytes(x, "decode_audio"):
        if data is None:
            rows.append(None)
            continue
        try:
            samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
            why = getattr(e, "error_string", None) or e  # libsndfile's own words, not the buffer's repr
            msg = f"ct.decode_audio: {len(data)} bytes do not decode as audio ({why}); ExampleGen's audio input quarantines such files."
            raise TransformError(msg) from e
        if p["mono"] and samples.shape[1] > 1:
            samples = samples.mean(axis=1, dtype=np.float32, keepdims=True)
        elif samples.shape[1] != p["channels"]:
            msg = f"ct.decode_audio(mono=False, channels={p['channels']}) got a file of {samples.shape[1]} channel(s); mix it with mono=True."
            raise TransformError(msg)
        planar = samples.T if samples.shape[1] == 1 else np.ascontiguousarray(samples.T)  # (channels, samples)
        if rate != p["sample_rate"]:
            planar = _resample_clip(planar, int(rate), p["sample_rate"], p["method"])
        rows.append(planar)
    return to_signal(rows)


def _resample_clip(planar: np.ndarray, from_rate: int, to_rate: int, method: str) -> np.ndarray:
    """One clip ``(channels, samples)`` at ``to_rate``, float32."""
    if method == "soxr":
        soxr = require("soxr", "media", "ct.resample")
        out = soxr.resample(np.ascontiguousarray(planar.T), from_rate, to_rate)
        return np.ascontiguousarray(np.asarray(out, dtype=np.float32).T)
    from scipy.signal import resample_poly

    up, down = _ratio(from_rate, to_rate)
    return resample_poly(planar, up, down, axis=-1).astype(np.float32)


@kernel("resample")
def _resample(p: dict[str, Any], x: Any) -> Any:
    """Clip by clip: soxr takes one signal a call; a dense batch of equal clips goes to
    ``resample_poly`` as one 2-D array, which filters each row alone.
    """
    channels, rate, to_rate = p["channels"], p["from_rate"], p["sample_rate"]
    if isinstance(x, pa.Array | pa.ChunkedArray):
        rows = [None if c is None else _resample_clip(c.reshape(channels, -1), rate, to_rate, p["method"]) for c in clips(x)]
        return to_signal(rows)
    dense = np.asarray(x)
    n, length = len(dense), dense.shape[1] // channels
    planar = dense.reshape(n * channels, length).astype(np.float32)
    if p["method"] == "polyphase":
        out = _resample_clip(planar, rate, to_rate, "polyphase")
    else:
        out = np.stack([_resample_clip(row[None], rate, to_rate, "soxr")[0] for row in planar]) if n else planar[:, :0]
    return out.reshape(n, -1)


@kernel("pad_or_trim")
def _pad_or_trim(p: dict[str, Any], x: Any) -> np.ndarray:
    """Every clip's first ``length`` samples, per channel, into one float32 matrix."""
    channels, length = p["channels"], p["length"]
    rows = clips(x)
    out = np.zeros((len(rows), channels, length), dtype=np.float32)
    for i, clip in enumerate(rows):  # a copy a clip: the clips differ in length
        if clip is None:
            out[i] = np.nan
        else:
            planar = clip.reshape(channels, -1)[:, :length]
            out[i, :, : planar.shape[1]] = planar
    return out.reshape(len(rows), channels * length)


def _hz_to_mel(hz: np.ndarray, htk: bool) -> np.ndarray:
    """librosa's ``hz_to_mel``: HTK's formula, or Slaney's (linear below 1 kHz, log above)."""
    hz = np.asarray(hz, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    linear = hz / f_sp
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep, linear)


def _mel_to_hz(mels: np.ndarray, htk: bool) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


def mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float, htk: bool, norm: str | None) -> np.ndarray:
    """``librosa.filters.mel`` to the bit: triangles between mel-spaced frequencies, in float32
    as librosa makes them (its Slaney norm multiplied in float64 and rounded again).
    """
    fft_hz = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(fmin, htk), _hz_to_mel(fmax, htk), n_mels + 2), htk)
    widths = np.diff(mel_hz)
    ramps = np.subtract.outer(mel_hz, fft_hz)
    weights = np.maximum(0, np.minimum(-ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None])).astype(np.float32)
    if norm == "slaney":
        weights = (weights * (2.0 / (mel_hz[2 : n_mels + 2] - mel_hz[:n_mels]))[:, None]).astype(np.float32)
    return weights


def _sparse(matrix: np.ndarray) -> Any:
    """``matrix`` as CSR: its product with a dense matrix sums each output in index order, the
    same arithmetic whatever the number of columns.
    """
    from scipy.sparse import csr_matrix

    return csr_matrix(matrix.astype(np.float64))


def _mel_state(p: dict[str, Any]) -> tuple[Any, np.ndarray]:
    """The node's mel filters (sparse) and window, made once (runtime params are never saved)."""
    state = p.get("_mel")
    if state is None:
        from scipy.signal import get_window

        filters = mel_filters(p["sample_rate"], p["n_fft"], p["n_mels"], p["fmin"], p["fmax"], p["htk"], p["norm"])
        state = p["_mel"] = (_sparse(filters), get_window("hann", p["n_fft"], fftbins=True))
    return state


@kernel("log_mel_spectrogram")
def _log_mel_spectrogram(p: dict[str, Any], x: Any) -> np.ndarray:
    """In chunks of ``_CHUNK_BYTES`` of frames, so they stay in cache and their buffers are reused:
    frames, windowed FFT, power, mel bands, then decibels.
    """
    from scipy.fft import rfft

    filters, window = _mel_state(p)
    n_fft, hop, n_mels, channels = p["n_fft"], p["hop_length"], p["n_mels"], p["channels"]
    signals = np.asarray(x)
    n = len(signals)
    length = signals.shape[1] // channels
    frames, half = 1 + length // hop, n_fft // 2
    out = np.empty((n, channels * n_mels * frames))
    chunk = max(1, _CHUNK_BYTES // (channels * frames * n_fft * 8))
    planar_rows = min(n, chunk) * channels
    padded = np.zeros((planar_rows, length + 2 * half))  # the margins stay zero: librosa's centred frames
    windowed = np.empty((planar_rows, frames, n_fft))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        rows = (stop - start) * channels
        padded[:rows, half : half + length] = signals[start:stop].reshape(rows, length)
        framed = np.lib.stride_tricks.sliding_window_view(padded[:rows], n_fft, axis=1)[:, ::hop][:, :frames]
        np.multiply(framed, window, out=windowed[:rows])
        spectrum = rfft(windowed[:rows], axis=-1)
        magnitude = np.square(spectrum.real)
        magnitude += np.square(spectrum.imag)
        if p["power"] == 1.0:
            np.sqrt(magnitude, out=magnitude)
        bins = np.ascontiguousarray(magnitude.reshape(-1, magnitude.shape[-1]).T)  # (freqs, rows * frames)
        mel = (filters @ bins).reshape(n_mels, rows, frames).transpose(1, 0, 2)
        out[start:stop] = _power_to_db(mel.reshape(stop - start, -1), p)
    return out


def _power_to_db(power: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """librosa's ``power_to_db`` of each row (a clip, all its channels): ``top_db`` below the row's maximum."""
    with np.errstate(invalid="ignore"):  # a missing clip is NaN throughout
        db = np.maximum(p["amin"], power)
        np.log10(db, out=db)
        db *= 10.0
        db -= 10.0 * np.log10(np.maximum(p["amin"], p["ref"]))
        if p["top_db"] is not None and db.size:
            np.maximum(db, db.max(axis=1, keepdims=True) - p["top_db"], out=db)
    return db


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """The first ``n_out`` rows of the orthonormal DCT-II of length ``n_in`` (SciPy's ``dct(norm="ortho")``)."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    basis[0] *= np.sqrt(0.5)
    return basis


@kernel("mfcc")
def _mfcc(p: dict[str, Any], x: Any) -> np.ndarray:
    if "_dct" not in p:
        p["_dct"] = _sparse(dct_matrix(p["n_mfcc"], p["n_mels"]))
    n_mfcc, frames = p["shape"][-2:]
    mels = np.asarray(x, dtype=np.float64).reshape(-1, p["n_mels"], frames)  # (clips, n_mels, frames)
    bins = np.ascontiguousarray(mels.transpose(1, 0, 2).reshape(p["n_mels"], -1))
    coefficients = (p["_dct"] @ bins).reshape(n_mfcc, len(mels), frames).transpose(1, 0, 2)
    return coefficients.reshape(len(x), -1)
