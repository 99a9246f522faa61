"""Portal sign-in, sign-out, sign-in links and registration through the real pages (AppTest)."""

from __future__ import annotations

import time
from unittest import mock

from sqlalchemy import select

from avgen_dagster.auth import MAX_FAILURES, authenticate, issue_login_token, set_access_code
from avgen_dagster.store.models import LoginAttempt, User
from avgen_dagster.store.session import AppDatabase
from tests.portal.conftest import DEMO_CODE, SECRET, PortalWorld, app_test

USER_KEY = "avgen_user_id"


def _attempts(world: PortalWorld, user_id: str) -> list[LoginAttempt]:
    with AppDatabase(world.db_url).session() as s:
        stmt = (
            select(LoginAttempt)
            .where(LoginAttempt.user_id_tried == user_id)
            .order_by(LoginAttempt.id)
        )
        return list(s.scalars(stmt))


def _sign_in(user_id: str, code: str):  # type: ignore[no-untyped-def]
    at = app_test()
    at.run()
    assert [t.value for t in at.title] == ["Sign in"]
    at.text_input[0].input(user_id)
    at.text_input[1].input(code)
    at.button[0].click()
    at.run()
    assert not at.exception
    return at


def _all_login_rows(world: PortalWorld) -> str:
    with AppDatabase(world.db_url).session() as s:
        return "\n".join(
            f"{r.user_id_tried}|{r.success}|{r.method}|{r.reason}|{r.client_address}"
            for r in s.scalars(select(LoginAttempt))
        )


def test_good_and_bad_sign_in_are_logged_without_the_code(world: PortalWorld) -> None:
    before = len(_attempts(world, "demo"))
    at = _sign_in("demo", "WRONG-CODE-0000")
    assert USER_KEY not in at.session_state
    assert [e.value for e in at.error] == ["Sign-in failed: wrong user id or access code."]
    assert [t.value for t in at.title] == ["Sign in"]

    at = _sign_in("demo", DEMO_CODE.lower())  # codes are case-insensitive
    assert at.session_state[USER_KEY] == "demo"
    assert [t.value for t in at.title] == ["Your gallery"]
    assert "Signed in as demo." in [s.value for s in at.success]

    rows = _attempts(world, "demo")[before:]
    assert [(r.success, r.method, r.reason) for r in rows] == [
        (False, "code", "wrong user id or access code"),
        (True, "code", "signed in"),
    ]
    logged = _all_login_rows(world).upper()
    assert DEMO_CODE not in logged and "WRONG-CODE-0000" not in logged


def test_sign_out_forgets_the_user(world: PortalWorld) -> None:
    at = app_test("demo")
    at.run()
    assert [t.value for t in at.title] == ["Your gallery"]
    at.switch_page("app_pages/sign_out.py").run()
    assert not at.exception
    assert USER_KEY not in at.session_state
    assert [t.value for t in at.title] == ["Sign in"]
    assert "You are signed out." in [i.value for i in at.info]


def test_lockout_after_repeated_failures(world: PortalWorld) -> None:
    with AppDatabase(world.db_url).session() as s:
        code = set_access_code(s, "locked_user")
    for _ in range(MAX_FAILURES):
        at = _sign_in("locked_user", "WRONG-WRONG-WRONG")
        assert "wrong user id or access code" in at.error[0].value
    at = _sign_in("locked_user", code)  # the right code, but too late
    assert USER_KEY not in at.session_state
    assert "too many failed attempts" in at.error[0].value
    rows = _attempts(world, "locked_user")
    assert [r.success for r in rows] == [False] * (MAX_FAILURES + 1)
    assert rows[-1].reason == "locked out"


def test_sign_in_link_signs_in_and_leaves_the_address_bar(world: PortalWorld) -> None:
    at = app_test()
    at.query_params["token"] = issue_login_token("bob", SECRET)
    at.run()
    assert not at.exception
    assert at.session_state[USER_KEY] == "bob"
    assert "token" not in at.query_params
    assert [t.value for t in at.title] == ["Your gallery"]
    last = _attempts(world, "bob")[-1]
    assert (last.success, last.method) == (True, "link")


def test_expired_and_invalid_links_are_refused_and_logged(world: PortalWorld) -> None:
    eight_days_ago = time.time() - 8 * 24 * 3600
    with mock.patch("itsdangerous.timed.time.time", return_value=eight_days_ago):
        old = issue_login_token("bob", SECRET)
    at = app_test()
    at.query_params["token"] = old
    at.run()
    assert USER_KEY not in at.session_state
    assert "token" not in at.query_params
    assert [e.value for e in at.error] == ["this sign-in link has expired; sign in with your code"]
    assert _attempts(world, "bob")[-1].reason == "link expired"

    forged = issue_login_token("bob", "some-other-secret")
    at = app_test()
    at.query_params["token"] = forged
    at.run()
    assert USER_KEY not in at.session_state
    assert [e.value for e in at.error] == ["this sign-in link is not valid"]
    assert [t.value for t in at.title] == ["Sign in"]


def test_registration_shows_the_code_once_and_it_works(world: PortalWorld) -> None:
    at = app_test()
    at.run()
    at.switch_page("app_pages/register.py").run()
    assert [t.value for t in at.title] == ["Register"]
    at.text_input[0].input("newbie")
    at.text_input[1].input("Newbie@Example.com")
    at.button[0].click()
    at.run()
    assert not at.exception
    code = at.code[0].value
    assert len(code) >= 16
    assert "shown only this once" in at.warning[0].value
    with AppDatabase(world.db_url).session() as s:
        user = s.get(User, "newbie")
        assert user is not None and user.email == "Newbie@example.com"
        assert user.access_code_hash and code not in user.access_code_hash
    assert authenticate(AppDatabase(world.db_url), "newbie", code).ok

    # The same user id cannot be registered twice.
    at = app_test()
    at.run()
    at.switch_page("app_pages/register.py").run()
    at.text_input[0].input("newbie")
    at.text_input[1].input("other@example.com")
    at.button[0].click()
    at.run()
    assert "is taken" in at.error[0].value
    assert not at.code


def test_registering_a_user_made_without_a_code_is_refused(world: PortalWorld) -> None:
    """Account takeover: `demo` exists (made by the CLI); registering its id in the portal must
    not hand out a code, nor touch its email or code hash."""
    with AppDatabase(world.db_url).session() as s:
        from avgen_dagster.store.requests import ensure_user

        ensure_user(s, "cli_made", email="owner@example.com")
    at = app_test()
    at.run()
    at.switch_page("app_pages/register.py").run()
    at.text_input[0].input("cli_made")
    at.text_input[1].input("attacker@example.com")
    at.button[0].click()
    at.run()
    assert not at.exception and not at.code
    assert "is taken" in at.error[0].value
    with AppDatabase(world.db_url).session() as s:
        user = s.get(User, "cli_made")
        assert user.email == "owner@example.com" and user.access_code_hash is None
    # Nor can the demo user of the shared world (with a code) be registered again.
    at = app_test()
    at.run()
    at.switch_page("app_pages/register.py").run()
    at.text_input[0].input("demo")
    at.text_input[1].input("attacker@example.com")
    at.button[0].click()
    at.run()
    assert "is taken" in at.error[0].value and not at.code
