"""Fixtures of the HTTP API tests: the real app under uvicorn on 127.0.0.1 (in a thread of the
test process, so the test shares its database and Dagster instance), API keys, a local
webhook receiver (the one allowed edge fake: a stand-in for a user's endpoint)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from avgen_dagster.store.api_keys import create_key
from avgen_dagster.store.requests import ensure_user
from avgen_dagster.store.session import AppDatabase
from tests.conftest import SAMPLE_PORTRAIT, AvgenEnv

SECRET = "api-tests-secret-key-0123456789abcdef"
# The smallest complete package (tests that run the job): 1 image, 1 clip of 1 s, 2 s music.
SMALL_OPTIONS = {
    "image_count": 1,
    "clip_count": 1,
    "clip_duration_s": 1.0,
    "music_duration_s": 2.0,
    "image_size": 128,
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ApiServer:
    """A running API server: its base URL and the environment behind it."""

    url: str
    env: AvgenEnv
    db: AppDatabase
    server: object

    def client(self, key: str | None = None) -> httpx.Client:
        """An httpx client for this server, sending ``key`` as the bearer key."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def key(self, user_id: str) -> str:
        """A new API key for ``user_id`` (the user is created when new)."""
        with self.db.session() as s:
            ensure_user(s, user_id)
            return create_key(s, user_id, "tests")[1]


def start_uvicorn(app: object, port: int) -> tuple[object, threading.Thread]:
    """Serve ``app`` with uvicorn on 127.0.0.1:``port`` in a daemon thread; wait for it."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    return server, thread


@pytest.fixture
def api_settings(avgen_env: AvgenEnv, monkeypatch: pytest.MonkeyPatch) -> AvgenEnv:
    """The environment of one API test: isolated folders, a fixed secret, 127.0.0.1 allowed
    as a webhook target (the local receiver), a quiet Dagster instance."""
    (avgen_env.home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("AVGEN_SECRET_KEY", SECRET)
    monkeypatch.setenv("AVGEN_WEBHOOK_ALLOW_HOSTS", "127.0.0.1")
    return avgen_env


def serve_api(env: AvgenEnv, monkeypatch: pytest.MonkeyPatch, **app_kwargs: object):  # type: ignore[no-untyped-def]
    """Start the API (``create_api_app``) for ``env`` under uvicorn; returns (ApiServer, stop)."""
    from avgen_dagster.api.app import create_api_app

    port = free_port()
    monkeypatch.setenv("AVGEN_MEDIA_URL", f"http://127.0.0.1:{port}")
    app = create_api_app(**app_kwargs)  # type: ignore[arg-type]
    server, thread = start_uvicorn(app, port)

    def stop() -> None:
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(timeout=10)

    db = app.state.avgen.db
    return ApiServer(f"http://127.0.0.1:{port}", env, db, server), stop


@pytest.fixture
def api(api_settings: AvgenEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiServer]:
    """The real API app under uvicorn on a free 127.0.0.1 port (short erasure wait: these
    tests' runs have no worker process to stop)."""
    server, stop = serve_api(api_settings, monkeypatch, erase_wait_s=1.0)
    try:
        yield server
    finally:
        stop()


def portrait_files(name: str = "me.png", data: bytes | None = None) -> dict[str, tuple]:
    """The multipart ``files`` argument with a portrait (the sample photo by default)."""
    return {"portrait": (name, data if data is not None else SAMPLE_PORTRAIT.read_bytes(),
                         "application/octet-stream")}  # fmt: skip


@dataclass
class WebhookReceiver:
    """A local HTTP endpoint standing in for a user's webhook receiver: records each POST
    (headers and raw body) and answers with the queued status codes, then 200."""

    replies: list[int] = field(default_factory=list)
    received: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                code = outer.replies.pop(0) if outer.replies else 200
                outer.received.append(
                    {"headers": dict(self.headers), "body": body, "answered": code}
                )
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/avgen"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def json(self, index: int = -1) -> dict:
        """The JSON body of a received POST."""
        return json.loads(self.received[index]["body"])

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A running local webhook receiver."""
    hook = WebhookReceiver()
    try:
        yield hook
    finally:
        hook.close()


def wait_for(predicate, timeout_s: float = 30.0, every_s: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy; return it (fail at timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(every_s)


def content_files(root: Path, user_id: str, request_id: str) -> list[Path]:
    """Every file (hidden ones too) under one request's folder."""
    folder = root / user_id / request_id
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
