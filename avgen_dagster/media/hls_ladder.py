"""An adaptive HLS ladder for real players: renditions, aligned GOPs, WebVTT subtitles, master.

Rules followed (RFC 8216 "HTTP Live Streaming" and Apple's "HLS Authoring Specification for
Apple Devices"):

* Renditions at 1080p, 720p and 360p *of the delivered format* (the short side is 1080,
  720, 360 px: 1080×1920, 720×1280, 360×640 for vertical), H.264 + AAC in MPEG-TS segments.
  The top rendition is the final MP4's own video, copied (no re-encode); the others are
  encoded with the same CRF and fixed closed GOP (``keyint = min-keyint``, no scene cut,
  IDR on the source's keyframes; by default a libx264 preset one step faster), so keyframes
  fall on the same times in every rendition and every segment starts with an IDR frame
  (Apple HLS authoring spec, "Video" and "Segments"). Audio is the
  final MP4's AAC track, copied into every rendition.
* Segments of ``segment_s`` (6 s, Apple's recommendation; a multiple of the GOP), VOD media
  playlists with ``EXT-X-PLAYLIST-TYPE:VOD``, ``EXT-X-ENDLIST``, ``EXT-X-INDEPENDENT-SEGMENTS``.
* Master playlist (RFC 8216 §4.3.4.2): per variant ``BANDWIDTH`` = the peak segment bit rate,
  ``AVERAGE-BANDWIDTH`` = the average over the playlist (both measured on the segment files,
  so container overhead and audio are included), ``RESOLUTION``, ``FRAME-RATE``, ``CODECS``
  built from the encoded streams (``avc1.PPCCLL`` from the SPS's profile_idc,
  constraint flags and level_idc, RFC 6381 §3.3; ``mp4a.40.2`` for AAC-LC) and
  ``SUBTITLES`` naming the group.
* Subtitles (RFC 8216 §3.5, §4.3.4.1): one ``EXT-X-MEDIA:TYPE=SUBTITLES`` rendition with
  ``GROUP-ID``, ``LANGUAGE``, ``NAME``, ``DEFAULT``, ``AUTOSELECT``; WebVTT segments aligned
  with the video segments, each starting with ``X-TIMESTAMP-MAP=MPEGTS:<pts>,LOCAL:00:00:00.000``
  where ``<pts>`` is the 90 kHz MPEG-TS presentation time of the video's first frame in the TS
  segments (read back from segment 0), so cue times stay on the video's timeline. Cues
  spanning a segment boundary are repeated in both segments. ``webvtt-py`` writes the
  segments; its own HLS segmenter is not used: it takes whole seconds only, gives every
  segment (also the last) the same ``EXTINF`` and counts segments up to the last cue rather
  than the media's length.

Frames are RGB ``uint8`` ``(H, W, 3)`` or PyAV ``VideoFrame`` s; sizes in pixels; times in s.
"""

from __future__ import annotations

import heapq
import math
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import av
import m3u8
import numpy as np
import webvtt
from m3u8.model import M3U8, Media, Playlist, Segment

from avgen_dagster.errors import InvalidInputError, MediaError
from avgen_dagster.media.atomic import atomic_dir
from avgen_dagster.media.probe import keyframe_times, probe_media
from avgen_dagster.media.rungs import (
    RUNG_PRESET,
    RUNG_X264_PARAMS,
    LadderEncoder,
    RenditionSpec,
    ladder_encoders,
    ladder_for,
)

__all__ = [
    "HlsLadderResult",
    "Rendition",
    "RenditionSpec",
    "build_hls_ladder",
    "ladder_for",
]

MASTER_NAME = "master.m3u8"
PLAYLIST_NAME = "index.m3u8"
SUBTITLE_GROUP = "subs"
_TS_CLOCK = 90_000


@dataclass(frozen=True)
class Rendition:
    """One packaged rendition.

    Attributes:
        name: e.g. ``"720p"``.
        width: pixels.
        height: pixels.
        playlist: its media playlist.
        segments: its ``.ts`` files in order.
        segment_durations_s: their ``EXTINF`` durations, s.
        bandwidth: peak segment bit rate, bit/s (``BANDWIDTH``).
        average_bandwidth: average bit rate over the playlist, bit/s (``AVERAGE-BANDWIDTH``).
        codecs: RFC 6381 codecs string, e.g. ``"avc1.64001f,mp4a.40.2"``.
        frame_rate: frames per second.
        copied: the video is the final MP4's own (not re-encoded).
    """

    name: str
    width: int
    height: int
    playlist: Path
    segments: tuple[Path, ...]
    segment_durations_s: tuple[float, ...]
    bandwidth: int
    average_bandwidth: int
    codecs: str
    frame_rate: float
    copied: bool


