"""Idempotency-Key: same key and body → the same request (200); another body → 409; a refused
body frees the key; concurrent submissions with one key make one request."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from avgen_dagster.store.models import GenerationRequest
from tests.api.conftest import ApiServer, portrait_files


def _requests_of(api: ApiServer, user_id: str) -> int:
    with api.db.session() as s:
        return s.query(GenerationRequest).filter_by(user_id=user_id).count()


def test_same_key_same_body_is_the_same_request(api: ApiServer) -> None:
    with api.client(api.key("ida")) as client:
        headers = {"Idempotency-Key": "order-42"}
        first = client.post("/v1/requests", data={"script": "Hi.", "seed": "3"},
                            files=portrait_files(), headers=headers)  # fmt: skip
        # The same fields and portrait bytes in a new multipart body (another boundary).
        again = client.post("/v1/requests", data={"seed": "3", "script": "Hi."},
                            files=portrait_files("renamed.png"), headers=headers)  # fmt: skip
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["request_id"] == first.json()["request_id"]
    assert again.headers["location"] == first.headers["location"]
    assert _requests_of(api, "ida") == 1


def test_same_key_other_body_is_409(api: ApiServer) -> None:
    with api.client(api.key("jon")) as client:
        headers = {"Idempotency-Key": "k-1"}
        first = client.post("/v1/requests", data={"script": "One."}, files=portrait_files(),
                            headers=headers)  # fmt: skip
        other = client.post("/v1/requests", data={"script": "Two."}, files=portrait_files(),
                            headers=headers)  # fmt: skip
        as_json = client.post("/v1/requests", json={"script": "One."}, headers=headers)
    assert first.status_code == 202
    for answer in (other, as_json):
        assert answer.status_code == 409
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["errors"][0]["field"] == "Idempotency-Key"
    assert _requests_of(api, "jon") == 1


def test_a_refused_body_frees_its_key_and_keys_are_per_user(api: ApiServer) -> None:
    headers = {"Idempotency-Key": "retry-me"}
    with api.client(api.key("kai")) as client:
        refused = client.post("/v1/requests", data={"script": "x", "target_lufs": "9"},
                              files=portrait_files(), headers=headers)  # fmt: skip
        fixed = client.post("/v1/requests", data={"script": "x", "target_lufs": "-9"},
                            files=portrait_files(), headers=headers)  # fmt: skip
    with api.client(api.key("lea")) as client:
        someone_else = client.post("/v1/requests", data={"script": "x", "target_lufs": "-9"},
                                   files=portrait_files(), headers=headers)  # fmt: skip
    assert refused.status_code == 422 and fixed.status_code == 202
    assert someone_else.status_code == 202
    assert someone_else.json()["request_id"] != fixed.json()["request_id"]


def test_concurrent_submissions_with_one_key_make_one_request(api: ApiServer) -> None:
    key = api.key("mia")

    def submit(_: int) -> tuple[int, str | None]:
        with api.client(key) as client:
            answer = client.post(
                "/v1/requests",
                data={"script": "Once."},
                files=portrait_files(),
                headers={"Idempotency-Key": "same"},
            )
            return answer.status_code, answer.json().get("request_id")

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(submit, range(6)))
    codes = sorted(code for code, _ in answers)
    assert codes.count(202) == 1 and set(codes) <= {200, 202, 409}
    assert len({rid for code, rid in answers if code in (200, 202)}) == 1
    assert _requests_of(api, "mia") == 1
