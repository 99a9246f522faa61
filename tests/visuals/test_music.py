"""Music backends: the procedural composer and MusicGen on a tiny random-weight model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from avgen_dagster.backends import music as music_mod
from avgen_dagster.backends.music import (
    GENRES,
    MusicGenerator,
    MusicGenMusic,
    ProceduralMusic,
    normalize_music,
)
from avgen_dagster.devtools.ffmpeg_cli import ffmpeg_ebur128
from avgen_dagster.errors import BackendError, InvalidInputError
from avgen_dagster.media.audio_io import write_wav

SR = 16000


def _estimate_bpm(x: np.ndarray, sr: int) -> float:
    """Tempo from the autocorrelation of a spectral-flux onset envelope (Bello et al. 2005,
    "A Tutorial on Onset Detection in Music Signals": half-wave rectified log-magnitude
    STFT differences summed over bins, 200 frames/s), peak over 50-180 BPM, parabolic
    interpolation of the peak lag."""
    hop = sr // 200
    _, _, z = scipy.signal.stft(x, sr, nperseg=512, noverlap=512 - hop)
    mag = np.log1p(100 * np.abs(z))
    onset = np.maximum(0.0, np.diff(mag, axis=1)).sum(axis=0)
    onset -= onset.mean()
    ac = np.correlate(onset, onset, "full")[onset.size - 1 :]
    lo, hi = int(200 * 60 / 180), int(200 * 60 / 50)
    k = lo + int(np.argmax(ac[lo : hi + 1]))
    a, b, c = ac[k - 1], ac[k], ac[k + 1]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
    return 200 * 60 / (k + shift)


def _centroid(x: np.ndarray, sr: int) -> float:
    mag = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(x.size, 1 / sr)
    return float(np.sum(freqs * mag) / np.sum(mag))


def test_genres_are_complete() -> None:
    assert len(GENRES) >= 6
    tempos = {g.tempo_bpm for g in GENRES.values()}
    progressions = {g.progression for g in GENRES.values()}
    assert len(tempos) >= 6 and len(progressions) >= 5
    assert {g.pad for g in GENRES.values()} >= {"warm_pad", "epiano", "supersaw", "strings"}


def test_duration_determinism_and_fades() -> None:
    gen = ProceduralMusic(sample_rate=SR)
    assert isinstance(gen, MusicGenerator)
    x = gen.generate("lofi", 7.3, seed=5)
    assert x.dtype == np.float32 and x.shape == (round(7.3 * SR),)
    assert np.array_equal(x, ProceduralMusic(sample_rate=SR).generate("lofi", 7.3, seed=5))
    y = gen.generate("lofi", 7.3, seed=6)
    assert float(np.mean(np.abs(x - y))) > 0.01
    assert float(np.max(np.abs(x))) <= 1.0
    rms = lambda s: float(np.sqrt(np.mean(s**2)))  # noqa: E731
    mid = rms(x[x.size // 3 : 2 * x.size // 3])
    assert rms(x[: SR // 50]) < 0.1 * mid and rms(x[-SR // 50 :]) < 0.1 * mid


@pytest.mark.parametrize("genre", ["rock", "electronic", "pop", "lofi"])
def test_tempo_in_range_bar_aligned_and_audible(genre: str) -> None:
    gen = ProceduralMusic(sample_rate=SR)
    duration = 20.0
    x = gen.generate(genre, duration, seed=11)
    comp = gen.last_composition
    lo, hi = GENRES[genre].tempo_bpm
    assert lo <= comp.bpm <= hi and comp.bar_aligned
    bars = comp.bpm * duration / 60 / comp.beats_per_bar
    assert abs(bars - round(bars)) < 1e-9 and round(bars) == comp.bars
    est = _estimate_bpm(x, SR)
    ratios = [est / comp.bpm, 2 * est / comp.bpm, est / (2 * comp.bpm)]
    assert min(abs(r - 1) for r in ratios) < 0.04, (genre, est, comp.bpm)


def test_genres_sound_different() -> None:
    gen = ProceduralMusic(sample_rate=SR)
    ambient = gen.generate("ambient", 12.0, seed=1)
    t_ambient = gen.last_composition.bpm
    rock = gen.generate("rock", 12.0, seed=1)
    t_rock = gen.last_composition.bpm
    classical = gen.generate("classical", 12.0, seed=1)
    assert gen.last_composition.beats_per_bar == 3
    assert t_rock > t_ambient + 30
    assert _centroid(rock, SR) > 1.5 * _centroid(ambient, SR)
    assert _centroid(rock, SR) > 1.5 * _centroid(classical, SR)


def test_short_track_ends_with_fade() -> None:
    gen = ProceduralMusic(sample_rate=SR)
    x = gen.generate("jazz", 1.0, seed=0)
    assert x.size == SR and not gen.last_composition.bar_aligned


def test_bad_requests() -> None:
    gen = ProceduralMusic(sample_rate=SR, max_duration_s=60)
    with pytest.raises(InvalidInputError, match="ambient, classical, electronic, jazz"):
        gen.generate("polka", 5, seed=0)
    with pytest.raises(InvalidInputError, match="positive"):
        gen.generate("rock", 0, seed=0)
    with pytest.raises(InvalidInputError, match="maximum of 60"):
        gen.generate("rock", 61, seed=0)
    with pytest.raises(InvalidInputError):
        gen.generate("rock", math.nan, seed=0)


def test_normalized_loudness_measured_by_ffmpeg(tmp_path: Path) -> None:
    gen = ProceduralMusic(sample_rate=32000)
    x = gen.generate("electronic", 8.0, seed=2)
    result = normalize_music(x, 32000, target_lufs=-14.0)
    assert abs(result.after.integrated_lufs + 14.0) < 0.5
    wav = write_wav(tmp_path / "m.wav", result.samples, 32000, pcm16=False)
    measured = ffmpeg_ebur128(wav)
    assert abs(measured.integrated_lufs + 14.0) < 0.7, measured
    assert measured.true_peak_dbtp <= -1.0 + 0.05, measured


def test_musicgen_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="does not exist"):
        MusicGenMusic(tmp_path / "missing")
    with pytest.raises(BackendError, match=r"lacks config\.json"):
        MusicGenMusic(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(BackendError, match="not musicgen"):
        MusicGenMusic(tmp_path)


def test_musicgen_tiny_window_and_continuation(tiny_musicgen_dir: Path) -> None:
    music_mod.MODEL_CACHE.clear()
    before = music_mod.MODEL_CACHE.load_count
    gen = MusicGenMusic(
        tiny_musicgen_dir, device="auto", window_s=1.0, prompt_s=0.4, crossfade_s=0.1
    )
    assert isinstance(gen, MusicGenerator)
    assert gen.sample_rate == 8000
    short = gen.generate("rock", 0.8, seed=1)
    assert short.dtype == np.float32 and short.shape == (6400,)
    assert gen.last_windows == 1 and np.all(np.isfinite(short))
    again = gen.generate("rock", 0.8, seed=1)
    assert np.allclose(short, again)  # seeded sampling
    long = gen.generate("jazz", 2.5, seed=2)  # 1 s window, then 0.6 s steps
    assert long.shape == (20000,)
    assert gen.last_windows >= 4
    assert float(np.max(np.abs(long))) <= 1.0
    with pytest.raises(InvalidInputError, match="unknown music genre"):
        gen.generate("polka", 1.0, seed=0)
    assert music_mod.MODEL_CACHE.load_count - before == 1
