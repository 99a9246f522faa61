"""The app database: migrations, requests and their outputs record, on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.outputs import RequestOutputs
from avgen_dagster.store import AppDatabase, RequestStatus, status
from avgen_dagster.store.requests import create_request, get_request, list_requests, outputs_of
from avgen_dagster.store.session import downgrade_database, upgrade_database


def _engine(url: str):  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    return create_engine(url)


def test_migrations_upgrade_from_empty_and_downgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'm.db'}"
    upgrade_database(url)
    tables = set(inspect(_engine(url)).get_table_names())
    assert {"users", "generation_requests", "alembic_version"} <= tables
    cols = {c["name"] for c in inspect(_engine(url)).get_columns("generation_requests")}
    assert {
        "request_id",
        "user_id",
        "prompt",
        "script",
        "portrait_path",
        "options",
        "status",
        "outputs",
        "attempt",
        "generated_at",
        "error",
    } <= cols
    downgrade_database(url, "base")
    assert set(inspect(_engine(url)).get_table_names()) == {"alembic_version"}
    upgrade_database(url)  # and back up again
    assert "generation_requests" in inspect(_engine(url)).get_table_names()


def test_request_lifecycle(tmp_path: Path) -> None:
    db = AppDatabase(f"sqlite:///{tmp_path / 'a.db'}")
    with db.session() as s:
        first = create_request(
            s,
            user_id="alice",
            prompt="hello",
            script=None,
            portrait_path="/p.png",
            options={"target_lufs": -23},
        )
        second = create_request(
            s, user_id="alice", prompt=None, script="Hi there.", portrait_path="/p.png"
        )
        create_request(s, user_id="bob", prompt="x", script=None, portrait_path="/p.png")
    with db.session() as s:
        assert list_requests(s, "alice")[0].request_id == second.request_id
        assert list_requests(s, "nobody") == []
        assert get_request(s, first.request_id).status == RequestStatus.QUEUED
        assert get_request(s, first.request_id).options == {"target_lufs": -23}
        status.submit(s, first.request_id)
        status.submit(s, second.request_id)
        status.start_run(s, first.request_id, "r1")
    with db.session() as s:
        made = RequestOutputs(talking_head_mp4="/a.mp4", hls_playlist="/a.m3u8")
        status.complete(s, first.request_id, made, run_id="r1")
        status.fail(s, second.request_id, "lipsync_segments: no face found")
    with db.session() as s:
        done = get_request(s, first.request_id)
        assert done.status == "Completed" and outputs_of(done) == made
        assert outputs_of(done).files() == ["/a.mp4", "/a.m3u8"]
        assert done.generated_at is not None and done.generated_at.tzinfo is not None
        assert done.run_id == "r1"
        failed = get_request(s, second.request_id)
        assert failed.status == "Failed" and "no face" in failed.error


def test_a_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    db = AppDatabase(f"sqlite:///{tmp_path / 'a.db'}")
    with pytest.raises(RuntimeError), db.session() as s:
        create_request(s, user_id="carol", prompt="x", script=None, portrait_path="/p")
        raise RuntimeError("crash mid-transaction")
    with db.session() as s:
        assert list_requests(s, "carol") == []


@pytest.mark.parametrize(
    ("user_id", "prompt", "script", "message"),
    [
        ("../x", "p", None, "not allowed"),
        ("", "p", None, "empty"),
        ("u" * 65, "p", None, "limit is 64"),
        ("ok", None, None, "exactly one"),
        ("ok", "p", "s", "exactly one"),
    ],
)
def test_bad_requests_are_refused(
    tmp_path: Path, user_id: str, prompt: str | None, script: str | None, message: str
) -> None:
    db = AppDatabase(f"sqlite:///{tmp_path / 'a.db'}")
    with pytest.raises(InvalidInputError, match=message), db.session() as s:
        create_request(s, user_id=user_id, prompt=prompt, script=script, portrait_path="/p")
    with pytest.raises(InvalidInputError, match="no generation request"), db.session() as s:
        get_request(s, "0" * 32)
