"""The bad-input list: each a 4xx RFC 9457 problem naming the field, never a 500; nothing
recorded for a refused submission."""

from __future__ import annotations

import json
import socket

import pytest

from avgen_dagster.store.models import GenerationRequest
from tests.api.conftest import ApiServer, portrait_files, serve_api
from tests.conftest import AvgenEnv

PROBLEM = "application/problem+json"


def _problem(response, status: int, field: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and body["instance"]
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body
    return body


def _count(api: ApiServer) -> int:
    with api.db.session() as s:
        return s.query(GenerationRequest).count()


def test_no_key_or_a_wrong_or_revoked_key_is_401(api: ApiServer) -> None:
    from avgen_dagster.store.api_keys import revoke_key

    key = api.key("kim")
    prefix = key.split("_")[1]
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    with api.client() as client:
        missing = client.get("/v1/requests")
        bad = client.get("/v1/requests", headers={"Authorization": f"Bearer {wrong}"})
        junk = client.get("/v1/requests", headers={"Authorization": "Bearer nonsense"})
        basic = client.get("/v1/requests", headers={"Authorization": "Basic a2ltOnB3"})
        with api.db.session() as s:
            revoke_key(s, prefix)
        revoked = client.get("/v1/requests", headers={"Authorization": f"Bearer {key}"})
    assert _problem(missing, 401, "Authorization")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    for response in (bad, junk, revoked):
        _problem(response, 401, "Authorization")
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    _problem(basic, 401)


def test_another_users_request_is_404_like_a_missing_one(api: ApiServer) -> None:
    owner, other = api.key("lou"), api.key("max")
    with api.client(owner) as client:
        rid = client.post("/v1/requests", data={"script": "Mine."}, files=portrait_files()).json()[
            "request_id"
        ]
    with api.client(other) as client:
        theirs = client.get(f"/v1/requests/{rid}")
        delete = client.delete(f"/v1/requests/{rid}")
        missing = client.get(f"/v1/requests/{'0' * 32}")
        listed = client.get("/v1/requests").json()["items"]
    assert _problem(theirs, 404, "request_id")["detail"] == _problem(missing, 404)[
        "detail"
    ].replace("0" * 32, rid)
    _problem(delete, 404, "request_id")
    assert listed == []


def test_malformed_json_unknown_and_out_of_range_fields(api: ApiServer) -> None:
    key = api.key("ned")
    with api.client(key) as client:
        client.post("/v1/requests", data={"script": "Portrait."}, files=portrait_files())
        before = _count(api)
        malformed = client.post(
            "/v1/requests", content=b'{"script": "x",', headers={"Content-Type": "application/json"}
        )
        unknown = client.post("/v1/requests", json={"script": "x", "colour": "red"})
        out_of_range = client.post("/v1/requests", json={"script": "x", "target_lufs": 3})
        wrong_type = client.post("/v1/requests", data={"script": "x", "image_count": "many"},
                                 files=portrait_files())  # fmt: skip
        not_object = client.post("/v1/requests", json=["script"])
        form_unknown = client.post(
            "/v1/requests", data={"script": "x", "duration": "3"}, files=portrait_files()
        )
    _problem(malformed, 400, "body")
    assert _problem(unknown, 422, "colour")["errors"][0]["detail"] == "unknown field"
    body = _problem(out_of_range, 422, "target_lufs")
    assert "target_lufs: 3 is outside -40..-5" in body["detail"]  # intake's own message
    _problem(wrong_type, 422, "image_count")
    _problem(not_object, 422, "body")
    _problem(form_unknown, 422, "duration")
    assert _count(api) == before


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"prompt": "a", "script": "b"}, "prompt", "exactly one"),
        ({}, "prompt", "exactly one"),
        ({"script": "x", "email": "not-an-address"}, "email", "not valid"),
        ({"script": "x", "notify_at": "2020-01-01T09:00+00:00"}, "notify_at", "in the past"),
        ({"script": "x", "notify_at": "2030-01-01T09:00"}, "notify_at", "no time zone"),
        ({"script": "x", "callback_url": "http://10.0.0.7/hook"}, "callback_url", "private"),
        ({"script": "x", "callback_url": "http://169.254.169.254/"}, "callback_url", "link-local"),
        ({"script": "x", "callback_url": "http://[::1]:80/"}, "callback_url", "loopback"),
        ({"script": "x", "callback_url": "file:///etc/passwd"}, "callback_url", "http or https"),
        ({"script": "x", "genre": "polka"}, "genre", "unknown music genre"),
    ],
)
def test_intake_refusals_name_the_field(
    api: ApiServer, fields: dict, field: str, words: str
) -> None:
    key = api.key("oz")
    with api.client(key) as client:
        answer = client.post("/v1/requests", data=fields, files=portrait_files())
    body = _problem(answer, 422, field)
    assert words in body["detail"]
    assert _count(api) == 0


