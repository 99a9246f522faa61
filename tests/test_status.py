"""A request's status changes only along the allowed transitions, each one recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from avgen_dagster.outputs import RequestOutputs
from avgen_dagster.store import AppDatabase, status
from avgen_dagster.store.models import GenerationRequest, RequestEvent, RequestStatus
from avgen_dagster.store.requests import create_request, get_request
from avgen_dagster.store.status import ALLOWED_TRANSITIONS, TransitionError

Q, P, C, F = (
    RequestStatus.QUEUED,
    RequestStatus.PROCESSING,
    RequestStatus.COMPLETED,
    RequestStatus.FAILED,
)
# The life cycle of the issue: Queued → Processing → Completed | Failed, Failed → Queued.
EXPECTED = {(None, Q), (Q, P), (P, C), (P, F), (F, Q)}


@pytest.fixture
def db(tmp_path: Path) -> AppDatabase:
    return AppDatabase(f"sqlite:///{tmp_path / 'status.db'}")


def _in(db: AppDatabase, state: RequestStatus) -> str:
    """A new request brought to ``state`` through allowed steps only."""
    with db.session() as s:
        rid = create_request(s, user_id="u", prompt="p", script=None, portrait_path="/p").request_id
        if state in (P, C, F):
            status.submit(s, rid)
            status.start_run(s, rid, "run-1")
        if state == C:
            status.complete(s, rid, RequestOutputs(talking_head_mp4="/a.mp4"), run_id="run-1")
        if state == F:
            status.fail(s, rid, "boom", run_id="run-1")
    return rid


OPERATIONS: dict[str, Callable[..., object]] = {
    "submit": lambda s, rid: status.submit(s, rid),
    "start_run": lambda s, rid: status.start_run(s, rid, "run-2"),
    "complete": lambda s, rid: status.complete(s, rid, RequestOutputs(), run_id="run-1"),
    "fail": lambda s, rid: status.fail(s, rid, "why", run_id="run-1"),
    "retry": lambda s, rid: status.retry(s, rid, by="test"),
}


def test_the_table_is_the_documented_life_cycle() -> None:
    table = {(a, b) for a, tos in ALLOWED_TRANSITIONS.items() for b in tos}
    assert table == EXPECTED


@pytest.mark.parametrize("state", [Q, P, C, F])
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_only_allowed_transitions_happen(
    db: AppDatabase, state: RequestStatus, operation: str
) -> None:
    """Every operation from every state either makes an allowed change (recorded) or none."""
    rid = _in(db, state)
    try:
        with db.session() as s:
            OPERATIONS[operation](s, rid)
    except TransitionError as exc:
        assert str(state) in str(exc)  # names the state it refused to leave
    with db.session() as s:
        after = RequestStatus(get_request(s, rid).status)
        changes = {(e.from_status, e.to_status) for e in status.history(s, rid)}
    changes = {(RequestStatus(a) if a else None, RequestStatus(b)) for a, b in changes if a != b}
    assert changes <= EXPECTED, changes
    assert after == state or (state, after) in EXPECTED


def test_retry_keeps_the_id_and_history_and_bumps_the_run_key(db: AppDatabase) -> None:
    rid = _in(db, F)
    with db.session() as s:
        req = status.retry(s, rid, by="avgen request retry")
        assert (req.status, req.attempt, req.error, req.run_id) == ("Queued", 1, None, None)
    assert status.run_key(rid, 0) == rid and status.run_key(rid, 1) == f"{rid}-retry-1"
    with db.session() as s:
        status.submit(s, rid)
        status.start_run(s, rid, "run-9")
        status.complete(s, rid, RequestOutputs(talking_head_mp4="/b.mp4"), run_id="run-9")
        steps = [
            (e.from_status, e.to_status)
            for e in status.history(s, rid)
            if e.from_status != e.to_status
        ]
    assert steps == [
        (None, "Queued"), ("Queued", "Processing"), ("Processing", "Failed"),
        ("Failed", "Queued"), ("Queued", "Processing"), ("Processing", "Completed"),
    ]  # fmt: skip


def test_a_late_failure_of_an_older_attempt_does_not_fail_the_retry(db: AppDatabase) -> None:
    rid = _in(db, F)
    with db.session() as s:
        status.retry(s, rid, by="test")
        status.submit(s, rid)
        status.start_run(s, rid, "run-2")
    with db.session() as s:
        assert not status.fail(s, rid, "late report of run-1", run_id="run-1", attempt=0)
        assert not status.fail(s, rid, "another run", run_id="run-3", attempt=1)
        assert get_request(s, rid).status == "Processing"
        assert status.fail(s, rid, "the real failure", run_id="run-2", attempt=1)


def test_a_reexecution_of_a_failed_run_counts_as_a_retry(db: AppDatabase) -> None:
    """Re-executing a failed run from the Dagster UI reopens its request as a recorded retry."""
    rid = _in(db, F)
    with db.session() as s:
        status.complete(s, rid, RequestOutputs(), run_id="run-2", parent_run_id="run-1")
    with db.session() as s:
        req = get_request(s, rid)
        assert (req.status, req.attempt, req.run_id) == ("Completed", 1, "run-2")
        reasons = [e.reason for e in status.history(s, rid)]
    assert any("re-execution of run run-1" in (r or "") for r in reasons)
    with pytest.raises(TransitionError, match="not Processing"), db.session() as s:
        status.start_run(s, _in(db, F), "run-2")  # no parent: a stray run may not reopen it


def test_every_event_names_a_real_request(db: AppDatabase) -> None:
    _in(db, C)
    with db.session() as s:
        ids = set(s.scalars(select(GenerationRequest.request_id)))
        assert {e.request_id for e in s.scalars(select(RequestEvent))} <= ids
