"""``POST /v1/music-videos``: the seed's ``/generate_content``, through the one intake.

The seed's body ``{genre, duration, video_prompt}`` becomes a request of the generation job:
``video_prompt`` is the prompt (the narration and the images follow it), ``genre`` and
``duration`` the options ``genre`` and ``music_duration_s`` (the music video is as long as its
music). A request needs a face for its talking head: the user's last face source is reused,
as by a JSON ``POST /v1/requests``; with none on file the answer is 422 naming ``portrait``.

``?wait=<seconds>`` (at most :data:`MAX_WAIT_S`, and at most the server's own cap
``ApiContext.max_wait_s``) holds the answer until the request is done:
Completed in time → 200 with the music video MP4 itself (``Location`` names the request);
still running, or Failed → 202 with the status document, as without ``wait``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from avgen_dagster.api.documents import problem_responses
from avgen_dagster.api.links import request_path
from avgen_dagster.api.routes import LOCATION, Ctx, doc_response
from avgen_dagster.api.schemas import MusicVideoBody, RequestDoc, SubmitFields
from avgen_dagster.api.security import CallerDep, every_call_limit, limiter, submission_limit
from avgen_dagster.api.submit import Submission, submit
from avgen_dagster.store.models import RequestStatus
from avgen_dagster.store.requests import get_request, outputs_of

router = APIRouter(prefix="/v1", tags=["music videos"])
MAX_WAIT_S = 600.0
POLL_S = 0.5
_DONE = (RequestStatus.COMPLETED.value, RequestStatus.FAILED.value)


def as_submission(body: MusicVideoBody) -> Submission:
    """The seed's body as a request submission (see the module docstring)."""
    fields = SubmitFields(
        prompt=body.video_prompt,
        genre=body.genre,
        music_duration_s=body.duration,
        callback_url=body.callback_url,
    )
    return Submission(fields, None, "")


async def _wait_until_done(ctx: Ctx, request_id: str, wait_s: float) -> str | None:
    """The music video's URI if the request is Completed within ``wait_s``; else None."""

    def state() -> tuple[str, str | None]:
        with ctx.db.session() as s:
            req = get_request(s, request_id)
            return req.status, outputs_of(req).music_video

    deadline = time.monotonic() + wait_s
    while True:
        status, video = await run_in_threadpool(state)
        if status in _DONE:
            return video if status == RequestStatus.COMPLETED.value else None
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(min(POLL_S, max(deadline - time.monotonic(), 0.0)))


@router.post(
    "/music-videos",
    status_code=202,
    response_model=RequestDoc,
    summary="Make a music video (the seed's /generate_content)",
    responses={
        202: {"description": "Accepted (or not done within wait).", "headers": LOCATION},
        200: {
            "description": "Done within wait: the music video.",
            "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
            "headers": LOCATION,
        },
        **problem_responses(400, 401, 413, 422, 429, 503),
    },
)
@limiter.limit(submission_limit)
@limiter.limit(every_call_limit)
async def create_music_video(
    request: Request,
    body: MusicVideoBody,
    caller: CallerDep,
    ctx: Ctx,
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait for the MP4.")
    ] = 0.0,
) -> Response:
    """Queue the music video; with ``wait``, answer with the MP4 when it is ready in time."""
    request_id, _ = await submit(ctx, caller.user_id, as_submission(body), None)
    wait = min(wait, ctx.max_wait_s)
    if wait > 0 and (video := await _wait_until_done(ctx, request_id, wait)):
        path = await run_in_threadpool(ctx.tree.local_file, video)
        return FileResponse(
            path,
            media_type="video/mp4",
            filename=f"music_video_{request_id}.mp4",
            headers={"Location": request_path(request_id)},
        )
    response: JSONResponse = await run_in_threadpool(doc_response, ctx, request_id, 202)
    return response
