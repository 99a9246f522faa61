"""B-roll for the final cut: when to cut away (sentence boundaries) and the cutaway pictures.

Schedule: the boundary between two sentences is the middle of the pause between the last
word of one and the first word of the next, on a frame. Sentences ``n-1, 2n-1, …`` (every
Nth, 0-based) are covered by a cutaway from their leading boundary to their trailing one,
except the first and the last sentence (the first and the last shot are the speaker); a
cutaway longer than ``max_s`` cuts back at the pause between two words closest before
``start + max_s``; cutaways shorter than ``min_s`` are dropped. Sources are used in turn.

Pictures: a video clip is decoded as it is shown, framed to cover the output (uniform
scale, centred crop), played at its own frame rate on the output's clock and looped if the
cutaway is longer; a still image gets a slow pan-and-zoom
(:func:`avgen_dagster.media.framing.pan_zoom_frame`) whose direction alternates per cutaway.

Frames are RGB ``uint8`` ``(H, W, 3)``; times in seconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av
import numpy as np

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.media import i420
from avgen_dagster.media.captions import Sentence
from avgen_dagster.media.faces import load_image_rgb
from avgen_dagster.media.framing import Framer, pan_zoom_frame, plan_framing
from avgen_dagster.media.i420 import Planes
from avgen_dagster.media.words import WordTiming

__all__ = [
    "IMAGE_SUFFIXES",
    "BrollSource",
    "Cutaway",
    "open_broll",
    "schedule_cutaways",
]

#: File suffixes treated as still images (pan-and-zoom); anything else is decoded as video.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})


@dataclass(frozen=True)
class Cutaway:
    """One b-roll span of the final cut.

    Attributes:
        start_s: cut to the b-roll, s (on a frame boundary).
        end_s: cut back to the speaker, s (on a frame boundary).
        source: the b-roll file shown.
        sentence: index of the sentence it covers.
    """

    start_s: float
    end_s: float
    source: Path
    sentence: int

    @property
    def duration_s(self) -> float:
        """``end_s - start_s``, s."""
        return self.end_s - self.start_s


def _on_frame(t: float, fps: float) -> float:
    return round(t * fps) / fps


def _cut_back(words: Sequence[WordTiming], start: float, end: float, max_s: float) -> float:
    """``end``, or the pause between words closest before ``start + max_s``."""
    if end - start <= max_s:
        return end
    limit = start + max_s
    best = start
    for a, b in itertools.pairwise(words):
        mid = (a.end_s + b.start_s) / 2
        if start < mid <= limit:
            best = mid
    return best


def schedule_cutaways(
    sentences: Sequence[Sentence],
    words: Sequence[WordTiming],
    sources: Sequence[Path],
    *,
    fps: float,
    duration_s: float,
    every_n: int = 2,
    min_s: float = 1.2,
    max_s: float = 6.0,
) -> list[Cutaway]:
    """Plan the cutaways (module docstring).

    Args:
        sentences: the narration's sentences in order.
        words: its words (for cutting back between words).
        sources: b-roll files, used in turn; none gives no cutaways.
        fps: output frame rate (boundaries are put on frames).
        duration_s: the narration's length, s.
        every_n: cut away on every Nth sentence (1 = every inner sentence).
        min_s: shortest cutaway kept, s.
        max_s: longest cutaway, s.

    Returns:
        The cutaways in time order, never overlapping, never on the first or last sentence.

    Raises:
        InvalidInputError: ``every_n`` < 1.
    """
    if every_n < 1:
        raise InvalidInputError(f"every_n must be at least 1, got {every_n}")
    if not sources or len(sentences) < 3:
        return []

    def boundary(k: int) -> float:  # start of sentence k
        if k <= 0:
            return 0.0
        if k >= len(sentences):
            return duration_s
        return (sentences[k - 1].end_s + sentences[k].start_s) / 2

    out: list[Cutaway] = []
    for k in range(1, len(sentences) - 1):
        if (k + 1) % every_n:
            continue
        start = _on_frame(boundary(k), fps)
        end = _cut_back(words, start, boundary(k + 1), max_s)
        end = _on_frame(end, fps)
        if end - start >= min_s:
            out.append(Cutaway(start, end, sources[len(out) % len(sources)], k))
    return out


class BrollSource(Protocol):
    """Pictures of one cutaway."""

    def frame(self, t_s: float, progress: float) -> np.ndarray:
        """The RGB picture ``t_s`` seconds into the cutaway (``progress`` 0..1 through it)."""
        ...

    def frame_i420(self, t_s: float, progress: float, out: Planes) -> None:
        """The same picture written into the planes of an I420 output picture."""
        ...

    def close(self) -> None:
        """Release the decoder (idempotent)."""
        ...


class _ImageBroll:
    """A still image with a slow pan-and-zoom."""

    def __init__(self, path: Path, width: int, height: int, variant: int) -> None:
        image = load_image_rgb(path)
        h, w = image.shape[:2]
        self.image = np.ascontiguousarray(image[: h // 2 * 2, : w // 2 * 2])
        self.planes = i420.planes(i420.from_rgb(self.image))
        self.size = (width, height)
        self.drift = (0.04, -0.03) if variant % 2 == 0 else (-0.04, 0.03)

    def frame(self, t_s: float, progress: float) -> np.ndarray:
        return pan_zoom_frame(self.image, *self.size, progress, drift=self.drift)

    def frame_i420(self, t_s: float, progress: float, out: Planes) -> None:
        i420.pan_zoom_i420(self.planes, out, progress, drift=self.drift)

    def close(self) -> None:
        return None


class _ClipBroll:
    """A video clip decoded on demand, cover-framed, looped."""

    def __init__(self, path: Path, width: int, height: int) -> None:
        self.path, self.size = path, (width, height)
        self._framers: tuple[Framer, i420.I420Framer] | None = None
        self._frames: Iterator[tuple[float, av.VideoFrame]] | None = None
        self._container: av.container.InputContainer | None = None
        self._period = 1 / 25
        self._offset = 0.0
        self._last: tuple[float, av.VideoFrame] | None = None
        self._next: tuple[float, av.VideoFrame] | None = None
        self._open()
        if self._next is None:
            raise InvalidInputError(f"b-roll clip {path.name} has no video frames")

    def _open(self) -> None:
        """(Re)open the clip; ``_next`` becomes its first frame (clip time, frame)."""
        self.close()
        try:
            self._container = av.open(str(self.path))
            stream = self._container.streams.video[0]
        except (av.FFmpegError, IndexError) as exc:
            raise InvalidInputError(f"b-roll clip {self.path.name} cannot be read: {exc}") from exc
        rate = stream.average_rate or stream.guessed_rate
        self._period = 1 / float(rate) if rate else 1 / 25
        base = stream.start_time or 0
        container = self._container

        def gen() -> Iterator[tuple[float, av.VideoFrame]]:
            for f in container.decode(stream):
                t = float((f.pts - base) * stream.time_base) if f.pts is not None else 0.0
                yield t, f

        self._frames = gen()
        self._next = next(self._frames, None)

    def _fitters(self, frame: av.VideoFrame) -> tuple[Framer, i420.I420Framer]:
        if self._framers is None:
            w, h = frame.width // 2 * 2, frame.height // 2 * 2
            plan = plan_framing(w, h, *self.size, fit="cover")
            self._framers = (Framer(plan), i420.I420Framer(plan))
        return self._framers

    def _current(self, t_s: float) -> av.VideoFrame:
        while True:
            if self._next is None:  # the clip ended: play it again from one period later
                end = (self._last[0] if self._last else self._offset) + self._period
                self._open()
                self._offset = end
            assert self._next is not None and self._frames is not None
            if self._next[0] + self._offset > t_s + 1e-6:
                break
            self._last = (self._next[0] + self._offset, self._next[1])
            self._next = next(self._frames, None)
        return self._last[1] if self._last is not None else self._next[1]

    def frame(self, t_s: float, progress: float) -> np.ndarray:
        picture = self._current(t_s)
        framer = self._fitters(picture)[0]
        rgb = picture.to_ndarray(format="rgb24")
        return framer.apply(np.ascontiguousarray(rgb[: framer.plan.src_h, : framer.plan.src_w]))

    def frame_i420(self, t_s: float, progress: float, out: Planes) -> None:
        picture = self._current(t_s)
        framer = self._fitters(picture)[1]
        p = framer.plan
        y, u, v = i420.frame_planes(picture)
        hw, hh = p.src_w // 2, p.src_h // 2
        framer.apply((y[: p.src_h, : p.src_w], u[:hh, :hw], v[:hh, :hw]), out)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


def open_broll(path: Path, width: int, height: int, *, variant: int = 0) -> BrollSource:
    """The pictures of a b-roll file at ``width``×``height`` (module docstring).

    Args:
        path: a still image (:data:`IMAGE_SUFFIXES`) or a video clip.
        width: output width, pixels.
        height: output height, pixels.
        variant: cutaway number (alternates the pan direction of images).

    Raises:
        InvalidInputError: the file is missing or unreadable, or a clip has no frames.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"b-roll file not found: {path}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _ImageBroll(path, width, height, variant)
    return _ClipBroll(path, width, height)
