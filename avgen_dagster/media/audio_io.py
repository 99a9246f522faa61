"""WAV reading/writing and sample-rate conversion for mono speech audio.

All samples inside avgen are ``float32`` mono arrays of shape ``(n,)`` with full scale at
±1.0; sample rates are integers in Hz.
"""

from __future__ import annotations

from collections.abc import Iterator
from math import ceil, gcd
from pathlib import Path

import numpy as np
import scipy.io.wavfile
import scipy.signal

from avgen_dagster.errors import InvalidInputError, MediaError
from avgen_dagster.media.atomic import atomic_path

__all__ = [
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "check_sample_rate",
    "iter_resample",
    "read_wav",
    "require_mono_audio",
    "resample",
    "to_mono_float32",
    "trim_bounds",
    "trim_silence",
    "write_wav",
]

#: Lowest and highest sample rate accepted for speech handed to a backend, Hz.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
#: Most channels :func:`require_mono_audio` downmixes (7.1 has 8).
_MAX_CHANNELS = 8


def _pcm_to_float32(data: np.ndarray) -> np.ndarray | None:
    """Scale PCM of a WAV dtype to float32 full scale ±1.0; ``None`` for other dtypes.

    Unsigned integers are offset binary (uint8: 128 = 0); signed integers are divided by
    ``2 ** (bits - 1)`` (int16 / 32768, int32 / 2147483648: 24-bit WAVs are read by scipy as
    int32).
    """
    kind = data.dtype
    if np.issubdtype(kind, np.unsignedinteger):
        half = float(np.iinfo(kind).max // 2 + 1)
        return ((data.astype(np.float64) - half) / half).astype(np.float32)
    if np.issubdtype(kind, np.signedinteger):
        scale = float(np.iinfo(kind).max) + 1.0
        return (data.astype(np.float64) / scale).astype(np.float32)
    if np.issubdtype(kind, np.floating):
        return data.astype(np.float32, copy=False)
    return None


def to_mono_float32(data: np.ndarray) -> np.ndarray:
    """Convert PCM samples of any WAV dtype/channel count to float32 mono in [-1, 1].

    Args:
        data: shape ``(n,)`` or ``(n, channels)``; dtype uint8 (offset binary), int16, int32
            (24-bit WAVs are read by scipy as int32), float32 or float64.

    Returns:
        ``float32`` array of shape ``(n,)``; channels are averaged (downmix); NaN becomes 0
        and values outside [-1, 1] are clipped.

    Raises:
        MediaError: for an unsupported dtype or shape.
    """
    if data.ndim == 2:
        data = data.astype(np.float64).mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    elif data.ndim != 1:
        raise MediaError(f"audio must be 1-D or 2-D (samples, channels), got shape {data.shape}")
    out = _pcm_to_float32(data)
    if out is None:
        raise MediaError(f"unsupported audio sample dtype {data.dtype}")
    return np.clip(np.nan_to_num(out), -1.0, 1.0)


def require_mono_audio(audio: np.ndarray) -> np.ndarray:
    """Validate audio handed to a backend and return it as float32 mono.

    Unlike :func:`to_mono_float32` (for files), nothing is repaired: empty or non-finite
    audio is refused, and float samples are not clipped.

    Args:
        audio: numpy array of shape ``(n,)`` or ``(n, channels)`` with 1-8 channels
            (averaged); float (full scale ±1.0) or integer PCM (scaled as in a WAV).

    Returns:
        float32 array of shape ``(n,)``, n > 0 (the input itself when it is already float32
        mono).

    Raises:
        InvalidInputError: not a numpy array, another shape, 0 samples, a non-numeric dtype,
            or NaN/inf samples.
    """
    if not isinstance(audio, np.ndarray):
        raise InvalidInputError(f"audio must be a numpy array, got {type(audio).__name__}")
    if audio.ndim == 2 and 0 < audio.shape[1] <= _MAX_CHANNELS:
        audio = audio.astype(np.float64).mean(axis=1)
    elif audio.ndim != 1:
        raise InvalidInputError(
            f"audio must have shape (n,) or (n, channels), got shape {audio.shape}"
        )
    if audio.size == 0:
        raise InvalidInputError("audio is empty (0 samples): nothing to lip-sync")
    out = _pcm_to_float32(audio)
    if out is None:
        raise InvalidInputError(f"audio dtype {audio.dtype} is not numeric")
    if not np.all(np.isfinite(out)):
        raise InvalidInputError("audio contains NaN or infinite samples")
    return out


def check_sample_rate(sample_rate: int) -> int:
    """Validate a sample rate handed to a backend.

    Args:
        sample_rate: Hz, an integer (``bool`` refused) in 1000-384000.

    Returns:
        ``sample_rate`` as an ``int``.

    Raises:
        InvalidInputError: not an integer, or outside 1000-384000 Hz.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise InvalidInputError(f"sample_rate must be an integer in Hz, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE:
        raise InvalidInputError(
            f"sample_rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    return int(sample_rate)


def read_wav(path: Path | str) -> tuple[np.ndarray, int]:
    """Read a WAV file as float32 mono.

    Args:
        path: a RIFF/WAVE file (PCM 8/16/24/32-bit or IEEE float, any channel count).

    Returns:
        ``(samples, sample_rate)``: ``samples`` is float32 of shape ``(n,)`` in [-1, 1]
        (multi-channel files are downmixed by averaging), ``sample_rate`` in Hz.

    Raises:
        MediaError: if the file is missing, empty, corrupt or not a WAV file.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"audio file not found: {path}")
    try:
        sample_rate, data = scipy.io.wavfile.read(path)
    except (ValueError, OSError, EOFError) as exc:
        raise MediaError(f"cannot read WAV file {path}: {exc}") from exc
    if sample_rate <= 0:
        raise MediaError(f"WAV file {path} has an invalid sample rate {sample_rate}")
    return to_mono_float32(np.asarray(data)), int(sample_rate)


