"""The avgen code location: assets, checks, jobs, sensors and resources."""

from __future__ import annotations

import dagster as dg

from avgen_dagster.assets import records, talking_head, visuals
from avgen_dagster.checks import talking_head_checks
from avgen_dagster.jobs import generation_job, talking_head_job
from avgen_dagster.notify_job import notify_job
from avgen_dagster.resources import (
    AppDatabaseResource,
    ContentStore,
    ImageBackendResource,
    LipsyncBackendResource,
    MediaChainResource,
    MusicBackendResource,
    SpeechBackendResource,
    TextBackendResource,
    VideoBackendResource,
)
from avgen_dagster.resources.notifier import notifier_from_env
from avgen_dagster.sensors import notification_sensor, request_failure_sensor, request_sensor
from avgen_dagster.settings import get_settings
from avgen_dagster.store.content import is_url


def default_resources() -> dict[str, dg.ConfigurableResource | dg.ConfigurableIOManagerFactory]:
    """The embedded-default resources (paths and URLs from the environment, see settings).

    With an object-store content root (``AVGEN_CONTENT_URL``) asset outputs (the small
    manifests of file URIs) are kept there too, under ``<root>/.dagster-io`` (never served: the
    media server refuses hidden paths), through Dagster's own pickling IO manager, which
    writes to any ``universal_pathlib`` URL: a re-execution in another pod (retry from
    failure, one asset alone) loads its inputs from there. Otherwise Dagster's default
    file-system IO manager under ``DAGSTER_HOME``.
    """
    settings = get_settings()
    shared_io: dict[str, dg.ConfigurableIOManagerFactory] = {}
    if settings.content_url and is_url(settings.content_url):
        shared_io["io_manager"] = dg.FilesystemIOManager(
            base_dir=f"{settings.content_url.rstrip('/')}/.dagster-io"
        )
    return {
        **shared_io,
        "app_db": AppDatabaseResource(),
        "content": ContentStore(),
        "text_backend": TextBackendResource(),
        "speech_backend": SpeechBackendResource(),
        "lipsync_backend": LipsyncBackendResource(),
        "media": MediaChainResource(),
        "image_backend": ImageBackendResource(),
        "music_backend": MusicBackendResource(),
        "video_backend": VideoBackendResource(),
        "notifier": notifier_from_env(),
    }


def build_definitions(resources: dict[str, object] | None = None) -> dg.Definitions:
    """avgen's Dagster definitions: the embedded-default resources, with ``resources``
    replacing any of them by key."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules([talking_head, visuals, records]),
        asset_checks=talking_head_checks,
        jobs=[generation_job, talking_head_job, notify_job],
        sensors=[request_sensor, notification_sensor, request_failure_sensor],
        resources={**default_resources(), **(resources or {})},
        # One process per run, not per step: each step would otherwise import torch and
        # MediaPipe and reload its model (5-8 s a step on two cores); pools still apply.
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location's definitions (loaded by ``dagster dev`` via workspace.yaml)."""
    return build_definitions()