@dataclass(frozen=True)
class HlsLadderResult:
    """Result of :func:`build_hls_ladder`.

    Attributes:
        master: the master playlist.
        renditions: the variants, largest first.
        subtitles_playlist: the WebVTT media playlist, or None without captions.
        subtitle_segments: its ``.webvtt`` files.
        mpegts_start: 90 kHz PTS of the first video frame in the TS segments (the value in
            every ``X-TIMESTAMP-MAP``).
        segment_s: requested segment length, s.
        gop_s: keyframe interval of the source, s.
    """

    master: Path
    renditions: tuple[Rendition, ...]
    subtitles_playlist: Path | None
    subtitle_segments: tuple[Path, ...]
    mpegts_start: int
    segment_s: float
    gop_s: float


def _gop_s(mp4: Path, fps: float) -> float:
    """The source's fixed keyframe interval, s (raises if keyframes are irregular)."""
    times = keyframe_times(mp4)
    if len(times) < 2:
        return math.inf
    gaps = np.diff(times)
    if np.ptp(gaps[:-1] if gaps.size > 1 else gaps) > 1.5 / fps:
        raise MediaError(f"{mp4.name} has no fixed GOP (keyframes at {times[:6]} ...)")
    return float(gaps[0])


def _encode_missing(
    mp4: Path, specs: Sequence[RenditionSpec], folder: Path, fps: float, crf: int, preset: str,
    gop_s: float, params: str,
) -> dict[str, Path]:  # fmt: skip
    """Decode ``mp4`` once and encode every spec in ``specs`` from it (IDR where it has one)."""
    ladder = LadderEncoder(
        ladder_encoders(specs, folder, fps, crf=crf, preset=preset, gop_s=gop_s, x264_params=params)
    )
    try:
        with av.open(str(mp4)) as src:
            stream = src.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in src.decode(stream):
                ladder.add(frame, keyframe=frame.key_frame)
    except BaseException:
        ladder.abort()
        raise
    return ladder.close()


def _packets(path: Path, kind: str) -> Iterator[tuple[float, av.Packet]]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0] if kind == "video" else c.streams.audio[0]
        for p in c.demux(stream):
            if p.dts is None or p.size == 0:
                continue
            yield float(p.dts * p.time_base), p


def _segment(video: Path, audio: Path, folder: Path, segment_s: float) -> None:
    """Remux ``video``'s video and ``audio``'s audio into HLS TS segments in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    options = {
        "hls_time": f"{segment_s:g}",
        "hls_playlist_type": "vod",
        "hls_list_size": "0",
        "hls_segment_type": "mpegts",
        "hls_flags": "independent_segments",
        "hls_segment_filename": str(folder / "segment_%05d.ts"),
    }
    with (
        av.open(str(video)) as vsrc,
        av.open(str(audio)) as asrc,
        av.open(str(folder / PLAYLIST_NAME), "w", format="hls", options=options) as dst,
    ):
        vout = dst.add_stream_from_template(vsrc.streams.video[0])
        aout = dst.add_stream_from_template(asrc.streams.audio[0])
        merged = heapq.merge(
            ((t, 0, p) for t, p in _packets(video, "video")),
            ((t, 1, p) for t, p in _packets(audio, "audio")),
            key=lambda item: (item[0], item[1]),
        )
        for _, kind, packet in merged:
            packet.stream = vout if kind == 0 else aout
            dst.mux(packet)


def _codecs(video: Path, audio: Path) -> str:
    """RFC 6381 ``CODECS`` value from the streams' parameters."""
    with av.open(str(video)) as c:
        extra = bytes(c.streams.video[0].codec_context.extradata or b"")
    if len(extra) < 4 or extra[0] != 1:
        raise MediaError(f"{video.name}: no avcC decoder configuration to name the codec")
    avc = f"avc1.{extra[1]:02x}{extra[2]:02x}{extra[3]:02x}"
    with av.open(str(audio)) as c:
        profile = (c.streams.audio[0].codec_context.profile or "LC").upper()
    object_type = {"LC": 2, "HE-AAC": 5, "HE-AACV2": 29}.get(profile, 2)
    return f"{avc},mp4a.40.{object_type}"


def _first_video_pts(segment: Path) -> int:
    """90 kHz PTS of the first video frame (presentation order) in a TS segment."""
    with av.open(str(segment)) as c:
        vs = c.streams.video[0]
        pts = [p.pts for _, p in zip(range(64), c.demux(vs), strict=False) if p.pts is not None]
        if not pts:
            raise MediaError(f"{segment.name} has no timed video packet")
        return round(min(pts) * vs.time_base * _TS_CLOCK)


