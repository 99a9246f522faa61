"""Tests of the embedded landmark lip-sync backend on the sample portrait."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from avgen_dagster.backends.lipsync import LandmarkLipsync, LipsyncBackend, frame_count
from avgen_dagster.errors import InvalidInputError, NoFaceError
from avgen_dagster.media.faces import FaceLandmarker, FaceLandmarks, load_image_rgb

PORTRAIT = Path(__file__).resolve().parents[2] / "samples" / "portrait.png"
FPS = 25.0
SR = 16_000


def speech_like(sr: int, seed: int, dur: float, lead: float = 0.3) -> np.ndarray:
    """Syllable-like bursts of a harmonic tone (f0 110-220 Hz, 8 harmonics, 1/k amplitudes),
    120-300 ms long, random amplitude 0.05-0.7, separated by 40-250 ms gaps and occasional
    0.6 s pauses; float32 mono."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(dur * sr), np.float32)
    t = lead
    while t < dur - 0.4:
        d = rng.uniform(0.12, 0.3)
        amp = rng.uniform(0.05, 0.7)
        f0 = rng.uniform(110, 220)
        tt = np.arange(int(d * sr)) / sr
        tone = sum(np.sin(2 * np.pi * f0 * k * tt + rng.uniform(0, 6)) / k for k in range(1, 9))
        env = np.minimum(1.0, np.minimum(tt / 0.02, (d - tt) / 0.02))
        i = int(t * sr)
        out[i : i + len(tt)] += (amp * 0.35 * tone * env).astype(np.float32)
        t += d + rng.uniform(0.04, 0.25) + (0.6 if rng.random() < 0.15 else 0.0)
    return out


def frame_rms(audio: np.ndarray, sr: int, n: int, fps: float) -> np.ndarray:
    hop = sr / fps
    return np.array(
        [np.sqrt(np.mean(audio[int(i * hop) : int((i + 1) * hop)] ** 2)) for i in range(n)]
    )


@pytest.fixture(scope="module")
def landmarker() -> Iterator[FaceLandmarker]:
    lm = FaceLandmarker()
    yield lm
    lm.close()


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return load_image_rgb(PORTRAIT)


@pytest.fixture(scope="module")
def face(portrait: np.ndarray, landmarker: FaceLandmarker) -> FaceLandmarks:
    found = landmarker.detect(portrait)
    assert found is not None
    return found


@pytest.fixture(scope="module")
def backend(landmarker: FaceLandmarker) -> LandmarkLipsync:
    return LandmarkLipsync(fps=FPS, seed=0, landmarker=landmarker)


def face_region(face: FaceLandmarks, shape: tuple[int, ...], margin_frac: float) -> np.ndarray:
    """Convex hull of all landmarks dilated by margin_frac of the face size: bool (H, W)."""
    mask = np.zeros(shape[:2], np.uint8)
    hull = cv2.convexHull(np.round(face.points).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    r = int(np.ceil(margin_frac * max(face.width, face.height)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask, kernel).astype(bool)


def lip_region(face: FaceLandmarks, shape: tuple[int, ...]) -> np.ndarray:
    outer = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39]
    outer += [40, 185]
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(face.points[outer]).astype(np.int32)], 1)
    return cv2.dilate(mask, np.ones((5, 5), np.uint8)).astype(bool)


def test_protocol(backend: LandmarkLipsync) -> None:
    assert isinstance(backend, LipsyncBackend)
    assert backend.name == "landmark" and backend.fps == FPS


@pytest.mark.parametrize("sr", [16_000, 22_050])
@pytest.mark.parametrize("dur", [0.005, 0.5, 1.0, 1.02, 2.345, 3.0])
def test_frame_count_rule(backend: LandmarkLipsync, sr: int, dur: float) -> None:
    audio = speech_like(sr, 1, dur) if dur > 1 else np.full(int(dur * sr), 0.1, np.float32)
    expected = max(1, round(len(audio) / sr * FPS))
    assert frame_count(len(audio), sr, FPS) == expected
    assert len(backend.mouth_openings(audio, sr)) == expected


def test_animate_frame_count_and_shape(backend: LandmarkLipsync, portrait: np.ndarray) -> None:
    for dur in (0.02, 0.7, 1.3):
        audio = speech_like(SR, 2, dur, lead=0.05)
        frames = list(backend.animate(portrait, audio, SR))
        assert len(frames) == max(1, round(len(audio) / SR * FPS))
        assert all(f.shape == portrait.shape and f.dtype == np.uint8 for f in frames)


