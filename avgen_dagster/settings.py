"""Process-wide settings read from the environment (pydantic-settings).

=====================  =====================================  ==============================
variable               meaning                                default
=====================  =====================================  ==============================
``DAGSTER_HOME``       Dagster's instance folder               ``.dagster_home`` (absolute)
``AVGEN_DATABASE_URL`` SQLAlchemy URL of the app database      SQLite ``$DAGSTER_HOME/avgen.db``
``AVGEN_CONTENT_DIR``  root folder of generated content        ``generated_content``
``AVGEN_CONTENT_URL``  object store for content instead         unset (use the folder)
                       (``s3://bucket/prefix``; AWS env for
                       credentials, ``AWS_ENDPOINT_URL``)
``AVGEN_CONTENT_CACHE_DIR`` local working copy of the object     ``$DAGSTER_HOME/content_cache``
                       store
``AVGEN_MEDIA_URL``    base URL of the media server            ``http://127.0.0.1:8502``
``AVGEN_PORTAL_URL``   base URL of the portal (links in mail)  ``http://127.0.0.1:8501``
``AVGEN_SECRET_KEY``   signs sign-in links and media URLs      a key file in DAGSTER_HOME
``AVGEN_WEBHOOK_ALLOW_HOSTS`` hosts, IPs or CIDR networks a     empty (none)
                       ``callback_url`` may name although
                       private, loopback or link-local
``AVGEN_API_RATE_LIMIT`` HTTP API calls per key (``limits``     ``600/minute``
                       notation, e.g. ``10/second``)
``AVGEN_API_SUBMIT_RATE_LIMIT`` submissions per key            ``60/minute``
``AVGEN_API_RATE_LIMIT_STORAGE`` where counters live           ``memory://`` (per process)
                       (``redis://host:6379`` for several)
=====================  =====================================  ==============================
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from avgen_dagster.store.content import ContentTree
    from avgen_dagster.store.session import AppDatabase


class Settings(BaseSettings):
    """avgen's environment configuration; construct anew to re-read the environment."""

    model_config = SettingsConfigDict(extra="ignore")

    dagster_home: Path = Field(
        default=Path(".dagster_home"), validation_alias=AliasChoices("DAGSTER_HOME")
    )
    database_url_env: str | None = Field(
        default=None, validation_alias=AliasChoices("AVGEN_DATABASE_URL")
    )
    content_dir: Path = Field(
        default=Path("generated_content"), validation_alias=AliasChoices("AVGEN_CONTENT_DIR")
    )

    content_url: str | None = Field(
        default=None, validation_alias=AliasChoices("AVGEN_CONTENT_URL")
    )
    content_cache_dir: Path | None = Field(
        default=None, validation_alias=AliasChoices("AVGEN_CONTENT_CACHE_DIR")
    )

    media_url: str = Field(
        default="http://127.0.0.1:8502", validation_alias=AliasChoices("AVGEN_MEDIA_URL")
    )
    portal_url: str = Field(
        default="http://127.0.0.1:8501", validation_alias=AliasChoices("AVGEN_PORTAL_URL")
    )
    webhook_allow_hosts_env: str = Field(
        default="", validation_alias=AliasChoices("AVGEN_WEBHOOK_ALLOW_HOSTS")
    )
    api_rate_limit: str = Field(
        default="600/minute", validation_alias=AliasChoices("AVGEN_API_RATE_LIMIT")
    )
    api_submit_rate_limit: str = Field(
        default="60/minute", validation_alias=AliasChoices("AVGEN_API_SUBMIT_RATE_LIMIT")
    )
    api_rate_limit_storage: str = Field(
        default="memory://", validation_alias=AliasChoices("AVGEN_API_RATE_LIMIT_STORAGE")
    )

    @property
    def webhook_allow_hosts(self) -> tuple[str, ...]:
        """``AVGEN_WEBHOOK_ALLOW_HOSTS`` as a tuple (comma or space separated, lower case)."""
        text = self.webhook_allow_hosts_env.replace(",", " ")
        return tuple(part.strip().lower() for part in text.split() if part.strip())

    @cached_property
    def dagster_home_path(self) -> Path:
        """Absolute Dagster home folder."""
        return self.dagster_home.expanduser().resolve()

    @cached_property
    def content_root(self) -> Path:
        """Absolute root folder of generated content."""
        return self.content_dir.expanduser().resolve()

    @property
    def content_location(self) -> str:
        """Where content lives: ``AVGEN_CONTENT_URL`` if set, else the absolute content folder."""
        return self.content_url or str(self.content_root)

    @property
    def content_cache_path(self) -> Path:
        """Absolute local working copy of an object-store content root."""
        return (
            (self.content_cache_dir or self.dagster_home_path / "content_cache")
            .expanduser()
            .resolve()
        )

    def content_tree(self) -> ContentTree:
        """The process's :class:`~avgen_dagster.store.content.ContentTree` for these settings
        (one per root and working copy: :func:`~avgen_dagster.store.content.content_tree`)."""
        from avgen_dagster.store.content import content_tree

        return content_tree(self.content_location, str(self.content_cache_path))

    def database(self) -> AppDatabase:
        """The process's :class:`~avgen_dagster.store.session.AppDatabase` at
        :attr:`database_url` (:func:`~avgen_dagster.store.session.app_database`).

        Raises:
            DatabaseUnavailableError: the database cannot be reached.
        """
        from avgen_dagster.store.session import app_database

        return app_database(self.database_url)

    @property
    def database_url(self) -> str:
        """The app database URL: ``AVGEN_DATABASE_URL`` or SQLite under ``DAGSTER_HOME``."""
        if self.database_url_env:
            return self.database_url_env
        return f"sqlite:///{self.dagster_home_path / 'avgen.db'}"


def get_settings() -> Settings:
    """Read the settings from the current environment."""
    return Settings()


def secret_key(settings: Settings | None = None) -> str:
    """The key that signs sign-in links and media URLs.

    ``AVGEN_SECRET_KEY`` when set (production: the same value for every process); otherwise a
    random key created once in ``$DAGSTER_HOME/secret_key`` (mode 0600) and reused, so a
    laptop's portal, CLI and sensors agree without configuration.
    """
    import os
    import secrets

    if key := os.environ.get("AVGEN_SECRET_KEY"):
        return key
    settings = settings or get_settings()
    path = settings.dagster_home_path / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{secrets.token_hex(6)}-secret_key")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
        # link() fails if another process won the race; then both use the winner's key.
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()
