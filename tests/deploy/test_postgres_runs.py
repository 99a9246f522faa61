"""The generation job on a Postgres-backed instance: 3 users at once, one run per user at a time.

The instance is configured by deploy/dagster.yaml itself (credentials from DAGSTER_PG_*), the
app database is on the same server (psycopg 3), content and asset outputs are on the
S3-compatible server (``AVGEN_CONTENT_URL``), requests enter through the intake path and the
daemon's request_sensor and queued run coordinator do the rest. The portal's side then reads
it back: the catalog adapter from the Postgres instance, the files through the media server
from the bucket.
"""

from __future__ import annotations

import os
import time
import urllib.request
import uuid
from pathlib import Path

import dagster as dg
import pytest

from avgen_dagster.failures import run_failure_reason
from avgen_dagster.media_server import media_url
from avgen_dagster.store import AppDatabase
from avgen_dagster.store.content import ContentTree
from avgen_dagster.store.requests import get_request, outputs_of
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
from tests.deploy.servers import PostgresServer, S3Server
from tests.portal.conftest import media_server

pytestmark = pytest.mark.slow

USERS = ["alice", "bob", "carol"]
PER_USER = 2


def test_three_users_on_postgres_one_run_per_user(
    postgres: PostgresServer,
    new_pg_database,
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    import catalog  # streamlit_app/catalog.py, on sys.path through tests.portal.conftest

    dagster_db = new_pg_database("dagster")
    app_url = postgres.url(new_pg_database("app"))
    home = tmp_path / "dagster_home"
    write_instance_yaml(home, postgres=True, max_concurrent_runs=None)  # the file as it is
    bucket = f"avgen-runs-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    content_url = f"s3://{bucket}/content"
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    # The portal's machine: its own working copy, nothing shared with the runs but the bucket.
    content = ContentTree(content_url, cache_dir=tmp_path / "portal_cache")
    env = {
        **os.environ,
        **postgres.env(dagster_db),
        "DAGSTER_HOME": str(home),
        "AVGEN_DATABASE_URL": app_url,
        "AVGEN_CONTENT_URL": content_url,
        "AVGEN_CONTENT_CACHE_DIR": str(tmp_path / "runs_cache"),
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
            catalogs = {
                user: catalog.read_catalog(
                    instance, user, [rid for rid, u in submitted if u == user]
                )
                for user in USERS
            }
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

    # Content is in the bucket, not on the runs' disk: the portal reads it back from there.
    with db.session() as s:
        recorded = {rid: outputs_of(get_request(s, rid)).files() for rid, _ in submitted}
    objects = {
        o["Key"]
        for o in s3_server.client().list_objects_v2(Bucket=bucket, MaxKeys=1000)["Contents"]
    }
    with media_server(content, "pg-s3-secret") as base:  # type: ignore[arg-type]
        for rid, user in submitted:
            assert all(p.startswith(f"{content_url}/{user}/{rid}/") for p in recorded[rid])
            assert f"content/{user}/{rid}/hls/index.m3u8" in objects
            meta = catalogs[user][rid]["stitched_mp4"]
            rel = content.relative_in_request(user, rid, meta["file"])
            assert rel == "stitched_mp4/talking_head.mp4"
            with urllib.request.urlopen(
                media_url(base, user, rid, rel, "pg-s3-secret"), timeout=20
            ) as resp:
                body = resp.read()
            assert body[4:8] == b"ftyp" and len(body) == meta["size_bytes"]
            assert catalogs[user][rid]["hls"]["playlist"].startswith(content_url)
    assert not (tmp_path / "portal_cache").exists() or not any(
        (tmp_path / "portal_cache").rglob("*.mp4")
    )
    # Asset outputs too, kept per request beside its files (another pod's run reads them).
    for rid, user in submitted:
        assert f"content/{user}/{rid}/.outputs/stitched_mp4.pickle" in objects
    print(f"\n6 requests from 3 users on Postgres + S3: {wall:.1f} s wall")
