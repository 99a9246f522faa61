"""What the API's handlers share: the app database, the content tree, the signing key, the
public base URL and the Dagster instance — one :class:`ApiContext` per app (``app.state``)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from avgen_dagster.settings import Settings
from avgen_dagster.store.content import ContentTree
from avgen_dagster.store.session import AppDatabase

if TYPE_CHECKING:
    import dagster as dg


@dataclass
class ApiContext:
    """Handles of one API app.

    Attributes:
        settings: the environment settings the app was made with.
        db: the app database. tree: the content store. secret: signs media URLs and derives
        webhook secrets (``AVGEN_SECRET_KEY``). public_url: where clients reach this service
        (``AVGEN_MEDIA_URL``: the media URLs it hands out point here). erase_wait_s: how long
        an erasure waits for the request's runs to stop. max_wait_s: the longest ``?wait``
        honoured (a proxy's timeout may call for less). non_cloning_speech: the configured
        speech backend's name when it cannot clone a voice (intake then refuses a
        ``voice_reference``), None when it can; read from the environment
        (:meth:`~avgen_dagster.resources.backends.SpeechBackendResource.from_env`).
    """

    settings: Settings
    db: AppDatabase
    tree: ContentTree
    secret: str
    public_url: str
    erase_wait_s: float = 30.0
    max_wait_s: float = 600.0
    non_cloning_speech: str | None = field(default_factory=lambda: _speech_without_cloning())
    _instance: dg.DagsterInstance | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def instance(self) -> dg.DagsterInstance:
        """The Dagster instance at ``DAGSTER_HOME`` (opened on first use, then shared)."""
        import dagster as dg

        with self._lock:
            if self._instance is None:
                home = self.settings.dagster_home_path
                home.mkdir(parents=True, exist_ok=True)
                os.environ.setdefault("DAGSTER_HOME", str(home))
                self._instance = dg.DagsterInstance.get()
            return self._instance


def _speech_without_cloning() -> str | None:
    from avgen_dagster.resources.backends import SpeechBackendResource

    return SpeechBackendResource.from_env().without_cloning()


def api_context(request: Request) -> ApiContext:
    """The app's context (a FastAPI dependency)."""
    return request.app.state.avgen
