"""Join MP4 segments with video and audio cross-fades into one fast-start MP4 (one encode).

Audio first: every segment's track (or its WAV) goes through one FFmpeg filter graph
(per-segment conform to 48 kHz mono, padded or trimmed to the segment's video duration,
then a chain of ``acrossfade``); the mixed programme is mastered for delivery
(:func:`avgen_dagster.media.delivery.master_for_delivery`: loudness target, true-peak
limiter with codec headroom, verified on a decoded trial encode), because cross-fades add
overlapping peaks and the AAC encode adds overshoot. Then video: every segment is decoded
once (PyAV, in a background thread) and conformed in a filter graph, consecutive segments
are cross-faded by :class:`~avgen_dagster.media.crossfade.CrossfadeJoiner` (only the few
overlapping frames are blended), and the frames go straight to the H.264/AAC encoder
(:func:`avgen_dagster.media.video_io.encode_video_mp4`: fixed closed GOP for HLS, fast
start) with the mastered audio. Finally the delivered file's audio is decoded and measured
(:func:`avgen_dagster.media.delivery.measure_delivered_audio`).

Timing rule (frames at ``fps``): segment ``k`` lasts ``F_k`` frames; the requested cross-fade
``c = crossfade_s * fps`` frames is spread over the ``n - 1`` joins by cumulative rounding,
``D_k = R(k c) - R((k - 1) c)`` with ``R(x) = floor(x + 1/2)`` (each join gets ``floor(c)``
or ``ceil(c)`` frames), so the output has ``sum(F_k) - R((n - 1) c)`` frames: the duration is
``sum(durations) - (n - 1) * crossfade_s`` within half a frame for any ``n``. Cross-fade
``k`` starts at ``(F_0 + ... + F_{k-1} - D_1 - ... - D_k) / fps`` seconds. Each segment's
audio is padded with silence or trimmed to its video duration first (sample counts by the
same cumulative rounding), so audio and video stay in sync at every join and end together.
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avgen_dagster.errors import MediaError
from avgen_dagster.media.audio_io import read_wav
from avgen_dagster.media.crossfade import CrossfadeJoiner, cumulative_round
from avgen_dagster.media.decode import open_media
from avgen_dagster.media.delivery import (
    MAX_TRUE_PEAK_DBTP,
    DeliveredVideo,
    encode_delivered_mp4,
    master_for_delivery,
)
from avgen_dagster.media.video_io import AUDIO_RATE, fps_fraction

__all__ = ["SegmentInfo", "StitchResult", "output_size", "probe_segment", "stitch_segments"]

#: Frame-threaded decoding only pays off when libx264 leaves cores idle: on small machines
#: the encoder saturates every core and decoder threads only add overhead (measured on 2
#: cores: same wall time, +35 % decode CPU).
_DECODE_THREADS_MIN_CORES = 4


@dataclass(frozen=True)
class StitchResult(DeliveredVideo):
    """Result of :func:`stitch_segments`: the :class:`~avgen_dagster.media.delivery.
    DeliveredVideo` fields (path, durations, frames, size, loudness target, delivered audio)
    and:

    Attributes:
        segment_count: number of input segments.
        crossfade_s: mean cross-fade actually used, seconds (after the whole-frame spread
            and clamping; 0 for one segment).
        crossfade_frames: frames of each of the ``n - 1`` cross-fades.
        crossfade_clamped: True if ``crossfade_s`` was clamped to half the shortest segment.
        elapsed_s: wall-clock time of the whole call, seconds.
    """

    segment_count: int
    crossfade_s: float
    crossfade_frames: tuple[int, ...]
    crossfade_clamped: bool
    elapsed_s: float


@dataclass(frozen=True)
class SegmentInfo:
    """Stream parameters of one input segment (:func:`probe_segment`).

    Attributes:
        path: the file.
        frames: video frames after conforming to the output frame rate.
        same_rate: the segment's own frame rate is the output's (within 0.001 fps).
        width: pixels.
        height: pixels.
        pix_fmt: the video stream's pixel format.
        time_base: the video stream's time base.
        has_audio: the file has an audio stream.
        sample_rate: audio rate, Hz (0 without audio).
        sample_fmt: FFmpeg audio sample format name ("" without audio).
        layout: FFmpeg channel layout name ("" without audio).
    """

    path: Path
    frames: int
    same_rate: bool
    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    has_audio: bool
    sample_rate: int
    sample_fmt: str
    layout: str


def probe_segment(path: Path, rate: Fraction) -> SegmentInfo:
    """Read a segment's stream parameters and count its frames at the output ``rate``.

    Frames: the header's count at the same rate, else ``round(duration * rate)``, else (no
    count, no duration) the video packets counted.

    Raises:
        MediaError: a missing or unreadable file, no video stream, or no frames.
    """
    try:
        with open_media(path, "segment") as c:
            if not c.streams.video:
                raise MediaError(f"segment {path} has no video stream")
            vs = c.streams.video[0]
            src_rate = vs.average_rate or vs.guessed_rate
            if vs.duration is not None and vs.time_base is not None:
                dur = float(vs.duration * vs.time_base)
            elif c.duration is not None:
                dur = c.duration / av.time_base
            else:
                dur = 0.0
            same = src_rate is not None and abs(float(src_rate) - float(rate)) < 1e-3
            frames = int(vs.frames) if same and vs.frames > 0 else round(dur * float(rate))
            if frames < 1 and same:  # no header count or duration: count the packets
                frames = sum(1 for packet in c.demux(vs) if packet.size)
            if frames < 1:
                raise MediaError(f"segment {path} has no video frames")
            aus = c.streams.audio[0] if c.streams.audio else None
            cc = vs.codec_context
            return SegmentInfo(
                path=path,
                frames=frames,
                same_rate=same,
                width=cc.width,
                height=cc.height,
                pix_fmt=cc.pix_fmt or "yuv420p",
                time_base=vs.time_base,
                has_audio=aus is not None,
                sample_rate=aus.codec_context.sample_rate if aus else 0,
                sample_fmt=aus.codec_context.format.name if aus else "",
                layout=aus.codec_context.layout.name if aus else "",
            )
    except av.FFmpegError as exc:
        raise MediaError(f"cannot read segment {path}: {exc}") from exc


def output_size(first: SegmentInfo, size: tuple[int, int] | None) -> tuple[int, int]:
    """Output ``(width, height)``: ``size``, else the first segment's, rounded down to even.

    Raises:
        MediaError: a side under 2 px.
    """
    w, h = (first.width, first.height) if size is None else (int(size[0]), int(size[1]))
    width, height = w // 2 * 2, h // 2 * 2
    if width < 2 or height < 2:
        raise MediaError(f"invalid output size {width}x{height}")
    return width, height


@dataclass(frozen=True)
class _Plan:
    crossfades: list[int]  # frames per join (empty: no fades)
    clamped: bool
    seg_samples: list[int]  # audio samples per segment at AUDIO_RATE
    xf_samples: list[int]  # audio samples per join


def _plan(segs: Sequence[SegmentInfo], crossfade_s: float, rate: Fraction) -> _Plan:
    n = len(segs)
    wanted = float(crossfade_s * rate) if n > 1 else 0.0
    c = min(wanted, float(min(s.frames for s in segs) // 2))
    xfs = cumulative_round([c] * (n - 1)) if c >= 1 else []
    per_frame = AUDIO_RATE / float(rate)
    return _Plan(
        crossfades=xfs,
        clamped=c < wanted,
        seg_samples=cumulative_round([s.frames * per_frame for s in segs]),
        xf_samples=cumulative_round([d * per_frame for d in xfs]),
    )


def stitch_segments(
    segments: Sequence[Path],
    output: Path,
    *,
    crossfade_s: float = 0.25,
    fps: float = 25,
    gop_s: float = 2.0,
    crf: int = 20,
    preset: str = "veryfast",
    audio: Sequence[Path] | None = None,
    size: tuple[int, int] | None = None,
    audio_bitrate: int = 128_000,
    target_lufs: float | None = None,
    max_true_peak_dbtp: float = MAX_TRUE_PEAK_DBTP,
) -> StitchResult:
    """Join MP4 segments with cross-fades into one fast-start MP4 (one encode pass).

    Video: each segment is conformed (``fps`` filter if its rate differs; scaled to fit and
    padded if its size differs; yuv420p), then consecutive segments are joined by a linear
    cross-fade (``xfade=transition=fade`` semantics, blended on the overlapping frames).
    Audio: each segment's track is resampled to 48 kHz mono, padded/trimmed to its video
    duration, then joined by ``acrossfade`` with equal-power quarter-sine curves
    (``qsin``/``qsin``), which keep the power of uncorrelated material (speech) constant
    through the join; the mix is mastered so that the delivered AAC decodes within the
    loudness target and under the true-peak ceiling (module docstring).

    Cross-fade length: ``c = crossfade_s * fps`` frames, spread over the joins in whole
    frames by cumulative rounding (module docstring). If ``c`` exceeds half of the shortest
    segment, ``floor(min F_k / 2)`` frames, it is clamped to that, so no fade-in overlaps
    the next fade-out. One segment, or ``c < 1`` frame, joins without fades (audio by ``concat``).

    Encoding: libx264 (``crf``, ``preset``, all cores), GOP fixed at ``round(gop_s * fps)``
    frames (``keyint = min-keyint``, ``scenecut=0``, closed GOP) so HLS can cut every
    ``gop_s``; AAC-LC mono 48 kHz; ``movflags=+faststart``; written to a temp file and
    renamed.

    Args:
        segments: MP4 (or any FFmpeg-readable) files with an H.264/any video stream and
            usually an audio stream (missing audio becomes silence).
        output: destination ``.mp4``.
        crossfade_s: cross-fade length, seconds (>= 0).
        fps: output frame rate.
        gop_s: keyframe interval, seconds.
        crf: libx264 constant rate factor.
        preset: libx264 preset.
        audio: optional WAV files (one per segment) used instead of the segments' own audio,
            e.g. loudness-normalised clips.
        size: output ``(width, height)``; default the first segment's size (made even).
        audio_bitrate: AAC bit rate, bits per second.
        target_lufs: loudness of the delivered audio, LUFS; ``None`` keeps the mix's own
            (segments normalised to the target already).
        max_true_peak_dbtp: true-peak ceiling of the delivered audio, dBTP.

    Returns:
        A :class:`StitchResult` (``delivered``: the written file's audio, measured).

    Raises:
        MediaError: no segments, a missing/corrupt segment or WAV, mismatched ``audio``
            count, bad parameters, or an FFmpeg failure.
    """
    t_start = time.perf_counter()
    if not segments:
        raise MediaError("stitch_segments needs at least one segment")
    if crossfade_s < 0 or not math.isfinite(crossfade_s):
        raise MediaError(f"crossfade_s must be >= 0 seconds, got {crossfade_s}")
    if gop_s <= 0:
        raise MediaError(f"gop_s must be > 0 seconds, got {gop_s}")
    if audio is not None and len(audio) != len(segments):
        raise MediaError(f"got {len(audio)} audio files for {len(segments)} segments")
    rate = fps_fraction(fps)
    segs = [probe_segment(Path(p), rate) for p in segments]
    wavs = [read_wav(p) for p in audio] if audio is not None else None
    frame_size = output_size(segs[0], size)  # a bad size fails before any work
    plan = _plan(segs, crossfade_s, rate)
    mastered = master_for_delivery(
        _mix_audio(segs, wavs, plan),
        AUDIO_RATE,
        target_lufs=target_lufs,
        max_true_peak_dbtp=max_true_peak_dbtp,
        bitrate=audio_bitrate,
    )
    video = encode_delivered_mp4(
        _joined_frames(segs, plan.crossfades, rate, frame_size),
        rate,
        Path(output),
        mastered,
        crf=crf,
        preset=preset,
        gop_s=gop_s,
    )
    xfs = plan.crossfades
    return StitchResult(
        **video.video_fields(),
        segment_count=len(segs),
        crossfade_s=float(sum(xfs) / len(xfs) / rate) if xfs else 0.0,
        crossfade_frames=tuple(xfs),
        crossfade_clamped=plan.clamped,
        elapsed_s=time.perf_counter() - t_start,
    )


def _drain(sink: av.filter.context.FilterContext) -> list:
    frames = []
    while True:
        try:
            frames.append(sink.pull())
        except (av.BlockingIOError, av.EOFError):
            return frames


def _link(chain: Sequence[av.filter.context.FilterContext]) -> None:
    for a, b in itertools.pairwise(chain):
        a.link_to(b)


def _mix_audio(
    segs: Sequence[SegmentInfo], wavs: list[tuple[np.ndarray, int]] | None, plan: _Plan
) -> np.ndarray:
    """The segments' audio conformed, cut to their video durations and cross-faded.

    Returns:
        float32 ``(sum(seg_samples) - sum(xf_samples),)`` at :data:`AUDIO_RATE`.
    """
    graph = av.filter.Graph()
    sources, tails = [], []
    for k, s in enumerate(segs):
        if wavs is not None:
            sr, fmt, layout = wavs[k][1], "flt", "mono"
        elif s.has_audio:
            sr, fmt, layout = s.sample_rate, s.sample_fmt, s.layout or "mono"
        else:
            sr, fmt, layout = AUDIO_RATE, "flt", "mono"
        chain = [
            graph.add(
                "abuffer",
                f"sample_rate={sr}:sample_fmt={fmt}:channel_layout={layout}:time_base=1/{sr}",
            ),
            graph.add("aresample", f"{AUDIO_RATE}"),
            graph.add(
                "aformat", f"sample_fmts=fltp:channel_layouts=mono:sample_rates={AUDIO_RATE}"
            ),
            graph.add("apad", f"whole_len={plan.seg_samples[k]}"),
            graph.add("atrim", f"end_sample={plan.seg_samples[k]}"),
        ]
        _link(chain)
        sources.append(chain[0])
        tails.append(chain[-1])
    out = tails[0]
    if len(segs) > 1 and not plan.crossfades:
        out = graph.add("concat", f"n={len(segs)}:v=0:a=1")
        for k, tail in enumerate(tails):
            tail.link_to(out, 0, k)
    elif len(segs) > 1:
        for k in range(1, len(segs)):
            fade = f"nb_samples={plan.xf_samples[k - 1]}:curve1=qsin:curve2=qsin"
            xf = graph.add("acrossfade", fade)
            out.link_to(xf, 0, 0)
            tails[k].link_to(xf, 0, 1)
            out = xf
    sink = graph.add("abuffersink")
    out.link_to(sink, 0, 0)
    try:
        graph.configure()
        chunks: list[np.ndarray] = []
        for k, s in enumerate(segs):
            for frame in _segment_audio(s, wavs[k] if wavs is not None else None):
                sources[k].push(frame)
                chunks.extend(f.to_ndarray()[0] for f in _drain(sink))
            sources[k].push(None)
            chunks.extend(f.to_ndarray()[0] for f in _drain(sink))
    except av.FFmpegError as exc:
        raise MediaError(f"mixing the segments' audio failed: {exc}") from exc
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def _segment_audio(
    s: SegmentInfo, wav: tuple[np.ndarray, int] | None, step: int = 4096
) -> Iterator[av.AudioFrame]:
    """Segment ``s``'s audio frames with running sample counts as time stamps (``wav``
    instead of its own track when given; nothing for a silent segment), so gaps or offsets
    in the source time stamps cannot desynchronise the joins."""
    if wav is not None:
        pcm, sr = wav
        for i in range(0, pcm.size, step):
            af = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(pcm[None, i : i + step]), format="flt", layout="mono"
            )
            af.sample_rate, af.pts, af.time_base = sr, i, Fraction(1, sr)
            yield af
        return
    if not s.has_audio:
        return
    with open_media(s.path, "segment") as c:
        pts = 0
        try:
            for frame in c.decode(c.streams.audio[0]):
                frame.pts = pts
                pts += frame.samples
                yield frame
        except av.FFmpegError as exc:
            raise MediaError(f"cannot decode the audio of segment {s.path}: {exc}") from exc


def _video_graph(
    segs: Sequence[SegmentInfo], rate: Fraction, size: tuple[int, int]
) -> tuple[av.filter.Graph, list, list]:
    """One conform chain per segment (buffer → fps → scale/pad → yuv420p → trim → sink)."""
    width, height = size
    graph = av.filter.Graph()
    sources, sinks = [], []
    for s in segs:
        tb = 1 / rate if s.same_rate else s.time_base
        chain = [
            graph.add(
                "buffer",
                f"video_size={s.width}x{s.height}:pix_fmt={s.pix_fmt}:"
                f"time_base={tb.numerator}/{tb.denominator}:pixel_aspect=1/1:"
                f"frame_rate={rate.numerator}/{rate.denominator}",
            )
        ]
        if not s.same_rate:
            chain.append(graph.add("fps", f"fps={rate.numerator}/{rate.denominator}"))
        if (s.width, s.height) != (width, height):
            fit = f"{width}:{height}:force_original_aspect_ratio=decrease"
            chain += [graph.add("scale", fit), graph.add("pad", f"{width}:{height}:-1:-1")]
        chain += [
            graph.add("setsar", "1"),
            graph.add("format", "yuv420p"),
            graph.add("trim", f"end_frame={s.frames}"),
            graph.add("buffersink"),
        ]
        _link(chain)
        sources.append(chain[0])
        sinks.append(chain[-1])
    try:
        graph.configure()
    except av.FFmpegError as exc:
        raise MediaError(f"cannot build the stitch filter graph: {exc}") from exc
    return graph, sources, sinks


def _joined_frames(
    segs: Sequence[SegmentInfo],
    crossfades: Sequence[int],
    rate: Fraction,
    size: tuple[int, int],
) -> Iterator[av.VideoFrame]:
    """Every output frame in order: segments decoded, conformed, then cross-faded.

    Video pts become frame indices (same-rate input) or start at 0 in the stream time base
    (the ``fps`` filter conforms them).
    """
    _graph, sources, sinks = _video_graph(segs, rate, size)  # the graph owns the filters
    pending: deque[av.VideoFrame] = deque()
    joiner = CrossfadeJoiner(crossfades, pending.append)
    prefetch = _Prefetcher(segs)
    try:
        for k, s in enumerate(segs):
            joiner.start_segment(k)
            v0: int | None = None
            for index, frame in enumerate(prefetch.frames(k)):
                if s.same_rate:
                    frame.pts = index
                else:
                    v0 = (frame.pts or 0) if v0 is None else v0
                    frame.pts = (frame.pts or 0) - v0
                sources[k].push(frame)
                for out in _drain(sinks[k]):
                    joiner.add(out)
                yield from _popall(pending)
            sources[k].push(None)
            for out in _drain(sinks[k]):
                joiner.add(out)
            joiner.end_segment()
            yield from _popall(pending)
    except av.FFmpegError as exc:
        raise MediaError(f"stitching the segments' video failed: {exc}") from exc
    finally:
        prefetch.close()


def _popall(pending: deque[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    while pending:
        yield pending.popleft()


class _Prefetcher:
    """Decode all segments' video in a background thread, in order, into a bounded queue.

    FFmpeg releases the GIL while decoding, so decoding the next frames overlaps with
    filtering and encoding on the main thread; the queue bound (``depth`` frames) keeps
    memory flat. Items are ``(k, frame)``; ``(k, None)`` ends segment ``k``; an exception
    is forwarded and re-raised by :meth:`frames`.
    """

    def __init__(self, segs: Sequence[SegmentInfo], depth: int = 24) -> None:
        self._segs = segs
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stitch-decode", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for k, s in enumerate(self._segs):
                with av.open(str(s.path)) as c:
                    vs = c.streams.video[0]
                    if (os.cpu_count() or 1) > _DECODE_THREADS_MIN_CORES:
                        vs.thread_type = "AUTO"
                    for frame in c.decode(vs):
                        if not self._put((k, frame)):
                            return
                if not self._put((k, None)):
                    return
        except BaseException as exc:  # forwarded to the consumer
            self._put((-1, exc))

    def frames(self, k: int) -> Iterator[av.VideoFrame]:
        """Yield the decoded video frames of segment ``k`` (segments must be read in order)."""
        while True:
            kk, item = self._queue.get()
            if kk == -1:
                exc = item
                if isinstance(exc, av.FFmpegError):
                    raise MediaError(f"cannot decode segment {self._segs[k].path}: {exc}")
                raise exc  # type: ignore[misc]
            if item is None:
                return
            yield item

    def close(self) -> None:
        """Stop the decoding thread (the queue is abandoned)."""
        self._stop.set()
        self._thread.join(timeout=5)
