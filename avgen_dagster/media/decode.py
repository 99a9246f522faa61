"""Opening media files and decoding their audio track (PyAV).

Works on anything FFmpeg's demuxers read: MP4/M4A (the AAC priming samples are dropped as
the edit list says), MPEG-TS, and an HLS playlist (``.m3u8``: FFmpeg's ``hls`` demuxer reads
its segments in order as one stream, so the AAC decoder runs across segment boundaries just
as a player's does).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from avgen_dagster.errors import MediaError

__all__ = ["decode_audio", "open_media", "read_audio_track"]


def open_media(path: Path | str, what: str = "media file") -> av.container.InputContainer:
    """Open a media file for reading.

    Args:
        path: the file.
        what: how error messages name it (``"segment"``, ``"driving video"``...).

    Returns:
        The open PyAV input container (use it as a context manager).

    Raises:
        MediaError: ``"<what> not found: <path>"`` for a missing file; a corrupt or
            unsupported file.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{what} not found: {path}")
    try:
        return av.open(str(path))
    except av.FFmpegError as exc:
        raise MediaError(f"cannot open {what} {path} (corrupt or unsupported): {exc}") from exc


def decode_audio(path: Path | str) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of ``path`` as it is, every channel, nothing clipped.

    Returns:
        ``(samples, sample_rate)``: float32 array of shape ``(channels, n)`` at full scale
        ±1.0 (a lossy decoder's overshoot above 1.0 is kept: meters must see it) and the
        stream's sample rate in Hz.

    Raises:
        MediaError: the file is missing, unreadable, or has no audio stream.
    """
    path = Path(path)
    try:
        with open_media(path) as container:
            if not container.streams.audio:
                raise MediaError(f"{path.name} has no audio stream")
            stream = container.streams.audio[0]
            rate = int(stream.rate)
            resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=rate)
            chunks: list[np.ndarray] = []
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))
            channels = stream.layout.nb_channels
    except av.FFmpegError as exc:
        raise MediaError(f"cannot decode the audio of {path.name}: {exc}") from exc
    if not chunks:
        return np.zeros((channels, 0), np.float32), rate
    return np.concatenate(chunks, axis=1).astype(np.float32, copy=False), rate


def read_audio_track(path: Path | str) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of ``path`` to float32 mono.

    Returns:
        ``(samples, sample_rate)``: float32 array of shape ``(n,)`` in [-1, 1] (channels
        averaged, then clipped) and the stream's sample rate in Hz.

    Raises:
        MediaError: the file is missing, unreadable, or has no audio stream.
    """
    samples, rate = decode_audio(path)
    return np.clip(samples.mean(axis=0), -1.0, 1.0).astype(np.float32), rate
