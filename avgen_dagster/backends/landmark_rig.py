"""The landmark lip-sync rig: precomputed warps that open the mouth and close the eyes.

Used by :class:`avgen_dagster.backends.lipsync.LandmarkLipsync`, which computes the per-frame
parameters from the audio; this module only renders.

**Mouth**: a smooth backward displacement field over the lower face, linear in the opening
and width parameters so it is precomputed once per portrait: content below the lip seam
(lower lip, chin, jaw) moves down along the face's vertical axis by up to 23 % of the mouth
width (an elliptic profile across the mouth, blending into a rigid jaw drop below the lower
lip and fading out under the chin and towards the jaw line); the upper lip lifts by up to
6 % of the mouth width, fading out by the nose; the lips spread or narrow by up to 8 % of
the mouth width. The field is multiplied by a feathered support mask, so it fades smoothly
to zero and pixels outside the lower-face region are exactly unchanged (no box edge).
:func:`cv2.remap` applies it (bilinear). The gap between the lips is filled with an
anti-aliased dark mouth-cavity colour (plus a hint of upper teeth when the portrait's mouth
was closed).

**Eyes**: the upper-lid skin is warped down onto the lower lid line (blink parameter 0-1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from avgen_dagster.media.faces import FaceLandmarks

__all__ = ["PortraitRig"]

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


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


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


class PortraitRig:
    """Per-portrait precomputed warps (mouth opening/width and blinks), built from landmarks.

    Args:
        portrait: (H, W, 3) uint8 RGB, sides even; kept (not copied) and never modified.
        lm: the portrait's 478 MediaPipe landmarks (pixel coordinates of ``portrait``).
        teeth: draw a hint of upper teeth in the opened mouth; ``None`` = only when the
            portrait's inner lips are closer than 5 % of the mouth width.
    """

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
