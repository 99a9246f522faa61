"""Notification records: created when due, dispatched to runs, and every send recorded.

State: Pending → Sending (committed BEFORE the provider is called) → Sent | Failed. A
notification found in Sending was interrupted (crash, kill, transient error): it is sent again
under the same message id — at-least-once delivery, never silently lost.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
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
        .outerjoin(Notification, Notification.request_id == GenerationRequest.request_id)
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
            Notification(
                request_id=req.request_id,
                channel=req.notify_channel or "console",
                recipient=req.notify_address,
                status=NotificationStatus.PENDING.value,
                attempts=0,
                dispatches=0,
                message_id=message_id_for(req.request_id),
                created_at=now,
            )
        )
        created += 1
    session.flush()
    return created


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
        out.append((note, f"notify-{note.request_id}-{note.dispatches}"))
    session.flush()
    return out


def get_notification(session: Session, request_id: str) -> Notification:
    """The notification of ``request_id``.

    Raises:
        InvalidInputError: there is none.
    """
    note = session.scalars(
        select(Notification).where(Notification.request_id == request_id)
    ).first()
    if note is None:
        raise InvalidInputError(f"request {request_id} has no notification")
    return note


def begin_send(session: Session, request_id: str) -> Notification:
    """Record an attempt (Sending, attempts + 1); commit this before calling the provider."""
    note = get_notification(session, request_id)
    note.status = NotificationStatus.SENDING.value
    note.attempts += 1
    return note


def record_sent(session: Session, request_id: str, provider_message_id: str | None) -> None:
    """Record that the provider accepted the message."""
    note = get_notification(session, request_id)
    note.status = NotificationStatus.SENT.value
    note.provider_message_id = provider_message_id
    note.sent_at = utcnow()
    note.last_error = None


def record_failure(
    session: Session, request_id: str, error: str, *, permanent: bool
) -> Notification:
    """Record a failed attempt: Failed if permanent or out of attempts, else still Sending."""
    note = get_notification(session, request_id)
    note.last_error = error[:4000]
    if permanent or note.attempts >= MAX_ATTEMPTS:
        note.status = NotificationStatus.FAILED.value
        if not permanent:
            note.last_error = f"gave up after {note.attempts} attempts: {error}"[:4000]
    return note
