"""Notifications: SendGrid (local stand-in server), SMTP (aiosmtpd), console; the sensor with a
controlled clock; retries; crash safety (exactly once / same message id)."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import numpy as np
import pytest
from aiosmtpd.controller import Controller

from avgen_dagster import sensors
from avgen_dagster.auth import authenticate_token
from avgen_dagster.errors import InvalidInputError
from avgen_dagster.intake import NewRequest, submit_request
from avgen_dagster.media.video_io import encode_segment_mp4
from avgen_dagster.notifications.channels import ConsoleChannel, SendGridChannel
from avgen_dagster.notifications.delivery import build_message, deliver
from avgen_dagster.notify_job import notify_job
from avgen_dagster.outputs import RequestOutputs
from avgen_dagster.portraits import Upload
from avgen_dagster.resources import AppDatabaseResource
from avgen_dagster.resources.notifier import NotifierResource
from avgen_dagster.runs import REQUEST_ID_TAG
from avgen_dagster.settings import secret_key
from avgen_dagster.store import AppDatabase, status
from avgen_dagster.store.models import utcnow
from avgen_dagster.store.notifications import (
    create_due_notifications,
    get_notification,
    message_id_for,
)
from avgen_dagster.store.requests import get_request
from tests.conftest import SAMPLE_PORTRAIT, AvgenEnv

API_KEY = "SG.test-key"


class SendGridStandIn:
    """A local HTTP server standing in for SendGrid's /v3/mail/send (this machine has no
    network); replies with the queued status codes, then 202."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.replies: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": json.loads(body)}
                )
                status = outer.replies.pop(0) if outer.replies else 202
                payload = b""
                if status != 202:
                    payload = json.dumps({"errors": [{"message": f"simulated {status}"}]}).encode()
                self.send_response(status)
                self.send_header("X-Message-Id", f"sg-{len(outer.requests)}")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def sendgrid() -> Iterator[SendGridStandIn]:
    server = SendGridStandIn()
    yield server
    server.close()


def _completed_request(
    env: AvgenEnv, *, email: str | None = "ada@example.com", notify_at: datetime | None = None
) -> str:
    db = AppDatabase(env.db_url)
    rid = submit_request(
        db,
        env.content,
        NewRequest(
            user_id="ada", prompt="Tell me about tides", script=None,
            portrait=Upload("p.png", SAMPLE_PORTRAIT.read_bytes()), options={},
            notify_at=notify_at, email=email,
        ),
    )  # fmt: skip
    mp4 = env.content / "ada" / rid / "stitched_mp4" / "talking_head.mp4"
    frames = (np.full((64, 64, 3), 100, np.uint8) for _ in range(25))
    encode_segment_mp4(frames, 25, np.zeros(16000, np.float32), 16000, mp4)
    made = RequestOutputs(
        talking_head_mp4=str(mp4), hls_playlist=str(mp4.parent.parent / "hls/index.m3u8")
    )
    with db.session() as s:
        status.submit(s, rid)
        status.complete(s, rid, made, run_id="run-1")
    return rid


def _notifier(sendgrid: SendGridStandIn | None = None, **kw: object) -> NotifierResource:
    return NotifierResource(
        sendgrid_api_key=API_KEY if sendgrid else None,
        sendgrid_host=sendgrid.url if sendgrid else "http://127.0.0.1:9",
        sender="avgen <hello@avgen.example>",
        portal_url="http://portal.test",
        **kw,
    )


def _run_notify(env: AvgenEnv, rid: str, notifier: NotifierResource) -> dg.ExecuteInProcessResult:
    return notify_job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        tags={REQUEST_ID_TAG: rid},
        resources={"app_db": AppDatabaseResource(url=env.db_url), "notifier": notifier},
        raise_on_error=False,
    )


def _due(env: AvgenEnv, now: datetime | None = None) -> None:
    with AppDatabase(env.db_url).session() as s:
        create_due_notifications(s, now or utcnow())


