"""The OpenAI-compatible backend against a local stand-in server (stdlib ``http.server``).

The server records every request body and answers from a script of canned replies:
completions (plain JSON or server-sent events), HTTP errors, or a delay past the client's
time-out. The real ``openai`` client and its own retries run unchanged.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from avgen_dagster.backends.llm_openai import OpenAIChatBackend
from avgen_dagster.backends.scene_plan import (
    JsonChat,
    ScenePlan,
    plan_for_prompt,
    plan_json_schema,
)
from avgen_dagster.backends.text import ScriptWriter
from avgen_dagster.errors import BackendError
from avgen_dagster.resources.backends import TextBackendResource

MODEL = "llama3.2:3b"


@dataclass
class Reply:
    """One canned answer: a completion's text, or an HTTP error, optionally delayed."""

    content: str | None = None
    status: int = 200
    error: dict[str, Any] | None = None
    stream: bool = False
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class FakeLLM:
    """An OpenAI-compatible ``/v1/chat/completions`` stand-in on 127.0.0.1."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.replies: list[Reply] = []
        self.default: Reply | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                )
                reply = fake.replies.pop(0) if fake.replies else fake.default
                assert reply is not None, "the test scripted no reply for this request"
                time.sleep(reply.delay_s)
                # The client may have given up already (time-out test).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    fake.answer(self, reply, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def answer(self, h: BaseHTTPRequestHandler, reply: Reply, body: dict[str, Any]) -> None:
        if reply.status != 200:
            payload = json.dumps({"error": reply.error or {"message": "error"}}).encode()
            h.send_response(reply.status)
            h.send_header("Content-Type", "application/json")
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            return
        base = {"id": "chatcmpl-1", "created": 0, "model": body.get("model", "")}
        if reply.stream:
            h.send_response(200)
            h.send_header("Content-Type", "text/event-stream")
            h.end_headers()
            text = reply.content or ""
            pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
            for i, piece in enumerate(pieces):
                delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
                chunk = {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
                h.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            end = {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
            h.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
            return
        payload = json.dumps(
            {
                **base,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
            }
        ).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    server = FakeLLM()
    yield server
    server.close()


def _backend(fake: FakeLLM, **kwargs: Any) -> OpenAIChatBackend:
    opts: dict[str, Any] = {"api_key": "sk-test", "max_retries": 0, "timeout_s": 10.0}
    opts.update(kwargs)
    return OpenAIChatBackend(fake.url, MODEL, **opts)


def _plan_json(sentences: list[str], mood: str = "ambient") -> str:
    scenes = [
        {
            "sentence": s,
            "visual": {"subject": f"subject {i}", "setting": "a beach at dusk", "style": "ink"},
            "broll": "slow pan across the waves",
        }
        for i, s in enumerate(sentences)
    ]
    return json.dumps(
        {"title": "Tides", "scenes": scenes, "mood": mood, "thumbnail_prompt": "the moon"}
    )


TIDE_SENTENCES = [
    "The moon pulls on the oceans.",
    "Its gravity lifts the water into a bulge, and the Earth turns beneath it.",
    "So most coasts see two high tides a day.",
]


def test_narration_request_body_and_chatter_removed(fake: FakeLLM) -> None:
    fake.replies.append(
        Reply(
            "Sure! Here's a narration for your video:\n\nThe moon pulls on the oceans. "
            "Its gravity lifts the water, and the Earth turns beneath it. "
            "So most coasts see two high tides a day. I hope this helps!"
        )
    )
    backend = _backend(fake, temperature=0.3, seed=7)
    assert isinstance(backend, ScriptWriter) and isinstance(backend, JsonChat)
    text = backend.write("Tell me about tides", max_words=60)
    assert text == (
        "The moon pulls on the oceans. Its gravity lifts the water, and the Earth turns "
        "beneath it. So most coasts see two high tides a day."
    )
    (req,) = fake.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == "Bearer sk-test"
    body = req["body"]
    assert body["model"] == MODEL
    assert body["seed"] == 7 and body["temperature"] == 0.3
    assert "response_format" not in body and not body.get("stream")
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "about 60 words" in body["messages"][0]["content"]
    assert body["messages"][1]["content"] == "Tell me about tides"


def test_streamed_answer_is_joined(fake: FakeLLM) -> None:
    fake.replies.append(Reply(" ".join(TIDE_SENTENCES), stream=True))
    backend = _backend(fake, stream=True)
    assert backend.write("Tell me about tides", max_words=60) == " ".join(TIDE_SENTENCES)
    assert fake.requests[0]["body"]["stream"] is True


def test_plan_sent_with_json_schema_and_validated(fake: FakeLLM) -> None:
    fake.replies.append(Reply(_plan_json(TIDE_SENTENCES, mood="jazz")))
    backend = _backend(fake, seed=3)
    plan = plan_for_prompt("Tell me about tides", backend, max_words=60)
    assert isinstance(plan, ScenePlan)
    assert plan.sentences == TIDE_SENTENCES and plan.mood == "jazz"
    assert plan.visual_prompts[0] == "subject 0, a beach at dusk, ink"
    body = fake.requests[0]["body"]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "scene_plan", "schema": plan_json_schema(), "strict": True},
    }
    assert body["seed"] == 3 and body["model"] == MODEL
    assert "Tell me about tides" in body["messages"][1]["content"]


def test_plan_streamed_and_fenced_json(fake: FakeLLM) -> None:
    fake.replies.append(Reply("```json\n" + _plan_json(TIDE_SENTENCES) + "\n```", stream=True))
    plan = plan_for_prompt("Tides", _backend(fake, stream=True), max_words=60)
    assert plan.word_count == sum(len(s.split()) for s in TIDE_SENTENCES)


def test_json_object_mode_puts_schema_in_prompt(fake: FakeLLM) -> None:
    fake.replies.append(Reply(_plan_json(TIDE_SENTENCES)))
    plan_for_prompt("Tides", _backend(fake, response_format="json_object"), max_words=60)
    body = fake.requests[0]["body"]
    assert body["response_format"] == {"type": "json_object"}
    assert json.dumps(plan_json_schema()) in body["messages"][0]["content"]


def test_invalid_json_then_valid_takes_the_repair_path(fake: FakeLLM) -> None:
    fake.replies += [
        Reply('{"title": "Tides", "scenes": [ oops'),
        Reply(_plan_json(TIDE_SENTENCES)),
    ]
    plan = plan_for_prompt("Tides", _backend(fake), max_words=60, attempts=3)
    assert plan.sentences == TIDE_SENTENCES
    assert len(fake.requests) == 2
    retry = fake.requests[1]["body"]["messages"]
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user"]
    assert retry[2]["content"].startswith('{"title": "Tides"')
    assert "not valid JSON" in retry[3]["content"]


def test_always_invalid_fails_after_the_bound(fake: FakeLLM) -> None:
    fake.default = Reply(json.dumps({"title": "Tides", "scenes": [], "mood": "polka"}))
    with pytest.raises(BackendError) as info:
        plan_for_prompt("Tides", _backend(fake), max_words=60, attempts=4)
    assert len(fake.requests) == 4
    msg = str(info.value)
    assert MODEL in msg and fake.url in msg and "4 attempts" in msg
    assert "last error" in msg and "scenes" in msg


def test_plan_over_the_word_limit_is_repaired_or_refused(fake: FakeLLM) -> None:
    long = ["The moon pulls on the oceans of the whole wide world every single day."] * 4
    fake.default = Reply(_plan_json(long))
    with pytest.raises(BackendError, match=r"narration is 56 words; the limit is 23"):
        plan_for_prompt("Tides", _backend(fake), max_words=20, attempts=2)
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    ("status", "error", "pattern"),
    [
        (401, {"message": "Incorrect API key provided"}, r"refused the API key \(401\)"),
        (404, {"message": f"model '{MODEL}' not found"}, r"unknown model or wrong URL \(404\)"),
        (
            400,
            {"message": "This model's maximum context length is 8192 tokens", "code": None},
            r"longer than the model's context \(400\)",
        ),
        (
            400,
            {"message": "too long", "code": "context_length_exceeded"},
            r"longer than the model's context",
        ),
        (400, {"message": "bad temperature"}, r"rejected the request \(400\): bad temperature"),
    ],
)
def test_client_errors_name_endpoint_and_model(
    fake: FakeLLM, status: int, error: dict[str, Any], pattern: str
) -> None:
    fake.default = Reply(status=status, error=error)
    backend = _backend(fake, max_retries=2)
    with pytest.raises(BackendError, match=pattern) as info:
        backend.write("Tell me about tides", max_words=60)
    assert MODEL in str(info.value) and fake.url in str(info.value)
    assert len(fake.requests) == 1  # 4xx (but 408/409/429) is never retried


@pytest.mark.parametrize(
    ("status", "pattern"),
    [(429, r"rate-limiting requests \(429\) after 2 retries"), (500, r"server error \(500\)")],
)
def test_retried_errors_fail_after_the_clients_retries(
    fake: FakeLLM, status: int, pattern: str
) -> None:
    fake.default = Reply(status=status, error={"message": "busy"}, headers={"retry-after-ms": "5"})
    with pytest.raises(BackendError, match=pattern) as info:
        _backend(fake, max_retries=2).write("Tell me about tides", max_words=60)
    assert len(fake.requests) == 3  # one request + max_retries retries, counted by the server
    assert MODEL in str(info.value)


def test_retry_then_success(fake: FakeLLM) -> None:
    fake.replies += [
        Reply(status=503, error={"message": "loading"}, headers={"retry-after-ms": "5"}),
        Reply(" ".join(TIDE_SENTENCES)),
    ]
    assert _backend(fake, max_retries=1).write("Tides", max_words=60).startswith("The moon")
    assert len(fake.requests) == 2


def test_time_out(fake: FakeLLM) -> None:
    fake.default = Reply(" ".join(TIDE_SENTENCES), delay_s=1.5)
    with pytest.raises(BackendError, match=r"timed out after 0.3 s per attempt after 1 retries"):
        _backend(fake, timeout_s=0.3, max_retries=1).write("Tides", max_words=60)
    assert len(fake.requests) == 2


def test_unreachable_endpoint() -> None:
    server = FakeLLM()
    url = server.url
    server.close()  # nothing listens on this port now
    backend = OpenAIChatBackend(url, MODEL, timeout_s=2.0, max_retries=0)
    with pytest.raises(BackendError, match=re.escape(f"cannot reach the LLM endpoint {url}")):
        backend.write("Tides", max_words=60)


def test_empty_answer_is_an_error(fake: FakeLLM) -> None:
    fake.default = Reply("")
    with pytest.raises(BackendError, match="returned an empty answer"):
        _backend(fake).write("Tides", max_words=60)


def test_resource_selects_openai_by_env_and_option(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AVGEN_LLM_BASE_URL", fake.url)
    monkeypatch.setenv("AVGEN_LLM_MODEL", MODEL)
    monkeypatch.setenv("AVGEN_LLM_API_KEY", "sk-from-env")
    resource = TextBackendResource.from_env(seed=11)
    assert resource.backend == "openai" and resource.model == MODEL
    fake.default = Reply(_plan_json(TIDE_SENTENCES))
    plan = resource.plan_for_prompt("Tell me about tides", max_words=60)
    assert plan.sentences == TIDE_SENTENCES
    req = fake.requests[0]
    assert req["auth"] == "Bearer sk-from-env" and req["body"]["seed"] == 11
    # The request option picks the embedded model even though the environment set openai.
    assert resource.script_writer("embedded").name == "smollm2"
    # Without a base URL the environment gives the embedded default; asking for openai
    # then names the missing settings.
    monkeypatch.delenv("AVGEN_LLM_BASE_URL")
    local = TextBackendResource.from_env()
    assert local.backend == "smollm2"
    with pytest.raises(Exception, match="AVGEN_LLM_BASE_URL and AVGEN_LLM_MODEL"):
        local.script_writer("openai")
