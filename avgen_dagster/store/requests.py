"""Queries of generation requests (pure SQLAlchemy; no Dagster).

Status changes live in :mod:`avgen_dagster.store.status`, the one module allowed to make them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.outputs import RequestOutputs
from avgen_dagster.store import status
from avgen_dagster.store.models import (
    ContentView,
    GenerationRequest,
    RequestStatus,
    User,
    new_request_id,
    utcnow,
)
from avgen_dagster.validation import validate_user_id


def ensure_user(session: Session, user_id: str, email: str | None = None) -> User:
    """Return the user ``user_id``, creating it if new (and setting ``email`` if given).

    Raises:
        InvalidInputError: if ``user_id`` is not a valid user id.
    """
    validate_user_id(user_id)
    user = session.get(User, user_id)
    if user is None:
        user = User(user_id=user_id, email=email, created_at=utcnow())
        session.add(user)
        session.flush()
    elif email:
        user.email = email
    return user


def create_request(
    session: Session,
    *,
    user_id: str,
    prompt: str | None,
    script: str | None,
    portrait_path: str | None,
    options: dict[str, Any] | None = None,
    request_id: str | None = None,
    notify_at: datetime | None = None,
    notify_address: str | None = None,
) -> GenerationRequest:
    """Insert a new request for ``user_id`` (creating the user if new), Queued, and return it.

    Exactly one of ``prompt`` and ``script`` must be given. ``notify_at`` is an aware
    datetime (stored as UTC); a time in the past means "as soon as it is ready".
    With ``notify_address`` the user is told by email, otherwise on the console.

    Raises:
        InvalidInputError: bad user id, or neither/both of prompt and script.
    """
    if (prompt is None) == (script is None):
        raise InvalidInputError("give either a prompt or a script (exactly one)")
    ensure_user(session, user_id)
    req = GenerationRequest(
        request_id=request_id or new_request_id(),
        user_id=user_id,
        prompt=prompt,
        script=script,
        portrait_path=portrait_path,
        options=dict(options or {}),
        outputs={},
        attempt=0,
        created_at=utcnow(),
        notify_at=notify_at,
        notify_channel="email" if notify_address else "console",
        notify_address=notify_address,
    )
    session.add(req)
    session.flush()
    status.record_created(session, req)
    session.flush()
    return req


def get_request(session: Session, request_id: str) -> GenerationRequest:
    """The request ``request_id``.

    Raises:
        InvalidInputError: if there is no such request.
    """
    req = session.get(GenerationRequest, request_id)
    if req is None:
        raise InvalidInputError(f"no generation request with id {request_id!r}")
    return req


def list_requests(session: Session, user_id: str, limit: int = 50) -> list[GenerationRequest]:
    """The user's requests, newest first (at most ``limit``)."""
    stmt = (
        select(GenerationRequest)
        .where(GenerationRequest.user_id == user_id)
        .order_by(GenerationRequest.created_at.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def requests_to_submit(
    session: Session, *, limit: int = 100, stale_after: timedelta = timedelta(minutes=10)
) -> list[GenerationRequest]:
    """Requests the intake sensor should (re)submit, oldest first.

    Queued requests, plus Processing ones whose run never started (no ``run_id``) for longer
    than ``stale_after`` since they were submitted — a crash between the sensor's database
    update and the run's launch must not strand a request; re-submitting is safe because the
    run key (the request id) makes Dagster launch one run per request at most.
    """
    stale = utcnow() - stale_after
    stmt = (
        select(GenerationRequest)
        .where(
            (GenerationRequest.status == RequestStatus.QUEUED.value)
            | (
                (GenerationRequest.status == RequestStatus.PROCESSING.value)
                & GenerationRequest.run_id.is_(None)
                & (GenerationRequest.submitted_at < stale)
            )
        )
        .order_by(GenerationRequest.created_at)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def requests_with_runs(session: Session, limit: int = 500) -> list[GenerationRequest]:
    """Processing requests that have a run recorded (the lost-run sensor checks each)."""
    stmt = (
        select(GenerationRequest)
        .where(
            (GenerationRequest.status == RequestStatus.PROCESSING.value)
            & GenerationRequest.run_id.is_not(None)
        )
        .order_by(GenerationRequest.created_at)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def outputs_of(req: GenerationRequest) -> RequestOutputs:
    """The request's typed outputs record (empty until it is Completed)."""
    return RequestOutputs.from_json(req.outputs)


def log_view(session: Session, user_id: str, request_id: str, item: str) -> None:
    """Record that ``user_id`` viewed ``item`` of their request ``request_id``.

    Raises:
        InvalidInputError: the request does not exist or is not ``user_id``'s.
    """
    req = get_request(session, request_id)
    if req.user_id != user_id:
        raise InvalidInputError(f"request {request_id} is not {user_id!r}'s")
    session.add(ContentView(user_id=user_id, request_id=request_id, item=item[:200],
                            created_at=utcnow()))  # fmt: skip
    session.flush()
