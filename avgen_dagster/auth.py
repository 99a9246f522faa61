"""Sign-in: access codes (Argon2id), signed expiring links (itsdangerous), lockout, logging.

Every attempt, good or bad, is written to ``login_attempts`` with the user id as typed (cut to
128 characters), the method, the reason and the client address; the access code never is.
After :data:`MAX_FAILURES` failures for one user id within :data:`LOCKOUT_WINDOW` since its
last success, further attempts are refused until the window has passed (OWASP Authentication
Cheat Sheet, "Account lockout").
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.store.models import LoginAttempt, User, utcnow
from avgen_dagster.store.requests import ensure_user
from avgen_dagster.store.session import AppDatabase
from avgen_dagster.validation import validate_user_id

MAX_FAILURES = 5
LOCKOUT_WINDOW = timedelta(minutes=15)
LINK_MAX_AGE_S = 7 * 24 * 3600  # a notification's sign-in link works for a week
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: easy to read aloud
_HASHER = PasswordHasher()  # Argon2id, RFC 9106 recommended parameters (argon2-cffi defaults)
_DUMMY_HASH = _HASHER.hash("avgen-dummy-code")  # equal work for unknown users
_TOKEN_SALT = "avgen-login-link"


@dataclass(frozen=True)
class AuthResult:
    """Outcome of a sign-in attempt: ``ok``, the user id when ok, and a user-facing reason."""

    ok: bool
    user_id: str | None
    reason: str


def generate_access_code(groups: int = 4, group_len: int = 4) -> str:
    """A random access code like ``K7QM-2XRP-…`` (``secrets``; 16 symbols ≈ 79 bits)."""
    return "-".join(
        "".join(secrets.choice(CODE_ALPHABET) for _ in range(group_len)) for _ in range(groups)
    )


def _normalise_code(code: str) -> str:
    return code.strip().upper()


def normalise_email(email: str) -> str:
    """The normalised form of ``email``.

    Raises:
        InvalidInputError: naming the address and what is wrong with it.
    """
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInputError(f"email address {email!r} is not valid: {exc}") from exc


def set_access_code(session: Session, user_id: str, code: str | None = None) -> str:
    """Give ``user_id`` (created if new) a new access code; return it (shown once, never stored)."""
    user = ensure_user(session, user_id)
    code = _normalise_code(code) if code else generate_access_code()
    if len(code) < 8:
        raise InvalidInputError("an access code needs at least 8 characters")
    user.access_code_hash = _HASHER.hash(code)
    return code


def register_user(session: Session, user_id: str, email: str) -> str:
    """Register a new user with ``email``; return their new access code.

    Only an id nobody holds can be registered: a user that exists without an access code (made
    by ``avgen generate``/``avgen request`` or ``make demo``) is claimed by an operator
    (``avgen user create``, ``avgen user link``), never by whoever registers its id first.

    Raises:
        InvalidInputError: bad user id or email, or the user id exists.
    """
    validate_user_id(user_id)
    email = normalise_email(email)
    if session.get(User, user_id) is not None:
        raise InvalidInputError(
            f"user id {user_id!r} is taken; choose another (if it is yours, sign in with your "
            "access code or the sign-in link you were sent)"
        )
    ensure_user(session, user_id, email=email)
    return set_access_code(session, user_id)


def _log(
    session: Session, tried: str, ok: bool, method: str, reason: str, client: str | None
) -> None:
    session.add(
        LoginAttempt(
            user_id_tried=tried[:128],
            success=ok,
            method=method,
            reason=reason[:200],
            client_address=(client or None) and client[:64],
            created_at=utcnow(),
        )
    )
    session.flush()


def _locked_until(session: Session, user_id: str, now: datetime) -> datetime | None:
    last_ok = session.scalar(
        select(func.max(LoginAttempt.created_at)).where(
            LoginAttempt.user_id_tried == user_id, LoginAttempt.success.is_(True)
        )
    )
    since = now - LOCKOUT_WINDOW
    if last_ok is not None and last_ok > since:
        since = last_ok
    failures = session.scalars(
        select(LoginAttempt.created_at)
        .where(
            LoginAttempt.user_id_tried == user_id,
            LoginAttempt.success.is_(False),
            LoginAttempt.created_at > since,
        )
        .order_by(LoginAttempt.created_at.desc())
        .limit(MAX_FAILURES)
    ).all()
    if len(failures) < MAX_FAILURES:
        return None
    return failures[-1] + LOCKOUT_WINDOW


def authenticate(
    db: AppDatabase,
    user_id: str,
    code: str,
    *,
    client_address: str | None = None,
    now: datetime | None = None,
) -> AuthResult:
    """Check ``user_id`` + access ``code``; log the attempt; apply the lockout — atomically.

    Reading the failure count, checking the code and logging the attempt happen in one
    transaction that holds a lock on the user id as typed
    (:meth:`~avgen_dagster.store.session.AppDatabase.locked_session`), so however many
    attempts arrive at once, at most :data:`MAX_FAILURES` codes are ever checked per window.

    Returns an :class:`AuthResult`; never raises for a wrong user id or code (the reason says
    "wrong user id or access code" for both, so the reply does not reveal which users exist).
    """
    tried = (user_id or "").strip()
    with db.locked_session(f"sign-in:{tried[:128]}") as session:
        now = now or utcnow()
        locked = _locked_until(session, tried, now)
        if locked is not None and locked > now:
            minutes = max(1, int((locked - now).total_seconds() // 60) + 1)
            _log(session, tried, False, "code", "locked out", client_address)
            return AuthResult(
                False, None, f"too many failed attempts; try again in {minutes} minutes"
            )
        user = session.get(User, tried) if tried else None
        stored = user.access_code_hash if user is not None else None
        ok = verify_code(stored, code) and stored is not None
        if not ok:
            _log(session, tried, False, "code", "wrong user id or access code", client_address)
            return AuthResult(False, None, "wrong user id or access code")
        _log(session, tried, True, "code", "signed in", client_address)
        return AuthResult(True, tried, "signed in")


def verify_code(stored_hash: str | None, code: str) -> bool:
    """Whether ``code`` matches ``stored_hash`` (Argon2id). With no stored hash a dummy hash is
    checked instead, so an unknown user id costs the same time as a known one."""
    try:
        _HASHER.verify(stored_hash or _DUMMY_HASH, _normalise_code(code or ""))
    except (VerificationError, InvalidHashError):
        return False
    return True


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=_TOKEN_SALT)


def issue_login_token(user_id: str, secret: str) -> str:
    """A signed, timestamped token that signs ``user_id`` in (itsdangerous, HMAC-SHA1 default)."""
    return _serializer(secret).dumps({"u": validate_user_id(user_id)})


def authenticate_token(
    session: Session,
    token: str,
    secret: str,
    *,
    max_age_s: int = LINK_MAX_AGE_S,
    client_address: str | None = None,
) -> AuthResult:
    """Check a sign-in link's token; log the attempt (as the user id it names, if readable)."""
    serializer = _serializer(secret)
    try:
        payload = serializer.loads(token, max_age=max_age_s)
        user_id = str(payload["u"])
    except SignatureExpired:
        _log(session, _unverified_user(serializer, token), False, "link", "link expired",
             client_address)  # fmt: skip
        return AuthResult(False, None, "this sign-in link has expired; sign in with your code")
    except (BadSignature, KeyError, TypeError):
        _log(session, "?", False, "link", "invalid link", client_address)
        return AuthResult(False, None, "this sign-in link is not valid")
    if session.get(User, user_id) is None:
        _log(session, user_id, False, "link", "unknown user", client_address)
        return AuthResult(False, None, "this sign-in link is not valid")
    _log(session, user_id, True, "link", "signed in", client_address)
    return AuthResult(True, user_id, "signed in")


def _unverified_user(serializer: URLSafeTimedSerializer, token: str) -> str:
    try:
        _, payload = serializer.loads_unsafe(token)
        return str(payload.get("u", "?")) if isinstance(payload, dict) else "?"
    except Exception:
        return "?"
