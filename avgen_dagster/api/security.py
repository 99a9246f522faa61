"""Who is calling and how often: API-key authentication (RFC 6750 bearer tokens) and rate
limits per key (slowapi, on the ``limits`` library).

* ``Authorization: Bearer avg_<prefix>_<secret>``; a missing header answers 401 with
  ``WWW-Authenticate: Bearer``, a wrong, malformed or revoked key 401 with
  ``error="invalid_token"`` (RFC 6750 §3). The key's user is the only user whose requests the
  caller sees.
* Limits are counted per key (per client address before a key is known), in the storage
  ``AVGEN_API_RATE_LIMIT_STORAGE`` names (process memory by default: one process, one count;
  use Redis for several workers). ``AVGEN_API_RATE_LIMIT`` applies to every call,
  ``AVGEN_API_SUBMIT_RATE_LIMIT`` to submissions on top; over a limit → 429 with
  ``Retry-After``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from slowapi import Limiter
from slowapi.util import get_remote_address
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from avgen_dagster.api.context import ApiContext, api_context
from avgen_dagster.api.problems import ApiProblem
from avgen_dagster.settings import get_settings
from avgen_dagster.store.api_keys import authenticate_key

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An avgen API key: `Authorization: Bearer avg_…` (avgen key create USER_ID).",
)


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: the key's user and the key's (public) prefix."""

    user_id: str
    key_prefix: str


def rate_limit_key(request: Request) -> str:
    """The rate-limit bucket: the bearer key's prefix, else the client's address."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    parts = token.strip().split("_")
    if scheme.lower() == "bearer" and len(parts) >= 3 and parts[0] == "avg":
        return f"key:{parts[1][:16]}"
    return f"ip:{get_remote_address(request)}"


class _Limits:
    """The limit strings in force (set from the settings when an app is created)."""

    every_call = "600/minute"
    submissions = "60/minute"


LIMITS = _Limits()
limiter = Limiter(
    key_func=rate_limit_key,
    storage_uri=get_settings().api_rate_limit_storage,
    headers_enabled=False,
)


def every_call_limit() -> str:
    """The per-key limit of every call (``AVGEN_API_RATE_LIMIT``)."""
    return LIMITS.every_call


def submission_limit() -> str:
    """The per-key limit of submissions (``AVGEN_API_SUBMIT_RATE_LIMIT``)."""
    return LIMITS.submissions


def _unauthorized(detail: str, error: str | None) -> ApiProblem:
    challenge = 'Bearer realm="avgen"' + (f', error="{error}"' if error else "")
    return ApiProblem(
        401, detail, field="Authorization", kind="unauthorized",
        headers={"WWW-Authenticate": challenge},
    )  # fmt: skip


async def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The bearer token of the call, not yet checked against the database.

    Raises:
        ApiProblem: 401 when there is no ``Authorization: Bearer`` header.
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("an API key is required: Authorization: Bearer avg_…", None)
    return credentials.credentials


def caller_of(session: Session, token: str) -> Caller:
    """The caller behind ``token``, checked in ``session`` (refreshes the key's last use).

    Raises:
        ApiProblem: 401 when the key is malformed, unknown, wrong or revoked.
    """
    info = authenticate_key(session, token)
    if info is None:
        raise _unauthorized("the API key is not valid (unknown, wrong or revoked)", "invalid_token")
    return Caller(info.user_id, info.prefix)


async def current_caller(
    token: Annotated[str, Depends(bearer_token)],
    ctx: Annotated[ApiContext, Depends(api_context)],
) -> Caller:
    """The caller behind the bearer key (its own short session).

    Raises:
        ApiProblem: 401 when the key is missing, malformed, unknown, wrong or revoked.
    """

    def check() -> Caller:
        with ctx.db.autocommit_session() as s:  # a read, and at most one UPDATE of last use
            return caller_of(s, token)

    return await run_in_threadpool(check)


CallerDep = Annotated[Caller, Depends(current_caller)]
TokenDep = Annotated[str, Depends(bearer_token)]
"""For the hot read paths, which check the key in their own session (one session, one thread
hop per call instead of two): ``caller_of(session, token)`` first thing in the handler."""
