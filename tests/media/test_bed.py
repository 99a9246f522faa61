"""Music bed: fitted to the narration, ducked by real speech (measured on the stems), the mix
on target after an AAC encode and decode (ffmpeg's own ebur128 meter)."""

from __future__ import annotations

import itertools
import math
import re
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from avgen_dagster.backends.music import ProceduralMusic
from avgen_dagster.backends.speech import PiperSpeech
from avgen_dagster.errors import InvalidInputError
from avgen_dagster.media.audio_io import write_wav
from avgen_dagster.media.bed import (
    CONTROL_RATE_HZ,
    DuckingSettings,
    ducking_gain_db,
    fit_music,
    mix_with_bed,
)
from avgen_dagster.media.words import WordTiming, shift_words

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
PAUSE_S = 2.5


def ffmpeg_ebur128(path: Path) -> tuple[float, float]:
    """Integrated loudness (LUFS) and true peak (dBTP) from the ffmpeg CLI's ebur128 filter."""
    proc = subprocess.run(
        [FFMPEG, "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128=peak=true",
         "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    summary = proc.stderr.split("Summary:")[-1]
    i_lufs = float(re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary).group(1))
    peak = float(re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary).group(1))
    return i_lufs, peak


def aac_roundtrip(samples: np.ndarray, rate: int, folder: Path) -> Path:
    """Encode to AAC-LC 160 kbit/s in an .m4a with the ffmpeg CLI (an independent encoder)."""
    wav = write_wav(folder / "mix.wav", samples, rate, pcm16=False)
    m4a = folder / "mix.m4a"
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-i", str(wav), "-c:a", "aac", "-b:a", "160k", str(m4a)],
        check=True,
    )
    return m4a


@pytest.fixture(scope="module")
def narration() -> tuple[np.ndarray, int, list[WordTiming]]:
    """Two real Piper sentences with a long pause between them."""
    voice = PiperSpeech()
    a = voice.synthesize_words("The sky looks blue during the day, because air scatters it.")
    b = voice.synthesize_words("At sunset the light crosses much more air, and turns red.")
    rate = a.sample_rate
    gap = np.zeros(round(PAUSE_S * rate), np.float32)
    samples = np.concatenate([a.samples, gap, b.samples])
    offset = (a.samples.size + gap.size) / rate
    return samples, rate, [*a.words, *shift_words(b.words, offset)]


@pytest.fixture(scope="module")
def music() -> tuple[np.ndarray, int]:
    gen = ProceduralMusic()
    return gen.generate("ambient", 5.0, seed=4), gen.sample_rate


def _db(x: np.ndarray) -> float:
    return 10 * math.log10(float(np.mean(np.square(x, dtype=np.float64))) + 1e-20)


def test_bed_is_ducked_under_speech_by_more_than_10_db(narration) -> None:
    voice, rate, words = narration
    tune_rate = 32_000  # a steady chord, so level changes on the stem are the ducking's
    tt = np.arange(3 * tune_rate) / tune_rate
    tune = sum(0.1 * np.sin(2 * np.pi * f * tt) for f in (220.0, 277.2, 329.6)).astype(np.float32)
    mix = mix_with_bed(voice, rate, tune, tune_rate)
    sr = mix.sample_rate
    assert mix.looped and mix.bed.size == mix.voice.size == mix.mix.size
    spoken = np.zeros(mix.bed.size, bool)
    for w in words:
        spoken[round(w.start_s * sr) : round(w.end_s * sr)] = True
    gaps = [(b.start_s - a.end_s, a.end_s) for a, b in itertools.pairwise(words)]
    first_end = max(gaps)[1]  # the end of the first sentence: the long pause follows
    pause = slice(round((first_end + 1.2) * sr), round((first_end + PAUSE_S - 0.1) * sr))
    under_speech, in_pause = _db(mix.bed[spoken]), _db(mix.bed[pause])
    assert in_pause - under_speech >= 10.0, (in_pause, under_speech)
    # the bed sits about bed_lu_below_voice under the voice while ducked
    assert mix.bed_lu_below_voice == pytest.approx(18.0, abs=1.5)


