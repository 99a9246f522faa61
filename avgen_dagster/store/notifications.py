"""Notification records: created when due, dispatched to runs, and every send recorded.

State: Pending → Sending (committed BEFORE the provider is called) → Sent | Failed. A
notification found in Sending was interrupted (crash, kill, transient error): it is sent again
under the same message id — at-least-once delivery, never silently lost.

Two kinds of rows share this machinery: the user's **message** (email or console; one per
request, due at its ``notify_at``) and **webhooks** (a signed POST to the request's
``callback_url``; one per outcome — Completed or Failed — of each attempt, due at once, under
the stable ``webhook-id`` :func:`webhook_message_id`). Functions that take a ``request_id``
act on the message unless a ``notification_id`` names the row.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, and_, cast, exists, func, literal, select
from sqlalchemy.orm import Session

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.store.models import (
    GenerationRequest,
    Notification,
    NotificationStatus,
    RequestStatus,
    utcnow,
)

MESSAGE_ID_DOMAIN = "avgen.local"
REDISPATCH_AFTER = timedelta(minutes=10)
MAX_ATTEMPTS = 8
KIND_MESSAGE = "message"
KIND_WEBHOOK = "webhook"
WEBHOOK_CHANNEL = "webhook"
WEBHOOK_STATUSES = (RequestStatus.COMPLETED.value, RequestStatus.FAILED.value)


def message_id_for(request_id: str) -> str:
    """The stable RFC 5322 ``Message-ID`` of a request's notification."""
    return f"<notify.{request_id}@{MESSAGE_ID_DOMAIN}>"


def create_due_notifications(session: Session, now: datetime, limit: int = 200) -> int:
    """Create a Pending notification for each Completed request that is due and has none.

    Due means ``notify_at`` is empty or ≤ ``now``; a request completing after its time is due
    at once. Returns how many were created.
    """
    stmt = (
        select(GenerationRequest)
        .outerjoin(
            Notification,
            (Notification.request_id == GenerationRequest.request_id)
            & (Notification.kind == KIND_MESSAGE),
        )
        .where(
            GenerationRequest.status == RequestStatus.COMPLETED.value,
            Notification.id.is_(None),
            GenerationRequest.notify_at.is_(None) | (GenerationRequest.notify_at <= now),
        )
        .order_by(GenerationRequest.generated_at)
        .limit(limit)
    )
    created = 0
    for req in session.scalars(stmt):
        session.add(
            pending(
                req.request_id, KIND_MESSAGE, message_id_for(req.request_id), now,
                channel=req.notify_channel or "console", recipient=req.notify_address,
            )
        )  # fmt: skip
        created += 1
    session.flush()
    return created


def pending(
    request_id: str,
    kind: str,
    message_id: str,
    now: datetime,
    *,
    channel: str,
    recipient: str | None = None,
    target: str | None = None,
) -> Notification:
    """A new Pending notification row (nothing attempted or dispatched yet)."""
    return Notification(
        request_id=request_id,
        kind=kind,
        target=target,
        channel=channel,
        recipient=recipient,
        status=NotificationStatus.PENDING.value,
        attempts=0,
        dispatches=0,
        message_id=message_id,
        created_at=now,
    )


def dispatch_due(
    session: Session, now: datetime, *, limit: int = 200
) -> list[tuple[Notification, str]]:
    """Notifications that need a run now, each with its run key; marks them dispatched.

    Pending or Sending notifications never dispatched, or dispatched more than
    :data:`REDISPATCH_AFTER` ago without finishing (the run crashed or was lost), get a new
    run key ``notify-<request id>-<dispatch number>``.
    """
    stale = now - REDISPATCH_AFTER
    stmt = (
        select(Notification)
        .where(
            Notification.status.in_(
                [NotificationStatus.PENDING.value, NotificationStatus.SENDING.value]
            ),
            Notification.dispatched_at.is_(None) | (Notification.dispatched_at < stale),
        )
        .order_by(Notification.id)
        .limit(limit)
    )
    out = []
    for note in session.scalars(stmt):
        note.dispatches += 1
        note.dispatched_at = now
        what = "notify" if note.kind == KIND_MESSAGE else f"{note.kind}-{note.id}"
        out.append((note, f"{what}-{note.request_id}-{note.dispatches}"))
    session.flush()
    return out


