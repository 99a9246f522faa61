"""The composed final cut: the talking head framed for a platform, b-roll cutaways at sentence
boundaries, burned-in captions with the spoken word highlighted, a ducked music bed, in one
fast-start H.264/AAC MP4.

Frames are produced one at a time (the talking head is decoded as it is encoded, b-roll
clips are decoded as they are shown), composited in I420 (:mod:`avgen_dagster.media.i420`)
and encoded in a single libx264 pass with a fixed, closed GOP (``gop_s``; every ``gop_s`` an
IDR frame, no scene-cut keyframes) so HLS can cut the file without re-encoding. With
``ladder_dir`` the lower HLS rungs are encoded from the same frames in the same pass; each
encoder runs single-threaded in its own thread (:class:`~avgen_dagster.media.rungs.
LadderEncoder`). Cutaways start and end between sentences (halfway through the
pause), never on the first or last sentence, so the first and the last shot are the speaker;
the narration continues underneath. ``pip`` shows the b-roll full frame with the speaker in
an inset instead. After encoding, the delivered file's audio is decoded and measured
(BS.1770-4 integrated loudness and true peak) and, if it left the target by more than
``loudness_tolerance_lu`` or passed the true-peak ceiling, corrected once by re-encoding the
audio track only (the video packets are copied).

Pictures are I420 ``uint8`` buffers ``(H * 3 // 2, W)`` (RGB ``(H, W, 3)`` where noted);
times in seconds; levels in LUFS / dBTP / LU.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import av
import numpy as np

from avgen_dagster.cpus import idle_cpu_threads
from avgen_dagster.errors import InvalidInputError, MediaError
from avgen_dagster.media import i420
from avgen_dagster.media.audio_conform import conform_delivered_audio
from avgen_dagster.media.audio_io import read_wav
from avgen_dagster.media.bed import BedMix, DuckingSettings, mix_with_bed
from avgen_dagster.media.broll import BrollSource, Cutaway, open_broll, schedule_cutaways
from avgen_dagster.media.caption_render import CaptionRenderer, CaptionStyle
from avgen_dagster.media.captions import (
    CaptionRules,
    build_cues,
    split_sentences,
    write_srt,
    write_webvtt,
)
from avgen_dagster.media.decode import read_audio_track
from avgen_dagster.media.faces import FaceLandmarker, default_landmarker
from avgen_dagster.media.framing import FaceAnchor, format_size, plan_framing
from avgen_dagster.media.i420 import I420Framer, Planes
from avgen_dagster.media.probe import is_faststart, probe_media
from avgen_dagster.media.rungs import (
    RUNG_PRESET,
    RUNG_X264_PARAMS,
    LadderEncoder,
    RenditionEncoder,
    ladder_encoders,
    ladder_for,
)
from avgen_dagster.media.video_io import AUDIO_RATE, read_video_frames
from avgen_dagster.media.words import WordTiming

__all__ = [
    "BROLL_MODES",
    "ComposeOptions",
    "FinalVideoResult",
    "compose_final_video",
]

BrollMode = Literal["none", "every_n", "pip"]
#: Allowed b-roll modes.
BROLL_MODES: tuple[str, ...] = ("none", "every_n", "pip")
#: Characters per caption line by format (the Netflix maximum is 42; narrower frames take
#: fewer so the burned-in text stays large).
_LINE_CHARS = {"vertical": 26, "square": 32, "landscape": 42}
_INSET_FRAC = 0.36


@dataclass(frozen=True)
class ComposeOptions:
    """How the final cut is made.

    Attributes:
        format: ``vertical`` (1080×1920), ``landscape`` (1920×1080) or ``square`` (1080×1080).
        captions: burn captions into the picture.
        caption_style: their look.
        caption_rules: cue rules; default Netflix rules with 26 / 32 / 42 characters a line
            for vertical / square / landscape, gaps counted at the video's frame rate.
        broll_mode: ``none``, ``every_n`` (cut away on every Nth sentence) or ``pip``
            (same schedule, speaker kept in an inset).
        broll_every_n: N for ``every_n`` and ``pip`` (>= 1).
        max_cutaway_s: longest cutaway, s (cut back between words after it).
        min_cutaway_s: shortest cutaway, s (shorter sentences are skipped).
        bed: music bed level and ducking ballistics.
        target_lufs: loudness of the delivered audio, LUFS.
        limit_dbtp: true-peak limiter ceiling of the mix, dBTP (headroom for AAC).
        true_peak_ceiling_dbtp: largest true peak allowed in the delivered file, dBTP.
        loudness_tolerance_lu: allowed deviation of the delivered loudness, LU.
        crf: libx264 constant rate factor.
        preset: libx264 preset of the final MP4.
        rung_preset: libx264 preset of the lower HLS rungs encoded in the same pass.
        rung_x264_params: extra libx264 parameters of those rungs (defaults:
            :data:`~avgen_dagster.media.rungs.RUNG_PRESET` with
            :data:`~avgen_dagster.media.rungs.RUNG_X264_PARAMS`: 30 % less CPU than
            ``veryfast`` for about the same size and quality).
        gop_s: keyframe interval, s (HLS segments are cut at multiples of it).
        audio_bitrate: AAC bit rate, bit/s.
    """

    format: str = "vertical"
    captions: bool = True
    caption_style: CaptionStyle = field(default_factory=CaptionStyle)
    caption_rules: CaptionRules | None = None
    broll_mode: BrollMode = "every_n"
    broll_every_n: int = 2
    max_cutaway_s: float = 6.0
    min_cutaway_s: float = 1.2
    bed: DuckingSettings = field(default_factory=DuckingSettings)
    target_lufs: float = -16.0
    limit_dbtp: float = -2.0
    true_peak_ceiling_dbtp: float = -1.0
    loudness_tolerance_lu: float = 0.5
    crf: int = 20
    preset: str = "veryfast"
    rung_preset: str = RUNG_PRESET
    rung_x264_params: str = RUNG_X264_PARAMS
    gop_s: float = 2.0
    audio_bitrate: int = 160_000

    def __post_init__(self) -> None:
        format_size(self.format)
        if self.broll_mode not in BROLL_MODES:
            raise InvalidInputError(
                f"b-roll mode {self.broll_mode!r} is not one of {', '.join(BROLL_MODES)}"
            )
        if self.broll_every_n < 1 or not 0 < self.min_cutaway_s <= self.max_cutaway_s:
            raise InvalidInputError(
                f"b-roll needs every_n >= 1 and 0 < min_cutaway_s <= max_cutaway_s, got "
                f"{self.broll_every_n}, {self.min_cutaway_s}, {self.max_cutaway_s}"
            )
        if not -40 <= self.target_lufs <= -5 or self.limit_dbtp > self.true_peak_ceiling_dbtp:
            raise InvalidInputError(
                f"loudness target {self.target_lufs} LUFS must be -40..-5 and the limiter "
                f"({self.limit_dbtp} dBTP) at or under the ceiling "
                f"({self.true_peak_ceiling_dbtp} dBTP)"
            )

    def rules(self, fps: float) -> CaptionRules:
        """The cue rules used at ``fps`` frames per second."""
        if self.caption_rules is not None:
            return self.caption_rules
        return CaptionRules(max_chars_per_line=_LINE_CHARS[self.format], fps=fps)


@dataclass(frozen=True)
class FinalVideoResult:
    """What :func:`compose_final_video` made, with measurements of the delivered file.

    Attributes:
        path: the MP4.
        format: format name.
        width: pixels.
        height: pixels.
        fps: frames per second.
        frames: video frames.
        duration_s: video duration, s.
        gop_frames: keyframe interval, frames.
        faststart: ``moov`` before ``mdat``.
        cue_count: caption cues (burned in when ``captions``, always in the sidecars).
        captions_burned: captions drawn into the picture.
        captions_sentence_fallback: some sentence was timed at sentence level.
        untimed_words: words without an alignment from the voice.
        vtt: the WebVTT sidecar, or None.
        srt: the SRT sidecar, or None.
        cutaways: the b-roll spans, in time order.
        broll_mode: the mode used.
        face_found: a face was found on the talking head (framing is face-aware).
        upscale_factor: scale of the talking head into the frame (> 1 enlarges).
        fill_fraction: share of the frame filled around the talking head (0..1).
        music_bed: a bed was mixed in.
        bed_lu_below_voice: requested bed level, LU under the voice (None without music).
        bed_lu_measured: bed level under speech measured on the stems, LU (None without music).
        music_looped: the music was looped to the narration's length.
        integrated_lufs: loudness of the delivered file's decoded audio, LUFS.
        true_peak_dbtp: true peak of the delivered file's decoded audio, dBTP.
        audio_corrected: the audio track was re-encoded once to meet the targets.
        audio_in_spec: the delivered audio meets the loudness target and true-peak ceiling.
        rendition_videos: rung name -> video-only MP4 encoded in the same pass (empty
            without ``ladder_dir``).
    """

    path: Path
    format: str
    width: int
    height: int
    fps: float
    frames: int
    duration_s: float
    gop_frames: int
    faststart: bool
    cue_count: int
    captions_burned: bool
    captions_sentence_fallback: bool
    untimed_words: int
    vtt: Path | None
    srt: Path | None
    cutaways: tuple[Cutaway, ...]
    broll_mode: str
    face_found: bool
    upscale_factor: float
    fill_fraction: float
    music_bed: bool
    bed_lu_below_voice: float | None
    bed_lu_measured: float | None
    music_looped: bool
    integrated_lufs: float
    true_peak_dbtp: float
    audio_corrected: bool
    audio_in_spec: bool
    rendition_videos: dict[str, Path] = field(default_factory=dict)


def _face_anchor(frame: np.ndarray, landmarker: FaceLandmarker | None) -> FaceAnchor | None:
    found = (landmarker or default_landmarker()).detect(frame)
    return FaceAnchor.from_landmarks(found) if found is not None else None


class _Compositor:
    """Builds output picture i (I420) from talking-head frame i: framing, b-roll, PiP,
    captions, all plane by plane (:mod:`avgen_dagster.media.i420`)."""

    def __init__(
        self,
        framer: I420Framer,
        inset: I420Framer | None,
        cutaways: Sequence[Cutaway],
        sources: Sequence[BrollSource],
        captions: CaptionRenderer | None,
        fps: float,
    ) -> None:
        self.framer, self.inset, self.cutaways = framer, inset, list(cutaways)
        self.sources, self.captions, self.fps = sources, captions, fps
        plan = framer.plan
        iw, ih = (inset.plan.out_w, inset.plan.out_h) if inset else (0, 0)
        border = max(2, round(0.003 * plan.out_w)) * 2
        top = captions is None or captions.style.position != "top"
        margin_x, margin_y = round(0.025 * plan.out_w) * 2, round(0.025 * plan.out_h) * 2
        y = margin_y + border if top else plan.out_h - margin_y - ih - border
        self._inset_at = (plan.out_w - margin_x - iw - border, y, border)

    def _cutaway_at(self, t: float) -> int | None:
        for k, c in enumerate(self.cutaways):
            if c.start_s <= t < c.end_s:
                return k
        return None

    def _put_inset(self, out: Planes, talking: Planes) -> None:
        assert self.inset is not None
        x, y, b = self._inset_at
        w, h = self.inset.plan.out_w, self.inset.plan.out_h
        for k, div in enumerate((1, 2, 2)):
            out[k][(y - b) // div : (y + h + b) // div, (x - b) // div : (x + w + b) // div] = (
                i420.WHITE[k]
            )
        views = tuple(
            out[k][y // div : (y + h) // div, x // div : (x + w) // div]
            for k, div in enumerate((1, 2, 2))
        )
        self.inset.apply(talking, views)  # type: ignore[arg-type]

    def frame(self, i: int, talking: av.VideoFrame) -> av.VideoFrame:
        """The yuv420p picture of frame ``i`` (a new frame, composed in place)."""
        t = i / self.fps
        plan = self.framer.plan
        picture, out = i420.new_frame(plan.out_w, plan.out_h)
        source = i420.frame_planes(talking)
        k = self._cutaway_at(t)
        if k is None:
            self.framer.apply(source, out)
        else:
            c = self.cutaways[k]
            progress = (t - c.start_s) / (c.end_s - c.start_s)
            self.sources[k].frame_i420(t - c.start_s, progress, out)
            if self.inset is not None:
                self._put_inset(out, source)
        if self.captions is not None:
            self.captions.render_i420(out, t)
        return picture


def _frames(talking_head: Path, compositor: _Compositor) -> Iterator[av.VideoFrame]:
    """Composed frames as yuv420p, one per talking-head frame."""
    try:
        with av.open(str(talking_head)) as container:
            stream = container.streams.video[0]  # small: one decoding thread is cheapest
            for i, frame in enumerate(container.decode(stream)):
                yield compositor.frame(i, frame)
    except av.FFmpegError as exc:
        raise MediaError(f"cannot decode {talking_head.name}: {exc}") from exc


def _encode(
    frames: Iterator[av.VideoFrame], output: Path, ladder_dir: Path | None, fps: float,
    mixed: BedMix, opts: ComposeOptions,
) -> tuple[RenditionEncoder, dict[str, Path]]:  # fmt: skip
    """One pass: the final MP4 (with the mix) and, with ``ladder_dir``, the lower HLS rungs,
    each encoder in its own thread (:class:`LadderEncoder`): the lower rungs single-threaded,
    the top one with libx264's frame threads when cores are idle (wall 2.42x → 1.96x of a
    plain encode, idle 2 cores) and single-threaded on busy cores (where frame threads cost
    ~40 % more CPU)."""
    w, h = format_size(opts.format)
    specs = ladder_for(w, h)
    top = RenditionEncoder(
        specs[0], output, fps, crf=opts.crf, preset=opts.preset, gop_s=opts.gop_s,
        threads=0 if idle_cpu_threads() > 1 else 1,
        audio=mixed.mix, sample_rate=mixed.sample_rate, audio_bitrate=opts.audio_bitrate,
        faststart=True,
    )  # fmt: skip
    rungs = []
    if ladder_dir is not None:
        rungs = ladder_encoders(
            specs[1:], ladder_dir, fps, crf=opts.crf, preset=opts.rung_preset, gop_s=opts.gop_s,
            x264_params=opts.rung_x264_params,
        )  # fmt: skip
    ladder = LadderEncoder([top, *rungs])
    gop = max(1, round(opts.gop_s * fps))
    try:
        for i, frame in enumerate(frames):
            ladder.add(frame, keyframe=i % gop == 0)
        files = ladder.close()
    except BaseException:
        ladder.abort()
        raise
    files.pop(specs[0].name)
    return top, files


def _mix(talking_head: Path, music: Path | None, options: ComposeOptions) -> BedMix:
    voice, rate = read_audio_track(talking_head)
    tune, tune_rate = read_wav(music) if music is not None else (None, None)
    return mix_with_bed(
        voice, rate, tune, tune_rate, settings=options.bed, target_lufs=options.target_lufs,
        limit_dbtp=options.limit_dbtp, sample_rate=AUDIO_RATE,
    )  # fmt: skip


@dataclass(frozen=True)
class _Source:
    """The talking head as probed: frame rate, duration, first frame, face."""

    path: Path
    fps: float
    duration_s: float
    first: np.ndarray
    anchor: FaceAnchor | None


def _probe_source(
    path: Path, face: FaceAnchor | None, landmarker: FaceLandmarker | None
) -> _Source:
    info = probe_media(path)
    if info.video is None or info.audio is None:
        raise MediaError(f"{path.name} needs a video and an audio track (the narration)")
    first = next(read_video_frames(path))
    anchor = face if face is not None else _face_anchor(first, landmarker)
    return _Source(path, info.video.fps, info.duration_s, first, anchor)


def _broll_plan(
    src: _Source,
    words: Sequence[WordTiming],
    counts: Sequence[int] | None,
    broll: Sequence[Path | str],
    opts: ComposeOptions,
) -> tuple[list[Cutaway], list[BrollSource], I420Framer | None]:
    """Cutaways, their picture sources and the speaker inset (``pip``)."""
    if opts.broll_mode == "none" or not broll:
        return [], [], None
    w, h = format_size(opts.format)
    cutaways = schedule_cutaways(
        split_sentences(words, counts), words, [Path(b) for b in broll], fps=src.fps,
        duration_s=src.duration_s, every_n=opts.broll_every_n, min_s=opts.min_cutaway_s,
        max_s=opts.max_cutaway_s,
    )  # fmt: skip
    sources = [open_broll(c.source, w, h, variant=k) for k, c in enumerate(cutaways)]
    inset = None
    if opts.broll_mode == "pip" and cutaways:
        side = round(_INSET_FRAC * min(w, h)) // 2 * 2
        sh, sw = src.first.shape[:2]
        iplan = plan_framing(sw, sh, side, round(side * 1.25) // 2 * 2, src.anchor,
                             eye_line=0.4, face_height_frac=0.5, crop_to_face=True)  # fmt: skip
        inset = I420Framer(iplan, fill="blur")
    return cutaways, sources, inset


def compose_final_video(
    talking_head: Path | str,
    words: Sequence[WordTiming],
    output: Path | str,
    *,
    sentence_word_counts: Sequence[int] | None = None,
    broll: Sequence[Path | str] = (),
    music: Path | str | None = None,
    options: ComposeOptions | None = None,
    face: FaceAnchor | None = None,
    landmarker: FaceLandmarker | None = None,
    vtt_path: Path | str | None = None,
    srt_path: Path | str | None = None,
    ladder_dir: Path | str | None = None,
) -> FinalVideoResult:
    """Compose the final cut (module docstring) into ``output``, atomically.

    Args:
        talking_head: the stitched talking-head MP4 (video + the narration's audio).
        words: the narration's word timings on the talking head's timeline.
        output: destination ``.mp4``.
        sentence_word_counts: words per sentence (e.g. per script segment); default:
            sentence punctuation.
        broll: b-roll files, used in turn: video clips (any FFmpeg format) or still images
            (``.png``, ``.jpg``, ``.jpeg``, ``.webp``, ``.bmp``: slow pan-and-zoom).
        music: a WAV for the music bed, or None.
        options: see :class:`ComposeOptions`.
        face: where the face is in the talking head; default: detected on its first frame.
        landmarker: face detector for that; default the shared MediaPipe landmarker.
        vtt_path: WebVTT sidecar to write; default ``output`` with ``.vtt``.
        srt_path: SRT sidecar to write; default ``output`` with ``.srt``.
        ladder_dir: if given, the lower HLS rungs (:func:`~avgen_dagster.media.hls_ladder.
            ladder_for` the format, 720p and 360p) are encoded from the same frames in the
            same pass into ``ladder_dir/<rung>.mp4`` (video only, same GOP), for
            :func:`~avgen_dagster.media.hls_ladder.build_hls_ladder` ``(pre_encoded=...)``.

    Returns:
        A :class:`FinalVideoResult`.

    Raises:
        InvalidInputError: bad options, no words, unreadable b-roll, music or font.
        MediaError: the talking head cannot be read or the encode fails.
    """
    opts = options or ComposeOptions()
    output = Path(output)
    if not words:
        raise InvalidInputError("the final video needs the narration's word timings")
    src = _probe_source(Path(talking_head), face, landmarker)
    w, h = format_size(opts.format)
    plan = plan_framing(src.first.shape[1], src.first.shape[0], w, h, src.anchor)
    track = build_cues(
        words, sentence_word_counts=sentence_word_counts, rules=opts.rules(src.fps),
        duration_s=src.duration_s,
    )  # fmt: skip
    renderer = CaptionRenderer(track, w, h, opts.caption_style) if opts.captions else None
    cutaways, sources, inset = _broll_plan(src, words, sentence_word_counts, broll, opts)
    vtt = write_webvtt(track, vtt_path or output.with_suffix(".vtt"))
    srt = write_srt(track, srt_path or output.with_suffix(".srt"))
    mixed = _mix(src.path, Path(music) if music is not None else None, opts)
    compositor = _Compositor(I420Framer(plan), inset, cutaways, sources, renderer, src.fps)
    try:
        top, rungs = _encode(
            _frames(src.path, compositor), output, Path(ladder_dir) if ladder_dir else None,
            src.fps, mixed, opts,
        )  # fmt: skip
    finally:
        for s in sources:
            s.close()
    delivered = conform_delivered_audio(
        output, mixed.mix, mixed.sample_rate, target_lufs=opts.target_lufs,
        ceiling_dbtp=opts.true_peak_ceiling_dbtp, tolerance_lu=opts.loudness_tolerance_lu,
        bitrate=opts.audio_bitrate,
    )  # fmt: skip
    return FinalVideoResult(
        path=output, format=opts.format, width=w, height=h, fps=src.fps, frames=top.frames,
        duration_s=top.frames / src.fps,
        gop_frames=max(1, round(opts.gop_s * src.fps)), faststart=is_faststart(output),
        cue_count=len(track.cues), captions_burned=opts.captions,
        captions_sentence_fallback=track.sentence_fallback,
        untimed_words=track.untimed_word_count, vtt=vtt, srt=srt, cutaways=tuple(cutaways),
        broll_mode=opts.broll_mode if cutaways else "none", face_found=src.anchor is not None,
        upscale_factor=plan.upscale_factor, fill_fraction=plan.fill_fraction,
        music_bed=music is not None,
        bed_lu_below_voice=opts.bed.bed_lu_below_voice if music is not None else None,
        bed_lu_measured=mixed.bed_lu_below_voice, music_looped=mixed.looped,
        integrated_lufs=delivered.integrated_lufs, true_peak_dbtp=delivered.true_peak_dbtp,
        audio_corrected=delivered.corrected, audio_in_spec=delivered.in_spec,
        rendition_videos=rungs,
    )  # fmt: skip
