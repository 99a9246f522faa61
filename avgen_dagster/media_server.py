"""HTTP server for generated media (MP4, HLS playlists and segments, images, music).

Browsers and web players (Chromium's native HLS, hls.js) fetch content here, not from disk.
Each URL carries a signed, expiring token naming one user's one request
(``/media/<token>/<path inside the request folder>``); the server serves only regular files
inside that request's folder under the content root: no listings, no ``..``, no temporary
files, no other user's request. HLS playlists name their segments relatively, so a segment's
URL carries the same token as its playlist. Starlette's ``FileResponse`` answers Range
requests (seeking in ``<video>``).
"""

from __future__ import annotations

from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from avgen_dagster.errors import InvalidInputError
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


def resolve_media_path(content_root: Path, token: str, path: str, secret: str) -> Path:
    """The file a media URL names, after every check.

    Raises:
        InvalidInputError: bad or expired token, a path outside the request folder, a hidden
            or temporary file, or no such file.
    """
    try:
        user_id, request_id = URLSafeTimedSerializer(secret, salt=_SALT).loads(
            token, max_age=MEDIA_URL_MAX_AGE_S
        )
    except (BadSignature, ValueError, TypeError) as exc:
        raise InvalidInputError("media link is not valid or has expired") from exc
    base = (content_root / validate_user_id(user_id) / validate_request_id(request_id)).resolve()
    target = (base / path).resolve()
    if not target.is_relative_to(base) or target == base:
        raise InvalidInputError("path is outside the request's folder")
    if any(part.startswith(".") for part in target.relative_to(base).parts):
        raise InvalidInputError("no such file")
    if not target.is_file():
        raise InvalidInputError("no such file")
    return target


def create_app(content_root: Path, secret: str) -> Starlette:
    """The Starlette app serving ``content_root`` under signed URLs."""

    async def media(request: Request) -> Response:
        try:
            target = resolve_media_path(
                content_root, request.path_params["token"], request.path_params["path"], secret
            )
        except InvalidInputError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        media_type = MEDIA_TYPES.get(target.suffix.lower(), "application/octet-stream")
        return FileResponse(target, media_type=media_type)

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
