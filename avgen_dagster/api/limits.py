"""Body-size limits of the HTTP API (an ASGI middleware), answered as 413 problems.

Under ``/v1/``: a multipart body may carry the largest face source intake accepts (a driving
video, :data:`~avgen_dagster.portraits.MAX_VIDEO_BYTES`), the largest voice reference
(:data:`~avgen_dagster.voice_reference.MAX_VOICE_REFERENCE_BYTES`) and
:data:`FORM_SLACK_BYTES` of text parts and framing; any other body at most
:data:`MAX_JSON_BYTES`. A declared ``Content-Length`` over the limit is refused before a byte of
the body is read; a body without one (chunked) is counted as it arrives and refused when it
passes the limit. The problem names ``portrait`` for a multipart body (the part that can be
largest) and ``body`` otherwise.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from avgen_dagster.api.problems import PROBLEM_JSON
from avgen_dagster.portraits import MAX_VIDEO_BYTES
from avgen_dagster.voice_reference import MAX_VOICE_REFERENCE_BYTES

MAX_JSON_BYTES = 256 * 1024
FORM_SLACK_BYTES = 1024 * 1024
MAX_FORM_BYTES = MAX_VIDEO_BYTES + MAX_VOICE_REFERENCE_BYTES + FORM_SLACK_BYTES


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a streamed body passes its limit."""

    def __init__(self, limit: int, field: str) -> None:
        super().__init__(f"the request body is over the limit of {limit:,} bytes")
        self.limit = limit
        self.field = field


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def body_limit_for(scope: Scope, max_form_bytes: int = MAX_FORM_BYTES) -> tuple[int, str]:
    """``(limit in bytes, field to name)`` for this request's body."""
    if _header(scope, b"content-type").lower().startswith("multipart/"):
        return max_form_bytes, "portrait"
    return MAX_JSON_BYTES, "body"


def too_large_body(limit: int, field: str, path: str) -> bytes:
    """The 413 problem document (RFC 9457) as bytes."""
    detail = f"the request body is over the limit of {limit:,} bytes"
    return json.dumps(
        {
            "type": "/problems/too-large",
            "title": "Content too large",
            "status": 413,
            "detail": detail,
            "instance": path,
            "errors": [{"field": field, "detail": detail}],
        }
    ).encode()


class BodySizeLimit:
    """Refuse ``/v1/`` bodies over their limit (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, max_form_bytes: int = MAX_FORM_BYTES) -> None:
        self.app = app
        self.max_form_bytes = max_form_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        limit, field = body_limit_for(scope, self.max_form_bytes)
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit, field, scope["path"])
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit, field)
            return message

        await self.app(scope, counted, send)

    @staticmethod
    async def _refuse(send: Send, limit: int, field: str, path: str) -> None:
        body = too_large_body(limit, field, path)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
