"""`make serve`'s `dagster dev` loads the code location and shows the CLI's runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLE_PORTRAIT, AvgenEnv

pytestmark = pytest.mark.slow

QUERY = """
{
  repositoriesOrError { ... on RepositoryConnection { nodes { name jobs { name } } } }
  runsOrError { ... on Runs { results { runId jobName status tags { key value } } } }
}
"""


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


def test_dagster_dev_shows_the_job_and_the_cli_run(avgen_env: AvgenEnv, tmp_path: Path) -> None:
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
        assert runs[run_id]["jobName"] == "talking_head_job"
        assert runs[run_id]["status"] == "SUCCESS"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
