"""Read queries of the HTTP API: a user's requests page by page, queue positions, the last
portrait. Pure SQLAlchemy; no Dagster.

Pages are ordered newest first by ``(created_at, request_id)`` — a total order, so a cursor
(the last row's pair) continues exactly where the page ended even when requests share a time
and new ones arrive meanwhile (keyset pagination; no offsets).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.store.models import GenerationRequest, RequestStatus
from avgen_dagster.validation import validate_request_id

MAX_PAGE = 100


def encode_cursor(created_at: datetime, request_id: str) -> str:
    """An opaque cursor (base64url JSON) naming the position after one row."""
    raw = json.dumps([created_at.isoformat(), request_id]).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The ``(created_at, request_id)`` a cursor names.

    Raises:
        InvalidInputError: not a cursor this API made.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        when, request_id = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        stamp = datetime.fromisoformat(when)
        if stamp.tzinfo is None:
            raise ValueError("no time zone")
        return stamp, validate_request_id(request_id)
    except (ValueError, TypeError, UnicodeError, binascii.Error) as exc:
        raise InvalidInputError("cursor is not one this API returned") from exc


def requests_page(
    session: Session, user_id: str, *, limit: int, cursor: str | None = None
) -> tuple[list[GenerationRequest], str | None]:
    """Up to ``limit`` (1–100) of the user's requests, newest first, after ``cursor``; and the
    cursor of the next page (None on the last page).

    Raises:
        InvalidInputError: a bad cursor or limit.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"limit {limit} is outside 1..{MAX_PAGE}")
    stmt = select(GenerationRequest).where(GenerationRequest.user_id == user_id)
    if cursor:
        when, last_id = decode_cursor(cursor)
        stmt = stmt.where(
            or_(
                GenerationRequest.created_at < when,
                and_(GenerationRequest.created_at == when, GenerationRequest.request_id < last_id),
            )
        )
    stmt = stmt.order_by(
        GenerationRequest.created_at.desc(), GenerationRequest.request_id.desc()
    ).limit(limit + 1)
    rows = list(session.scalars(stmt))
    page = rows[:limit]
    more = len(rows) > limit
    return page, (encode_cursor(page[-1].created_at, page[-1].request_id) if more else None)


# Built once: constructing the expression costs about as much CPU as running it (measured on
# the status path); each call binds the request's own values.
_QUEUED_AHEAD = (
    select(func.count())
    .select_from(GenerationRequest)
    .where(
        GenerationRequest.status == RequestStatus.QUEUED.value,
        or_(
            GenerationRequest.created_at < bindparam("created_at"),
            and_(
                GenerationRequest.created_at == bindparam("created_at"),
                GenerationRequest.request_id < bindparam("request_id"),
            ),
        ),
    )
)


def queue_position(session: Session, req: GenerationRequest) -> int | None:
    """1-based place of a Queued request in the intake queue (the request sensor takes Queued
    requests oldest first): 1 + the Queued requests of every user created before it. None
    when the request is not Queued."""
    if req.status != RequestStatus.QUEUED.value:
        return None
    ahead = session.scalar(
        _QUEUED_AHEAD, {"created_at": req.created_at, "request_id": req.request_id}
    )
    return int(ahead or 0) + 1


def last_portrait_uri(session: Session, user_id: str) -> str | None:
    """The stored face source (photo or driving video) of the user's newest request that has
    one, or None."""
    stmt = (
        select(GenerationRequest.portrait_path)
        .where(GenerationRequest.user_id == user_id, GenerationRequest.portrait_path.is_not(None))
        .order_by(GenerationRequest.created_at.desc(), GenerationRequest.request_id.desc())
        .limit(1)
    )
    return session.scalar(stmt)
