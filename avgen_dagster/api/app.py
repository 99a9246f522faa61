"""The one HTTP service: ``/v1/…`` (FastAPI) and the signed media URLs, in one ASGI app.

``create_api_app()`` builds it from the environment (``avgen serve-api``, ``make serve``):
the API routes, then the media server's routes as they are (``/media/<token>/<path>``,
``/healthz``; :func:`avgen_dagster.media_server.create_app`). An unknown path answers 404 and
an unsupported method 405 (with ``Allow``), both as problems. OpenAPI 3.1 at
``/openapi.json``, interactive docs at ``/docs``.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware

from avgen_dagster.api.context import ApiContext
from avgen_dagster.api.limits import MAX_FORM_BYTES, BodySizeLimit, BodyTooLarge
from avgen_dagster.api.problems import FieldProblem, Problem, install_problem_handlers
from avgen_dagster.api.problems import problem_response as _problem
from avgen_dagster.api.schemas import SubmitFields
from avgen_dagster.api.security import LIMITS, limiter
from avgen_dagster.media_server import create_app as create_media_app
from avgen_dagster.settings import Settings, get_settings, secret_key
from avgen_dagster.store.content import ContentTree
from avgen_dagster.store.session import AppDatabase

DESCRIPTION = """avgen turns a prompt or a script and a portrait into a narrated, lip-synced
talking-head video, images, music, clips and a music video.

Authenticate with `Authorization: Bearer avg_…` (`avgen key create USER_ID`, or the portal's
API keys page). Every error is an RFC 9457 problem (`application/problem+json`) naming the
field at fault. Webhooks (`callback_url`) are signed per Standard Webhooks; the secret is at
`GET /v1/webhook-secret`."""


def _version() -> str:
    try:
        return importlib.metadata.version("avgen")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def custom_openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI 3.1 document, with the shared schemas (problem details, the submission
    fields) that the hand-written request bodies and problem responses refer to."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, FieldProblem, SubmitFields):
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(found.pop("$defs", {}))
        components[found.get("title", model.__name__)] = found
    app.openapi_schema = schema
    return schema


def create_api_app(
    settings: Settings | None = None,
    *,
    db: AppDatabase | None = None,
    tree: ContentTree | None = None,
    secret: str | None = None,
    max_form_bytes: int = MAX_FORM_BYTES,
    erase_wait_s: float = 30.0,
    max_wait_s: float = 600.0,
) -> FastAPI:
    """The API + media app (defaults from the environment, see :mod:`avgen_dagster.settings`).

    Raises:
        DatabaseUnavailableError: the app database cannot be reached (at start).
    """
    from avgen_dagster.api import music, routes

    settings = settings or get_settings()
    ctx = ApiContext(
        settings=settings,
        db=db or settings.database(),
        tree=tree or settings.content_tree(),
        secret=secret or secret_key(settings),
        public_url=settings.media_url.rstrip("/"),
        erase_wait_s=erase_wait_s,
        max_wait_s=max_wait_s,
    )
    LIMITS.every_call = settings.api_rate_limit
    LIMITS.submissions = settings.api_submit_rate_limit
    app = FastAPI(
        title="avgen API", version=_version(), description=DESCRIPTION,
        openapi_url="/openapi.json", docs_url="/docs", redoc_url=None,
    )  # fmt: skip
    app.state.avgen = ctx
    app.state.limiter = limiter
    install_problem_handlers(app)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        detail = str(exc)
        errors = [FieldProblem(field=exc.field, detail=detail)]
        return _problem(request, 413, detail, errors=errors, kind="too-large")

    app.include_router(routes.router)
    app.include_router(music.router)

    # The media server's routes as they are (/media/<token>/<path>, /healthz), with its CORS
    # policy (any origin may GET: web players fetch playlists and segments cross-origin).
    app.router.routes.extend(create_media_app(ctx.tree, ctx.secret).routes)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET"])
    app.add_middleware(BodySizeLimit, max_form_bytes=max_form_bytes)
    app.openapi = lambda: custom_openapi(app)  # type: ignore[method-assign]
    return app


def create_served_app(settings: Settings | None = None) -> FastAPI:
    """:func:`create_api_app` for a long-running server process (``avgen serve-api``; the
    uvicorn factory of each worker).

    After the app is built, every object that exists (Dagster, SQLAlchemy, FastAPI and their
    imports: ~200,000 objects) is moved out of the cyclic garbage collector's reach
    (``gc.freeze()``, Python docs "gc — Garbage Collector interface"): they live as long as the
    process, and a full collection that scans them pauses every call in flight for ~60 ms
    (measured here), the tail of the status latency.
    """
    import gc

    app = create_api_app(settings)
    gc.collect()
    gc.freeze()
    return app