def test_sendgrid_202_posts_the_exact_message(avgen_env: AvgenEnv, sendgrid) -> None:
    rid = _completed_request(avgen_env)
    _due(avgen_env)
    result = _run_notify(avgen_env, rid, _notifier(sendgrid))
    assert result.success
    (req,) = sendgrid.requests
    assert req["path"] == "/v3/mail/send"
    assert req["headers"]["Authorization"] == f"Bearer {API_KEY}"
    body = req["json"]
    assert body["from"] == {"email": "hello@avgen.example", "name": "avgen"}
    assert body["personalizations"][0]["to"] == [{"email": "ada@example.com"}]
    assert body["subject"] == "ada, your avgen video is ready"
    text, html = (c["value"] for c in body["content"])
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert "a talking-head video, 1.0 s" in text and "an HLS stream" in text
    assert "<li>a talking-head video, 1.0 s</li>" in html
    link = next(w for w in text.split() if w.startswith("http://portal.test/?token="))
    assert f'href="{link}"' in html
    assert body["custom_args"]["avgen_message_id"] == message_id_for(rid)
    assert body["headers"]["Message-ID"] == message_id_for(rid)
    db = AppDatabase(avgen_env.db_url)
    with db.session() as s:
        note = get_notification(s, rid)
        assert (note.status, note.attempts, note.provider_message_id) == ("Sent", 1, "sg-1")
        # The link signs Ada in.
        token = link.split("token=", 1)[1]
        assert authenticate_token(s, token, secret_key()).user_id == "ada"
    # Sent is final: another run sends nothing.
    assert _run_notify(avgen_env, rid, _notifier(sendgrid)).success
    assert len(sendgrid.requests) == 1


def test_sendgrid_400_fails_for_good_with_the_reason(avgen_env: AvgenEnv, sendgrid) -> None:
    rid = _completed_request(avgen_env)
    _due(avgen_env)
    sendgrid.replies = [400]
    result = _run_notify(avgen_env, rid, _notifier(sendgrid))
    assert not result.success
    assert len(sendgrid.requests) == 1  # not retried
    with AppDatabase(avgen_env.db_url).session() as s:
        note = get_notification(s, rid)
        assert note.status == "Failed" and "400" in note.last_error
        assert "simulated 400" in note.last_error


def test_sendgrid_429_is_retried_then_sent(avgen_env: AvgenEnv, sendgrid) -> None:
    rid = _completed_request(avgen_env)
    _due(avgen_env)
    sendgrid.replies = [429]
    result = _run_notify(avgen_env, rid, _notifier(sendgrid))
    assert result.success
    assert len(sendgrid.requests) == 2
    ids = {r["json"]["custom_args"]["avgen_message_id"] for r in sendgrid.requests}
    assert ids == {message_id_for(rid)}
    with AppDatabase(avgen_env.db_url).session() as s:
        note = get_notification(s, rid)
        assert (note.status, note.attempts) == ("Sent", 2)


def test_sendgrid_500s_exhaust_the_retries_and_stay_pending(avgen_env: AvgenEnv, sendgrid) -> None:
    rid = _completed_request(avgen_env)
    _due(avgen_env)
    sendgrid.replies = [500, 500, 500, 500]
    result = _run_notify(avgen_env, rid, _notifier(sendgrid))
    assert not result.success
    assert len(sendgrid.requests) == 4  # first try + 3 retries
    with AppDatabase(avgen_env.db_url).session() as s:
        note = get_notification(s, rid)
        assert note.status == "Sending" and "500" in note.last_error  # kept for a later run


def test_missing_api_key_is_a_clear_error_at_send_time(avgen_env: AvgenEnv) -> None:
    rid = _completed_request(avgen_env)
    _due(avgen_env)
    result = _run_notify(avgen_env, rid, _notifier(None))
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "SENDGRID_API_KEY is not set" in str(failure.message) + str(failure.cause)
    with AppDatabase(avgen_env.db_url).session() as s:
        assert get_notification(s, rid).status != "Sent"


def test_smtp_channel_against_a_local_server(avgen_env: AvgenEnv) -> None:
    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope.content)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        rid = _completed_request(avgen_env)
        _due(avgen_env)
        notifier = _notifier(None, email_provider="smtp", smtp_host="127.0.0.1",
                             smtp_port=port, smtp_security="none")  # fmt: skip
        assert _run_notify(avgen_env, rid, notifier).success
    finally:
        controller.stop()
    (raw,) = received
    mail = message_from_bytes(raw, policy=policy.default)
    assert mail["Message-ID"] == message_id_for(rid)
    assert mail["To"] == "ada@example.com" and "ready" in mail["Subject"]
    assert "http://portal.test/?token=" in mail.get_body(("plain",)).get_content()
    assert "<a href=" in mail.get_body(("html",)).get_content()


def test_console_channel_prints_one_line(avgen_env: AvgenEnv, capsys) -> None:
    rid = _completed_request(avgen_env, email=None)
    _due(avgen_env)
    assert _run_notify(avgen_env, rid, _notifier(None)).success
    out = capsys.readouterr().out
    assert "[avgen notification] ada, your avgen video is ready" in out
    # The console is a run's compute log, shown to every operator: never a live sign-in link.
    assert "http://portal.test/?token=…" in out
    assert not re.search(r"token=[A-Za-z0-9_.-]{8,}", out), out


