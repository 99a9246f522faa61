"""The ffmpeg command-line tool (the static build ``imageio-ffmpeg`` ships) as an independent
meter and decoder, for tests and benchmarks: its ``ebur128`` filter and decoders are not the
code under test (:mod:`avgen_dagster.media.loudness`, PyAV)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg

__all__ = ["DecodeInfo", "EbuR128", "ffmpeg_decode_info", "ffmpeg_ebur128"]


@dataclass(frozen=True)
class EbuR128:
    """ffmpeg ``ebur128=peak=true`` summary (0.1 dB resolution).

    Attributes:
        integrated_lufs: integrated loudness, LUFS (``-inf`` below the gate; ffmpeg prints
            -70.0 for silence).
        true_peak_dbtp: true peak, dBTP (ffmpeg labels it dBFS; it upsamples to 192 kHz).
    """

    integrated_lufs: float
    true_peak_dbtp: float


def ffmpeg_ebur128(path: Path | str) -> EbuR128:
    """Measure the first audio stream of ``path`` with ``ffmpeg -af ebur128=peak=true``.

    Raises:
        subprocess.CalledProcessError: ffmpeg failed (unreadable file, no audio).
        ValueError: the summary lacks the integrated loudness or the peak.
    """
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path)]
    command += ["-map", "0:a:0", "-af", "ebur128=peak=true", "-f", "null", "-"]
    proc = subprocess.run(command, capture_output=True, text=True, check=True)
    summary = proc.stderr.split("Summary:")[-1]
    i_lufs = re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary)
    peak = re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    if i_lufs is None or peak is None:
        raise ValueError(f"no ebur128 summary for {path}: {proc.stderr[-500:]}")
    return EbuR128(float(i_lufs.group(1)), float(peak.group(1)))


@dataclass(frozen=True)
class DecodeInfo:
    """What ``ffmpeg -i FILE -f null -`` reports.

    Attributes:
        streams: the ``Stream #0:...`` lines.
        decoded_s: decoded duration, seconds (the last ``time=`` of the run).
        stderr: ffmpeg's whole log.
    """

    streams: list[str]
    decoded_s: float
    stderr: str


def ffmpeg_decode_info(path: Path | str) -> DecodeInfo:
    """Decode every stream of ``path`` with the ffmpeg CLI (null muxer).

    Raises:
        subprocess.CalledProcessError: ffmpeg failed.
    """
    proc = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    streams = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip().startswith("Stream #0")]
    times = [seg.split()[0] for seg in proc.stderr.split("time=")[1:]]
    h, m, s = times[-1].split(":")
    return DecodeInfo(streams, int(h) * 3600 + int(m) * 60 + float(s), proc.stderr)
