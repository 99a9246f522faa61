"""Scene plans: validation, deterministic plans for scripts, visuals, mood, JSON schema."""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from avgen_dagster.backends.music import GENRES
from avgen_dagster.backends.scene_plan import (
    ScenePlan,
    parse_plan,
    plan_for_prompt,
    plan_for_script,
    plan_from_narration,
    plan_json_schema,
)
from avgen_dagster.backends.scene_visuals import MusicMood, mood_for_text, title_from_text
from avgen_dagster.backends.text import VerbatimScript
from avgen_dagster.errors import BackendError, InvalidInputError


def _plan(sentences: list[str], **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": "Tides",
        "scenes": [
            {
                "sentence": s,
                "visual": {"subject": "the moon", "setting": "a beach at night", "style": "ink"},
                "broll": "slow pan",
            }
            for s in sentences
        ],
        "mood": "ambient",
        "thumbnail_prompt": "the moon over the sea",
    }
    data.update(changes)
    return data


def test_moods_are_exactly_the_music_genres() -> None:
    assert set(get_args(MusicMood)) == set(GENRES)


def test_valid_plan_and_its_views() -> None:
    plan = ScenePlan.model_validate(
        _plan(["The moon pulls the sea.", "Twice a day the tide comes in."]),
        context={"max_words": 20},
    )
    assert plan.narration == "The moon pulls the sea. Twice a day the tide comes in."
    assert plan.word_count == 12
    assert plan.visual_prompts == ["the moon, a beach at night, ink"] * 2
    assert plan.broll_hints == ["slow pan", "slow pan"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_plan([]), "scenes"),
        (_plan(["   "]), "scenes.0.sentence"),
        (_plan(["..."]), "sentence has no words"),
        (_plan(["Fine."], mood="polka"), "mood"),
        (_plan(["Fine."], title=""), "title"),
        ({**_plan(["Fine."]), "extra": 1}, "extra"),
    ],
)
def test_invalid_plans_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ScenePlan.model_validate(data)


def test_word_limit_allows_fifteen_percent() -> None:
    sentence = "one two three four five six seven eight nine ten."
    ScenePlan.model_validate(_plan([sentence] * 2), context={"max_words": 18})  # 20 <= 20
    with pytest.raises(ValidationError, match="narration is 20 words; the limit is 19"):
        ScenePlan.model_validate(_plan([sentence] * 2), context={"max_words": 17})


def test_parse_plan_cleans_sentences_and_names_errors() -> None:
    raw = json.dumps(_plan(["**Narrator:** The moon pulls the sea. \U0001f30a", "[waves] Hi."]))
    plan = parse_plan("Here it is:\n```json\n" + raw + "\n```", max_words=None)
    assert plan.sentences == ["The moon pulls the sea.", "Hi."]
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_plan('{"title": ', max_words=None)
    with pytest.raises(ValueError, match=r"scenes\.0\.sentence"):
        parse_plan(json.dumps(_plan(["\U0001f30a"])), max_words=None)


def test_json_schema_is_closed_and_lists_the_moods() -> None:
    schema = plan_json_schema()
    text = json.dumps(schema)
    assert "minLength" not in text and "maxLength" not in text and "minItems" not in text
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"title", "scenes", "mood", "thumbnail_prompt"}
    assert schema["properties"]["mood"]["enum"] == list(get_args(MusicMood))
    for definition in schema["$defs"].values():
        assert definition["additionalProperties"] is False
        assert set(definition["required"]) == set(definition["properties"])


SCRIPT = (
    "Narrator: Bread needs only flour, water, yeast and salt. *smiles* Knead the dough in a "
    "warm kitchen until it is smooth. Let it rise overnight, then bake it in a hot oven. "
    "Enjoy!"
)


def test_script_plan_is_verbatim_and_deterministic() -> None:
    plan = plan_for_script(SCRIPT)
    assert plan == plan_for_script(SCRIPT)  # same script, same plan
    assert plan.narration == VerbatimScript().write(SCRIPT)  # the user's words, cleaned only
    assert plan.sentences[0] == "Bread needs only flour, water, yeast and salt."
    assert plan.mood == "jazz"  # bread, bake, kitchen
    assert plan.scenes[1].visual.setting == "kitchen"
    assert plan.scenes[0].visual.subject == "bread flour water"
    assert plan.scenes[3].visual.subject == "enjoy"
    assert len({s.visual.style for s in plan.scenes}) == 1
    assert all(s.broll for s in plan.scenes)
    assert plan.title == "Bread Needs Only Flour, Water, Yeast and Salt"
    assert plan.thumbnail_prompt.startswith(plan.title)


def test_different_scripts_give_different_prompts() -> None:
    other = plan_for_script(
        "The internet splits data into packets. Routers pass them from computer to computer."
    )
    bread = plan_for_script(SCRIPT)
    assert other.mood == "electronic"
    assert set(other.visual_prompts).isdisjoint(bread.visual_prompts)
    assert other.scenes[0].visual.style != bread.scenes[0].visual.style


def test_script_plan_errors() -> None:
    with pytest.raises(InvalidInputError, match="script is empty"):
        plan_for_script("  ")
    with pytest.raises(InvalidInputError, match="no speakable text"):
        plan_for_script("\U0001f600 *waves*")


def test_narration_plan_limits() -> None:
    plan = plan_from_narration("Tell me about tides", "The moon pulls the sea.", max_words=10)
    assert plan.title == "Tides"
    with pytest.raises(InvalidInputError, match="narration is empty"):
        plan_from_narration("Tides", "   ", max_words=10)
    with pytest.raises(InvalidInputError, match="the limit is 3"):
        plan_from_narration("Tides", "The moon pulls the sea.", max_words=3)


class _CannedWriter:
    """A ScriptWriter returning fixed narration (stands in for a model in plan wiring)."""

    name = "canned"

    def __init__(self, text: str) -> None:
        self.text = text

    def write(self, prompt: str, *, max_words: int) -> str:
        return self.text


def test_plan_for_prompt_with_a_plain_writer() -> None:
    plan = plan_for_prompt(
        "Explain why volcanoes erupt", _CannedWriter("Magma rises. It erupts."), max_words=20
    )
    assert plan.sentences == ["Magma rises.", "It erupts."]
    assert plan.mood == "rock"
    with pytest.raises(BackendError, match="canned wrote an unusable plan"):
        plan_for_prompt("Volcanoes", _CannedWriter(""), max_words=20)
    with pytest.raises(InvalidInputError, match="prompt is empty"):
        plan_for_prompt(" ", _CannedWriter("x."), max_words=20)


def test_mood_and_title_rules() -> None:
    assert mood_for_text("nothing matches here") == "ambient"
    assert mood_for_text("study tips for exams") == "lofi"
    assert mood_for_text("the pyramids of ancient Egypt") == "classical"
    assert title_from_text("Explain why the sky is blue. More text.") == "Why the Sky Is Blue"
    demo = "Explain to a curious ten-year-old why the sky is blue during the day and turns red."
    assert title_from_text(demo) == "Why the Sky Is Blue During the Day"
    assert title_from_text("tell me about the NASA moon landing in 1969 and after") == (
        "The NASA Moon Landing in 1969 and After"
    )
