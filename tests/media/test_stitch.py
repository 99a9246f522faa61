"""stitch_segments: timing rule, A/V sync, blended joins, click-free audio, GOP, fast start."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from avgen_dagster.errors import MediaError
from avgen_dagster.media.audio_io import write_wav
from avgen_dagster.media.probe import is_faststart, keyframe_times, probe_media
from avgen_dagster.media.stitch import stitch_segments
from avgen_dagster.media.video_io import encode_segment_mp4, read_video_frames

FPS = 25
SR = 22050
SEG_S = 2.0
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
FREQS = [440.0, 660.0, 550.0]
AMP = 0.3


def solid(colour: tuple[int, int, int], n: int, size: tuple[int, int] = (128, 96)):
    for _ in range(n):
        yield np.full((size[1], size[0], 3), colour, np.uint8)


def tone(freq: float, seconds: float, sr: int = SR) -> np.ndarray:
    return AMP * np.sin(2 * np.pi * freq * np.arange(round(seconds * sr)) / sr)


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("segs")
    return [
        encode_segment_mp4(solid(c, int(SEG_S * FPS)), FPS, tone(f, SEG_S), SR, d / f"s{k}.mp4")
        for k, (c, f) in enumerate(zip(COLOURS, FREQS, strict=True))
    ]


@pytest.fixture(scope="module")
def stitched(segments: list[Path], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("out") / "final.mp4"
    return stitch_segments(segments, out, crossfade_s=0.24, fps=FPS, gop_s=2.0)


def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as c:
        frames = [f.to_ndarray() for f in c.decode(audio=0)]
        rate = c.streams.audio[0].codec_context.sample_rate
    return np.concatenate(frames, axis=1).mean(axis=0), rate


def test_duration_rule_and_av_match(stitched) -> None:
    n, xf = 3, 0.24
    expected = n * SEG_S - (n - 1) * xf
    assert stitched.segment_count == 3 and stitched.crossfade_s == pytest.approx(xf)
    assert stitched.video_frames == round(expected * FPS)
    assert stitched.duration_s == pytest.approx(expected, abs=1 / FPS)
    info = probe_media(stitched.path)
    assert info.video is not None and info.audio is not None
    assert info.video.codec == "h264" and info.video.pix_fmt == "yuv420p"
    assert info.audio.codec == "aac" and info.audio.sample_rate == 48000
    assert info.video.frames == stitched.video_frames
    assert info.video.duration_s == pytest.approx(expected, abs=1 / FPS)
    assert abs(info.av_drift_s) <= 1 / FPS
    assert not list(stitched.path.parent.glob(".tmp-*"))


def test_join_frames_are_blends(stitched) -> None:
    frames = [f[48, 64].astype(int) for f in read_video_frames(stitched.path)]
    d = round(0.24 * FPS)
    start = int(SEG_S * FPS) - d  # first transition frame of join 1
    assert np.abs(frames[start - 2] - COLOURS[0]).max() <= 3
    assert np.abs(frames[start + d + 1] - COLOURS[1]).max() <= 3
    mids = frames[start + 1 : start + d - 1]
    assert mids, "no transition frames"
    for px in mids:  # strictly between the two colours in R and G
        assert 40 + 5 < px[0] < 200 - 5 and 40 + 5 < px[1] < 200 - 5
    reds = [px[0] for px in frames[start - 1 : start + d + 1]]
    assert all(a >= b - 2 for a, b in itertools.pairwise(reds))  # monotone fade


def test_audio_has_no_gap_or_click_at_joins(stitched) -> None:
    x, sr = decode_audio(stitched.path)
    assert x.size / sr == pytest.approx(stitched.duration_s, abs=1 / FPS + 1024 / sr)
    win = sr // 100
    steady = AMP / np.sqrt(2)
    for k in (1, 2):
        join = (k * SEG_S - k * 0.24) * sr  # end of crossfade k
        lo, hi = int(join - 0.5 * sr), int(join + 0.3 * sr)
        seg = x[lo:hi]
        rms = np.sqrt(np.mean(seg[: seg.size // win * win].reshape(-1, win) ** 2, axis=1))
        assert rms.min() > 0.6 * steady, f"level dips at join {k}: {rms.min():.3f}"
        # a 660 Hz sine of amplitude 0.3 moves at most 2*pi*f*A/sr per sample (~0.026)
        assert np.abs(np.diff(seg)).max() < 0.06, f"click at join {k}"


def test_keyframes_every_gop_and_faststart(stitched) -> None:
    kf = keyframe_times(stitched.path)
    assert kf == pytest.approx([0.0, 2.0, 4.0], abs=1e-6)
    assert is_faststart(stitched.path)


def test_single_segment_zero_crossfade_and_clamp(segments: list[Path], tmp_path: Path) -> None:
    one = stitch_segments(segments[:1], tmp_path / "one.mp4", crossfade_s=0.5)
    assert one.video_frames == 50 and one.crossfade_s == 0.0 and one.crossfade_frames == ()
    assert probe_media(one.path).audio.duration_s == pytest.approx(2.0, abs=1 / FPS)
    cat = stitch_segments(segments, tmp_path / "cat.mp4", crossfade_s=0.0)
    assert cat.video_frames == 150 and cat.audio_duration_s == pytest.approx(6.0, abs=0.03)
    big = stitch_segments(segments[:2], tmp_path / "big.mp4", crossfade_s=5.0)
    # rule: at most half of the shortest segment (25 of 50 frames)
    assert big.crossfade_clamped and big.crossfade_s == pytest.approx(1.0)
    assert big.video_frames == 100 - 25
    assert abs(probe_media(big.path).av_drift_s) <= 1 / FPS


def test_fractional_crossfade_keeps_the_duration_rule(segments: list[Path], tmp_path: Path) -> None:
    six = segments * 2  # 6 segments of 2 s; 0.25 s is 6.25 frames at 25 fps
    r = stitch_segments(six, tmp_path / "six.mp4", crossfade_s=0.25)
    assert r.crossfade_frames == (6, 7, 6, 6, 6)  # cumulative rounding of 6.25 per join
    assert r.duration_s == pytest.approx(6 * SEG_S - 5 * 0.25, abs=0.5 / FPS)
    info = probe_media(r.path)
    assert info.video.frames == r.video_frames == 12 * FPS - 31
    assert abs(info.av_drift_s) <= 1 / FPS


def test_conform_size_fps_and_wav_override(segments: list[Path], tmp_path: Path) -> None:
    odd = encode_segment_mp4(
        solid((250, 250, 250), 30, (64, 64)), 30, tone(440, 1.0), SR, tmp_path / "odd.mp4"
    )
    wavs = [write_wav(tmp_path / f"a{k}.wav", tone(300, s), SR) for k, s in enumerate((2.0, 1.0))]
    r = stitch_segments([segments[0], odd], tmp_path / "mix.mp4", crossfade_s=0.2, audio=wavs)
    assert (r.width, r.height) == (128, 96)
    assert r.video_frames == 50 + 25 - 5
    info = probe_media(r.path)
    assert (info.video.width, info.video.height) == (128, 96)
    assert abs(info.av_drift_s) <= 1 / FPS
    x, sr = decode_audio(r.path)
    spec = np.abs(np.fft.rfft(x[sr // 2 : sr]))
    assert np.fft.rfftfreq(sr // 2, 1 / sr)[spec.argmax()] == pytest.approx(300, abs=4)


def test_errors(segments: list[Path], tmp_path: Path) -> None:
    with pytest.raises(MediaError):
        stitch_segments([], tmp_path / "x.mp4")
    with pytest.raises(MediaError, match="not found"):
        stitch_segments([segments[0], tmp_path / "nope.mp4"], tmp_path / "x.mp4")
    with pytest.raises(MediaError):
        stitch_segments(segments, tmp_path / "x.mp4", audio=[tmp_path / "a.wav"])
    truncated = tmp_path / "trunc.mp4"
    truncated.write_bytes(segments[1].read_bytes()[:3000])
    with pytest.raises(MediaError):
        stitch_segments([segments[0], truncated], tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()
    assert not list(tmp_path.glob(".tmp-*"))
