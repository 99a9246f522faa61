"""Throwaway servers for the deploy tests and the load benchmark: Postgres and S3 (moto).

Postgres: ``initdb`` + ``pg_ctl`` into a fresh temp folder, listening on 127.0.0.1 and a free
port, trust authentication, no persistence beyond the process. Postgres refuses to run as
root, so under root every server command runs as the ``postgres`` user (``runuser -u
postgres``) in a folder owned by that user; as any other user it runs as that user.

S3: moto's ``ThreadedMotoServer`` (an S3-compatible HTTP server in a thread) on 127.0.0.1.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "postgres"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_postgres_bin() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``, or None if not installed.

    Looks at ``PATH`` first, then Debian's ``/usr/lib/postgresql/<major>/bin`` (newest major).
    Debian's client package ships ``pg_ctl`` without the server: all three must be present.
    """
    needed = ("initdb", "pg_ctl", "postgres")
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).parent] if on_path else []
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += [Path(p) for p in debian]
    for folder in candidates:
        if all((folder / name).is_file() for name in needed):
            return folder
    return None


def why_no_postgres() -> str | None:
    """None when a throwaway Postgres can be started here, else the reason in words."""
    if find_postgres_bin() is None:
        return (
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or under "
            "/usr/lib/postgresql/*/bin; install them (Debian: apt-get install postgresql)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root and 'runuser' (util-linux) is missing"
    return None


@dataclass
class PostgresServer:
    """A running throwaway Postgres server (superuser ``postgres``, trust auth, 127.0.0.1)."""

    bin_dir: Path
    root: Path
    port: int
    host: str = "127.0.0.1"
    user: str = PG_USER
    _created: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, db_name: str = "postgres", driver: str = "psycopg") -> str:
        """SQLAlchemy URL of ``db_name`` through ``driver`` (``psycopg`` = psycopg 3)."""
        return f"postgresql+{driver}://{self.user}@{self.host}:{self.port}/{db_name}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (dropping an older one of that name); return its name."""
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        return name

    def env(self, db_name: str) -> dict[str, str]:
        """The ``DAGSTER_PG_*`` variables that ``deploy/dagster.yaml`` reads, for ``db_name``."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": db_name,
        }

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder."""
        try:
            _run_as_pg(
                [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]
            )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _run_as_pg(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", PG_USER, "--", *cmd]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    return result


def start_postgres() -> PostgresServer:
    """Initialise and start a throwaway Postgres server; the caller must ``stop()`` it.

    Raises:
        RuntimeError: the binaries are missing, or initdb / pg_ctl failed (with their stderr).
    """
    reason = why_no_postgres()
    if reason is not None:
        raise RuntimeError(reason)
    bin_dir = find_postgres_bin()
    assert bin_dir is not None
    # Not under pytest's tmp folder: that one is 0700 root, which the postgres user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="avgen-pg-"))
    if os.geteuid() == 0:
        pg = pwd.getpwnam(PG_USER)
        os.chown(root, pg.pw_uid, pg.pw_gid)
    port = free_port()
    data = root / "data"
    try:
        _run_as_pg(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ]
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        _run_as_pg(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return PostgresServer(bin_dir=bin_dir, root=root, port=port)


@dataclass
class S3Server:
    """A running moto S3 server: endpoint URL and the fake credentials it accepts."""

    endpoint_url: str
    server: object
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"

    def client(self):  # type: ignore[no-untyped-def]
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def env(self) -> dict[str, str]:
        """AWS variables that point boto3 / s3fs at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    def stop(self) -> None:
        """Stop the server thread."""
        self.server.stop()  # type: ignore[attr-defined]


def start_s3() -> S3Server:
    """Start moto's S3-compatible server on 127.0.0.1 and a free port."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return S3Server(endpoint_url=f"http://127.0.0.1:{port}", server=server)
