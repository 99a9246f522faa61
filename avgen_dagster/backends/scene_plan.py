"""The scene plan: narration as sentences, a picture and a b-roll hint per sentence, a mood.

One validated structure (pydantic) drives the talking head, the images, the clips and the
music of a request:

- :class:`ScenePlan`: ``title``; ``scenes`` (per sentence: ``sentence``, ``visual``
  (:class:`VisualPrompt`: subject, setting, style) and ``broll``); ``mood`` (one of the
  music genres, :data:`~avgen_dagster.backends.scene_visuals.MusicMood`);
  ``thumbnail_prompt``.
- :func:`plan_for_script`: a user's own script; sentences verbatim (cleaned), visuals derived
  deterministically (:mod:`~avgen_dagster.backends.scene_visuals`); no model.
- :func:`plan_for_prompt`: from a prompt with a text backend. A backend that can answer in
  JSON under a schema (:class:`JsonChat`: the OpenAI-compatible backend) writes the whole
  plan: ``response_format`` carries :func:`plan_json_schema`, the answer is parsed and
  validated, and an invalid answer is sent back with the validation error for a corrected
  one, at most ``attempts`` times (bounded repair loop), then :class:`BackendError` naming
  the model and the last error. Any other writer (the embedded SmolLM2) writes the
  narration only and the visuals are derived as for a script. Why not a constrained JSON
  plan from SmolLM2-135M (measured here, on the shared 2-core machine): a plan's JSON is
  4–6× the narration's tokens (SmolLM2 tokenizer, plans of the benchmark's narrations), so
  4–6× the generation time against a 15 s budget; lm-format-enforcer 0.11.3's transformers
  integration does not import under transformers 5; outlines 1.3.3 runs with transformers
  5 but compiled a two-field schema (title, mood) in 43 s and had not finished compiling
  the :class:`ScenePlan` schema after 13 minutes.

Limits: a plan's narration must have words (empty → error) and at most
``max_words × (1 + WORD_TOLERANCE)`` words when a limit is given (validation context
``{"max_words": n}``), else the error says how many words it has and the limit.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from avgen_dagster.backends.scene_visuals import (
    STYLE_BY_MOOD,
    MusicMood,
    broll_hint,
    fallback_setting_for,
    key_terms,
    mood_for_text,
    title_from_text,
    visual_for_sentence,
)
from avgen_dagster.backends.textproc import (
    DEFAULT_MAX_SCRIPT_CHARS,
    clean_text,
    count_words,
    split_sentences,
    validate_prompt,
    validate_script,
)
from avgen_dagster.errors import BackendError, InvalidInputError

__all__ = [
    "WORD_TOLERANCE",
    "JsonChat",
    "Scene",
    "ScenePlan",
    "VisualPrompt",
    "parse_plan",
    "plan_for_prompt",
    "plan_for_script",
    "plan_from_narration",
    "plan_json_schema",
]

_LOG = logging.getLogger(__name__)

WORD_TOLERANCE = 0.15
"""A written plan may exceed ``max_words`` by this fraction (the length target is ±15 %)."""


class VisualPrompt(BaseModel):
    """What one scene's picture shows: e.g. subject "blue light scattering", setting "sky at
    sunset", style "soft watercolor illustration"."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    subject: str = Field(min_length=1, max_length=200, description="What the picture shows.")
    setting: str = Field(min_length=1, max_length=200, description="Where and when.")
    style: str = Field(min_length=1, max_length=120, description="Medium, light, palette.")

    @property
    def text(self) -> str:
        """One prompt string for an image or video backend: ``"subject, setting, style"``."""
        return f"{self.subject}, {self.setting}, {self.style}"


class Scene(BaseModel):
    """One narration sentence and what is seen while it is spoken."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    sentence: str = Field(min_length=1, max_length=600, description="Spoken words, verbatim.")
    visual: VisualPrompt
    broll: str = Field(min_length=1, max_length=200, description="A camera move for b-roll.")


class ScenePlan(BaseModel):
    """A request's plan. Validate LLM output with ``ScenePlan.model_validate(data,
    context={"max_words": n})`` to apply the word limit.

    Raises (on validation):
        pydantic.ValidationError: a missing/extra field, a mood outside the music genres,
            an empty sentence, empty narration, or narration over the word limit.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=120)
    scenes: list[Scene] = Field(min_length=1, max_length=80)
    mood: MusicMood
    thumbnail_prompt: str = Field(min_length=1, max_length=400)

    @model_validator(mode="after")
    def _narration_fits(self, info: ValidationInfo) -> ScenePlan:
        for i, scene in enumerate(self.scenes, 1):
            if not re.search(r"\w", scene.sentence):
                raise ValueError(f"scene {i}'s sentence has no words")
        limit = (info.context or {}).get("max_words") if info else None
        words = self.word_count
        if words == 0:
            raise ValueError("the plan's narration is empty")
        if limit is not None:
            allowed = math.floor(int(limit) * (1 + WORD_TOLERANCE))
            if words > allowed:
                raise ValueError(
                    f"the plan's narration is {words} words; the limit is {allowed} "
                    f"(max_words {limit} + {WORD_TOLERANCE:.0%})"
                )
        return self

    @property
    def sentences(self) -> list[str]:
        """The narration, one sentence per scene."""
        return [s.sentence for s in self.scenes]

    @property
    def narration(self) -> str:
        """The narration as one line of prose."""
        return " ".join(self.sentences)

    @property
    def word_count(self) -> int:
        """Words in the narration."""
        return count_words(self.narration)

    @property
    def visual_prompts(self) -> list[str]:
        """One image/video prompt per scene (:attr:`VisualPrompt.text`)."""
        return [s.visual.text for s in self.scenes]

    @property
    def broll_hints(self) -> list[str]:
        """One b-roll camera move per scene."""
        return [s.broll for s in self.scenes]