def webhook_message_id(request_id: str, attempt: int, status: str) -> str:
    """The stable ``webhook-id`` of one outcome of one attempt of a request
    (``msg_<request id>_<attempt>_<completed|failed>``, Standard Webhooks' ``msg_`` style)."""
    return f"msg_{request_id}_{attempt}_{status.lower()}"


def webhook_outcome(message_id: str) -> tuple[int, str]:
    """The ``(attempt, status)`` a webhook's message id names (``"Completed"`` or
    ``"Failed"``), as made by :func:`webhook_message_id`.

    Raises:
        InvalidInputError: not a webhook message id.
    """
    try:
        _, attempt, state = message_id.rsplit("_", 2)
        return int(attempt), RequestStatus(state.capitalize()).value
    except ValueError as exc:
        raise InvalidInputError(f"{message_id!r} is not a webhook message id") from exc


def create_due_webhooks(session: Session, now: datetime, limit: int = 200) -> int:
    """Create a Pending webhook for each Completed or Failed request with a ``callback_url``
    whose current outcome has none yet (webhooks are due at once). Returns how many."""
    message_id = (
        literal("msg_")
        + GenerationRequest.request_id
        + literal("_")
        + cast(GenerationRequest.attempt, String)
        + literal("_")
        + func.lower(GenerationRequest.status)
    )
    already = exists().where(
        and_(Notification.request_id == GenerationRequest.request_id,
             Notification.message_id == message_id)
    )  # fmt: skip
    stmt = (
        select(GenerationRequest)
        .where(
            GenerationRequest.callback_url.is_not(None),
            GenerationRequest.status.in_(WEBHOOK_STATUSES),
            ~already,
        )
        .order_by(GenerationRequest.created_at)
        .limit(limit)
    )
    created = 0
    for req in session.scalars(stmt):
        message_id = webhook_message_id(req.request_id, req.attempt, req.status)
        session.add(
            pending(req.request_id, KIND_WEBHOOK, message_id, now,
                    channel=WEBHOOK_CHANNEL, target=req.callback_url)
        )  # fmt: skip
        created += 1
    session.flush()
    return created


def get_notification(
    session: Session, request_id: str, *, notification_id: int | None = None
) -> Notification:
    """The message notification of ``request_id``, or the row ``notification_id`` (which must
    belong to that request).

    Raises:
        InvalidInputError: there is none.
    """
    stmt = select(Notification).where(Notification.request_id == request_id)
    if notification_id is None:
        stmt = stmt.where(Notification.kind == KIND_MESSAGE)
    else:
        stmt = stmt.where(Notification.id == notification_id)
    note = session.scalars(stmt).first()
    if note is None:
        what = "notification" if notification_id is None else f"notification {notification_id}"
        raise InvalidInputError(f"request {request_id} has no {what}")
    return note


def webhooks_of(session: Session, request_id: str) -> list[Notification]:
    """The request's webhook rows, oldest first."""
    stmt = (
        select(Notification)
        .where(Notification.request_id == request_id, Notification.kind == KIND_WEBHOOK)
        .order_by(Notification.id)
    )
    return list(session.scalars(stmt))


def begin_send(
    session: Session, request_id: str, *, notification_id: int | None = None
) -> Notification:
    """Record an attempt (Sending, attempts + 1); commit this before calling the provider."""
    note = get_notification(session, request_id, notification_id=notification_id)
    note.status = NotificationStatus.SENDING.value
    note.attempts += 1
    return note


def record_sent(
    session: Session,
    request_id: str,
    provider_message_id: str | None,
    *,
    notification_id: int | None = None,
) -> None:
    """Record that the provider accepted the message."""
    note = get_notification(session, request_id, notification_id=notification_id)
    note.status = NotificationStatus.SENT.value
    note.provider_message_id = provider_message_id
    note.sent_at = utcnow()
    note.last_error = None


def record_failure(
    session: Session,
    request_id: str,
    error: str,
    *,
    permanent: bool,
    notification_id: int | None = None,
) -> Notification:
    """Record a failed attempt: Failed if permanent or out of attempts, else still Sending."""
    note = get_notification(session, request_id, notification_id=notification_id)
    note.last_error = error[:4000]
    if permanent or note.attempts >= MAX_ATTEMPTS:
        note.status = NotificationStatus.FAILED.value
        if not permanent:
            note.last_error = f"gave up after {note.attempts} attempts: {error}"[:4000]
    return note
