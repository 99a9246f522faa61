"""Compressed copies of WAV files (PyAV): AAC-LC in ``.m4a`` or MP3, in loudness spec.

The audio is read as float32 mono (:func:`~avgen_dagster.media.audio_io.read_wav`) and
encoded at its own rate when the codec supports it (AAC and MP3 both take 32, 44.1 and
48 kHz), otherwise resampled to 48 kHz. It is mastered for delivery
(:func:`avgen_dagster.media.delivery.master_for_delivery`: the WAV's loudness, or a given
target, kept; the true peak limited with codec headroom; encoded and the encode decoded and
measured), and the encode that passed is the file written: it decodes under the ceiling
(−1 dBTP by default).
"""

from __future__ import annotations

from pathlib import Path

from avgen_dagster.errors import MediaError
from avgen_dagster.media.atomic import atomic_path
from avgen_dagster.media.audio_io import read_wav, resample
from avgen_dagster.media.delivery import MAX_TRUE_PEAK_DBTP, master_for_delivery

__all__ = ["encode_audio_file"]

# suffix -> (container format, codec)
_FORMATS: dict[str, tuple[str, str]] = {
    ".m4a": ("ipod", "aac"),
    ".mp4": ("mp4", "aac"),
    ".aac": ("adts", "aac"),
    ".mp3": ("mp3", "libmp3lame"),
}
_RATES = {16000, 22050, 24000, 32000, 44100, 48000}


def encode_audio_file(
    wav: Path,
    output: Path,
    *,
    bitrate: int = 160_000,
    target_lufs: float | None = None,
    max_true_peak_dbtp: float = MAX_TRUE_PEAK_DBTP,
) -> Path:
    """Write a compressed copy of a WAV file, in loudness spec, atomically.

    Args:
        wav: source RIFF/WAVE file (any PCM/float format; multi-channel is downmixed).
        output: destination; the suffix picks the format: ``.m4a`` (AAC-LC, MP4/iPod
            container), ``.mp4``, ``.aac`` (ADTS) or ``.mp3`` (LAME).
        bitrate: target bit rate, bits per second (e.g. 128000-192000 for music).
        target_lufs: loudness of the copy, LUFS; ``None`` keeps the WAV's own (a track
            normalised already).
        max_true_peak_dbtp: true-peak ceiling of the decoded copy, dBTP.

    Returns:
        ``output``; :func:`avgen_dagster.media.delivery.measure_delivered_audio` measures it.

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
    container, codec = fmt
    mastered = master_for_delivery(
        samples,
        sr,
        target_lufs=target_lufs,
        max_true_peak_dbtp=max_true_peak_dbtp,
        codec=codec,
        bitrate=bitrate,
        container_format=container,
    )
    try:
        with atomic_path(output) as tmp:
            tmp.write_bytes(mastered.encoded)  # the encode whose decode was measured
    except OSError as exc:
        raise MediaError(f"cannot write {output}: {exc}") from exc
    return output
