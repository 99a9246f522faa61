"""Crash recovery under a real `dagster-daemon` (deploy/dagster.local.yaml, SQLite storage):
a run worker killed with SIGKILL, and a whole host's processes killed, each leave the request
Failed with the real reason — never Processing for ever — and `avgen request retry` completes
it under a new run key, same id, history kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from avgen_dagster.store import AppDatabase, status
from avgen_dagster.store.requests import get_request
from tests.conftest import AvgenEnv
from tests.deploy.harness import (
    enqueue,
    start_daemon,
    stop_daemon,
    wait_for_requests,
    write_instance_yaml,
)

pytestmark = pytest.mark.slow

TALK = {"image_count": 1, "clip_count": 1, "clip_duration_s": 1, "music_duration_s": 3}


@pytest.fixture
def daemon_env(avgen_env: AvgenEnv, tmp_path: Path) -> Iterator[dict[str, str]]:
    write_instance_yaml(avgen_env.home, postgres=False, max_concurrent_runs=None)
    yield {**os.environ, "AVGEN_SECRET_KEY": "crash-test-secret"}


def _worker_pid(instance: dg.DagsterInstance, db: AppDatabase, rid: str, timeout_s: float) -> int:
    """The pid of the request's run worker once its first step has recorded it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with db.session() as s:
            req = get_request(s, rid)
            run_id = req.run_id
            assert req.status in ("Queued", "Processing"), (req.status, req.error)
        run = instance.get_run_by_id(run_id) if run_id else None
        if run is not None and (pid := run.tags.get("avgen/worker_pid")):
            return int(pid)
        time.sleep(0.3)
    raise TimeoutError(f"request {rid}: no run worker recorded after {timeout_s:.0f} s")


def _retry(rid: str) -> None:
    avgen = Path(sys.executable).parent / "avgen"
    done = subprocess.run(
        [str(avgen), "request", "retry", rid], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "queued again" in done.stdout


def _history(db: AppDatabase, rid: str) -> list[tuple[str | None, str]]:
    with db.session() as s:
        return [
            (e.from_status, e.to_status)
            for e in status.history(s, rid)
            if e.from_status != e.to_status
        ]


def test_a_killed_run_worker_fails_the_request_with_the_signal_then_retry_completes(
    avgen_env: AvgenEnv, daemon_env: dict[str, str], tmp_path: Path
) -> None:
    db = AppDatabase(avgen_env.db_url)
    ((rid, _),) = enqueue(db, avgen_env.content, ["crashy"], 1, options=TALK)
    daemon = start_daemon(daemon_env, tmp_path / "daemon.log")
    try:
        instance = dg.DagsterInstance.from_config(str(avgen_env.home))
        os.kill(_worker_pid(instance, db, rid, 180), signal.SIGKILL)
        killed_at = time.monotonic()
        assert wait_for_requests(db, [rid], 120, daemon) == {rid: "Failed"}
        with db.session() as s:
            req = get_request(s, rid)
            reason, first_run = req.error or "", req.run_id
        assert "signal 9" in reason and "SIGKILL" in reason, reason
        # Within the monitoring interval (run monitoring polls every 30 s on a laptop).
        assert time.monotonic() - killed_at < 90

        _retry(rid)
        assert wait_for_requests(db, [rid], 300, daemon) == {rid: "Completed"}
        with db.session() as s:
            req = get_request(s, rid)
            assert req.attempt == 1 and req.run_id != first_run and req.error is None
        retried = instance.get_run_by_id(req.run_id)
        assert retried.tags["dagster/run_key"] == f"{rid}-retry-1"
        assert _history(db, rid) == [
            (None, "Queued"), ("Queued", "Processing"), ("Processing", "Failed"),
            ("Failed", "Queued"), ("Queued", "Processing"), ("Processing", "Completed"),
        ]  # fmt: skip
    finally:
        stop_daemon(daemon)


def test_a_run_lost_with_its_daemon_and_code_server_is_failed_after_a_restart(
    avgen_env: AvgenEnv, daemon_env: dict[str, str], tmp_path: Path
) -> None:
    """kill -9 of the daemon, its code server and the run worker together (a host crash):
    after the daemon restarts, the lost run is failed and the request with it, so the user's
    next request is not stuck behind it; then a retry completes it."""
    db = AppDatabase(avgen_env.db_url)
    ((rid, _),) = enqueue(db, avgen_env.content, ["lost"], 1, options=TALK)
    daemon = start_daemon(daemon_env, tmp_path / "daemon1.log")
    instance = dg.DagsterInstance.from_config(str(avgen_env.home))
    try:
        _worker_pid(instance, db, rid, 180)
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)  # daemon, code server and run worker at once
        daemon.wait(timeout=30)
    with db.session() as s:
        run_id = get_request(s, rid).run_id
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED  # stranded
    ((nxt, _),) = enqueue(db, avgen_env.content, ["lost"], 1, options=TALK)

    daemon = start_daemon(daemon_env, tmp_path / "daemon2.log")
    try:
        statuses = wait_for_requests(db, [rid, nxt], 400, daemon)
        with db.session() as s:
            errors = {x: get_request(s, x).error for x in (rid, nxt)}
        assert statuses == {rid: "Failed", nxt: "Completed"}, (statuses, errors)
        with db.session() as s:
            reason = get_request(s, rid).error or ""
        assert "run worker" in reason and "is gone" in reason, reason
        _retry(rid)
        assert wait_for_requests(db, [rid], 300, daemon) == {rid: "Completed"}
    finally:
        stop_daemon(daemon)
