"""`make serve`'s `dagster dev` loads the code location and shows the CLI's runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from avgen_dagster.store import AppDatabase
from avgen_dagster.store.requests import get_request
from tests.conftest import REPO, SAMPLE_PORTRAIT, AvgenEnv

pytestmark = pytest.mark.slow

QUERY = """
{
  repositoriesOrError { ... on RepositoryConnection { nodes { name jobs { name } } } }
  runsOrError { ... on Runs { results { runId jobName status tags { key value } } } }
}
"""

# Keep the visual package small in tests: 1 image, 1 clip of 1 s, 3 s of music.
SMALL = ["--images", "1", "--clips", "1", "--clip-duration", "1", "--music-duration", "3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["data"]


def test_dagster_dev_shows_the_job_and_runs_queued_requests(
    avgen_env: AvgenEnv, tmp_path: Path
) -> None:
    """`avgen generate` runs show in the UI; `avgen request` is picked up by the daemon's sensor."""
    shutil.copy(REPO / "deploy" / "dagster.local.yaml", avgen_env.home / "dagster.yaml")
    bin_dir = Path(sys.executable).parent
    script = tmp_path / "s.txt"
    script.write_text("Hello from the command line.")
    gen = subprocess.run(
        [
            str(bin_dir / "avgen"),
            "generate",
            "--user-id",
            "served",
            "--portrait",
            str(SAMPLE_PORTRAIT),
            "--script-file",
            str(script),
            "--json",
            *SMALL,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ.copy(),
    )
    assert gen.returncode == 0, gen.stderr
    run_id = json.loads(gen.stdout)["run_id"]

    port = _free_port()
    server = subprocess.Popen(
        [
            str(bin_dir / "dagster"),
            "dev",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            str(REPO / "workspace.yaml"),
        ],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        data = None
        while time.monotonic() < deadline:
            try:
                data = _graphql(port)
                if data["repositoriesOrError"].get("nodes"):
                    break
            except OSError:
                pass
            time.sleep(1)
        assert data is not None, "dagster dev did not answer within 120 s"
        jobs = {j["name"] for repo in data["repositoriesOrError"]["nodes"] for j in repo["jobs"]}
        assert "talking_head_job" in jobs
        runs = {r["runId"]: r for r in data["runsOrError"]["results"]}
        assert runs[run_id]["jobName"] == "generation_job"
        assert runs[run_id]["status"] == "SUCCESS"

        # The user loop: enqueue only; the daemon's request_sensor launches the run.
        queued = subprocess.run(
            [str(bin_dir / "avgen"), "request", "--user-id", "looped", "--portrait",
             str(SAMPLE_PORTRAIT), "--script-file", str(script), "--json", *SMALL],
            capture_output=True, text=True, timeout=120, env=os.environ.copy(),
        )  # fmt: skip
        assert queued.returncode == 0, queued.stderr
        request_id = json.loads(queued.stdout)["request_id"]
        db = AppDatabase(avgen_env.db_url)
        deadline = time.monotonic() + 240
        status = "Queued"
        while time.monotonic() < deadline and status not in {"Completed", "Failed"}:
            time.sleep(2)
            with db.session() as s:
                status = get_request(s, request_id).status
        with db.session() as s:
            req = get_request(s, request_id)
            assert req.status == "Completed", (req.status, req.error)
            assert req.run_id is not None
        run = next(r for r in _graphql(port)["runsOrError"]["results"] if r["runId"] == req.run_id)
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["avgen/request_id"] == request_id and tags["avgen/user_id"] == "looped"
        assert tags["dagster/sensor_name"] == "request_sensor"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def test_serve_api_with_two_workers_answers_from_both(avgen_env: AvgenEnv) -> None:
    """`avgen serve-api --workers 2`: two uvicorn worker processes, each building the app
    from the environment; a key made by the CLI works on every connection."""
    import httpx
    import psutil

    from avgen_dagster.store.api_keys import create_key
    from avgen_dagster.store.requests import ensure_user

    bin_dir = Path(sys.executable).parent
    with AppDatabase(avgen_env.db_url).session() as s:
        ensure_user(s, "two-workers")
        key = create_key(s, "two-workers", "tests")[1]
    port = _free_port()
    server = subprocess.Popen(
        [str(bin_dir / "avgen"), "serve-api", "--port", str(port), "--workers", "2"],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        answered = False
        while time.monotonic() < deadline and not answered:
            try:
                answered = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).is_success
            except httpx.HTTPError:
                time.sleep(0.5)
        assert answered, "serve-api --workers 2 did not answer /healthz"
        children = psutil.Process(server.pid).children(recursive=True)
        workers = [p for p in children if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2, [p.cmdline() for p in children]
        # New connections land on either worker; every one answers the key.
        for _ in range(10):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                listed = client.get("/v1/requests", headers={"Authorization": f"Bearer {key}"})
            assert listed.status_code == 200 and listed.json()["items"] == [], listed.text
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def test_served_app_freezes_its_start_up_heap(avgen_env: AvgenEnv) -> None:
    """`create_served_app` (what serve-api runs) leaves the cyclic GC only the objects that
    calls create: the start-up heap is frozen, so a full collection has little to scan."""
    import gc

    from avgen_dagster.api.app import create_served_app

    gc.unfreeze()
    try:
        app = create_served_app()
        frozen = gc.get_freeze_count()
        assert app.state.avgen.db is not None
        assert frozen > 50_000, frozen  # Dagster, SQLAlchemy, FastAPI and their imports
        gc.collect()
        # What a full collection still scans (gc.get_objects) is less than what was frozen.
        assert len(gc.get_objects()) < frozen, (len(gc.get_objects()), frozen)
    finally:
        gc.unfreeze()
