"""Sign-in: access codes, lockout, signed links; every attempt logged, no code in clear."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select, text

from avgen_dagster.auth import (
    LOCKOUT_WINDOW,
    MAX_FAILURES,
    authenticate,
    authenticate_token,
    issue_login_token,
    register_user,
)
from avgen_dagster.errors import InvalidInputError
from avgen_dagster.store import AppDatabase
from avgen_dagster.store.models import LoginAttempt, utcnow

SECRET = "test-secret"


@pytest.fixture
def db(tmp_path: Path) -> AppDatabase:
    return AppDatabase(f"sqlite:///{tmp_path / 'auth.db'}")


def _attempts(db: AppDatabase) -> list[LoginAttempt]:
    with db.session() as s:
        return list(s.scalars(select(LoginAttempt).order_by(LoginAttempt.id)))


def test_register_and_sign_in_logs_every_attempt(db: AppDatabase) -> None:
    with db.session() as s:
        code = register_user(s, "alice", "Alice@Example.com")
    assert not authenticate(db, "alice", "WRONG-CODE", client_address="10.0.0.9").ok
    ok = authenticate(db, "alice", code.lower(), client_address="10.0.0.9")
    assert ok.ok and ok.user_id == "alice"
    assert not authenticate(db, "nobody", code).ok
    rows = _attempts(db)
    assert [(r.user_id_tried, r.success) for r in rows] == [
        ("alice", False), ("alice", True), ("nobody", False)]  # fmt: skip
    assert rows[0].client_address == "10.0.0.9"
    # The code is nowhere in the database in clear.
    with db.session() as s:
        dump = "\n".join(str(row) for t in ("users", "login_attempts")
                         for row in s.execute(text(f"SELECT * FROM {t}")))  # fmt: skip
    assert code not in dump and "$argon2id$" in dump


def test_bad_registration(db: AppDatabase) -> None:
    with db.session() as s:
        register_user(s, "bob", "bob@example.com")
    with pytest.raises(InvalidInputError, match="taken"), db.session() as s:
        register_user(s, "bob", "other@example.com")
    with pytest.raises(InvalidInputError, match="not valid"), db.session() as s:
        register_user(s, "carol", "not-an-email")
    with pytest.raises(InvalidInputError, match="not allowed"), db.session() as s:
        register_user(s, "../carol", "c@example.com")


def test_lockout_after_repeated_failures_then_release(db: AppDatabase) -> None:
    with db.session() as s:
        code = register_user(s, "dave", "dave@example.com")
    now = utcnow()
    for _ in range(MAX_FAILURES):
        assert not authenticate(db, "dave", "nope-nope", now=now).ok
    locked = authenticate(db, "dave", code, now=now)
    assert not locked.ok and "too many failed attempts" in locked.reason
    later = now + LOCKOUT_WINDOW + timedelta(seconds=1)
    assert authenticate(db, "dave", code, now=later).ok
    assert _attempts(db)[MAX_FAILURES].reason == "locked out"


def test_signed_links(db: AppDatabase) -> None:
    with db.session() as s:
        register_user(s, "erin", "erin@example.com")
    token = issue_login_token("erin", SECRET)
    with db.session() as s:
        assert authenticate_token(s, token, SECRET).user_id == "erin"
        assert not authenticate_token(s, token + "x", SECRET).ok
        assert not authenticate_token(s, token, "another-secret").ok
        expired = authenticate_token(s, token, SECRET, max_age_s=-1)
        assert not expired.ok and "expired" in expired.reason
        forged = URLSafeTimedSerializer("guess", salt="avgen-login-link").dumps({"u": "erin"})
        assert not authenticate_token(s, forged, SECRET).ok
    assert [r.success for r in _attempts(db)] == [True, False, False, False, False]


def test_a_user_without_a_code_cannot_be_claimed_by_registering(db: AppDatabase) -> None:
    """`avgen generate`/`avgen request`/`make demo` make users without an access code: their
    id is taken, never handed to whoever registers it first (account takeover)."""
    from avgen_dagster.store.models import User
    from avgen_dagster.store.requests import ensure_user

    with db.session() as s:
        ensure_user(s, "demo", email="owner@example.com")
    with pytest.raises(InvalidInputError, match="taken"), db.session() as s:
        register_user(s, "demo", "attacker@example.com")
    with db.session() as s:
        user = s.get(User, "demo")
        assert user.email == "owner@example.com" and user.access_code_hash is None


def concurrent_wrong_codes(db: AppDatabase, monkeypatch: pytest.MonkeyPatch, n: int) -> int:
    """``n`` wrong codes for one user at the same instant; return how many codes were checked
    (calls of the Argon2 verification, counted)."""
    import threading

    from avgen_dagster import auth

    checks: list[int] = []
    real = auth.verify_code

    def counted(stored: str | None, code: str) -> bool:
        checks.append(1)
        return real(stored, code)

    monkeypatch.setattr(auth, "verify_code", counted)
    start = threading.Barrier(n)

    def attempt() -> None:
        start.wait()
        assert not authenticate(db, "victim", "WRONG-GUESS-0000").ok

    threads = [threading.Thread(target=attempt) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(checks)


def test_the_lockout_is_atomic_under_concurrency(
    db: AppDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 wrong codes at once: exactly MAX_FAILURES are checked, the rest are locked out."""
    with db.session() as s:
        register_user(s, "victim", "victim@example.com")
    assert concurrent_wrong_codes(db, monkeypatch, 20) == MAX_FAILURES
    reasons = [r.reason for r in _attempts(db)]
    assert reasons.count("wrong user id or access code") == MAX_FAILURES
    assert reasons.count("locked out") == 20 - MAX_FAILURES
