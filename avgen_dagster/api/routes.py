"""``/v1/requests`` and ``/v1/webhook-secret``: submit, read, list, retry and erase requests.

See the README section "HTTP API" for examples. Every handler authenticates the bearer key
(:mod:`.security`), counts the call against the key's rate limits and answers errors as RFC
9457 problems (:mod:`.problems`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from avgen_dagster.api.context import ApiContext, api_context
from avgen_dagster.api.documents import owned_request, problem_responses, request_doc, summary
from avgen_dagster.api.erasure import erase_request
from avgen_dagster.api.links import request_path
from avgen_dagster.api.problems import ApiProblem
from avgen_dagster.api.schemas import RequestDoc, RequestPage, SubmitFields, WebhookSecret
from avgen_dagster.api.security import (
    CallerDep,
    TokenDep,
    caller_of,
    every_call_limit,
    limiter,
    submission_limit,
)
from avgen_dagster.api.submit import read_submission, submit
from avgen_dagster.errors import InvalidInputError
from avgen_dagster.notifications.webhooks import webhook_secret
from avgen_dagster.store import status
from avgen_dagster.store.listing import MAX_PAGE, requests_page
from avgen_dagster.store.requests import get_request
from avgen_dagster.voice_reference import FIELD as VOICE_REFERENCE
from avgen_dagster.voice_reference import (
    MAX_REFERENCE_S,
    MAX_VOICE_REFERENCE_BYTES,
    MIN_REFERENCE_S,
)

router = APIRouter(prefix="/v1", tags=["requests"])
Ctx = Annotated[ApiContext, Depends(api_context)]
RequestId = Annotated[
    str, Path(pattern=r"^[0-9a-f]{32}$", description="A request id (32 hex characters).")
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Same key and body: the same request (200). Same key, other body: 409.",
    ),
]


LOCATION = {"Location": {"description": "The request's URL path.", "schema": {"type": "string"}}}


def _text_part(prop: dict[str, Any]) -> dict[str, Any]:
    """A nullable JSON field as a multipart text part (a part is present or absent, never
    null): ``anyOf [X, null]`` becomes ``X``."""
    kept = [p for p in prop.get("anyOf", []) if p.get("type") != "null"]
    if len(kept) != 1:
        return prop
    rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**rest, **kept[0]}


def submission_body() -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of ``POST /v1/requests``: JSON, the
    :class:`~avgen_dagster.api.schemas.SubmitFields` model (``RequestSubmission``); multipart,
    the same fields as text parts plus the ``portrait`` and optional ``voice_reference`` file
    parts."""
    fields = SubmitFields.model_json_schema()
    form = {
        "type": "object",
        "description": (
            "The same fields as text parts; the portrait, and optionally the voice to clone, "
            "as file parts."
        ),
        "properties": {
            **{name: _text_part(prop) for name, prop in fields["properties"].items()},
            "portrait": {
                "type": "string",
                "format": "binary",
                "description": "Photo (PNG/JPEG/WebP) or driving video (MP4/MOV/MKV/WebM).",
            },
            VOICE_REFERENCE: {
                "type": "string",
                "format": "binary",
                "description": (
                    "Optional: a recording of the voice to clone (WAV/FLAC/OGG/MP3, "
                    f"{MIN_REFERENCE_S:g}-{MAX_REFERENCE_S:g} s of speech, not silent, at most "
                    f"{MAX_VOICE_REFERENCE_BYTES / 1e6:.0f} MB). Only where the speech "
                    "backend clones voices (Coqui XTTS); elsewhere refused with 422."
                ),
            },
        },
        "required": ["portrait"],
        "additionalProperties": False,
    }
    return {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": form},
            "application/json": {"schema": {"$ref": "#/components/schemas/RequestSubmission"}},
        },
    }


def doc_response(ctx: ApiContext, request_id: str, status: int) -> JSONResponse:
    """The status document of ``request_id`` with ``Location`` (after a submission)."""
    with ctx.db.session() as s:
        doc = request_doc(ctx, s, get_request(s, request_id))
    return JSONResponse(
        doc.model_dump(mode="json"),
        status_code=status,
        headers={"Location": request_path(request_id)},
    )


