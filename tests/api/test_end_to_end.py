"""End to end through the API: submit → request sensor → the run it requests (in this process,
on the instance at DAGSTER_HOME) → the API shows Queued, then Processing with the run's step
names, then Completed → the signed media URL downloads the MP4 (as large as the file the
outputs record names) → the webhook arrives, signed, under its stable id."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import dagster as dg
import pytest
from standardwebhooks import Webhook

from avgen_dagster.definitions import build_definitions
from avgen_dagster.notifications.webhooks import webhook_secret
from avgen_dagster.notify_job import notify_job
from avgen_dagster.resources import AppDatabaseResource
from avgen_dagster.resources.notifier import NotifierResource
from avgen_dagster.sensors import notification_sensor, request_sensor
from avgen_dagster.store.requests import get_request, outputs_of
from tests.api.conftest import SECRET, SMALL_OPTIONS, ApiServer, WebhookReceiver, portrait_files

pytestmark = pytest.mark.slow


class Poller:
    """Polls the request's status document in a thread while the run executes."""

    def __init__(self, api: ApiServer, key: str, request_id: str) -> None:
        self.seen: list[dict] = []
        self._stop = threading.Event()
        self._client = api.client(key)
        self._path = f"/v1/requests/{request_id}"
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll_once(self) -> None:
        answer = self._client.get(self._path)
        assert answer.status_code == 200, answer.text
        self.seen.append(answer.json())

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._poll_once()
            time.sleep(0.1)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        # One read after the run returned: the thread's last read may have come just before
        # the run's final write.
        self._poll_once()
        self._client.close()


def test_submit_run_status_media_and_webhook(api: ApiServer, receiver: WebhookReceiver) -> None:
    key = api.key("e2e")
    instance = dg.DagsterInstance.get()
    resources = {"app_db": AppDatabaseResource(url=api.env.db_url)}
    with api.client(key) as client:
        fields = {"script": "Hello from the HTTP API.", "callback_url": receiver.url}
        fields.update({k: str(v) for k, v in SMALL_OPTIONS.items()})
        made = client.post("/v1/requests", data=fields, files=portrait_files())
        assert made.status_code == 202, made.text
        rid = made.json()["request_id"]
        queued = client.get(f"/v1/requests/{rid}").json()
    assert (queued["status"], queued["queue_position"]) == ("Queued", 1)

    tick = request_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    (run_request,) = tick.run_requests
    for add in tick.dynamic_partitions_requests:
        instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
    job = build_definitions().resolve_job_def(run_request.job_name or "generation_job")
    with Poller(api, key, rid) as poller:
        result = job.execute_in_process(
            instance=instance, partition_key=run_request.partition_key, tags=run_request.tags
        )
    assert result.success

    statuses = [doc["status"] for doc in poller.seen]
    assert statuses[0] == "Processing" and statuses[-1] == "Completed"
    assert set(statuses) == {"Processing", "Completed"}
    running = [doc["run"] for doc in poller.seen if doc["run"] and doc["run"]["current_step"]]
    steps = {run["current_step"] for run in running}
    # Step names from the run's events (quick steps such as `script` may fall between polls).
    assert len(steps) >= 3 and {"tts_clips", "final_video"} <= steps, steps
    assert all(run["run_id"] == result.run_id for run in running)
    fractions = [run["fraction_done"] for run in running]
    assert fractions == sorted(fractions) and 0 <= fractions[0] < fractions[-1] < 1

    with api.client(key) as client:
        done = client.get(f"/v1/requests/{rid}").json()
        assert done["status"] == "Completed"
        mp4 = client.get(done["outputs"]["talking_head_mp4"])
    with api.db.session() as s:
        recorded = Path(outputs_of(get_request(s, rid)).talking_head_mp4)
    assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    assert len(mp4.content) == recorded.stat().st_size > 10_000

    tick = notification_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    for run in tick.run_requests:  # the webhook, and the user's console message
        notify_job.execute_in_process(
            instance=instance,
            tags=run.tags,
            resources={**resources, "notifier": NotifierResource(portal_url="http://p.test")},
        )
    (hit,) = receiver.received
    payload = Webhook(webhook_secret("e2e", SECRET)).verify(hit["body"], hit["headers"])
    assert hit["headers"]["webhook-id"] == f"msg_{rid}_0_completed"
    assert payload["type"] == "request.completed" and payload["data"]["request_id"] == rid
    assert payload["data"]["outputs"]["music_video"].endswith("/music_video/music_video.mp4")