def test_mix_meets_loudness_and_true_peak_after_aac(narration, music, tmp_path: Path) -> None:
    voice, rate, _ = narration
    tune, tune_rate = music
    mix = mix_with_bed(voice, rate, tune, tune_rate, target_lufs=-16.0, limit_dbtp=-2.0)
    assert mix.loudness.integrated_lufs == pytest.approx(-16.0, abs=0.2)
    lufs, peak = ffmpeg_ebur128(aac_roundtrip(mix.mix, mix.sample_rate, tmp_path))
    assert abs(lufs + 16.0) <= 0.5, lufs
    assert peak <= -1.0, peak


def test_voice_alone_is_normalised(narration) -> None:
    voice, rate, _ = narration
    mix = mix_with_bed(voice, rate, target_lufs=-23.0)
    assert not np.any(mix.bed) and mix.bed_lu_below_voice is None
    assert mix.loudness.integrated_lufs == pytest.approx(-23.0, abs=0.2)
    assert mix.loudness.true_peak_dbtp <= -2.0


def test_ballistics_follow_attack_release_and_hold() -> None:
    sr = 48_000
    t = np.arange(4 * sr) / sr
    burst = (t >= 1.0) & (t < 2.0)
    voice = (0.3 * np.sin(2 * np.pi * 220 * t) * burst).astype(np.float32)
    s = DuckingSettings(attack_ms=50, release_ms=400, hold_ms=200, duck_depth_db=12)
    gain, key = ducking_gain_db(voice, sr, s)
    at = lambda sec: gain[round(sec * CONTROL_RATE_HZ)]  # noqa: E731
    assert at(0.5) == pytest.approx(0.0, abs=0.01)  # before speech: not ducked
    # look-ahead = attack: about one time constant in at the onset (63 % of the depth; the
    # 20 ms detector window sees the onset up to 10 ms early, 1.2 time constants: 70 %)
    assert -12 * (1 - math.exp(-1.2)) - 0.2 <= at(1.0) <= -12 * (1 - math.exp(-1)) + 0.2
    assert at(1.5) == pytest.approx(-12.0, abs=0.05)
    assert at(2.0 + 0.2) == pytest.approx(-12.0, abs=0.1)  # held for 200 ms
    # one release time constant after the hold: 1/e of the depth left
    assert at(2.0 + 0.2 + 0.4) == pytest.approx(-12 * math.exp(-1), abs=0.6)
    assert key[round(1.5 * CONTROL_RATE_HZ)] and not key[round(3.5 * CONTROL_RATE_HZ)]


def test_fit_music_loops_with_crossfade_and_cuts_with_fade() -> None:
    sr = 8000
    t = np.arange(2 * sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    looped, was_looped = fit_music(tone, sr, 5 * sr, crossfade_s=0.5, fade_in_s=0, fade_out_s=0)
    assert was_looped and looped.size == 5 * sr
    # equal-power seams: the level stays within 3 dB of the original through the seams
    frames = looped[: 4 * sr].reshape(-1, sr // 20)
    levels = 10 * np.log10(np.mean(frames.astype(float) ** 2, axis=1))
    assert levels.max() - levels.min() < 3.0
    cut, was_looped = fit_music(tone, sr, sr, fade_out_s=0.25)
    assert not was_looped and cut.size == sr and abs(cut[-1]) < 0.01


def test_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="silent"):
        mix_with_bed(np.zeros(48_000, np.float32), 48_000)
    with pytest.raises(InvalidInputError, match="music_rate"):
        mix_with_bed(np.ones(48_000, np.float32) * 0.1, 48_000, np.ones(100, np.float32))
    with pytest.raises(InvalidInputError, match="below the voice"):
        DuckingSettings(bed_lu_below_voice=-3)
    with pytest.raises(InvalidInputError, match="empty"):
        fit_music(np.zeros(0, np.float32), 8000, 100)
