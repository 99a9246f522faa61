"""A request as the API shows it: the honest status document, and the OpenAPI response tables.

Queued → its place in the queue; Processing → the run's id, status, current step and fraction
of steps done (:mod:`.progress`); Completed → every deliverable as a signed media URL and when
they expire (:mod:`.links`); Failed → the reason. A key sees its own user's requests only:
another user's request answers exactly like one that does not exist (404).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from avgen_dagster.api.context import ApiContext
from avgen_dagster.api.links import request_path, signed_outputs
from avgen_dagster.api.problems import PROBLEM_JSON, ApiProblem
from avgen_dagster.api.progress import run_progress
from avgen_dagster.api.schemas import Links, OutputLinks, RequestDoc, RequestSummary, RunProgress
from avgen_dagster.store.listing import queue_position
from avgen_dagster.store.models import GenerationRequest, RequestStatus
from avgen_dagster.store.requests import outputs_of

log = logging.getLogger("avgen.api")
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_DESCRIPTIONS = {
    400: "Malformed body (JSON or multipart).",
    401: "No API key, or not a valid one.",
    404: "No such request for this key's user.",
    409: "Conflict: an Idempotency-Key reused with another body or still in progress; a retry "
    "of a request that is not Failed.",
    413: "Body over the size limit.",
    415: "Neither multipart/form-data nor application/json.",
    422: "A field is not acceptable (the problem names it).",
    429: "Over the rate limit (see Retry-After).",
    503: "The database or the content store is unavailable.",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for ``codes``, each an RFC 9457 problem."""
    content = {PROBLEM_JSON: {"schema": PROBLEM_REF}}
    return {code: {"description": _DESCRIPTIONS[code], "content": content} for code in codes}


def owned_request(session: Session, request_id: str, user_id: str) -> GenerationRequest:
    """The caller's request ``request_id``.

    Raises:
        ApiProblem: 404 when it does not exist or belongs to another user (the same answer,
            so ids of other users' requests cannot be probed).
    """
    req = session.get(GenerationRequest, request_id)
    if req is None or req.user_id != user_id:
        raise ApiProblem(404, f"no request {request_id}", field="request_id", kind="not-found")
    return req


def _progress(ctx: ApiContext, run_id: str | None) -> RunProgress | None:
    if not run_id:
        return None
    try:
        return run_progress(ctx.instance(), run_id)
    except Exception:  # Dagster's storage unreachable: report the status without progress
        log.exception("progress of run %s could not be read", run_id)
        return None


def request_doc(ctx: ApiContext, session: Session, req: GenerationRequest) -> RequestDoc:
    """The status document of ``req`` (see the module docstring)."""
    doc = RequestDoc(
        request_id=req.request_id,
        status=req.status,  # type: ignore[arg-type]
        created_at=req.created_at,
        attempt=req.attempt,
        links=Links(self=request_path(req.request_id)),
    )
    if req.status == RequestStatus.QUEUED.value:
        doc.queue_position = queue_position(session, req)
    elif req.status == RequestStatus.PROCESSING.value:
        doc.run = _progress(ctx, req.run_id)
    elif req.status == RequestStatus.COMPLETED.value:
        links, expires = signed_outputs(
            ctx.tree, req.user_id, req.request_id, outputs_of(req),
            media_base_url=ctx.public_url, secret=ctx.secret,
        )  # fmt: skip
        doc.outputs = OutputLinks(**links)
        doc.outputs_expire_at = expires
    else:
        doc.error = req.error
    return doc


def summary(req: GenerationRequest) -> RequestSummary:
    """One line of a listing."""
    return RequestSummary(
        request_id=req.request_id,
        status=req.status,  # type: ignore[arg-type]
        created_at=req.created_at,
        attempt=req.attempt,
        error=req.error,
        links=Links(self=request_path(req.request_id)),
    )