def write_wav(
    path: Path | str, samples: np.ndarray, sample_rate: int, *, pcm16: bool = True
) -> Path:
    """Write mono samples to a WAV file atomically (temp file, then rename).

    Args:
        path: destination ``.wav`` path; parent folders are created.
        samples: float array of shape ``(n,)`` in [-1, 1]; values outside are clipped, NaN
            becomes 0.
        sample_rate: Hz, > 0.
        pcm16: True writes 16-bit PCM (rounded), False writes 32-bit IEEE float.

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        MediaError: on a bad sample array or sample rate, or if the file cannot be written.
    """
    path = Path(path)
    x = np.asarray(samples)
    if x.ndim != 1:
        raise MediaError(f"write_wav expects mono samples of shape (n,), got {x.shape}")
    if sample_rate <= 0:
        raise MediaError(f"invalid sample rate {sample_rate} Hz")
    x = np.clip(np.nan_to_num(x.astype(np.float32)), -1.0, 1.0)
    data = np.round(x * 32767.0).astype(np.int16) if pcm16 else x
    try:
        with atomic_path(path) as tmp:
            scipy.io.wavfile.write(tmp, int(sample_rate), data)
    except OSError as exc:
        raise MediaError(f"cannot write WAV file {path}: {exc}") from exc
    return path


