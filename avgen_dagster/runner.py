"""Run one recorded request's job in this process (``avgen generate``, tests, benchmarks).

The request must already be recorded by :func:`avgen_dagster.intake.submit_request` with
``run_id=`` (so it is Processing and the request sensor leaves it alone). The run goes to the
Dagster instance given (``DAGSTER_HOME`` for the CLI), so it shows in the Dagster UI like any
other, with the same tags a sensor-launched run carries.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from avgen_dagster.failures import mark_run_failed
from avgen_dagster.intake import NewRequest
from avgen_dagster.outputs import RequestOutputs
from avgen_dagster.partitions import user_partitions
from avgen_dagster.runs import job_for, request_tags
from avgen_dagster.store.requests import get_request, outputs_of
from avgen_dagster.store.session import AppDatabase

ProgressFactory = Callable[[dg.DagsterInstance, str, int], AbstractContextManager[Any]]


@dataclass(frozen=True)
class RunOutcome:
    """How a request's run ended: its status, outputs record and error, as recorded."""

    request_id: str
    user_id: str
    status: str
    outputs: RequestOutputs
    error: str | None
    run_id: str


def new_run_id() -> str:
    """A new Dagster run id (a UUID4 string, the form Dagster itself uses)."""
    return str(uuid.uuid4())


def job_step_count(job: dg.JobDefinition) -> int:
    """Steps a run of ``job`` executes: its assets and asset checks."""
    graph = job.asset_layer.asset_graph
    return len(job.asset_layer.executable_asset_keys) + len(list(graph.asset_check_keys))


def execute_request(
    db: AppDatabase,
    defs: dg.Definitions,
    request_id: str,
    *,
    run_id: str,
    instance: dg.DagsterInstance,
    job_name: str = "generation_job",
    progress: ProgressFactory | None = None,
) -> RunOutcome:
    """Execute ``job_name`` for the recorded request ``request_id`` as run ``run_id``.

    A failed run marks the request Failed with the run's real reason (as the failure sensor
    does for daemon-launched runs).

    Raises:
        InvalidInputError: no such request.
    """
    with db.session() as s:
        req = get_request(s, request_id)
        user_id, attempt = req.user_id, req.attempt
    if not instance.has_dynamic_partition(user_partitions.name, user_id):
        instance.add_dynamic_partitions(user_partitions.name, [user_id])
    job = defs.resolve_job_def(job_name)
    watch = progress(instance, run_id, job_step_count(job)) if progress else nullcontext()
    with watch:
        result = job.execute_in_process(
            instance=instance,
            partition_key=user_id,
            run_id=run_id,
            tags=request_tags(request_id, user_id, attempt),
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    if not result.success:
        mark_run_failed(db, instance, result.dagster_run, request_id)
    with db.session() as s:
        req = get_request(s, request_id)
        return RunOutcome(request_id, user_id, req.status, outputs_of(req), req.error, run_id)


def home_instance(home: Path) -> dg.DagsterInstance:
    """The Dagster instance at ``home`` (``DAGSTER_HOME``), created if new. Two processes
    starting on a fresh home (two ``avgen generate``s) would both create its SQLite storage
    ("table alembic_version already exists"): a file lock lets one create it first."""
    from filelock import FileLock

    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    with FileLock(str(home / ".instance.lock")):
        instance = dg.DagsterInstance.get()
        instance.get_runs(limit=1)  # storages are created here, under the lock
    return instance


def submit_and_run(
    new: NewRequest,
    *,
    resources: dict[str, Any] | None = None,
    instance: dg.DagsterInstance | None = None,
    job_name: str | None = None,
    progress: ProgressFactory | None = None,
    photo_only_backend: str | None = None,
) -> RunOutcome:
    """Take ``new`` in through the one intake and run its job now, in this process — what
    ``avgen generate`` does (and tests and benchmarks with it).

    Args:
        resources: resource overrides (e.g. a Wav2Lip lip-sync backend); default the embedded
            defaults from the environment.
        instance: default the instance at ``DAGSTER_HOME`` (created when missing).
        job_name: default the request's own (:func:`~avgen_dagster.runs.job_for`).
        photo_only_backend: see :func:`avgen_dagster.intake.check_request`. (Whether the
            speech backend clones a voice is read from ``resources["speech_backend"]`` or the
            environment's: a voice reference it cannot use is refused before any write.)

    Raises:
        InvalidInputError / NoFaceError / ContentStoreError / DatabaseUnavailableError: bad
            input or an unusable store, before any run (nothing written).
    """
    from avgen_dagster.definitions import build_definitions
    from avgen_dagster.intake import check_request, record_request
    from avgen_dagster.resources.backends import SpeechBackendResource
    from avgen_dagster.settings import get_settings

    settings = get_settings()
    speech = (resources or {}).get("speech_backend") or SpeechBackendResource.from_env()
    checked = check_request(  # before any write
        new,
        photo_only_backend=photo_only_backend,
        non_cloning_speech=speech.without_cloning(),
    )
    db = settings.database()
    run_id = new_run_id()
    request_id = record_request(db, settings.content_tree(), checked, run_id=run_id)
    if instance is None:
        instance = home_instance(settings.dagster_home_path)
    return execute_request(
        db,
        build_definitions(resources),
        request_id,
        run_id=run_id,
        instance=instance,
        job_name=job_name or job_for(checked.options),
        progress=progress,
    )
