"""``POST /v1/requests`` with the ``voice_reference`` file part, against the real server: 202
and the clip stored where the speech backend clones voices (a tiny XTTS model built here), a
422 problem naming ``voice_reference`` otherwise or for a bad clip, nothing recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from avgen_dagster.outputs import VOICE_REFERENCE_WAV
from avgen_dagster.store.models import GenerationRequest
from avgen_dagster.store.requests import get_request
from tests.api.conftest import ApiServer, portrait_files, serve_api
from tests.conftest import AvgenEnv
from tests.test_voice_reference import clip_bytes

PROBLEM = "application/problem+json"


def _voice(name: str, data: bytes) -> dict[str, tuple]:
    return {**portrait_files(), "voice_reference": (name, data, "audio/wav")}


def _refused(answer, words: str) -> None:  # type: ignore[no-untyped-def]
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    body = answer.json()
    assert [e["field"] for e in body["errors"]] == ["voice_reference"], body
    assert words in body["detail"], body


def _count(api: ApiServer) -> int:
    with api.db.session() as s:
        return s.query(GenerationRequest).count()


def test_a_backend_that_cannot_clone_refuses_the_part(api: ApiServer) -> None:
    """The default speech backend (Piper) cannot clone: 422 naming the part, nothing kept."""
    with api.client(api.key("vi")) as client:
        answer = client.post(
            "/v1/requests", data={"script": "Hi."}, files=_voice("me.wav", clip_bytes(4.0))
        )
        schema = client.get("/openapi.json").json()
    _refused(answer, "the speech backend here (piper) does not clone voices")
    assert _count(api) == 0 and not (api.env.content / "vi").exists()
    form = schema["paths"]["/v1/requests"]["post"]["requestBody"]["content"]
    part = form["multipart/form-data"]["schema"]["properties"]["voice_reference"]
    assert part["format"] == "binary" and "3-30 s" in part["description"]


def test_an_xtts_server_takes_the_clip_and_refuses_bad_ones(
    api_settings: AvgenEnv, monkeypatch: pytest.MonkeyPatch, tiny_xtts_dir: Path
) -> None:
    monkeypatch.setenv("AVGEN_SPEECH_BACKEND", "coqui")
    monkeypatch.setenv("AVGEN_SPEECH_MODEL", str(tiny_xtts_dir))
    server, stop = serve_api(api_settings, monkeypatch)
    try:
        with server.client(server.key("xi")) as client:
            made = client.post(
                "/v1/requests", data={"script": "Hi."}, files=_voice("me.flac",
                                                                     clip_bytes(4.0, "FLAC"))
            )  # fmt: skip
            short = client.post(
                "/v1/requests", data={"script": "Hi."}, files=_voice("short.wav", clip_bytes(1.0))
            )
            silent = client.post(
                "/v1/requests", data={"script": "Hi."},
                files=_voice("quiet.wav", clip_bytes(5.0, amplitude=0.0)),
            )  # fmt: skip
            corrupt = client.post(
                "/v1/requests", data={"script": "Hi."}, files=_voice("x.wav", b"not audio")
            )
            as_text = client.post(
                "/v1/requests", data={"script": "Hi.", "voice_reference": "me.wav"},
                files=portrait_files(),
            )  # fmt: skip
            twice = client.post(
                "/v1/requests",
                data={"script": "Hi."},
                files=[  # two file parts at most: a third is a 400 from the form parser
                    ("voice_reference", ("a.wav", clip_bytes(4.0), "audio/wav")),
                    ("voice_reference", ("b.wav", clip_bytes(4.0), "audio/wav")),
                ],
            )
    finally:
        stop()
    assert made.status_code == 202, made.text
    rid = made.json()["request_id"]
    with server.db.session() as s:
        stored = get_request(s, rid).voice_reference_path
    assert stored == str(api_settings.content / "xi" / rid / VOICE_REFERENCE_WAV)
    assert Path(stored).is_file()
    _refused(short, "voice reference 'short.wav' is 1.00 s long")
    _refused(silent, "voice reference 'quiet.wav' is silent")
    _refused(corrupt, "voice reference 'x.wav' is not readable audio")
    _refused(as_text, "voice_reference must be a file part")
    _refused(twice, "given more than once")
    assert _count(server) == 1
    assert sorted(p.name for p in (api_settings.content / "xi").iterdir()) == [rid]
