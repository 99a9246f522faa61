"""The app database's migrations and ORM on SQLite and on Postgres (psycopg 3)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from avgen_dagster.intake import NewRequest, submit_request
from avgen_dagster.options import parse_options
from avgen_dagster.outputs import RequestOutputs
from avgen_dagster.portraits import Upload
from avgen_dagster.store import AppDatabase, status
from avgen_dagster.store.models import Base, RequestStatus
from avgen_dagster.store.notifications import create_due_notifications, dispatch_due
from avgen_dagster.store.requests import get_request, outputs_of, requests_to_submit
from avgen_dagster.store.session import downgrade_database, upgrade_database
from tests.conftest import SAMPLE_PORTRAIT

HEAD = "0007"
APP_TABLES = {
    "users",
    "generation_requests",
    "login_attempts",
    "content_views",
    "notifications",
    "request_events",
    "api_keys",
    "idempotency_keys",
    "erasures",
}
# Differences between the ORM and the migrated schema that are known and harmless; keep empty.
# Migration 0003 creates ix_notifications_status but models.Notification.status lacks
# index=True (reported to the lead: add index=True there, then empty this set).
KNOWN_DRIFT: set[tuple[str, str]] = set()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty app database URL: a SQLite file, or a fresh database on the throwaway server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    make: Callable[[str], str] = request.getfixturevalue("new_pg_database")
    server = request.getfixturevalue("postgres")
    return server.url(make("mig"))


def _version(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if "alembic_version" not in inspect(conn).get_table_names():
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def _columns(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def test_upgrade_from_empty_and_downgrade_one_step(db_url: str) -> None:
    assert _version(db_url) is None
    upgrade_database(db_url)
    assert _version(db_url) == HEAD
    engine = create_engine(db_url)
    assert set(inspect(engine).get_table_names()) >= APP_TABLES
    engine.dispose()

    made = RequestOutputs(
        talking_head_mp4="/c/u/r/stitched_mp4/talking_head.mp4",
        hls_playlist="/c/u/r/hls/index.m3u8",
        images=["/c/u/r/images/image_00.png"],
        video_clips=["/c/u/r/video_clips/clip_00.mp4"],
        music="/c/u/r/music/music.m4a",
        music_wav="/c/u/r/music/music.wav",
        music_video="/c/u/r/music_video/music_video.mp4",
    )
    db = AppDatabase(db_url, migrate=False)
    with db.session() as s:
        from avgen_dagster.store.requests import create_request

        rid = create_request(
            s, user_id="mig_user", prompt=None, script="Hello.", portrait_path="/p.png"
        ).request_id
        status.submit(s, rid)
        status.complete(s, rid, made, run_id="run-1")
    db.engine.dispose()

    downgrade_database(db_url, "0004")  # 0007, 0006, then 0005's downgrade
    assert _version(db_url) == "0004"
    assert {"video_paths", "image_paths", "audio_paths"} <= _columns(db_url, "generation_requests")
    assert "outputs" not in _columns(db_url, "generation_requests")
    engine = create_engine(db_url)
    with engine.connect() as conn:  # the row survives the downgrade, as the old lists
        row = conn.execute(
            text(
                "SELECT user_id, script, video_paths FROM generation_requests WHERE request_id = :r"
            ),
            {"r": rid},
        ).one()
    engine.dispose()
    assert tuple(row[:2]) == ("mig_user", "Hello.")
    videos = row[2] if isinstance(row[2], list) else json.loads(row[2])
    assert made.talking_head_mp4 in videos and made.music_video in videos

    upgrade_database(db_url)
    assert _version(db_url) == HEAD
    with AppDatabase(db_url, migrate=False).session() as s:
        again = outputs_of(get_request(s, rid))
    assert again.model_dump(exclude={"script"}) == made.model_dump(exclude={"script"})


def test_a_pre_migration_row_reads_through_the_outputs_record(db_url: str) -> None:
    """A request completed before 0005 (paths in three lists, meaning by suffix) reads back
    through the typed outputs record with every deliverable in its named field."""
    upgrade_database(db_url, "0004")
    base = "/content/old_user/" + "a" * 32
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO users (user_id, created_at) VALUES ('old_user', :t)"),
            {"t": datetime(2026, 11, 1)},
        )
        conn.execute(
            text(
                "INSERT INTO generation_requests (request_id, user_id, prompt, options, status,"
                " video_paths, image_paths, audio_paths, notify_channel, created_at) VALUES"
                " (:r, 'old_user', 'Tides', :o, 'Completed', :v, :i, :a, 'console', :t)"
            ),
            {
                "r": "a" * 32,
                "o": json.dumps({"target_lufs": None, "genre": "jazz"}),
                "v": json.dumps(
                    [
                        f"{base}/video_clips/clip_00.mp4",
                        f"{base}/music_video/music_video.mp4",
                        f"{base}/stitched_mp4/talking_head.mp4",
                        f"{base}/hls/index.m3u8",
                    ]
                ),
                "i": json.dumps([f"{base}/images/image_00.png"]),
                "a": json.dumps([f"{base}/music/music.m4a", f"{base}/music/music.wav"]),
                "t": datetime(2026, 11, 1, 12),
            },
        )
    engine.dispose()
    upgrade_database(db_url)
    with AppDatabase(db_url, migrate=False).session() as s:
        req = get_request(s, "a" * 32)
        out = outputs_of(req)
        assert req.attempt == 0 and req.status == "Completed"
        assert parse_options(req.options).target_lufs == -16.0  # null meant the default
    assert out == RequestOutputs(
        script=f"{base}/script/script.txt",
        talking_head_mp4=f"{base}/stitched_mp4/talking_head.mp4",
        hls_playlist=f"{base}/hls/index.m3u8",
        images=[f"{base}/images/image_00.png"],
        video_clips=[f"{base}/video_clips/clip_00.mp4"],
        music=f"{base}/music/music.m4a",
        music_wav=f"{base}/music/music.wav",
        music_video=f"{base}/music_video/music_video.mp4",
    )


def test_every_step_down_to_base_and_back(db_url: str) -> None:
    upgrade_database(db_url)
    for expected in ["0006", "0005", "0004", "0003", "0002", "0001", None]:
        downgrade_database(db_url, "-1")
        assert _version(db_url) == expected
    engine = create_engine(db_url)
    assert not APP_TABLES & set(inspect(engine).get_table_names())
    engine.dispose()
    upgrade_database(db_url)
    assert _version(db_url) == HEAD


def test_0007_voice_reference_down_and_up_keeps_the_request(db_url: str) -> None:
    from avgen_dagster.store.requests import create_request

    upgrade_database(db_url)
    db = AppDatabase(db_url, migrate=False)
    with db.session() as s:
        req = create_request(s, user_id="v", prompt="Hi", script=None, portrait_path="/p.png")
        req.voice_reference_path = "/c/v/r/input/voice_reference.wav"
        rid = req.request_id
    db.engine.dispose()
    downgrade_database(db_url, "0006")
    assert "voice_reference_path" not in _columns(db_url, "generation_requests")
    upgrade_database(db_url)
    with AppDatabase(db_url, migrate=False).session() as s:
        again = get_request(s, rid)
        assert (again.prompt, again.voice_reference_path) == ("Hi", None)


def _describe(diff: object) -> tuple[str, str]:
    """(operation, object name) of one compare_metadata difference."""
    if isinstance(diff, tuple):
        named = next((x for x in diff[1:] if hasattr(x, "name")), None)
        return (str(diff[0]), str(named.name) if named is not None else repr(diff))
    return ("modify", repr(diff))  # column changes come as lists of tuples


def test_orm_matches_the_migrated_schema(db_url: str) -> None:
    upgrade_database(db_url)
    engine = create_engine(db_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    found = {_describe(d) for d in diff}
    assert found <= KNOWN_DRIFT, diff


def test_intake_sensor_queries_and_notifications_on_postgres(
    postgres, new_pg_database, tmp_path: Path
) -> None:
    """The app's real write and query paths, on Postgres through psycopg 3."""
    url = postgres.url(new_pg_database("orm"))
    assert url.startswith("postgresql+psycopg://")
    db = AppDatabase(url)  # migrates
    notify_at = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    rid = submit_request(
        db,
        tmp_path / "content",
        NewRequest(
            user_id="pg_user",
            prompt=None,
            script="Hello from Postgres.",
            portrait=Upload("portrait.png", SAMPLE_PORTRAIT.read_bytes()),
            options={"image_count": 1},
            notify_at=notify_at,
            email="Someone@Example.com",
        ),
    )
    with db.session() as s:
        assert [r.request_id for r in requests_to_submit(s)] == [rid]
        status.submit(s, rid)
    with db.session() as s:
        assert requests_to_submit(s) == []
        req = get_request(s, rid)
        assert req.status == RequestStatus.PROCESSING.value
        assert req.notify_at == notify_at and req.notify_at.tzinfo is not None
        assert req.options["image_count"] == 1
        made = RequestOutputs(talking_head_mp4="/v.mp4", images=["/a.png", "/b.png"])
        status.complete(s, rid, made, run_id="run-1")
    with db.session() as s:
        req = get_request(s, rid)
        assert outputs_of(req) == made
        assert [e.to_status for e in status.history(s, rid)] == [
            "Queued", "Processing", "Completed"]  # fmt: skip
        assert req.generated_at is not None and req.generated_at.tzinfo is not None
        # Not due before its time, due after it; dispatched exactly once.
        assert create_due_notifications(s, notify_at - timedelta(seconds=1)) == 0
        assert create_due_notifications(s, notify_at + timedelta(seconds=1)) == 1
        dispatched = dispatch_due(s, notify_at + timedelta(seconds=2))
        assert [key for _, key in dispatched] == [f"notify-{rid}-1"]
        assert dispatch_due(s, notify_at + timedelta(seconds=3)) == []
