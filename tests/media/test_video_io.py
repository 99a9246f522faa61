"""encode_segment_mp4 / read_video_frames round trip and input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avgen_dagster.errors import MediaError
from avgen_dagster.media.probe import probe_media
from avgen_dagster.media.video_io import encode_segment_mp4, read_video_frames


def test_roundtrip_odd_size_streaming(tmp_path: Path) -> None:
    consumed = []

    def gen():
        for i in range(20):
            consumed.append(i)
            f = np.zeros((51, 75, 3), np.uint8)
            f[..., 0] = 10 * i
            f[..., 2] = 200
            yield f

    out = encode_segment_mp4(gen(), 25, np.zeros(int(0.8 * 16000)), 16000, tmp_path / "o.mp4")
    assert consumed == list(range(20))
    frames = list(read_video_frames(out))
    assert len(frames) == 20 and frames[0].shape == (50, 74, 3) and frames[0].dtype == np.uint8
    assert abs(int(frames[10][25, 37, 0]) - 100) <= 4 and abs(int(frames[10][25, 37, 2]) - 200) <= 4
    info = probe_media(out)
    assert info.video.duration_s == pytest.approx(0.8) and info.audio.sample_rate == 48000
    assert not list(tmp_path.glob(".tmp-*"))


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="no frames"):
        encode_segment_mp4(iter([]), 25, np.zeros(10), 16000, tmp_path / "a.mp4")
    frames = [np.zeros((32, 32, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)]
    with pytest.raises(MediaError, match="same size"):
        encode_segment_mp4(frames, 25, np.zeros(10), 16000, tmp_path / "b.mp4")
    with pytest.raises(MediaError):
        encode_segment_mp4(
            [np.zeros((32, 32), np.uint8)], 25, np.zeros(10), 16000, tmp_path / "c.mp4"
        )
    assert not list(tmp_path.iterdir())
    with pytest.raises(MediaError):
        list(read_video_frames(tmp_path / "missing.mp4"))


def test_fps_fraction_and_ntsc_stitch(tmp_path: Path) -> None:
    from fractions import Fraction

    from avgen_dagster.media.stitch import stitch_segments
    from avgen_dagster.media.video_io import fps_fraction

    assert fps_fraction(29.97) == Fraction(30000, 1001)
    assert fps_fraction(25) == 25 and fps_fraction(12.5) == Fraction(25, 2)
    with pytest.raises(MediaError):
        fps_fraction(0)
    sr = 16000
    segs = [
        encode_segment_mp4(
            (np.full((32, 32, 3), 60 * k, np.uint8) for _ in range(60)),
            29.97,
            0.1 * np.sin(np.arange(round(60 / (30000 / 1001) * sr)) * 0.2),
            sr,
            tmp_path / f"n{k}.mp4",
        )
        for k in range(2)
    ]
    r = stitch_segments(segs, tmp_path / "ntsc.mp4", fps=29.97, crossfade_s=0.25)
    assert r.crossfade_frames == (7,) and r.video_frames == 113
    info = probe_media(r.path)
    assert info.video.fps == pytest.approx(30000 / 1001)
    assert info.video.duration_s == pytest.approx(113 * 1001 / 30000, abs=1e-3)
    assert abs(info.av_drift_s) <= 1001 / 30000
