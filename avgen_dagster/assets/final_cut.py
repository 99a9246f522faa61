"""The finished cut a creator publishes: ``final_video`` (the talking head framed for the
platform, captions with the spoken word highlighted, b-roll cutaways, a ducked music bed) and
``final_hls`` (its adaptive HLS ladder with a WebVTT subtitles rendition).

Thin assets over :func:`avgen_dagster.media.compose.compose_final_video` and
:func:`avgen_dagster.media.hls_ladder.build_hls_ladder`; every choice comes from the request's
typed options. The visual package is optional (a talking-head-only request has no clips and
no music: no b-roll, no bed).
"""

from typing import TYPE_CHECKING

import dagster as dg

from avgen_dagster.assets.manifests import (
    AudioManifest,
    ClipsManifest,
    FinalHlsManifest,
    FinalVideoManifest,
    ImagesManifest,
    MusicManifest,
    RequestSnapshot,
    VideoManifest,
)
from avgen_dagster.assets.previews import thumbnail_markdown
from avgen_dagster.options import RequestOptions
from avgen_dagster.outputs import CAPTIONS_SRT, CAPTIONS_VTT, FINAL_VIDEO_MP4, HLS_MASTER
from avgen_dagster.partitions import user_partitions
from avgen_dagster.resources import ContentStore, MediaChainResource

if TYPE_CHECKING:
    from avgen_dagster.media.compose import ComposeOptions, FinalVideoResult

GROUP = "final_cut"
_OPTIONAL = dg.AssetIn(metadata={"allow_missing_partitions": True})
RUNGS_DIR = "final_video/rungs"


def compose_options(
    opts: RequestOptions, media: MediaChainResource, has_broll: bool
) -> "ComposeOptions":
    """The request's options as :class:`~avgen_dagster.media.compose.ComposeOptions`."""
    from pathlib import Path

    from avgen_dagster.media.bed import DuckingSettings
    from avgen_dagster.media.caption_render import CaptionStyle
    from avgen_dagster.media.compose import ComposeOptions

    style = CaptionStyle(
        font_path=Path(opts.caption_font) if opts.caption_font else None,
        size_frac=opts.caption_size,
        text_color=opts.rgb("caption_color"),
        highlight_color=opts.rgb("caption_highlight"),
        outline_color=opts.rgb("caption_outline"),
        position=opts.caption_position,
    )
    return ComposeOptions(
        format=opts.format,
        captions=opts.captions,
        caption_style=style,
        broll_mode=opts.broll_mode if has_broll else "none",
        broll_every_n=opts.broll_every,
        bed=DuckingSettings(bed_lu_below_voice=opts.bed_level_lu),
        target_lufs=opts.target_lufs,
        true_peak_ceiling_dbtp=media.max_true_peak_dbtp,
        crf=media.crf,
        preset=media.preset,
        gop_s=media.gop_s,
    )


@dg.asset(
    partitions_def=user_partitions,
    group_name=GROUP,
    kinds={"ffmpeg", "python"},
    ins={"video_clips": _OPTIONAL, "images": _OPTIONAL, "music": _OPTIONAL},
    description=(
        "The composed final cut in the request's format (vertical 1080x1920 by default): the "
        "speaker framed on the eyes, captions from the voice's word timings with the spoken "
        "word highlighted, b-roll cutaways at sentence boundaries, the music ducked under the "
        "voice; one fast-start MP4 on the loudness target, with WebVTT and SRT sidecars."
    ),
)
def final_video(
    context: dg.AssetExecutionContext,
    request: RequestSnapshot,
    stitched_mp4: VideoManifest,
    normalized_audio: AudioManifest,
    video_clips: ClipsManifest | None,
    images: ImagesManifest | None,
    music: MusicManifest | None,
    media: MediaChainResource,
    content: ContentStore,
) -> dg.MaterializeResult:
    """Write ``final_video/final.mp4``, ``captions.vtt``, ``captions.srt`` and the lower rungs."""
    from avgen_dagster.media.compose import compose_final_video
    from avgen_dagster.media.words import shift_words

    opts = request.options
    words = [
        word
        for clip, start in zip(normalized_audio.clips, stitched_mp4.clip_starts_s, strict=True)
        for word in shift_words(clip.words, start)
    ]
    broll_uris = video_clips.paths if video_clips else (images.paths if images else [])
    broll = [content.local_file(uri) for uri in broll_uris]
    bed = content.local_file(music.wav) if music is not None and opts.uses_music_bed else None
    folder = content.asset_dir(request.user_id, request.request_id, "final_video")
    base = folder.parent
    result = compose_final_video(
        content.local_file(stitched_mp4.path),
        words,
        base / FINAL_VIDEO_MP4,
        broll=broll,
        music=bed,
        options=compose_options(opts, media, bool(broll)),
        vtt_path=base / CAPTIONS_VTT,
        srt_path=base / CAPTIONS_SRT,
        ladder_dir=base / RUNGS_DIR,
    )
    content.publish(folder)  # the MP4, the sidecars and the rung videos
    uri = content.uri_of(result.path)
    context.log.info(
        f"final cut {result.width}x{result.height}, {result.cue_count} cues, "
        f"{len(result.cutaways)} cutaways, {result.integrated_lufs:.1f} LUFS"
    )
    return dg.MaterializeResult(
        value=FinalVideoManifest(
            request_id=request.request_id,
            path=uri,
            captions_vtt=content.uri_of(base / CAPTIONS_VTT),
            captions_srt=content.uri_of(base / CAPTIONS_SRT),
            format=result.format,
            width=result.width,
            height=result.height,
            fps=result.fps,
            duration_s=result.duration_s,
            cue_count=result.cue_count,
            words=tuple(words),
            rung_videos={k: content.uri_of(v) for k, v in result.rendition_videos.items()},
            integrated_lufs=result.integrated_lufs,
            true_peak_dbtp=result.true_peak_dbtp,
            target_lufs=opts.target_lufs,
        ),
        metadata=_final_metadata(request, result, uri),
    )


