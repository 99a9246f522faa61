"""Linear video cross-fades between consecutive clips, blending only the overlapping frames.

Shared by the talking-head stitch and the music video. Transition frame ``j`` of a
``D``-frame cross-fade takes ``(j + 1) / (D + 1)`` of the incoming clip (the same linear
"fade" as FFmpeg's ``xfade=transition=fade``), blended in 8-bit fixed point on yuv420p
planes. Blending here instead of in ``xfade`` matters for speed: ``xfade`` costs ~0.4 ms
for every frame of its inputs, transition or not (measured with FFmpeg 8.1 at 512x512), ~15 %
of a veryfast encode.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Sequence

import av
import numpy as np

__all__ = ["CrossfadeJoiner", "cumulative_round"]


def cumulative_round(steps: Sequence[float]) -> list[int]:
    """Whole numbers adding up like ``steps`` do: ``R(s_1 + ... + s_k) - R(s_1 + ... +
    s_{k-1})`` with ``R(x) = floor(x + 1/2)`` (no drift however many steps)."""
    edges = [math.floor(x + 0.5) for x in itertools.accumulate(steps, initial=0.0)]
    return [b - a for a, b in itertools.pairwise(edges)]


def _blend(a: av.VideoFrame, b: av.VideoFrame, weight: int) -> av.VideoFrame:
    """``(a * (256 - weight) + b * weight) / 256`` on yuv420p planes (weight in 0..256)."""
    xa = a.to_ndarray(format="yuv420p").astype(np.uint16)
    xb = b.to_ndarray(format="yuv420p").astype(np.uint16)
    mixed = (xa * (256 - weight) + xb * weight + 128) >> 8
    return av.VideoFrame.from_ndarray(mixed.astype(np.uint8), format="yuv420p")


class CrossfadeJoiner:
    """Emit segment frames in order, cross-fading the last ``D_k`` frames of segment ``k``
    with the first ``D_k`` frames of segment ``k + 1`` (linear "fade" like ``xfade``).

    Transition frame ``j`` of ``D`` takes ``(j + 1) / (D + 1)`` of the incoming segment, so
    every transition frame is a real mix. Only the ``D_k`` tail frames are held (by
    reference), everything else passes straight on.

    Args:
        crossfades: ``D_k`` frames of each join (``n - 1`` values; empty for hard cuts).
        emit: receives every output frame (yuv420p ``av.VideoFrame``, all the same size),
            in order.

    Use: for each segment ``k`` in order, :meth:`start_segment` (k), :meth:`add` each of
    its frames, then :meth:`end_segment`.
    """

    def __init__(self, crossfades: Sequence[int], emit: Callable[[av.VideoFrame], None]) -> None:
        self._xfs = list(crossfades)
        self._emit = emit
        self._prev_tail: list[av.VideoFrame] = []
        self._hold: deque[av.VideoFrame] = deque()
        self._d_in = self._d_out = self._i = 0

    def start_segment(self, k: int) -> None:
        """Begin segment ``k`` (0-based; segments must come in order)."""
        self._d_in = self._xfs[k - 1] if 0 < k <= len(self._xfs) else 0
        self._d_out = self._xfs[k] if k < len(self._xfs) else 0
        self._hold = deque()
        self._i = 0

    def add(self, frame: av.VideoFrame) -> None:
        """Take the next frame of the current segment."""
        i = self._i
        self._i += 1
        if i < self._d_in and i < len(self._prev_tail):
            weight = round(256 * (i + 1) / (self._d_in + 1))
            self._emit(_blend(self._prev_tail[i], frame, weight))
            return
        self._hold.append(frame)
        if len(self._hold) > self._d_out:
            self._emit(self._hold.popleft())

    def end_segment(self) -> None:
        """End the current segment (its tail waits for the next one's head)."""
        if self._d_out == 0:
            while self._hold:
                self._emit(self._hold.popleft())
        self._prev_tail = list(self._hold)
        self._hold = deque()
