"""Following a face through a video: per-frame boxes, face / no-face segments, smoothing.

:class:`FaceTracker` finds the main face's box in each frame with the MediaPipe Face
Landmarker, searching near the previous face first and, when there is none, over the whole
frame and then overlapping square tiles (the landmarker's short-range detector misses faces
under ~10 % of a 16:9 frame's width). :func:`segment_faces` groups detections into face and
no-face segments with hysteresis; :func:`smooth_boxes` fills the gaps and smooths the boxes
over 5 frames, as the Wav2Lip reference inference does.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from avgen_dagster.media.faces import FaceLandmarker, default_landmarker

__all__ = ["FaceSegment", "FaceTracker", "segment_faces", "smooth_boxes"]


@dataclass(frozen=True)
class FaceSegment:
    """A run of source frames ``[start, stop)`` that all have a face (``face``) or none."""

    start: int
    stop: int
    face: bool

    @property
    def length(self) -> int:
        """Number of frames."""
        return self.stop - self.start


class FaceTracker:
    """Per-frame face box from MediaPipe landmarks, searched near the previous face first.

    Args:
        landmarker: default the shared :func:`~avgen_dagster.media.faces.default_landmarker`.
        roi_scale: side of the tracking region, in units of the previous box's larger side.
        roi_side: the tracking region is resized to at most this many px before detection.

    ``detect`` is stateful (it remembers the last face); call :meth:`reset` between videos.
    """

    def __init__(
        self,
        landmarker: FaceLandmarker | None = None,
        *,
        roi_scale: float = 2.4,
        roi_side: int = 320,
    ) -> None:
        self._landmarker = landmarker
        self.roi_scale = float(roi_scale)
        self.roi_side = int(roi_side)
        self._last: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the last face (the next frame is searched in full)."""
        self._last = None

    def _detect_in(
        self, frame: np.ndarray, x0: int, y0: int, x1: int, y1: int, side: int
    ) -> np.ndarray | None:
        crop = frame[y0:y1, x0:x1]
        s = min(1.0, side / max(crop.shape[:2]))
        if s < 1.0:
            crop = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        lm = (self._landmarker or default_landmarker()).detect(np.ascontiguousarray(crop))
        if lm is None:
            return None
        b = np.asarray(lm.bbox, dtype=np.float64) / s
        return b + np.array([x0, y0, x0, y0], dtype=np.float64)

    def detect(self, frame_rgb: np.ndarray) -> np.ndarray | None:
        """Face box of the main face, or ``None``.

        Args:
            frame_rgb: (H, W, 3) uint8 RGB.

        Returns:
            (4,) float64 (x0, y0, x1, y1) px: the landmarks' bounding box (forehead to chin).
        """
        h, w = frame_rgb.shape[:2]
        box = None
        if self._last is not None:
            cx, cy = 0.5 * (self._last[0] + self._last[2]), 0.5 * (self._last[1] + self._last[3])
            half = (
                0.5
                * self.roi_scale
                * max(self._last[2] - self._last[0], self._last[3] - self._last[1])
            )
            x0, x1 = max(0, int(cx - half)), min(w, int(cx + half) + 1)
            y0, y1 = max(0, int(cy - half)), min(h, int(cy + half) + 1)
            if x1 - x0 >= 16 and y1 - y0 >= 16:
                box = self._detect_in(frame_rgb, x0, y0, x1, y1, self.roi_side)
        if box is None:
            box = self._detect_in(frame_rgb, 0, 0, w, h, 640)
        if box is None and max(h, w) > 1.2 * min(h, w):
            side = min(h, w)
            n = math.ceil(max(h, w) / side) + 1
            for k in range(n):
                off = round(k * (max(h, w) - side) / (n - 1))
                x0, y0 = (off, 0) if w > h else (0, off)
                box = self._detect_in(frame_rgb, x0, y0, x0 + side, y0 + side, 384)
                if box is not None:
                    break
        self._last = box
        return box


def segment_faces(
    detected: np.ndarray, *, max_gap: int = 4, min_face_frames: int = 6
) -> list[FaceSegment]:
    """Group per-frame detections into alternating face / no-face segments (hysteresis).

    1. No-face runs of at most ``max_gap`` frames between two detections become face (a
       face segment ends only after ``max_gap + 1`` consecutive misses: detector dropouts
       and blinks of the detector do not split it).
    2. Face runs shorter than ``min_face_frames`` become no-face (a face segment starts only
       on a stable detection).

    Args:
        detected: (N,) bool, a face was found in frame i.

    Returns:
        Segments covering ``[0, N)`` in order, adjacent ones of opposite kind.
    """
    d = np.asarray(detected, dtype=bool).copy()
    n = d.size
    if n == 0:
        return []

    def runs(x: np.ndarray) -> list[tuple[int, int, bool]]:
        edges = np.flatnonzero(np.diff(x.astype(np.int8))) + 1
        bounds = [0, *edges.tolist(), x.size]
        return [(a, b, bool(x[a])) for a, b in itertools.pairwise(bounds)]

    for a, b, face in runs(d):
        if not face and a > 0 and b < n and b - a <= max_gap:
            d[a:b] = True
    for a, b, face in runs(d):
        if face and b - a < min_face_frames:
            d[a:b] = False
    return [FaceSegment(a, b, face) for a, b, face in runs(d)]


def smooth_boxes(boxes: np.ndarray, segments: list[FaceSegment], window: int = 5) -> np.ndarray:
    """Face boxes for every face-segment frame: gaps interpolated, then smoothed.

    Args:
        boxes: (N, 4) float raw boxes, NaN rows where nothing was detected.
        segments: from :func:`segment_faces`.
        window: centred moving-average length in frames (edges clamped to the segment).

    Returns:
        (N, 4) float64: finite in face segments, NaN elsewhere.
    """
    raw = np.asarray(boxes, dtype=np.float64)
    out = np.full_like(raw, np.nan)
    for seg in segments:
        if not seg.face:
            continue
        b = raw[seg.start : seg.stop].copy()
        ok = np.isfinite(b).all(axis=1)
        if not ok.any():
            continue
        t = np.arange(b.shape[0])
        for c in range(4):
            b[:, c] = np.interp(t, t[ok], b[ok, c])
        if window > 1 and b.shape[0] > 1:
            half = window // 2
            padded = np.pad(b, ((half, window - 1 - half), (0, 0)), mode="edge")
            kernel = np.ones(window) / window
            b = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(4)], 1)
        out[seg.start : seg.stop] = b
    return out
