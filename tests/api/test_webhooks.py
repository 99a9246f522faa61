"""Webhooks through the notification machinery: the sensor records them, the notify job sends
them signed per Standard Webhooks (verified with the ``standardwebhooks`` library on a local
receiver), a 500 is retried with backoff and delivered under the same ``webhook-id``, a
permanent refusal is recorded, and the URL is checked again before each send."""

from __future__ import annotations

import dagster as dg
import pytest
from standardwebhooks import Webhook

from avgen_dagster.notifications.webhooks import webhook_secret
from avgen_dagster.notify_job import NOTIFICATION_ID_TAG, notify_job
from avgen_dagster.outputs import RequestOutputs
from avgen_dagster.resources import AppDatabaseResource
from avgen_dagster.resources.notifier import NotifierResource
from avgen_dagster.sensors import notification_sensor
from avgen_dagster.store import status
from avgen_dagster.store.notifications import webhooks_of
from tests.api.conftest import SECRET, ApiServer, WebhookReceiver, portrait_files


def _submit(api: ApiServer, user_id: str, callback: str) -> str:
    with api.client(api.key(user_id)) as client:
        made = client.post(
            "/v1/requests",
            data={"script": "Hook me.", "callback_url": callback},
            files=portrait_files(),
        )
    assert made.status_code == 202, made.text
    return made.json()["request_id"]


def _finish(api: ApiServer, rid: str, user_id: str, *, fail: str | None = None) -> None:
    with api.db.session() as s:
        status.submit(s, rid, run_id="run-1")
        if fail:
            status.fail(s, rid, fail, run_id="run-1")
            return
    mp4 = api.env.content / user_id / rid / "stitched_mp4" / "talking_head.mp4"
    mp4.parent.mkdir(parents=True)
    mp4.write_bytes(b"mp4")
    with api.db.session() as s:
        status.complete(s, rid, RequestOutputs(talking_head_mp4=str(mp4)), run_id="run-1")


def _tick_and_send(api: ApiServer) -> list[dg.ExecuteInProcessResult]:
    """One notification-sensor tick, then each webhook run it requests, in this process (a
    Completed request's console message is a run of its own, left out here)."""
    instance = dg.DagsterInstance.ephemeral()
    resources = {"app_db": AppDatabaseResource(url=api.env.db_url)}
    tick = notification_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    if isinstance(tick, dg.SkipReason):
        return []
    return [
        notify_job.execute_in_process(
            instance=instance,
            tags=run.tags,
            resources={**resources, "notifier": NotifierResource(portal_url="http://p.test")},
            raise_on_error=False,
        )
        for run in tick.run_requests
        if NOTIFICATION_ID_TAG in run.tags
    ]


def test_completed_webhook_is_signed_and_verifies(
    api: ApiServer, receiver: WebhookReceiver
) -> None:
    rid = _submit(api, "pia", receiver.url)
    _finish(api, rid, "pia")
    (run,) = _tick_and_send(api)
    assert run.success and NOTIFICATION_ID_TAG in run.dagster_run.tags
    (hit,) = receiver.received
    secret = webhook_secret("pia", SECRET)
    payload = Webhook(secret).verify(hit["body"], hit["headers"])  # raises if not authentic
    assert hit["headers"]["webhook-id"] == f"msg_{rid}_0_completed"
    assert payload["type"] == "request.completed"
    data = payload["data"]
    assert data["request_id"] == rid and data["status"] == "Completed" and data["attempt"] == 0
    assert data["outputs"]["talking_head_mp4"].startswith(f"{api.url}/media/")
    assert data["links"]["self"] == f"{api.url}/v1/requests/{rid}"
    with api.client(api.key("pia")) as client:  # the URL in the webhook downloads
        assert client.get(data["outputs"]["talking_head_mp4"]).content == b"mp4"
        assert client.get("/v1/webhook-secret").json()["secret"] == secret
    with pytest.raises(Exception, match="signature"):  # another user's secret does not verify
        Webhook(webhook_secret("someone-else", SECRET)).verify(hit["body"], hit["headers"])
    assert _tick_and_send(api) == []  # sent once; nothing due any more
    with api.db.session() as s:
        (note,) = webhooks_of(s, rid)
        assert (note.status, note.attempts, note.provider_message_id) == ("Sent", 1, "HTTP 200")


