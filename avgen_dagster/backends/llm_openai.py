"""The OpenAI-compatible chat backend: any server speaking ``/v1/chat/completions``.

Works with Ollama (``http://localhost:11434/v1``), vLLM (``http://host:8000/v1``),
llama.cpp's ``llama-server`` (``http://host:8080/v1``), LM Studio
(``http://localhost:1234/v1``) and OpenAI (``https://api.openai.com/v1``), through the
official ``openai`` client: its own time-out and retries (``max_retries``: connection
errors, time-outs, 408, 409, 429 and 5xx, exponential back-off from 0.5 s, honouring
``Retry-After`` / ``retry-after-ms``).

:class:`OpenAIChatBackend` is both a :class:`~avgen_dagster.backends.text.ScriptWriter`
(:meth:`~OpenAIChatBackend.write`: narration as prose) and a
:class:`~avgen_dagster.backends.scene_plan.JsonChat`
(:meth:`~OpenAIChatBackend.complete_json`: a scene plan under a JSON schema, sent as
``response_format={"type": "json_schema", ...}``; ``json_object`` or no response format
for servers without schema support).

Every failure is a :class:`~avgen_dagster.errors.BackendError` that names the endpoint and
the model: unreachable, time-out, 401/403 (API key), 404 (unknown model or wrong base URL),
400 context too long, other 400s, 429 and 5xx after the retries, an empty answer.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, Literal

from avgen_dagster.backends.textproc import count_words, validate_prompt
from avgen_dagster.errors import BackendError, InvalidInputError

__all__ = [
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "ENV_MODEL",
    "NARRATION_SYSTEM_PROMPT",
    "OpenAIChatBackend",
    "error_message",
]

ENV_BASE_URL = "AVGEN_LLM_BASE_URL"
"""Environment variable: the endpoint's base URL; setting it selects this backend."""
ENV_MODEL = "AVGEN_LLM_MODEL"
"""Environment variable: the model name the endpoint serves (e.g. ``llama3.2:3b``)."""
ENV_API_KEY = "AVGEN_LLM_API_KEY"
"""Environment variable: the API key (local servers accept any value)."""

NARRATION_SYSTEM_PROMPT = (
    "You write the narration of a short video: only the exact words a single narrator says, "
    "about {words} words of plain, accurate, friendly spoken English in full sentences. No "
    "title, lists, headings, markdown, emojis, stage directions, speaker names, or remarks "
    "about the narration itself."
)
"""System prompt of :meth:`OpenAIChatBackend.write`; ``{words}`` is the word budget."""

_CONTEXT_CODES = ("context_length_exceeded", "string_above_max_length")
_CONTEXT_PHRASES = ("context length", "context window", "maximum context", "too many tokens")

ResponseFormat = Literal["json_schema", "json_object", "none"]


