"""Compressed copies of WAV files (PyAV): AAC-LC in ``.m4a`` or MP3.

The audio is read as float32 mono (:func:`~avgen_dagster.media.audio_io.read_wav`) and
encoded at its own rate when the codec supports it (AAC and MP3 both take 32, 44.1 and
48 kHz), otherwise resampled to 48 kHz.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avgen_dagster.errors import MediaError
from avgen_dagster.media.atomic import atomic_path
from avgen_dagster.media.audio_io import read_wav, resample

__all__ = ["encode_audio_file"]

# suffix -> (container format, codec, frame size in samples)
_FORMATS: dict[str, tuple[str, str, int]] = {
    ".m4a": ("ipod", "aac", 1024),
    ".mp4": ("mp4", "aac", 1024),
    ".aac": ("adts", "aac", 1024),
    ".mp3": ("mp3", "libmp3lame", 1152),
}
_RATES = {16000, 22050, 24000, 32000, 44100, 48000}


def encode_audio_file(wav: Path, output: Path, *, bitrate: int = 160_000) -> Path:
    """Write a compressed copy of a WAV file, atomically.

    Args:
        wav: source RIFF/WAVE file (any PCM/float format; multi-channel is downmixed).
        output: destination; the suffix picks the format: ``.m4a`` (AAC-LC, MP4/iPod
            container), ``.mp4``, ``.aac`` (ADTS) or ``.mp3`` (LAME).
        bitrate: target bit rate, bits per second (e.g. 128000-192000 for music).

    Returns:
        ``output``.

    Raises:
        MediaError: unreadable WAV, unsupported suffix, bad bitrate or encoder failure.
    """
    output = Path(output)
    fmt = _FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise MediaError(
            f"cannot tell the audio format of {output}: use one of {', '.join(sorted(_FORMATS))}"
        )
    if not 8_000 <= bitrate <= 512_000:
        raise MediaError(f"audio bitrate must be 8000..512000 bit/s, got {bitrate}")
    samples, sr = read_wav(wav)
    if sr not in _RATES:
        samples, sr = resample(samples, sr, 48_000), 48_000
    container, codec, frame_size = fmt
    pcm = np.ascontiguousarray(np.clip(samples, -1.0, 1.0).astype(np.float32))
    try:
        with atomic_path(output) as tmp, av.open(str(tmp), "w", format=container) as out:
            stream = out.add_stream(codec, rate=sr, layout="mono")
            stream.bit_rate = int(bitrate)
            tb = Fraction(1, sr)
            for pos in range(0, pcm.size, frame_size):
                chunk = pcm[None, pos : pos + frame_size]
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = sr, pos, tb
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
    except av.FFmpegError as exc:
        raise MediaError(f"encoding {wav} into {output} failed: {exc}") from exc
    return output
