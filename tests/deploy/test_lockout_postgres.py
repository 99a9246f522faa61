"""The sign-in lockout on Postgres: atomic under concurrency (an advisory lock per user id)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from avgen_dagster.auth import MAX_FAILURES, register_user
from avgen_dagster.store import AppDatabase
from tests.deploy.servers import PostgresServer
from tests.test_auth import concurrent_wrong_codes


def test_the_lockout_is_atomic_on_postgres(
    postgres: PostgresServer,
    new_pg_database: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = AppDatabase(postgres.url(new_pg_database("lock")))
    with db.session() as s:
        register_user(s, "victim", "victim@example.com")
    assert concurrent_wrong_codes(db, monkeypatch, 20) == MAX_FAILURES
