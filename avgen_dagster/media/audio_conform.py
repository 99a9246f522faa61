"""Audio measured where it is delivered: decode an MP4's AAC track, measure it, correct once.

A lossy encode moves the true peak (AAC's reconstruction overshoots by a few tenths of a dB
to over 1 dB on transients) and slightly the loudness, so the checks of EBU R128 / ITU-R
BS.1770-4 (integrated loudness within ±``tolerance_lu`` of the target, true peak at or under
the ceiling) are made on the decoded deliverable. If it fails, the mix is corrected (static
gain for the loudness; a limiter ceiling lowered by the measured codec overshoot plus a
margin for the peak), the audio track alone is re-encoded, the video packets are copied
unchanged (no second video encode), and the file is measured again.

Audio is float32 mono ``(n,)`` at full scale ±1.0; rates in Hz; levels in LUFS / dBTP / LU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avgen_dagster.errors import MediaError
from avgen_dagster.media.atomic import atomic_path
from avgen_dagster.media.decode import decode_audio
from avgen_dagster.media.loudness import LoudnessMeasurement, measure_loudness, normalize_loudness

__all__ = [
    "ConformedAudio",
    "conform_delivered_audio",
    "measure_file_audio",
    "replace_audio_track",
]

_AAC_FRAME = 1024
_PEAK_MARGIN_DB = 0.3


@dataclass(frozen=True)
class ConformedAudio:
    """The delivered file's decoded audio, measured (after at most one correction).

    Attributes:
        integrated_lufs: BS.1770-4 integrated loudness, LUFS.
        true_peak_dbtp: BS.1770-4 Annex 2 true peak, dBTP.
        corrected: the audio track was re-encoded to meet the targets.
        in_spec: loudness within the tolerance and true peak at or under the ceiling.
    """

    integrated_lufs: float
    true_peak_dbtp: float
    corrected: bool
    in_spec: bool


def measure_file_audio(path: Path | str) -> LoudnessMeasurement:
    """Decode the first audio track of ``path`` (mono mix-down) and measure it (BS.1770-4).

    Raises:
        MediaError: no audio track, or the file cannot be decoded.
    """
    # Unclipped: a lossy decoder's overshoot above full scale must reach the true-peak meter.
    samples, rate = decode_audio(path)
    return measure_loudness(samples.mean(axis=0), rate)


def _encode_audio(
    dst: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    pcm: np.ndarray,
    span: tuple[int, int],
    rate: int,
) -> int:
    """Encode ``pcm[span[0]:span[1]]`` in AAC frames; returns the new position."""
    pos, stop = span
    while pos < stop:
        chunk = pcm[pos : pos + _AAC_FRAME]
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, pos, Fraction(1, rate)
        dst.mux(stream.encode(frame))
        pos += chunk.size
    return pos


def replace_audio_track(mp4: Path, audio: np.ndarray, sample_rate: int, bitrate: int) -> None:
    """Re-encode ``mp4``'s audio as AAC from ``audio``, copying the video packets, in place.

    The output stays fast-start; audio is interleaved with the video by time.

    Args:
        mp4: an MP4 with one video and one audio track.
        audio: float mono ``(n,)`` in [-1, 1].
        sample_rate: its rate, Hz (kept for the AAC track).
        bitrate: AAC bit rate, bit/s.

    Raises:
        MediaError: the file cannot be read or written.
    """
    pcm = np.clip(np.nan_to_num(np.asarray(audio, np.float32)), -1.0, 1.0)
    try:
        with (
            av.open(str(mp4)) as src,
            atomic_path(mp4) as tmp,
            av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as dst,
        ):
            vin = src.streams.video[0]
            vout = dst.add_stream_from_template(vin)
            aout = dst.add_stream("aac", rate=sample_rate, layout="mono")
            aout.bit_rate = bitrate
            pos = 0
            for packet in src.demux(vin):
                if packet.dts is None or packet.size == 0:
                    continue
                t_end = float((packet.dts + (packet.duration or 0)) * vin.time_base)
                stop = min(pcm.size, round(max(0.0, t_end) * sample_rate))
                pos = _encode_audio(dst, aout, pcm, (pos, stop), sample_rate)
                packet.stream = vout
                dst.mux(packet)
            _encode_audio(dst, aout, pcm, (pos, pcm.size), sample_rate)
            dst.mux(aout.encode(None))
    except (av.FFmpegError, IndexError) as exc:
        raise MediaError(f"re-encoding the audio of {mp4} failed: {exc}") from exc


def _in_spec(m: LoudnessMeasurement, target: float, ceiling: float, tol: float) -> bool:
    return abs(m.integrated_lufs - target) <= tol and m.true_peak_dbtp <= ceiling


def conform_delivered_audio(
    mp4: Path | str,
    mix: np.ndarray,
    sample_rate: int,
    *,
    target_lufs: float,
    ceiling_dbtp: float = -1.0,
    tolerance_lu: float = 0.5,
    bitrate: int = 160_000,
) -> ConformedAudio:
    """Measure the delivered audio; if out of spec, correct the mix and re-encode it once.

    Args:
        mp4: the delivered file (its audio was encoded from ``mix``).
        mix: the mix that was encoded, float mono ``(n,)``.
        sample_rate: its rate, Hz.
        target_lufs: loudness target, LUFS.
        ceiling_dbtp: true-peak ceiling, dBTP.
        tolerance_lu: allowed loudness deviation, LU.
        bitrate: AAC bit rate for a re-encode, bit/s.

    Returns:
        The final measurement (``in_spec`` False if one correction was not enough).

    Raises:
        MediaError: the file cannot be decoded or rewritten.
    """
    mp4 = Path(mp4)
    first = measure_file_audio(mp4)
    ok = _in_spec(first, target_lufs, ceiling_dbtp, tolerance_lu)
    if ok or not math.isfinite(first.integrated_lufs):
        return ConformedAudio(first.integrated_lufs, first.true_peak_dbtp, False, ok)
    source = measure_loudness(mix, sample_rate)
    overshoot = max(0.0, first.true_peak_dbtp - source.true_peak_dbtp)
    limit = ceiling_dbtp - overshoot - _PEAK_MARGIN_DB
    fixed = normalize_loudness(mix, sample_rate, target_lufs, max_true_peak_dbtp=limit)
    replace_audio_track(mp4, fixed.samples, sample_rate, bitrate)
    again = measure_file_audio(mp4)
    ok = _in_spec(again, target_lufs, ceiling_dbtp, tolerance_lu)
    return ConformedAudio(again.integrated_lufs, again.true_peak_dbtp, True, ok)
