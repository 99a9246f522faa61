"""Where generated content lives: a local folder or an object store, behind one interface.

Layout, the same on both: ``<root>/<user_id>/<request_id>/<asset>/<file>``.

* **Local** (``root`` is a folder; the laptop default): files are written in place, each by an
  atomic rename, and a file's *URI* is its absolute path.
* **Object store** (``root`` is an fsspec URL such as ``s3://bucket/prefix``, through
  ``universal_pathlib``; credentials and ``AWS_ENDPOINT_URL`` come from the standard AWS
  environment): encoders and decoders need local files, so an asset writes into a local
  *working copy* under ``cache_dir`` (same layout) and :meth:`ContentTree.publish` uploads it.
  Each object appears whole (an S3 PUT is atomic) and HLS playlists are uploaded after their
  segments, so a reader never sees a half-written file or a playlist naming a missing segment.
  A file's URI is its object URL; :meth:`ContentTree.local_file` fetches it into the working
  copy on any machine that needs it (a run pod reading an upstream asset, a checker).

Ids are validated before they become path parts, so no user input addresses anything outside
``root``. This module has no Dagster dependency.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from avgen_dagster.errors import ContentStoreError, InvalidInputError
from avgen_dagster.validation import validate_request_id, validate_user_id


def _store_errors() -> tuple[type[BaseException], ...]:
    """Exceptions an fsspec store raises for I/O failures: ``OSError`` (fsspec's own) plus
    botocore's, which s3fs lets through for connection failures and refused requests."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # a store without botocore
        return (OSError,)
    return (OSError, BotoCoreError, ClientError)


STORE_ERRORS = _store_errors()
PLAYLIST_SUFFIXES = (".m3u8",)  # uploaded last: they name the other files
PRESIGNED_URL_MAX_AGE_S = 3600


def is_url(location: str) -> bool:
    """Whether ``location`` is a URL with a scheme other than ``file`` (an object store)."""
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.lower() not in ("", "file")


def relative_key(path: str) -> str:
    """``path`` (relative, POSIX) if it names a visible file inside a folder, else raises.

    Raises:
        InvalidInputError: empty, absolute, ``..`` or a hidden/temporary part (``.tmp-…``).
    """
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidInputError("path is outside the request's folder")
    if any(p.startswith(".") for p in parts):
        raise InvalidInputError("no such file")
    return "/".join(parts)


class ContentTree:
    """Generated content under ``root``: a local folder or an object-store URL.

    Args:
        root: a folder (``generated_content``) or a URL (``s3://avgen-content/prod``).
        cache_dir: the local working copy of an object store (ignored for a local root).
        storage_options: extra fsspec options for the object store (e.g. ``endpoint_url``);
            by default the library's own environment lookup applies.

    Raises:
        ContentStoreError: a URL whose scheme has no installed fsspec implementation.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        cache_dir: str | Path | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        root = str(root)
        self.is_remote = is_url(root)
        if self.is_remote:
            from upath import UPath

            options = dict(storage_options or {})
            if root.lower().startswith(("s3://", "s3a://")):
                # Other machines add objects at any time: never answer from a stale listing.
                options.setdefault("use_listings_cache", False)
                # Presigned URLs with AWS Signature Version 4 (V2 is refused by newer regions).
                options.setdefault("config_kwargs", {"signature_version": "s3v4"})
            try:
                self._upath = UPath(root.rstrip("/"), **options)
            except (ImportError, ValueError) as exc:
                raise ContentStoreError(f"content store {root!r} is not usable: {exc}") from exc
            self.root = root.rstrip("/")
            default_cache = Path(os.environ.get("TMPDIR", "/tmp")) / "avgen-content-cache"
            self.local_root = Path(cache_dir or default_cache).expanduser().resolve()
        else:
            self.root = str(Path(root).expanduser().resolve())
            self.local_root = Path(self.root)

    def __repr__(self) -> str:
        return f"ContentTree({self.root!r})"

    # --- names -------------------------------------------------------------------------
    def request_uri(self, user_id: str, request_id: str) -> str:
        """URI of one request's folder (absolute path or object URL, no trailing slash)."""
        return f"{self.root}/{validate_user_id(user_id)}/{validate_request_id(request_id)}"

    def work_dir(
        self, user_id: str, request_id: str, asset: str | None = None, *, create: bool = True
    ) -> Path:
        """Local folder to write one request's (``asset``'s) files into.

        For a local root this is the final folder; for an object store, the working copy that
        :meth:`publish` uploads.
        """
        path = self.local_root / validate_user_id(user_id) / validate_request_id(request_id)
        if asset is not None:
            path = path / relative_key(asset)
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def uri_of(self, local: Path | str) -> str:
        """The URI of a file written under :meth:`work_dir` (identity for a local root).

        Raises:
            ContentStoreError: ``local`` is not inside the working copy.
        """
        path = Path(local).resolve()
        if not path.is_relative_to(self.local_root):
            raise ContentStoreError(f"{path} is not inside the content store's working copy")
        if not self.is_remote:
            return str(path)
        return f"{self.root}/{path.relative_to(self.local_root).as_posix()}"

    def _key(self, uri: str) -> str:
        """The path of ``uri`` relative to ``root``; raises if it is outside."""
        prefix = self.root + "/"
        if not uri.startswith(prefix):
            raise ContentStoreError(f"{uri!r} is not in the content store {self.root!r}")
        return relative_key(uri[len(prefix) :])

    # --- writing -----------------------------------------------------------------------
    def publish(self, local: Path | str) -> list[str]:
        """Make a written file, or every visible file under a written folder, readable by
        every machine; return their URIs (playlists last).

        Local root: nothing to copy. Object store: each file is uploaded (one atomic PUT per
        object), segments and media before the playlists that name them.

        Raises:
            ContentStoreError: an upload failed (names the file and the cause).
        """
        path = Path(local)
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            files = [path]
        files.sort(key=lambda p: p.suffix.lower() in PLAYLIST_SUFFIXES)
        uris = [self.uri_of(p) for p in files]
        if self.is_remote:
            for file, uri in zip(files, uris, strict=True):
                try:
                    self._upath.fs.put_file(str(file), self._object(uri))
                except STORE_ERRORS as exc:
                    raise ContentStoreError(
                        f"could not upload {file.name} to {uri}: {exc}"
                    ) from exc
        return uris

    def delete(self, uri: str) -> None:
        """Remove one file (a rolled-back upload); missing is fine.

        Raises:
            ContentStoreError: the store refused or could not be reached.
        """
        if not self.is_remote:
            Path(uri).unlink(missing_ok=True)
            return
        try:
            self._upath.fs.rm_file(self._object(uri))
        except FileNotFoundError:
            pass
        except STORE_ERRORS as exc:
            raise ContentStoreError(f"could not delete {uri}: {exc}") from exc
        (self.local_root / self._key(uri)).unlink(missing_ok=True)

    def delete_request(self, user_id: str, request_id: str) -> int:
        """Remove one request's whole folder — every file, hidden ones (``.outputs/``, a
        temporary file) included — from the store and from the local working copy; then the
        user's folder if it is left empty. Returns how many files went; missing is fine.

        Raises:
            ContentStoreError: the object store refused or could not be reached.
        """
        local = self.work_dir(user_id, request_id, create=False)
        removed = 0
        if self.is_remote:
            prefix = self._upath.joinpath(user_id, request_id).path.rstrip("/") + "/"
            try:
                names = list(self._upath.fs.find(prefix))
                if names:
                    self._upath.fs.rm(names)
            except FileNotFoundError:
                names = []
            except STORE_ERRORS as exc:
                raise ContentStoreError(f"could not delete {prefix}: {exc}") from exc
            removed = len(names)
        if local.exists():
            files = sum(1 for p in local.rglob("*") if not p.is_dir())
            removed = removed if self.is_remote else files
            shutil.rmtree(local)
        with contextlib.suppress(OSError):  # not empty (other requests), or already gone
            local.parent.rmdir()
        return removed

    # --- reading -----------------------------------------------------------------------
    def _object(self, uri: str) -> str:
        """fsspec path (``bucket/prefix/...``) of an object URI."""
        return self._upath.joinpath(self._key(uri)).path

    def local_file(self, uri: str | Path) -> Path:
        """A local path holding the file ``uri`` names, fetched from the store when needed.

        Local root (or a plain path): the path itself. Object store: the working-copy file,
        downloaded (atomically) when missing or a different size from the object.

        Raises:
            ContentStoreError: the object does not exist or cannot be read.
        """
        uri = str(uri)
        if not self.is_remote or not is_url(uri):
            return Path(uri)
        key = self._key(uri)
        target = self.local_root / key
        fs = self._upath.fs
        try:
            size = fs.info(self._object(uri))["size"]
        except FileNotFoundError as exc:
            raise ContentStoreError(f"{uri} does not exist in the content store") from exc
        except STORE_ERRORS as exc:
            raise ContentStoreError(f"could not read {uri}: {exc}") from exc
        if target.is_file() and target.stat().st_size == size:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".tmp-{uuid.uuid4().hex[:12]}-{target.name}")
        try:
            fs.get_file(self._object(uri), str(tmp))
            os.replace(tmp, target)
        except STORE_ERRORS as exc:
            raise ContentStoreError(f"could not download {uri}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def request_file_uri(self, user_id: str, request_id: str, path_in_request: str) -> str:
        """URI of ``path_in_request`` (e.g. ``hls/index.m3u8``) inside one request's folder.

        Raises:
            InvalidInputError: ``..``, absolute, hidden or temporary parts.
        """
        return f"{self.request_uri(user_id, request_id)}/{relative_key(path_in_request)}"

    def relative_in_request(
        self, user_id: str, request_id: str, uri: str | None, *, must_exist: bool = True
    ) -> str | None:
        """``uri`` relative to the request's folder if it names a file inside it, else None.

        The gate for anything shown to a browser: a recorded path pointing at another request,
        another user or outside the store yields None. Local roots also check the file exists
        (``must_exist``); object stores are not asked (one request per file per page view):
        the media server answers 404 for a missing object.
        """
        if not uri:
            return None
        base = self.request_uri(user_id, request_id)
        if not self.is_remote:
            base_path = Path(base).resolve()
            candidate = Path(uri)
            if not candidate.is_absolute():
                candidate = base_path / candidate
            target = candidate.resolve()
            if not target.is_relative_to(base_path) or target == base_path:
                return None
            if must_exist and not target.is_file():
                return None
            return target.relative_to(base_path).as_posix()
        if not is_url(uri):
            uri = f"{base}/{uri}"
        if not uri.startswith(base + "/"):
            return None
        try:
            return relative_key(uri[len(base) + 1 :])
        except InvalidInputError:
            return None

    def exists(self, uri: str) -> bool:
        """Whether ``uri`` names an existing regular file."""
        if not self.is_remote:
            return Path(uri).is_file()
        try:
            return self._upath.fs.isfile(self._object(uri))
        except STORE_ERRORS:
            return False

    def read_bytes(self, uri: str) -> bytes:
        """The bytes of one file.

        Raises:
            ContentStoreError: no such file, or the store cannot be read.
        """
        try:
            if not self.is_remote:
                return Path(uri).read_bytes()
            return self._upath.fs.cat_file(self._object(uri))
        except FileNotFoundError as exc:
            raise ContentStoreError(f"{uri} does not exist in the content store") from exc
        except STORE_ERRORS as exc:
            raise ContentStoreError(f"could not read {uri}: {exc}") from exc

    def presigned_url(self, uri: str, expires_s: int = PRESIGNED_URL_MAX_AGE_S) -> str:
        """A time-limited URL at which the object store itself serves ``uri`` (S3 presigned
        GET, AWS Signature; Range requests work on it).

        Raises:
            ContentStoreError: a local root (nothing to sign) or a store that cannot sign.
        """
        if not self.is_remote:
            raise ContentStoreError("a local content folder has no presigned URLs")
        try:
            return self._upath.fs.sign(self._object(uri), expiration=expires_s)
        except (NotImplementedError, *STORE_ERRORS) as exc:
            raise ContentStoreError(f"the content store cannot sign {uri}: {exc}") from exc

    def iter_request_files(self, user_id: str, request_id: str) -> Iterator[str]:
        """URIs of every visible file of one request (listing; tests and tools)."""
        base = self.request_uri(user_id, request_id)
        if not self.is_remote:
            root = Path(base)
            for p in sorted(root.rglob("*")) if root.exists() else []:
                rel = p.relative_to(root)
                if p.is_file() and not any(part.startswith(".") for part in rel.parts):
                    yield str(p)
            return
        prefix = self._upath.joinpath(user_id, request_id).path.rstrip("/") + "/"
        for name in sorted(self._upath.fs.find(prefix)):
            rel = name[len(prefix) :]
            if not any(part.startswith(".") for part in rel.split("/")):
                yield f"{base}/{rel}"


@functools.cache
def content_tree(root: str, cache_dir: str) -> ContentTree:
    """The process's one :class:`ContentTree` for ``root`` and working copy ``cache_dir``
    (every resource, page and command in the process shares it)."""
    return ContentTree(root, cache_dir=cache_dir)
