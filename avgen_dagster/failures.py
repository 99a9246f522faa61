"""Readable failure reasons from Dagster's step failure events, and marking requests Failed."""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg
from dagster._utils.error import SerializableErrorInfo

from avgen_dagster.store.requests import mark_failed
from avgen_dagster.store.session import AppDatabase

REQUEST_ID_TAG = "avgen/request_id"


def _root_cause(error: SerializableErrorInfo) -> SerializableErrorInfo:
    # Dagster wraps user errors (DagsterExecutionStepExecutionError); the user's is the cause.
    while error.cause is not None:
        error = error.cause
    return error


def failure_reason(step_failures: Iterable[dg.DagsterEvent]) -> str:
    """One line per failed step: ``<asset>: <ErrorClass>: <message>``.

    Returns "the run failed" when no step failure carries an error (e.g. a canceled run).
    """
    lines = []
    for event in step_failures:
        data = event.step_failure_data
        if data is None or data.error is None:
            continue
        root = _root_cause(data.error)
        message = root.message.strip().splitlines()[-1] if root.message.strip() else root.cls_name
        lines.append(f"{event.step_key}: {message}")
    return "\n".join(lines) or "the run failed"


def run_failure_reason(instance: dg.DagsterInstance, run_id: str) -> str:
    """The readable failure reason of run ``run_id`` from its event log."""
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    return failure_reason(r.dagster_event for r in records if r.dagster_event is not None)


def mark_request_failed(db: AppDatabase, request_id: str, reason: str) -> None:
    """Mark the request Failed with ``reason`` (what the portal and the CLI show)."""
    with db.session() as s:
        mark_failed(s, request_id, reason)
