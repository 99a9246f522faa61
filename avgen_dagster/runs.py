"""Which request a Dagster run works on: the run tags avgen sets, and reading them back.

Every generation run carries ``avgen/request_id``, ``avgen/user_id`` and ``avgen/attempt``
(set by the request sensor and by ``avgen generate``). A re-execution launched from the
Dagster UI may or may not copy its parent's tags, so :func:`request_id_of_run` also walks the
parent-run chain (Dagster's own ``dagster/parent_run_id`` tag) to find it.
"""

from __future__ import annotations

import dagster as dg

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.options import RequestOptions
from avgen_dagster.validation import validate_request_id

REQUEST_ID_TAG = "avgen/request_id"
USER_ID_TAG = "avgen/user_id"
ATTEMPT_TAG = "avgen/attempt"
# Where the run worker runs (set by the first step), so a lost worker can be detected.
WORKER_HOST_TAG = "avgen/worker_host"
WORKER_PID_TAG = "avgen/worker_pid"
WORKER_STARTED_TAG = "avgen/worker_started"
PARENT_RUN_ID_TAG = "dagster/parent_run_id"  # Dagster's re-execution tag (public name)
MAX_PARENT_HOPS = 50


def job_for(options: RequestOptions) -> str:
    """The job a request runs: ``talking_head_job`` for a talking-head-only request, else
    ``generation_job`` (the whole package)."""
    return "talking_head_job" if options.talking_head_only else "generation_job"


def request_tags(request_id: str, user_id: str, attempt: int) -> dict[str, str]:
    """The tags of a run for ``request_id`` (attempt 0 is the first run, then each retry)."""
    return {REQUEST_ID_TAG: request_id, USER_ID_TAG: user_id, ATTEMPT_TAG: str(attempt)}


def request_id_of_run(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """The request a run works on: its own tag, else the nearest ancestor's (re-executions).

    Raises:
        InvalidInputError: no run in the chain names a request (e.g. a materialization
            launched by hand from the UI): such a run must not guess, it could touch another
            request's files.
    """
    current: dg.DagsterRun | None = run
    for _ in range(MAX_PARENT_HOPS):
        if current is None:
            break
        if request_id := current.tags.get(REQUEST_ID_TAG):
            return validate_request_id(request_id)
        parent_id = parent_run_id(current)
        current = instance.get_run_by_id(parent_id) if parent_id else None
    raise InvalidInputError(
        f"run {run.run_id} has no {REQUEST_ID_TAG} tag: avgen runs work on one request; start "
        "them with `avgen request` / `avgen generate`, or retry a Failed request with "
        "`avgen request retry REQUEST_ID`"
    )


def parent_run_id(run: dg.DagsterRun) -> str | None:
    """The run this one re-executes, if it is a re-execution (the run's ``parent_run_id``, or
    Dagster's ``dagster/parent_run_id`` tag)."""
    return run.parent_run_id or run.tags.get(PARENT_RUN_ID_TAG)
