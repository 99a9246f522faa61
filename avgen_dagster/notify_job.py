"""The notify job: one run sends one request's notification (retried with backoff)."""

import dagster as dg

from avgen_dagster.notifications.channels import (
    NotifierConfigError,
    PermanentSendError,
    TransientSendError,
)
from avgen_dagster.notifications.delivery import build_message, deliver
from avgen_dagster.resources import AppDatabaseResource
from avgen_dagster.resources.notifier import NotifierResource
from avgen_dagster.runs import REQUEST_ID_TAG
from avgen_dagster.settings import secret_key
from avgen_dagster.store.notifications import get_notification

# Transient failures (timeouts, 429, 5xx) are retried in the run: 1 s, 2 s, 4 s (±jitter).
# Past that the notification stays Sending and the sensor dispatches a new run later.
NOTIFY_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=1.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dg.op(
    retry_policy=NOTIFY_RETRY_POLICY,
    description="Send the notification of the run's request (tag avgen/request_id).",
)
def send_notification(
    context: dg.OpExecutionContext, app_db: AppDatabaseResource, notifier: NotifierResource
) -> dict:
    """Deliver once more unless already Sent/Failed; permanent failures are not retried."""
    request_id = context.run.tags[REQUEST_ID_TAG]
    db = app_db.get()
    with db.session() as s:
        channel_name = get_notification(s, request_id).channel
    channel = notifier.channel(channel_name)
    try:
        outcome = deliver(
            db,
            request_id,
            channel,
            lambda: build_message(db, request_id, notifier.portal_url, secret_key()),
        )
    except PermanentSendError as exc:
        raise dg.Failure(
            description=f"notification of {request_id} failed for good: {exc}",
            allow_retries=False,
        ) from exc
    except NotifierConfigError as exc:
        raise dg.Failure(
            description=f"notifier is not configured: {exc}", allow_retries=False
        ) from exc
    except TransientSendError:
        raise  # the RetryPolicy retries the step
    context.add_output_metadata(
        {
            "request_id": request_id,
            "channel": channel.name,
            "status": outcome.status,
            "attempts": outcome.attempts,
            "provider_message_id": outcome.provider_message_id or "",
            "already_done": outcome.skipped,
        }
    )
    return {"request_id": request_id, "status": outcome.status}


@dg.job(
    description="Sends one request's 'your content is ready' notification.",
    tags={"avgen/kind": "notification"},
)
def notify_job() -> None:
    """One op: :func:`send_notification`."""
    send_notification()
