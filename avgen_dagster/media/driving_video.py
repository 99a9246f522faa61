"""Driving-video input: face / no-face segments, loop / ping-pong / trim, streaming render.

A driving video is a clip of a person that is lip-synced to new audio instead of animating a
still portrait. Two streaming passes over the file:

1. **Scan** (:func:`scan_driving_video`): every frame is decoded (scaled down to at most
   960 px on its long side) and its face found by :class:`FaceTracker` (MediaPipe Face
   Landmarker, tracked in a region around the previous face; a full-frame search over
   overlapping square tiles when there is none, because the landmarker's short-range
   detector misses faces under ~10 % of a 16:9 frame's width;
   :mod:`avgen_dagster.media.face_track`). Only per-frame metadata is
   kept, in numpy arrays (int64 timestamp, float64 box, bool flag: 41 bytes per frame,
   0.3 MB for 5 minutes at 25 fps; no Python object per frame). Frames are then grouped
   into face and no-face segments with hysteresis (:func:`segment_faces`: a face segment
   ends only after more than ``max_gap`` missed frames; a face run shorter than
   ``min_face_frames`` is not a face segment), boxes are interpolated over the filled gaps
   and smoothed over 5 frames (centred moving average, as the Wav2Lip reference smooths
   its boxes).
2. **Render** (:func:`iter_driving_frames`, :func:`render_driving_video`): the output has
   ``round(audio duration · fps)`` frames at the driving video's own frame rate; output
   frame j shows source frame :func:`source_indices` (loop, ping-pong or trim, the last
   frame held when a trimmed video is shorter than the audio). Frames are decoded,
   processed and encoded ``chunk_frames`` at a time: face-segment frames go through the
   ``process`` callback (the lip-sync), no-face frames pass through unchanged; every output
   index is yielded exactly once, so no frame is lost or duplicated, and a frame without a
   face never aborts. Memory is bounded by the chunk, not the video's length.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from avgen_dagster.errors import InvalidInputError, MediaError
from avgen_dagster.media.audio_io import check_sample_rate, require_mono_audio
from avgen_dagster.media.decode import open_media
from avgen_dagster.media.face_track import FaceSegment, FaceTracker, segment_faces, smooth_boxes
from avgen_dagster.media.video_io import encode_segment_mp4, fps_fraction

__all__ = [
    "LOOP_MODES",
    "DrivingVideoResult",
    "DrivingVideoScan",
    "FrameProcessor",
    "LoopMode",
    "iter_driving_frames",
    "render_driving_video",
    "scan_driving_video",
    "source_indices",
]

LoopMode = Literal["loop", "pingpong", "trim"]
LOOP_MODES: tuple[str, ...] = ("loop", "pingpong", "trim")

#: ``process(frames, boxes, out_indices) -> frames``: lip-syncs face-segment frames.
#: frames: k RGB uint8 (H, W, 3) arrays (must not be modified; the same array may appear
#: twice); boxes: (k, 4) float64 smoothed face boxes (x0, y0, x1, y1) px; out_indices: (k,)
#: int64 output frame indices (to pick each frame's audio window). Returns k new frames.
FrameProcessor = Callable[[list[np.ndarray], np.ndarray, np.ndarray], list[np.ndarray]]


def source_indices(out_idx: np.ndarray, n_src: int, mode: LoopMode) -> np.ndarray:
    """Source frame shown at each output frame index.

    * ``loop``: ``j mod N`` (0 1 2 0 1 2 ...).
    * ``pingpong``: forwards then backwards without repeating the end frames
      (0 1 2 1 0 1 2 ..., period 2N − 2).
    * ``trim``: ``min(j, N − 1)``: the video is cut at the audio's end; if it is shorter than
      the audio its last frame is held.

    Args:
        out_idx: int array of output frame indices (>= 0).
        n_src: N, source frames (>= 1).
        mode: one of :data:`LOOP_MODES`.

    Returns:
        int64 array like ``out_idx``.

    Raises:
        InvalidInputError: unknown mode or N < 1.
    """
    j = np.asarray(out_idx, dtype=np.int64)
    if n_src < 1:
        raise InvalidInputError("the driving video has no frames")
    if mode == "loop":
        return j % n_src
    if mode == "pingpong":
        if n_src == 1:
            return np.zeros_like(j)
        period = 2 * n_src - 2
        k = j % period
        return np.where(k < n_src, k, period - k)
    if mode == "trim":
        return np.minimum(j, n_src - 1)
    raise InvalidInputError(f"unknown loop mode {mode!r}; use one of {', '.join(LOOP_MODES)}")


@dataclass
class DrivingVideoScan:
    """Per-frame face metadata of a driving video (no pixels kept).

    Attributes:
        path: the video file.
        fps: frame rate (exact fraction, e.g. 30000/1001).
        width, height: frame size, px.
        n_frames: frames decoded (N).
        pts: (N,) int64 presentation timestamps in the stream's time base, or ``None`` when
            the container gives none (then seeking reopens and decodes from the start).
        detected: (N,) bool raw detections.
        boxes: (N, 4) float64 smoothed face boxes (x0, y0, x1, y1) px, NaN outside face
            segments.
        segments: face / no-face segments covering ``[0, N)``.
        detect_s: seconds spent in face detection (all frames).
    """

    path: Path
    fps: Fraction
    width: int
    height: int
    n_frames: int
    pts: np.ndarray | None
    detected: np.ndarray
    boxes: np.ndarray
    segments: list[FaceSegment] = field(default_factory=list)
    detect_s: float = 0.0

    @property
    def face_frames(self) -> np.ndarray:
        """(N,) bool: frame i lies in a face segment."""
        mask = np.zeros(self.n_frames, dtype=bool)
        for seg in self.segments:
            if seg.face:
                mask[seg.start : seg.stop] = True
        return mask


def _open_video(path: Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    container = open_media(path, "driving video")
    if not container.streams.video:
        container.close()
        raise MediaError(f"{path} has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def scan_driving_video(
    path: Path | str,
    *,
    tracker: FaceTracker | None = None,
    max_gap: int = 4,
    min_face_frames: int = 6,
    smooth_frames: int = 5,
    detect_max_side: int = 960,
) -> DrivingVideoScan:
    """Pass 1: decode every frame, find its face, build the face / no-face segments.

    Args:
        path: the driving video (any container/codec FFmpeg reads).
        tracker: face finder; default a new :class:`FaceTracker` on the shared landmarker.
        max_gap, min_face_frames: hysteresis of :func:`segment_faces`, frames.
        smooth_frames: box smoothing window (:func:`smooth_boxes`), frames.
        detect_max_side: frames are scaled to at most this many px (long side) for detection.

    Returns:
        :class:`DrivingVideoScan`.

    Raises:
        MediaError: missing/unreadable file, no video stream, no frames, decode error.
    """
    path = Path(path)
    tracker = tracker or FaceTracker()
    tracker.reset()
    container, stream = _open_video(path)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        container.close()
        raise MediaError(f"{path}: cannot tell the frame rate")
    fps = fps_fraction(Fraction(rate.numerator, rate.denominator))
    boxes, pts_arr, (width, height), detect_s = _detect_every_frame(
        path, container, stream, tracker, detect_max_side
    )
    n = boxes.shape[0]
    detected = np.isfinite(boxes).all(axis=1)
    segments = segment_faces(detected, max_gap=max_gap, min_face_frames=min_face_frames)
    return DrivingVideoScan(
        path=path,
        fps=fps,
        width=width,
        height=height,
        n_frames=n,
        pts=pts_arr,
        detected=detected,
        boxes=smooth_boxes(boxes, segments, smooth_frames),
        segments=segments,
        detect_s=detect_s,
    )


def _detect_every_frame(
    path: Path,
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    tracker: FaceTracker,
    detect_max_side: int,
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int], float]:
    """Decode every frame (scaled to ``detect_max_side``) and find its face.

    Per-frame state lives in preallocated numpy arrays (40 bytes a frame), grown by
    doubling: no Python object per frame.

    Returns:
        ``(boxes, pts, (width, height), detect_s)``: (N, 4) float64 raw boxes in source px
        (NaN rows: no face), owned; (N,) int64 time stamps, or ``None`` when some are missing
        or not increasing (not seekable by time stamp); the frame size; seconds spent
        detecting.

    Raises:
        MediaError: a decode error or no frames.
    """
    cap = max(256, min(int(stream.frames or 0), 1 << 18) + 1)  # header count, if any
    raw = np.full((cap, 4), np.nan)  # (cap, 4) float64 boxes, NaN: no face
    pts = np.zeros(cap, np.int64)
    has_pts = True
    n = width = height = 0
    dw = dh = 2
    scale = np.ones(4)
    detect_s = 0.0
    try:
        with container:
            for frame in container.decode(stream):
                if (frame.width, frame.height) != (width, height):
                    width, height = frame.width, frame.height
                    s = min(1.0, detect_max_side / max(width, height))
                    dw, dh = max(2, round(width * s)), max(2, round(height * s))
                    scale = np.array([width / dw, height / dh, width / dw, height / dh])
                img = frame.to_ndarray(format="rgb24", width=dw, height=dh)
                t0 = time.perf_counter()
                box = tracker.detect(img)
                detect_s += time.perf_counter() - t0
                if n == cap:
                    cap *= 2
                    raw = _grown(raw, cap, np.nan)
                    pts = _grown(pts, cap, 0)
                if box is not None:
                    np.multiply(box, scale, out=raw[n])
                if frame.pts is None:
                    has_pts = False
                else:
                    pts[n] = frame.pts
                n += 1
                del frame, img
    except av.FFmpegError as exc:
        raise MediaError(f"cannot decode driving video {path}: {exc}") from exc
    if n == 0:
        raise MediaError(f"driving video {path} has no frames")
    pts_arr = pts[:n].copy() if has_pts else None
    if pts_arr is not None and pts_arr.size > 1 and not np.all(np.diff(pts_arr) > 0):
        pts_arr = None
    return raw[:n].copy(), pts_arr, (width, height), detect_s


def _grown(a: np.ndarray, cap: int, fill: float) -> np.ndarray:
    """``a`` copied into a new array of ``cap`` rows (same dtype), the new rows ``fill``."""
    out = np.full((cap, *a.shape[1:]), fill, dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


class _FrameReader:
    """Sequential decoder with seeking and a one-range cache (bounded memory)."""

    def __init__(self, path: Path, pts: np.ndarray | None, n_frames: int) -> None:
        self.path, self.pts, self.n = path, pts, n_frames
        self.seeks = 0
        self._container: av.container.InputContainer | None = None
        self._open()
        self._cache_start = 0
        self._cache: list[np.ndarray] = []

    def _open(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._stream = _open_video(self.path)
        self._frames = self._container.decode(self._stream)
        self._next = 0
        self._pending: np.ndarray | None = None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def _decode(self, convert: bool) -> np.ndarray | None:
        if self._pending is not None:
            out, self._pending = self._pending, None
            self._next += 1
            return out
        try:
            frame = next(self._frames)
        except StopIteration:
            raise MediaError(
                f"{self.path} ended at frame {self._next}, expected {self.n} frames"
            ) from None
        except av.FFmpegError as exc:
            raise MediaError(f"cannot decode driving video {self.path}: {exc}") from exc
        self._next += 1
        return frame.to_ndarray(format="rgb24") if convert else None

    def _seek(self, target: int) -> None:
        self.seeks += 1
        if self.pts is None or target == 0:
            self._open()
        else:
            assert self._container is not None
            self._container.seek(int(self.pts[target]), stream=self._stream, backward=True)
            self._frames = self._container.decode(self._stream)
            self._pending = None
            while True:
                try:
                    frame = next(self._frames)
                except StopIteration:
                    raise MediaError(f"seeking in {self.path} failed at frame {target}") from None
                if frame.pts is not None and frame.pts >= self.pts[target]:
                    self._next = target
                    self._pending = frame.to_ndarray(format="rgb24")
                    return
        while self._next < target:
            self._decode(convert=False)

    def read(self, start: int, stop: int) -> list[np.ndarray]:
        """Frames ``[start, stop)`` as RGB uint8 arrays."""
        c0, c1 = self._cache_start, self._cache_start + len(self._cache)
        if c0 <= start and stop <= c1:
            return self._cache[start - c0 : stop - c0]
        if start != self._next:
            if self._next < start <= self._next + 48:
                while self._next < start:
                    self._decode(convert=False)
            else:
                self._seek(start)
        frames = [self._decode(convert=True) for _ in range(start, stop)]
        self._cache_start, self._cache = start, frames  # type: ignore[assignment]
        return frames  # type: ignore[return-value]


def _ranges(src: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous ranges covering the distinct values of ``src``, in order of appearance."""
    uniq = np.unique(src)
    edges = np.flatnonzero(np.diff(uniq) > 1) + 1
    parts = np.split(uniq, edges)
    rng = [(int(p[0]), int(p[-1]) + 1) for p in parts]
    first = {v: k for k, v in reversed(list(enumerate(src.tolist())))}
    return sorted(rng, key=lambda r: min(first.get(v, 1 << 62) for v in range(r[0], r[1])))


