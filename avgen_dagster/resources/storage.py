"""Resources for where avgen keeps things: generated files and the app database."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from avgen_dagster.settings import get_settings
from avgen_dagster.store.content import ContentTree, content_tree
from avgen_dagster.store.session import AppDatabase, app_database


class ContentStore(dg.ConfigurableResource):
    """Generated content: ``<root>/<user_id>/<request_id>/<asset>/``, in a local folder (the
    default) or an object store named by URL (``s3://bucket/prefix``), so runs on different
    machines write where the portal reads.

    Assets write into :meth:`asset_dir` (a local folder: the final one, or the object store's
    working copy), call :meth:`publish` when their files are complete, and hand URIs
    (:meth:`uri_of`) downstream; readers turn a URI back into a local file with
    :meth:`local_file`. See :class:`~avgen_dagster.store.content.ContentTree`.

    Ids are validated before they become path parts, so no user input can address a file
    outside ``root``. A new request gets a new folder; older requests are never overwritten.
    """

    root: str = Field(
        default_factory=lambda: get_settings().content_location,
        description=(
            "Content folder, or object-store URL such as s3://bucket/prefix "
            "(env AVGEN_CONTENT_URL, else AVGEN_CONTENT_DIR)."
        ),
    )
    cache_dir: str = Field(
        default_factory=lambda: str(get_settings().content_cache_path),
        description="Local working copy of an object-store root (env AVGEN_CONTENT_CACHE_DIR).",
    )

    def tree(self) -> ContentTree:
        """The content tree this resource names (one per process, root and cache folder)."""
        return content_tree(self.root, self.cache_dir)

    def request_dir(self, user_id: str, request_id: str) -> Path:
        """Local folder of one request's files (not created)."""
        return self.tree().work_dir(user_id, request_id, create=False)

    def asset_dir(self, user_id: str, request_id: str, asset: str, *, create: bool = True) -> Path:
        """Local folder to write one request's ``asset`` files into (created unless
        ``create=False``)."""
        return self.tree().work_dir(user_id, request_id, asset, create=create)

    def publish(self, local: Path | str) -> list[str]:
        """Publish a finished file or folder; return the URIs of its files (see
        :meth:`ContentTree.publish`). Raises ``ContentStoreError`` when an upload fails."""
        return self.tree().publish(local)

    def uri_of(self, local: Path | str) -> str:
        """URI of a file written under :meth:`asset_dir` (its path, on a local root)."""
        return self.tree().uri_of(local)

    def local_file(self, uri: str | Path) -> Path:
        """A local path with the content of ``uri`` (downloaded from an object store when
        needed). Raises ``ContentStoreError`` when it does not exist."""
        return self.tree().local_file(uri)


class AppDatabaseResource(dg.ConfigurableResource):
    """The app database (users, requests): SQLite under DAGSTER_HOME or ``AVGEN_DATABASE_URL``."""

    url: str = Field(
        default_factory=lambda: get_settings().database_url,
        description="SQLAlchemy URL of the app database.",
    )

    def get(self) -> AppDatabase:
        """The process's :class:`AppDatabase` at ``url``, migrated to the newest schema once."""
        return app_database(self.url)
