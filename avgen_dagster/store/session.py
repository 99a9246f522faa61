"""Engine, sessions and migrations of the app database (SQLite by default, any SQLAlchemy URL)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from filelock import FileLock
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from avgen_dagster.errors import DatabaseUnavailableError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url`` using avgen's migration scripts (no ini file needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def shown_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(an unparsable database URL)"


def upgrade_database(url: str, revision: str = "head") -> None:
    """Create or upgrade the schema at ``url`` to ``revision`` (Alembic ``upgrade``).

    A SQLite file's parent folder is created when missing.

    Raises:
        DatabaseUnavailableError: the database cannot be reached or opened (the message names
            the URL without its password and the driver's reason).
    """
    lock = _ensure_sqlite_folder(url)
    try:
        # Two processes starting on a fresh SQLite file (two `avgen generate`s) must not both
        # create the schema: one migrates, the other waits and finds it current.
        with FileLock(lock) if lock else contextlib.nullcontext():
            command.upgrade(alembic_config(url), revision)
    except (OperationalError, InterfaceError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise DatabaseUnavailableError(
            f"the app database at {shown_url(url)} is unreachable: {reason}"
        ) from None


def downgrade_database(url: str, revision: str) -> None:
    """Downgrade the schema at ``url`` to ``revision`` (e.g. ``"-1"`` or ``"base"``)."""
    command.downgrade(alembic_config(url), revision)


def _ensure_sqlite_folder(url: str) -> str | None:
    """Create a SQLite file's folder; return the path of its migration lock file (None for
    other databases)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:":
        path = Path(url[len(prefix) :]).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path.with_name(f".{path.name}.migrate.lock"))
    return None


def _create_engine(url: str) -> Engine:
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
        self.engine = _create_engine(url)
        self._sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        # Reads and single-statement writes need no transaction: in DBAPI autocommit mode a
        # session sends no BEGIN and no COMMIT (two round trips fewer on Postgres).
        self._autocommit_sessionmaker = sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed when the block succeeds and rolled back when it raises."""
        with self._sessionmaker() as s, s.begin():
            yield s

    @contextmanager
    def autocommit_session(self) -> Iterator[Session]:
        """A session whose every statement commits on its own (DBAPI autocommit): for reads,
        and writes of one statement each (e.g. a key's last-used time), where a transaction
        would only add BEGIN/COMMIT round trips. Never for read-check-write sequences."""
        with self._autocommit_sessionmaker() as s, s.begin():
            yield s

    @contextmanager
    def locked_session(self, key: str) -> Iterator[Session]:
        """A session that holds a lock on ``key`` (e.g. a user id) until it ends, so two such
        sessions for one key never interleave (read-check-write in one step).

        SQLite: the transaction starts with ``BEGIN IMMEDIATE`` (the database's write lock,
        taken at once; other writers wait up to the busy timeout). Postgres: a transaction-level
        advisory lock on the key's 64-bit hash (``pg_advisory_xact_lock(hashtextextended(key,
        0))``), which locks a key that has no row yet (an unknown user id) without creating one.
        """
        with self._sessionmaker() as s, s.begin():
            dialect = self.engine.dialect.name
            if dialect == "sqlite":
                s.execute(text("BEGIN IMMEDIATE"))
            elif dialect == "postgresql":
                s.execute(
                    text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
                )
            else:
                raise DatabaseUnavailableError(
                    f"locked sessions need SQLite or Postgres, not {dialect}"
                )
            yield s


@cache
def app_database(url: str) -> AppDatabase:
    """The process's one :class:`AppDatabase` for ``url`` (migrated on first use, then shared
    by every resource, sensor, page and command in the process).

    Raises:
        DatabaseUnavailableError: the database cannot be reached.
    """
    return AppDatabase(url)