def test_odd_size_portrait_cropped_to_even(backend: LandmarkLipsync, portrait: np.ndarray) -> None:
    odd = np.ascontiguousarray(portrait[:509, :511])
    frames = list(backend.animate(odd, speech_like(SR, 3, 0.5, lead=0.05), SR))
    assert frames[0].shape == (508, 510, 3)


def test_opening_correlates_with_energy(backend: LandmarkLipsync) -> None:
    for seed in (0, 1):
        audio = speech_like(SR, seed, 8.0)
        opening = backend.mouth_openings(audio, SR)
        assert opening.dtype == np.float32
        assert opening.min() >= 0.0 and opening.max() <= 1.0
        assert opening.max() > 0.9
        rms = frame_rms(audio, SR, len(opening), FPS)
        r = np.corrcoef(rms, opening)[0, 1]
        assert r > 0.7, f"Pearson r = {r:.3f}"


def test_quiet_and_loud_speech_open_alike(backend: LandmarkLipsync) -> None:
    # the curve is relative to the clip's own level (clips arrive loudness-normalised)
    audio = speech_like(SR, 4, 4.0)
    a = backend.mouth_openings(audio, SR)
    b = backend.mouth_openings(audio * 0.25, SR)
    assert np.max(np.abs(a - b)) < 0.05


def test_silence_keeps_mouth_closed_and_frame_unchanged(
    backend: LandmarkLipsync, portrait: np.ndarray
) -> None:
    rng = np.random.default_rng(0)
    speech = speech_like(SR, 5, 1.5, lead=0.0)
    silence = (rng.standard_normal(int(1.5 * SR)) * 10 ** (-75 / 20)).astype(np.float32)
    audio = np.concatenate([silence, speech, silence])
    opening = backend.mouth_openings(audio, SR)
    n = len(opening)
    lead_frames = range(0, int(1.4 * FPS))
    tail_frames = range(int((1.5 + 1.5 + 0.4) * FPS), n)
    silent = [*lead_frames, *tail_frames]
    assert np.all(opening[silent] == 0.0)
    assert opening[int(1.6 * FPS) : int(2.9 * FPS)].max() > 0.5
    blinks = backend.blink_curve(n)
    frames = list(backend.animate(portrait, audio, SR))
    checked = 0
    for i in silent:
        if blinks[i] == 0.0:
            assert np.array_equal(frames[i], portrait), f"frame {i} changed in silence"
            checked += 1
        else:
            assert not np.array_equal(frames[i], portrait), f"blink frame {i} unchanged"
    assert checked > 40
    assert backend.mouth_openings(np.zeros(SR, np.float32), SR).max() == 0.0


def test_pixels_outside_face_unchanged(
    backend: LandmarkLipsync, portrait: np.ndarray, face: FaceLandmarks
) -> None:
    outside = ~face_region(face, portrait.shape, margin_frac=0.35)
    assert outside.mean() > 0.8
    audio = speech_like(SR, 6, 5.0)
    blinks = backend.blink_curve(frame_count(len(audio), SR, FPS))
    assert blinks.max() > 0.8  # the clip includes a blink
    for f in backend.animate(portrait, audio, SR):
        assert np.array_equal(f[outside], portrait[outside])


def test_mouth_moves_when_open(
    backend: LandmarkLipsync, portrait: np.ndarray, face: FaceLandmarks
) -> None:
    audio = speech_like(SR, 7, 3.0)
    opening = backend.mouth_openings(audio, SR)
    frames = list(backend.animate(portrait, audio, SR))
    lips = lip_region(face, portrait.shape)
    big = int(np.argmax(opening))
    assert opening[big] > 0.9
    diff = np.abs(frames[big].astype(np.int16) - portrait.astype(np.int16))
    assert diff[lips].mean() > 25.0
    # a smaller opening changes the lips less, and the mouth interior is darker when open
    small = int(np.argmin(np.where(opening > 0.1, opening, 9.0)))
    diff_small = np.abs(frames[small].astype(np.int16) - portrait.astype(np.int16))
    assert diff_small[lips].mean() < diff[lips].mean()
    assert frames[big][lips].mean() < portrait[lips].mean() - 15