def iter_driving_frames(
    scan: DrivingVideoScan,
    n_out: int,
    *,
    mode: LoopMode = "loop",
    process: FrameProcessor | None = None,
    chunk_frames: int = 32,
) -> Iterator[np.ndarray]:
    """Pass 2: yield the ``n_out`` output frames, processing face-segment frames in chunks.

    Args:
        scan: from :func:`scan_driving_video`.
        n_out: output frames (>= 1).
        mode: ``loop``, ``pingpong`` or ``trim`` (:func:`source_indices`).
        process: the lip-sync of face-segment frames (:data:`FrameProcessor`); ``None``
            passes every frame through.
        chunk_frames: output frames per chunk (bounds memory).

    Yields:
        Exactly ``n_out`` (H, W, 3) uint8 RGB frames, in output order.

    Raises:
        InvalidInputError: bad ``n_out``, ``chunk_frames`` or mode.
        MediaError: decode errors.
    """
    if n_out < 1 or chunk_frames < 1:
        raise InvalidInputError(f"n_out and chunk_frames must be >= 1, got {n_out}, {chunk_frames}")
    source_indices(np.zeros(1), scan.n_frames, mode)  # validate the mode up front
    face = scan.face_frames
    reader = _FrameReader(scan.path, scan.pts, scan.n_frames)
    try:
        for s in range(0, n_out, chunk_frames):
            out_idx = np.arange(s, min(n_out, s + chunk_frames), dtype=np.int64)
            src = source_indices(out_idx, scan.n_frames, mode)
            got: dict[int, np.ndarray] = {}
            for a, b in _ranges(src):
                got.update(zip(range(a, b), reader.read(a, b), strict=True))
            frames = [got[i] for i in src.tolist()]
            del got
            sel = np.flatnonzero(face[src])
            if process is not None and sel.size:
                done = process([frames[k] for k in sel], scan.boxes[src[sel]], out_idx[sel])
                if len(done) != sel.size:
                    raise MediaError(f"lip-sync returned {len(done)} frames for {sel.size}")
                for k, f in zip(sel.tolist(), done, strict=True):
                    frames[k] = f
            yield from frames
    finally:
        reader.close()


