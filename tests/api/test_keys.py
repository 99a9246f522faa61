"""API keys (store and ``avgen key``): shown once, stored as prefix + SHA-256, last-used time
kept to the minute, revocable; and the callback URL rule (SSRF) on its own."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from avgen_dagster.cli import app
from avgen_dagster.errors import InvalidInputError
from avgen_dagster.notifications.webhook_url import check_callback_url
from avgen_dagster.store import AppDatabase
from avgen_dagster.store.api_keys import (
    authenticate_key,
    create_key,
    list_keys,
    prefix_of,
    revoke_key,
)
from avgen_dagster.store.models import ApiKey, utcnow
from avgen_dagster.store.requests import ensure_user
from tests.conftest import AvgenEnv


def test_a_key_is_stored_hashed_and_checked(avgen_env: AvgenEnv) -> None:
    db = AppDatabase(avgen_env.db_url)
    with db.session() as s:
        ensure_user(s, "ann")
        info, key = create_key(s, "ann", "n8n")
    prefix, secret = key.removeprefix("avg_").split("_", 1)
    assert info.prefix == prefix and len(secret) == 43
    with db.session() as s:
        row = s.query(ApiKey).one()
        assert row.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in (row.prefix, row.name, row.secret_sha256)
        assert authenticate_key(s, key).user_id == "ann"
        for wrong in (key[:-1] + ("A" if key[-1] != "A" else "B"), "", "avg_x_y", prefix):
            assert authenticate_key(s, wrong) is None


def test_last_used_is_kept_to_the_minute(avgen_env: AvgenEnv) -> None:
    db = AppDatabase(avgen_env.db_url)
    with db.session() as s:
        ensure_user(s, "bo")
        _, key = create_key(s, "bo")
    start = utcnow()
    with db.session() as s:
        assert authenticate_key(s, key, now=start).last_used_at == start
    with db.session() as s:  # within the minute: no write
        assert authenticate_key(s, key, now=start + timedelta(seconds=30)).last_used_at == start
    later = start + timedelta(minutes=2)
    with db.session() as s:
        assert authenticate_key(s, key, now=later).last_used_at == later


def test_revoked_keys_stop_working_and_stay_listed(avgen_env: AvgenEnv) -> None:
    db = AppDatabase(avgen_env.db_url)
    with db.session() as s:
        ensure_user(s, "cat")
        ensure_user(s, "dan")
        first, key1 = create_key(s, "cat", "one")
        _, key2 = create_key(s, "cat", "two")
        _, theirs = create_key(s, "dan")
    with db.session() as s, pytest.raises(InvalidInputError, match="no API key"):
        revoke_key(s, prefix_of(theirs), user_id="cat")  # not cat's to revoke
    with db.session() as s:
        revoke_key(s, key1)
    with db.session() as s:
        assert authenticate_key(s, key1) is None and authenticate_key(s, key2) is not None
        listed = list_keys(s, "cat")
    assert [k.name for k in listed] == ["two", "one"] and not listed[1].active
    assert listed[1].prefix == first.prefix


def test_cli_key_create_list_revoke(avgen_env: AvgenEnv) -> None:
    runner = CliRunner()
    with AppDatabase(avgen_env.db_url).session() as s:
        ensure_user(s, "eli")
    made = runner.invoke(app, ["key", "create", "eli", "--name", "ci"])
    assert made.exit_code == 0, made.output
    key = made.output.strip().splitlines()[-1]  # alone on the last line
    assert key.startswith("avg_") and " " not in key
    assert "whsec_" in made.output
    with AppDatabase(avgen_env.db_url).session() as s:
        assert authenticate_key(s, key).user_id == "eli"
    listed = runner.invoke(app, ["key", "list", "eli"])
    assert prefix_of(key) in listed.output and "active" in listed.output
    assert key not in listed.output
    revoked = runner.invoke(app, ["key", "revoke", prefix_of(key)])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert "revoked" in runner.invoke(app, ["key", "list", "eli"]).output
    unknown = runner.invoke(app, ["key", "create", "nobody-here"])
    assert unknown.exit_code == 2 and "no user" in unknown.output


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/h", "loopback"),
        ("http://localhost:8080/h", "loopback"),
        ("http://[::1]/h", "loopback"),
        ("http://10.1.2.3/h", "private"),
        ("http://192.168.0.10/h", "private"),
        ("http://[fd00::1]/h", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fe80::1]/h", "link-local"),
        ("http://[::ffff:10.0.0.1]/h", "private"),
        ("http://0.0.0.0/h", "unspecified"),
        ("http://100.64.0.1/h", "non-public"),
        ("ftp://example.com/h", "http or https"),
        ("http://user:pw@example.com/h", "user name or password"),
        ("http:///h", "no host"),
    ],
)
def test_callback_urls_to_non_public_places_are_refused(url: str, why: str) -> None:
    with pytest.raises(InvalidInputError, match=why) as caught:
        check_callback_url(url)
    assert "callback_url" in str(caught.value)


def test_a_name_that_resolves_privately_is_refused_and_the_allowlist_admits() -> None:
    def resolve(host: str, port: int) -> list[str]:
        return {"hooks.example": ["93.184.215.14"], "sneaky.example": ["93.184.215.14",
                "10.0.0.5"]}[host]  # fmt: skip

    assert check_callback_url("https://hooks.example/x", resolve=resolve)
    with pytest.raises(InvalidInputError, match=r"10\.0\.0\.5, a private"):
        check_callback_url("https://sneaky.example/x", resolve=resolve)
    assert check_callback_url("https://sneaky.example/x", resolve=resolve,
                              allow_hosts=("10.0.0.0/8",))  # fmt: skip
    assert check_callback_url("http://127.0.0.1:9/x", allow_hosts=("127.0.0.1",))
    assert check_callback_url("http://localhost:9/x", allow_hosts=("localhost",))
