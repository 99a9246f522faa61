"""Asset checks on the talking-head outputs: loudness, true peak, A/V sync, HLS validity.

Every check is blocking: a failed check stops everything downstream, so ``content_record``
never marks a request Completed while a deliverable is out of spec; the run fails and the
request is marked Failed naming the check.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from avgen_dagster.assets.final_cut import final_hls, final_video
from avgen_dagster.assets.manifests import (
    AudioManifest,
    FinalHlsManifest,
    FinalVideoManifest,
    HlsManifest,
    VideoManifest,
)
from avgen_dagster.assets.talking_head import hls, normalized_audio, stitched_mp4
from avgen_dagster.assets.visuals import music, music_video
from avgen_dagster.partitions import user_partitions
from avgen_dagster.resources import ContentStore

LOUDNESS_TOLERANCE_LU = 0.5  # EBU R128 allows ±0.5 LU around the target for programmes.
MAX_TRUE_PEAK_DBTP = -1.0  # EBU R128 maximum permitted true peak level.


@dg.asset_check(
    asset=normalized_audio,
    partitions_def=user_partitions,
    blocking=True,
    description="Every clip within ±0.5 LU of the target.",
)
def loudness_on_target(normalized_audio: AudioManifest) -> dg.AssetCheckResult:
    """Passes when each clip's integrated loudness is within ±0.5 LU of the target (EBU R128)."""
    target = normalized_audio.target_lufs
    off = [
        (Path(c.path).name, c.integrated_lufs)
        for c in normalized_audio.clips
        if c.integrated_lufs is None
        or target is None
        or abs(c.integrated_lufs - target) > LOUDNESS_TOLERANCE_LU
    ]
    return dg.AssetCheckResult(
        passed=not off,
        metadata={
            "target_lufs": target,
            "tolerance_lu": LOUDNESS_TOLERANCE_LU,
            "clips_off_target": dg.MetadataValue.json([f"{n}: {v}" for n, v in off]),
        },
    )


@dg.asset_check(
    asset=normalized_audio,
    partitions_def=user_partitions,
    blocking=True,
    description="Every clip's true peak ≤ −1 dBTP.",
)
def true_peak_limited(normalized_audio: AudioManifest) -> dg.AssetCheckResult:
    """Passes when every clip's true peak (BS.1770-4 Annex 2) is ≤ −1 dBTP."""
    peaks = [c.true_peak_dbtp for c in normalized_audio.clips]
    worst = max((p for p in peaks if p is not None), default=None)
    passed = worst is not None and all(p is not None for p in peaks) and worst <= MAX_TRUE_PEAK_DBTP
    return dg.AssetCheckResult(
        passed=passed,
        metadata={"max_true_peak_dbtp": worst, "limit_dbtp": MAX_TRUE_PEAK_DBTP},
    )


@dg.asset_check(
    asset=stitched_mp4,
    partitions_def=user_partitions,
    blocking=True,
    description="Audio and video durations match (≤ 1 frame).",
)
def av_durations_match(stitched_mp4: VideoManifest) -> dg.AssetCheckResult:
    """Passes when |video − audio| duration ≤ 1 frame at 25 fps (0.04 s) and the MP4 is
    fast-start."""
    drift = abs(stitched_mp4.video_duration_s - stitched_mp4.audio_duration_s)
    return dg.AssetCheckResult(
        passed=drift <= 0.04 + 1e-6 and stitched_mp4.faststart,
        metadata={
            "video_duration_s": stitched_mp4.video_duration_s,
            "audio_duration_s": stitched_mp4.audio_duration_s,
            "drift_s": round(drift, 4),
            "faststart": stitched_mp4.faststart,
        },
    )


@dg.asset_check(
    asset=hls,
    partitions_def=user_partitions,
    blocking=True,
    description="The HLS playlist follows RFC 8216 / Apple's rules.",
)
def hls_playlist_valid(hls: HlsManifest, content: ContentStore) -> dg.AssetCheckResult:
    """Passes when :func:`~avgen_dagster.media.hls.validate_hls_playlist` finds no problem in
    the published playlist and segments (fetched from the store when it is an object store)."""
    from avgen_dagster.media.hls import validate_hls_playlist

    for segment in hls.segments:
        content.local_file(segment)
    problems = validate_hls_playlist(content.local_file(hls.playlist))
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"problems": dg.MetadataValue.json(problems), "playlist": hls.playlist},
    )