def _final_metadata(request: RequestSnapshot, r: "FinalVideoResult", uri: str) -> dict:
    """What the Dagster UI shows of the final cut: a frame, format, cues, bed, loudness."""
    from avgen_dagster.media.video_io import frame_at

    frame = frame_at(r.path, r.duration_s / 2)
    meta: dict[str, dg.RawMetadataValue] = {
        "request_id": request.request_id,
        "file": dg.MetadataValue.path(uri),
        "format": r.format,
        "resolution": f"{r.width}x{r.height}",
        "duration_s": dg.MetadataValue.float(round(r.duration_s, 3)),
        "cue_count": r.cue_count,
        "captions_burned": r.captions_burned,
        "caption_timing": "sentence-level fallback for some words"
        if r.captions_sentence_fallback
        else "word-level (the voice's alignment)",
        "untimed_words": r.untimed_words,
        "broll_mode": r.broll_mode,
        "cutaways": len(r.cutaways),
        "face_found": r.face_found,
        "upscale_factor": dg.MetadataValue.float(round(r.upscale_factor, 3)),
        "music_bed": r.music_bed,
        "bed_lu_below_voice": r.bed_lu_below_voice,
        "bed_lu_measured": None if r.bed_lu_measured is None else round(r.bed_lu_measured, 1),
        "integrated_lufs": dg.MetadataValue.float(round(r.integrated_lufs, 2)),
        "true_peak_dbtp": dg.MetadataValue.float(round(r.true_peak_dbtp, 2)),
    }
    if frame is not None:
        meta["preview"] = dg.MetadataValue.md(thumbnail_markdown(frame, max_side=320))
    return meta


@dg.asset(
    partitions_def=user_partitions,
    group_name=GROUP,
    kinds={"ffmpeg", "python"},
    description=(
        "HLS for real players: the final cut as an adaptive ladder (1080p, 720p and 360p of its "
        "format, aligned closed GOPs, measured BANDWIDTH/AVERAGE-BANDWIDTH, CODECS) with a "
        "WebVTT subtitles rendition (X-TIMESTAMP-MAP, RFC 8216 §3.5) under one master playlist."
    ),
)
def final_hls(
    request: RequestSnapshot,
    final_video: FinalVideoManifest,
    media: MediaChainResource,
    content: ContentStore,
) -> dg.MaterializeResult:
    """Write ``final_hls/master.m3u8`` with a folder per rendition and ``subs/``."""
    from avgen_dagster.media.hls_ladder import build_hls_ladder

    out_dir = (content.request_dir(request.user_id, request.request_id) / HLS_MASTER).parent
    result = build_hls_ladder(
        content.local_file(final_video.path),
        out_dir,
        captions_vtt=content.local_file(final_video.captions_vtt),
        pre_encoded={k: content.local_file(v) for k, v in final_video.rung_videos.items()},
        segment_s=media.hls_segment_s,
        crf=media.crf,
        preset=media.preset,
    )
    content.publish(out_dir)  # segments first, playlists last
    renditions = {
        r.name: [content.uri_of(r.playlist), *(content.uri_of(s) for s in r.segments)]
        for r in result.renditions
    }
    subtitles = (
        [content.uri_of(result.subtitles_playlist)]
        + [content.uri_of(s) for s in result.subtitle_segments]
        if result.subtitles_playlist is not None
        else []
    )
    master = content.uri_of(result.master)
    return dg.MaterializeResult(
        value=FinalHlsManifest(
            request.request_id, master, renditions, subtitles, final_video.target_lufs
        ),
        metadata={
            "request_id": request.request_id,
            "master": dg.MetadataValue.path(master),
            "renditions": dg.MetadataValue.json(
                [
                    {
                        "name": r.name,
                        "resolution": f"{r.width}x{r.height}",
                        "bandwidth": r.bandwidth,
                        "average_bandwidth": r.average_bandwidth,
                        "codecs": r.codecs,
                        "segments": len(r.segments),
                    }
                    for r in result.renditions
                ]
            ),
            "subtitle_segments": len(result.subtitle_segments),
            "mpegts_start": result.mpegts_start,
        },
    )
