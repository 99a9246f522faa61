"""I420 (planar YUV 4:2:0, what H.264 encodes) pictures for compositing without RGB round trips.

A picture of ``W``×``H`` (both even) is one ``uint8`` buffer of shape ``(H * 3 // 2, W)``:
the Y plane ``(H, W)``, then U and V ``(H // 2, W // 2)`` each, as FFmpeg's ``yuv420p``
and OpenCV's ``COLOR_RGB2YUV_I420`` lay it out (ITU-R BT.601, limited range: the same values
as FFmpeg's default ``rgb24 -> yuv420p`` conversion). Framing, pan-and-zoom and captions
work plane by plane (chroma with the geometry halved), which moves half the bytes of RGB
and skips the per-frame colour conversion of the whole picture.
"""

from __future__ import annotations

from dataclasses import replace

import av
import cv2
import numpy as np

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.media.framing import Framer, FramingPlan, pan_zoom_frame

__all__ = [
    "WHITE",
    "I420Framer",
    "Planes",
    "frame_planes",
    "from_rgb",
    "new_frame",
    "new_picture",
    "pan_zoom_i420",
    "planes",
    "to_video_frame",
]

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]
#: BT.601 limited-range white (Y, U, V).
WHITE = (235, 128, 128)
_BLACK = (16.0, 128.0, 128.0)


def _check_even(width: int, height: int) -> None:
    if width % 2 or height % 2 or width <= 0 or height <= 0:
        raise InvalidInputError(f"I420 pictures need even sides, got {width}x{height}")


def new_picture(width: int, height: int) -> np.ndarray:
    """An uninitialised I420 buffer ``(height * 3 // 2, width)`` uint8.

    Raises:
        InvalidInputError: odd or non-positive sides.
    """
    _check_even(width, height)
    return np.empty((height * 3 // 2, width), np.uint8)


def new_frame(width: int, height: int) -> tuple[av.VideoFrame, Planes]:
    """A new yuv420p ``VideoFrame`` and writable views of its planes (padded rows: the views
    are strided, which OpenCV and numpy accept): compose straight into the encoder's frame.

    Raises:
        InvalidInputError: odd or non-positive sides.
    """
    _check_even(width, height)
    frame = av.VideoFrame(width, height, "yuv420p")
    views = []
    for plane in frame.planes:
        flat = np.frombuffer(plane, np.uint8)
        views.append(flat.reshape(plane.height, plane.line_size)[:, : plane.width])
    return frame, (views[0], views[1], views[2])


def planes(buffer: np.ndarray) -> Planes:
    """Views ``(Y, U, V)`` into a contiguous I420 buffer of shape ``(H * 3 // 2, W)``.

    The planes follow each other in memory (Y: H×W bytes, then U and V: H/2×W/2 each), so
    U and V need not start on a row of the buffer (when H is not a multiple of 4).
    """
    h, w = buffer.shape[0] * 2 // 3, buffer.shape[1]
    flat = buffer.reshape(-1)
    n, c = h * w, (h // 2) * (w // 2)
    u = flat[n : n + c].reshape(h // 2, w // 2)
    v = flat[n + c : n + 2 * c].reshape(h // 2, w // 2)
    return flat[:n].reshape(h, w), u, v


def from_rgb(rgb: np.ndarray) -> np.ndarray:
    """An RGB uint8 ``(H, W, 3)`` picture (even sides) as an I420 buffer."""
    _check_even(rgb.shape[1], rgb.shape[0])
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)


def frame_planes(frame: av.VideoFrame) -> Planes:
    """The ``(Y, U, V)`` planes of a decoded frame (converted to yuv420p when it is not)."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    return planes(frame.to_ndarray())


def to_video_frame(buffer: np.ndarray) -> av.VideoFrame:
    """An I420 buffer as a yuv420p ``VideoFrame`` (for the encoder)."""
    return av.VideoFrame.from_ndarray(buffer, format="yuv420p")


def _half(plan: FramingPlan) -> FramingPlan:
    return replace(
        plan,
        src_w=plan.src_w // 2,
        src_h=plan.src_h // 2,
        out_w=plan.out_w // 2,
        out_h=plan.out_h // 2,
        offset_x=plan.offset_x / 2,
        offset_y=plan.offset_y / 2,
        eye_y_out=None if plan.eye_y_out is None else plan.eye_y_out / 2,
    )


class I420Framer:
    """A :class:`~avgen_dagster.media.framing.Framer` for I420 pictures (even sizes).

    Args:
        plan: the geometry (source and output sides even).
        **settings: passed to each plane's ``Framer`` (fill, fill_dim, blur_frac,
            feather_frac); the fill dims towards black (Y 16, U/V 128).

    Raises:
        InvalidInputError: odd sizes or bad settings.
    """

    def __init__(self, plan: FramingPlan, **settings: object) -> None:
        _check_even(plan.src_w, plan.src_h)
        _check_even(plan.out_w, plan.out_h)
        self.plan = plan
        self.luma = Framer(plan, fill_offset=_BLACK[0], **settings)  # type: ignore[arg-type]
        chroma = dict(settings, fill=self.luma.fill_mode)
        self.chroma = Framer(_half(plan), fill_offset=_BLACK[1], **chroma)  # type: ignore[arg-type]

    def apply(self, source: Planes, out: Planes) -> None:
        """Frame the source planes into ``out`` (views of an output I420 buffer)."""
        self.luma.apply(source[0], out[0])
        self.chroma.apply(source[1], out[1])
        self.chroma.apply(source[2], out[2])


def pan_zoom_i420(source: Planes, out: Planes, progress: float, **motion: object) -> None:
    """:func:`~avgen_dagster.media.framing.pan_zoom_frame` on each plane of an I420 picture.

    Args:
        source: the still's planes (even sides).
        out: the output picture's planes.
        progress: 0..1 through the shot.
        **motion: ``zoom`` and ``drift``, as for ``pan_zoom_frame``.
    """
    for src, dst in zip(source, out, strict=True):
        pan_zoom_frame(src, dst.shape[1], dst.shape[0], progress, out=dst, **motion)  # type: ignore[arg-type]
