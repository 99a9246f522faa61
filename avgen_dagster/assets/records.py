"""The content record: the request marked Completed in the app database with every path."""

import dagster as dg

from avgen_dagster.assets.manifests import HlsManifest, RequestSnapshot, VideoManifest
from avgen_dagster.partitions import user_partitions
from avgen_dagster.resources import AppDatabaseResource
from avgen_dagster.store.requests import mark_completed


@dg.asset(
    partitions_def=user_partitions,
    group_name="delivery",
    kinds={"sqlite"},
    description=(
        "Marks the request Completed in the app database with the paths of everything it "
        "produced (MP4 and HLS playlist), so the portal and the notifier can see it."
    ),
)
def content_record(
    request: RequestSnapshot,
    stitched_mp4: VideoManifest,
    hls: HlsManifest,
    app_db: AppDatabaseResource,
) -> dg.MaterializeResult:
    """Update the ``generation_requests`` row of this run's request."""
    video_paths = [stitched_mp4.path, hls.playlist]
    with app_db.get().session() as s:
        mark_completed(s, request.request_id, video_paths=video_paths, image_paths=[])
    return dg.MaterializeResult(
        value=None,
        metadata={
            "request_id": request.request_id,
            "status": "Completed",
            "video_paths": dg.MetadataValue.json(video_paths),
        },
    )
