"""Sensors: request intake (queued requests → runs), notifications, and the end of every run
that did not finish — failed, canceled or lost — recorded on its request."""

import socket
from datetime import datetime, timedelta

import dagster as dg

from avgen_dagster.failures import mark_run_failed
from avgen_dagster.jobs import generation_job, talking_head_job
from avgen_dagster.notify_job import notify_job, notify_tags
from avgen_dagster.options import parse_options
from avgen_dagster.partitions import user_partitions
from avgen_dagster.resources import AppDatabaseResource
from avgen_dagster.runs import (
    REQUEST_ID_TAG,
    WORKER_HOST_TAG,
    WORKER_PID_TAG,
    WORKER_STARTED_TAG,
    job_for,
    request_tags,
)
from avgen_dagster.store import models, status
from avgen_dagster.store.notifications import (
    KIND_WEBHOOK,
    create_due_notifications,
    create_due_webhooks,
    dispatch_due,
)
from avgen_dagster.store.requests import requests_to_submit, requests_with_runs

MAX_REQUESTS_PER_TICK = 100
RUN_APPEAR_GRACE = timedelta(minutes=10)


@dg.sensor(
    name="request_sensor",
    jobs=[generation_job, talking_head_job],
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Picks up queued generation requests from the app database: adds the user's partition "
        "when new and requests one run per request attempt (run key = request id, then "
        "`<id>-retry-<n>` for each explicit retry)."
    ),
)
def request_sensor(
    context: dg.SensorEvaluationContext, app_db: AppDatabaseResource
) -> dg.SensorResult | dg.SkipReason:
    """Queued → Processing, one run per request attempt; at most 100 requests per tick."""
    db = app_db.get()
    with db.session() as s:
        pending = [
            (r.request_id, r.user_id, r.attempt, job_for(parse_options(r.options)))
            for r in requests_to_submit(s, limit=MAX_REQUESTS_PER_TICK)
        ]
    if not pending:
        return dg.SkipReason("no queued requests")
    users = sorted({user_id for _, user_id, _, _ in pending})
    # One read of the partition list beats a lookup per user (10k partitions: ~20 ms vs ~1 s).
    existing = set(context.instance.get_dynamic_partitions(user_partitions.name))
    new_users = [u for u in users if u not in existing]
    run_requests = [
        dg.RunRequest(
            run_key=status.run_key(request_id, attempt),
            job_name=job,
            partition_key=user_id,
            tags=request_tags(request_id, user_id, attempt),
        )
        for request_id, user_id, attempt, job in pending
    ]
    with db.session() as s:
        for request_id, _, _, _ in pending:
            status.submit(s, request_id)
    context.log.info(f"submitting {len(run_requests)} request(s); {len(new_users)} new user(s)")
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[user_partitions.build_add_request(new_users)]
        if new_users
        else [],
    )


def now_utc() -> datetime:
    """The sensors' clock: the current time, aware UTC (tests replace it to control time)."""
    return models.utcnow()


@dg.sensor(
    name="notification_sensor",
    job=notify_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Finds Completed requests whose notification time has come, and Completed or Failed "
        "requests with a callback_url (webhooks, due at once), records each message (Pending) "
        "and requests one notify run each; re-dispatches one whose run was lost."
    ),
)
def notification_sensor(
    context: dg.SensorEvaluationContext, app_db: AppDatabaseResource
) -> dg.SensorResult | dg.SkipReason:
    """Due notifications and webhooks → notify runs (run key per message and dispatch)."""
    now = now_utc()
    with app_db.get().session() as s:
        created = create_due_notifications(s, now) + create_due_webhooks(s, now)
        dispatched = [
            (note.request_id, note.id if note.kind == KIND_WEBHOOK else None, run_key)
            for note, run_key in dispatch_due(s, now)
        ]
    if not dispatched:
        return dg.SkipReason("no notification is due")
    context.log.info(f"{created} new notification(s); dispatching {len(dispatched)}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=run_key, tags=notify_tags(request_id, notification_id))
            for request_id, notification_id, run_key in dispatched
        ]
    )