def resample(samples: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Change the sample rate with a polyphase FIR (``scipy.signal.resample_poly``).

    The ratio ``sr_out / sr_in`` is reduced by their GCD (22050 -> 48000 is up 320, down 147);
    the anti-aliasing filter is scipy's default Kaiser window (beta 5).

    Args:
        samples: float array of shape ``(n,)``.
        sr_in: input rate in Hz, > 0.
        sr_out: output rate in Hz, > 0.

    Returns:
        float32 array of shape ``(ceil(n * sr_out / sr_in),)``.

    Raises:
        MediaError: on a non-positive sample rate.
    """
    if sr_in <= 0 or sr_out <= 0:
        raise MediaError(f"sample rates must be positive, got {sr_in} -> {sr_out} Hz")
    x = np.asarray(samples, dtype=np.float32)
    if sr_in == sr_out or x.size == 0:
        return x.copy()
    g = gcd(int(sr_in), int(sr_out))
    y = scipy.signal.resample_poly(x, int(sr_out) // g, int(sr_in) // g)
    return y.astype(np.float32)


# scipy.signal.resample_poly's default anti-aliasing filter spans 10 * max(up, down) taps on
# each side of its centre, at the upsampled rate (scipy docs, "resample_poly", window=("kaiser",
# 5.0)); a block needs that much input on each side to come out as in the whole-array call.
_RESAMPLE_POLY_HALF_TAPS = 10


def iter_resample(
    samples: np.ndarray, sr_in: int, sr_out: int, *, block_s: float = 1.0
) -> Iterator[np.ndarray]:
    """:func:`resample`, streamed: the same output in consecutive blocks of about ``block_s``.

    Each input block (a whole number of ``down`` periods, so its first output sample falls on
    the output grid) is filtered together with enough neighbouring input on both sides to
    cover the FIR's half-length, and zeros beyond the signal's ends, exactly as
    ``resample_poly`` pads; the concatenated blocks equal ``resample(samples, …)`` to float32
    rounding. Peak extra memory is one block, not a copy of the whole signal at the new rate.

    Args:
        samples: float array of shape ``(n,)``.
        sr_in: input rate in Hz, > 0.
        sr_out: output rate in Hz, > 0.
        block_s: input seconds per block, > 0.

    Yields:
        float32 arrays; their lengths add up to ``ceil(n * sr_out / sr_in)``.

    Raises:
        MediaError: on a non-positive sample rate.
    """
    if sr_in <= 0 or sr_out <= 0:
        raise MediaError(f"sample rates must be positive, got {sr_in} -> {sr_out} Hz")
    x = np.asarray(samples, dtype=np.float32)
    n = x.size
    g = gcd(int(sr_in), int(sr_out))
    up, down = int(sr_out) // g, int(sr_in) // g
    block = down * max(1, round(block_s * sr_in / down))
    if up == down:
        for a in range(0, n, block):
            yield x[a : a + block]
        return
    context_in = _RESAMPLE_POLY_HALF_TAPS * max(up, down) / up + 2  # input samples
    ctx = down * ceil(context_in / down)  # whole periods: the block starts on the output grid
    n_out = ceil(n * up / down)
    produced = 0
    for a in range(0, n, block):
        b = min(n, a + block)
        lo, hi = max(0, a - ctx), min(n, b + ctx)
        seg = x[lo:hi]
        if lo > a - ctx or hi < b + ctx:  # zeros beyond the ends, as resample_poly assumes
            seg = np.concatenate(
                [np.zeros(lo - (a - ctx), np.float32), seg, np.zeros(b + ctx - hi, np.float32)]
            )
        y = scipy.signal.resample_poly(seg, up, down)
        start = ctx * up // down
        count = (n_out if b == n else b * up // down) - produced
        yield y[start : start + count].astype(np.float32, copy=False)
        produced += count


def trim_bounds(
    x: np.ndarray, sample_rate: int, pad_s: float, threshold_db: float
) -> tuple[int, int, int, int] | None:
    """Where :func:`trim_silence` cuts ``x``: ``(start, stop, lead, tail)`` in samples.

    The output is ``lead`` zeros, ``x[start:stop]``, ``tail`` zeros; a time ``t`` samples
    into ``x`` lands at ``t - start + lead``. None when every sample is silent.
    """
    pad = round(pad_s * sample_rate)
    active = np.flatnonzero(np.abs(x) >= 10.0 ** (threshold_db / 20.0))
    if active.size == 0:
        return None
    first, last = int(active[0]), int(active[-1]) + 1
    start, stop = max(0, first - pad), min(x.size, last + pad)
    return start, stop, pad - (first - start), pad - (stop - last)


def trim_silence(
    audio: np.ndarray,
    sample_rate: int,
    *,
    pad_s: float = 0.05,
    threshold_db: float = -50.0,
) -> np.ndarray:
    """Trim leading/trailing near-silence to exactly ``pad_s`` seconds each side.

    A sample is silent when ``|x| < 10 ** (threshold_db / 20)`` (dBFS, relative to full
    scale 1.0). The first/last non-silent samples are kept with ``pad_s`` seconds of the
    original signal around them; where the original has less, zeros are added, so every
    clip starts and ends with the same pause (useful for cross-fades and lip-sync).

    Args:
        audio: (n,) float waveform.
        sample_rate: Hz.
        pad_s: Pad each side, seconds.
        threshold_db: Silence threshold, dBFS.

    Returns:
        (m,) float32; an all-silent input gives ``2 * pad_s`` seconds of zeros.
    """
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    bounds = trim_bounds(x, sample_rate, pad_s, threshold_db)
    if bounds is None:
        return np.zeros(2 * round(pad_s * sample_rate), dtype=np.float32)
    start, stop, lead, tail = bounds
    return np.concatenate(
        [np.zeros(lead, np.float32), x[start:stop], np.zeros(tail, np.float32)]
    ).astype(np.float32, copy=False)