class OpenAIChatBackend:
    """Chat completions from an OpenAI-compatible endpoint.

    Args:
        base_url: The endpoint, including ``/v1`` (``http://localhost:11434/v1``).
        model: The model name the endpoint serves.
        api_key: The API key; ``None`` sends a placeholder (local servers need none).
        timeout_s: Seconds per HTTP attempt before it counts as timed out (> 0).
        max_retries: Retries of the client on connection errors, time-outs, 408/409/429/5xx.
        temperature: Sampling temperature (0–2).
        seed: Sent as ``seed`` for reproducible sampling where the server supports it;
            ``None`` sends none.
        stream: Ask for server-sent events and join the deltas (long answers behind proxies
            with idle time-outs).
        response_format: ``"json_schema"`` (structured outputs: OpenAI, vLLM, Ollama ≥ 0.5,
            llama.cpp, LM Studio), ``"json_object"`` (JSON mode, the schema in the prompt),
            or ``"none"`` (the schema in the prompt only).
        max_tokens: Cap on generated tokens (``max_tokens``); ``None`` sends none.

    Raises:
        InvalidInputError: (at construction) empty base URL or model, bad numbers.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 120.0,
        max_retries: int = 2,
        temperature: float = 0.7,
        seed: int | None = 0,
        stream: bool = False,
        response_format: ResponseFormat = "json_schema",
        max_tokens: int | None = None,
    ) -> None:
        if not base_url or not base_url.strip():
            raise InvalidInputError(f"the LLM base URL is empty; set {ENV_BASE_URL}")
        if not model or not model.strip():
            raise InvalidInputError(
                f"no LLM model is named for {base_url}; set {ENV_MODEL} (e.g. llama3.2:3b)"
            )
        if timeout_s <= 0 or max_retries < 0 or not 0 <= temperature <= 2:
            raise InvalidInputError(
                f"LLM settings out of range: timeout_s={timeout_s} (> 0), "
                f"max_retries={max_retries} (≥ 0), temperature={temperature} (0–2)"
            )
        import openai

        self.base_url = base_url.strip().rstrip("/")
        self.model = model.strip()
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.temperature = temperature
        self.seed = seed
        self.stream = stream
        self.response_format = response_format
        self.max_tokens = max_tokens
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or os.environ.get(ENV_API_KEY) or "not-needed",
            timeout=timeout_s,
            max_retries=max_retries,
        )

    def describe(self) -> str:
        """``"model 'NAME' at BASE_URL"``, as error messages name it."""
        return f"model {self.model!r} at {self.base_url}"

    # --- requests ------------------------------------------------------------------------

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        response_format: dict[str, Any] | None = None,
    ) -> str:
        """One chat completion; the assistant's text.

        Args:
            messages: ``[{"role": "system" | "user" | "assistant", "content": str}, ...]``.
            response_format: Passed through (``{"type": "json_schema", ...}``) or omitted.

        Raises:
            BackendError: see the module docstring; also an answer with no text.
        """
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
        }
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        if response_format is not None:
            kwargs["response_format"] = response_format
        with self._errors():
            if self.stream:
                text = "".join(self._stream(kwargs))
            else:
                completion = self._client.chat.completions.create(**kwargs)
                choice = completion.choices[0] if completion.choices else None
                text = (choice.message.content or "") if choice is not None else ""
        if not text.strip():
            raise BackendError(f"{self.describe()} returned an empty answer")
        return text

    def _stream(self, kwargs: dict[str, Any]) -> Iterator[str]:
        for chunk in self._client.chat.completions.create(**kwargs, stream=True):
            for choice in chunk.choices or ():
                if choice.delta is not None and choice.delta.content:
                    yield choice.delta.content

    def complete_json(
        self, messages: list[dict[str, str]], *, schema: dict[str, Any], schema_name: str
    ) -> str:
        """An answer meant to be JSON under ``schema`` (see ``response_format``).

        For ``"json_object"`` and ``"none"`` the schema is appended to the system message.

        Raises:
            BackendError: as :meth:`chat`.
        """
        import json

        if self.response_format == "json_schema":
            fmt: dict[str, Any] | None = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema, "strict": True},
            }
        else:
            fmt = {"type": "json_object"} if self.response_format == "json_object" else None
            note = f"\n\nThe JSON schema of the answer:\n{json.dumps(schema)}"
            messages = [
                {**m, "content": m["content"] + note} if i == 0 else m
                for i, m in enumerate(messages)
            ]
        return self.chat(messages, response_format=fmt)

    def write(self, prompt: str, *, max_words: int) -> str:
        """Narration for ``prompt``: whole sentences within ``max_words``, chatter removed.

        Raises:
            InvalidInputError: empty or over-long prompt, ``max_words`` < 1.
            BackendError: the endpoint fails, or the answer has fewer than
                ``max(5, max_words // 4)`` usable words.
        """
        from avgen_dagster.backends.text import polish_narration

        prompt = validate_prompt(prompt)
        if max_words < 1:
            raise InvalidInputError(f"max_words must be at least 1, got {max_words}")
        raw = self.chat(
            [
                {"role": "system", "content": NARRATION_SYSTEM_PROMPT.format(words=max_words)},
                {"role": "user", "content": prompt},
            ]
        )
        text = polish_narration(raw, max_words)
        need = min(max_words, max(5, max_words // 4))
        if count_words(text) < need:
            raise BackendError(
                f"{self.describe()} wrote only {count_words(text)} usable words "
                f"(need at least {need})"
            )
        return text

    # --- errors --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn the client's exceptions into :class:`BackendError` (see :func:`error_message`)."""
        import openai

        try:
            yield
        except openai.OpenAIError as exc:
            raise BackendError(error_message(self, exc)) from exc


def error_message(backend: OpenAIChatBackend, exc: BaseException) -> str:
    """The user-facing message for one ``openai`` client exception."""
    import openai

    b = backend
    who = b.describe()
    tries = f"after {b.max_retries} retries" if b.max_retries else "(no retries)"
    if isinstance(exc, openai.APITimeoutError):
        return f"{who} timed out after {b.timeout_s:g} s per attempt {tries}"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return (
            f"cannot reach the LLM endpoint {b.base_url} (model {b.model!r}) {tries}: "
            f"{cause}; is the server running, and is {ENV_BASE_URL} right?"
        )
    if not isinstance(exc, openai.APIStatusError):
        return f"{who} failed: {exc}"
    detail = _detail(exc)
    status = exc.status_code
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return f"{who} refused the API key ({status}): {detail}; set {ENV_API_KEY}"
    if isinstance(exc, openai.NotFoundError):
        return (
            f"{who}: unknown model or wrong URL (404): {detail}; check {ENV_MODEL} "
            f"(e.g. `ollama list`) and that {ENV_BASE_URL} ends in /v1"
        )
    if isinstance(exc, openai.BadRequestError):
        code = str(getattr(exc, "code", "") or "")
        if code in _CONTEXT_CODES or any(p in detail.lower() for p in _CONTEXT_PHRASES):
            return f"{who}: the request is longer than the model's context (400): {detail}"
        return f"{who} rejected the request (400): {detail}"
    if isinstance(exc, openai.RateLimitError):
        return f"{who} is rate-limiting requests (429) {tries}: {detail}"
    if status >= 500:
        return f"{who} had a server error ({status}) {tries}: {detail}"
    return f"{who} answered HTTP {status}: {detail}"


def _detail(exc: Any) -> str:
    """The server's error message from an ``APIStatusError`` body, else the exception text."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return str(getattr(exc, "message", "") or exc)
