"""Tests of text clean-up, sentence splitting, segmentation and validation."""

from __future__ import annotations

import re

import pytest

from avgen_dagster.backends.textproc import (
    clean_text,
    count_words,
    drop_unfinished_sentence,
    split_segments,
    split_sentences,
    truncate_to_words,
    validate_prompt,
    validate_script,
)
from avgen_dagster.errors import InvalidInputError

LLM_OUTPUT = (
    "**Title: Why the Sky is Blue** \U0001f308\n\n"
    "# Introduction\n"
    "Narrator: Hello there! \U0001f60a *waves* Today we learn (smiling) about the sky [laughs].\n"
    "- Sunlight has many colors\n"
    "- Blue light scatters the most\n"
    "See [the NASA page](https://nasa.gov/sky) or https://example.com/x for more \u2014 "
    "it\u2019s \u201cfun\u201d. #science @skyfan\n"
    "```python\nprint('code')\n```\n"
    "HOST: Dr. Smith says the value is 3.5, e.g. the sky (which is huge) is *very* blue\u2026"
)


def test_clean_text_removes_llm_noise_and_keeps_words() -> None:
    out = clean_text(LLM_OUTPUT)
    assert "\n" not in out
    for junk in (
        "**",
        "#",
        "*",
        "[",
        "]",
        "http",
        "nasa.gov",
        "Title",
        "Introduction",
        "Narrator",
        "HOST",
        "waves",
        "smiling",
        "laughs",
        "print",
        "@",
        "\u201c",
        "\u2019",
        "\U0001f308",
        "\U0001f60a",
    ):
        assert junk not in out, junk
    assert out.startswith("Hello there! Today we learn about the sky.")
    # Bullets became sentences; link text kept; quotes normalised; aside kept with commas.
    assert "Sunlight has many colors. Blue light scatters the most." in out
    assert "the NASA page" in out
    assert 'it\'s "fun".' in out
    assert "Dr. Smith says the value is 3.5, e.g. the sky, which is huge, is very blue..." in out
    assert "  " not in out


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("(Music plays) Welcome back, friends.", "Welcome back, friends."),
        ("Hello *smiles*", "Hello."),
        ("The sky -- it is blue.", "The sky \u2014 it is blue."),
        ("The years 1990\u20132000 were great.", "The years 1990-2000 were great."),
        (
            "1. First point\n2. Second point\n\nSo that is it",
            "First point. Second point. So that is it.",
        ),
        ("It was a time of change\nand growth.", "It was a time of change and growth."),
        ("**Host:** Welcome to the show!!!", "Welcome to the show!"),
        ("Scientists at NASA (NASA) agree.", "Scientists at NASA (NASA) agree."),
        ("Wait , what ?", "Wait, what?"),
        ("It costs little (about 5 dollars).", "It costs little, about 5 dollars."),
        ("Thanks for watching (waves goodbye).", "Thanks for watching."),
        ("The sky is blue (mostly).", "The sky is blue."),
    ],
)
def test_clean_text_cases(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "   ", "\U0001f600\U0001f389", "[laughs] *waves* (sighs)", "https://example.com"]
)
def test_clean_text_nothing_speakable_raises(raw: str) -> None:
    with pytest.raises(InvalidInputError, match="no speakable"):
        clean_text(raw)


def test_split_sentences_respects_abbreviations_and_decimals() -> None:
    text = (
        "Dr. Smith measured 3.5 meters, e.g. the tall one. "
        "Mr. J. R. Jones agreed with No. 5 and the sun. "
        'Was it 2.75 a.m. then? "Yes," she said. It ended.'
    )
    assert split_sentences(text) == [
        "Dr. Smith measured 3.5 meters, e.g. the tall one.",
        "Mr. J. R. Jones agreed with No. 5 and the sun.",
        "Was it 2.75 a.m. then?",
        '"Yes," she said.',
        "It ended.",
    ]


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def test_split_segments_packs_sentences_within_bounds() -> None:
    sentences = [f"Sentence number {i} talks about the sky and the sun." for i in range(12)]
    text = " ".join(sentences)
    segs = split_segments(text, max_chars=120, min_chars=20)
    assert len(segs) > 1
    assert all(20 <= len(s) <= 120 for s in segs)
    assert " ".join(segs) == _norm(text)
    # Sentence-aligned: every segment ends a sentence.
    assert all(s.endswith(".") for s in segs)


def test_split_segments_long_sentence_clauses_then_words() -> None:
    long = (
        "This is a very long sentence, with many clauses, that goes on and on; it keeps "
        "going \u2014 and going, and going until it is far longer than the maximum number "
        "of characters allowed for one segment of narration in the video"
    )
    segs = split_segments(long + ".", max_chars=60, min_chars=15)
    assert all(15 <= len(s) <= 60 for s in segs), segs
    assert " ".join(segs) == _norm(long + ".")
    assert segs[0] == "This is a very long sentence, with many clauses,"
    assert segs[1].startswith("that goes on and on;")
    # A run without punctuation is cut between words, never inside one.
    words = set(long.replace(",", "").replace(";", "").replace(".", "").split())
    for s in segs:
        for w in s.replace(",", "").replace(";", "").replace(".", "").split():
            assert w in words


def test_split_segments_merges_short_trailing_fragment() -> None:
    text = "The sky looks blue because air scatters blue light more than red light. Yes."
    segs = split_segments(text, max_chars=220, min_chars=20)
    assert segs == [text]
    # When the neighbour is full, the pair is re-cut so no piece is below min_chars.
    first = "a" * 5 + " " + "word " * 14 + "end."  # 79 chars
    segs = split_segments(first + " Yes.", max_chars=80, min_chars=20)
    assert all(20 <= len(s) <= 80 for s in segs), segs
    assert " ".join(segs) == first + " Yes."


def test_split_segments_short_script_is_one_segment() -> None:
    assert split_segments("Hi.") == ["Hi."]
    with pytest.raises(InvalidInputError):
        split_segments("   ")
    with pytest.raises(InvalidInputError, match="min_chars"):
        split_segments("Hello there.", max_chars=30, min_chars=20)


def test_validate_prompt_and_script() -> None:
    assert validate_prompt("  Why is the sky blue?  ") == "Why is the sky blue?"
    with pytest.raises(InvalidInputError, match=r"^prompt is empty$"):
        validate_prompt(" \n ")
    with pytest.raises(InvalidInputError, match=r"^prompt is 11 characters; the limit is 10$"):
        validate_prompt("x" * 11, max_chars=10)
    with pytest.raises(InvalidInputError, match=r"^script is empty$"):
        validate_script("")
    with pytest.raises(InvalidInputError, match="script is 6001 characters; the limit is 6000"):
        validate_script("y" * 6001)
    with pytest.raises(InvalidInputError, match="no speakable"):
        validate_script("\U0001f600 [laughs]")
    assert validate_script(" Hello. ") == "Hello."


def test_llm_helpers() -> None:
    assert drop_unfinished_sentence("One two. Three four and") == "One two."
    assert drop_unfinished_sentence("no end at all,") == "no end at all."
    assert count_words("Hello, world \u2014 again.") == 3
    text = "One two three. Four five six. Seven eight nine."
    assert truncate_to_words(text, 7) == "One two three. Four five six."
    assert truncate_to_words("a b c d e f.", 3) == "a b c."