@dataclass(frozen=True)
class DrivingVideoResult:
    """What :func:`render_driving_video` wrote.

    Attributes:
        output: the MP4.
        fps: its frame rate (the driving video's).
        n_frames: output frames, ``max(1, round(audio duration · fps))``.
        duration_s: ``n_frames / fps``, seconds.
        audio_duration_s: the audio's duration, seconds (|difference| <= half a frame).
        mode: loop mode used.
        source_frames: frames in the driving video.
        segments: face / no-face segments of the driving video (source frame indices).
        face_frames: output frames that were lip-synced.
        detect_s: seconds spent detecting faces.
    """

    output: Path
    fps: Fraction
    n_frames: int
    duration_s: float
    audio_duration_s: float
    mode: str
    source_frames: int
    segments: list[FaceSegment]
    face_frames: int
    detect_s: float


def render_driving_video(
    video_path: Path | str,
    audio: np.ndarray,
    sample_rate: int,
    output: Path | str,
    *,
    process: FrameProcessor | None = None,
    mode: LoopMode = "loop",
    chunk_frames: int = 32,
    crf: int = 18,
    preset: str = "veryfast",
    scan: DrivingVideoScan | None = None,
    tracker: FaceTracker | None = None,
) -> DrivingVideoResult:
    """Scan a driving video, then stream it through ``process`` into an MP4 with ``audio``.

    Args:
        video_path: the driving video.
        audio: (n,) float32 mono, full scale ±1.0, n > 0.
        sample_rate: Hz.
        output: the ``.mp4`` (H.264 + AAC, written atomically by
            :func:`~avgen_dagster.media.video_io.encode_segment_mp4`).
        process: lip-sync of face-segment frames (None: pass-through).
        mode: ``loop``, ``pingpong`` or ``trim``.
        chunk_frames: frames per chunk.
        crf, preset: libx264 settings.
        scan: a scan of ``video_path`` already made (else :func:`scan_driving_video`).
        tracker: face finder for the scan.

    Returns:
        :class:`DrivingVideoResult`.

    Raises:
        InvalidInputError: empty audio, bad rate or mode.
        MediaError: unreadable video, encode failure.
    """
    pcm = require_mono_audio(audio)
    sr = check_sample_rate(sample_rate)
    source_indices(np.zeros(1), 1, mode)
    if scan is None:
        scan = scan_driving_video(video_path, tracker=tracker)
    n_out = max(1, round(Fraction(pcm.size, sr) * scan.fps))
    face = scan.face_frames
    src_all = source_indices(np.arange(n_out), scan.n_frames, mode)
    out = encode_segment_mp4(
        iter_driving_frames(scan, n_out, mode=mode, process=process, chunk_frames=chunk_frames),
        scan.fps,  # type: ignore[arg-type]  # fps_fraction takes a Fraction as is
        pcm,
        sr,
        Path(output),
        crf=crf,
        preset=preset,
    )
    return DrivingVideoResult(
        output=out,
        fps=scan.fps,
        n_frames=n_out,
        duration_s=float(n_out / scan.fps),
        audio_duration_s=pcm.size / sr,
        mode=mode,
        source_frames=scan.n_frames,
        segments=list(scan.segments),
        face_frames=int(face[src_all].sum()),
        detect_s=scan.detect_s,
    )
