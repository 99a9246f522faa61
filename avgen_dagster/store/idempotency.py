"""``Idempotency-Key`` records of the HTTP API (IETF draft-ietf-httpapi-idempotency-key-header).

A submission with a key first *reserves* it (one row per user and key, unique in the database,
so two concurrent submissions with one key cannot both create a request), is then taken in,
and *completes* the reservation with its request id — or *releases* it when intake refused the
input, so the user can fix the body and send it again under the same key.

* same key, same fingerprint, completed → the same request (the API answers 200);
* same key, another fingerprint → :class:`IdempotencyConflict` (409);
* same key while the first submission is still being taken in → :class:`IdempotencyInProgress`
  (409); a reservation left behind by a crashed process is taken over after
  :data:`ABANDONED_AFTER`.

Records live as long as their request (erased with it). Pure SQLAlchemy; no Dagster.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from avgen_dagster.errors import AvgenError
from avgen_dagster.store.models import IdempotencyRecord, utcnow
from avgen_dagster.store.session import AppDatabase

MAX_KEY_CHARS = 255
ABANDONED_AFTER = timedelta(minutes=10)


class IdempotencyConflict(AvgenError):
    """The key was used before with a different body."""


class IdempotencyInProgress(AvgenError):
    """The key's first submission is still being taken in."""


def reserve(db: AppDatabase, user_id: str, key: str, fingerprint: str) -> str | None:
    """Reserve ``key`` for ``user_id``'s submission whose body hashes to ``fingerprint``.

    Returns:
        None when the caller holds the reservation now (take the request in, then
        :func:`complete` or :func:`release`); else the id of the request this key and body
        already produced.

    Raises:
        IdempotencyConflict: the key was used with another body.
        IdempotencyInProgress: the key's first submission is still running.
    """
    for _ in range(3):
        try:
            with db.session() as s:
                row = s.scalars(
                    select(IdempotencyRecord).where(
                        IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key
                    )
                ).first()
                if row is None:
                    s.add(
                        IdempotencyRecord(
                            user_id=user_id, key=key, body_sha256=fingerprint, created_at=utcnow()
                        )
                    )
                    s.flush()
                    return None
                if row.body_sha256 != fingerprint:
                    raise IdempotencyConflict(
                        "Idempotency-Key was already used with a different request body; use a "
                        "new key for a new request"
                    )
                if row.request_id is not None:
                    return row.request_id
                if utcnow() - row.created_at < ABANDONED_AFTER:
                    raise IdempotencyInProgress(
                        "a request with this Idempotency-Key is still being taken in; retry later"
                    )
                row.created_at = utcnow()  # abandoned by a crashed process: take it over
                return None
        except IntegrityError:
            continue  # another submission inserted the key first: read theirs
    raise IdempotencyInProgress("a request with this Idempotency-Key is still being taken in")


def complete(db: AppDatabase, user_id: str, key: str, request_id: str) -> None:
    """Record the request a reserved key produced."""
    with db.session() as s:
        row = s.scalars(
            select(IdempotencyRecord).where(
                IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key
            )
        ).one()
        row.request_id = request_id


def release(db: AppDatabase, user_id: str, key: str) -> None:
    """Drop an unfinished reservation (intake refused the input); a finished one stays."""
    with db.session() as s:
        s.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.user_id == user_id,
                IdempotencyRecord.key == key,
                IdempotencyRecord.request_id.is_(None),
            )
        )
