"""The real reason a run did not finish, read from Dagster's event log, and the request marked
Failed with it.

In order of precedence: the failed steps (``<step>: <exception message>`` — a blocking asset
check that failed shows as its step), then what Dagster itself recorded about the run worker
(e.g. "Run execution process for … was terminated by signal 9 (SIGKILL)"), then the run's
failure or cancellation message ("… took longer than 300 seconds to start"). Never the bare
"the run failed" when the log knows more.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.runs import ATTEMPT_TAG
from avgen_dagster.store import status
from avgen_dagster.store.session import AppDatabase

_WORKER_MARKERS = ("run execution process", "run worker", "signal", "exit code", "exited with")


def _root_message(error: object) -> str:
    # Dagster wraps user errors (DagsterExecutionStepExecutionError); the user's is the cause.
    while getattr(error, "cause", None) is not None:
        error = error.cause  # type: ignore[attr-defined]
    message = str(getattr(error, "message", "") or "").strip()
    return message.splitlines()[-1] if message else str(getattr(error, "cls_name", "error"))


def failure_reason(step_failures: Iterable[dg.DagsterEvent]) -> str | None:
    """One line per failed step: ``<step key>: <message>``; None when no step failed."""
    lines = []
    for event in step_failures:
        data = event.step_failure_data
        if data is None or data.error is None:
            continue
        lines.append(f"{event.step_key}: {_root_message(data.error)}")
    return "\n".join(lines) or None


def run_failure_reason(instance: dg.DagsterInstance, run_id: str) -> str:
    """The readable reason run ``run_id`` failed or was canceled (see the module docstring)."""
    steps = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    reason = failure_reason(r.dagster_event for r in steps if r.dagster_event is not None)
    if reason:
        return reason
    engine = instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
    for record in reversed(engine):
        message = (record.message or "").strip()
        if any(marker in message.lower() for marker in _WORKER_MARKERS):
            return message.splitlines()[0]
    for event_type, fallback in (
        (dg.DagsterEventType.RUN_FAILURE, "the run failed"),
        (dg.DagsterEventType.RUN_CANCELED, "the run was canceled"),
    ):
        records = instance.all_logs(run_id, of_type=event_type)
        if records:
            message = (records[-1].message or "").strip()
            generic = not message or message.startswith("Execution of run for")
            return fallback if generic else message.splitlines()[0]
    return "the run ended without finishing (no reason was recorded)"


def mark_run_failed(
    db: AppDatabase, instance: dg.DagsterInstance, run: dg.DagsterRun, request_id: str
) -> str | None:
    """Mark the run's request Failed with the run's real reason; return the reason, or None
    when the report was stale (an older attempt's run, or another run than the request's) or
    the request no longer exists (erased: its runs were terminated)."""
    reason = run_failure_reason(instance, run.run_id)
    attempt_tag = run.tags.get(ATTEMPT_TAG)
    try:
        with db.session() as s:
            changed = status.fail(
                s,
                request_id,
                reason,
                run_id=run.run_id,
                attempt=int(attempt_tag) if attempt_tag and attempt_tag.isdigit() else None,
            )
    except InvalidInputError:  # no such request: erased while its run was stopping
        return None
    return reason if changed else None
