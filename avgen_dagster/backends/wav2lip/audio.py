"""Wav2Lip's audio front end: the 16 kHz log-mel spectrogram and per-frame mel windows.

The published checkpoints were trained on exactly this representation (Wav2Lip's
``audio.py`` / ``hparams.py``, which used librosa 0.7); it is re-implemented here with
numpy/scipy so no librosa API change (keyword-only arguments in librosa >= 0.10, the STFT
``pad_mode`` default changed from reflect to constant) can silently alter it:

* 16 kHz mono, pre-emphasis ``y[n] = x[n] - 0.97 x[n-1]`` (``scipy.signal.lfilter``).
* STFT: n_fft 800, hop 200, win 800, periodic Hann window, centred frames (the signal is
  reflect-padded by n_fft/2 = 400 samples each side, librosa 0.7's ``center=True``), magnitude
  ``|X|`` -> ``1 + len // 200`` frames, i.e. 80 mel frames per second.
* 80 mel bands, 55-7600 Hz, Slaney mel scale and Slaney area normalisation (librosa's
  default ``htk=False, norm="slaney"``; M. Slaney, "Auditory Toolbox", Interval Research
  TR 1998-010).
* dB = 20·log10(max(1e-5, mel)) − 20 (ref_level_db 20), then
  ``clip(8·(S + 100)/100 − 4, −4, 4)`` (min_level_db −100, symmetric, max_abs_value 4).
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
import scipy.signal

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.media.audio_io import resample

__all__ = [
    "HOP",
    "MEL_FPS",
    "MEL_STEP",
    "N_FFT",
    "N_MELS",
    "SAMPLE_RATE",
    "mel_chunks",
    "mel_filterbank",
    "mel_start",
    "mel_windows",
    "melspectrogram",
]

SAMPLE_RATE = 16_000  #: Hz
N_FFT = 800  #: samples (50 ms)
HOP = 200  #: samples (12.5 ms)
WIN = 800  #: samples
N_MELS = 80
FMIN = 55.0  #: Hz
FMAX = 7600.0  #: Hz
PREEMPHASIS = 0.97
REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0
MAX_ABS_VALUE = 4.0
MEL_FPS = SAMPLE_RATE // HOP  #: mel frames per second (80)
MEL_STEP = 16  #: mel columns per video frame window (0.2 s)
_BLOCK = 4096  # STFT frames per block (bounds memory on long audio)


# Slaney mel scale (Auditory Toolbox): 3 mels per 200 Hz below 1 kHz, then 27 mels per
# factor 6.4 in frequency.
_F_SP = 200.0 / 3.0  # Hz per mel, linear part
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    return np.where(
        f >= _MIN_LOG_HZ,
        _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP,
        f / _F_SP,
    )


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    return np.where(
        m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m
    )


@lru_cache(maxsize=4)
def mel_filterbank(
    sr: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    fmin: float = FMIN,
    fmax: float = FMAX,
) -> np.ndarray:
    """Triangular mel filterbank, Slaney scale and area normalisation (librosa's default).

    Returns:
        (n_mels, 1 + n_fft // 2) float32 weights; read-only (cached).
    """
    fftfreqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    out = weights.astype(np.float32)
    out.flags.writeable = False
    return out


def melspectrogram(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Wav2Lip's normalised log-mel spectrogram (formulas in the module doc).

    Args:
        audio: (n,) float mono, full scale ±1.0, n > 0.
        sample_rate: Hz; other rates are resampled to 16 kHz first (polyphase FIR,
            :func:`avgen_dagster.media.audio_io.resample`).

    Returns:
        (80, 1 + n16 // 200) float32 in [-4, 4], n16 = samples at 16 kHz; column t is centred
        at t · 12.5 ms (80 columns per second).

    Raises:
        InvalidInputError: empty, non-1-D or non-finite audio, or a non-positive rate.
    """
    x = np.asarray(audio)
    if x.ndim != 1 or x.size == 0:
        raise InvalidInputError(f"audio must be non-empty mono of shape (n,), got {x.shape}")
    if not int(sample_rate) > 0:
        raise InvalidInputError(f"sample_rate must be positive, got {sample_rate}")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise InvalidInputError("audio contains NaN or infinite samples")
    if int(sample_rate) != SAMPLE_RATE:
        x = resample(x, int(sample_rate), SAMPLE_RATE).astype(np.float32, copy=False)
    y = scipy.signal.lfilter([1.0, -PREEMPHASIS], [1.0], x.astype(np.float64))
    pad = N_FFT // 2
    # reflect needs > pad samples; shorter clips fall back to zero padding
    y = np.pad(y, pad, mode="reflect" if y.size > pad else "constant")
    window = scipy.signal.get_window("hann", WIN, fftbins=True)  # periodic Hann
    n_frames = 1 + (y.size - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP][:n_frames]
    fb = mel_filterbank().astype(np.float64)
    out = np.empty((N_MELS, n_frames), np.float32)
    for s in range(0, n_frames, _BLOCK):
        spec = np.abs(np.fft.rfft(frames[s : s + _BLOCK] * window, n=N_FFT, axis=1))
        mel = fb @ spec.T
        db = 20.0 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
        norm = 2.0 * MAX_ABS_VALUE * (db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB) - MAX_ABS_VALUE
        out[:, s : s + _BLOCK] = np.clip(norm, -MAX_ABS_VALUE, MAX_ABS_VALUE)
    return out


def _fps(fps: float | Fraction) -> Fraction:
    from avgen_dagster.media.video_io import fps_fraction

    try:
        return fps_fraction(fps)
    except Exception as exc:
        raise InvalidInputError(f"fps must be positive, got {fps}") from exc


def mel_start(i: int | np.ndarray, fps: float | Fraction) -> np.ndarray:
    """First mel column of video frame ``i``: ``floor(i · 80 / fps)`` (Wav2Lip's mapping).

    Computed in exact rational arithmetic (29.97 is taken as 30000/1001,
    :func:`avgen_dagster.media.video_io.fps_fraction`), so no frame drifts by float rounding.

    Returns:
        int64 array (same shape as ``i``).
    """
    f = _fps(fps)
    idx = np.asarray(i, dtype=np.int64)
    return (idx * MEL_FPS * f.denominator) // f.numerator


def mel_windows(mel: np.ndarray, fps: float | Fraction, frames: np.ndarray) -> np.ndarray:
    """Mel windows of arbitrary video frames: frame i gets columns ``[int(i·80/fps), +16)``.

    Windows that run past the spectrogram are padded with −4 (the normalised floor, i.e.
    digital silence), so every frame gets one: unlike the reference script, which stops at
    the last full window and so drops up to 0.2 s of frames at the end.

    Args:
        mel: (80, T) from :func:`melspectrogram`.
        fps: video frame rate (25, 29.97 = 30000/1001, 30, ...).
        frames: (k,) int frame indices (any order, repeats allowed), >= 0.

    Returns:
        (k, 80, 16) float32.

    Raises:
        InvalidInputError: bad mel shape, fps or negative indices.
    """
    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim != 2 or mel.shape[0] != N_MELS or mel.shape[1] == 0:
        raise InvalidInputError(f"mel must have shape (80, T>0), got {mel.shape}")
    idx_frames = np.asarray(frames, dtype=np.int64).reshape(-1)
    if idx_frames.size == 0:
        return np.zeros((0, N_MELS, MEL_STEP), np.float32)
    if idx_frames.min() < 0:
        raise InvalidInputError("frame indices must be >= 0")
    starts = mel_start(idx_frames, fps)
    need = int(starts.max()) + MEL_STEP
    if need > mel.shape[1]:
        mel = np.pad(mel, ((0, 0), (0, need - mel.shape[1])), constant_values=-MAX_ABS_VALUE)
    idx = starts[:, None] + np.arange(MEL_STEP)[None, :]
    return np.ascontiguousarray(mel[:, idx].transpose(1, 0, 2))


def mel_chunks(
    mel: np.ndarray,
    fps: float | Fraction,
    n_frames: int | None = None,
    start_frame: int = 0,
) -> np.ndarray:
    """Per-video-frame mel windows of consecutive frames (see :func:`mel_windows`).

    Args:
        mel: (80, T) from :func:`melspectrogram`.
        fps: video frame rate.
        n_frames: how many frames; default the audio's length in frames,
            ``max(1, round(T / 80 · fps))``.
        start_frame: index of the first frame (for chunked, streaming use).

    Returns:
        (n_frames, 80, 16) float32; row i is frame ``start_frame + i``.

    Raises:
        InvalidInputError: bad mel shape or fps.
    """
    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim != 2:
        raise InvalidInputError(f"mel must have shape (80, T>0), got {mel.shape}")
    if n_frames is None:
        n_frames = max(1, round(Fraction(mel.shape[1], MEL_FPS) * _fps(fps)))
    return mel_windows(mel, fps, np.arange(start_frame, start_frame + n_frames))
