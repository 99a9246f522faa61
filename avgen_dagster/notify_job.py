"""The notify job: one run sends one request's notification or one of its webhooks (retried
with backoff)."""

from collections.abc import Callable
from functools import partial

import dagster as dg

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.notifications.channels import (
    Channel,
    NotifierConfigError,
    PermanentSendError,
    TransientSendError,
)
from avgen_dagster.notifications.delivery import build_message, deliver
from avgen_dagster.notifications.message import Message
from avgen_dagster.notifications.webhooks import webhook_delivery
from avgen_dagster.resources import AppDatabaseResource
from avgen_dagster.resources.notifier import NotifierResource
from avgen_dagster.runs import REQUEST_ID_TAG
from avgen_dagster.settings import get_settings, secret_key
from avgen_dagster.store.notifications import get_notification
from avgen_dagster.store.session import AppDatabase

# Set on runs that deliver a webhook: the notification row's id (absent: the user's message).
NOTIFICATION_ID_TAG = "avgen/notification_id"


def notify_tags(request_id: str, notification_id: int | None = None) -> dict[str, str]:
    """The tags of a notify run: the request, and the webhook row when it sends one."""
    tags = {REQUEST_ID_TAG: request_id}
    if notification_id is not None:
        tags[NOTIFICATION_ID_TAG] = str(notification_id)
    return tags


def _webhook(
    db: AppDatabase, request_id: str, notification_id: int
) -> tuple[Channel, Callable[[], Message]]:
    settings = get_settings()
    return webhook_delivery(
        db,
        request_id,
        notification_id,
        tree=settings.content_tree(),
        media_base_url=settings.media_url,
        secret_key=secret_key(settings),
        allow_hosts=settings.webhook_allow_hosts,
    )


# Transient failures (timeouts, 429, 5xx) are retried in the run: 1 s, 2 s, 4 s (±jitter).
# Past that the notification stays Sending and the sensor dispatches a new run later.
NOTIFY_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=1.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dg.op(
    retry_policy=NOTIFY_RETRY_POLICY,
    description=(
        "Send the notification of the run's request (tag avgen/request_id), or the webhook "
        "named by tag avgen/notification_id."
    ),
)
def send_notification(
    context: dg.OpExecutionContext, app_db: AppDatabaseResource, notifier: NotifierResource
) -> dict:
    """Deliver once more unless already Sent/Failed; permanent failures are not retried. A
    request erased since the run was requested has nothing left to send."""
    request_id = context.run.tags[REQUEST_ID_TAG]
    tag = context.run.tags.get(NOTIFICATION_ID_TAG)
    notification_id = int(tag) if tag and tag.isdigit() else None
    db = app_db.get()
    try:
        if notification_id is not None:
            channel, message = _webhook(db, request_id, notification_id)
        else:
            with db.session() as s:
                channel = notifier.channel(get_notification(s, request_id).channel)
            message = partial(build_message, db, request_id, notifier.portal_url, secret_key())
        outcome = deliver(db, request_id, channel, message, notification_id=notification_id)
    except InvalidInputError as exc:
        context.log.warning(f"nothing to send for request {request_id}: {exc}")
        return {"request_id": request_id, "status": "gone"}
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
