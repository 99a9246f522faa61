"""A music video: video clips cross-faded (looped or trimmed) to a music track's length.

One decode → blend → encode pass: the clips are decoded in turn (looping over the list
until the music is covered), consecutive clips are joined by the same linear cross-fade as
the talking-head stitch (:class:`avgen_dagster.media.crossfade.CrossfadeJoiner`, blending only
the overlapping frames, on yuv420p planes), the picture fades in from and out to black, and
the frames go straight to the shared H.264/AAC encoder
(:func:`avgen_dagster.media.video_io.encode_video_mp4`: fixed GOP, fast start, atomic). The
faded music is mastered for delivery at 48 kHz
(:func:`avgen_dagster.media.delivery.master_for_delivery`: back to the music's loudness
target, which the fades lower a little, true peak limited with codec headroom, checked on a
decoded trial encode) and the written file's audio is measured as decoded.

Timing: the music lasts ``T`` seconds; the video has ``N = round(T * fps)`` frames (within
half a frame of ``T``) and the audio is padded/trimmed to exactly ``N / fps`` seconds, so
both end together. With clip frame counts ``F_k`` and a cross-fade of ``D`` frames, the
clip sequence ``0, 1, ..., n-1, 0, 1, ...`` is extended until ``F_0 + Σ (F_k - D) >= N``;
the last clip is cut where the music ends.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avgen_dagster.errors import MediaError
from avgen_dagster.media.audio_io import read_wav, resample
from avgen_dagster.media.crossfade import CrossfadeJoiner
from avgen_dagster.media.delivery import (
    MAX_TRUE_PEAK_DBTP,
    DeliveredVideo,
    MasteredAudio,
    encode_delivered_mp4,
    master_for_delivery,
)
from avgen_dagster.media.loudness import measure_loudness
from avgen_dagster.media.stitch import SegmentInfo, output_size, probe_segment
from avgen_dagster.media.video_io import AUDIO_RATE, fps_fraction

__all__ = ["MusicVideoResult", "compose_music_video"]


@dataclass(frozen=True)
class MusicVideoResult(DeliveredVideo):
    """Result of :func:`compose_music_video`: the :class:`~avgen_dagster.media.delivery.
    DeliveredVideo` fields (path, durations, frames, size, loudness target, delivered audio)
    and:

    Attributes:
        music_duration_s: the music file's duration, seconds.
        clip_count: distinct input clips.
        clips_used: clip appearances in the sequence (> ``clip_count`` when looped).
        crossfade_frames: frames of each cross-fade (after clamping to half the shortest clip).
        fade_in_s: audio/picture fade-in, seconds.
        fade_out_s: audio/picture fade-out, seconds.
        elapsed_s: wall-clock time of the call, seconds.
    """

    music_duration_s: float
    clip_count: int
    clips_used: int
    crossfade_frames: int
    fade_in_s: float
    fade_out_s: float
    elapsed_s: float


def _fade_gain(i: int, n: int, fade_in: int, fade_out: int) -> float:
    """Raised-cosine gain of frame/sample ``i`` of ``n`` (1 outside the fades)."""
    g = 1.0
    if fade_in > 0 and i < fade_in:
        g = min(g, 0.5 - 0.5 * math.cos(math.pi * (i + 0.5) / fade_in))
    if fade_out > 0 and i >= n - fade_out:
        g = min(g, 0.5 - 0.5 * math.cos(math.pi * (n - i - 0.5) / fade_out))
    return g


def _fade_curve(n: int, fade_in: int, fade_out: int) -> np.ndarray:
    """Vectorised :func:`_fade_gain` for ``n`` samples, float32."""
    g = np.ones(n, np.float32)
    if fade_in > 0:
        k = min(fade_in, n)
        g[:k] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(k) + 0.5) / fade_in)
    if fade_out > 0:
        k = min(fade_out, n)
        tail = 0.5 - 0.5 * np.cos(np.pi * (np.arange(k)[::-1] + 0.5) / fade_out)
        g[n - k :] = np.minimum(g[n - k :], tail)
    return g


def _to_black(frame: av.VideoFrame, gain: float) -> av.VideoFrame:
    """Fade a yuv420p frame towards black (limited range: Y 16, U = V = 128)."""
    arr = frame.to_ndarray(format="yuv420p").astype(np.float32)
    h = frame.height
    arr[:h] = 16.0 + (arr[:h] - 16.0) * gain
    arr[h:] = 128.0 + (arr[h:] - 128.0) * gain
    return av.VideoFrame.from_ndarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "yuv420p")


def _clip_frames(
    seg: SegmentInfo, rate: Fraction, width: int, height: int
) -> Iterator[av.VideoFrame]:
    """Decode a clip as exactly ``seg.frames`` yuv420p frames of ``width``×``height`` at
    ``rate`` (frames repeated/dropped by timestamp, like FFmpeg's ``fps`` filter, when the
    clip's own rate differs)."""
    emitted = 0
    prev: av.VideoFrame | None = None
    t0: float | None = None
    try:
        with av.open(str(seg.path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                if frame.format.name != "yuv420p" or (frame.width, frame.height) != (width, height):
                    frame = frame.reformat(width, height, "yuv420p")
                if seg.same_rate:
                    if emitted >= seg.frames:
                        return
                    yield frame
                    emitted += 1
                    continue
                t = float(frame.time) if frame.time is not None else emitted / float(rate)
                t0 = t if t0 is None else t0
                while prev is not None and emitted < seg.frames and emitted / rate < t - t0:
                    yield prev
                    emitted += 1
                prev = frame
    except av.FFmpegError as exc:
        raise MediaError(f"cannot decode clip {seg.path}: {exc}") from exc
    while prev is not None and emitted < seg.frames:
        yield prev
        emitted += 1


def compose_music_video(
    clips: Sequence[Path],
    music: Path,
    output: Path,
    *,
    crossfade_s: float = 0.5,
    fade_in_s: float = 1.0,
    fade_out_s: float = 2.0,
    fps: float = 24,
    gop_s: float = 2.0,
    crf: int = 20,
    preset: str = "veryfast",
    size: tuple[int, int] | None = None,
    audio_bitrate: int = 160_000,
    target_lufs: float | None = None,
    max_true_peak_dbtp: float = MAX_TRUE_PEAK_DBTP,
) -> MusicVideoResult:
    """Make a music video: ``clips`` cross-faded and looped/trimmed to ``music``'s length.

    Video: clips in order, repeated from the first when they run out, consecutive clips
    joined by a ``crossfade_s`` linear cross-fade (clamped to half the shortest clip),
    the whole picture faded in from black over ``fade_in_s`` and out to black over
    ``fade_out_s`` (raised-cosine). Audio: the music, faded in and out with the same
    raised-cosine curves, padded/trimmed to the video length, mastered for delivery
    (module docstring). One encode pass: H.264 (``crf``, ``preset``, GOP ``gop_s``,
    closed) + AAC-LC 48 kHz mono, fast-start MP4, written atomically.

    Args:
        clips: video files (any FFmpeg-readable; their audio is ignored).
        music: a WAV file (the track, usually loudness-normalised).
        output: destination ``.mp4``.
        crossfade_s: cross-fade between clips, seconds (>= 0).
        fade_in_s: fade-in of picture and music, seconds (>= 0).
        fade_out_s: fade-out of picture and music, seconds (>= 0).
        fps: output frame rate.
        gop_s: keyframe interval, seconds.
        crf: libx264 constant rate factor.
        preset: libx264 preset.
        size: output ``(width, height)``; default the first clip's (even) size; other
            sizes are scaled to it.
        audio_bitrate: AAC bit rate, bits per second.
        target_lufs: loudness of the delivered audio, LUFS; ``None``: the music file's own
            integrated loudness (measured before the fades).
        max_true_peak_dbtp: true-peak ceiling of the delivered audio, dBTP.

    Returns:
        A :class:`MusicVideoResult`; ``duration_s`` is within half a frame of the music.

    Raises:
        MediaError: no clips, a missing/unreadable clip or WAV, empty music, bad
            parameters, or an encode failure.
    """
    start = time.perf_counter()
    if not clips:
        raise MediaError("compose_music_video needs at least one clip")
    _check_seconds(crossfade_s=crossfade_s, fade_in_s=fade_in_s, fade_out_s=fade_out_s)
    rate = fps_fraction(fps)
    samples, sr = read_wav(music)
    if samples.size == 0:
        raise MediaError(f"music file {music} is empty")
    music_s = samples.size / sr
    n_frames = max(1, round(music_s * rate))
    segs = [probe_segment(Path(p), rate) for p in clips]
    width, height = output_size(segs[0], size)
    d = min(round(crossfade_s * rate), min(s.frames for s in segs) // 2)
    seq = _clip_sequence([s.frames for s in segs], n_frames, d)

    mastered = _mastered_music(
        samples,
        sr,
        n_frames / rate,
        (fade_in_s, fade_out_s),
        target_lufs=target_lufs,
        max_true_peak_dbtp=max_true_peak_dbtp,
        bitrate=audio_bitrate,
    )
    fades = (round(fade_in_s * rate), round(fade_out_s * rate))
    video = encode_delivered_mp4(
        _video_frames(segs, seq, d, n_frames, fades, rate, (width, height)),
        rate,
        Path(output),
        mastered,
        crf=crf,
        preset=preset,
        gop_s=gop_s,
    )
    return MusicVideoResult(
        **video.video_fields(),
        music_duration_s=music_s,
        clip_count=len(segs),
        clips_used=len(seq),
        crossfade_frames=d,
        fade_in_s=float(fade_in_s),
        fade_out_s=float(fade_out_s),
        elapsed_s=time.perf_counter() - start,
    )


def _check_seconds(**durations: float) -> None:
    """Raise MediaError for a duration that is negative or not finite."""
    for label, value in durations.items():
        if not math.isfinite(value) or value < 0:
            raise MediaError(f"{label} must be >= 0 seconds, got {value}")


def _mastered_music(
    samples: np.ndarray,
    sr: int,
    duration: Fraction,
    fades: tuple[float, float],
    *,
    target_lufs: float | None,
    max_true_peak_dbtp: float,
    bitrate: int,
) -> MasteredAudio:
    """The music padded/trimmed to ``duration`` seconds, faded in and out (raised cosine,
    ``fades`` = (in, out) seconds), at 48 kHz, mastered for the AAC encode (target
    ``None``: the music's own loudness before the fades)."""
    n_audio = round(duration * sr)
    pcm = np.zeros(n_audio, np.float32)
    pcm[: min(n_audio, samples.size)] = samples[:n_audio]
    pcm *= _fade_curve(n_audio, round(fades[0] * sr), round(fades[1] * sr))
    if target_lufs is None:
        target_lufs = measure_loudness(samples, sr).integrated_lufs
    return master_for_delivery(
        resample(pcm, sr, AUDIO_RATE),
        AUDIO_RATE,
        target_lufs=target_lufs,
        max_true_peak_dbtp=max_true_peak_dbtp,
        bitrate=bitrate,
    )


def _clip_sequence(frames: Sequence[int], n_frames: int, d: int) -> list[int]:
    """Clip indices ``0, 1, ..., n-1, 0, 1, ...`` until ``F_0 + Σ (F_k - d) >= n_frames``."""
    seq = [0]
    covered = frames[0]
    while covered < n_frames:
        k = len(seq) % len(frames)
        seq.append(k)
        covered += frames[k] - d
    return seq


def _video_frames(
    segs: Sequence[SegmentInfo],
    seq: Sequence[int],
    d: int,
    n_frames: int,
    fades: tuple[int, int],
    rate: Fraction,
    size: tuple[int, int],
) -> Iterator[av.VideoFrame]:
    """The ``n_frames`` output frames: clips in ``seq`` order, ``d``-frame cross-fades,
    faded in from and out to black over ``fades`` = (in, out) frames."""
    pending: deque[av.VideoFrame] = deque()
    joiner = CrossfadeJoiner([d] * (len(seq) - 1) if d else [], pending.append)
    emitted = 0

    def flush() -> Iterator[av.VideoFrame]:
        nonlocal emitted
        while pending and emitted < n_frames:
            frame = pending.popleft()
            gain = _fade_gain(emitted, n_frames, *fades)
            yield _to_black(frame, gain) if gain < 0.999 else frame
            emitted += 1

    for pos, k in enumerate(seq):
        joiner.start_segment(pos)
        for frame in _clip_frames(segs[k], rate, *size):
            joiner.add(frame)
            yield from flush()
            if emitted >= n_frames:
                return
        joiner.end_segment()
        yield from flush()
        if emitted >= n_frames:
            return
