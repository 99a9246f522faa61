"""probe_media, keyframe_times, is_faststart on real and broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avgen_dagster.errors import MediaError
from avgen_dagster.media.probe import (
    is_faststart,
    keyframe_times,
    mp4_top_level_boxes,
    probe_media,
)
from avgen_dagster.media.video_io import encode_segment_mp4


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = (np.full((48, 64, 3), i * 8, np.uint8) for i in range(30))
    audio = 0.1 * np.sin(np.arange(22050) * 0.1)
    return encode_segment_mp4(frames, 30, audio, 22050, tmp_path_factory.mktemp("p") / "c.mp4")


def test_probe_values(clip: Path) -> None:
    info = probe_media(clip)
    v, a = info.video, info.audio
    assert (v.codec, v.width, v.height, v.frames, v.pix_fmt) == ("h264", 64, 48, 30, "yuv420p")
    assert v.fps == pytest.approx(30) and v.duration_s == pytest.approx(1.0, abs=1e-3)
    assert (a.codec, a.sample_rate, a.channels) == ("aac", 48000, 1)
    assert a.duration_s == pytest.approx(1.0, abs=0.03)
    assert info.av_drift_s == pytest.approx(a.duration_s - v.duration_s)
    assert keyframe_times(clip)[0] == 0.0
    names = [b[0] for b in mp4_top_level_boxes(clip)]
    assert names[0] == "ftyp" and "moov" in names and "mdat" in names
    assert is_faststart(clip) is False  # a plain mp4 mux writes moov at the end


def test_corrupt_and_missing(tmp_path: Path, clip: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 255, 4096, dtype=np.uint8).tobytes())
    for fn in (probe_media, keyframe_times, is_faststart):
        with pytest.raises(MediaError):
            fn(junk)
        with pytest.raises(MediaError, match="not found"):
            fn(tmp_path / "missing.mp4")
    truncated = tmp_path / "trunc.mp4"
    truncated.write_bytes(clip.read_bytes()[:2000])
    with pytest.raises(MediaError):
        is_faststart(truncated)
    with pytest.raises(MediaError):
        probe_media(truncated)