def test_a_500_is_retried_with_backoff_and_delivered_under_one_id(
    api: ApiServer, receiver: WebhookReceiver
) -> None:
    receiver.replies = [500, 503]
    rid = _submit(api, "quy", receiver.url)
    _finish(api, rid, "quy", fail="tts_clips: no voice")
    (run,) = _tick_and_send(api)
    assert run.success  # the step's RetryPolicy (1 s, 2 s backoff) got it through
    assert [hit["answered"] for hit in receiver.received] == [500, 503, 200]
    ids = {hit["headers"]["webhook-id"] for hit in receiver.received}
    assert ids == {f"msg_{rid}_0_failed"}
    secret = webhook_secret("quy", SECRET)
    for hit in receiver.received:  # every attempt is signed afresh, under the same id
        assert Webhook(secret).verify(hit["body"], hit["headers"])["type"] == "request.failed"
    assert receiver.json()["data"]["error"] == "tts_clips: no voice"
    retries = [e for e in run.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 2
    with api.db.session() as s:
        (note,) = webhooks_of(s, rid)
        assert (note.status, note.attempts) == ("Sent", 3)


def test_each_outcome_of_each_attempt_gets_its_own_webhook(
    api: ApiServer, receiver: WebhookReceiver
) -> None:
    rid = _submit(api, "ray", receiver.url)
    _finish(api, rid, "ray", fail="first try failed")
    _tick_and_send(api)
    with api.client(api.key("ray")) as client:
        client.get(f"/v1/requests/{rid}")
    with api.db.session() as s:
        status.retry(s, rid, by="api")
        status.submit(s, rid, run_id="run-2")
    mp4 = api.env.content / "ray" / rid / "stitched_mp4" / "talking_head.mp4"
    mp4.parent.mkdir(parents=True)
    mp4.write_bytes(b"mp4")
    with api.db.session() as s:
        status.complete(s, rid, RequestOutputs(talking_head_mp4=str(mp4)), run_id="run-2")
    _tick_and_send(api)
    assert [hit["headers"]["webhook-id"] for hit in receiver.received] == [
        f"msg_{rid}_0_failed",
        f"msg_{rid}_1_completed",
    ]
    assert [receiver.json(i)["type"] for i in (0, 1)] == ["request.failed", "request.completed"]


def test_a_gone_receiver_is_a_permanent_failure_recorded(
    api: ApiServer, receiver: WebhookReceiver
) -> None:
    receiver.replies = [410]
    rid = _submit(api, "sue", receiver.url)
    _finish(api, rid, "sue")
    (run,) = _tick_and_send(api)
    assert not run.success and len(receiver.received) == 1  # not retried
    with api.db.session() as s:
        (note,) = webhooks_of(s, rid)
        assert note.status == "Failed" and "410" in note.last_error


def test_the_url_is_checked_again_before_sending(
    api: ApiServer, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = _submit(api, "tom", receiver.url)  # allowed at intake (127.0.0.1 allowlisted)
    _finish(api, rid, "tom")
    monkeypatch.setenv("AVGEN_WEBHOOK_ALLOW_HOSTS", "")  # the operator withdrew it since
    (run,) = _tick_and_send(api)
    assert not run.success and receiver.received == []
    with api.db.session() as s:
        (note,) = webhooks_of(s, rid)
        assert note.status == "Failed" and "loopback" in note.last_error


def test_requests_without_a_callback_get_no_webhook(api: ApiServer) -> None:
    with api.client(api.key("uli")) as client:
        rid = client.post(
            "/v1/requests", data={"script": "No hook."}, files=portrait_files()
        ).json()["request_id"]
    _finish(api, rid, "uli")
    instance = dg.DagsterInstance.ephemeral()
    resources = {"app_db": AppDatabaseResource(url=api.env.db_url)}
    tick = notification_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert [r.tags for r in tick.run_requests] == [{"avgen/request_id": rid}]  # the message
    with api.db.session() as s:
        assert webhooks_of(s, rid) == []
