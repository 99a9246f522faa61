"""API keys of the HTTP API: created (shown once), checked, listed, revoked.

A key reads ``avg_<prefix>_<secret>``: ``prefix`` is 12 random lowercase base-32 characters
(60 bits), stored as is to find the row in one indexed lookup and shown in listings;
``secret`` is 32 random bytes (``secrets.token_urlsafe``, 256 bits). Only the SHA-256 of the
secret is stored and compared in constant time (``hmac.compare_digest``). A slow password hash
(Argon2) protects guessable secrets; a 256-bit random secret cannot be guessed, and a fast hash
keeps each API call's check under a millisecond (the practice of GitHub's and Stripe's tokens;
OWASP's Secrets Management Cheat Sheet). ``last_used_at`` is refreshed at most once a minute
so polling clients do not turn every read into a write. Pure SQLAlchemy; no Dagster.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.store.models import ApiKey, User, utcnow
from avgen_dagster.validation import validate_user_id

KEY_PREFIX = "avg_"
PREFIX_CHARS = 12
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base 32, lower case
_KEY_PATTERN = re.compile(r"^avg_([a-z2-7]{12})_([A-Za-z0-9_-]{43})$")
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_NAME_CHARS = 100


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed (never its secret): prefix, owner, label and times (aware UTC)."""

    prefix: str
    user_id: str
    name: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        row.prefix, row.user_id, row.name, row.created_at, row.last_used_at, row.revoked_at
    )


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def create_key(session: Session, user_id: str, name: str | None = None) -> tuple[KeyInfo, str]:
    """A new key for the existing user ``user_id``: its listing and the key itself (shown
    once; only its hash is stored).

    Raises:
        InvalidInputError: a malformed or unknown user id, or a name over 100 characters.
    """
    validate_user_id(user_id)
    if session.get(User, user_id) is None:
        raise InvalidInputError(f"no user {user_id!r}; create it first (avgen user create)")
    if name is not None and len(name) > MAX_NAME_CHARS:
        raise InvalidInputError(f"key name is {len(name)} characters; the limit is 100")
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_CHARS))
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        user_id=user_id,
        prefix=prefix,
        secret_sha256=_sha256(secret),
        name=(name or "").strip() or None,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return _info(row), f"{KEY_PREFIX}{prefix}_{secret}"


# Built once (every API call runs it); each call binds its prefix.
_BY_PREFIX = select(ApiKey).where(ApiKey.prefix == bindparam("prefix"))


def authenticate_key(session: Session, key: str, now: datetime | None = None) -> KeyInfo | None:
    """The active key ``key`` names, or None (malformed, unknown, wrong secret or revoked).

    Refreshes ``last_used_at`` when it is older than :data:`LAST_USED_RESOLUTION`.
    """
    match = _KEY_PATTERN.match(key or "")
    if match is None:
        return None
    prefix, secret = match.groups()
    row = session.scalars(_BY_PREFIX, {"prefix": prefix}).first()
    if row is None or not hmac.compare_digest(row.secret_sha256, _sha256(secret)):
        return None
    if row.revoked_at is not None:
        return None
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
    return _info(row)


def list_keys(session: Session, user_id: str) -> list[KeyInfo]:
    """The user's keys, newest first, revoked ones included."""
    stmt = (
        select(ApiKey)
        .where(ApiKey.user_id == user_id)
        .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    )
    return [_info(row) for row in session.scalars(stmt)]


def prefix_of(key_or_prefix: str) -> str:
    """The lookup prefix in a whole key (``avg_<prefix>_…``) or a bare prefix.

    Raises:
        InvalidInputError: neither.
    """
    text = key_or_prefix.strip()
    if match := _KEY_PATTERN.match(text):
        return match.group(1)
    if text.startswith(KEY_PREFIX):
        text = text[len(KEY_PREFIX) :].rstrip("_")
    if len(text) == PREFIX_CHARS and all(c in _PREFIX_ALPHABET for c in text):
        return text
    raise InvalidInputError(
        f"{key_or_prefix[:20]!r} is not an API key or key prefix (12 characters of a-z, 2-7)"
    )


def revoke_key(session: Session, key_or_prefix: str, *, user_id: str | None = None) -> KeyInfo:
    """Revoke a key (by the whole key or its prefix); revoking twice keeps the first time.

    Args:
        user_id: when given, only that user's key may be revoked (the portal's page).

    Raises:
        InvalidInputError: malformed, or no such key (of that user).
    """
    prefix = prefix_of(key_or_prefix)
    row = session.scalars(_BY_PREFIX, {"prefix": prefix}).first()
    if row is None or (user_id is not None and row.user_id != user_id):
        raise InvalidInputError(f"no API key with prefix {prefix!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    session.flush()
    return _info(row)
