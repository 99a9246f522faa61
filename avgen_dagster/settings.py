"""Process-wide settings read from the environment (pydantic-settings).

=====================  =====================================  ==============================
variable               meaning                                default
=====================  =====================================  ==============================
``DAGSTER_HOME``       Dagster's instance folder               ``.dagster_home`` (absolute)
``AVGEN_DATABASE_URL`` SQLAlchemy URL of the app database      SQLite ``$DAGSTER_HOME/avgen.db``
``AVGEN_CONTENT_DIR``  root of generated content               ``generated_content``
=====================  =====================================  ==============================
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    @cached_property
    def dagster_home_path(self) -> Path:
        """Absolute Dagster home folder."""
        return self.dagster_home.expanduser().resolve()

    @cached_property
    def content_root(self) -> Path:
        """Absolute root folder of generated content."""
        return self.content_dir.expanduser().resolve()

    @property
    def database_url(self) -> str:
        """The app database URL: ``AVGEN_DATABASE_URL`` or SQLite under ``DAGSTER_HOME``."""
        if self.database_url_env:
            return self.database_url_env
        return f"sqlite:///{self.dagster_home_path / 'avgen.db'}"


def get_settings() -> Settings:
    """Read the settings from the current environment."""
    return Settings()
