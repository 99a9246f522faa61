"""Every endpoint's happy path against the real server (uvicorn on 127.0.0.1, httpx)."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import pytest

from avgen_dagster.outputs import RequestOutputs
from avgen_dagster.store import status
from avgen_dagster.store.requests import get_request
from tests.api.conftest import ApiServer, portrait_files
from tests.conftest import SAMPLE_PORTRAIT


def _submit(client, **fields):  # type: ignore[no-untyped-def]
    data = {"script": "Hello from the API.", **{k: str(v) for k, v in fields.items()}}
    return client.post("/v1/requests", data=data, files=portrait_files())


def test_multipart_submit_is_queued_with_location_and_queue_position(api: ApiServer) -> None:
    key = api.key("ada")
    with api.client(key) as client:
        first = _submit(client, image_count=2, target_lufs=-23, genre="jazz")
        second = _submit(client)
        assert first.status_code == 202, first.text
        doc = first.json()
        assert first.headers["location"] == f"/v1/requests/{doc['request_id']}"
        assert doc["status"] == "Queued" and doc["queue_position"] == 1
        assert second.json()["queue_position"] == 2
        again = client.get(first.headers["location"])
    assert again.status_code == 200 and again.json()["queue_position"] == 1
    with api.db.session() as s:
        req = get_request(s, doc["request_id"])
        assert req.user_id == "ada" and req.script == "Hello from the API."
        assert req.options["image_count"] == 2 and req.options["target_lufs"] == -23
        assert req.options["genre"] == "jazz" and req.options["clip_count"] == 5  # default
        assert req.portrait_path.endswith("/input/portrait.png")


def test_json_submit_reuses_the_last_portrait(api: ApiServer) -> None:
    key = api.key("ben")
    with api.client(key) as client:
        assert _submit(client).status_code == 202
        made = client.post(
            "/v1/requests",
            json={"prompt": "Tell me about tides", "seed": 7, "notify_at": None,
                  "callback_url": "http://127.0.0.1:9/hook"},
        )  # fmt: skip
    assert made.status_code == 202, made.text
    with api.db.session() as s:
        req = get_request(s, made.json()["request_id"])
        assert req.prompt == "Tell me about tides" and req.options["seed"] == 7
        assert req.callback_url == "http://127.0.0.1:9/hook"
        assert req.portrait_path.endswith(f"/{req.request_id}/input/portrait.png")


def test_processing_shows_the_run_and_completed_shows_signed_urls(api: ApiServer) -> None:
    key = api.key("cy")
    with api.client(key) as client:
        rid = _submit(client).json()["request_id"]
        with api.db.session() as s:
            status.submit(s, rid, run_id="run-not-in-dagster-yet")
        processing = client.get(f"/v1/requests/{rid}").json()
        assert processing["status"] == "Processing" and processing["run"] is None
        folder = api.env.content / "cy" / rid
        mp4 = folder / "stitched_mp4" / "talking_head.mp4"
        mp4.parent.mkdir(parents=True)
        mp4.write_bytes(b"\0\0\0\x18ftypmp42" + b"x" * 1000)
        with api.db.session() as s:
            made = RequestOutputs(talking_head_mp4=str(mp4), images=[str(folder / "missing.png")])
            status.complete(s, rid, made, run_id="run-not-in-dagster-yet")
        done = client.get(f"/v1/requests/{rid}").json()
        assert done["status"] == "Completed"
        url = done["outputs"]["talking_head_mp4"]
        assert url.startswith(f"{api.url}/media/")
        assert url.endswith("/stitched_mp4/talking_head.mp4")
        assert done["outputs"]["images"] == []  # a recorded file that is not there is not signed
        assert datetime.fromisoformat(done["outputs_expire_at"]) > datetime.fromisoformat(
            done["created_at"]
        )
        media = client.get(url)  # the same process serves the signed media URL
    assert media.status_code == 200 and media.content == mp4.read_bytes()


def test_processing_progress_comes_from_the_run(api: ApiServer) -> None:
    """A run on the instance at DAGSTER_HOME: the status names it, its steps and fraction."""

    @dg.op
    def first() -> int:
        return 1

    @dg.op
    def second(x: int) -> int:
        return x + 1

    @dg.job
    def two_steps() -> None:
        second(first())

    instance = dg.DagsterInstance.get()
    result = two_steps.execute_in_process(instance=instance)
    key = api.key("dee")
    with api.client(key) as client:
        rid = _submit(client).json()["request_id"]
        with api.db.session() as s:
            status.submit(s, rid, run_id=result.run_id)
        run = client.get(f"/v1/requests/{rid}").json()["run"]
    assert run["run_id"] == result.run_id and run["run_status"] == "SUCCESS"
    assert run["completed_steps"] == ["first", "second"]
    assert run["steps_done"] == 2 and run["steps_total"] == 2 and run["fraction_done"] == 1.0
    assert run["current_step"] is None


def test_failed_shows_the_reason(api: ApiServer) -> None:
    key = api.key("eve")
    with api.client(key) as client:
        rid = _submit(client).json()["request_id"]
        with api.db.session() as s:
            status.submit(s, rid)
            status.fail(s, rid, "tts_clips: the voice model is missing")
        doc = client.get(f"/v1/requests/{rid}").json()
    assert doc["status"] == "Failed" and doc["error"] == "tts_clips: the voice model is missing"
    assert doc["outputs"] is None and doc["queue_position"] is None


def test_list_is_newest_first_with_a_cursor(api: ApiServer) -> None:
    key = api.key("fay")
    with api.client(key) as client:
        made = [_submit(client, seed=i).json()["request_id"] for i in range(5)]
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/requests", params=params).json()
            seen += [item["request_id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == made[::-1]


def test_webhook_secret_and_docs(api: ApiServer) -> None:
    from standardwebhooks import Webhook

    key = api.key("gus")
    with api.client(key) as client:
        secret = client.get("/v1/webhook-secret").json()["secret"]
        schema = client.get("/openapi.json").json()
        docs = client.get("/docs")
    assert secret.startswith("whsec_")
    Webhook(secret)  # a valid Standard Webhooks secret
    assert schema["openapi"].startswith("3.1")
    assert {"/v1/requests", "/v1/requests/{request_id}", "/v1/music-videos"} <= set(schema["paths"])
    assert docs.status_code == 200 and "swagger-ui" in docs.text.lower()


def test_music_video_takes_the_seed_body(api: ApiServer) -> None:
    key = api.key("hal")
    with api.client(key) as client:
        assert _submit(client).status_code == 202  # the portrait on file
        made = client.post(
            "/v1/music-videos", json={"genre": "Rock", "duration": 12, "video_prompt": "Surf"}
        )
    assert made.status_code == 202, made.text
    with api.db.session() as s:
        req = get_request(s, made.json()["request_id"])
        assert req.prompt == "Surf" and req.script is None
        assert req.options["genre"] == "rock" and req.options["music_duration_s"] == 12


def test_music_video_wait_answers_with_the_mp4_when_ready(api: ApiServer) -> None:
    """?wait holds the answer; when the request completes meanwhile, the MP4 itself comes."""
    import threading

    key = api.key("ivy")
    with api.client(key) as client:
        assert _submit(client).status_code == 202
        video = SAMPLE_PORTRAIT.read_bytes()  # any bytes stand for the MP4 here

        def complete_when_queued() -> None:
            import time

            for _ in range(200):
                with api.db.session() as s:
                    from avgen_dagster.store.models import GenerationRequest

                    reqs = s.query(GenerationRequest).filter_by(user_id="ivy", prompt="Waves")
                    req = reqs.first()
                    if req is not None:
                        rid = req.request_id
                        break
                time.sleep(0.05)
            out = api.env.content / "ivy" / rid / "music_video" / "music_video.mp4"
            out.parent.mkdir(parents=True)
            out.write_bytes(video)
            with api.db.session() as s:
                status.submit(s, rid)
                status.complete(s, rid, RequestOutputs(music_video=str(out)), run_id="r")

        worker = threading.Thread(target=complete_when_queued)
        worker.start()
        answer = client.post(
            "/v1/music-videos", params={"wait": 60}, json={"video_prompt": "Waves"}
        )
        worker.join()
    assert answer.status_code == 200 and answer.headers["content-type"] == "video/mp4"
    assert answer.content == video and answer.headers["location"].startswith("/v1/requests/")


@pytest.mark.parametrize("wait", [0, 0.5])
def test_music_video_not_ready_answers_202(api: ApiServer, wait: float) -> None:
    key = api.key(f"jo{int(wait * 10)}")
    with api.client(key) as client:
        assert _submit(client).status_code == 202
        answer = client.post(
            "/v1/music-videos", params={"wait": wait}, json={"video_prompt": "Rain"}
        )
    assert answer.status_code == 202 and answer.json()["status"] == "Queued"


def test_retry_requeues_a_failed_request_and_refuses_others(api: ApiServer) -> None:
    key = api.key("kit")
    with api.client(key) as client:
        rid = _submit(client).json()["request_id"]
        not_failed = client.post(f"/v1/requests/{rid}/retry")
        with api.db.session() as s:
            status.submit(s, rid)
            status.fail(s, rid, "lipsync_segments: no face in frame 1")
        again = client.post(f"/v1/requests/{rid}/retry")
    assert not_failed.status_code == 409
    assert not_failed.headers["content-type"] == "application/problem+json"
    assert again.status_code == 202 and again.headers["location"] == f"/v1/requests/{rid}"
    doc = again.json()
    assert (doc["status"], doc["attempt"], doc["error"]) == ("Queued", 1, None)
    with api.db.session() as s:
        assert [e.reason for e in status.history(s, rid)][-1].startswith("retry (api)")
