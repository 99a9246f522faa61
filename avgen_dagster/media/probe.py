"""Inspect media files: stream parameters, durations, keyframes, MP4 box order (PyAV).

Durations are seconds; rates are Hz / frames per second.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import av

from avgen_dagster.errors import MediaError
from avgen_dagster.media.decode import open_media

__all__ = [
    "AudioStreamInfo",
    "MediaInfo",
    "VideoStreamInfo",
    "is_faststart",
    "keyframe_times",
    "mp4_top_level_boxes",
    "probe_media",
]


@dataclass(frozen=True)
class VideoStreamInfo:
    """First video stream of a file.

    Attributes:
        codec: FFmpeg codec name (``"h264"``).
        width: pixels.
        height: pixels.
        fps: average frame rate, frames per second (0.0 if unknown).
        frames: number of video packets (= frames for H.264 without field coding).
        duration_s: presentation duration, seconds.
        pix_fmt: pixel format (``"yuv420p"``).
    """

    codec: str
    width: int
    height: int
    fps: float
    frames: int
    duration_s: float
    pix_fmt: str


@dataclass(frozen=True)
class AudioStreamInfo:
    """First audio stream of a file.

    Attributes:
        codec: FFmpeg codec name (``"aac"``).
        sample_rate: Hz.
        channels: channel count.
        duration_s: presentation duration, seconds.
    """

    codec: str
    sample_rate: int
    channels: int
    duration_s: float


@dataclass(frozen=True)
class MediaInfo:
    """Summary of a media file.

    Attributes:
        duration_s: container duration, seconds (longest stream if the container has none).
        video: first video stream or None.
        audio: first audio stream or None.
        av_drift_s: ``audio.duration_s - video.duration_s`` in seconds (positive: audio
            longer); 0.0 when either stream is missing.
    """

    duration_s: float
    video: VideoStreamInfo | None
    audio: AudioStreamInfo | None
    av_drift_s: float


def _packet_stats(
    container: av.container.InputContainer, stream: av.stream.Stream
) -> tuple[int, float]:
    """Count packets and measure first-pts..last-(pts+duration) span by demuxing."""
    count, lo, hi = 0, None, None
    for p in container.demux(stream):
        if p.size == 0 or p.pts is None:
            continue
        count += 1
        end = p.pts + (p.duration or 0)
        lo = p.pts if lo is None else min(lo, p.pts)
        hi = end if hi is None else max(hi, end)
    span = float((hi - lo) * stream.time_base) if lo is not None and hi is not None else 0.0
    return count, max(span, 0.0)


def probe_media(path: Path | str) -> MediaInfo:
    """Read stream parameters and durations of a media file.

    Stream durations come from the container header when present (MP4: edit-list aware,
    so AAC priming is excluded), else from demuxed packet timestamps (MPEG-TS). Frame
    counts come from the header (MP4 ``stsz``) or by counting packets.

    Args:
        path: any file FFmpeg can open.

    Returns:
        A :class:`MediaInfo`.

    Raises:
        MediaError: missing, corrupt or unreadable file, or a file with neither video nor
            audio.
    """
    path = Path(path)
    c = open_media(path)
    try:
        with c:
            vs = c.streams.video[0] if c.streams.video else None
            aus = c.streams.audio[0] if c.streams.audio else None
            if vs is None and aus is None:
                raise MediaError(f"{path} has no audio or video stream")
            video = audio = None
            if vs is not None:
                frames = int(vs.frames or 0)
                dur = float(vs.duration * vs.time_base) if vs.duration else 0.0
                if frames <= 0 or dur <= 0:
                    c.seek(0)
                    n_pk, span = _packet_stats(c, vs)
                    frames = frames if frames > 0 else n_pk
                    dur = dur if dur > 0 else span
                rate = vs.average_rate or vs.guessed_rate
                cc = vs.codec_context
                video = VideoStreamInfo(
                    codec=cc.name,
                    width=cc.width,
                    height=cc.height,
                    fps=float(rate) if rate else 0.0,
                    frames=frames,
                    duration_s=dur,
                    pix_fmt=cc.pix_fmt or "",
                )
            if aus is not None:
                dur = float(aus.duration * aus.time_base) if aus.duration else 0.0
                if dur <= 0:
                    c.seek(0)
                    dur = _packet_stats(c, aus)[1]
                cc = aus.codec_context
                audio = AudioStreamInfo(
                    codec=cc.name,
                    sample_rate=int(cc.sample_rate),
                    channels=int(cc.channels),
                    duration_s=dur,
                )
            total = c.duration / av.time_base if c.duration else 0.0
            if total <= 0:
                total = max(video.duration_s if video else 0.0, audio.duration_s if audio else 0.0)
            drift = audio.duration_s - video.duration_s if video and audio else 0.0
            return MediaInfo(duration_s=total, video=video, audio=audio, av_drift_s=drift)
    except av.FFmpegError as exc:
        raise MediaError(f"cannot read media file {path}: {exc}") from exc


def keyframe_times(path: Path | str) -> list[float]:
    """Presentation times (seconds, from the stream start) of the video keyframes.

    Read from packet flags by demuxing (no decode).

    Raises:
        MediaError: missing/corrupt file or no video stream.
    """
    path = Path(path)
    c = open_media(path)
    try:
        with c:
            if not c.streams.video:
                raise MediaError(f"{path} has no video stream")
            vs = c.streams.video[0]
            start = vs.start_time or 0
            return sorted(
                float((p.pts - start) * vs.time_base)
                for p in c.demux(vs)
                if p.is_keyframe and p.pts is not None and p.size
            )
    except av.FFmpegError as exc:
        raise MediaError(f"cannot read media file {path}: {exc}") from exc


def mp4_top_level_boxes(path: Path | str) -> list[tuple[str, int, int]]:
    """Top-level ISO BMFF boxes of an MP4 file (ISO/IEC 14496-12 section 4.2).

    Returns:
        ``[(type, offset, size), ...]`` in file order (size 1 = 64-bit ``largesize``
        follows the type; size 0 = box runs to end of file).

    Raises:
        MediaError: missing file, or a box header that runs past the end (not an MP4).
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"media file not found: {path}")
    boxes: list[tuple[str, int, int]] = []
    file_size = path.stat().st_size
    with path.open("rb") as f:
        offset = 0
        while offset + 8 <= file_size:
            f.seek(offset)
            size, kind = struct.unpack(">I4s", f.read(8))
            if size == 1:
                (size,) = struct.unpack(">Q", f.read(8))
            elif size == 0:
                size = file_size - offset
            name = kind.decode("latin-1")
            if size < 8 or offset + size > file_size or not name.isprintable():
                raise MediaError(f"{path} is not a valid MP4: bad box {name!r} at byte {offset}")
            boxes.append((name, offset, size))
            offset += size
    return boxes


def is_faststart(path: Path | str) -> bool:
    """True if the MP4's ``moov`` box comes before its ``mdat`` box (progressive playback).

    Raises:
        MediaError: missing file, not an MP4, or no ``moov``/``mdat`` box.
    """
    names = [b[0] for b in mp4_top_level_boxes(path)]
    if "moov" not in names or "mdat" not in names:
        raise MediaError(f"{path} is not a complete MP4 (top-level boxes: {names})")
    return names.index("moov") < names.index("mdat")
