"""The avgen code location: assets, checks, jobs, sensors and resources."""

from __future__ import annotations

import dagster as dg

from avgen_dagster.assets import final_cut, records, talking_head, visuals
from avgen_dagster.checks import final_cut_checks, talking_head_checks, visual_checks
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
from avgen_dagster.resources.io import RequestOutputsIOManager
from avgen_dagster.resources.notifier import notifier_from_env
from avgen_dagster.sensors import (
    lost_run_sensor,
    notification_sensor,
    request_canceled_sensor,
    request_failure_sensor,
    request_sensor,
)


def default_resources() -> dict[str, dg.ConfigurableResource | dg.ConfigurableIOManagerFactory]:
    """The embedded-default resources (paths and URLs from the environment, see settings).

    Asset outputs (the small manifests of file URIs) are kept per request beside the request's
    files — ``<content root>/<user_id>/<request_id>/.outputs/`` on the local folder or the
    object store (:class:`~avgen_dagster.resources.io.RequestOutputsIOManager`) — so runs of one
    user never read each other's, and a re-execution in another pod loads its inputs.
    """
    return {
        "io_manager": RequestOutputsIOManager(),
        "app_db": AppDatabaseResource(),
        "content": ContentStore(),
        "text_backend": TextBackendResource.from_env(),  # AVGEN_LLM_BASE_URL selects openai
        "speech_backend": SpeechBackendResource.from_env(),  # AVGEN_SPEECH_BACKEND, _MODEL
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
        assets=dg.load_assets_from_modules([talking_head, visuals, final_cut, records]),
        asset_checks=[*talking_head_checks, *visual_checks, *final_cut_checks],
        jobs=[generation_job, talking_head_job, notify_job],
        sensors=[
            request_sensor,
            notification_sensor,
            request_failure_sensor,
            request_canceled_sensor,
            lost_run_sensor,
        ],
        resources={**default_resources(), **(resources or {})},
        # One process per run, not per step: each step would otherwise import torch and
        # MediaPipe and reload its model (5-8 s a step on two cores); pools still apply.
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location's definitions (loaded by ``dagster dev`` via workspace.yaml)."""
    return build_definitions()
