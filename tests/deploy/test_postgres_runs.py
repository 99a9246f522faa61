"""The generation job on a Postgres-backed instance: 3 users at once, one run per user at a time.

The instance is configured by deploy/dagster.yaml itself (credentials from DAGSTER_PG_*), the
app database is on the same server (psycopg 3), requests enter through the intake path and
the daemon's request_sensor and queued run coordinator do the rest.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pytest

from avgen_dagster.failures import run_failure_reason
from avgen_dagster.store import AppDatabase
from avgen_dagster.store.requests import get_request
from tests.deploy.harness import (
    enqueue,
    gpu_step_spans,
    max_gpu_overlap,
    max_overlap,
    max_overlap_per_user,
    run_spans,
    start_daemon,
    stop_daemon,
    wait_for_requests,
    wait_for_runs_finished,
    write_instance_yaml,
    write_workspace,
)
from tests.deploy.servers import PostgresServer

pytestmark = pytest.mark.slow

USERS = ["alice", "bob", "carol"]
PER_USER = 2


def test_three_users_on_postgres_one_run_per_user(
    postgres: PostgresServer, new_pg_database, tmp_path: Path
) -> None:
    dagster_db = new_pg_database("dagster")
    app_url = postgres.url(new_pg_database("app"))
    home = tmp_path / "dagster_home"
    write_instance_yaml(home, postgres=True, max_concurrent_runs=None)  # the file as it is
    content = tmp_path / "content"
    env = {
        **os.environ,
        **postgres.env(dagster_db),
        "DAGSTER_HOME": str(home),
        "AVGEN_DATABASE_URL": app_url,
        "AVGEN_CONTENT_DIR": str(content),
    }
    db = AppDatabase(app_url)
    daemon = start_daemon(env, tmp_path / "daemon.log", write_workspace(tmp_path))
    started = time.monotonic()
    try:
        submitted = enqueue(db, content, USERS, PER_USER)
        statuses = wait_for_requests(db, [rid for rid, _ in submitted], 240, daemon)
        with db.session() as s:
            run_ids = [get_request(s, rid).run_id for rid, _ in submitted]
        saved = {k: os.environ.get(k) for k in ("DAGSTER_HOME", *postgres.env(dagster_db))}
        os.environ.update({"DAGSTER_HOME": str(home), **postgres.env(dagster_db)})
        try:
            with dg.DagsterInstance.get() as instance:
                wait_for_runs_finished(instance, [r for r in run_ids if r])
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    finally:
        stop_daemon(daemon)
    wall = time.monotonic() - started
    log_tail = (tmp_path / "daemon.log").read_text(errors="replace")[-3000:]
    failed = {rid: s for rid, s in statuses.items() if s != "Completed"}
    with db.session() as s:
        errors = {rid: get_request(s, rid).error for rid in failed}
    assert not failed, (errors, log_tail)

    # Dagster's own run records, read through an instance built from the same dagster.yaml.
    old = {k: os.environ.get(k) for k in ("DAGSTER_HOME", *postgres.env(dagster_db))}
    os.environ.update({"DAGSTER_HOME": str(home), **postgres.env(dagster_db)})
    try:
        with dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            spans = run_spans(instance)
            gpu_steps = gpu_step_spans(instance, [s.run_id for s in spans])
            partitions = set(instance.get_dynamic_partitions("user_id"))
            failures = {
                sp.run_id: run_failure_reason(instance, sp.run_id)
                for sp in spans
                if sp.status != "SUCCESS"
            }
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    # Every request ran exactly once, successfully, under its user's tag.
    assert sorted(s.request_id for s in spans) == sorted(rid for rid, _ in submitted)
    assert {s.request_id: s.user_id for s in spans} == dict(submitted)
    assert {s.status for s in spans} == {"SUCCESS"}, failures
    assert partitions >= set(USERS)
    # Never two runs of one user at once, but different users did run side by side.
    assert max_overlap_per_user(spans) == dict.fromkeys(USERS, 1)
    assert max_overlap(spans) >= 2
    # The gpu pool (default_limit 1): model-bound steps of all runs one at a time.
    assert len(gpu_steps) == 4 * len(spans)
    assert max_gpu_overlap(gpu_steps) == 1
    with db.session() as s:
        for rid, _ in submitted:
            req = get_request(s, rid)
            assert req.video_paths and Path(req.video_paths[0]).is_file()
    print(f"\n6 requests from 3 users on Postgres: {wall:.1f} s wall")
