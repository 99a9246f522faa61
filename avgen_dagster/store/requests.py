"""Queries and state changes of generation requests (pure SQLAlchemy; no Dagster)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.store.models import (
    ContentView,
    GenerationRequest,
    RequestStatus,
    User,
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
    status: RequestStatus = RequestStatus.QUEUED,
    request_id: str | None = None,
    notify_at: datetime | None = None,
    notify_address: str | None = None,
) -> GenerationRequest:
    """Insert a new request for ``user_id`` (creating the user if new) and return it.

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
        user_id=user_id,
        prompt=prompt,
        script=script,
        portrait_path=portrait_path,
        options=dict(options or {}),
        status=status.value,
        video_paths=[],
        image_paths=[],
        audio_paths=[],
        created_at=utcnow(),
        notify_at=notify_at,
        notify_channel="email" if notify_address else "console",
        notify_address=notify_address,
    )
    if request_id is not None:
        req.request_id = request_id
    session.add(req)
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


def latest_request(session: Session, user_id: str) -> GenerationRequest | None:
    """The user's newest request (by creation time), or None."""
    stmt = (
        select(GenerationRequest)
        .where(GenerationRequest.user_id == user_id)
        .order_by(GenerationRequest.created_at.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


def mark_processing(session: Session, request_id: str, run_id: str | None = None) -> None:
    """Set the request's status to Processing (and remember the Dagster run id)."""
    req = get_request(session, request_id)
    req.status = RequestStatus.PROCESSING.value
    req.error = None
    if run_id:
        req.run_id = run_id


def record_outputs(
    session: Session,
    request_id: str,
    *,
    video_paths: Sequence[str] = (),
    image_paths: Sequence[str] = (),
    audio_paths: Sequence[str] = (),
) -> None:
    """Add output paths to the request (kept in order, without duplicates)."""
    req = get_request(session, request_id)

    def merged(old: list[str] | None, new: Sequence[str]) -> list[str]:
        return list(dict.fromkeys([*(old or []), *new]))

    req.video_paths = merged(req.video_paths, video_paths)
    req.image_paths = merged(req.image_paths, image_paths)
    req.audio_paths = merged(req.audio_paths, audio_paths)


def mark_completed(
    session: Session,
    request_id: str,
    *,
    video_paths: Sequence[str],
    image_paths: Sequence[str] = (),
    audio_paths: Sequence[str] = (),
) -> None:
    """Set the request Completed, adding these output paths; ``generated_at`` = now (UTC)."""
    record_outputs(
        session,
        request_id,
        video_paths=video_paths,
        image_paths=image_paths,
        audio_paths=audio_paths,
    )
    req = get_request(session, request_id)
    req.status = RequestStatus.COMPLETED.value
    req.generated_at = utcnow()
    req.error = None


def mark_failed(session: Session, request_id: str, error: str) -> None:
    """Set the request Failed with a readable ``error`` (kept to 4,000 characters)."""
    req = get_request(session, request_id)
    req.status = RequestStatus.FAILED.value
    req.error = error[:4000]


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


def mark_submitted(session: Session, request_ids: Sequence[str]) -> None:
    """Queued → Processing for requests whose run the sensor has just requested."""
    now = utcnow()
    for request_id in request_ids:
        req = get_request(session, request_id)
        req.status = RequestStatus.PROCESSING.value
        req.submitted_at = now


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