@router.post(
    "/requests",
    status_code=202,
    response_model=RequestDoc,
    summary="Submit a request",
    responses={
        202: {"description": "Accepted: queued.", "headers": LOCATION},
        200: {
            "description": "Replayed: this Idempotency-Key and body made this request before.",
            "model": RequestDoc,
            "headers": LOCATION,
        },
        **problem_responses(400, 401, 409, 413, 415, 422, 429, 503),
    },
    openapi_extra={"requestBody": submission_body()},
)
@limiter.limit(submission_limit)
@limiter.limit(every_call_limit)
async def create_request(
    request: Request, caller: CallerDep, ctx: Ctx, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Multipart (``portrait`` and optional ``voice_reference`` file parts + text parts) or
    JSON (reuses the last portrait)."""
    sub = await read_submission(request)
    request_id, created = await submit(ctx, caller.user_id, sub, idempotency_key)
    return await run_in_threadpool(doc_response, ctx, request_id, 202 if created else 200)


@router.get(
    "/requests/{request_id}",
    response_model=RequestDoc,
    summary="A request's status",
    responses=problem_responses(401, 404, 422, 429, 503),
)
@limiter.limit(every_call_limit)
def read_request(
    request: Request, request_id: RequestId, token: TokenDep, ctx: Ctx
) -> JSONResponse:
    """Queued (queue position), Processing (run progress), Completed (signed output URLs and
    their expiry) or Failed (the reason)."""
    with ctx.db.autocommit_session() as s:  # reads, and at most the key's last use
        caller = caller_of(s, token)
        doc = request_doc(ctx, s, owned_request(s, request_id, caller.user_id))
    return JSONResponse(doc.model_dump(mode="json"))


@router.get(
    "/requests",
    response_model=RequestPage,
    summary="The caller's requests, newest first",
    responses=problem_responses(401, 422, 429, 503),
)
@limiter.limit(every_call_limit)
def list_requests(
    request: Request,
    token: TokenDep,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = 20,
    cursor: Annotated[str | None, Query(max_length=512, description="From next_cursor.")] = None,
) -> JSONResponse:
    """Cursor pagination: pass ``next_cursor`` back as ``cursor`` until it is null."""
    with ctx.db.autocommit_session() as s:  # reads, and at most the key's last use
        caller = caller_of(s, token)
        try:
            rows, next_cursor = requests_page(s, caller.user_id, limit=limit, cursor=cursor)
        except InvalidInputError as exc:
            raise ApiProblem(422, str(exc), field="cursor", kind="invalid-input") from exc
        page = RequestPage(items=[summary(r) for r in rows], next_cursor=next_cursor)
    return JSONResponse(page.model_dump(mode="json"))


@router.delete(
    "/requests/{request_id}",
    status_code=204,
    response_class=Response,
    summary="Erase a request",
    responses=problem_responses(401, 404, 422, 429, 503),
)
@limiter.limit(every_call_limit)
def delete_request(
    request: Request, request_id: RequestId, caller: CallerDep, ctx: Ctx
) -> Response:
    """Terminate its queued or running runs, then erase its files and records (logged)."""
    with ctx.db.session() as s:
        owned_request(s, request_id, caller.user_id)
    erase_request(ctx.db, ctx.tree, ctx.instance(), request_id, by="api", wait_s=ctx.erase_wait_s)
    return Response(status_code=204)


@router.post(
    "/requests/{request_id}/retry",
    status_code=202,
    response_model=RequestDoc,
    summary="Retry a Failed request",
    responses={
        202: {"description": "Queued again (same id, next attempt).", "headers": LOCATION},
        **problem_responses(401, 404, 409, 422, 429, 503),
    },
)
@limiter.limit(submission_limit)
@limiter.limit(every_call_limit)
def retry_request(
    request: Request, request_id: RequestId, caller: CallerDep, ctx: Ctx
) -> JSONResponse:
    """Failed → Queued under a new run key, keeping the id, inputs and history; 409 when the
    request is not Failed."""
    with ctx.db.session() as s:
        owned_request(s, request_id, caller.user_id)
        try:
            status.retry(s, request_id, by="api")
        except status.TransitionError as exc:
            raise ApiProblem(409, str(exc), field="request_id", kind="not-failed") from exc
    return doc_response(ctx, request_id, 202)


@router.get(
    "/webhook-secret",
    response_model=WebhookSecret,
    tags=["webhooks"],
    summary="The secret that signs your webhooks",
    responses=problem_responses(401, 429),
)
@limiter.limit(every_call_limit)
def read_webhook_secret(request: Request, caller: CallerDep, ctx: Ctx) -> JSONResponse:
    """Verify ``webhook-signature`` with it (Standard Webhooks; e.g. the standardwebhooks
    library's ``Webhook(secret).verify(body, headers)``)."""
    return JSONResponse({"secret": webhook_secret(caller.user_id, ctx.secret)})
