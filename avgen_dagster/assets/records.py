"""The content record: the request marked Completed in the app database with every path."""

import dagster as dg

from avgen_dagster.assets.manifests import HlsManifest, RequestSnapshot, VideoManifest
from avgen_dagster.partitions import user_partitions
from avgen_dagster.resources import AppDatabaseResource
from avgen_dagster.store.requests import get_request, mark_completed


@dg.asset(
    partitions_def=user_partitions,
    group_name="delivery",
    kinds={"sqlite"},
    # Ordering only: in the generation job the record waits for the visual package, whose
    # assets record their own paths; the talking-head job runs without them.
    deps=["images", "music", "video_clips", "music_video"],
    description=(
        "Marks the request Completed in the app database with the paths of everything it "
        "produced (talking-head MP4 and HLS playlist, and the visual package when made), so "
        "the portal and the notifier can see it."
    ),
)
def content_record(
    request: RequestSnapshot,
    stitched_mp4: VideoManifest,
    hls: HlsManifest,
    app_db: AppDatabaseResource,
) -> dg.MaterializeResult:
    """Update the ``generation_requests`` row of this run's request."""
    with app_db.get().session() as s:
        mark_completed(s, request.request_id, video_paths=[stitched_mp4.path, hls.playlist])
        video_paths = list(get_request(s, request.request_id).video_paths)
    return dg.MaterializeResult(
        value=None,
        metadata={
            "request_id": request.request_id,
            "status": "Completed",
            "video_paths": dg.MetadataValue.json(video_paths),
        },
    )
