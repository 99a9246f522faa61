"""Sensors: a failed generation run marks its request Failed with a readable reason."""

import dagster as dg

from avgen_dagster.failures import REQUEST_ID_TAG, failure_reason, mark_request_failed
from avgen_dagster.jobs import talking_head_job
from avgen_dagster.resources import AppDatabaseResource


@dg.run_failure_sensor(
    name="request_failure_sensor",
    monitored_jobs=[talking_head_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks the run's request (tag avgen/request_id) Failed with the step's error.",
)
def request_failure_sensor(
    context: dg.RunFailureSensorContext, app_db: AppDatabaseResource
) -> None:
    """Record why a generation run failed, so the user sees the reason."""
    request_id = context.dagster_run.tags.get(REQUEST_ID_TAG)
    if not request_id:
        return
    reason = failure_reason(context.get_step_failure_events())
    mark_request_failed(app_db.get(), request_id, reason)
    context.log.info(f"request {request_id} marked Failed: {reason}")
