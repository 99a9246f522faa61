"""Resources for where avgen keeps things: generated files and the app database."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from avgen_dagster.settings import get_settings
from avgen_dagster.store.session import AppDatabase
from avgen_dagster.validation import validate_request_id, validate_user_id


class ContentStore(dg.ConfigurableResource):
    """Generated content on the local file system: ``<root>/<user_id>/<request_id>/<asset>/``.

    Ids are validated before they become path parts, so no user input can address a file
    outside ``root``. A new request gets a new folder; older requests are never overwritten.
    """

    root: str = Field(
        default_factory=lambda: str(get_settings().content_root),
        description="Root folder of generated content (env AVGEN_CONTENT_DIR).",
    )

    def request_dir(self, user_id: str, request_id: str) -> Path:
        """Absolute folder of one request's files (not created)."""
        validate_user_id(user_id)
        validate_request_id(request_id)
        return Path(self.root).resolve() / user_id / request_id

    def asset_dir(self, user_id: str, request_id: str, asset: str, *, create: bool = True) -> Path:
        """Absolute folder of one request's ``asset`` files (created unless ``create=False``)."""
        path = self.request_dir(user_id, request_id) / asset
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path


class AppDatabaseResource(dg.ConfigurableResource):
    """The app database (users, requests): SQLite under DAGSTER_HOME or ``AVGEN_DATABASE_URL``."""

    url: str = Field(
        default_factory=lambda: get_settings().database_url,
        description="SQLAlchemy URL of the app database.",
    )

    def get(self) -> AppDatabase:
        """An :class:`AppDatabase` at ``url``, migrated to the newest schema."""
        return _database(self.url)


_DATABASES: dict[str, AppDatabase] = {}


def _database(url: str) -> AppDatabase:
    # Migrate once per process and URL, not once per asset.
    if url not in _DATABASES:
        _DATABASES[url] = AppDatabase(url)
    return _DATABASES[url]
