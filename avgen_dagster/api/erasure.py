"""Erasing one request (``DELETE /v1/requests/{id}``): its runs, its files, its rows.

1. **Runs**: every Dagster run tagged with the request (its generation runs, every retry, its
   notify runs) that has not finished is terminated through the instance's run coordinator
   (``cancel_run``: a queued run is dequeued and marked canceled; a started one is told to stop
   by its run launcher) — what the Dagster UI's *Terminate* does. The erasure waits up to
   ``wait_s`` for them to stop; one still not stopped is then marked canceled (the UI's *force
   termination*) so nothing later reports on it. Then the runs are deleted with their event
   logs, which hold the request's script and paths as metadata.
2. **Files**: the request's whole folder, ``.outputs/`` (the pickled asset outputs) included.
3. **Rows**: see :mod:`avgen_dagster.store.erasure`; an ``erasures`` row records the fact.

Logged on ``avgen.api`` (request id, user id and counts; no content).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from avgen_dagster.runs import REQUEST_ID_TAG
from avgen_dagster.store.content import ContentTree
from avgen_dagster.store.erasure import ErasureCounts, delete_request_rows, record_erasure
from avgen_dagster.store.requests import get_request
from avgen_dagster.store.session import AppDatabase

if TYPE_CHECKING:
    import dagster as dg

log = logging.getLogger("avgen.api")
POLL_S = 0.2


def _runs_of(instance: dg.DagsterInstance, request_id: str) -> list[dg.DagsterRun]:
    import dagster as dg

    return list(instance.get_runs(filters=dg.RunsFilter(tags={REQUEST_ID_TAG: request_id})))


def stop_runs(instance: dg.DagsterInstance, request_id: str, wait_s: float) -> tuple[int, int]:
    """Terminate the request's unfinished runs, wait for them, delete every one of its runs.

    Returns:
        ``(terminated, deleted)`` counts.
    """
    runs = _runs_of(instance, request_id)
    unfinished = [run.run_id for run in runs if not run.is_finished]
    for run_id in unfinished:
        try:
            instance.run_coordinator.cancel_run(run_id)
        except Exception:  # a launcher that cannot reach its worker: forced below
            log.warning("run %s of request %s: termination failed", run_id, request_id)
    deadline = time.monotonic() + wait_s
    while unfinished and time.monotonic() < deadline:
        time.sleep(POLL_S)
        unfinished = [
            run_id
            for run_id in unfinished
            if (run := instance.get_run_by_id(run_id)) is not None and not run.is_finished
        ]
    for run_id in unfinished:
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            log.warning("run %s of request %s did not stop; marked canceled", run_id, request_id)
            instance.report_run_canceled(run, message="canceled: the request was erased")
    deleted = 0
    for run in _runs_of(instance, request_id):
        instance.delete_run(run.run_id)
        deleted += 1
    return len([r for r in runs if not r.is_finished]), deleted


def erase_request(
    db: AppDatabase,
    tree: ContentTree,
    instance: dg.DagsterInstance,
    request_id: str,
    *,
    by: str,
    wait_s: float = 30.0,
) -> ErasureCounts:
    """Erase ``request_id`` (see the module docstring) and return what went.

    Raises:
        InvalidInputError: no such request.
        ContentStoreError: the files could not be removed (the rows are kept, so the erasure
            can be asked for again).
    """
    with db.session() as s:
        user_id = get_request(s, request_id).user_id
    terminated, deleted = stop_runs(instance, request_id, wait_s)
    files = tree.delete_request(user_id, request_id)
    with db.session() as s:
        rows = delete_request_rows(s, request_id)
        counts = ErasureCounts(terminated, deleted, files, rows)
        record_erasure(s, request_id, user_id, by, counts)
    log.info(
        "erased request %s of %s (by %s): %d run(s) terminated, %d deleted, %d file(s), %d row(s)",
        request_id, user_id, by, terminated, deleted, files, rows,
    )  # fmt: skip
    return counts