# --- deterministic plans ---------------------------------------------------------------------


def _plan_from_sentences(
    sentences: list[str], *, topic: str, title: str, max_words: int | None
) -> ScenePlan:
    text = " ".join(sentences)
    mood = mood_for_text(f"{topic} {text}")
    style = STYLE_BY_MOOD[mood]
    setting = fallback_setting_for(text, topic)
    subject = " ".join(key_terms(topic)[:3]) or "the main idea"
    scenes = []
    for sentence in sentences:
        subject, where, _ = visual_for_sentence(
            sentence, fallback_setting=setting, fallback_subject=subject, style=style
        )
        scenes.append(
            {
                "sentence": sentence,
                "visual": {"subject": subject, "setting": where, "style": style},
                "broll": broll_hint(sentence, subject, where),
            }
        )
    first = scenes[0]["visual"]
    data = {
        "title": title,
        "scenes": scenes,
        "mood": mood,
        "thumbnail_prompt": f"{title}: {first['subject']}, {first['setting']}, {style}",
    }
    context = {"max_words": max_words} if max_words is not None else None
    return ScenePlan.model_validate(data, context=context)


def plan_for_script(script: str, *, max_chars: int = DEFAULT_MAX_SCRIPT_CHARS) -> ScenePlan:
    """A plan for a user's own script: its sentences verbatim, visuals derived.

    The script is validated (:func:`~avgen_dagster.backends.textproc.validate_script`),
    cleaned (:func:`~avgen_dagster.backends.textproc.clean_text`) and split into sentences;
    no word limit applies (a user's words are never cut). The title comes from the first
    sentence.

    Raises:
        InvalidInputError: empty, over-long or unspeakable script.
    """
    text = clean_text(validate_script(script, max_chars=max_chars))
    sentences = split_sentences(text)
    return _plan_from_sentences(
        sentences, topic=text, title=title_from_text(sentences[0]), max_words=None
    )


def plan_from_narration(prompt: str, narration: str, *, max_words: int | None) -> ScenePlan:
    """A plan around narration a model wrote for ``prompt``; visuals derived.

    Raises:
        InvalidInputError: the narration is empty, or over ``max_words`` (+15 %).
    """
    sentences = split_sentences(narration)
    if not sentences:
        raise InvalidInputError("the plan's narration is empty")
    try:
        return _plan_from_sentences(
            sentences, topic=prompt, title=title_from_text(prompt), max_words=max_words
        )
    except ValidationError as exc:
        raise InvalidInputError(_first_error(exc)) from exc


# --- plans written by an LLM -----------------------------------------------------------------


@runtime_checkable
class JsonChat(Protocol):
    """A chat backend that can answer under a JSON schema (the OpenAI-compatible one)."""

    name: str

    def describe(self) -> str:
        """The model and endpoint, for error messages (``"model 'x' at http://..."``)."""
        ...

    def complete_json(
        self, messages: list[dict[str, str]], *, schema: dict[str, Any], schema_name: str
    ) -> str:
        """The assistant's answer (meant to be JSON matching ``schema``), as text.

        Raises:
            BackendError: the endpoint cannot be reached or refuses the request.
        """
        ...


_LENGTH_KEYWORDS = ("minLength", "maxLength", "minItems", "maxItems")


def plan_json_schema() -> dict[str, Any]:
    """The JSON schema sent as ``response_format`` (OpenAI "structured outputs" shape).

    :class:`ScenePlan`'s schema with every object closed (``additionalProperties: false``,
    all properties required, as OpenAI's strict mode demands) and without length keywords
    (``minLength``/``maxLength``/``minItems``/``maxItems``), which some servers' schema
    subsets reject, and without the classes' docstrings (field descriptions stay); pydantic
    checks the lengths after parsing and the repair loop reports them.
    """
    schema = copy.deepcopy(ScenePlan.model_json_schema())

    def strip(node: Any) -> None:
        if isinstance(node, dict):
            for key in _LENGTH_KEYWORDS:
                node.pop(key, None)
            if isinstance(node.get("title"), str):  # pydantic's display titles, not fields
                del node["title"]
            if "properties" in node:  # a class docstring; the field descriptions stay
                node.pop("description", None)
            for value in node.values():
                strip(value)
        elif isinstance(node, list):
            for value in node:
                strip(value)

    strip(schema)
    return schema