def _measure(spec: RenditionSpec, folder: Path, codecs: str, fps: float, copied: bool) -> Rendition:
    playlist = folder / PLAYLIST_NAME
    parsed = m3u8.load(str(playlist))
    segs = tuple(folder / s.uri for s in parsed.segments)
    durs = tuple(float(s.duration) for s in parsed.segments)
    bits = [p.stat().st_size * 8 for p in segs]
    peak = max(b / d for b, d in zip(bits, durs, strict=True) if d > 0)
    avg = sum(bits) / sum(durs)
    return Rendition(
        spec.name, spec.width, spec.height, playlist, segs, durs, math.ceil(peak),
        math.ceil(avg), codecs, fps, copied,
    )  # fmt: skip


def _write_subtitles(
    vtt: Path, folder: Path, durations: Sequence[float], mpegts: int
) -> tuple[Path, tuple[Path, ...]]:
    """WebVTT segments aligned with ``durations`` plus their media playlist."""
    cues = webvtt.read(str(vtt)).captions
    folder.mkdir(parents=True, exist_ok=True)
    header = [f"X-TIMESTAMP-MAP=MPEGTS:{mpegts},LOCAL:00:00:00.000"]
    playlist = M3U8()
    playlist.version, playlist.playlist_type, playlist.is_endlist = 3, "vod", True
    playlist.target_duration = math.ceil(max(durations))
    files, start = [], 0.0
    for i, d in enumerate(durations):
        end = start + d
        inside = [  # cue text is kept as read: already escaped for WebVTT
            c
            for c in cues
            if c.start_time.in_milliseconds() < end * 1000
            and c.end_time.in_milliseconds() > start * 1000
        ]
        path = folder / f"fileSequence{i}.webvtt"
        with path.open("w", encoding="utf-8") as f:
            webvtt.WebVTT(captions=inside, metadata=header).write(f)
        playlist.add_segment(Segment(uri=path.name, duration=d))
        files.append(path)
        start = end
    (folder / PLAYLIST_NAME).write_text(playlist.dumps(), encoding="utf-8")
    return folder / PLAYLIST_NAME, tuple(files)


def _write_master(
    out: Path, renditions: Sequence[Rendition], subs: Path | None, language: str, name: str
) -> Path:
    """The master playlist (RFC 8216 §4.3.4), written with the ``m3u8`` package's model."""
    master = M3U8()
    master.is_independent_segments = True
    media = []
    if subs is not None:
        media.append(
            Media(
                uri=subs.relative_to(out).as_posix(),
                type="SUBTITLES",
                group_id=SUBTITLE_GROUP,
                language=language,
                name=name,
                default="YES",
                autoselect="YES",
                forced="NO",
            )
        )
        master.add_media(media[0])
    for r in renditions:
        info: dict[str, object] = {
            "bandwidth": r.bandwidth,
            "average_bandwidth": r.average_bandwidth,
            "resolution": f"{r.width}x{r.height}",
            "codecs": r.codecs,
            "frame_rate": round(r.frame_rate, 3),
        }
        if subs is not None:
            info["subtitles"] = SUBTITLE_GROUP
        uri = r.playlist.relative_to(out).as_posix()
        master.add_playlist(Playlist(uri=uri, stream_info=info, media=media, base_uri=""))
    path = out / MASTER_NAME
    path.write_text(master.dumps(), encoding="utf-8")
    return path


def _rendition_videos(
    mp4: Path, specs: Sequence[RenditionSpec], top: tuple[int, int],
    pre_encoded: Mapping[str, Path], work: Path, opts: tuple[float, int, str, float, str],
) -> dict[str, Path]:  # fmt: skip
    """Video source per rung: the MP4 itself, a pre-encoded file, or a fresh encode."""
    fps, crf, preset, gop_s, params = opts
    videos = {s.name: mp4 for s in specs if (s.width, s.height) == top}
    for s in specs:
        if s.name not in videos and s.name in pre_encoded:
            info = probe_media(pre_encoded[s.name])
            if info.video is None or (info.video.width, info.video.height) != (s.width, s.height):
                raise MediaError(f"pre-encoded {s.name} rendition is not {s.width}x{s.height}")
            videos[s.name] = Path(pre_encoded[s.name])
    missing = [s for s in specs if s.name not in videos]
    if missing:
        videos |= _encode_missing(mp4, missing, work, fps, crf, preset, gop_s, params)
    return videos


