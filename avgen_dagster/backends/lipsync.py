"""Lip-sync backends: animate a still portrait's mouth from speech audio.

:class:`LipsyncBackend` is the protocol every backend follows (the embedded
:class:`LandmarkLipsync` here; Wav2Lip in production). A backend yields RGB uint8 frames of
the portrait's size (sides made even, as H.264 4:2:0 needs, by cropping at most one pixel
row/column) and exactly ``max(1, round(len(audio) / sample_rate * fps))`` frames, so the
video lasts as long as the audio (to within half a frame).

:class:`LandmarkLipsync` is landmark-driven 2-D animation, no neural network:

1. **Landmarks**, once per portrait (cached by content hash): MediaPipe Face Landmarker,
   478 points (:mod:`avgen_dagster.media.faces`).
2. **Mouth opening per frame** from the audio: RMS level in dB of a Hann window centred on
   each frame (length 1.5 frame periods), a noise gate (absolute -55 dBFS and 30 dB below the
   clip's 95th-percentile frame level), mapped linearly from the gate to that reference level
   onto [0, 1], then smoothed by an attack/release envelope follower (time constants 15 ms /
   70 ms, the usual one-pole "ballistics" of level meters and compressors, e.g. Giannoulis,
   Massberg & Reiss 2012, "Digital dynamic range compressor design", JAES 60(6)), which
   snaps to exactly 0 once it falls under 0.02 so silence means a closed mouth. The lip
   **width** follows the spectral centroid (100 Hz-5 kHz) relative to the clip's median:
   front vowels (/i/, /e/, high centroid) spread the lips, back rounded vowels (/u/, /o/,
   low centroid) narrow them (Ladefoged & Johnson, "A Course in Phonetics", ch. 1 and 9).
3. **Rendering**: a smooth backward displacement field over the lower face, linear in the
   opening and width parameters so it is precomputed once per portrait: content below the
   lip seam (lower lip, chin, jaw) moves down along the face's vertical axis by up to 23 % of
   the mouth width (an elliptic profile across the mouth, blending into a rigid jaw drop
   below the lower lip and fading out under the chin and towards the jaw line); the upper
   lip lifts by up to 6 % of the mouth width, fading out by the nose; the lips spread or
   narrow by up to 8 % of the mouth width. The field is multiplied by a feathered support
   mask, so it fades smoothly to zero and pixels outside the lower-face region are exactly
   unchanged (no box edge). :func:`cv2.remap` applies it (bilinear). The gap between the
   lips is filled with an anti-aliased dark mouth-cavity colour (plus a hint of upper teeth
   when the portrait's mouth was closed).
4. **Blinks**: seeded random intervals of 2-6 s (adult spontaneous blink rate ~15-20 per
   minute, Bentivoglio et al. 1997, Movement Disorders 12(6)), none in the first 0.5 s, each
   ~150 ms (close 60 ms, open 90 ms; Kwon et al. 2013 measure 100-400 ms). The upper-lid
   skin is warped down onto the lower lid line.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.media.faces import FaceLandmarker, FaceLandmarks, default_landmarker

__all__ = ["LandmarkLipsync", "LipsyncBackend", "frame_count"]

# MediaPipe face-mesh indices (FaceLandmarksConnections.FACE_LANDMARKS_LIPS / _LEFT_EYE ...).
_UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
_LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
_INNER_CORNERS = (78, 308)
_OUTER_CORNERS = (61, 291)
_LOWER_LIP_BOTTOM = 17
_CHIN = 152
_SUBNASALE = 2
_JAW = (172, 397)
# (corner a, corner b, upper lid, lower lid); "right"/"left" are the subject's.
_EYES = (
    (33, 133, (33, 246, 161, 160, 159, 158, 157, 173, 133),
     (33, 7, 163, 144, 145, 153, 154, 155, 133)),
    (362, 263, (362, 398, 384, 385, 386, 387, 388, 466, 263),
     (362, 382, 381, 380, 374, 373, 390, 249, 263)),
)  # fmt: skip


def frame_count(n_samples: int, sample_rate: int, fps: float) -> int:
    """Frames for ``n_samples`` of audio: ``max(1, round(n_samples / sample_rate * fps))``."""
    return max(1, round(n_samples / sample_rate * fps))


@runtime_checkable
class LipsyncBackend(Protocol):
    """A lip-sync backend: turns a portrait and a speech clip into video frames.

    Attributes:
        name: short backend name (configuration key, metadata).
        fps: frame rate of the yielded frames, frames per second.
    """

    name: str
    fps: float

    def animate(
        self, portrait_rgb: np.ndarray, audio: np.ndarray, sample_rate: int
    ) -> Iterator[np.ndarray]:
        """Frames of the portrait speaking ``audio``.

        Args:
            portrait_rgb: (H, W, 3) uint8 RGB still image with one face.
            audio: (n,) float mono samples, full scale ±1.0.
            sample_rate: Hz.

        Returns:
            An iterator of exactly ``max(1, round(n / sample_rate * fps))`` frames, each
            (H', W', 3) uint8 RGB with H', W' = H, W rounded down to even numbers.

        Raises:
            NoFaceError: the portrait shows no detectable face.
            InvalidInputError: empty audio, bad shapes/dtypes or sample rate.
        """
        ...


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _to_mono(audio: np.ndarray) -> np.ndarray:
    if not isinstance(audio, np.ndarray):
        raise InvalidInputError(f"audio must be a numpy array, got {type(audio).__name__}")
    if audio.ndim == 2 and 0 < audio.shape[1] <= 8:
        audio = audio.astype(np.float64).mean(axis=1)
    elif audio.ndim != 1:
        raise InvalidInputError(
            f"audio must have shape (n,) or (n, channels), got shape {audio.shape}"
        )
    if audio.size == 0:
        raise InvalidInputError("audio is empty (0 samples): nothing to lip-sync")
    if np.issubdtype(audio.dtype, np.integer):
        scale = float(np.iinfo(audio.dtype).max) + 1.0
        out = audio.astype(np.float32) / scale
    elif np.issubdtype(audio.dtype, np.floating):
        out = audio.astype(np.float32, copy=False)
    else:
        raise InvalidInputError(f"audio dtype {audio.dtype} is not numeric")
    if not np.all(np.isfinite(out)):
        raise InvalidInputError("audio contains NaN or infinite samples")
    return out


def _check_sample_rate(sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise InvalidInputError(f"sample_rate must be an integer in Hz, got {sample_rate!r}")
    if not 1000 <= int(sample_rate) <= 384_000:
        raise InvalidInputError(f"sample_rate {sample_rate} Hz is outside 1000-384000 Hz")
    return int(sample_rate)


def _even_crop(portrait: np.ndarray) -> np.ndarray:
    if not (
        isinstance(portrait, np.ndarray)
        and portrait.ndim == 3
        and portrait.shape[2] == 3
        and portrait.dtype == np.uint8
    ):
        raise InvalidInputError(
            "portrait must be an RGB uint8 array of shape (H, W, 3); got shape "
            f"{getattr(portrait, 'shape', None)}, dtype {getattr(portrait, 'dtype', None)}"
        )
    h, w = portrait.shape[:2]
    if h < 16 or w < 16:
        raise InvalidInputError(f"portrait is too small ({w}x{h} px); need at least 16x16")
    # a private copy: the cached rig keeps it, and callers may reuse their buffer
    return np.array(portrait[: h - h % 2, : w - w % 2], order="C", copy=True)


@dataclass
class _Warp:
    """A backward map on an ROI, linear in its parameters: src = (X, Y) + sum_k p_k * F_k."""

    y0: int
    y1: int
    x0: int
    x1: int
    gx: np.ndarray  # (h, w) float32 absolute x of each ROI pixel
    gy: np.ndarray
    fields: list[tuple[np.ndarray, np.ndarray]]  # per parameter: (dx, dy) float32
    support: np.ndarray  # (h, w) bool, where the field can be non-zero

    def apply(self, image: np.ndarray, params: tuple[float, ...]) -> np.ndarray:
        mx = self.gx.copy()
        my = self.gy.copy()
        for p, (fx, fy) in zip(params, self.fields, strict=True):
            if p != 0.0:
                mx += np.float32(p) * fx
                my += np.float32(p) * fy
        out = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        orig = image[self.y0 : self.y1, self.x0 : self.x1]
        np.copyto(out, orig, where=~self.support[..., None])
        return out


def _roi(
    corners: np.ndarray, shape: tuple[int, int]
) -> tuple[int, int, int, int, np.ndarray, np.ndarray]:
    h, w = shape
    x0 = max(0, math.floor(corners[:, 0].min()) - 1)
    x1 = min(w, math.ceil(corners[:, 0].max()) + 2)
    y0 = max(0, math.floor(corners[:, 1].min()) - 1)
    y1 = min(h, math.ceil(corners[:, 1].max()) + 2)
    gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    return y0, y1, x0, x1, gx, gy


class _Rig:
    """Per-portrait precomputed warps (mouth opening/width and blink), built from landmarks."""

    def __init__(self, portrait: np.ndarray, lm: FaceLandmarks, teeth: bool | None) -> None:
        pts = lm.points.astype(np.float64)
        shape = portrait.shape[:2]
        self.portrait = portrait
        c = 0.5 * (pts[13] + pts[14])
        ex = pts[_INNER_CORNERS[1]] - pts[_INNER_CORNERS[0]]
        ex /= np.linalg.norm(ex) + 1e-9
        ey = np.array([-ex[1], ex[0]])
        self.c, self.ex, self.ey = c, ex, ey

        def uv(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            d = p - c
            return d @ ex, d @ ey

        mw = float(np.linalg.norm(pts[_OUTER_CORNERS[1]] - pts[_OUTER_CORNERS[0]]))
        self.mw = mw
        self.hw = 0.5 * float(np.linalg.norm(pts[_INNER_CORNERS[1]] - pts[_INNER_CORNERS[0]]))
        self.hw = max(self.hw, 0.3 * mw)
        self.d_max = 0.23 * mw  # lower-lip drop at full opening, px
        self.u_max = 0.06 * mw  # upper-lip lift at full opening, px
        self.w_max = 0.08 * mw  # lip spread at full width parameter, px

        uu, vu = uv(pts[list(_UPPER_INNER_LIP)])
        ul, vl = uv(pts[list(_LOWER_INNER_LIP)])
        ou, ov = np.argsort(uu), np.argsort(ul)
        self._seam_u = np.linspace(-self.hw * 1.6, self.hw * 1.6, 65)
        self._seam_v = 0.5 * (
            np.interp(self._seam_u, uu[ou], vu[ou]) + np.interp(self._seam_u, ul[ov], vl[ov])
        )
        gap = float(np.median(vl[ov][2:-2]) - np.median(vu[ou][2:-2])) if len(ul) > 4 else 0.0
        self.teeth = (gap < 0.05 * mw) if teeth is None else teeth

        _, v_chin = uv(pts[_CHIN])
        _, v_nose = uv(pts[_SUBNASALE])
        _, v_llb = uv(pts[_LOWER_LIP_BOTTOM])
        ja, jb = uv(pts[_JAW[0]])[0], uv(pts[_JAW[1]])[0]
        jw = max(0.5 * float(jb - ja), 0.8 * mw)
        v_chin = float(max(v_chin, v_llb + 0.1 * mw))
        v_nose = float(min(v_nose, -0.1 * mw))
        neck = max(2.5 * self.d_max, 0.6 * v_chin)
        self.mouth = self._mouth_warp(shape, jw, v_chin, v_nose, float(v_llb), neck)
        self.eyes = [self._eye_warp(pts, shape, e) for e in _EYES]

    def seam(self, u: np.ndarray) -> np.ndarray:
        """Lip seam offset (px along ey) at mouth coordinate(s) ``u``."""
        return np.interp(u, self._seam_u, self._seam_v)

    def profile(self, u: np.ndarray) -> np.ndarray:
        """Elliptic opening profile across the mouth: 1 at the centre, 0 at the corners."""
        return np.sqrt(np.clip(1.0 - (u / self.hw) ** 2, 0.0, 1.0))

    def _mouth_warp(
        self,
        shape: tuple[int, int],
        jw: float,
        v_chin: float,
        v_nose: float,
        v_llb: float,
        neck: float,
    ) -> _Warp:
        c, ex, ey = self.c, self.ex, self.ey
        u_ext = 1.15 * jw
        v_lo, v_hi = v_nose - 2.0, v_chin + neck + 2.0
        corners = np.array(
            [c + a * ex + b * ey for a in (-u_ext, u_ext) for b in (v_lo, v_hi)], dtype=np.float64
        )
        y0, y1, x0, x1, gx, gy = _roi(corners, shape)
        dx, dy = gx - c[0], gy - c[1]
        u = dx * ex[0] + dy * ex[1]
        v = dx * ey[0] + dy * ey[1]
        vs = v - self.seam(u)  # signed distance below the lip seam
        prof = self.profile(u)
        au = np.abs(u)
        # rigid jaw: full within the chin, fading towards the jaw line
        jaw = 1.0 - _smoothstep((au - 0.35 * jw) / (0.75 * jw))
        t = max(v_llb - float(self.seam(np.array(0.0))), 0.1 * self.mw) * 1.5 + 0.6 * np.maximum(
            au - self.hw, 0.0
        )
        s = _smoothstep(vs / t)
        lower = prof * (1.0 - s) + jaw * s
        lower *= 1.0 - _smoothstep((v - v_chin) / neck)
        upper = prof * (1.0 - _smoothstep(-vs / max(-v_nose, 1.0)))
        open_amt = np.where(vs >= 0.0, -self.d_max * lower, self.u_max * upper)
        support = 1.0 - _smoothstep((au - 0.75 * jw) / (0.4 * jw))
        support *= 1.0 - _smoothstep((v - v_chin) / neck)
        support *= _smoothstep((v - v_nose) / 3.0)
        open_amt *= support
        # lip spread: content moves outward along ex by w * w_max * g (backward: minus)
        g = np.tanh(u / self.hw) * np.exp(-0.5 * (vs / (0.25 * self.mw)) ** 2)
        g *= np.exp(-0.5 * (u / (1.4 * self.hw)) ** 4) * support
        spread = -self.w_max * g
        f_open = ((open_amt * ey[0]).astype(np.float32), (open_amt * ey[1]).astype(np.float32))
        f_wide = ((spread * ex[0]).astype(np.float32), (spread * ex[1]).astype(np.float32))
        return _Warp(y0, y1, x0, x1, gx, gy, [f_open, f_wide], support > 0.0)

    def _eye_warp(
        self, pts: np.ndarray, shape: tuple[int, int], eye: tuple[int, int, tuple, tuple]
    ) -> _Warp:
        a, b, upper_idx, lower_idx = eye
        c = 0.5 * (pts[a] + pts[b])
        ex = pts[b] - pts[a]
        hw = 0.5 * float(np.linalg.norm(ex))
        ex = ex / (2.0 * hw + 1e-9)
        ey = np.array([-ex[1], ex[0]])
        if ey[1] < 0:
            ey = -ey
        up = pts[list(upper_idx)] - c
        lo = pts[list(lower_idx)] - c
        uu, vu = up @ ex, up @ ey
        ul, vl = lo @ ex, lo @ ey
        ou, ol = np.argsort(uu), np.argsort(ul)
        h_max = float(np.max(np.interp(ul[ol], uu[ou], vu[ou]) * -1.0 + vl[ol]))
        h_max = max(h_max, 1.0)
        v_top = float(vu.min()) - 1.6 * h_max
        corners = np.array(
            [c + p * ex + q * ey for p in (-1.15 * hw, 1.15 * hw) for q in (v_top, vl.max() + 1)]
        )
        y0, y1, x0, x1, gx, gy = _roi(corners, shape)
        dx, dy = gx - c[0], gy - c[1]
        u = dx * ex[0] + dy * ex[1]
        v = dx * ey[0] + dy * ey[1]
        v_low = np.interp(u, ul[ol], vl[ol])
        v_up = np.interp(u, uu[ou], vu[ou])
        height = np.clip(v_low - v_up, 0.0, None)
        height *= 1.0 - _smoothstep((np.abs(u) - 0.85 * hw) / (0.15 * hw))
        r = np.clip((v - v_top) / np.maximum(v_low - v_top, 1e-3), 0.0, 1.0)
        amt = np.where(v <= v_low, -height * r, 0.0)
        support = (amt != 0.0) | ((v <= v_low) & (v >= v_top) & (height > 0))
        fld = ((amt * ey[0]).astype(np.float32), (amt * ey[1]).astype(np.float32))
        return _Warp(y0, y1, x0, x1, gx, gy, [fld], support)

    def render(self, opening: float, width: float, blink: float) -> np.ndarray:
        """One frame: (H, W, 3) uint8, a new array."""
        frame = self.portrait.copy()
        if opening > 0.0 or width != 0.0:
            w = self.mouth
            out = w.apply(self.portrait, (opening, width))
            if opening > 0.0:
                self._fill_cavity(out, w, opening, width)
            frame[w.y0 : w.y1, w.x0 : w.x1] = out
        if blink > 0.0:
            for e in self.eyes:
                frame[e.y0 : e.y1, e.x0 : e.x1] = e.apply(self.portrait, (blink,))
        return frame

    def _fill_cavity(self, out: np.ndarray, w: _Warp, opening: float, width: float) -> None:
        n = 25
        u = np.linspace(-self.hw, self.hw, n)
        prof = self.profile(u)
        seam = self.seam(u)
        u_w = u * (1.0 + width * self.w_max / self.hw * np.tanh(1.0) * 0.9)
        top = seam - opening * self.u_max * prof
        bot = seam + opening * self.d_max * prof
        if float((bot - top).max()) < 0.5:
            return
        uu = np.concatenate([u_w, u_w[::-1]])
        vv = np.concatenate([top, bot[::-1]])
        poly = self.c + uu[:, None] * self.ex + vv[:, None] * self.ey
        poly -= np.array([w.x0, w.y0], dtype=np.float64)
        x0 = max(0, int(poly[:, 0].min()) - 2)
        y0 = max(0, int(poly[:, 1].min()) - 2)
        x1 = min(out.shape[1], int(poly[:, 0].max()) + 3)
        y1 = min(out.shape[0], int(poly[:, 1].max()) + 3)
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        p16 = np.round((poly - [x0, y0]) * 16.0).astype(np.int32)
        cv2.fillPoly(mask, [p16], 255, lineType=cv2.LINE_AA, shift=4)
        alpha = cv2.GaussianBlur(mask, (3, 3), 0.6).astype(np.float32) * (0.97 / 255.0)
        patch = out[y0:y1, x0:x1].astype(np.float32)
        # cavity shade: darker deeper inside and towards the corners, a tongue at the bottom
        gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dxy_x = gx + w.x0 - self.c[0]
        dxy_y = gy + w.y0 - self.c[1]
        pu = dxy_x * self.ex[0] + dxy_y * self.ex[1]
        pv = dxy_x * self.ey[0] + dxy_y * self.ey[1]
        seam_p = self.seam(pu).astype(np.float32)
        top_p = seam_p - opening * self.u_max * self.profile(pu).astype(np.float32)
        depth = np.clip((pv - top_p) / max(opening * self.d_max, 1.0), 0.0, 1.0)
        side = np.clip(np.abs(pu) / self.hw, 0.0, 1.0)
        dark = (1.0 - 0.35 * depth) * (1.0 - 0.45 * side**2)
        shade = np.array([80.0, 34.0, 30.0], np.float32) * dark[..., None]
        tongue = _smoothstep((depth - 0.55) / 0.45) * (1.0 - side**2) * min(1.0, 1.5 * opening)
        tongue = (0.55 * tongue)[..., None]
        shade = shade * (1.0 - tongue) + np.array([150.0, 66.0, 64.0], np.float32) * tongue
        if self.teeth:
            teeth_h = max(0.5, 0.3 * opening * self.d_max)
            rel = (pv - top_p) / teeth_h
            tooth = (np.clip(1.0 - rel, 0.0, 1.0) * (1.0 - side**4) * 0.8)[..., None]
            shade = shade * (1.0 - tooth) + np.array([205.0, 198.0, 188.0], np.float32) * tooth
        shade = np.broadcast_to(shade, patch.shape)
        a = alpha[..., None]
        out[y0:y1, x0:x1] = np.clip(patch * (1.0 - a) + shade * a + 0.5, 0, 255).astype(np.uint8)


class LandmarkLipsync:
    """Embedded lip-sync backend: landmark-driven warping of a still portrait (CPU, offline).

    Args:
        fps: output frame rate, frames per second (> 0).
        seed: seed of the blink schedule (same seed, same blinks).
        landmarker: face landmarker; default the shared
            :func:`~avgen_dagster.media.faces.default_landmarker`.
        gate_db: absolute noise gate, dBFS (frames quieter than this keep the mouth closed).
        range_db: dynamic range mapped onto the opening, dB below the clip's 95th-percentile
            frame level (also the relative gate).
        attack_s, release_s: time constants of the opening envelope follower, seconds.
        blinks: whether to blink.
        teeth: draw a hint of upper teeth in the opened mouth; ``None`` = only if the
            portrait's mouth is closed (an open-mouthed portrait shows its own teeth).

    Raises:
        InvalidInputError: invalid parameter values.
    """

    name = "landmark"

    def __init__(
        self,
        fps: float = 25.0,
        seed: int = 0,
        landmarker: FaceLandmarker | None = None,
        gate_db: float = -55.0,
        range_db: float = 30.0,
        attack_s: float = 0.015,
        release_s: float = 0.07,
        blinks: bool = True,
        teeth: bool | None = None,
    ) -> None:
        if not (math.isfinite(fps) and 1.0 <= fps <= 120.0):
            raise InvalidInputError(f"fps must be within 1-120, got {fps}")
        if not range_db > 0 or attack_s < 0 or release_s < 0:
            raise InvalidInputError("range_db must be > 0 and attack_s, release_s >= 0")
        self.fps = float(fps)
        self.seed = int(seed)
        self.gate_db = float(gate_db)
        self.range_db = float(range_db)
        self.attack_s = float(attack_s)
        self.release_s = float(release_s)
        self.blinks = bool(blinks)
        self.teeth = teeth
        self._landmarker = landmarker
        self._rigs: OrderedDict[tuple, _Rig] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ audio analysis
    def _frames(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame (rms, centroid Hz) of Hann windows centred on each frame."""
        n = frame_count(len(audio), sample_rate, self.fps)
        hop = sample_rate / self.fps
        win = max(64, round(1.5 * hop))
        window = np.hanning(win).astype(np.float32)
        norm = float(np.sum(window**2))
        nfft = 1 << (win - 1).bit_length()
        freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
        band = (freqs >= 100.0) & (freqs <= 5000.0)
        pad = np.concatenate([np.zeros(win, np.float32), audio, np.zeros(win, np.float32)])
        centres = ((np.arange(n) + 0.5) * hop).astype(np.int64)
        starts = centres - win // 2 + win
        rms = np.empty(n, np.float64)
        cent = np.empty(n, np.float64)
        offs = np.arange(win)
        for i0 in range(0, n, 1024):
            st = starts[i0 : i0 + 1024]
            seg = pad[st[:, None] + offs[None, :]] * window
            rms[i0 : i0 + len(st)] = np.sqrt(np.sum(seg.astype(np.float64) ** 2, 1) / norm)
            if band.any():
                mag = np.abs(np.fft.rfft(seg, nfft, axis=1))[:, band] ** 2
                tot = mag.sum(1)
                cent[i0 : i0 + len(st)] = (mag @ freqs[band]) / np.maximum(tot, 1e-20)
            else:
                cent[i0 : i0 + len(st)] = 0.0
        return rms, cent

    def _follow(self, target: np.ndarray) -> np.ndarray:
        a_att = 1.0 - math.exp(-1.0 / (self.fps * self.attack_s)) if self.attack_s > 0 else 1.0
        a_rel = 1.0 - math.exp(-1.0 / (self.fps * self.release_s)) if self.release_s > 0 else 1.0
        out = np.empty_like(target)
        y = 0.0
        for i, x in enumerate(target.tolist()):
            y += (a_att if x > y else a_rel) * (x - y)
            if x == 0.0 and y < 0.02:
                y = 0.0
            out[i] = y
        return out

    def curves(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame mouth opening and lip width parameters.

        Args:
            audio: (n,) float mono (or (n, channels), averaged; integer PCM is scaled).
            sample_rate: Hz.

        Returns:
            ``(opening, width)``: float32 arrays of shape (n_frames,), opening in [0, 1]
            (0 = closed, exactly 0 in gated silence), width in [-1, 1] (negative = rounded,
            positive = spread; 0 when the mouth is closed).

        Raises:
            InvalidInputError: empty audio, bad shape/dtype or sample rate.
        """
        sample_rate = _check_sample_rate(sample_rate)
        audio = _to_mono(audio)
        rms, cent = self._frames(audio, sample_rate)
        db = 20.0 * np.log10(np.maximum(rms, 1e-10))
        voiced = db > self.gate_db
        if not voiced.any():
            z = np.zeros(len(db), np.float32)
            return z, z.copy()
        ref = float(np.percentile(db[voiced], 95))
        floor = max(self.gate_db, ref - self.range_db)
        target = np.clip((db - floor) / max(ref - floor, 1e-6), 0.0, 1.0)
        target[db <= floor] = 0.0
        opening = np.clip(self._follow(target), 0.0, 1.0)
        c_ref = float(np.median(cent[target > 0])) if np.any(target > 0) else 1000.0
        wt = np.tanh(np.log2(np.maximum(cent, 50.0) / max(c_ref, 50.0)) / 0.8)
        wt = np.where(target > 0, wt, 0.0)
        width = self._follow_signed(wt) * np.minimum(1.0, 4.0 * opening)
        width[opening == 0.0] = 0.0
        return opening.astype(np.float32), np.clip(width, -1, 1).astype(np.float32)

    def _follow_signed(self, x: np.ndarray) -> np.ndarray:
        a = 1.0 - math.exp(-1.0 / (self.fps * max(self.release_s, 1e-6)))
        out = np.empty_like(x)
        y = 0.0
        for i, v in enumerate(x.tolist()):
            y += a * (v - y)
            out[i] = y
        return out

    def mouth_openings(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Mouth opening per video frame, float32 (n_frames,) in [0, 1]; see :meth:`curves`.

        ``n_frames = max(1, round(len(audio) / sample_rate * fps))``.

        Raises:
            InvalidInputError: empty audio, bad shape/dtype or sample rate.
        """
        return self.curves(audio, sample_rate)[0]

    def blink_curve(self, n_frames: int) -> np.ndarray:
        """Eyelid closure per frame, float32 (n_frames,) in [0, 1] (1 = closed).

        Blink starts are seeded-random: the first 0.5 + U(0.5, 3.0) s, then every U(2, 6) s;
        each blink closes over 60 ms and reopens over 90 ms (sampled at frame centres).
        The generator is seeded with ``(seed, n_frames)``: deterministic for a given seed,
        fps and length, while the segments of one video (different lengths) do not all
        blink at the same moments.
        """
        out = np.zeros(max(0, int(n_frames)), np.float32)
        if not self.blinks or n_frames <= 0:
            return out
        rng = np.random.default_rng([self.seed, int(n_frames)])
        dur = n_frames / self.fps
        t_frames = (np.arange(n_frames) + 0.5) / self.fps
        start = 0.5 + rng.uniform(0.5, 3.0)
        close_s, open_s = 0.06, 0.09
        while start < dur:
            rel = t_frames - start
            closing = np.clip(rel / close_s, 0.0, 1.0)
            opening = np.clip(1.0 - (rel - close_s) / open_s, 0.0, 1.0)
            b = np.where(rel < close_s, closing, opening)
            b[(rel < 0) | (rel > close_s + open_s)] = 0.0
            # a frame that falls between samples of a fast blink still shows it closed
            out = np.maximum(out, b.astype(np.float32))
            k = int(np.argmin(np.abs(rel - close_s)))
            if 0 <= rel[k] <= close_s + open_s:
                out[k] = max(out[k], 0.9)
            start += rng.uniform(2.0, 6.0)
        return out

    # ------------------------------------------------------------------ rendering
    def _rig(self, portrait: np.ndarray) -> _Rig:
        key = (portrait.shape, hashlib.blake2b(portrait.tobytes(), digest_size=16).digest())
        with self._lock:
            rig = self._rigs.get(key)
            if rig is not None:
                self._rigs.move_to_end(key)
                return rig
        from avgen_dagster.media.faces import require_face

        landmarker = self._landmarker or default_landmarker()
        lm = require_face(portrait, "the portrait", landmarker)
        rig = _Rig(portrait, lm, self.teeth)
        with self._lock:
            self._rigs[key] = rig
            while len(self._rigs) > 4:
                self._rigs.popitem(last=False)
        return rig

    def animate(
        self, portrait_rgb: np.ndarray, audio: np.ndarray, sample_rate: int
    ) -> Iterator[np.ndarray]:
        """Frames of the portrait speaking ``audio`` (see :class:`LipsyncBackend`).

        Validation, face detection and audio analysis happen in this call (errors surface
        here, not at the first ``next``); frames are rendered lazily, one at a time, so
        memory stays flat however long the audio is.

        Args:
            portrait_rgb: (H, W, 3) uint8 RGB with one face (H, W >= 16).
            audio: (n,) float mono, full scale ±1.0, n > 0.
            sample_rate: Hz.

        Returns:
            Iterator of ``max(1, round(n / sample_rate * fps))`` frames, each a new
            (H - H % 2, W - W % 2, 3) uint8 RGB array.

        Raises:
            NoFaceError: no face in the portrait.
            InvalidInputError: bad portrait, empty audio, bad shape/dtype or sample rate.
            BackendError: the landmarker model cannot be loaded.
        """
        portrait = _even_crop(portrait_rgb)
        opening, width = self.curves(audio, sample_rate)
        rig = self._rig(portrait)
        blink = self.blink_curve(len(opening))
        return self._render_iter(rig, opening, width, blink)

    @staticmethod
    def _render_iter(
        rig: _Rig, opening: np.ndarray, width: np.ndarray, blink: np.ndarray
    ) -> Iterator[np.ndarray]:
        for o, w, b in zip(opening.tolist(), width.tolist(), blink.tolist(), strict=True):
            yield rig.render(o, w, b)
