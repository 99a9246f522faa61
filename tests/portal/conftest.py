"""Fixtures of the portal tests: one generated world per session, isolated env per test.

The world is real: ``submit_and_run`` runs the generation job once for ``demo`` and once for
``bob`` (a few seconds each on the embedded backends, small options), so the gallery shows a
real MP4, HLS stream, images, clips and music, and the Dagster catalog holds real
materializations. Tests that change the database use
their own user ids, so the shared world stays as described here.
"""

from __future__ import annotations

import functools
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLE_PORTRAIT

APP_DIR = REPO / "streamlit_app"
APP_FILE = APP_DIR / "streamlit_app.py"
if str(APP_DIR) not in sys.path:  # the portal's own modules (portal, catalog) are top-level
    sys.path.insert(0, str(APP_DIR))

SECRET = "portal-tests-secret-key-0123456789"
DEMO_CODE = "DEMO-CODE-2345-6789"
BOB_CODE = "BOBS-CODE-2345-6789"
# A small but complete package: talking head, 2 images, 1 clip, 2 s of music, a music video.
WORLD_OPTIONS = {
    "image_count": 2,
    "clip_count": 1,
    "clip_duration_s": 1.0,
    "music_duration_s": 2.0,
    "image_size": 128,
}
BOB_FAILURE = "no face found in portrait.png: use a photo with one clearly visible face"


@dataclass
class PortalWorld:
    """A generated world: paths, secret, and the ids of its requests."""

    root: Path
    home: Path
    content: Path
    db_url: str
    demo_completed: str
    bob_completed: str
    bob_queued: str
    bob_processing: str
    bob_failed: str

    def env(self) -> dict[str, str]:
        """The environment variables that point avgen (and the portal) at this world."""
        return {
            "DAGSTER_HOME": str(self.home),
            "AVGEN_CONTENT_DIR": str(self.content),
            "AVGEN_DATABASE_URL": self.db_url,
            "AVGEN_SECRET_KEY": SECRET,
            "AVGEN_MEDIA_URL": "http://127.0.0.1:9",
        }


@pytest.fixture(scope="session")
def portal_world(tmp_path_factory: pytest.TempPathFactory) -> PortalWorld:
    """Run the real job for ``demo`` and ``bob``; add bob's queued/processing/failed requests."""
    from avgen_dagster.auth import set_access_code
    from avgen_dagster.intake import NewRequest
    from avgen_dagster.portraits import Upload
    from avgen_dagster.runner import submit_and_run
    from avgen_dagster.store import status
    from avgen_dagster.store.models import RequestStatus
    from avgen_dagster.store.requests import create_request
    from avgen_dagster.store.session import AppDatabase

    root = tmp_path_factory.mktemp("portal_world")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    world_env = {
        "DAGSTER_HOME": str(home),
        "AVGEN_CONTENT_DIR": str(root / "content"),
        "AVGEN_DATABASE_URL": f"sqlite:///{root / 'app.db'}",
        "AVGEN_SECRET_KEY": SECRET,
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in world_env.items():
            mp.setenv(key, value)
        done = {}
        for user in ("demo", "bob"):
            out = submit_and_run(
                NewRequest(
                    user_id=user,
                    prompt=None,
                    script="Hello there.",
                    portrait=Upload.from_path(SAMPLE_PORTRAIT),
                    options=WORLD_OPTIONS,
                )
            )
            assert out.status == RequestStatus.COMPLETED.value, out.error
            done[user] = out.request_id
        db = AppDatabase(world_env["AVGEN_DATABASE_URL"])
        with db.session() as s:
            set_access_code(s, "demo", DEMO_CODE)
            set_access_code(s, "bob", BOB_CODE)
            queued = create_request(
                s, user_id="bob", prompt="a queued prompt", script=None, portrait_path=None
            ).request_id
            processing = create_request(
                s, user_id="bob", prompt="a processing prompt", script=None, portrait_path=None
            ).request_id
            failed = create_request(
                s, user_id="bob", prompt="a failed prompt", script=None, portrait_path=None
            ).request_id
        with db.session() as s:
            status.submit(s, processing)
            status.submit(s, failed)
            status.fail(s, failed, BOB_FAILURE)
    return PortalWorld(
        root=root,
        home=home,
        content=root / "content",
        db_url=world_env["AVGEN_DATABASE_URL"],
        demo_completed=done["demo"],
        bob_completed=done["bob"],
        bob_queued=queued,
        bob_processing=processing,
        bob_failed=failed,
    )


@pytest.fixture
def world(portal_world: PortalWorld, monkeypatch: pytest.MonkeyPatch) -> PortalWorld:
    """The session's world, with this test's environment pointing at it."""
    for key, value in portal_world.env().items():
        monkeypatch.setenv(key, value)
    return portal_world


@functools.cache
def _components() -> object:
    """Streamlit's registry of installed components, built once (as ``streamlit run`` does);
    a fresh AppTest otherwise rescans every installed distribution (~0.2 s a session)."""
    from streamlit.components.v2.component_manager import BidiComponentManager

    manager = BidiComponentManager()
    manager.discover_and_register_components(start_file_watching=False)
    return manager


def app_test(user_id: str | None = None):  # type: ignore[no-untyped-def]
    """A fresh portal session (AppTest), optionally signed in as ``user_id`` already."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP_FILE), default_timeout=60)
    if hasattr(at, "_bidi_component_manager"):
        at._bidi_component_manager = _components()
    if user_id is not None:
        at.session_state["avgen_user_id"] = user_id
    return at


def rendered(at) -> str:  # type: ignore[no-untyped-def]
    """Everything the run rendered (every element's protobuf as text: labels, bodies, URLs)."""
    return "\n".join(str(getattr(node, "proto", "")) for node in at._tree)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def media_server(content: Path, secret: str) -> Iterator[str]:
    """The real media server (uvicorn + ``create_app``) in a thread; yields its base URL."""
    import uvicorn

    from avgen_dagster.media_server import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(content, secret), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("media server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
