"""The portal's API keys page (AppTest): create (the key shown once), list, revoke; a key made
there works against the API; nobody else's keys are shown."""

from __future__ import annotations

import pytest

from avgen_dagster.store import AppDatabase
from avgen_dagster.store.api_keys import authenticate_key, create_key
from avgen_dagster.store.requests import ensure_user
from tests.api.conftest import SECRET
from tests.conftest import AvgenEnv
from tests.portal.conftest import app_test, rendered

PAGE = "app_pages/api_keys.py"


@pytest.fixture
def portal_env(avgen_env: AvgenEnv, monkeypatch: pytest.MonkeyPatch) -> AppDatabase:
    monkeypatch.setenv("AVGEN_SECRET_KEY", SECRET)
    db = AppDatabase(avgen_env.db_url)
    with db.session() as s:
        ensure_user(s, "pam")
        ensure_user(s, "rob")
        create_key(s, "rob", "rob's own")
    return db


def _codes(at) -> list[str]:  # type: ignore[no-untyped-def]
    return [block.value for block in at.code]


def test_create_shows_the_key_once_then_lists_it(portal_env: AppDatabase) -> None:
    at = app_test("pam")
    at.run()
    at.switch_page(PAGE).run()
    assert "You have no API keys yet." in rendered(at)
    assert "rob's own" not in rendered(at)
    at.text_input[0].input("zapier")
    at.button[0].click().run()
    (key,) = [c for c in _codes(at) if c.startswith("avg_")]
    assert "shown only this once" in rendered(at)
    with portal_env.session() as s:
        assert authenticate_key(s, key).user_id == "pam"
    at.run()  # the next run no longer shows it
    assert not [c for c in _codes(at) if c.startswith("avg_")]
    page = rendered(at)
    assert "zapier" in page and "active" in page and key not in page
    assert any(c.startswith("whsec_") for c in _codes(at))


def test_revoke_stops_the_key(portal_env: AppDatabase) -> None:
    with portal_env.session() as s:
        _, key = create_key(s, "pam", "old")
    at = app_test("pam")
    at.run()
    at.switch_page(PAGE).run()
    revoke = [b for b in at.button if b.label == "Revoke"]
    assert len(revoke) == 1
    revoke[0].click().run()
    assert "revoked" in rendered(at)
    assert not [b for b in at.button if b.label == "Revoke"]
    with portal_env.session() as s:
        assert authenticate_key(s, key) is None
