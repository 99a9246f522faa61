"""Script-quality measures: key terms and stems, on-topic, repeats, lists, chatter."""

from __future__ import annotations

import pytest

from avgen_dagster.backends.script_quality import (
    has_runaway_list,
    is_chatter,
    key_terms,
    repeated_sentences,
    score_script,
    stem,
    strip_chatter,
    topic_coverage,
)

DEMO = (
    "Explain to a curious ten-year-old why the sky is blue during the day and turns red and "
    "orange at sunset."
)


def test_key_terms_skip_instructions_and_stop_words() -> None:
    assert key_terms(DEMO) == ["sky", "blue", "day", "red", "orange", "sunset"]
    assert key_terms("How do volcanoes form and why do they erupt?") == [
        "volcanoes",
        "form",
        "erupt",
    ]
    assert key_terms("Explain it simply, please.") == []


def test_stems_match_inflections() -> None:
    assert stem("eruptions") == stem("erupt") == "erupt"
    assert stem("Travelling") == stem("travel")
    coverage, on_topic = topic_coverage(
        "How do volcanoes form and why do they erupt?", "A volcano erupts when magma rises."
    )
    assert coverage == pytest.approx(2 / 3) and on_topic


def test_on_topic_needs_half_of_the_key_terms() -> None:
    assert topic_coverage(DEMO, "The sky is blue by day and red at sunset.") == (
        pytest.approx(5 / 6),
        True,
    )
    assert topic_coverage(DEMO, "Little guys love being alive.") == (0.0, False)
    assert topic_coverage(DEMO, "The sky is big.")[1] is False  # 1 of 6
    assert topic_coverage("Explain it simply.", "Anything.") == (1.0, True)


@pytest.mark.parametrize(
    "sentence",
    [
        "Here's a rewritten version with additional context and explanation.",
        "I made changes such as rephrasing sentences to enhance clarity.",
        "Sure! Let's get started.",
        "As an AI, I cannot see the sky.",
        "I hope this helps!",
        "Let me know if you want a shorter version.",
        "Note: this narration is about 160 words long.",
        "This script is designed for young listeners.",
        "Here is a short narration for your video.",
        "I have rephrased the original text to be simpler.",
        "Here's a sample text with some practical study tips.",
        "Step-by-step on a scale is all I can do for you.",
        "Goodnight everyone out there!",
        "So there you go, my friend.",
        "I hope you've grown into a brave person after all.",
    ],
)
def test_chatter_is_detected(sentence: str) -> None:
    assert is_chatter(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "Sure enough, the sky turned red.",
        "Here's how it works.",
        "Of course, the sun is a star.",
        "The answer is Rayleigh scattering.",
        "Feel free to add blueberries to the batter.",
        "Learn 500 words a month with flash cards.",
        "I love watching the sunset.",
    ],
)
def test_narration_is_not_chatter(sentence: str) -> None:
    assert not is_chatter(sentence)


def test_strip_chatter_keeps_the_narration() -> None:
    text = "Sure! Here's a script for you. The moon pulls the sea. I hope this helps!"
    assert strip_chatter(text) == "The moon pulls the sea."


def test_repeats_and_lists() -> None:
    assert repeated_sentences("Cats purr. Cats purr! Dogs bark.") == 1
    assert (
        repeated_sentences(
            "Cats purr when they are happy and calm. Cats purr when they are calm and happy."
        )
        == 1
    )
    assert repeated_sentences("Cats purr when happy. Dogs bark when happy.") == 0
    assert has_runaway_list("You need flour, water, salt, yeast, sugar, butter, milk and eggs.")
    assert has_runaway_list("First mix. First knead. First rest. First bake. Then eat.")
    assert not has_runaway_list("Mix flour and water, then knead the dough. Bake it.")


def test_score_and_ranking() -> None:
    good = score_script("Why do cats purr?", "Cats purr when they feel safe and warm.", 8)
    assert good.acceptable and good.words == 8 and good.length_error == 0.0
    bad = score_script("Why do cats purr?", "Sure! Cats purr. Cats purr.", 8)
    assert bad.chatter == 1 and bad.repeated == 1 and not bad.acceptable
    assert bad.penalty > good.penalty
    off = score_script("Why do cats purr?", "Dogs bark loudly at night in the town.", 8)
    assert not off.on_topic and off.penalty > good.penalty
    with pytest.raises(ValueError, match="max_words"):
        score_script("x", "y", 0)
