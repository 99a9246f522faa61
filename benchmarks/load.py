"""Load benchmark: many users' requests at once through the real intake → sensor → queue path.

Part 1 (load): a throwaway Postgres server (started here; SQLite with at most 2 concurrent
runs when Postgres is not installed) backs both the Dagster instance (``deploy/dagster.yaml``
as it is, credentials from ``DAGSTER_PG_*``) and the app database (psycopg 3). ``dagster-daemon
run`` (no webserver) serves avgen's code location (``workspace.yaml``; its jobs run each
run's steps in one process). N requests from U users are submitted at once
through :func:`avgen_dagster.intake.submit_request` (one-sentence scripts, the smallest visual
package: 1 image, 1 one-second clip, 3 s of music); the request sensor launches the runs and
the queued coordinator holds them to one run per user. Timed: from the first submission to
the last request Completed. Checked from Dagster's run records: every request ran exactly
once (none lost, none twice), every run succeeded, never two runs of one user at the same
moment, and never two model-bound (pool "gpu") steps at once.

Part 2 (sensor tick): an instance with 10,000 ``user_id`` dynamic partitions and 100 queued
requests from 100 users (50 known, 50 new). Timed: ``request_sensor`` evaluated through
``dg.build_sensor_context`` (the requests are set back to Queued between ticks, not timed),
and, for comparison, the sensor's partition lookups alone: 100 ``has_dynamic_partition`` calls
against one ``get_dynamic_partitions`` read. Target: < 1 s per tick.

``--s3`` puts the content and asset outputs in a bucket on moto's S3-compatible server, as on
a cluster (``AVGEN_CONTENT_URL``).

Usage: ``.venv/bin/python benchmarks/load.py [--requests 50] [--users 10] [--max-runs 4]
[--sqlite] [--s3] [--skip-load] [--skip-sensor] [--partitions 10000] [--timeout 1500]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402

from avgen_dagster.store import AppDatabase  # noqa: E402
from avgen_dagster.store.content import ContentTree  # noqa: E402
from avgen_dagster.store.requests import create_request, get_request  # noqa: E402
from tests.deploy.harness import (  # noqa: E402
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
from tests.deploy.servers import (  # noqa: E402
    PostgresServer,
    S3Server,
    start_postgres,
    start_s3,
    why_no_postgres,
)


def _instance(home: Path, env: dict[str, str]) -> dg.DagsterInstance:
    """An instance from ``home/dagster.yaml`` with ``env`` (DAGSTER_PG_*) in the environment."""
    os.environ.update(env)
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def run_load(
    work: Path,
    pg: PostgresServer | None,
    *,
    requests: int,
    users: int,
    max_runs: int,
    timeout: float,
    s3: S3Server | None = None,
) -> bool:
    """Part 1; prints the figures and returns whether every check passed.

    With ``s3`` the content and asset outputs go to a bucket on that server (the cluster
    set-up, ``AVGEN_CONTENT_URL``) instead of a local folder.
    """
    home = work / "home"
    content: Path | ContentTree = work / "content"
    content_env = {"AVGEN_CONTENT_DIR": str(content)}
    if s3 is not None:
        s3.client().create_bucket(Bucket="avgen-load")
        os.environ.update(s3.env())
        content_env = {
            **s3.env(),
            "AVGEN_CONTENT_URL": "s3://avgen-load/content",
            "AVGEN_CONTENT_CACHE_DIR": str(work / "runs_cache"),
        }
        content = ContentTree("s3://avgen-load/content", cache_dir=work / "intake_cache")
    if pg is not None:
        dagster_db = pg.create_database("load_dagster")
        app_url = pg.url(pg.create_database("load_app"))
        pg_env = pg.env(dagster_db)
        write_instance_yaml(home, postgres=True, max_concurrent_runs=max_runs)
    else:
        app_url = f"sqlite:///{work / 'app.db'}"
        pg_env = {}
        write_instance_yaml(home, postgres=False, max_concurrent_runs=max_runs)
    env = {
        **os.environ,
        **pg_env,
        "DAGSTER_HOME": str(home),
        "AVGEN_DATABASE_URL": app_url,
        **content_env,
    }
    db = AppDatabase(app_url)
    user_ids = [f"user{i:02d}" for i in range(users)]
    per_user = -(-requests // users)
    daemon = start_daemon(env, work / "daemon.log", write_workspace(work))
    try:
        time.sleep(3)  # let the daemon come up; the clock starts at the first submission
        t0 = time.monotonic()
        submitted = enqueue(db, content, user_ids, per_user)[:requests]
        t_enqueued = time.monotonic() - t0
        statuses = wait_for_requests(db, [rid for rid, _ in submitted], timeout, daemon)
        wall = time.monotonic() - t0
        with db.session() as s:
            run_ids = [get_request(s, rid).run_id for rid, _ in submitted]
        with _instance(home, pg_env) as instance:  # the last runs may still be finishing
            wait_for_runs_finished(instance, [r for r in run_ids if r])
    finally:
        stop_daemon(daemon)

    with _instance(home, pg_env) as instance:
        spans = run_spans(instance)
        gpu = gpu_step_spans(instance, [s.run_id for s in spans])
    ran = Counter(s.request_id for s in spans)
    expected = {rid for rid, _ in submitted}
    lost = expected - set(ran)
    twice = {rid for rid, n in ran.items() if n > 1}
    per_user = max_overlap_per_user(spans)
    failed = {rid: s for rid, s in statuses.items() if s != "Completed"}
    with db.session() as s:
        errors = {rid: (get_request(s, rid).error or "")[:200] for rid in failed}
    durations = sorted(s.end - s.start for s in spans)
    print(
        f"backend: {'postgres (throwaway)' if pg else 'sqlite'}; max_concurrent_runs={max_runs}; "
        f"content: {'S3 (moto, s3://avgen-load/content)' if s3 else 'local folder'}"
    )
    print(f"requests: {len(submitted)} from {users} users, enqueued in {t_enqueued:.1f} s")
    print(f"wall time (first submission -> last Completed): {wall:.1f} s")
    print(
        f"runs: {len(spans)}; statuses {dict(Counter(s.status for s in spans))}; "
        f"app db {dict(Counter(statuses.values()))}"
    )
    print(
        f"run duration: median {statistics.median(durations):.1f} s, "
        f"max {durations[-1]:.1f} s; throughput {len(spans) / wall * 60:.1f} runs/min"
    )
    print(f"lost: {len(lost)}; ran twice: {len(twice)}")
    print(
        f"max runs of one user at once: {max(per_user.values())}; "
        f"max runs at once: {max_overlap(spans)}; max gpu-pool steps at once: "
        f"{max_gpu_overlap(gpu)} ({len(gpu)} gpu steps)"
    )
    if errors:
        print(f"failed requests: {errors}")
    return (
        not lost
        and not twice
        and not failed
        and len(spans) == len(submitted)
        and {s.status for s in spans} == {"SUCCESS"}
        and max(per_user.values()) == 1
        and max_gpu_overlap(gpu) <= 1
    )


def run_sensor_tick(work: Path, pg: PostgresServer | None, *, partitions: int) -> float:
    """Part 2; prints the figures and returns the median tick time in seconds."""
    from avgen_dagster.resources import AppDatabaseResource
    from avgen_dagster.sensors import request_sensor

    home = work / "tick_home"
    if pg is not None:
        pg_env = pg.env(pg.create_database("tick_dagster"))
        app_url = pg.url(pg.create_database("tick_app"))
        write_instance_yaml(home, postgres=True, max_concurrent_runs=None)
    else:
        pg_env = {}
        app_url = f"sqlite:///{work / 'tick_app.db'}"
        write_instance_yaml(home, postgres=False, max_concurrent_runs=None)
    known = [f"u{i:05d}" for i in range(partitions)]
    db = AppDatabase(app_url)
    with _instance(home, pg_env) as instance:
        t = time.perf_counter()
        for i in range(0, len(known), 1000):
            instance.add_dynamic_partitions("user_id", known[i : i + 1000])
        print(f"\nsetup: {partitions} partitions added in {time.perf_counter() - t:.1f} s")
        # 100 queued requests: 50 from known users, 50 from new ones.
        tick_users = known[:: max(1, partitions // 50)][:50] + [f"new{i:03d}" for i in range(50)]
        with db.session() as s:
            ids = [
                create_request(
                    s, user_id=u, prompt=None, script="Hello.", portrait_path="/p.png"
                ).request_id
                for u in tick_users
            ]
        resources = {"app_db": AppDatabaseResource(url=app_url)}
        times = []
        for _ in range(5):
            with db.session() as s:
                for rid in ids:
                    req = get_request(s, rid)
                    req.status, req.submitted_at = "Queued", None
            context = dg.build_sensor_context(instance=instance, resources=resources)
            t = time.perf_counter()
            result = request_sensor(context)
            times.append(time.perf_counter() - t)
            assert isinstance(result, dg.SensorResult) and len(result.run_requests) == len(ids)
            (added,) = result.dynamic_partitions_requests
            assert len(added.partition_keys) == 50
        t = time.perf_counter()
        for u in tick_users:
            instance.has_dynamic_partition("user_id", u)
        has_loop = time.perf_counter() - t
        t = time.perf_counter()
        existing = set(instance.get_dynamic_partitions("user_id"))
        _ = [u for u in tick_users if u not in existing]
        one_read = time.perf_counter() - t
    median = statistics.median(times)
    print(
        f"sensor tick ({partitions} partitions, {len(ids)} queued requests, "
        f"{len(set(tick_users))} users): median {median * 1000:.0f} ms, "
        f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms (5 ticks)"
    )
    print(
        f"  partition lookup, the sensor's way: one get_dynamic_partitions + set lookup "
        f"{one_read * 1000:.0f} ms; the alternative, {len(tick_users)} x "
        f"has_dynamic_partition: {has_loop * 1000:.0f} ms"
    )
    print(f"  target < 1000 ms per tick: {'met' if median < 1.0 else 'NOT met'}")
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument(
        "--max-runs",
        type=int,
        default=None,
        help="max concurrent runs (default 4 on Postgres, 2 on SQLite)",
    )
    parser.add_argument("--sqlite", action="store_true", help="use SQLite even if Postgres is here")
    parser.add_argument(
        "--s3", action="store_true", help="content on an S3-compatible server (moto), as a cluster"
    )
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-sensor", action="store_true")
    parser.add_argument("--partitions", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=1500)
    args = parser.parse_args()

    pg = None
    if not args.sqlite:
        reason = why_no_postgres()
        if reason is None:
            pg = start_postgres()
        else:
            print(f"Postgres not available ({reason}); using SQLite")
    max_runs = args.max_runs or (4 if pg else 2)
    work = Path(tempfile.mkdtemp(prefix="avgen-load-"))
    ok = True
    s3 = start_s3() if args.s3 and not args.skip_load else None
    try:
        if not args.skip_load:
            ok = run_load(
                work,
                pg,
                requests=args.requests,
                users=args.users,
                max_runs=max_runs,
                timeout=args.timeout,
                s3=s3,
            )
            print("load checks:", "all passed" if ok else "FAILED")
        if not args.skip_sensor:
            run_sensor_tick(work, pg, partitions=args.partitions)
    finally:
        if pg is not None:
            pg.stop()
        if s3 is not None:
            s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
