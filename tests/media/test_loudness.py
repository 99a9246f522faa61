"""Loudness measurement/normalisation, checked against ffmpeg's independent ebur128 meter."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from avgen_dagster.devtools.ffmpeg_cli import ffmpeg_ebur128
from avgen_dagster.errors import MediaError
from avgen_dagster.media.audio_io import read_wav, resample, write_wav
from avgen_dagster.media.loudness import (
    measure_loudness,
    normalize_loudness,
    true_peak_dbtp,
)

RNG = np.random.default_rng(1234)


def white(sr: int, seconds: float) -> np.ndarray:
    return 0.05 * RNG.standard_normal(int(sr * seconds))


def pink(sr: int, seconds: float) -> np.ndarray:
    n = int(sr * seconds)
    spec = np.fft.rfft(RNG.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return 0.1 * x / x.std()


def tone_bursts(sr: int, seconds: float) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    gate = (np.floor(t / 0.25) % 2 == 0).astype(float)
    return 0.2 * np.sin(2 * np.pi * 1000 * t) * gate


def speech_like(sr: int, seconds: float) -> np.ndarray:
    """Band-passed noise, syllable-rate (4 Hz) squared AM and 0.5 Hz phrase gating."""
    t = np.arange(int(sr * seconds)) / sr
    b, a = scipy.signal.butter(4, [100 / (sr / 2), 3000 / (sr / 2)], "band")
    x = scipy.signal.lfilter(b, a, RNG.standard_normal(t.size))
    env = (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2 * (0.2 + 0.8 * (np.sin(np.pi * t) > 0))
    y = x * env
    return 0.3 * y / np.abs(y).max()


SIGNALS = {"white": white, "pink": pink, "bursts": tone_bursts, "speech": speech_like}


CASES = [(48000, name, target) for name in SIGNALS for target in (-16.0, -23.0)] + [
    (22050, name, target) for name in ("bursts", "speech") for target in (-16.0, -23.0)
]


@pytest.mark.parametrize(("sr", "name", "target"), CASES)
def test_normalize_matches_ffmpeg(tmp_path: Path, sr: int, name: str, target: float) -> None:
    x = SIGNALS[name](sr, 4.0)
    r = normalize_loudness(x, sr, target)
    assert r.samples.dtype == np.float32 and r.samples.shape == x.shape
    assert abs(r.after.integrated_lufs - target) <= 0.2
    assert r.after.true_peak_dbtp <= -1.0
    wav = write_wav(tmp_path / "n.wav", r.samples, sr, pcm16=False)
    meter = ffmpeg_ebur128(wav)
    i_lufs, peak = meter.integrated_lufs, meter.true_peak_dbtp
    assert abs(i_lufs - target) <= 0.5, (name, sr, target, i_lufs)
    assert peak <= -1.0, (name, sr, target, peak)


def test_speech_at_minus16_needs_the_limiter(tmp_path: Path) -> None:
    sr = 22050
    x = speech_like(sr, 4.0)
    before = measure_loudness(x, sr)
    static = x * 10 ** ((-16.0 - before.integrated_lufs) / 20)
    assert true_peak_dbtp(static, sr) > -1.0  # a plain gain would break the ceiling
    r = normalize_loudness(x, sr, -16.0)
    assert r.limiter_gain_db < -0.5
    wav = write_wav(tmp_path / "s.wav", r.samples, sr)  # 16-bit PCM this time
    meter = ffmpeg_ebur128(wav)
    i_lufs, peak = meter.integrated_lufs, meter.true_peak_dbtp
    assert abs(i_lufs + 16.0) <= 0.5 and peak <= -1.0


def test_loud_peaks_limited_smoothly_without_hard_clipping() -> None:
    sr = 48000
    x = pink(sr, 3.0) * 0.2
    clicks = np.arange(sr // 4, x.size, sr // 2)
    x[clicks] = 0.95  # isolated loud peaks ~30 dB over the programme
    r = normalize_loudness(x, sr, -16.0)
    y = r.samples.astype(np.float64)
    assert r.after.true_peak_dbtp <= -1.0
    assert abs(r.after.integrated_lufs + 16.0) <= 0.5
    # Recover the limiter's gain where the input is not tiny: it is <= 1 and changes slowly
    # (a hard clipper would change gain within one sample and flatten the peak top).
    ref = x * 10 ** (r.gain_db / 20)
    mask = np.abs(ref) > 0.02
    g = y[mask] / ref[mask]
    assert g.max() <= 1.0 + 1e-4
    assert g.min() < 0.5  # the clicks really were attenuated
    idx = np.flatnonzero(mask)
    near = np.diff(idx) == 1
    steps = np.abs(np.diff(g))[near]
    attack = 0.005 * sr
    assert steps.max() < 2.5 / attack  # ramps over several ms, never a jump
    top = np.abs(y).max()
    assert np.count_nonzero(np.abs(y) >= top * 0.999) <= 2 * len(clicks)  # no flat tops


def test_short_clip_is_measured_and_normalised() -> None:
    sr = 48000
    t = np.arange(int(0.2 * sr)) / sr
    x = 0.1 * np.sin(2 * np.pi * 1000 * t)
    m = measure_loudness(x, sr)
    assert not m.gated and m.duration_s == pytest.approx(0.2)
    long = 0.1 * np.sin(2 * np.pi * 1000 * np.arange(2 * sr) / sr)
    assert m.integrated_lufs == pytest.approx(measure_loudness(long, sr).integrated_lufs, abs=0.3)
    for target in (-16.0, -23.0):
        r = normalize_loudness(x, sr, target)
        assert r.after.integrated_lufs == pytest.approx(target, abs=0.2)
        assert r.after.true_peak_dbtp <= -1.0


def test_silence_in_silence_out() -> None:
    sr = 22050
    for n in (0, 100, sr * 2):
        x = np.zeros(n, np.float32)
        m = measure_loudness(x, sr)
        assert m.integrated_lufs == -math.inf and m.true_peak_dbtp == -math.inf
        r = normalize_loudness(x, sr)
        assert r.gain_db == 0.0 and not np.any(r.samples) and r.samples.shape == (n,)
        assert not np.isnan(r.samples).any()
    quiet = 1e-6 * np.sin(np.arange(sr) * 0.1)  # below the -70 LUFS absolute gate
    assert measure_loudness(quiet, sr).integrated_lufs == -math.inf


def test_reference_sine_and_inter_sample_peak() -> None:
    sr = 48000
    t = np.arange(3 * sr) / sr
    # BS.1770-4: a 997 Hz sine at 0 dBFS peak reads -3.01 LUFS in one channel.
    m = measure_loudness(0.1 * np.sin(2 * np.pi * 997 * t), sr)
    assert m.integrated_lufs == pytest.approx(-23.01, abs=0.05)
    # fs/4 sine at 45 deg phase: every sample is at 0.707 but the waveform peaks at 1.0.
    x = np.sin(2 * np.pi * (sr / 4) * t + np.pi / 4)
    ramp = np.linspace(0.0, 1.0, sr // 100)  # 10 ms fades: no step at the clip edges
    x[: ramp.size] *= ramp
    x[-ramp.size :] *= ramp[::-1]
    m = measure_loudness(x, sr)
    assert m.sample_peak_dbfs == pytest.approx(-3.01, abs=0.02)
    assert m.true_peak_dbtp == pytest.approx(0.0, abs=0.1)


def test_bad_input_raises() -> None:
    with pytest.raises(MediaError):
        measure_loudness(np.zeros((10, 2)), 48000)
    with pytest.raises(MediaError):
        measure_loudness(np.array([0.0, np.nan]), 48000)
    with pytest.raises(MediaError):
        normalize_loudness(np.zeros(10), 0)


def test_wav_roundtrip_downmix_resample_and_errors(tmp_path: Path) -> None:
    sr = 22050
    x = (0.5 * np.sin(np.arange(sr) * 0.05)).astype(np.float32)
    p = write_wav(tmp_path / "a.wav", x, sr)
    y, sr2 = read_wav(p)
    assert sr2 == sr and y.dtype == np.float32 and np.abs(y - x).max() < 1e-4
    import scipy.io.wavfile

    stereo = np.stack([x, -x * 0 + 0.25], axis=1)
    scipy.io.wavfile.write(tmp_path / "s.wav", sr, stereo)
    z, _ = read_wav(tmp_path / "s.wav")
    assert z.shape == (sr,) and np.allclose(z, (x + 0.25) / 2, atol=1e-6)
    up = resample(x, sr, 48000)
    assert up.shape == (48000,) and up.dtype == np.float32
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(MediaError):
        read_wav(tmp_path / "bad.wav")
    with pytest.raises(MediaError):
        read_wav(tmp_path / "missing.wav")
    assert not list(tmp_path.glob(".tmp-*"))
