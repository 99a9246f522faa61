"""How far a request's Dagster run has got, from the run's own records (no guessing).

Through the instance's run and event-log APIs (the ones the Dagster UI reads): the run record
(status), its execution plan snapshot (the steps the run will execute: its assets and asset
checks) and its step events (``STEP_START`` / ``STEP_SUCCESS`` / ``STEP_FAILURE`` /
``STEP_SKIPPED``). The current step is the last one started and not finished; the fraction is
finished steps over planned steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from avgen_dagster.api.schemas import RunProgress

if TYPE_CHECKING:
    import dagster as dg


def _planned_steps(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int | None:
    if run.step_keys_to_execute:
        return len(run.step_keys_to_execute)
    if not run.execution_plan_snapshot_id:
        return None
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    if plan.step_keys_to_execute:
        return len(plan.step_keys_to_execute)
    return len(plan.steps)


def run_progress(instance: dg.DagsterInstance, run_id: str) -> RunProgress | None:
    """The progress of run ``run_id``, or None when the instance has no such run (yet)."""
    import dagster as dg

    run = instance.get_run_by_id(run_id)
    if run is None:
        return None
    kinds = {
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_FAILURE,
        dg.DagsterEventType.STEP_SKIPPED,
    }
    started: list[str] = []
    finished: set[str] = set()
    succeeded: list[str] = []
    for record in instance.all_logs(run_id, of_type=kinds):
        event = record.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started.append(event.step_key)
            finished.discard(event.step_key)  # a retried step starts again
        else:
            finished.add(event.step_key)
            if event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                succeeded.append(event.step_key)
    running = [key for key in started if key not in finished]
    total = _planned_steps(instance, run)
    return RunProgress(
        run_id=run_id,
        run_status=run.status.value,
        current_step=running[-1] if running and not run.is_finished else None,
        steps_done=len(succeeded),
        steps_total=total,
        fraction_done=round(min(len(succeeded) / total, 1.0), 4) if total else None,
        completed_steps=succeeded,
    )