PLAN_SYSTEM_PROMPT = (
    "You plan short narrated videos. Reply with one JSON object only, matching the given "
    "schema: a short title; scenes, one per narration sentence, in order, each with the "
    "sentence exactly as the narrator speaks it, a visual (subject, setting, style) for a "
    "picture shown while it is spoken, and a b-roll camera move; a music mood (one of: "
    "ambient, lofi, rock, electronic, jazz, classical, pop); a thumbnail prompt. The "
    "narration is about {words} words of plain, accurate spoken English: no lists, headings, "
    "emojis, stage directions or remarks about the script. Use one consistent style."
)
"""System prompt of LLM-written plans; ``{words}`` is the word budget."""


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "plan"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {msg}" if where != "plan" else msg


def _json_text(raw: str) -> str:
    """The JSON object inside an answer (code fences and text around it removed)."""
    text = raw.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fence:
        text = fence.group(1).strip()
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


def parse_plan(raw: str, *, max_words: int | None) -> ScenePlan:
    """Parse and validate an LLM's plan; each sentence is cleaned for speech.

    Raises:
        ValueError: not JSON, or not a valid :class:`ScenePlan` (the message names the
            first problem: field path and reason).
    """
    try:
        data = json.loads(_json_text(raw))
    except json.JSONDecodeError as exc:
        raise ValueError(f"the answer is not valid JSON ({exc.msg} at char {exc.pos})") from exc
    if isinstance(data, dict) and isinstance(data.get("scenes"), list):
        for scene in data["scenes"]:
            if isinstance(scene, dict) and isinstance(scene.get("sentence"), str):
                try:
                    scene["sentence"] = clean_text(scene["sentence"])
                except InvalidInputError:
                    scene["sentence"] = ""
    context = {"max_words": max_words} if max_words is not None else None
    try:
        return ScenePlan.model_validate(data, context=context)
    except ValidationError as exc:
        raise ValueError(_first_error(exc)) from exc


def _plan_with_json_llm(llm: JsonChat, prompt: str, max_words: int, attempts: int) -> ScenePlan:
    schema = plan_json_schema()
    messages = [
        {"role": "system", "content": PLAN_SYSTEM_PROMPT.format(words=max_words)},
        {"role": "user", "content": f"{prompt}\n\nNarration length: about {max_words} words."},
    ]
    last_error = "no answer"
    for attempt in range(1, attempts + 1):
        raw = llm.complete_json(messages, schema=schema, schema_name="scene_plan")
        try:
            return parse_plan(raw, max_words=max_words)
        except ValueError as exc:
            last_error = str(exc)
        _LOG.warning(
            "%s: invalid plan, attempt %d/%d: %s", llm.describe(), attempt, attempts, last_error
        )
        messages = [
            *messages[:2],
            {"role": "assistant", "content": raw[:8000]},
            {
                "role": "user",
                "content": f"That answer is invalid: {last_error}. Reply with the corrected "
                "JSON object only.",
            },
        ]
    raise BackendError(
        f"{llm.describe()} gave no valid scene plan in {attempts} attempts; "
        f"last error: {last_error}"
    )


def plan_for_prompt(prompt: str, writer: Any, *, max_words: int, attempts: int = 3) -> ScenePlan:
    """A plan for ``prompt`` written by ``writer`` (see the module docstring).

    Args:
        prompt: The user's prompt (validated).
        writer: A :class:`JsonChat` (the whole plan as JSON, repaired up to ``attempts``
            times) or any :class:`~avgen_dagster.backends.text.ScriptWriter` (narration
            only, visuals derived).
        max_words: Narration budget (≥ 1); JSON plans may exceed it by 15 %.
        attempts: Most answers asked of a JSON backend (≥ 1).

    Raises:
        InvalidInputError: empty/over-long prompt, ``max_words`` or ``attempts`` < 1.
        BackendError: the backend fails, or gives no valid plan within ``attempts``.
    """
    prompt = validate_prompt(prompt)
    if max_words < 1 or attempts < 1:
        raise InvalidInputError(
            f"max_words and attempts must be at least 1, got {max_words} and {attempts}"
        )
    if isinstance(writer, JsonChat):
        return _plan_with_json_llm(writer, prompt, max_words, attempts)
    narration = writer.write(prompt, max_words=max_words)
    try:
        return plan_from_narration(prompt, narration, max_words=max_words)
    except InvalidInputError as exc:
        raise BackendError(f"text backend {writer.name} wrote an unusable plan: {exc}") from exc
