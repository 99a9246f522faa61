"""Erasing a request's rows (the user's right to erasure, GDPR Art. 17), and the record of it.

Every row that holds the request's content or names it goes, in one transaction: its
notifications (message and webhooks), content views, status history, idempotency keys and the
request itself. What stays is an :class:`~avgen_dagster.store.models.Erasure` row: that the
request was erased, by whom, when and how much went — no prompt, script, path or output.
Pure SQLAlchemy; no Dagster (the runs and files go in :mod:`avgen_dagster.api.erasure`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.orm import Session

from avgen_dagster.store.models import (
    ContentView,
    Erasure,
    GenerationRequest,
    IdempotencyRecord,
    Notification,
    RequestEvent,
    utcnow,
)


@dataclass(frozen=True)
class ErasureCounts:
    """How much went: Dagster runs terminated and deleted, files, database rows."""

    runs_terminated: int = 0
    runs_deleted: int = 0
    files_removed: int = 0
    rows_removed: int = 0


def delete_request_rows(session: Session, request_id: str) -> int:
    """Delete every row of ``request_id`` (see the module docstring); return how many."""
    removed = 0
    for table, column in (
        (Notification, Notification.request_id),
        (ContentView, ContentView.request_id),
        (RequestEvent, RequestEvent.request_id),
        (IdempotencyRecord, IdempotencyRecord.request_id),
        (GenerationRequest, GenerationRequest.request_id),
    ):
        result = session.execute(delete(table).where(column == request_id))
        removed += int(getattr(result, "rowcount", 0) or 0)
    return removed


def record_erasure(
    session: Session, request_id: str, user_id: str, by: str, counts: ErasureCounts
) -> None:
    """Keep the fact of the erasure (no content)."""
    session.add(
        Erasure(
            request_id=request_id,
            user_id=user_id,
            requested_by=by[:32],
            runs_terminated=counts.runs_terminated,
            runs_deleted=counts.runs_deleted,
            files_removed=counts.files_removed,
            rows_removed=counts.rows_removed,
            created_at=utcnow(),
        )
    )
