"""Music bed under a narration: fitted to length, ducked by the speech, mixed on target.

* **Length.** A shorter piece is looped (its own quiet ends trimmed) with an equal-power
  cross-fade at each seam; a longer one is cut; the bed fades in and out.
* **Level.** The bed is set ``bed_lu_below_voice`` LU under the voice's integrated loudness
  while ducked (under speech), and rises by ``duck_depth_db`` in the pauses.
* **Ducking** (a side-chain gate-style ducker, as in broadcast voice-over "auto-duck"): the
  key is the voice's short-term RMS (``detector_ms`` window, 1 ms control rate) above
  ``threshold_db`` relative to the voice's integrated loudness; the key is held for
  ``hold_ms`` after speech stops and looks ahead by ``attack_ms`` (offline, so the bed is
  already down when a word starts). The gain in dB follows the key through a branching
  one-pole smoother, the standard compressor ballistics of Giannoulis, Massberg & Reiss,
  "Digital Dynamic Range Compressor Design — A Tutorial and Analysis", JAES 60(6), 2012,
  eq. 17: ``g[n] = a g[n-1] + (1 - a) target[n]`` with ``a = exp(-1 / (tau fs))`` and
  ``tau`` the attack time constant when the gain falls, the release time constant when it
  rises (times are time constants: 63 % of the step; defaults attack 50 ms, release 400 ms,
  hold 200 ms — in the range of broadcast duckers and DAW ducking presets).
* **Mix.** Voice + ducked bed, normalised to ``target_lufs`` with the true-peak limiter of
  :func:`avgen_dagster.media.loudness.normalize_loudness` at ``limit_dbtp`` (default −2 dBTP:
  1 dB of headroom under the −1 dBTP ceiling of EBU R128 for the AAC encode's overshoot).

Audio is float32 mono ``(n,)`` at full scale ±1.0; rates in Hz; levels in dB / LU / LUFS.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pyloudnorm

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.media.audio_io import resample
from avgen_dagster.media.loudness import (
    ABSOLUTE_GATE_LUFS,
    GATING_BLOCK_S,
    WEB_TARGET_LUFS,
    LoudnessMeasurement,
    normalize_loudness,
)

__all__ = [
    "BedMix",
    "DuckingSettings",
    "ducking_gain_db",
    "fit_music",
    "mix_with_bed",
]

CONTROL_RATE_HZ = 1000


@dataclass(frozen=True)
class DuckingSettings:
    """Bed level and side-chain ballistics (see the module docstring).

    Attributes:
        bed_lu_below_voice: bed loudness under speech, LU below the voice's integrated
            loudness (e.g. 18).
        duck_depth_db: how much higher the bed is in pauses than under speech, dB.
        attack_ms: time constant of the gain falling (ducking in), ms; also the look-ahead.
        release_ms: time constant of the gain rising (ducking out), ms.
        hold_ms: the key stays on this long after speech stops, ms.
        threshold_db: key threshold, dB relative to the voice's integrated loudness.
        detector_ms: RMS window of the speech detector, ms.
        loop_crossfade_s: cross-fade at each loop seam, s.
        fade_in_s: bed fade-in, s.
        fade_out_s: bed fade-out at the end of the narration, s.
    """

    bed_lu_below_voice: float = 18.0
    duck_depth_db: float = 12.0
    attack_ms: float = 50.0
    release_ms: float = 400.0
    hold_ms: float = 200.0
    threshold_db: float = -20.0
    detector_ms: float = 20.0
    loop_crossfade_s: float = 1.0
    fade_in_s: float = 0.5
    fade_out_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.bed_lu_below_voice <= 60 or not 0 <= self.duck_depth_db <= 40:
            raise InvalidInputError(
                f"music bed level must be 0-60 LU below the voice and the duck depth 0-40 dB, "
                f"got {self.bed_lu_below_voice} and {self.duck_depth_db}"
            )
        times = (self.attack_ms, self.release_ms, self.detector_ms)
        if min(times) <= 0 or self.hold_ms < 0:
            raise InvalidInputError(f"ducking times must be positive, got {self}")


@dataclass(frozen=True)
class BedMix:
    """Result of :func:`mix_with_bed`.

    Attributes:
        mix: the final mix, float32 ``(n,)`` at ``sample_rate``, on target, true-peak limited.
        sample_rate: Hz.
        voice: the voice stem at the mix's static gain (before the limiter), float32 ``(n,)``.
        bed: the ducked bed stem at the mix's static gain (before the limiter); zeros without
            music.
        duck_gain_db: the ducking gain, dB (0 = not ducked), at ``CONTROL_RATE_HZ``.
        speech_active: the side-chain key (True = speech) at ``CONTROL_RATE_HZ``.
        bed_gain_db: static gain applied to the music, dB.
        bed_lu_below_voice: bed loudness under speech, LU below the voice, as measured on the
            stems (None without music).
        loudness: measurement of ``mix`` (our BS.1770-4 meter).
        limiter_gain_db: deepest true-peak limiter reduction, dB (<= 0).
        looped: the music was shorter than the narration and was looped.
    """

    mix: np.ndarray
    sample_rate: int
    voice: np.ndarray
    bed: np.ndarray
    duck_gain_db: np.ndarray
    speech_active: np.ndarray
    bed_gain_db: float
    bed_lu_below_voice: float | None
    loudness: LoudnessMeasurement
    limiter_gain_db: float
    looped: bool


def _integrated_lufs(x: np.ndarray, sample_rate: int) -> float:
    """BS.1770-4 integrated loudness only (pyloudnorm; no true-peak pass), LUFS.

    ``-inf`` for silence or audio below the -70 LUFS gate. Audio shorter than one 0.4 s
    gating block (a one-word narration) is measured repeated to one block: the loudness of
    a periodic signal is that of one period.
    """
    if x.size == 0 or not np.any(x):
        return float("-inf")
    block = math.ceil(GATING_BLOCK_S * sample_rate)
    if x.size < block:
        x = np.tile(x, math.ceil(block / x.size))[:block]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(pyloudnorm.Meter(sample_rate).integrated_loudness(x.astype(np.float64)))
    return value if math.isfinite(value) and value >= ABSOLUTE_GATE_LUFS else float("-inf")


def _fade(n: int, length: int) -> np.ndarray:
    """Raised-cosine ramp 0 -> 1 over ``length`` samples (clipped to ``n``)."""
    length = max(1, min(n, length))
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(length) + 0.5) / length)).astype(np.float32)


def _trim_quiet_ends(x: np.ndarray, sample_rate: int, below_db: float = 30.0) -> np.ndarray:
    """``x`` without leading/trailing 50 ms frames quieter than ``below_db`` under its RMS
    (a piece's own fade-in/out or silence, which would make a dip at every loop seam)."""
    hop = max(1, sample_rate // 20)
    n = x.size // hop
    if n < 3:
        return x
    power = np.mean(np.square(x[: n * hop].reshape(n, hop), dtype=np.float64), axis=1)
    loud = np.nonzero(power > np.mean(power) * 10 ** (-below_db / 10))[0]
    if loud.size == 0:
        return x
    return x[loud[0] * hop : (loud[-1] + 1) * hop]


def fit_music(
    music: np.ndarray,
    sample_rate: int,
    n_samples: int,
    *,
    crossfade_s: float = 1.0,
    fade_in_s: float = 0.5,
    fade_out_s: float = 2.0,
) -> tuple[np.ndarray, bool]:
    """Loop (equal-power cross-fades) or cut ``music`` to ``n_samples``, with fades.

    Before looping, the piece's own quiet ends (fade-in/out, silence: 50 ms frames 30 dB
    under its mean power) are trimmed so the seams do not dip.

    Args:
        music: float mono ``(m,)``, m > 0.
        sample_rate: Hz.
        n_samples: output length, samples.
        crossfade_s: seam cross-fade, s (at most half the music's length).
        fade_in_s: fade-in, s.
        fade_out_s: fade-out at the end, s.

    Returns:
        ``(bed, looped)``: float32 ``(n_samples,)`` and whether it was looped.

    Raises:
        InvalidInputError: empty music.
    """
    x = np.asarray(music, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise InvalidInputError("the music for the bed is empty")
    out = np.zeros(n_samples, np.float32)
    looped = x.size < n_samples
    if looped:
        x = _trim_quiet_ends(x, sample_rate)
    xf = min(round(crossfade_s * sample_rate), x.size // 2) if looped else 0
    ramp_in = np.sqrt(_fade(xf, xf)) if xf else np.zeros(0, np.float32)
    ramp_out = ramp_in[::-1]
    pos = 0
    while pos < n_samples:
        take = min(x.size, n_samples - pos)
        piece = x[:take].copy()
        if pos and xf:  # equal-power: sin/cos-like ramps keep uncorrelated power constant
            k = min(xf, take)
            piece[:k] *= ramp_in[:k]
            out[pos : pos + k] *= ramp_out[:k]
        out[pos : pos + take] += piece
        pos += x.size - xf
    fi, fo = round(fade_in_s * sample_rate), round(fade_out_s * sample_rate)
    if fi:
        out[: min(fi, n_samples)] *= _fade(n_samples, fi)
    if fo:
        out[n_samples - min(fo, n_samples) :] *= _fade(n_samples, fo)[::-1]
    return out, looped


def _speech_key(voice: np.ndarray, sr: int, voice_lufs: float, s: DuckingSettings) -> np.ndarray:
    """Side-chain key at 1 kHz: RMS above threshold, held and looked ahead."""
    hop = sr // CONTROL_RATE_HZ
    n_ctrl = -(-voice.size // hop)
    win = max(hop, round(s.detector_ms * sr / 1000))
    csum = np.concatenate([[0.0], np.cumsum(voice.astype(np.float64) ** 2)])
    centres = np.minimum(np.arange(n_ctrl) * hop + hop // 2, voice.size)
    lo = np.clip(centres - win // 2, 0, voice.size)
    hi = np.clip(centres + win // 2, 0, voice.size)
    ms = (csum[hi] - csum[lo]) / np.maximum(hi - lo, 1)
    level = 10 * np.log10(np.maximum(ms, 1e-12))
    active = level > voice_lufs + s.threshold_db
    hold = round(s.hold_ms * CONTROL_RATE_HZ / 1000)
    look = round(s.attack_ms * CONTROL_RATE_HZ / 1000)
    count = np.concatenate([[0], np.cumsum(active)])
    idx = np.arange(n_ctrl)
    upper = np.minimum(idx + look + 1, n_ctrl)
    lower = np.maximum(idx - hold, 0)
    return (count[upper] - count[lower]) > 0


def ducking_gain_db(
    voice: np.ndarray, sample_rate: int, settings: DuckingSettings | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Ducking gain for a bed under ``voice`` (module docstring: key and ballistics).

    Args:
        voice: float mono ``(n,)``.
        sample_rate: Hz (a multiple of 1000 Hz is exact; others round the control hop).
        settings: ballistics; default :class:`DuckingSettings` ().

    Returns:
        ``(gain_db, key)`` at 1 kHz: gain in dB (0 in long pauses, ``-duck_depth_db`` under
        speech) and the boolean speech key.
    """
    s = settings or DuckingSettings()
    voice = np.asarray(voice, dtype=np.float32)
    lufs = _integrated_lufs(voice, sample_rate)
    if not math.isfinite(lufs):
        n = -(-voice.size // max(1, sample_rate // CONTROL_RATE_HZ))
        return np.zeros(n), np.zeros(n, bool)
    key = _speech_key(voice, sample_rate, lufs, s)
    target = np.where(key, -s.duck_depth_db, 0.0)
    a_att = math.exp(-1000.0 / (s.attack_ms * CONTROL_RATE_HZ))
    a_rel = math.exp(-1000.0 / (s.release_ms * CONTROL_RATE_HZ))
    gain = np.empty(target.size)
    g = float(target[0])
    for i, tgt in enumerate(target.tolist()):
        a = a_att if tgt < g else a_rel
        g = a * g + (1.0 - a) * tgt
        gain[i] = g
    return gain, key


def _loudness_where(x: np.ndarray, sr: int, mask: np.ndarray) -> float:
    """Integrated loudness of the samples of ``x`` where ``mask`` (1 kHz) is True, LUFS."""
    hop = sr // CONTROL_RATE_HZ
    full = np.repeat(mask, hop)[: x.size]
    return _integrated_lufs(x[: full.size][full], sr)


def mix_with_bed(
    voice: np.ndarray,
    voice_rate: int,
    music: np.ndarray | None = None,
    music_rate: int | None = None,
    *,
    settings: DuckingSettings | None = None,
    target_lufs: float = WEB_TARGET_LUFS,
    limit_dbtp: float = -2.0,
    sample_rate: int = 48_000,
) -> BedMix:
    """Mix a narration with a ducked music bed and normalise the mix.

    Args:
        voice: the narration, float mono ``(n,)``.
        voice_rate: its rate, Hz.
        music: the music, float mono ``(m,)``, or None for the voice alone.
        music_rate: the music's rate, Hz (required with ``music``).
        settings: bed level and ballistics; default :class:`DuckingSettings` ().
        target_lufs: integrated loudness of the mix, LUFS (−16 web speech, −23 EBU R128).
        limit_dbtp: true-peak limiter ceiling, dBTP (keep under −1 for the lossy encode).
        sample_rate: output rate, Hz.

    Returns:
        A :class:`BedMix`; its length is the narration's.

    Raises:
        InvalidInputError: empty or silent voice, or ``music`` without ``music_rate``.
    """
    s = settings or DuckingSettings()
    v = resample(np.asarray(voice, np.float32), voice_rate, sample_rate).astype(np.float32)
    v_lufs = _integrated_lufs(v, sample_rate)
    if not math.isfinite(v_lufs):
        raise InvalidInputError("the narration is empty or silent: nothing to mix a bed under")
    gain_db, key = ducking_gain_db(v, sample_rate, s)
    bed = np.zeros_like(v)
    bed_gain_db, looped, measured = 0.0, False, None
    if music is not None:
        if music_rate is None:
            raise InvalidInputError("music_rate is required with music")
        m = resample(np.asarray(music, np.float32), music_rate, sample_rate)
        fitted, looped = fit_music(
            m, sample_rate, v.size, crossfade_s=s.loop_crossfade_s,
            fade_in_s=s.fade_in_s, fade_out_s=s.fade_out_s,
        )  # fmt: skip
        m_lufs = _integrated_lufs(fitted, sample_rate)
        if math.isfinite(m_lufs):
            bed_gain_db = v_lufs - s.bed_lu_below_voice + s.duck_depth_db - m_lufs
            t_ctrl = np.arange(gain_db.size) / CONTROL_RATE_HZ
            duck = np.interp(np.arange(v.size) / sample_rate, t_ctrl, gain_db)
            bed = (fitted * 10.0 ** ((bed_gain_db + duck) / 20.0)).astype(np.float32)
            under = _loudness_where(bed, sample_rate, key)
            measured = v_lufs - under if math.isfinite(under) else None
    norm = normalize_loudness(v + bed, sample_rate, target_lufs, max_true_peak_dbtp=limit_dbtp)
    g = np.float32(10.0 ** (norm.gain_db / 20.0))
    return BedMix(
        mix=norm.samples,
        sample_rate=sample_rate,
        voice=v * g,
        bed=bed * g,
        duck_gain_db=gain_db,
        speech_active=key,
        bed_gain_db=bed_gain_db,
        bed_lu_below_voice=measured,
        loudness=norm.after,
        limiter_gain_db=norm.limiter_gain_db,
        looped=looped,
    )
