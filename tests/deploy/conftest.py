"""Session fixtures of the deploy tests: a throwaway Postgres server and an S3 server (moto).

Without the Postgres server binaries the Postgres tests skip with the reason; with CI=true
they fail instead, so CI can never pass by skipping them (.ci/run installs the binaries).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import IN_CI
from tests.deploy.servers import PostgresServer, S3Server, start_postgres, start_s3, why_no_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A Postgres server on 127.0.0.1 for the whole test session, stopped at its end."""
    reason = why_no_postgres()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true but no throwaway Postgres can be started: {reason}")
        pytest.skip(reason)
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def new_pg_database(postgres: PostgresServer) -> Callable[[str], str]:
    """Factory: a fresh, empty database on the session's server; returns its name."""

    def make(prefix: str = "t") -> str:
        return postgres.create_database(f"{prefix}_{uuid.uuid4().hex[:10]}")

    return make


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """An S3-compatible server (moto) on 127.0.0.1 for the whole session."""
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"CI=true but moto[server] is not installed: {exc}")
        pytest.skip("moto[server] is not installed")
    server = start_s3()
    try:
        yield server
    finally:
        server.stop()