def test_blinks_seeded_and_natural(landmarker: FaceLandmarker) -> None:
    n = int(60 * FPS)
    a = LandmarkLipsync(fps=FPS, seed=3, landmarker=landmarker).blink_curve(n)
    b = LandmarkLipsync(fps=FPS, seed=3, landmarker=landmarker).blink_curve(n)
    c = LandmarkLipsync(fps=FPS, seed=4, landmarker=landmarker).blink_curve(n)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(a[: int(0.5 * FPS)] == 0.0)
    on = a > 0
    starts = np.flatnonzero(on & ~np.r_[False, on[:-1]])
    ends = np.flatnonzero(on & ~np.r_[on[1:], False])
    assert 8 <= len(starts) <= 31  # one every 2-6 s over 60 s
    gaps = np.diff(starts) / FPS
    assert np.all(gaps >= 2.0 - 2 / FPS) and np.all(gaps <= 6.0 + 2 / FPS)
    lengths = (ends - starts + 1) / FPS
    assert np.all(lengths <= 0.2 + 1e-9)
    for s, e in zip(starts, ends, strict=True):
        assert a[s : e + 1].max() >= 0.9
    off = LandmarkLipsync(fps=FPS, blinks=False, landmarker=landmarker).blink_curve(n)
    assert not off.any()


def test_blink_closes_eyes(
    backend: LandmarkLipsync, portrait: np.ndarray, face: FaceLandmarks
) -> None:
    audio = np.zeros(int(6 * SR), np.float32)
    blinks = backend.blink_curve(frame_count(len(audio), SR, FPS))
    k = int(np.argmax(blinks))
    frame = next(f for i, f in enumerate(backend.animate(portrait, audio, SR)) if i == k)
    for upper, lower in ((159, 145), (386, 374)):
        x = round((face.points[upper, 0] + face.points[lower, 0]) / 2)
        y0 = int(face.points[upper, 1])
        y1 = int(np.ceil(face.points[lower, 1]))
        # the open eye shows the dark iris between the lids; the closed lid is lighter skin
        col_before = portrait[y0 + 1 : y1 - 1, x - 1 : x + 2].mean()
        col_after = frame[y0 + 1 : y1 - 1, x - 1 : x + 2].mean()
        assert col_after > col_before + 20


def test_no_face_raises(backend: LandmarkLipsync) -> None:
    grad = np.tile(np.linspace(0, 255, 256, dtype=np.uint8)[:, None, None], (1, 256, 3))
    with pytest.raises(NoFaceError, match="no face found"):
        backend.animate(grad, np.full(SR, 0.1, np.float32), SR)


def test_corrupt_portrait_file(tmp_path: Path) -> None:
    bad = tmp_path / "portrait.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    with pytest.raises(InvalidInputError, match=r"portrait\.png"):
        load_image_rgb(bad)


def test_invalid_inputs(backend: LandmarkLipsync, portrait: np.ndarray) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        backend.animate(portrait, np.zeros(0, np.float32), SR)
    with pytest.raises(InvalidInputError, match="shape"):
        backend.mouth_openings(np.zeros((2, 3, 4), np.float32), SR)
    with pytest.raises(InvalidInputError, match="sample_rate"):
        backend.mouth_openings(np.zeros(100, np.float32), 0)
    with pytest.raises(InvalidInputError, match="RGB uint8"):
        backend.animate(portrait[..., 0], np.zeros(SR, np.float32), SR)
    with pytest.raises(InvalidInputError, match="RGB uint8"):
        backend.animate(portrait.astype(np.float32), np.zeros(SR, np.float32), SR)
    with pytest.raises(InvalidInputError, match="NaN"):
        backend.mouth_openings(np.full(100, np.nan, np.float32), SR)
    # stereo and int16 input are accepted
    stereo = np.stack([speech_like(SR, 8, 1.0)] * 2, axis=1)
    assert len(backend.mouth_openings(stereo, SR)) == 25
    assert len(backend.mouth_openings((stereo[:, 0] * 32767).astype(np.int16), SR)) == 25


def test_speed(backend: LandmarkLipsync, portrait: np.ndarray) -> None:
    audio = speech_like(SR, 9, 4.0)
    list(backend.animate(portrait, audio, SR))  # warm the rig cache
    t0 = time.perf_counter()
    n = sum(1 for _ in backend.animate(portrait, audio, SR))
    fps = n / (time.perf_counter() - t0)
    print(f"LandmarkLipsync.animate: {fps:.0f} frames/s at 512x512")
    assert fps > 25.0  # real time at 25 fps, with a wide margin for a loaded CI box
