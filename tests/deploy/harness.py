"""End-to-end harness: a Dagster instance (Postgres or SQLite), the daemon, the intake path.

Used by the deploy tests and by ``benchmarks/load.py``: write ``$DAGSTER_HOME/dagster.yaml``
from ``deploy/``, start ``dagster-daemon run`` on the repository's ``workspace.yaml`` (no
webserver), enqueue requests through :func:`avgen_dagster.intake.submit_request` exactly as
the portal does, wait until the app database says they are done, and read the runs back from
Dagster's run records to check the one-run-per-user rule.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml

from avgen_dagster.intake import NewRequest, submit_request
from avgen_dagster.portraits import Upload
from avgen_dagster.store import AppDatabase
from avgen_dagster.store.content import ContentTree
from avgen_dagster.store.requests import get_request

REPO = Path(__file__).resolve().parents[2]
SAMPLE_PORTRAIT = REPO / "samples" / "portrait.png"
USER_TAG = "avgen/user_id"
REQUEST_TAG = "avgen/request_id"
# The visual package at its smallest: 1 image, 1 one-second clip, 3 s of music.
# The model-bound assets, which declare pool="gpu".
GPU_STEPS = {"lipsync_segments", "images", "music", "video_clips"}
SMALL_OPTIONS = {"image_count": 1, "clip_count": 1, "clip_duration_s": 1, "music_duration_s": 3}


def write_instance_yaml(home: Path, *, postgres: bool, max_concurrent_runs: int | None) -> Path:
    """Write ``home/dagster.yaml`` from deploy/dagster.yaml (Postgres) or dagster.local.yaml.

    The production file is used as it is (credentials from ``DAGSTER_PG_*``); only the run
    limit may be lowered to fit a small machine. Returns the written path.
    """
    source = REPO / "deploy" / ("dagster.yaml" if postgres else "dagster.local.yaml")
    config = yaml.safe_load(source.read_text())
    if max_concurrent_runs is not None:
        config["concurrency"]["runs"]["max_concurrent_runs"] = max_concurrent_runs
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def write_workspace(folder: Path) -> Path:
    """The workspace the daemon loads: the repository's own (``avgen_dagster.definitions``)."""
    return REPO / "workspace.yaml"


def start_daemon(
    env: dict[str, str], log_path: Path, workspace: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``dagster-daemon run`` (no webserver) on ``workspace`` in its own process group."""
    exe = Path(sys.executable).parent / "dagster-daemon"
    log = log_path.open("wb")
    return subprocess.Popen(
        [str(exe), "run", "-w", str(workspace or REPO / "workspace.yaml")],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    """Stop the daemon and every process it started (its process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def enqueue(
    db: AppDatabase,
    content: ContentTree | Path,
    users: list[str],
    per_user: int,
    *,
    options: dict[str, float] | None = None,
) -> list[tuple[str, str]]:
    """Submit ``per_user`` script requests for each user through the intake path.

    Returns ``[(request_id, user_id), ...]`` in submission order (round robin over users).
    """
    portrait = Upload.from_path(SAMPLE_PORTRAIT)
    out = []
    for i in range(per_user):
        for user in users:
            rid = submit_request(
                db,
                content,
                NewRequest(
                    user_id=user,
                    prompt=None,
                    script=f"Hello {user}, this is request number {i + 1}.",
                    portrait=portrait,
                    options=dict(options or SMALL_OPTIONS),
                ),
            )
            out.append((rid, user))
    return out


def wait_for_requests(
    db: AppDatabase,
    request_ids: list[str],
    timeout_s: float,
    daemon: subprocess.Popen[bytes] | None = None,
) -> dict[str, str]:
    """Poll the app database until every request is Completed or Failed; return id → status.

    Raises:
        TimeoutError: not all finished in time (with the statuses seen).
        RuntimeError: the daemon exited.
    """
    deadline = time.monotonic() + timeout_s
    statuses: dict[str, str] = {}
    while True:
        with db.session() as s:
            statuses = {rid: get_request(s, rid).status for rid in request_ids}
        if all(v in {"Completed", "Failed"} for v in statuses.values()):
            return statuses
        if daemon is not None and daemon.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited with {daemon.returncode}")
        if time.monotonic() > deadline:
            seen = Counter(statuses.values())
            raise TimeoutError(f"requests not done after {timeout_s:.0f} s: {seen}")
        time.sleep(1.0)


def wait_for_runs_finished(instance, run_ids: list[str], timeout_s: float = 120) -> None:  # type: ignore[no-untyped-def]
    """Wait until every run has ended: a request is marked Completed by its run's
    ``content_record`` step, while the run may still be finishing its last checks."""
    import dagster as dg

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = [instance.get_run_by_id(r) for r in run_ids]
        if all(r is not None and r.is_finished for r in runs):
            return
        time.sleep(0.5)
    raise TimeoutError(f"runs still going after {timeout_s:.0f} s: {dg.__name__}")


@dataclass(frozen=True)
class RunSpan:
    """One run from Dagster's run records: who, which request, when (POSIX seconds)."""

    run_id: str
    user_id: str
    request_id: str
    status: str
    start: float
    end: float


def run_spans(instance, job_name: str = "generation_job") -> list[RunSpan]:  # type: ignore[no-untyped-def]
    """Every run of ``job_name`` in the instance's run records, with start and end times."""
    import dagster as dg

    records = instance.get_run_records(filters=dg.RunsFilter(job_name=job_name))
    spans = []
    for rec in records:
        tags = rec.dagster_run.tags
        spans.append(
            RunSpan(
                run_id=rec.dagster_run.run_id,
                user_id=tags.get(USER_TAG, ""),
                request_id=tags.get(REQUEST_TAG, ""),
                status=rec.dagster_run.status.value,
                start=rec.start_time or 0.0,
                end=rec.end_time or float("inf"),
            )
        )
    return spans


def gpu_step_spans(instance, run_ids: list[str]) -> list[tuple[str, float, float]]:  # type: ignore[no-untyped-def]
    """``(run_id, start, end)`` of every step of ``run_ids`` that belongs to the gpu pool."""
    spans = []
    for run_id in run_ids:
        for stat in instance.get_run_step_stats(run_id):
            if stat.step_key in GPU_STEPS and stat.start_time and stat.end_time:
                spans.append((run_id, stat.start_time, stat.end_time))
    return spans


def max_overlap(spans: list[RunSpan]) -> int:
    """The most runs among ``spans`` in progress at the same moment (sweep over start/end)."""
    return _sweep([(s.start, s.end) for s in spans])


def _sweep(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    current = best = 0
    for _, delta in events:  # ends sort before starts at the same instant (-1 < 1)
        current += delta
        best = max(best, current)
    return best


def max_gpu_overlap(steps: list[tuple[str, float, float]]) -> int:
    """The most gpu-pool steps in progress at once (from :func:`gpu_step_spans`)."""
    return _sweep([(a, b) for _, a, b in steps])


def max_overlap_per_user(spans: list[RunSpan]) -> dict[str, int]:
    """For each user, the most of that user's runs in progress at once."""
    by_user: dict[str, list[RunSpan]] = defaultdict(list)
    for s in spans:
        by_user[s.user_id].append(s)
    return {user: max_overlap(group) for user, group in by_user.items()}
