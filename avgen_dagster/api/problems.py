"""Every error of the HTTP API as RFC 9457 problem details (``application/problem+json``).

A problem is ``{"type", "title", "status", "detail", "instance"}`` (RFC 9457 §3.1) plus one
extension member, ``errors``: the fields at fault, each ``{"field", "detail"}`` — ``field``
is the request field's name as the client sent it (a form or JSON field such as
``target_lufs``, ``portrait``, ``callback_url``; a query parameter such as ``limit``; a header
such as ``Idempotency-Key``; or ``body`` for the body as a whole). ``type`` is a relative URI
reference naming the kind of problem (``/problems/invalid-input`` …), or ``about:blank`` when
the HTTP status says it all (RFC 9457 §4.2.1).

The handlers here turn FastAPI's validation errors, Starlette's HTTP exceptions, intake's
:class:`~avgen_dagster.errors.InvalidInputError`, slowapi's rate-limit error and any
unexpected exception (logged with its traceback; the client gets no internals) into problems.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from slowapi.errors import RateLimitExceeded
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from avgen_dagster.errors import AvgenError, DatabaseUnavailableError, InvalidInputError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("avgen.api")

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class FieldProblem(BaseModel):
    """One field at fault."""

    field: str = Field(description="The request field, query parameter or header at fault.")
    detail: str = Field(description="What is wrong with it.")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(default="about:blank", description="URI reference of the problem type.")
    title: str = Field(description="Short summary of the problem type.")
    status: int = Field(description="The HTTP status code.")
    detail: str | None = Field(default=None, description="This occurrence, in words.")
    instance: str | None = Field(default=None, description="The request path.")
    errors: list[FieldProblem] | None = Field(default=None, description="The fields at fault.")


class ApiProblem(Exception):
    """Raised by handlers to answer with a problem.

    Args:
        status: HTTP status. detail: what happened. field: the field at fault (shorthand for
        one ``errors`` entry). kind: the problem type slug (``/problems/<kind>``).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field: str | None = None,
        errors: list[FieldProblem] | None = None,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or ([FieldProblem(field=field, detail=detail)] if field else None)
        self.kind = kind
        self.headers = headers or {}


def problem_response(
    request: Request,
    status: int,
    detail: str | None,
    *,
    errors: list[FieldProblem] | None = None,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem-details response for ``request``."""
    body = Problem(
        type=f"/problems/{kind}" if kind else "about:blank",
        title=TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_problems(errors: list[dict[str, Any]]) -> list[FieldProblem]:
    """Pydantic/FastAPI validation errors as field problems (``extra_forbidden`` reads
    "unknown field")."""
    found = []
    for err in errors:
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        found.append(FieldProblem(field=_field_of(tuple(err.get("loc", ()))), detail=message))
    return found


def allowed_methods(request: Request) -> set[str]:
    """Every method some route serves at this path (Starlette names only the first route's in
    its 405; RFC 9110 §15.5.6 wants them all in ``Allow``)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return methods


def _summary(errors: list[FieldProblem]) -> str:
    return "; ".join(f"{e.field}: {e.detail}" for e in errors)


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error ``app`` answers a problem (see the module docstring)."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.detail, errors=exc.errors, kind=exc.kind, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_problems(list(exc.errors()))
        return problem_response(request, 422, _summary(errors), errors=errors, kind="invalid-input")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(sorted(allowed_methods(request)))
        return problem_response(request, exc.status_code, detail, headers=headers)

    @app.exception_handler(InvalidInputError)
    async def _invalid(request: Request, exc: InvalidInputError) -> JSONResponse:
        return problem_response(request, 422, str(exc), kind="invalid-input")

    @app.exception_handler(RateLimitExceeded)
    async def _limited(request: Request, exc: RateLimitExceeded) -> JSONResponse:
        item = getattr(exc, "limit", None)
        window = int(item.limit.get_expiry()) if item is not None else 60
        detail = f"rate limit exceeded: {exc.detail}; retry after {window} s"
        headers = {"Retry-After": str(window)}
        return problem_response(request, 429, detail, kind="rate-limited", headers=headers)

    @app.exception_handler(DatabaseUnavailableError)
    async def _unavailable(request: Request, exc: DatabaseUnavailableError) -> JSONResponse:
        log.error("database unavailable: %s", exc)
        return problem_response(request, 503, "the service's database is unavailable; retry")

    @app.exception_handler(AvgenError)
    async def _avgen(request: Request, exc: AvgenError) -> JSONResponse:
        log.error("%s on %s: %s", type(exc).__name__, request.url.path, exc)
        return problem_response(request, 503, f"{type(exc).__name__}: {exc}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(request, 500, "an unexpected error happened; it was logged")