def test_a_private_callback_is_refused_without_the_allowlist(
    api_settings: AvgenEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AVGEN_WEBHOOK_ALLOW_HOSTS", "")
    server, stop = serve_api(api_settings, monkeypatch)
    try:
        with server.client(server.key("pat")) as client:
            answer = client.post(
                "/v1/requests",
                data={"script": "x", "callback_url": "http://127.0.0.1:8080/hook"},
                files=portrait_files(),
            )
    finally:
        stop()
    assert "AVGEN_WEBHOOK_ALLOW_HOSTS" in _problem(answer, 422, "callback_url")["detail"]


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        ("notes.txt", b"just some text, not an image", "not a readable image or video"),
        ("empty.png", b"", "is empty"),
        ("anim.gif", None, "GIF"),
    ],
)
def test_a_non_image_portrait_names_the_portrait(
    api: ApiServer, name: str, data: bytes | None, words: str
) -> None:
    import io

    from PIL import Image

    if data is None:
        out = io.BytesIO()
        Image.new("RGB", (8, 8)).save(out, format="GIF")
        data = out.getvalue()
    with api.client(api.key("quin")) as client:
        answer = client.post("/v1/requests", data={"script": "x"}, files=portrait_files(name, data))
    assert words in _problem(answer, 422, "portrait")["detail"]


def test_a_json_request_with_no_portrait_on_file_names_the_portrait(api: ApiServer) -> None:
    with api.client(api.key("rex")) as client:
        answer = client.post("/v1/requests", json={"script": "x"})
    assert "no portrait on file" in _problem(answer, 422, "portrait")["detail"]


def test_bodies_over_the_limit_are_413(api: ApiServer) -> None:
    key = api.key("sam")
    with api.client(key) as client:
        big_json = client.post(
            "/v1/requests",
            content=json.dumps({"script": "x" * 300_000}).encode(),
            headers={"Content-Type": "application/json"},
        )
    _problem(big_json, 413, "body")
    # A multipart upload declared over the limit (200 MB + 1 MB) is refused from its headers,
    # before its body is sent: a raw socket shows it without sending 300 MB.
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            (
                "POST /v1/requests HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {key}\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\n"
                "Content-Length: 300000000\r\n\r\n--b\r\n"
            ).encode()
        )
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"application/problem+json" in head
    assert json.loads(body)["errors"][0]["field"] == "portrait"


def test_chunked_bodies_are_counted(api: ApiServer) -> None:
    key = api.key("tia")

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"script": "'
        for _ in range(40):
            yield b"y" * 10_000
        yield b'"}'

    with api.client(key) as client:
        answer = client.post(
            "/v1/requests", content=chunks(), headers={"Content-Type": "application/json"}
        )
    _problem(answer, 413, "body")


def test_other_bad_requests(api: ApiServer) -> None:
    key = api.key("uma")
    with api.client(key) as client:
        as_text = client.post("/v1/requests", content=b"script=x",
                              headers={"Content-Type": "text/plain"})  # fmt: skip
        bad_id = client.get("/v1/requests/not-an-id")
        bad_cursor = client.get("/v1/requests", params={"cursor": "garbage"})
        bad_limit = client.get("/v1/requests", params={"limit": 1000})
        long_key = client.post("/v1/requests", json={"script": "x"},
                               headers={"Idempotency-Key": "k" * 300})  # fmt: skip
        two_files = client.post(
            "/v1/requests", data={"script": "x"},
            files={**portrait_files(), "other": ("o.png", b"x", "image/png")},
        )  # fmt: skip
        unknown_route = client.get("/v1/nothing-here")
        music = client.post("/v1/music-videos", json={"genre": "rock", "duration": 9999,
                                                       "video_prompt": "x"})  # fmt: skip
        no_portrait_music = client.post("/v1/music-videos", json={"video_prompt": "x"})
    _problem(as_text, 415, "Content-Type")
    _problem(bad_id, 422, "request_id")
    _problem(bad_cursor, 422, "cursor")
    _problem(bad_limit, 422, "limit")
    _problem(long_key, 422, "Idempotency-Key")
    assert two_files.status_code in (400, 422) and two_files.headers["content-type"] == PROBLEM
    _problem(unknown_route, 404)
    _problem(music, 422, "duration")
    _problem(no_portrait_music, 422, "portrait")


def test_rate_limit_per_key_is_429_with_retry_after(
    api_settings: AvgenEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AVGEN_API_RATE_LIMIT", "3/minute")
    server, stop = serve_api(api_settings, monkeypatch)
    try:
        busy, calm = server.key("vic"), server.key("wes")
        with server.client(busy) as client:
            answers = [client.get("/v1/requests").status_code for _ in range(4)]
            limited = client.get("/v1/requests")
        with server.client(calm) as client:
            other_key = client.get("/v1/requests")
    finally:
        stop()
    assert answers == [200, 200, 200, 429]
    assert int(_problem(limited, 429)["status"]) == 429 and int(limited.headers["retry-after"]) > 0
    assert other_key.status_code == 200  # counted per key
