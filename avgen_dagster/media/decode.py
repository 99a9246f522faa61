"""Decoding the audio track of a media file (MP4, TS, …) with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from avgen_dagster.errors import MediaError


def read_audio_track(path: Path | str) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of ``path`` to float32 mono.

    Returns:
        ``(samples, sample_rate)``: float32 array of shape ``(n,)`` in [-1, 1] (channels
        averaged) and the stream's sample rate in Hz.

    Raises:
        MediaError: the file is missing, unreadable, or has no audio stream.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"media file {str(path)!r} does not exist")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{path.name} has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=stream.rate)
            chunks: list[np.ndarray] = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray()[0])
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray()[0])
            rate = int(stream.rate)
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot decode the audio of {path.name}: {exc}") from exc
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return np.clip(samples, -1.0, 1.0), rate
