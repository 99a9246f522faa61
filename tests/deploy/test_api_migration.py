"""Migration 0006 (HTTP API) up and down on SQLite and Postgres, with rows in the tables it
touches: keys, idempotency keys, erasures, callback URLs, webhook notifications next to the
user's message (the unique key moved from request_id to message_id)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from avgen_dagster.outputs import RequestOutputs
from avgen_dagster.store import AppDatabase, status
from avgen_dagster.store.api_keys import authenticate_key, create_key
from avgen_dagster.store.models import Notification, utcnow
from avgen_dagster.store.notifications import (
    create_due_notifications,
    create_due_webhooks,
    get_notification,
    webhooks_of,
)
from avgen_dagster.store.requests import create_request, ensure_user
from avgen_dagster.store.session import downgrade_database, upgrade_database

API_TABLES = {"api_keys", "idempotency_keys", "erasures"}


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh database on the throwaway server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    make: Callable[[str], str] = request.getfixturevalue("new_pg_database")
    return request.getfixturevalue("postgres").url(make("api"))


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_0006_up_with_rows_down_and_up_again(db_url: str) -> None:
    upgrade_database(db_url)
    assert _tables(db_url) >= API_TABLES
    db = AppDatabase(db_url, migrate=False)
    with db.session() as s:
        ensure_user(s, "mig")
        _, key = create_key(s, "mig")
        req = create_request(s, user_id="mig", prompt="Hi", script=None, portrait_path=None)
        req.callback_url = "https://hooks.example/avgen"
        rid = req.request_id
    with db.session() as s:
        status.submit(s, rid)
        status.complete(s, rid, RequestOutputs(), run_id="r")
    with db.session() as s:
        assert create_due_notifications(s, utcnow()) == 1
        assert create_due_webhooks(s, utcnow()) == 1
    with db.session() as s:  # two rows for one request: the message and the webhook
        assert get_notification(s, rid).kind == "message"
        (hook,) = webhooks_of(s, rid)
        assert hook.target == "https://hooks.example/avgen"
        assert authenticate_key(s, key).user_id == "mig"
    with pytest.raises(IntegrityError), db.session() as s:  # message ids stay unique
        s.add(Notification(request_id=rid, kind="webhook", channel="webhook", status="Pending",
                           attempts=0, dispatches=0, message_id=hook.message_id,
                           created_at=utcnow()))  # fmt: skip
    db.engine.dispose()

    downgrade_database(db_url, "0005")
    assert not API_TABLES & _tables(db_url)
    engine = create_engine(db_url)
    with engine.connect() as conn:
        kinds = conn.execute(text("SELECT request_id FROM notifications")).all()
        columns = {c["name"] for c in inspect(conn).get_columns("generation_requests")}
    engine.dispose()
    assert kinds == [(rid,)] and "callback_url" not in columns  # the message row survives

    upgrade_database(db_url)
    with AppDatabase(db_url, migrate=False).session() as s:
        note = get_notification(s, rid)
        assert (note.kind, note.target) == ("message", None)
