"""A request's status: the one module that changes it, and the transitions it allows.

::

    (new) ──▶ Queued ──▶ Processing ──▶ Completed
                ▲             │
                │             ▼
                └─ retry ── Failed

* **Queued → Processing** when a run is requested for it (the request sensor, or
  ``avgen generate`` starting its run in-process);
* **Processing → Completed** only from ``content_record``, after every blocking check on the
  deliverables has passed;
* **Processing → Failed** with the run's real reason (a step's exception, a failed check, a
  signal, a cancellation, a lost run worker);
* **Failed → Queued** only by an explicit retry (``avgen request retry``, the portal's Retry
  button, the API), which keeps the request id and its history and bumps ``attempt`` so the
  next run gets a new run key. A re-execution of a failed run from the Dagster UI counts as
  such a retry, recorded as one.

Nothing else: any other change raises :class:`TransitionError`. Every change writes a
:class:`~avgen_dagster.store.models.RequestEvent` in the same transaction (the history). Pure
SQLAlchemy; no Dagster.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from avgen_dagster.errors import AvgenError, InvalidInputError
from avgen_dagster.outputs import RequestOutputs
from avgen_dagster.store.models import GenerationRequest, RequestEvent, RequestStatus, utcnow

Q, P, C, F = (
    RequestStatus.QUEUED,
    RequestStatus.PROCESSING,
    RequestStatus.COMPLETED,
    RequestStatus.FAILED,
)
ALLOWED_TRANSITIONS: dict[RequestStatus | None, frozenset[RequestStatus]] = {
    None: frozenset({Q}),  # creation
    Q: frozenset({P}),
    P: frozenset({C, F}),
    F: frozenset({Q}),
    C: frozenset(),
}
MAX_REASON_CHARS = 4000


class TransitionError(AvgenError):
    """A status change the life cycle does not allow (the message names both states)."""


def run_key(request_id: str, attempt: int) -> str:
    """The Dagster run key of a request's ``attempt``: the id, then ``<id>-retry-<n>``."""
    return request_id if attempt == 0 else f"{request_id}-retry-{attempt}"


def _get(session: Session, request_id: str, *, lock: bool = True) -> GenerationRequest:
    stmt = select(GenerationRequest).where(GenerationRequest.request_id == request_id)
    if lock:
        stmt = stmt.with_for_update()  # a row lock on Postgres; SQLite serialises writers
    req = session.scalars(stmt).first()
    if req is None:
        raise InvalidInputError(f"no generation request with id {request_id!r}")
    return req


def _record(
    session: Session,
    req: GenerationRequest,
    to: RequestStatus,
    reason: str | None,
    run_id: str | None,
) -> None:
    before = RequestStatus(req.status) if req.status else None
    if to != before and to not in ALLOWED_TRANSITIONS[before]:
        allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[before])) or "nothing"
        raise TransitionError(
            f"request {req.request_id} is {before}; it cannot become {to} (allowed: {allowed})"
        )
    req.status = to.value
    session.add(
        RequestEvent(
            request_id=req.request_id,
            from_status=before.value if before else None,
            to_status=to.value,
            reason=(reason or None) and reason[:MAX_REASON_CHARS],
            run_id=run_id,
            created_at=utcnow(),
        )
    )
    session.flush()


def record_created(session: Session, req: GenerationRequest) -> None:
    """Record the new request's first state (Queued); called once by ``create_request``,
    after the row is flushed."""
    req.status = Q.value
    session.add(
        RequestEvent(request_id=req.request_id, from_status=None, to_status=Q.value,
                     reason="request taken in", created_at=utcnow())
    )  # fmt: skip


def submit(session: Session, request_id: str, *, run_id: str | None = None) -> bool:
    """Queued → Processing: a run is being requested for it (``run_id`` when already known).

    A request still Processing without a run (a stale submission being re-requested under
    the same run key) only gets its submission time refreshed.

    Returns:
        True if the status changed.

    Raises:
        TransitionError: the request is Completed or Failed.
    """
    req = _get(session, request_id)
    req.submitted_at = utcnow()
    if run_id:
        req.run_id = run_id
    if req.status == P.value and req.run_id in (None, run_id):
        return False
    _record(session, req, P, "run requested", run_id)
    return True


