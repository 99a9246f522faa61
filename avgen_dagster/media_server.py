"""HTTP server for generated media (MP4, HLS playlists and segments, images, music).

Browsers and web players (Chromium's native HLS, hls.js) fetch content here, not from disk.
Each URL carries a signed, expiring token naming one user's one request
(``/media/<token>/<path inside the request folder>``); the server serves only regular files
inside that request's folder under the content root: no listings, no ``..``, no temporary
files, no other user's request. HLS playlists name their segments relatively, so a segment's
URL carries the same token as its playlist. Starlette's ``FileResponse`` answers Range
requests (seeking in ``<video>``). With an object-store content root the server checks the
same token, proxies playlists and redirects every other file to a short-lived presigned URL.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from avgen_dagster.errors import ContentStoreError, InvalidInputError
from avgen_dagster.store.content import PLAYLIST_SUFFIXES, PRESIGNED_URL_MAX_AGE_S, ContentTree
from avgen_dagster.validation import validate_request_id, validate_user_id

MEDIA_URL_MAX_AGE_S = 12 * 3600
_SALT = "avgen-media"
MEDIA_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".wav": "audio/wav",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".txt": "text/plain; charset=utf-8",
    ".vtt": "text/vtt; charset=utf-8",
    ".webvtt": "text/vtt; charset=utf-8",
    ".srt": "application/x-subrip; charset=utf-8",
}


def sign_media_token(user_id: str, request_id: str, secret: str) -> str:
    """A signed token granting read access to one request's folder (itsdangerous)."""
    payload = [validate_user_id(user_id), validate_request_id(request_id)]
    return URLSafeTimedSerializer(secret, salt=_SALT).dumps(payload)


def media_url(
    base_url: str, user_id: str, request_id: str, path_in_request: str, secret: str
) -> str:
    """The URL at which the media server serves ``path_in_request`` of one request.

    Args:
        base_url: where the media server listens, e.g. ``http://127.0.0.1:8502``.
        path_in_request: relative path such as ``hls/index.m3u8``.
    """
    token = sign_media_token(user_id, request_id, secret)
    return f"{base_url.rstrip('/')}/media/{token}/{path_in_request.lstrip('/')}"


def verify_media_token(token: str, secret: str) -> tuple[str, str]:
    """The ``(user_id, request_id)`` a media token grants, after checking its signature and age.

    Raises:
        InvalidInputError: bad, tampered or expired token (older than
            :data:`MEDIA_URL_MAX_AGE_S`).
    """
    try:
        user_id, request_id = URLSafeTimedSerializer(secret, salt=_SALT).loads(
            token, max_age=MEDIA_URL_MAX_AGE_S
        )
    except (BadSignature, ValueError, TypeError) as exc:
        raise InvalidInputError("media link is not valid or has expired") from exc
    return validate_user_id(user_id), validate_request_id(request_id)


def resolve_media_path(content: ContentTree | Path, token: str, path: str, secret: str) -> Path:
    """The local file a media URL names, after every check (local content folder).

    Raises:
        InvalidInputError: bad or expired token, a path outside the request folder, a hidden
            or temporary file, or no such file.
    """
    user_id, request_id = verify_media_token(token, secret)
    tree = content if isinstance(content, ContentTree) else ContentTree(content)
    base = Path(tree.request_uri(user_id, request_id)).resolve()
    target = (base / path).resolve()
    if not target.is_relative_to(base) or target == base:
        raise InvalidInputError("path is outside the request's folder")
    if any(part.startswith(".") for part in target.relative_to(base).parts):
        raise InvalidInputError("no such file")
    if not target.is_file():
        raise InvalidInputError("no such file")
    return target


def resolve_media_uri(content: ContentTree, token: str, path: str, secret: str) -> str:
    """The object URI a media URL names, after every check (object-store content).

    Raises:
        InvalidInputError: bad or expired token, ``..``, an absolute, hidden or temporary path,
            or no such object.
    """
    user_id, request_id = verify_media_token(token, secret)
    uri = content.request_file_uri(user_id, request_id, path)
    if not content.exists(uri):
        raise InvalidInputError("no such file")
    return uri


MAX_PATH_CHARS = 1024


def malformed_path(token: str, path: str) -> str | None:
    """Why a media URL's token or path cannot name a file (NUL or other control characters,
    longer than :data:`MAX_PATH_CHARS`), or None when it is well formed."""
    for part in (token, path):
        if len(part) > MAX_PATH_CHARS:
            return f"path longer than {MAX_PATH_CHARS} characters"
        if any(ord(c) < 32 or ord(c) == 127 for c in part):
            return "path has control characters"
    return None


def create_app(content: ContentTree | Path, secret: str) -> Starlette:
    """The Starlette app serving generated content under signed URLs.

    A local content folder is served directly (``FileResponse``: Range requests for seeking).
    From an object store, HLS playlists are proxied (so their relative segment URIs resolve
    back to this server, under the same token) and every other file answers ``307`` to a
    presigned URL of the object (:data:`PRESIGNED_URL_MAX_AGE_S`), which the store serves
    with Range support; the browser never needs store credentials.
    """
    tree = content if isinstance(content, ContentTree) else ContentTree(content)

    async def media(request: Request) -> Response:
        token, path = request.path_params["token"], request.path_params["path"]
        if problem := malformed_path(token, path):
            return PlainTextResponse(problem, status_code=400)
        media_type = MEDIA_TYPES.get(PurePosixPath(path).suffix.lower(), "application/octet-stream")
        try:
            if not tree.is_remote:
                target = resolve_media_path(tree, token, path, secret)
                return FileResponse(target, media_type=media_type)
            uri = await run_in_threadpool(resolve_media_uri, tree, token, path, secret)
            if path.lower().endswith(PLAYLIST_SUFFIXES):
                body = await run_in_threadpool(tree.read_bytes, uri)
                return Response(body, media_type=media_type, headers={"Cache-Control": "no-store"})
            url = await run_in_threadpool(tree.presigned_url, uri, PRESIGNED_URL_MAX_AGE_S)
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
        except InvalidInputError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        except (OSError, ValueError):
            # Whatever else the OS refuses about a name (too long a part, …): not a file here.
            return PlainTextResponse("no such file", status_code=404)
        except ContentStoreError as exc:
            return PlainTextResponse(f"content store unavailable: {exc}", status_code=502)

    async def health(_: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/media/{token}/{path:path}", media, methods=["GET", "HEAD"]),
            Route("/healthz", health),
        ],
        # Web players on the portal's origin fetch playlists and segments cross-origin.
        middleware=[Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET"])],
    )
