"""The content record: the request's one typed outputs record, and the one writer of Completed."""

import dagster as dg

from avgen_dagster.assets.manifests import (
    ClipsManifest,
    FinalHlsManifest,
    FinalVideoManifest,
    HlsManifest,
    ImagesManifest,
    MusicManifest,
    MusicVideoManifest,
    RequestSnapshot,
    ScriptManifest,
    VideoManifest,
)
from avgen_dagster.outputs import RequestOutputs
from avgen_dagster.partitions import user_partitions
from avgen_dagster.resources import AppDatabaseResource
from avgen_dagster.runs import parent_run_id
from avgen_dagster.store import status

# The visual package is optional: the talking-head job does not make it, and then this
# request has no such output (Dagster's own flag makes the missing input load as None).
_OPTIONAL = dg.AssetIn(metadata={"allow_missing_partitions": True})


def build_outputs(
    script: ScriptManifest,
    stitched_mp4: VideoManifest,
    hls: HlsManifest,
    final_video: FinalVideoManifest,
    final_hls: FinalHlsManifest,
    images: ImagesManifest | None,
    music: MusicManifest | None,
    video_clips: ClipsManifest | None,
    music_video: MusicVideoManifest | None,
) -> RequestOutputs:
    """The outputs record from the upstream manifests (file URIs as the assets published them)."""
    return RequestOutputs(
        script=script.path,
        talking_head_mp4=stitched_mp4.path,
        hls_playlist=hls.playlist,
        final_video=final_video.path,
        hls_master=final_hls.master,
        captions_vtt=final_video.captions_vtt,
        captions_srt=final_video.captions_srt,
        images=list(images.paths) if images else [],
        video_clips=list(video_clips.paths) if video_clips else [],
        music=music.compressed if music else None,
        music_wav=music.wav if music else None,
        music_video=music_video.path if music_video else None,
    )


@dg.asset(
    partitions_def=user_partitions,
    group_name="delivery",
    kinds={"sqlite"},
    ins={
        "images": _OPTIONAL,
        "music": _OPTIONAL,
        "video_clips": _OPTIONAL,
        "music_video": _OPTIONAL,
    },
    description=(
        "Writes the request's outputs record (every deliverable by name) and marks it "
        "Completed in the app database — only after every blocking check on its deliverables "
        "has passed, so the portal, the API and the notifier see finished work only."
    ),
)
def content_record(
    context: dg.AssetExecutionContext,
    request: RequestSnapshot,
    script: ScriptManifest,
    stitched_mp4: VideoManifest,
    hls: HlsManifest,
    final_video: FinalVideoManifest,
    final_hls: FinalHlsManifest,
    images: ImagesManifest | None,
    music: MusicManifest | None,
    video_clips: ClipsManifest | None,
    music_video: MusicVideoManifest | None,
    app_db: AppDatabaseResource,
) -> dg.MaterializeResult:
    """Processing → Completed with the outputs record (``store.status.complete``)."""
    outputs = build_outputs(
        script, stitched_mp4, hls, final_video, final_hls, images, music, video_clips, music_video
    )
    with app_db.get().session() as s:
        status.complete(
            s,
            request.request_id,
            outputs,
            run_id=context.run.run_id,
            parent_run_id=parent_run_id(context.run),
        )
    return dg.MaterializeResult(
        value=None,
        metadata={
            "request_id": request.request_id,
            "status": "Completed",
            "outputs": dg.MetadataValue.json(outputs.to_json()),
            "file_count": len(outputs.files()),
        },
    )
