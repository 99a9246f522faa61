"""Encode RGB frames plus mono audio into an MP4 segment, and decode frames back (PyAV).

Frames are RGB ``uint8`` arrays of shape ``(H, W, 3)``; audio is float32 mono ``(n,)`` in
[-1, 1]. Output MP4s carry H.264 (libx264, yuv420p) and AAC-LC at 48 kHz.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import av
import numpy as np

from avgen_dagster.errors import MediaError
from avgen_dagster.media.atomic import atomic_path
from avgen_dagster.media.audio_io import iter_resample, resample
from avgen_dagster.media.audio_stream import PacketWriter, PcmWriter, add_audio_stream
from avgen_dagster.media.decode import open_media

__all__ = [
    "AUDIO_RATE",
    "EncodedVideo",
    "encode_segment_mp4",
    "encode_video_mp4",
    "fps_fraction",
    "read_video_frames",
]

T = TypeVar("T")

#: Output audio sample rate, Hz (48 kHz: the MP4/HLS delivery norm, EBU R128 meters).
AUDIO_RATE = 48_000


def fps_fraction(fps: float | Fraction) -> Fraction:
    """Frame rate as an exact fraction (29.97 -> 30000/1001, 25.0 -> 25).

    Raises:
        MediaError: if ``fps`` is not positive.
    """
    if not fps > 0:
        raise MediaError(f"frame rate must be positive, got {fps}")
    if isinstance(fps, Fraction):
        return fps
    if float(fps).is_integer():
        return Fraction(int(fps))
    ntsc = round(float(fps) * 1.001)  # 23.976, 29.97, 59.94 -> 24000/1001, 30000/1001, ...
    if abs(float(fps) - ntsc * 1000 / 1001) < 0.005:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(float(fps)).limit_denominator(1001)


def _even_rgb(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise MediaError(
            f"frames must be RGB uint8 of shape (H, W, 3), got {frame.dtype} {frame.shape}"
        )
    if frame.shape[0] < height or frame.shape[1] < width:
        raise MediaError(
            f"all frames must have the same size: expected at least {width}x{height}, "
            f"got {frame.shape[1]}x{frame.shape[0]}"
        )
    if frame.shape[0] != height or frame.shape[1] != width:
        if frame.shape[0] > height + 1 or frame.shape[1] > width + 1:
            raise MediaError(
                f"all frames must have the same size: expected {width}x{height}, "
                f"got {frame.shape[1]}x{frame.shape[0]}"
            )
        frame = frame[:height, :width]
    return np.ascontiguousarray(frame)


def _add_h264_stream(
    out: av.container.OutputContainer,
    rate: Fraction,
    width: int,
    height: int,
    crf: int,
    preset: str,
    *,
    gop_s: float | None,
) -> av.video.stream.VideoStream:
    """libx264 yuv420p at ``rate``, x264's own threads (frame-threaded, as the ffmpeg CLI;
    PyAV defaults to slice threads); with ``gop_s`` a fixed closed GOP (``keyint =
    min-keyint = round(gop_s * rate)``, ``scenecut=0``) so HLS can cut every ``gop_s``."""
    vs = out.add_stream("libx264", rate=rate)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    opts = {"crf": str(crf), "preset": preset}
    if gop_s is not None:
        gop = max(1, round(gop_s * rate))
        opts["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0"
    vs.options = opts
    vs.codec_context.thread_count = 0
    vs.codec_context.thread_type = "FRAME"
    vs.time_base = 1 / rate
    return vs


def encode_segment_mp4(
    frames: Iterable[np.ndarray],
    fps: float,
    audio: np.ndarray,
    sample_rate: int,
    output: Path,
    *,
    crf: int = 18,
    preset: str = "veryfast",
) -> Path:
    """Encode frames and audio into an MP4 (H.264 yuv420p + AAC 48 kHz mono), atomically.

    Frames are consumed one at a time and the audio is resampled block by block as the
    encoder needs it (streaming: no copy of the whole track at 48 kHz). Odd widths/heights
    are cropped by one pixel (yuv420p needs even sides). Audio is resampled to 48 kHz with a
    polyphase FIR (:func:`~avgen_dagster.media.audio_io.iter_resample`) and written as given:
    its duration is not
    forced to the video's (callers make ``len(audio) / sample_rate`` match
    ``frame_count / fps``).

    Args:
        frames: iterable of RGB uint8 arrays ``(H, W, 3)``, all the same size.
        fps: frames per second (e.g. 25, 29.97).
        audio: float mono samples ``(n,)`` in [-1, 1]; may be empty (silent stream).
        sample_rate: audio rate, Hz.
        output: destination ``.mp4`` path; written via a temp file and renamed.
        crf: libx264 constant rate factor (0-51, lower is better; 18 is visually lossless).
        preset: libx264 preset (ultrafast ... veryslow).

    Returns:
        ``output``.

    Raises:
        MediaError: no frames, inconsistent frame sizes/dtypes, bad audio, or encode failure.
    """
    output = Path(output)
    rate = fps_fraction(fps)
    first, it = _peek(frames, "encode_segment_mp4")
    first = np.asarray(first)
    if first.ndim != 3 or first.shape[2] != 3 or first.shape[0] < 2 or first.shape[1] < 2:
        raise MediaError(f"frames must be RGB arrays of shape (H, W, 3), got {first.shape}")
    height, width = first.shape[0] // 2 * 2, first.shape[1] // 2 * 2
    pcm_in = np.asarray(audio, dtype=np.float32)
    if pcm_in.ndim != 1:
        raise MediaError(f"audio must be mono of shape (n,), got {pcm_in.shape}")
    total = -(-pcm_in.size * AUDIO_RATE // int(sample_rate)) if pcm_in.size else 0
    blocks = iter_resample(pcm_in, sample_rate, AUDIO_RATE)

    try:
        with atomic_path(output) as tmp, av.open(str(tmp), "w", format="mp4") as out:
            vs = _add_h264_stream(out, rate, width, height, crf, preset, gop_s=None)
            audio_out = PcmWriter(
                out, add_audio_stream(out, "aac", AUDIO_RATE, 128_000), blocks, total
            )
            for i, arr in enumerate(itertools.chain([first], it)):
                vf = av.VideoFrame.from_ndarray(_even_rgb(np.asarray(arr), width, height), "rgb24")
                vf.pts = i
                out.mux(vs.encode(vf))
                audio_out.write_until((i + 1) / rate)
            out.mux(vs.encode(None))
            audio_out.finish()
    except av.FFmpegError as exc:
        raise MediaError(f"encoding {output} failed: {exc}") from exc
    return output


def read_video_frames(path: Path | str) -> Iterator[np.ndarray]:
    """Decode the first video stream of a file frame by frame.

    Args:
        path: any container/codec FFmpeg reads.

    Yields:
        RGB uint8 arrays of shape ``(H, W, 3)`` in presentation order.

    Raises:
        MediaError: missing file, no video stream, or a decode error.
    """
    yield from _decoded_frames(path, None)


def _decoded_frames(path: Path | str, from_s: float | None) -> Iterator[np.ndarray]:
    """RGB frames of the first video stream, all of them, or (``from_s``) those at or after
    a time reached by a seek to the keyframe before it."""
    try:
        with open_media(path, "video file") as container:
            if not container.streams.video:
                raise MediaError(f"{path} has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if from_s is not None:
                container.seek(int(max(from_s, 0.0) * 1e6))  # µs, the default time base
            for frame in container.decode(stream):
                if from_s is None or frame.time is None or frame.time >= from_s - 1e-6:
                    yield frame.to_ndarray(format="rgb24")
    except av.FFmpegError as exc:
        raise MediaError(f"cannot decode video {path}: {exc}") from exc


def frame_at(path: Path | str, t_s: float) -> np.ndarray | None:
    """The first video frame at or after ``t_s`` seconds (a seek to the keyframe before it,
    then decoding forward), as RGB uint8 ``(H, W, 3)``; None when the video ends before.

    Raises:
        MediaError: missing file, no video stream, or a decode error.
    """
    frames = _decoded_frames(path, t_s)
    try:
        return next(frames, None)
    finally:
        frames.close()


@dataclass(frozen=True)
class EncodedVideo:
    """Result of :func:`encode_video_mp4`.

    Attributes:
        path: the MP4 written.
        frames: video frames encoded.
        fps: frame rate, frames per second.
        duration_s: video duration, seconds (``frames / fps``).
        width: pixels.
        height: pixels.
        audio_duration_s: audio encoded, seconds (0 without audio).
    """

    path: Path
    frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    audio_duration_s: float


def encode_video_mp4(
    frames: Iterable[np.ndarray | av.VideoFrame],
    fps: float | Fraction,
    output: Path,
    *,
    audio: np.ndarray | None = None,
    sample_rate: int = AUDIO_RATE,
    crf: int = 20,
    preset: str = "veryfast",
    gop_s: float | None = 2.0,
    faststart: bool = True,
    audio_bitrate: int = 128_000,
    encoded_audio: bytes | None = None,
) -> EncodedVideo:
    """Encode frames (and optionally mono audio) into an H.264 MP4, streaming, atomically.

    Like :func:`encode_segment_mp4` but the audio track is optional, frames may also be
    PyAV ``VideoFrame`` objects (e.g. decoded yuv420p frames: no numpy round trip), the GOP
    can be fixed (``keyint = min-keyint = round(gop_s * fps)``, ``scenecut=0``, closed GOP:
    HLS can cut every ``gop_s``) and the file is fast-start (``movflags=+faststart``).
    Frames of another size than the first are rescaled to it (odd sides are cropped/
    rounded down to even, yuv420p).

    Args:
        frames: RGB uint8 ``(H, W, 3)`` arrays or ``av.VideoFrame`` s.
        fps: frames per second.
        output: destination ``.mp4``.
        audio: float mono ``(n,)`` in [-1, 1], or ``None`` for a video-only file.
        sample_rate: rate of ``audio``, Hz (resampled to 48 kHz for AAC).
        crf: libx264 constant rate factor.
        preset: libx264 preset.
        gop_s: keyframe interval, seconds; ``None`` lets x264 choose.
        faststart: move the ``moov`` atom to the front.
        audio_bitrate: AAC bit rate, bits per second.
        encoded_audio: instead of ``audio``, an in-memory MP4 whose audio track is muxed
            as it is, packet for packet (no re-encode; e.g.
            :func:`avgen_dagster.media.audio_stream.encode_in_memory`).

    Returns:
        An :class:`EncodedVideo`.

    Raises:
        MediaError: no frames, bad frames or audio (or both ``audio`` and
            ``encoded_audio``), or an encode failure.
    """
    output = Path(output)
    rate = fps_fraction(fps)
    first, it = _peek(frames, "encode_video_mp4")
    width, height = _even_size(first)
    if audio is not None and encoded_audio is not None:
        raise MediaError("give encode_video_mp4 audio samples or an encoded track, not both")
    pcm: np.ndarray | None = None
    if audio is not None:
        pcm = np.asarray(audio, dtype=np.float32)
        if pcm.ndim != 1:
            raise MediaError(f"audio must be mono of shape (n,), got {pcm.shape}")
        pcm = resample(pcm, sample_rate, AUDIO_RATE)

    count = 0
    audio_out: PcmWriter | PacketWriter | None = None
    try:
        options = {"movflags": "+faststart"} if faststart else {}
        with (
            atomic_path(output) as tmp,
            av.open(str(tmp), "w", format="mp4", options=options) as out,
        ):
            vs = _add_h264_stream(out, rate, width, height, crf, preset, gop_s=gop_s)
            if pcm is not None:
                stream = add_audio_stream(out, "aac", AUDIO_RATE, audio_bitrate)
                audio_out = PcmWriter(out, stream, [pcm], pcm.size)
            elif encoded_audio is not None:
                audio_out = PacketWriter(out, encoded_audio)
            for item in itertools.chain([first], it):
                vf = _to_video_frame(item, width, height)
                vf.pts, vf.time_base = count, 1 / rate
                vf.pict_type = av.video.frame.PictureType.NONE
                out.mux(vs.encode(vf))
                count += 1
                if audio_out is not None:
                    audio_out.write_until(count / rate)
            out.mux(vs.encode(None))
            if audio_out is not None:
                audio_out.finish()
    except av.FFmpegError as exc:
        raise MediaError(f"encoding {output} failed: {exc}") from exc
    return EncodedVideo(
        path=output,
        frames=count,
        fps=float(rate),
        duration_s=float(count / rate),
        width=width,
        height=height,
        audio_duration_s=audio_out.seconds if audio_out is not None else 0.0,
    )


def _peek(frames: Iterable[T], who: str) -> tuple[T, Iterator[T]]:
    """The first frame and an iterator over the rest.

    Raises:
        MediaError: no frames (``"<who> got no frames"``).
    """
    it = iter(frames)
    try:
        return next(it), it
    except StopIteration:
        raise MediaError(f"{who} got no frames") from None


def _even_size(first: np.ndarray | av.VideoFrame) -> tuple[int, int]:
    """``(width, height)`` of the first frame, rounded down to even.

    Raises:
        MediaError: not an RGB uint8 array or a video frame, or under 2×2 px.
    """
    if isinstance(first, av.VideoFrame):
        w0, h0 = first.width, first.height
    else:
        arr = np.asarray(first)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise MediaError(
                f"frames must be RGB uint8 arrays (H, W, 3), got {arr.dtype} {arr.shape}"
            )
        h0, w0 = arr.shape[:2]
    width, height = w0 // 2 * 2, h0 // 2 * 2
    if width < 2 or height < 2:
        raise MediaError(f"frames too small to encode: {w0}x{h0}")
    return width, height


def _to_video_frame(item: np.ndarray | av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """A yuv420p frame of ``width``×``height``: a frame one pixel too large is cropped, any
    other size rescaled.

    Raises:
        MediaError: an array that is not RGB uint8 ``(H, W, 3)``.
    """
    if isinstance(item, av.VideoFrame):
        vf = item
    else:
        arr = np.asarray(item)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise MediaError(f"frames must be RGB uint8 (H, W, 3), got {arr.dtype} {arr.shape}")
        if arr.shape[:2] != (height, width):
            if arr.shape[0] in (height, height + 1) and arr.shape[1] in (width, width + 1):
                arr = arr[:height, :width]
            else:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), "rgb24")
                return vf.reformat(width, height, "yuv420p")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), "rgb24")
    if vf.width != width or vf.height != height or vf.format.name != "yuv420p":
        vf = vf.reformat(width, height, "yuv420p")
    return vf
