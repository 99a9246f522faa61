"""Face-aware framing: eyes on the upper third, uniform scale (circles stay circles), a fill
where the source does not reach, the upscale factor reported."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.media import i420
from avgen_dagster.media.faces import load_image_rgb, require_face
from avgen_dagster.media.framing import (
    FORMATS,
    FaceAnchor,
    Framer,
    format_size,
    pan_zoom_frame,
    plan_framing,
)
from avgen_dagster.media.i420 import I420Framer
from tests.conftest import SAMPLE_PORTRAIT

EYE = (255, 0, 0)
CIRCLE = (0, 255, 0)


def synthetic_portrait(w: int, h: int, eyes: tuple[float, float], radius: int) -> np.ndarray:
    """Textured background, two red 'eyes' and a green circle below them."""
    rng = np.random.default_rng(3)
    img = np.clip(np.full((h, w, 3), 120) + rng.integers(-30, 30, (h, w, 3)), 0, 255).astype(
        np.uint8
    )
    img[:, :, 2] = np.linspace(60, 200, w, dtype=np.uint8)[None, :]  # a gradient to blur
    ex, ey = eyes
    for dx in (-radius // 2, radius // 2):
        cv2.circle(img, (round(ex + dx), round(ey)), max(3, radius // 8), EYE, -1)
    cv2.circle(img, (round(ex), round(ey + 1.6 * radius)), radius, CIRCLE, -1)
    return img


def blob(frame: np.ndarray, rgb: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    mask = np.all(np.abs(frame.astype(int) - np.array(rgb)) < 60, axis=-1)
    ys, xs = np.nonzero(mask)
    assert xs.size > 0, f"no {rgb} pixels"
    return xs, ys


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize(("src_w", "src_h"), [(512, 512), (1280, 720), (480, 854)])
def test_eyes_on_upper_third_and_circles_stay_round(fmt: str, src_w: int, src_h: int) -> None:
    out_w, out_h = format_size(fmt)
    radius = min(src_w, src_h) // 10
    eyes = (src_w * 0.45, src_h * 0.38)
    img = synthetic_portrait(src_w, src_h, eyes, radius)
    plan = plan_framing(src_w, src_h, out_w, out_h, FaceAnchor(*eyes, 3.2 * radius))
    out = Framer(plan).apply(img)
    assert out.shape == (out_h, out_w, 3) and out.dtype == np.uint8
    _, eye_ys = blob(out, EYE)
    assert abs(eye_ys.mean() / out_h - 1 / 3) < 0.02, (eye_ys.mean() / out_h, plan)
    xs, ys = blob(out, CIRCLE)
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert abs(width / height - 1) < 0.03, (width, height)
    assert abs(width / (2 * radius * plan.upscale_factor) - 1) < 0.05


def test_fill_is_present_where_the_source_does_not_cover() -> None:
    img = synthetic_portrait(1280, 720, (640, 300), 60)
    plan = plan_framing(1280, 720, 1080, 1920, fit="contain")
    assert plan.upscale_factor == pytest.approx(1080 / 1280)
    assert not plan.covers and plan.fill_fraction == pytest.approx(
        1 - (720 * 1080 / 1280) / 1920, abs=0.01
    )
    framer = Framer(plan)
    assert framer.fill_mode == "blur"
    out = framer.apply(img)
    x0, y0, x1, y1 = plan.visible
    assert (x0, x1) == (0, 1080) and y0 > 600 and y1 < 1320
    top = out[: y0 - 60].astype(float)  # the fill above the picture, away from the seam
    assert top.mean() > 30  # not black bars
    # blurred: far smoother than the noisy source
    assert (
        np.abs(np.diff(top, axis=1)).mean()
        < 0.25 * np.abs(np.diff(img.astype(float), axis=1)).mean()
    )
    # the blue gradient of the source continues in the fill (it is a copy of the source)
    assert top[:, -50:, 2].mean() > top[:, :50, 2].mean() + 15


def test_headroom_band_is_an_extension_of_the_picture() -> None:
    img = synthetic_portrait(512, 512, (256, 100), 40)  # eyes near the top of the picture
    plan = plan_framing(512, 512, 1080, 1920, FaceAnchor(256, 100, 130))
    assert plan.upscale_factor == pytest.approx(1920 / 512)  # cover: 3.75x, stated
    assert plan.eye_y_out == pytest.approx(640) and plan.visible[1] > 0
    framer = Framer(plan)
    assert framer.fill_mode == "extend"
    out = framer.apply(img)
    band = out[: plan.visible[1] // 2].astype(float)
    assert band.mean() > 60 and np.abs(band[:, :, 2].mean() - img[0, :, 2].mean()) < 40


def test_upscale_factor_follows_the_fit() -> None:
    face = FaceAnchor(256, 200, 100)
    cover = plan_framing(512, 512, 1080, 1920, face, fit="cover")
    contain = plan_framing(512, 512, 1080, 1920, face, fit="contain")
    assert cover.upscale_factor == pytest.approx(3.75) and cover.covers
    assert contain.upscale_factor == pytest.approx(1080 / 512)
    # face size wins between contain and cover (1080x1920 from 512: 2.11 .. 3.75)
    sized = plan_framing(512, 512, 1080, 1920, FaceAnchor(256, 50, 200), face_height_frac=0.3)
    assert sized.upscale_factor == pytest.approx(0.3 * 1920 / 200)
    # a big face is not shrunk below contain
    big = plan_framing(512, 512, 1080, 1080, FaceAnchor(256, 150, 400), face_height_frac=0.3)
    assert big.upscale_factor == pytest.approx(1080 / 512)
    # eyes low in the picture: zoom until they reach the third line: (2/3 * 1080) / (512 - 300)
    low = plan_framing(512, 512, 1080, 1080, FaceAnchor(256, 300, 100))
    assert low.upscale_factor == pytest.approx(720 / 212) and low.eye_y_out == pytest.approx(360)
    close = plan_framing(512, 512, 400, 500, FaceAnchor(256, 200, 100), crop_to_face=True)
    assert close.upscale_factor == pytest.approx(0.3 * 500 / 100) and close.covers
    capped = plan_framing(512, 512, 1080, 1920, FaceAnchor(256, 200, 10), max_upscale=3.0)
    assert capped.upscale_factor == pytest.approx(3.0)
    down = plan_framing(3840, 2160, 1920, 1080, None, fit="cover")
    assert down.upscale_factor == pytest.approx(0.5) and down.covers
    frame = Framer(down).apply(np.full((2160, 3840, 3), 77, np.uint8))
    assert frame.shape == (1080, 1920, 3) and np.all(frame == 77)


def test_real_portrait_eyes_land_on_the_third_line() -> None:
    img = load_image_rgb(SAMPLE_PORTRAIT)
    anchor = FaceAnchor.from_landmarks(require_face(img, "portrait"))
    for fmt in ("vertical", "landscape", "square"):
        w, h = format_size(fmt)
        out = Framer(plan_framing(img.shape[1], img.shape[0], w, h, anchor)).apply(img)
        again = FaceAnchor.from_landmarks(require_face(out, f"{fmt} frame"))
        assert abs(again.eye_y / h - 1 / 3) < 0.03, (fmt, again.eye_y / h)
        assert abs(again.eye_x / w - 0.5) < 0.08, (fmt, again.eye_x / w)


def test_pan_zoom_covers_the_frame_and_moves() -> None:
    img = synthetic_portrait(640, 360, (320, 150), 30)
    first = pan_zoom_frame(img, 1080, 1920, 0.0)
    last = pan_zoom_frame(img, 1080, 1920, 1.0)
    assert first.shape == (1920, 1080, 3)
    assert np.abs(first.astype(int) - last).mean() > 3
    big = pan_zoom_frame(np.full((4000, 4000, 3), 9, np.uint8), 360, 640, 0.5)
    assert np.all(big == 9)


def test_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="vertical"):
        format_size("portrait")
    with pytest.raises(InvalidInputError, match="positive"):
        plan_framing(0, 10, 10, 10)
    with pytest.raises(InvalidInputError, match="fit"):
        plan_framing(10, 10, 10, 10, fit="stretch")  # type: ignore[arg-type]
    framer = Framer(plan_framing(64, 64, 128, 128))
    with pytest.raises(InvalidInputError, match="uint8"):
        framer.apply(np.zeros((32, 32, 3), np.uint8))


def test_i420_framing_matches_rgb_framing() -> None:
    img = synthetic_portrait(512, 512, (230, 110), 40)
    anchor = FaceAnchor(230, 110, 128)
    for fit in ("face", "contain"):
        plan = plan_framing(512, 512, 1080, 1920, anchor, fit=fit)
        rgb = Framer(plan).apply(img)
        picture = i420.new_picture(1080, 1920)
        I420Framer(plan).apply(i420.planes(i420.from_rgb(img)), i420.planes(picture))
        expected = i420.from_rgb(rgb)
        y, yr = i420.planes(picture)[0].astype(int), i420.planes(expected)[0].astype(int)
        assert np.abs(y - yr).mean() < 1.5, fit  # same geometry plane by plane
        u, ur = i420.planes(picture)[1].astype(int), i420.planes(expected)[1].astype(int)
        assert np.abs(u - ur).mean() < 4.0, fit  # chroma blurred at half size: close
    with pytest.raises(InvalidInputError, match="even"):
        I420Framer(plan_framing(511, 512, 1080, 1920))


def test_reused_fill_is_identical_to_a_fresh_one() -> None:
    img = synthetic_portrait(512, 512, (230, 100), 40)
    plan = plan_framing(512, 512, 1080, 1920, FaceAnchor(230, 100, 128))
    framer = Framer(plan)
    assert framer.fill_mode == "extend"
    framer.apply(img)
    for change in (np.s_[300:360, 200:300], np.s_[0:8, :]):  # the mouth; the top rows
        moved = img.copy()
        moved[change] = 255 - moved[change]
        assert np.array_equal(framer.apply(moved), Framer(plan).apply(moved))