def build_hls_ladder(
    mp4: Path | str,
    out_dir: Path | str,
    *,
    captions_vtt: Path | str | None = None,
    language: str = "en",
    subtitle_name: str = "English",
    renditions: Sequence[RenditionSpec] | None = None,
    pre_encoded: Mapping[str, Path] | None = None,
    segment_s: float = 6.0,
    crf: int = 20,
    preset: str = RUNG_PRESET,
    x264_params: str = RUNG_X264_PARAMS,
) -> HlsLadderResult:
    """Package ``mp4`` as an HLS ladder with WebVTT subtitles (module docstring), atomically.

    Args:
        mp4: the final video: H.264 + AAC with a fixed, closed GOP dividing ``segment_s``.
        out_dir: destination folder (replaced as a whole): ``master.m3u8``,
            ``<rung>/index.m3u8`` + ``segment_NNNNN.ts``, ``subs/<language>/``.
        captions_vtt: the WebVTT sidecar for the subtitles rendition, or None.
        language: its language tag (BCP 47, RFC 8216 ``LANGUAGE``).
        subtitle_name: its ``NAME``.
        renditions: the rungs; default :func:`ladder_for` the MP4's size (1080p/720p/360p).
        pre_encoded: rung name -> a video-only MP4 already encoded for it (e.g. by
            ``compose_final_video`` in the same pass); others are encoded here.
        segment_s: segment length, s (a whole multiple of the GOP).
        crf: libx264 CRF for rungs encoded here.
        preset: libx264 preset for rungs encoded here (as ``compose_final_video`` encodes
            them: :data:`~avgen_dagster.media.rungs.RUNG_PRESET`).
        x264_params: their extra libx264 parameters
            (:data:`~avgen_dagster.media.rungs.RUNG_X264_PARAMS`).

    Returns:
        An :class:`HlsLadderResult`.

    Raises:
        InvalidInputError: ``segment_s`` is not a multiple of the GOP.
        MediaError: the MP4 cannot be read, has irregular keyframes, or muxing fails.
    """
    mp4, out_dir = Path(mp4), Path(out_dir)
    info = probe_media(mp4)
    if info.video is None or info.audio is None:
        raise MediaError(f"{mp4.name} needs a video and an audio track for HLS")
    fps, top = info.video.fps, (info.video.width, info.video.height)
    gop_s = _gop_s(mp4, fps)
    if math.isfinite(gop_s) and abs(segment_s / gop_s - round(segment_s / gop_s)) > 1e-3:
        raise InvalidInputError(f"segment_s {segment_s} s is not a multiple of the GOP {gop_s} s")
    specs = list(renditions) if renditions is not None else ladder_for(*top)
    with atomic_dir(out_dir) as tmp:
        work = tmp / ".work"
        work.mkdir()
        videos = _rendition_videos(
            mp4, specs, top, pre_encoded or {}, work, (fps, crf, preset, gop_s, x264_params)
        )
        built = []
        for s in specs:
            _segment(videos[s.name], mp4, tmp / s.name, segment_s)
            codecs = _codecs(videos[s.name], mp4)
            built.append(_measure(s, tmp / s.name, codecs, fps, videos[s.name] == mp4))
        mpegts = _first_video_pts(built[0].segments[0])
        subs, sub_files = None, ()
        if captions_vtt is not None:
            subs, sub_files = _write_subtitles(
                Path(captions_vtt), tmp / "subs" / language, built[0].segment_durations_s, mpegts
            )
        _write_master(tmp, built, subs, language, subtitle_name)
        shutil.rmtree(work)
    result = HlsLadderResult(
        master=tmp / MASTER_NAME, renditions=tuple(built), subtitles_playlist=subs,
        subtitle_segments=sub_files, mpegts_start=mpegts, segment_s=segment_s, gop_s=gop_s,
    )  # fmt: skip
    return _relocated(result, tmp, out_dir)


def _relocated(result: HlsLadderResult, old: Path, new: Path) -> HlsLadderResult:
    """``result`` with every path under ``old`` (the temporary folder) moved under ``new``."""

    def moved(p: Path) -> Path:
        return new / p.relative_to(old)

    renditions = tuple(
        replace(r, playlist=moved(r.playlist), segments=tuple(moved(s) for s in r.segments))
        for r in result.renditions
    )
    subs = result.subtitles_playlist
    return replace(
        result, master=moved(result.master), renditions=renditions,
        subtitles_playlist=moved(subs) if subs is not None else None,
        subtitle_segments=tuple(moved(f) for f in result.subtitle_segments),
    )  # fmt: skip
