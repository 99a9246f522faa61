"""Delivered audio in spec: master before the lossy encode, measure what the user receives.

A loudness-normalised WAV is not what a user hears: cross-fades add overlapping peaks and a
lossy encoder (AAC, MP3) adds overshoot, so a track limited to −1.3 dBTP can decode above
the −1 dBTP ceiling (measured here: a stitched talking head read −0.5 dBTP with ffmpeg's
``ebur128=peak=true``). Two tools:

* :func:`master_for_delivery` prepares the PCM that goes into the encoder: normalise to the
  loudness target with the true-peak limiter set ``codec_headroom_db`` under the ceiling
  (−2 dBTP for −1), then encode a trial in memory with the delivered file's own encoder
  settings (:func:`avgen_dagster.media.audio_stream.encode_in_memory`), decode it and
  measure it; if the decoded true peak still passes the ceiling (less the meter margin),
  normalise again with more headroom. The encoded trial that passed is what gets
  delivered: its bytes (an .m4a) or its packets muxed into the video
  (:func:`encode_delivered_mp4`), so the listener hears exactly what was measured.
* :func:`measure_delivered_audio` decodes the audio track of a delivered file (MP4, M4A,
  MPEG-TS, an HLS playlist's segments in order) and measures it: integrated loudness
  (ITU-R BS.1770-4 gated) and true peak (BS.1770-4 Annex 2), as asset checks need.

Spec (EBU R128 / EBU Tech 3343): integrated loudness within ±0.5 LU of the target, true
peak ≤ −1 dBTP. Our meter and ffmpeg's ``ebur128`` interpolate differently (4× polyphase
FIR here, a 192 kHz resampler there) and ffmpeg rounds to 0.1 dB, so mastering aims
:data:`METER_MARGIN_DB` under the ceiling.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyloudnorm

from avgen_dagster.errors import MediaError
from avgen_dagster.media.audio_stream import encode_in_memory
from avgen_dagster.media.decode import decode_audio
from avgen_dagster.media.loudness import (
    GATING_BLOCK_S,
    LoudnessMeasurement,
    measure_loudness,
    normalize_loudness,
    true_peak_dbtp,
)
from avgen_dagster.media.video_io import AUDIO_RATE, encode_video_mp4

__all__ = [
    "CODEC_HEADROOM_DB",
    "LOUDNESS_TOLERANCE_LU",
    "MAX_TRUE_PEAK_DBTP",
    "METER_MARGIN_DB",
    "DeliveredAudio",
    "DeliveredVideo",
    "MasteredAudio",
    "encode_delivered_mp4",
    "master_for_delivery",
    "measure_delivered_audio",
]

#: Largest deviation from the loudness target, LU (EBU R128).
LOUDNESS_TOLERANCE_LU = 0.5
#: True-peak ceiling of delivered audio, dBTP (EBU R128).
MAX_TRUE_PEAK_DBTP = -1.0
#: The PCM going into a lossy encoder is limited this far under the ceiling, dB.
CODEC_HEADROOM_DB = 1.0
#: What the decoded trial must keep under the ceiling on our meter, dB (meters differ).
METER_MARGIN_DB = 0.3
#: Default containers per codec.
_TRIAL_FORMAT = {"aac": "mp4", "libmp3lame": "mp3"}


@dataclass(frozen=True)
class DeliveredAudio:
    """Loudness of a delivered file's audio, as decoded.

    Attributes:
        path: the file (or playlist) measured.
        integrated_lufs: integrated loudness, LUFS (BS.1770-4, all channels); ``-inf`` for
            silence.
        true_peak_dbtp: true peak over all channels, dBTP; ``-inf`` for silence.
        sample_peak_dbfs: largest decoded sample, dBFS (may exceed 0: nothing is clipped).
        duration_s: decoded duration, seconds.
        sample_rate: Hz.
        channels: decoded channels.
    """

    path: Path
    integrated_lufs: float
    true_peak_dbtp: float
    sample_peak_dbfs: float
    duration_s: float
    sample_rate: int
    channels: int

    def within_spec(
        self,
        target_lufs: float,
        *,
        max_true_peak_dbtp: float = MAX_TRUE_PEAK_DBTP,
        tolerance_lu: float = LOUDNESS_TOLERANCE_LU,
    ) -> bool:
        """True when ``|integrated - target| <= tolerance_lu`` and true peak ≤ the ceiling."""
        return (
            abs(self.integrated_lufs - target_lufs) <= tolerance_lu
            and self.true_peak_dbtp <= max_true_peak_dbtp
        )


def measure_delivered_audio(path: Path | str) -> DeliveredAudio:
    """Decode the audio track of a delivered file and measure its loudness and true peak.

    Args:
        path: an MP4, M4A, MP3, MPEG-TS file, or an HLS playlist (``.m3u8``; its segments
            are decoded in order as one stream).

    Returns:
        A :class:`DeliveredAudio`. Mono uses :func:`~avgen_dagster.media.loudness.
        measure_loudness` (clips under 0.4 s: the ungated measure); more channels sum their
        K-weighted power with BS.1770-4's channel weights (pyloudnorm) and take the largest
        channel's true peak.

    Raises:
        MediaError: missing or unreadable file, no audio stream, or a multichannel track
            shorter than one 0.4 s gating block.
    """
    path = Path(path)
    samples, rate = decode_audio(path)
    channels, n = samples.shape
    if channels == 1:
        m = measure_loudness(samples[0], rate)
        lufs, tp, sp = m.integrated_lufs, m.true_peak_dbtp, m.sample_peak_dbfs
    else:
        if n < GATING_BLOCK_S * rate:
            raise MediaError(f"{path.name}: {channels}-channel audio shorter than 0.4 s")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lufs = float(pyloudnorm.Meter(rate).integrated_loudness(samples.T.astype(np.float64)))
        lufs = lufs if math.isfinite(lufs) else float("-inf")
        tp = max(true_peak_dbtp(channel, rate) for channel in samples)
        peak = float(np.abs(samples).max()) if n else 0.0
        sp = 20.0 * math.log10(peak) if peak > 0 else float("-inf")
    return DeliveredAudio(
        path=path,
        integrated_lufs=lufs,
        true_peak_dbtp=tp,
        sample_peak_dbfs=sp,
        duration_s=n / rate,
        sample_rate=rate,
        channels=channels,
    )


@dataclass(frozen=True)
class MasteredAudio:
    """PCM ready for a lossy encoder, and what its trial encode decoded to.

    Attributes:
        samples: float32 ``(n,)`` at ``sample_rate``: encode exactly these, with the codec
            and bit rate given to :func:`master_for_delivery`.
        sample_rate: Hz.
        target_lufs: the loudness aimed at, LUFS.
        decoded: measurement of the last trial encode, decoded (what the listener gets).
        passes: trial encodes made (1 when the first headroom sufficed).
        headroom_db: distance between the ceiling and the limiter used, dB.
        encoded: the encoded file whose decode was measured (container
            ``container_format``): deliver these bytes, or mux its packets into a video
            (:func:`encode_delivered_mp4`), and the listener gets exactly ``decoded``.
        container_format: FFmpeg muxer of ``encoded``.
    """

    samples: np.ndarray
    sample_rate: int
    target_lufs: float
    decoded: LoudnessMeasurement
    passes: int
    headroom_db: float
    encoded: bytes = field(repr=False)
    container_format: str = "mp4"


def master_for_delivery(
    samples: np.ndarray,
    sample_rate: int,
    *,
    target_lufs: float | None = None,
    max_true_peak_dbtp: float = MAX_TRUE_PEAK_DBTP,
    codec: str = "aac",
    bitrate: int = 128_000,
    container_format: str | None = None,
    codec_headroom_db: float = CODEC_HEADROOM_DB,
    max_passes: int = 4,
) -> MasteredAudio:
    """Bring a mono track to its loudness target so that it decodes under the ceiling.

    Pass ``k``: normalise to the aim (first the target) with the true-peak limiter at
    ``max_true_peak_dbtp - headroom`` (first ``codec_headroom_db``), encode a trial, decode
    it, measure it. Done when the decoded true peak is at most ``max_true_peak_dbtp -``
    :data:`METER_MARGIN_DB` and the decoded loudness within 0.2 LU of the target. Otherwise
    the headroom grows by the decoded excess + 0.1 dB, and a decoded loudness deficit (a low
    bit rate's low-pass takes some) raises the aim by the deficit, at most 0.5 LU in all.
    At the bit rates avgen delivers (128-160 kbit/s) the first pass meets both.

    Args:
        samples: float mono ``(n,)``, full scale ±1.0, at the rate the encoder will get.
        sample_rate: Hz.
        target_lufs: integrated loudness target, LUFS; ``None`` keeps the track's own
            (e.g. a mix of clips already normalised).
        max_true_peak_dbtp: ceiling of the decoded audio, dBTP.
        codec: ``"aac"`` or ``"libmp3lame"``.
        bitrate: bit/s.
        container_format: muxer of the encoded file (``"ipod"`` for .m4a, ``"adts"``,
            ``"mp3"``); default ``"mp4"`` for AAC (to mux into a video), ``"mp3"`` for MP3.
        codec_headroom_db: first distance between the ceiling and the limiter, dB.
        max_passes: trial encodes at most.

    Returns:
        A :class:`MasteredAudio`: the first pass that met both goals, else the best one
        (under the ceiling first, then nearest the target); its ``decoded`` says what was
        reached (a target too loud for the ceiling, e.g. speech at −10 LUFS, stays under).

    Raises:
        MediaError: non-mono or non-finite samples, a bad rate, codec or bit rate.
    """
    x = np.asarray(samples, dtype=np.float32)
    if target_lufs is None:
        target_lufs = measure_loudness(x, sample_rate).integrated_lufs
    if codec not in _TRIAL_FORMAT:
        raise MediaError(f"unsupported delivery codec {codec!r}; use aac or libmp3lame")
    container_format = container_format or _TRIAL_FORMAT[codec]
    goal_db = max_true_peak_dbtp - METER_MARGIN_DB
    headroom, aim = codec_headroom_db, target_lufs
    best: tuple[tuple[bool, float], MasteredAudio] | None = None
    for passes in range(1, max_passes + 1):
        norm = normalize_loudness(x, sample_rate, aim, max_true_peak_dbtp - headroom)
        y = norm.samples.astype(np.float32)
        encoded, trial = encode_in_memory(
            y, sample_rate, codec=codec, bitrate=bitrate, container_format=container_format
        )
        decoded = measure_loudness(trial, sample_rate)
        result = MasteredAudio(
            y, sample_rate, target_lufs, decoded, passes, headroom, encoded, container_format
        )
        excess = decoded.true_peak_dbtp - goal_db
        deficit = target_lufs - decoded.integrated_lufs if math.isfinite(target_lufs) else 0.0
        rank = (excess <= 0, -abs(deficit))
        if best is None or rank > best[0]:
            best = (rank, result)
        if excess <= 0 and abs(deficit) <= 0.2:
            return result
        if excess > 0:
            headroom += excess + 0.1
        if abs(deficit) > 0.2 and norm.after.integrated_lufs >= aim - 0.2:
            aim = min(target_lufs + 0.5, aim + deficit)
    return best[1]  # type: ignore[index]


@dataclass(frozen=True)
class DeliveredVideo:
    """A deliverable MP4 (:func:`encode_delivered_mp4`) with its audio measured as decoded.

    Attributes:
        path: the fast-start MP4 written.
        duration_s: video duration, seconds (``video_frames / fps``).
        video_frames: frames encoded.
        audio_duration_s: audio encoded, seconds.
        fps: frames per second.
        width: pixels.
        height: pixels.
        target_lufs: the loudness target the audio was mastered to, LUFS.
        delivered: loudness and true peak of the written file's audio, as decoded.
    """

    path: Path
    duration_s: float
    video_frames: int
    audio_duration_s: float
    fps: float
    width: int
    height: int
    target_lufs: float
    delivered: DeliveredAudio

    def video_fields(self) -> dict[str, Any]:
        """This object's :class:`DeliveredVideo` fields by name (to build a subclass)."""
        return {f.name: getattr(self, f.name) for f in fields(DeliveredVideo)}


def encode_delivered_mp4(
    frames: Iterable[np.ndarray | av.VideoFrame],
    fps: float | Fraction,
    output: Path,
    mastered: MasteredAudio,
    *,
    crf: int = 20,
    preset: str = "veryfast",
    gop_s: float = 2.0,
) -> DeliveredVideo:
    """Encode a deliverable MP4 with mastered audio, then measure its audio as decoded.

    :func:`avgen_dagster.media.video_io.encode_video_mp4` with a fixed closed GOP, fast
    start and the mastered track's AAC packets muxed as they are (the audio the trial
    measured, not a new encode).

    Args:
        frames: RGB uint8 ``(H, W, 3)`` arrays or ``av.VideoFrame`` s.
        fps: frames per second.
        output: destination ``.mp4`` (written atomically).
        mastered: from :func:`master_for_delivery` at 48 kHz
            (:data:`~avgen_dagster.media.video_io.AUDIO_RATE`) into an MP4.
        crf: libx264 constant rate factor.
        preset: libx264 preset.
        gop_s: keyframe interval, seconds.

    Returns:
        A :class:`DeliveredVideo`.

    Raises:
        MediaError: audio not mastered at 48 kHz into an MP4, bad frames, or an encode
            failure.
    """
    if mastered.sample_rate != AUDIO_RATE or mastered.container_format != "mp4":
        raise MediaError(f"a video's audio must be mastered at {AUDIO_RATE} Hz into an MP4")
    encoded = encode_video_mp4(
        frames,
        fps,
        Path(output),
        encoded_audio=mastered.encoded,
        crf=crf,
        preset=preset,
        gop_s=gop_s,
        faststart=True,
    )
    return DeliveredVideo(
        path=encoded.path,
        duration_s=encoded.duration_s,
        video_frames=encoded.frames,
        audio_duration_s=mastered.samples.size / AUDIO_RATE,
        fps=encoded.fps,
        width=encoded.width,
        height=encoded.height,
        target_lufs=mastered.target_lufs,
        delivered=measure_delivered_audio(encoded.path),
    )