@dg.run_failure_sensor(
    name="request_failure_sensor",
    monitored_jobs=[generation_job, talking_head_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Marks the run's request (tag avgen/request_id) Failed with the real reason: the failed "
        "step or check, or what Dagster recorded about the run worker (e.g. a signal)."
    ),
)
def request_failure_sensor(
    context: dg.RunFailureSensorContext, app_db: AppDatabaseResource
) -> None:
    """Record why a generation run failed, so the user sees the reason."""
    _record_unfinished_run(context, app_db)


@dg.run_status_sensor(
    name="request_canceled_sensor",
    run_status=dg.DagsterRunStatus.CANCELED,
    monitored_jobs=[generation_job, talking_head_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description='Marks the request of a canceled generation run Failed ("the run was canceled").',
)
def request_canceled_sensor(
    context: dg.RunStatusSensorContext, app_db: AppDatabaseResource
) -> None:
    """A canceled run's request must not stay Processing for ever."""
    _record_unfinished_run(context, app_db)


def _record_unfinished_run(context: dg.RunStatusSensorContext, app_db: AppDatabaseResource) -> None:
    run = context.dagster_run
    request_id = run.tags.get(REQUEST_ID_TAG)
    if not request_id:
        return
    reason = mark_run_failed(app_db.get(), context.instance, run, request_id)
    if reason is None:
        context.log.info(f"run {run.run_id}: request {request_id} not changed (stale report)")
    else:
        context.log.info(f"request {request_id} marked Failed: {reason}")


@dg.sensor(
    name="lost_run_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Finds Processing requests whose run can no longer finish: a run STARTED on this host "
        "whose worker process is gone (killed with the code server, a crashed `avgen generate`) "
        "is reported failed; a run that ended unnoticed or no longer exists fails its request."
    ),
)
def lost_run_sensor(
    context: dg.SensorEvaluationContext, app_db: AppDatabaseResource
) -> dg.SkipReason:
    """Reconcile Processing requests with their runs (cheap: one query, one run lookup each)."""
    db = app_db.get()
    with db.session() as s:
        processing = [(r.request_id, r.run_id, r.submitted_at) for r in requests_with_runs(s)]
    fixed = 0
    for request_id, run_id, submitted_at in processing:
        run = context.instance.get_run_by_id(run_id)
        if run is None:
            # `avgen generate` records its run id a moment before the run exists.
            if submitted_at is None or now_utc() - submitted_at < RUN_APPEAR_GRACE:
                continue
            with db.session() as s:
                fixed += status.fail(s, request_id, f"run {run_id} no longer exists", run_id=run_id)
        elif run.status == dg.DagsterRunStatus.STARTED and (gone := lost_worker(run)):
            context.instance.report_run_failed(run, gone)  # the failure sensor records it
            fixed += 1
        elif run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            fixed += mark_run_failed(db, context.instance, run, request_id) is not None
    return dg.SkipReason(f"{len(processing)} running request(s) checked; {fixed} lost run(s)")


def lost_worker(run: dg.DagsterRun) -> str | None:
    """Why ``run``'s worker is gone, if it ran on this host and its process has died (or its
    pid now belongs to another process); None when alive, elsewhere, or not yet known."""
    import psutil

    host, pid, started = (run.tags.get(t) for t in (WORKER_HOST_TAG, WORKER_PID_TAG,
                                                     WORKER_STARTED_TAG))  # fmt: skip
    if host != socket.gethostname() or not pid or not pid.isdigit():
        return None
    try:
        proc = psutil.Process(int(pid))
        if started is None or abs(proc.create_time() - float(started)) < 1.0:
            return None
    except psutil.NoSuchProcess:
        pass
    return (
        f"the run worker (pid {pid} on {host}) is gone: it was killed or crashed without "
        "reporting (e.g. kill -9, or its code server was stopped)"
    )
