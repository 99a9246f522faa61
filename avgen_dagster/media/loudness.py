"""Loudness measurement and normalisation (ITU-R BS.1770-4, EBU R128).

* Integrated loudness: ITU-R BS.1770-4 section 2 (K-weighting, 400 ms blocks with 75 %
  overlap, -70 LUFS absolute gate, -10 LU relative gate) via :mod:`pyloudnorm`.
* True peak: ITU-R BS.1770-4 Annex 2 (oversample, low-pass interpolate, take the absolute
  maximum). The Annex gives 4x oversampling at 48 kHz; we oversample by
  ``max(4, ceil(176400 / fs))`` so the interpolated rate is at least 176.4 kHz at any input
  rate (8x at 22.05 kHz), close to ffmpeg's ``ebur128`` meter which resamples to 192 kHz.
  The interpolator is a polyphase FIR (``scipy.signal.resample_poly``, Kaiser window,
  beta 5).
* Targets: -23 LUFS +/-0.5 LU with true peak <= -1 dBTP (EBU R128 / EBU Tech 3343),
  -16 LUFS for web and podcast speech.

Mono float32 samples of shape ``(n,)`` at full scale ±1.0 throughout.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyloudnorm
import scipy.ndimage

from avgen_dagster.errors import MediaError
from avgen_dagster.media.audio_io import iter_resample

__all__ = [
    "ABSOLUTE_GATE_LUFS",
    "BROADCAST_TARGET_LUFS",
    "WEB_TARGET_LUFS",
    "LoudnessMeasurement",
    "NormalizationResult",
    "measure_loudness",
    "normalize_loudness",
    "true_peak_dbtp",
    "true_peak_envelope",
]

#: EBU R128 programme loudness target (EBU R128 2020, section 2).
BROADCAST_TARGET_LUFS = -23.0
#: Common web/podcast speech target (e.g. AES TD1004, Apple/Spotify speech guidance).
WEB_TARGET_LUFS = -16.0
#: Absolute gating threshold of ITU-R BS.1770-4 (eq. 6): quieter audio reads as -inf.
ABSOLUTE_GATE_LUFS = -70.0
#: Block length of the BS.1770-4 gating algorithm, seconds (pyloudnorm raises below it).
GATING_BLOCK_S = 0.4
#: Minimum interpolated rate for the true-peak meter, Hz (4 x 44.1 kHz).
_MIN_OVERSAMPLED_RATE = 176_400


@dataclass(frozen=True)
class LoudnessMeasurement:
    """Loudness of one mono signal.

    Attributes:
        integrated_lufs: integrated loudness, LUFS (BS.1770-4 gated; for clips shorter than
            0.4 s, the ungated K-weighted mean square, see :func:`measure_loudness`);
            ``-inf`` for silence or anything below the -70 LUFS absolute gate.
        true_peak_dbtp: true peak, dBTP (BS.1770-4 Annex 2); ``-inf`` for digital silence.
        sample_peak_dbfs: largest absolute sample value, dBFS; ``-inf`` for silence.
        duration_s: length in seconds.
        gated: False when the clip was shorter than one 0.4 s block and the ungated
            measure was used.
    """

    integrated_lufs: float
    true_peak_dbtp: float
    sample_peak_dbfs: float
    duration_s: float
    gated: bool = True


@dataclass(frozen=True)
class NormalizationResult:
    """Result of :func:`normalize_loudness`.

    Attributes:
        samples: float32 array of shape ``(n,)``, same length as the input.
        before: measurement of the input.
        after: measurement of ``samples``.
        gain_db: static gain applied before the limiter, dB (0 for silence).
        limiter_gain_db: deepest gain reduction of the true-peak limiter, dB (<= 0; 0 when
            the limiter did nothing).
    """

    samples: np.ndarray
    before: LoudnessMeasurement
    after: LoudnessMeasurement
    gain_db: float
    limiter_gain_db: float = 0.0


def _check(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim != 1:
        raise MediaError(f"loudness expects mono samples of shape (n,), got shape {x.shape}")
    if sample_rate <= 0:
        raise MediaError(f"invalid sample rate {sample_rate} Hz")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise MediaError("audio contains NaN or infinite samples")
    return x


def _db(value: float) -> float:
    return 20.0 * math.log10(value) if value > 0 else float("-inf")


def _oversampling_factor(sample_rate: int) -> int:
    return max(4, math.ceil(_MIN_OVERSAMPLED_RATE / sample_rate))


def _oversampled_blocks(x: np.ndarray, sample_rate: int) -> tuple[Iterator[np.ndarray], int]:
    """The interpolated signal in blocks (``factor`` values per input sample, in order)."""
    factor = _oversampling_factor(sample_rate)
    blocks = iter_resample(x.astype(np.float32), sample_rate, sample_rate * factor, block_s=2.0)
    return blocks, factor


def _true_peak(x: np.ndarray, sample_rate: int) -> float:
    """Largest absolute value of the interpolated signal (linear, not dB)."""
    if x.size == 0:
        return 0.0
    blocks, _ = _oversampled_blocks(x, sample_rate)
    peak = float(np.abs(x).max())
    for up in blocks:
        if up.size:
            peak = max(peak, float(up.max()), float(-up.min()))
    return peak


def true_peak_envelope(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Per-sample true-peak envelope: max |interpolated| over each input sample period.

    The interpolation is the true-peak meter's (module docstring), block by block: memory is
    one block of the oversampled signal, not all of it.

    Args:
        samples: float array of shape ``(n,)``, full scale ±1.0.
        sample_rate: Hz.

    Returns:
        float64 array of shape ``(n,)``, linear (not dB), ``>= |samples|``.

    Raises:
        MediaError: on a non-mono array, non-finite samples or a bad rate.
    """
    x = _check(samples, sample_rate)
    env = np.abs(x)
    if x.size == 0:
        return env
    blocks, factor = _oversampled_blocks(x, sample_rate)
    pos = 0
    for up in blocks:
        n = up.size // factor
        phases = np.abs(up[: n * factor].reshape(n, factor)).max(axis=1)
        np.maximum(env[pos : pos + n], phases, out=env[pos : pos + n])
        pos += n
    return env


