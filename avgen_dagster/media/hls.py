"""HLS export by remux (no re-encode) and playlist validation.

Rules checked (RFC 8216 "HTTP Live Streaming" and Apple's HLS authoring specification):

* the playlist starts with ``#EXTM3U`` (RFC 8216 section 4.3.1.1);
* ``EXT-X-VERSION`` >= 3 when any ``EXTINF`` duration is fractional (section 7);
* VOD: ``EXT-X-PLAYLIST-TYPE:VOD`` and ``EXT-X-ENDLIST`` (sections 4.3.3.5, 4.3.3.4);
* every ``EXTINF`` rounded to the nearest integer <= ``EXT-X-TARGETDURATION``
  (section 4.3.3.1);
* Apple authoring spec: target duration about 6 s (we require <= ``max_target_s``), no
  segment longer than the target by more than 0.5 s, each segment starting with an IDR
  frame (checked by decoding its first video frame);
* every segment URI resolves to an existing file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
import m3u8

from avgen_dagster.errors import MediaError
from avgen_dagster.media.atomic import atomic_dir

__all__ = ["HlsResult", "export_hls", "validate_hls_playlist"]

PLAYLIST_NAME = "index.m3u8"
SEGMENT_PATTERN = "segment_%05d.ts"


@dataclass(frozen=True)
class HlsResult:
    """Result of :func:`export_hls`.

    Attributes:
        playlist: ``out_dir/index.m3u8``.
        segments: the ``.ts`` segment files in playlist order.
        target_duration_s: ``EXT-X-TARGETDURATION``, seconds.
        segment_durations_s: each segment's ``EXTINF``, seconds.
    """

    playlist: Path
    segments: tuple[Path, ...]
    target_duration_s: float
    segment_durations_s: tuple[float, ...]


def export_hls(mp4: Path, out_dir: Path, *, segment_s: float = 6.0) -> HlsResult:
    """Remux an MP4 into an HLS VOD playlist with MPEG-TS segments (no re-encode).

    Packets are copied as they are (H.264 is converted to Annex B and AAC gets ADTS headers
    by the muxer's bitstream filters); the ``hls`` muxer cuts at the first keyframe at or
    after each ``segment_s`` boundary, so the source needs keyframes at a divisor of
    ``segment_s`` (``stitch_segments`` puts one every 2 s). The folder is built under a
    temporary name and renamed into place as a whole (an existing ``out_dir`` is replaced).

    Args:
        mp4: input file (H.264 + AAC expected; any codecs MPEG-TS can carry work).
        out_dir: destination folder; gets ``index.m3u8`` and ``segment_NNNNN.ts``.
        segment_s: target segment length, seconds (Apple recommends 6).

    Returns:
        An :class:`HlsResult` with paths inside the final ``out_dir``.

    Raises:
        MediaError: missing/corrupt input, no video stream, or a muxing failure.
    """
    mp4, out_dir = Path(mp4), Path(out_dir)
    if not mp4.is_file():
        raise MediaError(f"HLS input not found: {mp4}")
    if segment_s <= 0:
        raise MediaError(f"segment_s must be > 0 seconds, got {segment_s}")
    try:
        with av.open(str(mp4)) as src, atomic_dir(out_dir) as tmp:
            if not src.streams.video:
                raise MediaError(f"{mp4} has no video stream to segment")
            streams = list(src.streams.video[:1]) + list(src.streams.audio[:1])
            options = {
                "hls_time": f"{segment_s:g}",
                "hls_playlist_type": "vod",
                "hls_list_size": "0",
                "hls_segment_type": "mpegts",
                "hls_segment_filename": str(tmp / SEGMENT_PATTERN),
            }
            with av.open(str(tmp / PLAYLIST_NAME), "w", format="hls", options=options) as dst:
                mapping = {s.index: dst.add_stream_from_template(s) for s in streams}
                for packet in src.demux(streams):
                    if packet.dts is None or packet.size == 0:
                        continue
                    packet.stream = mapping[packet.stream.index]
                    dst.mux(packet)
    except av.FFmpegError as exc:
        raise MediaError(f"HLS export of {mp4} failed: {exc}") from exc
    playlist = out_dir / PLAYLIST_NAME
    parsed = m3u8.load(str(playlist))
    return HlsResult(
        playlist=playlist,
        segments=tuple(out_dir / seg.uri for seg in parsed.segments),
        target_duration_s=float(parsed.target_duration or 0),
        segment_durations_s=tuple(float(seg.duration) for seg in parsed.segments),
    )


def _first_frame_is_idr(segment: Path) -> str | None:
    """Return a problem string, or None when the first video packet/frame is a keyframe."""
    try:
        with av.open(str(segment)) as c:
            if not c.streams.video:
                return f"segment {segment.name} has no video stream"
            vs = c.streams.video[0]
            first_packet = True
            for packet in c.demux(vs):
                if packet.size == 0:
                    continue
                if first_packet and not packet.is_keyframe:
                    return f"segment {segment.name} does not start with a keyframe packet"
                first_packet = False
                for frame in packet.decode():
                    if not frame.key_frame:
                        return f"segment {segment.name}: first decoded frame is not a keyframe"
                    return None
            # A decoder may hold its frames until flushed (a one-frame last segment).
            for frame in vs.codec_context.decode(None):
                return (
                    None
                    if frame.key_frame
                    else (f"segment {segment.name}: first decoded frame is not a keyframe")
                )
            return f"segment {segment.name} has no decodable video frame"
    except av.FFmpegError as exc:
        return f"segment {segment.name} cannot be decoded: {exc}"


def validate_hls_playlist(
    playlist: Path, *, max_target_s: float = 6.0, tolerance_s: float = 0.5
) -> list[str]:
    """Check a VOD media playlist against RFC 8216 and the Apple authoring rules above.

    Args:
        playlist: path of the ``.m3u8`` file; segment URIs are resolved relative to it.
        max_target_s: largest acceptable ``EXT-X-TARGETDURATION``, seconds.
        tolerance_s: how much a segment may exceed the target duration, seconds.

    Returns:
        Human-readable problems; an empty list means the playlist is valid.

    Raises:
        Nothing for invalid content (reported in the list); MediaError is never raised.
    """
    playlist = Path(playlist)
    if not playlist.is_file():
        return [f"playlist not found: {playlist}"]
    text = playlist.read_text(encoding="utf-8", errors="replace")
    problems: list[str] = []
    if not text.startswith("#EXTM3U"):
        problems.append("first line is not #EXTM3U")
    try:
        parsed = m3u8.loads(text)
    except Exception as exc:  # the parser raises assorted errors on malformed input
        return [*problems, f"playlist cannot be parsed: {exc}"]
    if parsed.is_variant:
        return [*problems, "this is a master (variant) playlist, not a media playlist"]
    segments = list(parsed.segments)
    if not segments:
        problems.append("playlist lists no segments")
    durations = [float(s.duration) for s in segments if s.duration is not None]
    version = int(parsed.version) if parsed.version is not None else 1
    if any(not float(d).is_integer() for d in durations) and version < 3:
        problems.append(
            f"EXT-X-VERSION is {version} but EXTINF durations are fractional (needs >= 3)"
        )
    if (parsed.playlist_type or "").lower() != "vod":
        problems.append(f"EXT-X-PLAYLIST-TYPE is {parsed.playlist_type!r}, expected VOD")
    if not parsed.is_endlist:
        problems.append("EXT-X-ENDLIST is missing (a VOD playlist must end with it)")
    target = parsed.target_duration
    if target is None:
        problems.append("EXT-X-TARGETDURATION is missing")
    else:
        target = float(target)
        if target > max_target_s:
            problems.append(f"target duration {target:g} s exceeds {max_target_s:g} s")
    base = playlist.parent
    for i, seg in enumerate(segments):
        d = float(seg.duration) if seg.duration is not None else math.nan
        if target is not None:
            if math.floor(d + 0.5) > target:
                problems.append(
                    f"segment {i} ({seg.uri}) EXTINF {d:.3f} s rounds above target {target:g} s"
                )
            if d > target + tolerance_s:
                problems.append(
                    f"segment {i} ({seg.uri}) lasts {d:.3f} s, more than target "
                    f"{target:g} s + {tolerance_s:g} s"
                )
        path = base / seg.uri
        if "://" in seg.uri:
            problems.append(f"segment {i} URI {seg.uri} is remote; only local files are checked")
            continue
        if not path.is_file():
            problems.append(f"segment {i} file is missing: {seg.uri}")
            continue
        problem = _first_frame_is_idr(path)
        if problem:
            problems.append(problem)
    return problems