def start_run(
    session: Session, request_id: str, run_id: str, *, parent_run_id: str | None = None
) -> GenerationRequest:
    """The run ``run_id`` has started work on the request: record it (status stays Processing).

    A re-execution (``parent_run_id``) of the run of a Failed request reopens it as an
    explicit retry (Failed → Queued → Processing, both recorded).

    Raises:
        TransitionError: the request is Completed, Queued (not submitted), or Failed and this
            run is not a re-execution.
    """
    req = _get(session, request_id)
    if req.status == F.value and parent_run_id:
        _reopen(session, req, run_id, parent_run_id)
    if req.status != P.value:
        raise TransitionError(
            f"request {request_id} is {req.status}, not Processing: run {run_id} may not work "
            "on it (retry a Failed request with `avgen request retry`)"
        )
    if req.run_id != run_id:
        req.run_id = run_id
        session.add(
            RequestEvent(request_id=request_id, from_status=P.value, to_status=P.value,
                         reason="run started", run_id=run_id, created_at=utcnow())
        )  # fmt: skip
    return req


def _reopen(session: Session, req: GenerationRequest, run_id: str, parent_run_id: str) -> None:
    _record(session, req, Q, f"re-execution of run {parent_run_id} (a retry)", run_id)
    req.attempt += 1
    req.error = None
    _record(session, req, P, "run requested", run_id)
    req.run_id = run_id
    req.submitted_at = utcnow()


def complete(
    session: Session,
    request_id: str,
    outputs: RequestOutputs,
    *,
    run_id: str,
    parent_run_id: str | None = None,
) -> None:
    """Processing → Completed with its outputs record (the only writer of both).

    Raises:
        TransitionError: the request is not Processing (or Failed and re-executed).
    """
    req = _get(session, request_id)
    if req.status == F.value and parent_run_id:
        _reopen(session, req, run_id, parent_run_id)
    if req.status == C.value:
        raise TransitionError(f"request {request_id} is already Completed")
    _record(session, req, C, None, run_id)
    req.outputs = outputs.to_json()
    req.run_id = run_id
    req.generated_at = utcnow()
    req.error = None


def fail(
    session: Session,
    request_id: str,
    reason: str,
    *,
    run_id: str | None = None,
    attempt: int | None = None,
) -> bool:
    """Processing → Failed with a readable ``reason`` (kept to 4,000 characters).

    A failure reported for an older attempt (``attempt`` below the request's) or for another
    run than the one working on it is ignored: a late report must not fail a retry. A request
    already Failed gets the newer reason.

    Returns:
        True if the request is now Failed because of this call.

    Raises:
        TransitionError: the request is Completed or Queued.
    """
    req = _get(session, request_id)
    if attempt is not None and attempt != req.attempt:
        return False
    if run_id and req.run_id and run_id != req.run_id:
        return False
    if req.status == F.value:
        req.error = reason[:MAX_REASON_CHARS]
        return False
    _record(session, req, F, reason, run_id)
    req.error = reason[:MAX_REASON_CHARS]
    return True


def retry(session: Session, request_id: str, *, by: str) -> GenerationRequest:
    """Failed → Queued for a new run (new run key), keeping the id, inputs and history.

    Args:
        by: who asked, for the history (``"avgen request retry"``, ``"portal"``, ``"api"``).

    Raises:
        TransitionError: the request is not Failed (naming its status).
    """
    req = _get(session, request_id)
    if req.status != F.value:
        raise TransitionError(
            f"request {request_id} is {req.status}; only a Failed request can be retried"
        )
    _record(session, req, Q, f"retry ({by}); previous error: {req.error or '-'}", None)
    req.attempt += 1
    req.error = None
    req.run_id = None
    req.submitted_at = None
    req.outputs = RequestOutputs().to_json()
    return req


def history(session: Session, request_id: str) -> list[RequestEvent]:
    """The request's status events, oldest first."""
    stmt = (
        select(RequestEvent)
        .where(RequestEvent.request_id == request_id)
        .order_by(RequestEvent.created_at, RequestEvent.id)
    )
    return list(session.scalars(stmt))