def true_peak_dbtp(samples: np.ndarray, sample_rate: int) -> float:
    """True peak of a mono signal, dBTP (ITU-R BS.1770-4 Annex 2, see module docstring).

    Args:
        samples: float array of shape ``(n,)``, full scale ±1.0.
        sample_rate: Hz.

    Returns:
        ``20 log10(max |x_oversampled|)``; ``-inf`` for digital silence or empty input.

    Raises:
        MediaError: on a non-mono array, non-finite samples or a bad rate.
    """
    x = _check(samples, sample_rate)
    return _db(_true_peak(x, sample_rate))


def _k_weight(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """BS.1770-4 K-weighting: the pre-filter (high shelf, +4 dB above ~1.5 kHz) then the RLB
    high-pass (38 Hz), designed for ``sample_rate`` as pyloudnorm's ``Meter`` designs them."""
    y = x.copy()
    for stage in (
        pyloudnorm.IIRfilter(4.0, 1 / math.sqrt(2), 1500.0, sample_rate, "high_shelf"),
        pyloudnorm.IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass"),
    ):
        y = stage.apply_filter(y)
    return y


def _integrated(x: np.ndarray, sample_rate: int) -> tuple[float, bool]:
    if x.size == 0 or not np.any(x):
        return float("-inf"), x.size >= GATING_BLOCK_S * sample_rate
    if x.size >= GATING_BLOCK_S * sample_rate:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(pyloudnorm.Meter(sample_rate).integrated_loudness(x))
        gated = True
    else:
        # Ungated BS.1770-4 measure (eq. 2 over the whole clip, one "block"): K-weighted
        # mean square, -0.691 dB offset, then the -70 LUFS absolute gate.
        ms = float(np.mean(np.square(_k_weight(x, sample_rate))))
        value = -0.691 + 10.0 * math.log10(ms) if ms > 0 else float("-inf")
        gated = False
    if not math.isfinite(value) or value < ABSOLUTE_GATE_LUFS:
        value = float("-inf")
    return value, gated


def measure_loudness(samples: np.ndarray, sample_rate: int) -> LoudnessMeasurement:
    """Measure integrated loudness, true peak and sample peak of a mono signal.

    Clips of at least 0.4 s use the gated BS.1770-4 integrated loudness (pyloudnorm).
    Shorter clips (pyloudnorm raises on them) use the ungated BS.1770-4 measure: the
    K-weighted mean square of the whole clip, ``-0.691 + 10 log10(ms)`` (BS.1770-4 eq. 2
    with a single block), then the -70 LUFS absolute gate. For stationary audio both agree.

    Args:
        samples: float array of shape ``(n,)``, full scale ±1.0.
        sample_rate: Hz.

    Returns:
        A :class:`LoudnessMeasurement`; silence gives ``-inf`` loudness and peaks (no
        warnings, no NaN).

    Raises:
        MediaError: on a non-mono array, NaN/inf samples or a non-positive rate.
    """
    x = _check(samples, sample_rate)
    lufs, gated = _integrated(x, sample_rate)
    tp = _db(_true_peak(x, sample_rate))
    sp = _db(float(np.abs(x).max())) if x.size else float("-inf")
    return LoudnessMeasurement(
        integrated_lufs=lufs,
        true_peak_dbtp=tp,
        sample_peak_dbfs=sp,
        duration_s=x.size / sample_rate,
        gated=gated,
    )


def _limit(
    samples: np.ndarray,
    envelope: np.ndarray,
    sample_rate: int,
    ceiling_db: float,
    *,
    attack_s: float = 0.005,
    hold_s: float = 0.02,
) -> tuple[np.ndarray, float]:
    """Look-ahead true-peak limiter (offline, zero-phase gain envelope).

    Required gain ``g_req[n] = min(1, ceiling / envelope[n])``; a sliding minimum over
    ``±R`` samples (R = hold >= 2 h) followed by two centred moving averages of ``2h + 1``
    samples (h = attack / 2) gives a smooth gain (triangular ramps of ``attack`` on each
    side) that never exceeds ``g_req`` at any sample: each output is an average of minima
    over windows that contain that sample.

    Args:
        samples: float array of shape ``(n,)``.
        envelope: float array of shape ``(n,)``, linear: :func:`true_peak_envelope` of
            ``samples``.
        sample_rate: Hz.
        ceiling_db: dBTP (dBFS for a sample-peak envelope).
        attack_s: gain ramp, seconds.
        hold_s: hold around each peak, seconds.

    Returns:
        ``(limited, deepest_reduction_db)``: float64 ``(n,)`` and the lowest gain, dB (0
        when nothing was over the ceiling, ``limited`` then being ``samples`` itself).
    """
    x = np.asarray(samples, dtype=np.float64)
    ceiling = 10.0 ** (ceiling_db / 20.0)
    g_req = np.minimum(1.0, ceiling / np.maximum(np.asarray(envelope, np.float64), 1e-12))
    if g_req.size == 0 or g_req.min() >= 1.0:
        return x, 0.0
    h = max(1, round(attack_s * sample_rate / 2))
    r = max(2 * h, round(hold_s * sample_rate))
    g = scipy.ndimage.minimum_filter1d(g_req, size=2 * r + 1, mode="nearest")
    g = scipy.ndimage.uniform_filter1d(g, size=2 * h + 1, mode="nearest")
    g = scipy.ndimage.uniform_filter1d(g, size=2 * h + 1, mode="nearest")
    g = np.minimum(g, 1.0)
    return x * g, _db(float(g.min()))


def normalize_loudness(
    samples: np.ndarray,
    sample_rate: int,
    target_lufs: float = WEB_TARGET_LUFS,
    max_true_peak_dbtp: float = -1.0,
    *,
    attack_s: float = 0.005,
    hold_s: float = 0.02,
    margin_db: float = 0.3,
    tolerance_lu: float = 0.1,
    max_iterations: int = 8,
) -> NormalizationResult:
    """Normalise to an integrated loudness target with a true-peak limiter.

    Steps: static gain ``target - measured``; a look-ahead limiter (gain envelope computed
    from the oversampled true-peak envelope, ``attack_s`` ramps, ``hold_s`` hold, never
    hard clipping) to ``max_true_peak_dbtp - margin_db``; re-measure and, if limiting
    lowered the loudness by more than ``tolerance_lu``, raise the static gain by the
    deficit and repeat (at most ``max_iterations`` passes). ``margin_db`` keeps the result
    below the ceiling on other meters too (ffmpeg ``ebur128`` interpolates differently).

    Args:
        samples: float array of shape ``(n,)``, full scale ±1.0, any length (< 0.4 s uses
            the ungated measure, see :func:`measure_loudness`).
        sample_rate: Hz.
        target_lufs: integrated loudness target, LUFS (-16 web speech, -23 EBU R128).
        max_true_peak_dbtp: true-peak ceiling, dBTP (EBU R128: -1).
        attack_s: limiter attack ramp, seconds.
        hold_s: limiter hold before release, seconds.
        margin_db: safety margin under ``max_true_peak_dbtp``, dB.
        tolerance_lu: loudness error accepted without another pass, LU.
        max_iterations: upper bound on gain/limiter passes. Signals whose crest factor
            exceeds ``max_true_peak_dbtp - target_lufs`` by a lot may end slightly under
            the target; ``after`` reports what was reached.

    Returns:
        A :class:`NormalizationResult`; silence (below -70 LUFS) comes back unchanged with
        ``gain_db == 0``.

    Raises:
        MediaError: on a non-mono array, NaN/inf samples or a non-positive rate.
    """
    x = _check(samples, sample_rate)
    env = true_peak_envelope(x, sample_rate)
    lufs, gated = _integrated(x, sample_rate)
    before = LoudnessMeasurement(
        integrated_lufs=lufs,
        true_peak_dbtp=_db(float(env.max())) if x.size else float("-inf"),
        sample_peak_dbfs=_db(float(np.abs(x).max())) if x.size else float("-inf"),
        duration_s=x.size / sample_rate,
        gated=gated,
    )
    if not math.isfinite(before.integrated_lufs):
        return NormalizationResult(x.astype(np.float32), before, before, 0.0, 0.0)

    gain_db = target_lufs - before.integrated_lufs
    ceiling_db = max_true_peak_dbtp - margin_db
    best: tuple[np.ndarray, LoudnessMeasurement, float, float] | None = None
    previous: tuple[float, float] | None = None
    # The envelope is linear in x: scale it instead of recomputing it every pass.
    for _ in range(max_iterations):
        scale = 10.0 ** (gain_db / 20.0)
        y, reduction = _limit(
            x * scale, env * scale, sample_rate, ceiling_db, attack_s=attack_s, hold_s=hold_s
        )
        y = y.astype(np.float32)
        after = measure_loudness(y, sample_rate)
        if after.true_peak_dbtp > max_true_peak_dbtp - margin_db / 2:
            # The gain envelope's own modulation pushed an inter-sample peak up: lower the
            # ceiling by the excess and retry at the same static gain.
            ceiling_db -= after.true_peak_dbtp - ceiling_db
            continue
        best = (y, after, gain_db, reduction)
        error = target_lufs - after.integrated_lufs
        if abs(error) <= tolerance_lu:
            break
        # Secant step on loudness(gain): the limiter eats part of every extra dB, so the
        # slope is in (0, 1]; clamp it to keep the step bounded.
        slope = 1.0
        if previous is not None and abs(gain_db - previous[0]) > 1e-6:
            slope = (after.integrated_lufs - previous[1]) / (gain_db - previous[0])
            slope = min(1.0, max(0.1, slope))
        previous = (gain_db, after.integrated_lufs)
        gain_db += error / slope
    if best is None:  # pathological: fall back to a pure static gain under the ceiling
        peak_gain = ceiling_db - before.true_peak_dbtp
        gain_db = min(target_lufs - before.integrated_lufs, peak_gain)
        y = (x * 10.0 ** (gain_db / 20.0)).astype(np.float32)
        best = (y, measure_loudness(y, sample_rate), gain_db, 0.0)
    y, after, gain_db, reduction = best
    return NormalizationResult(
        samples=y, before=before, after=after, gain_db=gain_db, limiter_gain_db=reduction
    )
