"""Engine, sessions and migrations of the app database (SQLite by default, any SQLAlchemy URL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url`` using avgen's migration scripts (no ini file needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_database(url: str, revision: str = "head") -> None:
    """Create or upgrade the schema at ``url`` to ``revision`` (Alembic ``upgrade``).

    A SQLite file's parent folder is created when missing.
    """
    _ensure_sqlite_folder(url)
    command.upgrade(alembic_config(url), revision)


def downgrade_database(url: str, revision: str) -> None:
    """Downgrade the schema at ``url`` to ``revision`` (e.g. ``"-1"`` or ``"base"``)."""
    command.downgrade(alembic_config(url), revision)


def _ensure_sqlite_folder(url: str) -> None:
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:":
        Path(url[len(prefix) :]).expanduser().parent.mkdir(parents=True, exist_ok=True)


@cache
def _engine(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        # WAL lets the portal read while a run writes; foreign keys are off by default in SQLite.
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.close()

    return engine


class AppDatabase:
    """Handle on the app database at one URL: migrations once, then short sessions.

    Example::

        db = AppDatabase("sqlite:///tmp/avgen.db")
        with db.session() as s:
            ...  # committed on success, rolled back on error
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        if migrate:
            upgrade_database(url)
        self.engine = _engine(url)
        self._sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed when the block succeeds and rolled back when it raises."""
        with self._sessionmaker() as s, s.begin():
            yield s