def delivered_audio_checks(
    asset: dg.AssetsDefinition,
    delivered: Callable[[Any], tuple[list[str], float | None]],
    what: str,
    prefix: str = "delivered",
) -> list[dg.AssetChecksDefinition]:
    """Loudness (±0.5 LU of the target) and true-peak (≤ −1 dBTP, ITU-R BS.1770-4) checks on
    the decoded audio of a delivered file — what the user receives, after the lossy encode
    and the cross-fades, not an intermediate WAV.

    Args:
        asset: the asset that delivers the file.
        delivered: manifest → (the file URIs to fetch, the first being the one to measure —
            an MP4/M4A, or an HLS playlist followed by its segments; the loudness target).
        what: the deliverable, for the descriptions.
        prefix: the checks are ``<prefix>_loudness_on_target`` and ``<prefix>_true_peak_limited``.
    """

    def measure(manifest: Any, content: ContentStore) -> tuple[Any, float | None]:
        from avgen_dagster.media.delivery import measure_delivered_audio

        uris, target = delivered(manifest)
        local = [content.local_file(u) for u in uris]
        return measure_delivered_audio(local[0]), target

    @dg.asset_check(
        asset=asset,
        name=f"{prefix}_loudness_on_target",
        partitions_def=user_partitions,
        blocking=True,
        description=f"The decoded audio of {what} within ±0.5 LU of its loudness target.",
    )
    def loudness(manifest: Any, content: ContentStore) -> dg.AssetCheckResult:
        found, target = measure(manifest, content)
        off = None if target is None else round(found.integrated_lufs - target, 2)
        return dg.AssetCheckResult(
            passed=off is not None and abs(off) <= LOUDNESS_TOLERANCE_LU,
            metadata={"integrated_lufs": round(found.integrated_lufs, 2), "target_lufs": target,
                      "off_by_lu": off, "tolerance_lu": LOUDNESS_TOLERANCE_LU},
        )  # fmt: skip

    @dg.asset_check(
        asset=asset,
        name=f"{prefix}_true_peak_limited",
        partitions_def=user_partitions,
        blocking=True,
        description=f"The decoded audio of {what} at or under −1 dBTP true peak.",
    )
    def true_peak(manifest: Any, content: ContentStore) -> dg.AssetCheckResult:
        found, _ = measure(manifest, content)
        return dg.AssetCheckResult(
            passed=found.true_peak_dbtp <= MAX_TRUE_PEAK_DBTP,
            metadata={"true_peak_dbtp": round(found.true_peak_dbtp, 2),
                      "sample_peak_dbfs": round(found.sample_peak_dbfs, 2),
                      "limit_dbtp": MAX_TRUE_PEAK_DBTP},
        )  # fmt: skip

    return [loudness, true_peak]


talking_head_checks = [
    loudness_on_target,
    true_peak_limited,
    av_durations_match,
    hls_playlist_valid,
    *delivered_audio_checks(
        stitched_mp4, lambda m: ([m.path], m.target_lufs), "the talking-head MP4"
    ),
    *delivered_audio_checks(
        hls, lambda m: ([m.playlist, *m.segments], m.target_lufs), "the talking-head HLS stream"
    ),
]
visual_checks = [
    *delivered_audio_checks(music, lambda m: ([m.compressed], m.target_lufs), "the music (AAC)"),
    *delivered_audio_checks(music_video, lambda m: ([m.path], m.target_lufs), "the music video"),
]


@dg.asset_check(
    asset=final_video,
    partitions_def=user_partitions,
    blocking=True,
    description=(
        "The WebVTT captions say the narration word for word, each cue within 100 ms of its "
        "first word's onset in the voice's alignment."
    ),
)
def captions_in_sync(final_video: FinalVideoManifest, content: ContentStore) -> dg.AssetCheckResult:
    """Reads the sidecar back with webvtt-py and compares it with the word timings."""
    from avgen_dagster.media.deliverable_checks import MAX_CUE_OFFSET_S, caption_sync_problems

    problems = caption_sync_problems(
        content.local_file(final_video.captions_vtt), final_video.words
    )
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "problems": dg.MetadataValue.json(problems[:20]),
            "cue_count": final_video.cue_count,
            "words": len(final_video.words),
            "max_cue_offset_s": MAX_CUE_OFFSET_S,
        },
    )


@dg.asset_check(
    asset=final_hls,
    partitions_def=user_partitions,
    blocking=True,
    description=(
        "The master playlist names ≥ 3 renditions with BANDWIDTH, AVERAGE-BANDWIDTH, RESOLUTION "
        "and CODECS; every rendition is a valid VOD playlist with aligned segments; a WebVTT "
        "subtitles rendition with X-TIMESTAMP-MAP (RFC 8216)."
    ),
)
def hls_ladder_valid(final_hls: FinalHlsManifest, content: ContentStore) -> dg.AssetCheckResult:
    """Fetches every file of the ladder (object stores too) and checks it."""
    from avgen_dagster.media.deliverable_checks import hls_ladder_problems

    for uris in [*final_hls.renditions.values(), final_hls.subtitles]:
        for uri in uris:
            content.local_file(uri)
    problems = hls_ladder_problems(content.local_file(final_hls.master))
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "problems": dg.MetadataValue.json(problems[:20]),
            "renditions": dg.MetadataValue.json(sorted(final_hls.renditions)),
            "master": final_hls.master,
        },
    )


final_cut_checks = [
    captions_in_sync,
    *delivered_audio_checks(
        final_video, lambda m: ([m.path], m.target_lufs), "the final video", prefix="final"
    ),
    hls_ladder_valid,
    *delivered_audio_checks(
        final_hls,
        lambda m: (next(iter(m.renditions.values())), m.target_lufs),
        "the final cut's HLS renditions (the audio every rendition carries)",
    ),
]
