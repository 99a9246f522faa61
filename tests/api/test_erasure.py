"""DELETE /v1/requests/{id}: the request's unfinished runs are terminated through Dagster's
run coordinator (a STARTED run under a real daemon stops), every run of the request is deleted,
its folder (``.outputs/`` too) and rows are gone, an erasure is recorded; other requests stay."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from avgen_dagster.outputs import RequestOutputs
from avgen_dagster.runs import REQUEST_ID_TAG, USER_ID_TAG
from avgen_dagster.store import status
from avgen_dagster.store.models import (
    ContentView,
    Erasure,
    GenerationRequest,
    IdempotencyRecord,
    Notification,
    RequestEvent,
    utcnow,
)
from avgen_dagster.store.notifications import create_due_notifications, create_due_webhooks
from avgen_dagster.store.requests import log_view
from tests.api.conftest import SMALL_OPTIONS, ApiServer, content_files, portrait_files, serve_api
from tests.conftest import AvgenEnv


@dg.op
def step() -> int:
    return 1


@dg.job
def request_job() -> None:
    step()


def _rows(api: ApiServer, request_id: str) -> dict[str, int]:
    with api.db.session() as s:
        return {
            model.__name__: s.query(model).filter_by(request_id=request_id).count()
            for model in (GenerationRequest, RequestEvent, Notification, ContentView,
                          IdempotencyRecord)
        }  # fmt: skip


def test_delete_terminates_the_run_and_erases_files_and_rows(api: ApiServer) -> None:
    key = api.key("nia")
    with api.client(key) as client:
        keep = client.post("/v1/requests", data={"script": "Keep me."}, files=portrait_files())
        made = client.post(
            "/v1/requests",
            data={"script": "Erase me.", "callback_url": "http://127.0.0.1:9/h"},
            files=portrait_files(),
            headers={"Idempotency-Key": "erase-1"},
        )
    rid, kept = made.json()["request_id"], keep.json()["request_id"]
    instance = dg.DagsterInstance.get()
    tags = {REQUEST_ID_TAG: rid, USER_ID_TAG: "nia"}
    finished = request_job.execute_in_process(instance=instance, tags=tags)
    # A run the request's worker never picked up (no process to signal): the coordinator's
    # termination is asked for, then the run is marked canceled after the wait.
    queued = instance.create_run_for_job(request_job, tags=tags)
    folder = api.env.content / "nia" / rid
    (folder / ".outputs" / "script").mkdir(parents=True)
    (folder / ".outputs" / "script" / "manifest.pickle").write_bytes(b"pickled")
    with api.db.session() as s:
        status.submit(s, rid, run_id=queued.run_id)
        status.complete(s, rid, RequestOutputs(), run_id=queued.run_id)
        log_view(s, "nia", rid, "talking_head.mp4")
        create_due_notifications(s, utcnow())
        create_due_webhooks(s, utcnow())
    before = _rows(api, rid)
    assert before["Notification"] == 2 and before["ContentView"] == 1
    assert before["IdempotencyRecord"] == 1 and len(content_files(api.env.content, "nia", rid)) == 2

    with api.client(key) as client:
        erased = client.delete(f"/v1/requests/{rid}")
        gone = client.get(f"/v1/requests/{rid}")
        still = client.get(f"/v1/requests/{kept}")
        again = client.delete(f"/v1/requests/{rid}")
    assert erased.status_code == 204 and erased.content == b"", erased.text
    assert gone.status_code == 404 and again.status_code == 404
    assert still.status_code == 200
    assert not folder.exists()
    assert content_files(api.env.content, "nia", kept)  # the other request's files stay
    assert set(_rows(api, rid).values()) == {0}
    # The queued run was canceled by Dagster's run coordinator, then every run was deleted.
    assert instance.get_run_by_id(queued.run_id) is None
    assert instance.get_run_by_id(finished.run_id) is None
    assert not instance.get_runs(filters=dg.RunsFilter(tags={REQUEST_ID_TAG: rid}))
    with api.db.session() as s:
        (record,) = s.query(Erasure).filter_by(request_id=rid).all()
        assert (record.user_id, record.requested_by) == ("nia", "api")
        assert record.runs_terminated == 1 and record.runs_deleted == 2
        assert record.files_removed == 2 and record.rows_removed == sum(before.values())


def test_termination_goes_through_the_run_coordinator(api: ApiServer) -> None:
    """The run's own event log shows Dagster's cancellation (read before it is deleted)."""
    from avgen_dagster.api.erasure import stop_runs

    instance = dg.DagsterInstance.get()
    rid = "f" * 32
    waiting = instance.create_run_for_job(request_job, tags={REQUEST_ID_TAG: rid})
    seen: list[tuple[str, list[str]]] = []
    original = instance.delete_run

    def watch(run_id: str) -> None:
        run = instance.get_run_by_id(run_id)
        events = [r.dagster_event.event_type_value for r in instance.all_logs(run_id)
                  if r.dagster_event]  # fmt: skip
        seen.append((run.status.value if run else "missing", events))
        original(run_id)

    instance.delete_run = watch  # type: ignore[method-assign]
    assert stop_runs(instance, rid, wait_s=0.5) == (1, 1)
    ((status_value, events),) = seen
    assert status_value == "CANCELED"
    assert events[0] == "PIPELINE_CANCELING" and events[-1] == "PIPELINE_CANCELED", events
    assert instance.get_run_by_id(waiting.run_id) is None


@pytest.mark.slow
def test_delete_stops_a_started_run_under_a_real_daemon(
    api_settings: AvgenEnv,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Request sensor → daemon → a STARTED run on a real run worker; DELETE asks the
    coordinator to terminate it, the worker stops within the wait, nothing is left behind."""
    import logging
    import os
    import time

    import psutil

    from tests.api.conftest import wait_for
    from tests.deploy.harness import start_daemon, stop_daemon, write_instance_yaml

    write_instance_yaml(api_settings.home, postgres=False, max_concurrent_runs=None)
    server, stop = serve_api(api_settings, monkeypatch, erase_wait_s=60.0)
    daemon = start_daemon(dict(os.environ), tmp_path / "daemon.log")
    caplog.set_level(logging.INFO, logger="avgen.api")
    try:
        with server.client(server.key("ola")) as client:
            script = " ".join(["This narration is long so the run is still going."] * 12)
            rid = client.post("/v1/requests", data={"script": script, **{
                k: str(v) for k, v in SMALL_OPTIONS.items()}}, files=portrait_files(),
            ).json()["request_id"]  # fmt: skip

            def running() -> dict | None:
                doc = client.get(f"/v1/requests/{rid}").json()
                run = doc.get("run") or {}
                return (
                    run if run.get("run_status") == "STARTED" and run.get("current_step") else None
                )

            run = wait_for(running, timeout_s=240, every_s=0.5)
            instance = dg.DagsterInstance.get()
            pid = wait_for(lambda: instance.get_run_by_id(run["run_id"]).tags.get(
                "avgen/worker_pid"), timeout_s=120)  # fmt: skip
            erased = client.delete(f"/v1/requests/{rid}")
            assert erased.status_code == 204, erased.text
            assert client.get(f"/v1/requests/{rid}").status_code == 404
        assert instance.get_run_by_id(run["run_id"]) is None
        assert "did not stop" not in caplog.text  # terminated, not merely marked canceled
        wait_for(lambda: not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status()
                 == psutil.STATUS_ZOMBIE, timeout_s=60)  # fmt: skip
        time.sleep(2)  # nothing of the stopped run writes the folder back
        assert not (api_settings.content / "ola" / rid).exists()
        with server.db.session() as s:
            (record,) = s.query(Erasure).filter_by(request_id=rid).all()
            assert record.runs_terminated == 1 and record.runs_deleted >= 1
    finally:
        stop_daemon(daemon)
        stop()
