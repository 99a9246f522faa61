"""Delivered audio in spec, measured on the delivered files by an independent meter.

ffmpeg's ``ebur128=peak=true`` (the imageio-ffmpeg CLI, not the code under test) reads the
decoded audio of what a user receives: the stitched talking head of real Piper speech
(cross-faded), its HLS rendition, a music video and the music ``.m4a``. Spec: integrated
loudness within ±0.5 LU of the target, true peak ≤ −1 dBTP (EBU R128). Before mastering for
delivery these inputs read −0.7 and −0.3 dBTP (talking head, 0.25 s and 1 s cross-fades),
−0.9 dBTP (music video) and −0.9 dBTP (m4a).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avgen_dagster.backends.music import ProceduralMusic, normalize_music
from avgen_dagster.backends.speech import PiperSpeech
from avgen_dagster.devtools.ffmpeg_cli import EbuR128, ffmpeg_ebur128
from avgen_dagster.media.audio_codec import encode_audio_file
from avgen_dagster.media.audio_io import write_wav
from avgen_dagster.media.delivery import (
    DeliveredAudio,
    master_for_delivery,
    measure_delivered_audio,
)
from avgen_dagster.media.hls import export_hls
from avgen_dagster.media.loudness import normalize_loudness
from avgen_dagster.media.music_video import compose_music_video
from avgen_dagster.media.stitch import stitch_segments
from avgen_dagster.media.video_io import encode_segment_mp4, encode_video_mp4

SPEECH_LUFS = -16.0
MUSIC_LUFS = -14.0
CEILING = -1.0
FPS = 25
# Plosives, sibilants and a shouted ending: the material whose joins and AAC encode overshot.
SENTENCES = [
    "Six sharp scissors sliced through the silky sheets.",
    "Pop! Bang! Crack! The fireworks burst over the bay.",
    "She sells sea shells by the sea shore, surely.",
    "Tides rise and fall; the sea is never still.",
    "Kick the can, catch the cat, keep the kite.",
    "Big bold brass bands blast brilliant tunes.",
    "That is all for today. Goodbye!",
]


def assert_in_spec(meter: EbuR128, target_lufs: float) -> None:
    assert abs(meter.integrated_lufs - target_lufs) <= 0.5, meter
    assert meter.true_peak_dbtp <= CEILING, meter


def assert_meters_agree(ours: DeliveredAudio, ffmpeg: EbuR128) -> None:
    """Our decoded-file meter reads what ffmpeg's reads (it prints 0.1 dB steps)."""
    assert ours.integrated_lufs == pytest.approx(ffmpeg.integrated_lufs, abs=0.2)
    assert ours.true_peak_dbtp == pytest.approx(ffmpeg.true_peak_dbtp, abs=0.25)


def solid(value: int, n: int):
    for _ in range(n):
        yield np.full((48, 64, 3), value, np.uint8)


@pytest.fixture(scope="module")
def piper_segments(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[Path]]:
    """One lip-sync-sized segment per sentence and its WAV normalised to −16 LUFS / −1 dBTP,
    as the pipeline makes them (real Piper speech, seeded)."""
    root = tmp_path_factory.mktemp("piper")
    tts = PiperSpeech(seed=7)
    segments, wavs = [], []
    for k, text in enumerate(SENTENCES):
        speech = tts.synthesize(text)
        norm = normalize_loudness(speech, tts.sample_rate, SPEECH_LUFS, CEILING)
        assert norm.after.true_peak_dbtp <= CEILING  # every clip is in spec as a WAV
        wavs.append(write_wav(root / f"clip_{k}.wav", norm.samples, tts.sample_rate))
        frames = solid(30 * k, round(speech.size / tts.sample_rate * FPS))
        segments.append(
            encode_segment_mp4(frames, FPS, norm.samples, tts.sample_rate, root / f"s{k}.mp4")
        )
    return segments, wavs


@pytest.mark.parametrize("crossfade_s", [0.25, 1.0])
def test_stitched_talking_head_is_in_spec_as_delivered(
    piper_segments: tuple[list[Path], list[Path]], crossfade_s: float, tmp_path: Path
) -> None:
    segments, wavs = piper_segments
    result = stitch_segments(
        segments, tmp_path / "talking_head.mp4", crossfade_s=crossfade_s, fps=FPS, audio=wavs
    )
    meter = ffmpeg_ebur128(result.path)
    assert_in_spec(meter, SPEECH_LUFS)
    assert result.target_lufs == pytest.approx(SPEECH_LUFS, abs=0.3)  # the mix's own
    assert result.delivered.within_spec(SPEECH_LUFS)
    assert_meters_agree(result.delivered, meter)
    # HLS remuxes the same AAC packets: the playlist decodes (across segments) to the same.
    hls = export_hls(result.path, tmp_path / "hls", segment_s=6.0)
    assert len(hls.segments) >= 2
    assert_in_spec(ffmpeg_ebur128(hls.playlist), SPEECH_LUFS)
    streamed = measure_delivered_audio(hls.playlist)
    assert streamed.true_peak_dbtp == pytest.approx(result.delivered.true_peak_dbtp, abs=0.05)
    assert streamed.integrated_lufs == pytest.approx(result.delivered.integrated_lufs, abs=0.05)


def test_music_video_and_m4a_are_in_spec_as_delivered(tmp_path: Path) -> None:
    track = ProceduralMusic(sample_rate=32000).generate("pop", 12.0, seed=0)
    music = write_wav(tmp_path / "music.wav", normalize_music(track, 32000).samples, 32000)
    m4a = encode_audio_file(music, tmp_path / "music.m4a")
    meter = ffmpeg_ebur128(m4a)
    assert_in_spec(meter, MUSIC_LUFS)
    assert_meters_agree(measure_delivered_audio(m4a), meter)

    clips = []
    for k in range(2):
        frames = solid(60 + 80 * k, 2 * 24)
        clips.append(encode_video_mp4(frames, 24, tmp_path / f"clip{k}.mp4").path)
    video = compose_music_video(clips, music, tmp_path / "music_video.mp4", crossfade_s=0.5)
    meter = ffmpeg_ebur128(video.path)
    assert_in_spec(meter, MUSIC_LUFS)  # the fades are made up: the music keeps its level
    assert video.delivered.within_spec(MUSIC_LUFS)
    assert_meters_agree(video.delivered, meter)


def test_mastering_follows_a_target_and_reports_the_decoded_trial() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(48000 * 3) / 48000
    # a loud crest: sparse full-scale clicks over a tone, 20 dB over its loudness
    x = 0.05 * np.sin(2 * np.pi * 220 * t)
    x[rng.integers(0, t.size, 40)] = 0.99
    mastered = master_for_delivery(x.astype(np.float32), 48000, target_lufs=-23.0)
    assert mastered.passes >= 1 and mastered.target_lufs == -23.0
    assert abs(mastered.decoded.integrated_lufs + 23.0) <= 0.2
    assert mastered.decoded.true_peak_dbtp <= CEILING - 0.3  # the meter margin
    assert mastered.samples.dtype == np.float32 and mastered.samples.shape == x.shape
