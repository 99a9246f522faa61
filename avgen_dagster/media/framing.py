"""Face-aware framing of a source picture into a platform format.

Formats: ``vertical`` 1080×1920 (9:16, short-form platforms), ``landscape`` 1920×1080
(16:9), ``square`` 1080×1080. The source is scaled uniformly (no stretched pixels) and
placed so the eyes sit on the upper third line of the output (the "rule of thirds"
headroom of portrait framing); where the scaled source does not cover the output, the gap
is filled with a blurred, dimmed copy of the source scaled to cover the frame (the usual
treatment of pillar/letter-boxed video on social platforms). The geometry is computed once
(:func:`plan_framing`); :class:`Framer` applies it to each frame with OpenCV
(``warpAffine`` on the visible rectangle only; the fill is blurred at 1/8 size and scaled
up).

Frames are RGB ``uint8`` arrays of shape ``(H, W, 3)``; coordinates are pixels (x right,
y down); a scale is output pixels per source pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.media.faces import FaceLandmarks

__all__ = [
    "FORMATS",
    "FaceAnchor",
    "Framer",
    "FramingPlan",
    "format_size",
    "pan_zoom_frame",
    "plan_framing",
]

#: Output size (width, height) in pixels per format name.
FORMATS: dict[str, tuple[int, int]] = {
    "vertical": (1080, 1920),
    "landscape": (1920, 1080),
    "square": (1080, 1080),
}
Fit = Literal["face", "contain", "cover"]
_FITS = ("face", "contain", "cover")
# MediaPipe face mesh: iris centres (refined landmarks 468 and 473) and eye corners.
_IRIS = (468, 473)
_EYE_CORNERS = (33, 133, 362, 263)
_FILL_DOWNSCALE = 8


def format_size(name: str) -> tuple[int, int]:
    """``(width, height)`` in pixels of a format name.

    Raises:
        InvalidInputError: ``name`` is not one of :data:`FORMATS`.
    """
    try:
        return FORMATS[name]
    except KeyError:
        raise InvalidInputError(
            f"video format {name!r} is not one of {', '.join(FORMATS)}"
        ) from None


@dataclass(frozen=True)
class FaceAnchor:
    """Where the face is in the source.

    Attributes:
        eye_x: x of the midpoint between the eyes, source pixels.
        eye_y: y of the midpoint between the eyes, source pixels.
        face_height: height of the face (landmark box), source pixels.
    """

    eye_x: float
    eye_y: float
    face_height: float

    @classmethod
    def from_landmarks(cls, face: FaceLandmarks) -> FaceAnchor:
        """From :class:`~avgen_dagster.media.faces.FaceLandmarks` (478-point MediaPipe mesh:
        iris centres 468/473; eye corners 33, 133, 362, 263 when the irises are absent)."""
        pts = np.asarray(face.points, dtype=np.float64)
        idx = _IRIS if pts.shape[0] > max(_IRIS) else _EYE_CORNERS
        ex, ey = pts[list(idx)].mean(axis=0)
        return cls(float(ex), float(ey), float(max(face.height, 1.0)))


@dataclass(frozen=True)
class FramingPlan:
    """Geometry mapping a source into an output frame: ``out = scale * src + offset``.

    Attributes:
        src_w: source width, pixels.
        src_h: source height, pixels.
        out_w: output width, pixels.
        out_h: output height, pixels.
        scale: uniform scale, output pixels per source pixel (> 1 is an upscale).
        offset_x: output x of the source's left edge, pixels.
        offset_y: output y of the source's top edge, pixels.
        fit: how the scale was chosen (``face``, ``contain`` or ``cover``).
        eye_y_out: output y of the eyes (None without a face anchor), pixels.
    """

    src_w: int
    src_h: int
    out_w: int
    out_h: int
    scale: float
    offset_x: float
    offset_y: float
    fit: str
    eye_y_out: float | None = None

    @property
    def upscale_factor(self) -> float:
        """How much source pixels are enlarged (``scale``; below 1 means downscaled)."""
        return self.scale

    @property
    def visible(self) -> tuple[int, int, int, int]:
        """Output rectangle ``(x0, y0, x1, y1)`` the source covers, pixels (exclusive ends)."""
        x0 = max(0, math.floor(self.offset_x + 1e-6))
        y0 = max(0, math.floor(self.offset_y + 1e-6))
        x1 = min(self.out_w, math.ceil(self.offset_x + self.scale * self.src_w - 1e-6))
        y1 = min(self.out_h, math.ceil(self.offset_y + self.scale * self.src_h - 1e-6))
        return x0, y0, x1, y1

    @property
    def covers(self) -> bool:
        """True when the scaled source fills the whole output (no fill needed)."""
        return self.visible == (0, 0, self.out_w, self.out_h)

    @property
    def fill_fraction(self) -> float:
        """Fraction of output pixels that come from the blurred fill (0..1)."""
        x0, y0, x1, y1 = self.visible
        return 1.0 - (x1 - x0) * (y1 - y0) / (self.out_w * self.out_h)


def _clamp_offset(want: float, scaled: float, out: float) -> float:
    """Offset closest to ``want`` that keeps the source covering (if larger) or inside."""
    lo, hi = min(0.0, out - scaled), max(0.0, out - scaled)
    return min(hi, max(lo, want))


def plan_framing(
    src_w: int,
    src_h: int,
    out_w: int,
    out_h: int,
    anchor: FaceAnchor | None = None,
    *,
    fit: Fit = "face",
    eye_line: float = 1.0 / 3.0,
    face_height_frac: float = 0.3,
    max_upscale: float = 6.0,
    max_headroom_fill: float = 0.15,
    crop_to_face: bool = False,
) -> FramingPlan:
    """Choose the scale and offset framing a ``src_w``×``src_h`` source in ``out_w``×``out_h``.

    Scale: ``contain`` fits the whole source inside the output; ``cover`` fills the output
    (cropping); ``face`` makes the face ``face_height_frac`` of the output height, clamped
    between the two (never smaller than contain, never cropping more than cover), then raised if
    needed so eyes low in the picture can still reach the eye line (which may crop more than
    cover), never above ``max_upscale``. Position: the eyes' midpoint is centred horizontally
    and put on ``eye_line`` × height. Horizontally the offset is then clamped so a source wider
    than the output still covers it and a narrower one stays wholly inside. Vertically the same
    clamp applies, except that up to ``max_headroom_fill`` × height may be left above the source
    (filled by the :class:`Framer`), so a head near the top of its picture still gets its eyes
    on the line; without an anchor the source is centred.

    Args:
        src_w: source width, pixels.
        src_h: source height, pixels.
        out_w: output width, pixels.
        out_h: output height, pixels.
        anchor: face position in the source, or None.
        fit: ``face`` (needs ``anchor``; falls back to ``contain`` without one),
            ``contain`` or ``cover``.
        eye_line: target eye height as a fraction of the output height (1/3).
        face_height_frac: target face height as a fraction of the output height.
        max_upscale: largest scale allowed in ``face`` mode.
        max_headroom_fill: largest gap above the source, as a fraction of the output height.
        crop_to_face: in ``face`` mode, let the face size crop more than cover (a close-up,
            e.g. a picture-in-picture inset).

    Returns:
        A :class:`FramingPlan`.

    Raises:
        InvalidInputError: non-positive sizes or an unknown ``fit``.
    """
    if min(src_w, src_h, out_w, out_h) <= 0:
        raise InvalidInputError(
            f"framing needs positive sizes, got source {src_w}x{src_h}, output {out_w}x{out_h}"
        )
    if fit not in _FITS:
        raise InvalidInputError(f"framing fit {fit!r} is not one of {', '.join(_FITS)}")
    contain = min(out_w / src_w, out_h / src_h)
    cover = max(out_w / src_w, out_h / src_h)
    if fit == "face" and anchor is None:
        fit = "contain"
    if fit == "contain":
        scale = contain
    elif fit == "cover":
        scale = cover
    else:
        assert anchor is not None
        wanted = face_height_frac * out_h / max(anchor.face_height, 1.0)
        limit = max(max_upscale, contain)
        scale = max(contain, min(wanted, limit) if crop_to_face else min(cover, wanted, limit))
        # zoom in further when the eyes sit too low in the picture to reach the line
        reach = (1.0 - eye_line) * out_h / max(src_h - anchor.eye_y, 1.0)
        scale = max(scale, min(reach, max(max_upscale, contain)))
    sw, sh = scale * src_w, scale * src_h
    if anchor is None:
        ox, oy = (out_w - sw) / 2, (out_h - sh) / 2
        return FramingPlan(src_w, src_h, out_w, out_h, scale, ox, oy, fit, None)
    ox = _clamp_offset(out_w / 2 - anchor.eye_x * scale, sw, out_w)
    lo, hi = min(0.0, out_h - sh), max(0.0, out_h - sh) + max_headroom_fill * out_h
    oy = min(hi, max(lo, out_h * eye_line - anchor.eye_y * scale))
    return FramingPlan(src_w, src_h, out_w, out_h, scale, ox, oy, fit, oy + anchor.eye_y * scale)


class Framer:
    """Applies a :class:`FramingPlan` to frames (geometry and fill set up once).

    The visible part of the source is cropped and resized (``cv2.resize``: linear when
    enlarging, area-averaging when shrinking) into its output rectangle, to the nearest
    output pixel. Where the source does not reach, the fill is drawn on a 1/8-size canvas,
    blurred, and only the bands that need it are scaled up: ``extend`` continues the picture
    (in the same geometry, its edge pixels smeared outwards: natural for a small headroom
    band), ``blur`` shows the whole source scaled to cover the frame, dimmed by ``fill_dim``
    (the usual treatment of a large letter/pillar box); ``auto`` picks ``extend`` when the
    source spans the whole width and the fill is at most 25 % of the frame, else ``blur``.
    The seams are feathered over ``feather_frac`` of the shorter side.

    Args:
        plan: the geometry.
        fill: ``auto``, ``extend`` or ``blur``.
        fill_dim: brightness factor of the ``blur`` fill (0..1).
        blur_frac: Gaussian sigma of the fill as a fraction of the output's shorter side.
        feather_frac: width of the seam blend as a fraction of the output's shorter side.
        fill_offset: the value dimming pulls towards: 0 for RGB, 16 for a Y plane and 128
            for a U or V plane (BT.601 limited range black).

    Frames may be RGB ``(H, W, 3)`` or single planes ``(H, W)`` (e.g. I420 planes, see
    :mod:`avgen_dagster.media.i420`).

    Raises:
        InvalidInputError: a setting out of range.
    """

    def __init__(
        self,
        plan: FramingPlan,
        *,
        fill: Literal["auto", "extend", "blur"] = "auto",
        fill_dim: float = 0.7,
        blur_frac: float = 0.04,
        feather_frac: float = 0.05,
        fill_offset: float = 0.0,
    ) -> None:
        if fill not in ("auto", "extend", "blur") or not 0 <= fill_dim <= 1:
            raise InvalidInputError(f"bad fill settings: {fill!r}, dim {fill_dim}")
        if not 0 < blur_frac < 0.5 or not 0 <= feather_frac < 0.2:
            raise InvalidInputError(f"bad fill settings: blur {blur_frac}, feather {feather_frac}")
        self.plan, self.fill_dim, self.fill_offset = plan, fill_dim, fill_offset
        x0, y0, x1, y1 = self._rect = plan.visible
        only_headroom = x0 == 0 and x1 == plan.out_w and plan.fill_fraction <= 0.25
        self.fill_mode = ("extend" if only_headroom else "blur") if fill == "auto" else fill
        self._crop, self._resized, self._slice_at = self._crop_geometry()
        k = _FILL_DOWNSCALE
        self._small = (-(-plan.out_w // k), -(-plan.out_h // k))
        self._sigma = blur_frac * min(plan.out_w, plan.out_h) / k
        self._small_matrix = np.array(
            [[plan.scale / k, 0, plan.offset_x / k], [0, plan.scale / k, plan.offset_y / k]]
        )
        cover = max(self._small[0] / plan.src_w, self._small[1] / plan.src_h)
        cw, ch = self._small[0] / cover, self._small[1] / cover  # covers the small canvas
        self._cover_crop = (
            round((plan.src_w - cw) / 2),
            round((plan.src_h - ch) / 2),
            round((plan.src_w + cw) / 2),
            round((plan.src_h + ch) / 2),
        )
        f = max(0, round(feather_frac * min(plan.out_w, plan.out_h)))
        f = min(f, (x1 - x0) // 2, (y1 - y0) // 2) if x1 > x0 and y1 > y0 else 0
        self._feather = f
        w, h = plan.out_w, plan.out_h
        # fill bands (x0, y0, x1, y1), each reaching f pixels into the picture for the feather
        bands = [
            (0, 0, w, min(h, y0 + f)) if y0 > 0 else None,
            (0, max(0, y1 - f), w, h) if y1 < h else None,
            (0, y0, min(w, x0 + f), y1) if x0 > 0 else None,
            (max(0, x1 - f), y0, w, y1) if x1 < w else None,
        ]
        self._bands = [b for b in bands if b is not None and b[2] > b[0] and b[3] > b[1]]
        self._fill_source = self._fill_dependency()
        self._fill_cache: tuple[np.ndarray, list[np.ndarray]] | None = None

    def _fill_dependency(self) -> tuple[slice, slice]:
        """The source pixels the fill bands depend on (bands grown by 3 blur sigmas)."""
        p = self.plan
        if self.fill_mode == "blur" or not self._bands:
            cx0, cy0, cx1, cy1 = self._cover_crop
            return np.s_[cy0:cy1], np.s_[cx0:cx1]
        grow = 3 * self._sigma * _FILL_DOWNSCALE + 2 * _FILL_DOWNSCALE
        xs = [v for b in self._bands for v in (b[0] - grow, b[2] + grow)]
        ys = [v for b in self._bands for v in (b[1] - grow, b[3] + grow)]

        def src(v: float, offset: float, size: int) -> int:
            return min(size, max(0, round((v - offset) / p.scale)))

        x0, x1 = src(min(xs), p.offset_x, p.src_w), src(max(xs), p.offset_x, p.src_w) + 1
        y0, y1 = src(min(ys), p.offset_y, p.src_h), src(max(ys), p.offset_y, p.src_h) + 1
        return np.s_[y0 : min(p.src_h, y1)], np.s_[x0 : min(p.src_w, x1)]

    def _fill_bands(self, frame: np.ndarray) -> list[np.ndarray]:
        """The full-size fill of every band; reused while the pixels it depends on are
        unchanged (a talking head's background above the head stays still)."""
        key = frame[self._fill_source]
        if self._fill_cache is not None and np.array_equal(self._fill_cache[0], key):
            return self._fill_cache[1]
        small = self._small_canvas(frame)
        bands = [self._upscaled(small, band) for band in self._bands]
        self._fill_cache = (key.copy(), bands)
        return bands

    def _crop_geometry(self) -> tuple[tuple[int, int, int, int], tuple[int, int], tuple[int, int]]:
        """Source crop, its resized size and where the output rectangle starts in it."""
        p = self.plan
        x0, y0, x1, y1 = self._rect
        a = max(0, math.floor((x0 - p.offset_x) / p.scale))
        b = min(p.src_w, math.ceil((x1 - p.offset_x) / p.scale) + 1)
        c = max(0, math.floor((y0 - p.offset_y) / p.scale))
        d = min(p.src_h, math.ceil((y1 - p.offset_y) / p.scale) + 1)
        size = (max(1, round((b - a) * p.scale)), max(1, round((d - c) * p.scale)))
        at = (round(x0 - (p.offset_x + a * p.scale)), round(y0 - (p.offset_y + c * p.scale)))
        return (a, c, b, d), size, (max(0, at[0]), max(0, at[1]))

    def _foreground(self, frame: np.ndarray) -> np.ndarray:
        a, c, b, d = self._crop
        interp = cv2.INTER_AREA if self.plan.scale < 1 else cv2.INTER_LINEAR
        big = cv2.resize(frame[c:d, a:b], self._resized, interpolation=interp)
        x0, y0, x1, y1 = self._rect
        sx, sy = self._slice_at
        part = big[sy : sy + (y1 - y0), sx : sx + (x1 - x0)]
        short_y, short_x = (y1 - y0) - part.shape[0], (x1 - x0) - part.shape[1]
        if short_x > 0 or short_y > 0:  # rounding left the crop a pixel short: repeat edges
            pad = [(0, max(0, short_y)), (0, max(0, short_x))] + [(0, 0)] * (part.ndim - 2)
            part = np.pad(part, pad, "edge")
        return part

    def _small_canvas(self, frame: np.ndarray) -> np.ndarray:
        """The fill at 1/8 size, blurred (and dimmed in ``blur`` mode)."""
        if self.fill_mode == "extend":
            small = cv2.warpAffine(
                frame, self._small_matrix, self._small, flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )  # fmt: skip
        else:
            cx0, cy0, cx1, cy1 = self._cover_crop
            small = cv2.resize(frame[cy0:cy1, cx0:cx1], self._small, interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), self._sigma)
        if self.fill_dim < 1 and self.fill_mode == "blur":
            beta = self.fill_offset * (1 - self.fill_dim)
            small = cv2.convertScaleAbs(small, alpha=self.fill_dim, beta=beta)
        return small

    def _upscaled(self, small: np.ndarray, band: tuple[int, int, int, int]) -> np.ndarray:
        """One band of the full-size fill: the small canvas around it scaled up 8×."""
        k = _FILL_DOWNSCALE
        x0, y0, x1, y1 = band
        c0, r0 = max(0, x0 // k - 1), max(0, y0 // k - 1)
        c1, r1 = min(small.shape[1], -(-x1 // k) + 1), min(small.shape[0], -(-y1 // k) + 1)
        up = cv2.resize(small[r0:r1, c0:c1], ((c1 - c0) * k, (r1 - r0) * k))
        return up[y0 - r0 * k : y1 - r0 * k, x0 - c0 * k : x1 - c0 * k]

    def apply(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Frame one source picture.

        Args:
            frame: (src_h, src_w, 3) uint8 RGB, or one (src_h, src_w) uint8 plane.
            out: where to write, (out_h, out_w[, 3]) uint8 (a view is fine); default new.

        Returns:
            ``out`` (or a new (out_h, out_w[, 3]) uint8 array).

        Raises:
            InvalidInputError: ``frame`` or ``out`` has another shape or dtype.
        """
        p = self.plan
        if (
            frame.shape[:2] != (p.src_h, p.src_w)
            or frame.ndim not in (2, 3)
            or frame.dtype != np.uint8
        ):
            raise InvalidInputError(
                f"framing expects uint8 frames of shape ({p.src_h}, {p.src_w}[, 3]), got "
                f"{frame.dtype} {frame.shape}"
            )
        shape = (p.out_h, p.out_w, *frame.shape[2:])
        if out is None:
            out = np.empty(shape, np.uint8)
        elif out.shape != shape or out.dtype != np.uint8:
            raise InvalidInputError(f"framing output must be uint8 {shape}, got {out.shape}")
        x0, y0, x1, y1 = self._rect
        under: list[tuple[tuple[slice, slice], np.ndarray, np.ndarray]] = []
        if self._bands:
            for band, fill in zip(self._bands, self._fill_bands(frame), strict=True):
                bx0, by0, bx1, by1 = band
                out[by0:by1, bx0:bx1] = fill
            f = self._feather
            ramp = (np.arange(f, dtype=np.float32) + 0.5) / max(f, 1)
            rows = ramp.reshape(-1, 1, *(1,) * (frame.ndim - 2))
            cols = ramp.reshape(1, -1, *(1,) * (frame.ndim - 2))
            seams = [
                (y0 > 0, np.s_[y0 : y0 + f, x0:x1], rows),
                (y1 < p.out_h, np.s_[y1 - f : y1, x0:x1], rows[::-1]),
                (x0 > 0, np.s_[y0:y1, x0 : x0 + f], cols),
                (x1 < p.out_w, np.s_[y0:y1, x1 - f : x1], cols[:, ::-1]),
            ]
            under = [(sl, out[sl].copy(), w) for on, sl, w in seams if on and f > 0]
        if x1 > x0 and y1 > y0:
            out[y0:y1, x0:x1] = self._foreground(frame)
        for sl, fill, w in under:  # feather: the picture fades into the fill at each seam
            out[sl] = (out[sl] * w + fill * (1 - w) + 0.5).astype(np.uint8)
        return out


def pan_zoom_frame(
    image: np.ndarray,
    out_w: int,
    out_h: int,
    progress: float,
    *,
    zoom: float = 1.12,
    drift: tuple[float, float] = (0.04, -0.03),
    out: np.ndarray | None = None,
) -> np.ndarray:
    """One frame of a slow pan-and-zoom ("Ken Burns") over a still image, cover-framed.

    The geometry scales with the sizes, so the planes of an I420 picture (chroma at half
    size) framed separately stay aligned.

    Args:
        image: (h, w, 3) uint8 RGB or one (h, w) uint8 plane.
        out_w: output width, pixels.
        out_h: output height, pixels.
        progress: 0 at the start of the shot, 1 at its end.
        zoom: scale at ``progress`` 1 relative to cover scale at 0.
        drift: pan over the shot as a fraction of the output size (x, y).
        out: where to write (out_h, out_w[, 3]) (a view is fine); default a new array.

    Returns:
        (out_h, out_w[, 3]) uint8.
    """
    h, w = image.shape[:2]
    p = min(1.0, max(0.0, progress))
    ease = p * p * (3 - 2 * p)  # smoothstep: no jolt at either end
    s = max(out_w / w, out_h / h) * (1 + (zoom - 1) * ease)
    cx = out_w / 2 + drift[0] * out_w * (ease - 0.5)
    cy = out_h / 2 + drift[1] * out_h * (ease - 0.5)
    ox = _clamp_offset(cx - s * w / 2, s * w, out_w)
    oy = _clamp_offset(cy - s * h / 2, s * h, out_h)
    pre = min(1.0, max(out_w / w, out_h / h))
    if pre < 1:  # area-average a large image first: warpAffine alone would alias
        image = cv2.resize(
            image, (max(1, round(w * pre)), max(1, round(h * pre))), interpolation=cv2.INTER_AREA
        )
        s = s * w / image.shape[1]
    matrix = np.array([[s, 0.0, ox], [0.0, s, oy]], np.float64)
    if out is None:
        out = np.empty((out_h, out_w, *image.shape[2:]), np.uint8)
    cv2.warpAffine(
        image, matrix, (out_w, out_h), dst=out, flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    return out
