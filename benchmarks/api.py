"""HTTP API benchmark: 200 concurrent clients polling the status of 1,000 requests for 30 s,
then submissions, on the SQLite default and on Postgres.

Per database: a fresh app database (SQLite file, or a database on a throwaway Postgres server
started here, ``tests/deploy/servers.py``) holding ``--requests`` requests of ``--clients``
users (one API key each; 70 % Queued, 10 % Processing with a run id, 10 % Completed with files,
10 % Failed); the real service (``uvicorn avgen_dagster.api.app:create_served_app --factory``,
``--workers`` processes) on 127.0.0.1. Polling: every client (an ``aiohttp`` session with its
own key and connection, spread over ``--client-procs`` processes) asks for the status of its
user's requests in turn for ``--seconds``: once a second (``--intervals 1``, a polling
client's pace), then as fast as answers come (``0``: a closed loop, which measures
saturation: there latency is clients ÷ throughput); latency is measured around each call; an
error is anything but 200. The pollers use aiohttp (less client CPU per call than httpx, which
matters when clients and server share the CPUs). Submissions: ``--submit-clients`` clients
post multipart requests (the sample portrait, a script) for ``--submit-seconds``; counted:
202s per second. The rate limits are raised for the run (they would otherwise answer 429 to
clients polling as fast as this; that is their job, not what is measured here).

The clients run on the same machine as the server and compete with it for the CPUs: on a
small shared machine the figures include that contention.

Usage: ``.venv/bin/python benchmarks/api.py [--db sqlite|postgres|both] [--clients 200]
[--requests 1000] [--seconds 30] [--workers 1] [--submit-clients 8] [--submit-seconds 15]``
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import dagster as dg
import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avgen_dagster.outputs import TALKING_HEAD_MP4, RequestOutputs  # noqa: E402
from avgen_dagster.store import AppDatabase, status  # noqa: E402
from avgen_dagster.store.api_keys import create_key  # noqa: E402
from avgen_dagster.store.requests import create_request, ensure_user  # noqa: E402
from tests.deploy.servers import free_port, start_postgres, why_no_postgres  # noqa: E402

PORTRAIT = REPO / "samples" / "portrait.png"
Plan = list[tuple[str, list[str]]]  # (API key, the request ids it polls)


def populate(db: AppDatabase, content: Path, users: int, requests: int) -> Plan:
    """``requests`` requests spread over ``users`` users (one key each); see the docstring."""
    plan: Plan = []
    per_user = max(requests // users, 1)
    for u in range(users):
        user_id = f"bench{u:04d}"
        with db.session() as s:
            ensure_user(s, user_id)
            key = create_key(s, user_id, "bench")[1]
            ids = [
                create_request(s, user_id=user_id, prompt=f"Topic {u}.{i}", script=None,
                               portrait_path=None).request_id
                for i in range(per_user)
            ]  # fmt: skip
        for i, rid in enumerate(ids):
            _set_state(db, content, user_id, rid, (u * per_user + i) % 10)
        plan.append((key, ids))
    return plan


def _set_state(db: AppDatabase, content: Path, user_id: str, rid: str, slot: int) -> None:
    if slot < 7:
        return  # Queued
    with db.session() as s:
        status.submit(s, rid, run_id=f"bench-run-{rid}")
        if slot == 8:
            mp4 = content / user_id / rid / TALKING_HEAD_MP4
            mp4.parent.mkdir(parents=True, exist_ok=True)
            mp4.write_bytes(b"\0" * 1024)
            status.complete(s, rid, RequestOutputs(talking_head_mp4=str(mp4)), run_id="b")
        elif slot == 9:
            status.fail(s, rid, "bench: a failed request")


def start_server(env: dict[str, str], port: int, workers: int) -> subprocess.Popen[bytes]:
    """The service under uvicorn; waits until ``/healthz`` answers."""
    cmd = [sys.executable, "-m", "uvicorn", "avgen_dagster.api.app:create_served_app", "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
           "--log-level", "warning", "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("the API server did not start")


async def _poll(
    base: str, key: str, ids: list[str], until: float, interval: float, out: list
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base, headers=headers, timeout=timeout) as client:
        await asyncio.sleep(random.uniform(0, interval))  # clients do not start in step
        i = 0
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                async with client.get(f"/v1/requests/{ids[i % len(ids)]}") as answer:
                    await answer.read()
                    ok = answer.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            elapsed = time.perf_counter() - started
            out.append((elapsed * 1000, ok))
            i += 1
            await asyncio.sleep(max(interval - elapsed, 0.0))


def _poll_process(base: str, plan: Plan, seconds: float, interval: float, queue: mp.Queue) -> None:
    out: list[tuple[float, bool]] = []

    async def run() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(*(_poll(base, key, ids, until, interval, out) for key, ids in plan))

    asyncio.run(run())
    queue.put(out)


def poll(
    base: str, plan: Plan, seconds: float, procs: int, interval: float = 0.0
) -> list[tuple[float, bool]]:
    """Every client polls for ``seconds``, once per ``interval`` (0: as fast as answers
    come); returns (latency ms, ok) per call."""
    queue: mp.Queue = mp.Queue()
    workers = [
        mp.Process(target=_poll_process, args=(base, plan[i::procs], seconds, interval, queue))
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    results = [item for _ in workers for item in queue.get()]
    for w in workers:
        w.join()
    return results


async def _submit_loop(base: str, key: str, until: float, out: list) -> None:
    data = PORTRAIT.read_bytes()
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"},
                                 timeout=120) as client:  # fmt: skip
        while time.monotonic() < until:
            started = time.perf_counter()
            answer = await client.post(
                "/v1/requests", data={"script": "A benchmark submission."},
                files={"portrait": ("p.png", data, "image/png")},
            )  # fmt: skip
            out.append(((time.perf_counter() - started) * 1000, answer.status_code == 202))


def submissions(base: str, plan: Plan, clients: int, seconds: float) -> list[tuple[float, bool]]:
    """``clients`` clients submit for ``seconds``; returns (latency ms, accepted) per call."""
    out: list[tuple[float, bool]] = []

    async def run() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(*(_submit_loop(base, key, until, out) for key, _ in plan[:clients]))

    asyncio.run(run())
    return out


def server_cpu_s(server: subprocess.Popen[bytes]) -> float:
    """CPU seconds (user + system) the server and its worker processes have used so far."""
    root = psutil.Process(server.pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def summary(
    label: str, results: list[tuple[float, bool]], seconds: float, cpu_s: float | None = None
) -> str:
    """One line: calls, per second, p50/p95/p99/max latency (ms), errors, server CPU per call."""
    if not results:
        return f"{label}: no calls"
    cpu = f"; server CPU {1000 * cpu_s / len(results):.1f} ms/call" if cpu_s is not None else ""
    lat = sorted(ms for ms, _ in results)
    q = statistics.quantiles(lat, n=100, method="inclusive")
    errors = sum(1 for _, ok in results if not ok)
    return (
        f"{label}: {len(results):,} calls, {len(results) / seconds:,.0f}/s; latency ms "
        f"p50 {q[49]:.1f}  p95 {q[94]:.1f}  p99 {q[98]:.1f}  max {lat[-1]:.1f}; "
        f"errors {errors} ({100 * errors / len(results):.2f} %){cpu}"
    )


def run_one(kind: str, url: str, work: Path, args: argparse.Namespace) -> None:
    """Populate, serve, poll, submit; print the figures for one database."""
    content, home = work / "content", work / "home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "AVGEN_CONTENT_DIR": str(content),
           "AVGEN_DATABASE_URL": url, "AVGEN_SECRET_KEY": "bench-secret",
           "AVGEN_MEDIA_URL": f"http://127.0.0.1:{port}", "PYTHONPATH": str(REPO),
           "AVGEN_API_RATE_LIMIT": "10000000/minute",
           "AVGEN_API_SUBMIT_RATE_LIMIT": "10000000/minute"}  # fmt: skip
    # Dagster's SQLite storage is created on first open; worker processes opening a fresh
    # DAGSTER_HOME at once race on it ("table already exists"), so it is made here first, as
    # `dagster dev` or the daemon has made it on any real deployment.
    dg.DagsterInstance.from_config(str(home)).dispose()
    db = AppDatabase(url)
    started = time.perf_counter()
    plan = populate(db, content, args.clients, args.requests)
    db.engine.dispose()
    print(f"[{kind}] {sum(len(ids) for _, ids in plan)} requests of {len(plan)} users "
          f"populated in {time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
    server = start_server(env, port, args.workers)
    base = f"http://127.0.0.1:{port}"
    try:
        poll(base, plan[:10], 3, 1)  # warm-up: imports, first connections, caches
        for interval in args.intervals:
            cpu = server_cpu_s(server)
            results = poll(base, plan, args.seconds, args.client_procs, interval)
            pace = f"every {interval:g} s" if interval else "as fast as answered"
            print(summary(f"[{kind}] status polling, {len(plan)} clients {pace}, "
                          f"{args.seconds:.0f} s", results, args.seconds,
                          server_cpu_s(server) - cpu), flush=True)  # fmt: skip
        cpu = server_cpu_s(server)
        subs = submissions(base, plan, args.submit_clients, args.submit_seconds)
        print(summary(f"[{kind}] submissions, {args.submit_clients} clients, "
                      f"{args.submit_seconds:.0f} s (accepted = 202)", subs,
                      args.submit_seconds, server_cpu_s(server) - cpu), flush=True)  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    """Parse the arguments and run the benchmark on each database asked for."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument(
        "--intervals", type=float, nargs="+", default=[1.0, 0.0],
        help="seconds between one client's polls (0: closed loop, as fast as answered)",
    )  # fmt: skip
    parser.add_argument("--submit-clients", type=int, default=8)
    parser.add_argument("--submit-seconds", type=float, default=15.0)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs (shared with other work); server workers "
          f"{args.workers}; client processes {args.client_procs}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="avgen-api-bench-") as tmp:
        work = Path(tmp)
        if args.db in ("sqlite", "both"):
            run_one("sqlite", f"sqlite:///{work / 'sqlite' / 'app.db'}", work / "sqlite", args)
        if args.db in ("postgres", "both"):
            if (reason := why_no_postgres()) is not None:
                print(f"[postgres] skipped: {reason}")
                return
            pg = start_postgres()
            try:
                url = pg.url(pg.create_database("avgen_api_bench"))
                run_one("postgres", url, work / "postgres", args)
            finally:
                pg.stop()


if __name__ == "__main__":
    main()