def _tick(env: AvgenEnv):
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(),
        resources={"app_db": AppDatabaseResource(url=env.db_url)},
    )
    return sensors.notification_sensor(context)


def test_sensor_respects_the_users_time(avgen_env: AvgenEnv, monkeypatch) -> None:
    start = utcnow()
    clock = {"now": start}
    monkeypatch.setattr(sensors, "now_utc", lambda: clock["now"])
    rid = _completed_request(avgen_env, notify_at=start + timedelta(hours=2))

    assert isinstance(_tick(avgen_env), dg.SkipReason)  # not due
    clock["now"] = start + timedelta(hours=2, seconds=1)
    first = _tick(avgen_env)
    assert [r.run_key for r in first.run_requests] == [f"notify-{rid}-1"]
    assert first.run_requests[0].tags == {REQUEST_ID_TAG: rid}
    assert isinstance(_tick(avgen_env), dg.SkipReason)  # no duplicate
    # A run that never finished is dispatched again (new run key) after the grace period.
    clock["now"] += timedelta(minutes=11)
    assert [r.run_key for r in _tick(avgen_env).run_requests] == [f"notify-{rid}-2"]


def test_due_before_the_content_is_ready_goes_out_when_it_completes(
    avgen_env: AvgenEnv, monkeypatch
) -> None:
    db = AppDatabase(avgen_env.db_url)
    rid = submit_request(
        db, avgen_env.content,
        NewRequest(user_id="bea", prompt="Hi", script=None,
                   portrait=Upload("p.png", SAMPLE_PORTRAIT.read_bytes()), options={},
                   notify_at=utcnow() - timedelta(minutes=1)),
    )  # fmt: skip
    with db.session() as s:
        # A minute ago (a form filled slowly) means now; further in the past is refused.
        assert abs((get_request(s, rid).notify_at - utcnow()).total_seconds()) < 60
    assert isinstance(_tick(avgen_env), dg.SkipReason)  # due, but still Queued
    with db.session() as s:
        status.submit(s, rid)
        status.complete(s, rid, RequestOutputs(), run_id="run-1")
    assert [r.run_key for r in _tick(avgen_env).run_requests] == [f"notify-{rid}-1"]


def test_an_invalid_email_is_refused_at_request_time(avgen_env: AvgenEnv) -> None:
    with pytest.raises(InvalidInputError, match="not valid"):
        submit_request(
            AppDatabase(avgen_env.db_url), avgen_env.content,
            NewRequest(user_id="cy", prompt="Hi", script=None, email="cy@@nowhere",
                       portrait=Upload("p.png", SAMPLE_PORTRAIT.read_bytes()), options={}),
        )  # fmt: skip
    assert not (avgen_env.content / "cy").exists()


def _deliver_and_die(db_url: str, rid: str, host: str, crash_at: str) -> None:
    """Child process: deliver, and be killed (os._exit, no cleanup) at ``crash_at``."""

    def hook(point: str) -> None:
        if point == crash_at:
            os._exit(137)

    db = AppDatabase(db_url)
    channel = SendGridChannel(API_KEY, "hello@avgen.example", host=host)
    deliver(db, rid, channel, lambda: build_message(db, rid, "http://portal.test", "k"),
            crash_hook=hook)  # fmt: skip


@pytest.mark.parametrize(
    ("crash_at", "expected_posts"),
    [("sending_recorded", 1), ("provider_accepted", 2)],
)
def test_a_killed_send_is_completed_once(
    avgen_env: AvgenEnv, sendgrid, crash_at: str, expected_posts: int
) -> None:
    rid = _completed_request(avgen_env)
    _due(avgen_env)
    proc = multiprocessing.get_context("spawn").Process(
        target=_deliver_and_die, args=(avgen_env.db_url, rid, sendgrid.url, crash_at)
    )
    proc.start()
    proc.join(120)
    assert proc.exitcode == 137
    db = AppDatabase(avgen_env.db_url)
    with db.session() as s:
        assert get_notification(s, rid).status == "Sending"
    # The next attempt (a new notify run) completes it.
    assert _run_notify(avgen_env, rid, _notifier(sendgrid)).success
    assert _run_notify(avgen_env, rid, _notifier(sendgrid)).success  # and never again
    assert len(sendgrid.requests) == expected_posts
    ids = {r["json"]["custom_args"]["avgen_message_id"] for r in sendgrid.requests}
    assert ids == {message_id_for(rid)}
    with db.session() as s:
        note = get_notification(s, rid)
        assert note.status == "Sent" and note.attempts == 2


def test_console_channel_records_messages() -> None:
    channel = ConsoleChannel(echo=False)
    assert channel.send.__doc__
    assert channel.sent == []
