"""Clip backends: Ken Burns pan-and-zoom and LTX-Video on a tiny random-weight pipeline."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from avgen_dagster.backends import video as video_mod
from avgen_dagster.backends.landscape import ProceduralImages
from avgen_dagster.backends.video import (
    ClipGenerator,
    LTXVideoClips,
    PanZoomClips,
    write_clip,
)
from avgen_dagster.devtools.ffmpeg_cli import ffmpeg_decode_info
from avgen_dagster.errors import BackendError, InvalidInputError


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    return ProceduralImages().generate("hills at sunset", seed=0, width=200, height=160)


def test_panzoom_frames_motion_and_determinism(picture: np.ndarray) -> None:
    gen = PanZoomClips(fps=24)
    assert isinstance(gen, ClipGenerator)
    frames = list(gen.generate(picture, "x", duration_s=2.0, seed=4, width=128, height=96))
    assert len(frames) == 48
    assert all(f.shape == (96, 128, 3) and f.dtype == np.uint8 for f in frames)
    again = list(
        PanZoomClips().generate(picture, "x", duration_s=2.0, seed=4, width=128, height=96)
    )
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))
    other = list(gen.generate(picture, "x", duration_s=2.0, seed=5, width=128, height=96))
    assert _mad(frames[-1], other[-1]) > 2.0
    # It moves, smoothly: eased start/end (slow), no step larger than a fraction of the
    # whole move.
    steps = [_mad(a, b) for a, b in itertools.pairwise(frames)]
    total = _mad(frames[0], frames[-1])
    assert total > 3.0
    assert max(steps) < 0.25 * total
    assert steps[0] < steps[len(steps) // 2] and steps[-1] < steps[len(steps) // 2]


def test_panzoom_exact_frame_counts_and_no_image(picture: np.ndarray) -> None:
    gen = PanZoomClips(fps=24)
    assert len(list(gen.generate(picture, "x", duration_s=0.52, seed=0, width=32, height=32))) == 12
    frames = list(gen.generate(None, "a lake", duration_s=0.25, seed=1, width=64, height=48))
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    with pytest.raises(InvalidInputError, match="positive"):
        gen.generate(picture, "x", duration_s=0, seed=0, width=32, height=32)
    with pytest.raises(InvalidInputError, match="RGB uint8"):
        gen.generate(picture.astype(np.float32), "x", duration_s=1, seed=0, width=32, height=32)


def test_write_clip_is_h264_at_24fps(picture: np.ndarray, tmp_path: Path) -> None:
    res = write_clip(
        PanZoomClips(),
        picture,
        "x",
        tmp_path / "c.mp4",
        duration_s=1.5,
        seed=2,
        width=128,
        height=96,
    )
    assert res.frames == 36 and res.duration_s == pytest.approx(1.5)
    with av.open(str(res.path)) as c:
        vs = c.streams.video[0]
        assert vs.codec_context.name == "h264" and float(vs.average_rate) == 24.0
        assert (vs.codec_context.width, vs.codec_context.height) == (128, 96)
        assert len(c.streams.audio) == 0
        assert sum(1 for _ in c.decode(vs)) == 36
    info = ffmpeg_decode_info(res.path)
    assert info.decoded_s == pytest.approx(1.5, abs=1 / 24)


def test_ltx_missing_path(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="does not exist"):
        LTXVideoClips(tmp_path / "none")


def test_ltx_tiny_pipeline_rounding_and_one_load(tiny_ltx_dir: Path, tmp_path: Path) -> None:
    video_mod.MODEL_CACHE.clear()
    before = video_mod.MODEL_CACHE.load_count
    gen = LTXVideoClips(
        tiny_ltx_dir, steps=2, guidance_scale=1.0, device="auto", fps=24, max_sequence_length=32
    )
    assert isinstance(gen, ClipGenerator)
    assert gen.multiples() == (8, 32)
    plan = gen.plan(0.5, 70, 50)  # 12 frames -> 17 = 8*2+1; 70x50 -> 64x64
    assert (plan.frames, plan.width, plan.height) == (17, 64, 64)
    assert (plan.frames - 1) % 8 == 0 and plan.width % 32 == 0 and plan.height % 32 == 0
    assert "8k+1 frames" in plan.message and "multiples of 32" in plan.message
    frames = list(
        gen.generate(None, "a sunset over the sea", duration_s=0.5, seed=1, width=70, height=50)
    )
    assert len(frames) == 12 and all(f.shape == (50, 70, 3) and f.dtype == np.uint8 for f in frames)
    assert gen.last_request == plan
    exact = gen.plan(17 / 24, 64, 96)
    assert not exact.changed and "no rounding" in exact.message
    res = write_clip(
        gen, None, "mountains", tmp_path / "ltx.mp4", duration_s=1.0, seed=2, width=64, height=64
    )
    assert res.frames == 24 and gen.last_request.frames == 25
    # Image-to-video from the same loaded components.
    i2v = LTXVideoClips(
        tiny_ltx_dir, steps=2, guidance_scale=1.0, image_to_video=True, max_sequence_length=32
    )
    img = ProceduralImages().generate("sea", seed=0, width=64, height=64)
    out = list(i2v.generate(img, "waves", duration_s=0.3, seed=3, width=64, height=64))
    assert len(out) == 7 and out[0].shape == (64, 64, 3)
    assert video_mod.MODEL_CACHE.load_count - before == 1
