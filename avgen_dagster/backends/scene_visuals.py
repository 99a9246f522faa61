"""Deterministic visuals for narration: a visual prompt, b-roll hint and music mood per text.

Used when no LLM writes the plan's visuals: for a user's own script, and for the embedded
SmolLM2 (a 135M model asked for a whole JSON plan writes worse narration and takes several
times longer; see :mod:`avgen_dagster.backends.scene_plan`). Pure Python, no model.

Rules (same text in → same prompts out, on any machine):

- **Words**: letters only, lower case; content words are those that are not stop words
  (:data:`~avgen_dagster.backends.script_quality.STOPWORDS`), filler verbs and adjectives
  (:data:`FILLER_WORDS`) or adverbs in "-ly" (6+ letters), at least 3 letters.
- **Setting**: the sentence's first place word (:data:`PLACE_WORDS`: sky, ocean, kitchen,
  city...) plus its first time-of-day or weather word (:data:`TIME_WORDS`: sunset, night,
  rain...), e.g. "sky at sunset"; without a place word, the narration's first place word;
  without any, "a setting that suits <topic words>".
- **Subject**: the sentence's first three other content words, in order ("blue light
  scattering"); a sentence without any borrows the previous scene's subject, or the topic's.
- **Style**: one per music mood (:data:`STYLE_BY_MOOD`).
- **Mood** (:func:`mood_for_text`): the music genre whose keyword stems
  (:data:`MOOD_KEYWORDS`) occur most often in the text; ties go to the earlier genre in
  :data:`MOODS`; no match gives ``"ambient"``.
- **B-roll hint**: one of five camera moves (:data:`BROLL_MOVES`), picked by a SHA-256
  hash of the sentence, filled with the subject and setting.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Literal, get_args

from avgen_dagster.backends.script_quality import STOPWORDS, key_terms, split_audience, stem

__all__ = [
    "BROLL_MOVES",
    "FILLER_WORDS",
    "MOODS",
    "MOOD_KEYWORDS",
    "PLACE_WORDS",
    "STYLE_BY_MOOD",
    "TIME_WORDS",
    "MusicMood",
    "broll_hint",
    "content_words",
    "fallback_setting_for",
    "mood_for_text",
    "title_from_text",
    "visual_for_sentence",
]

MusicMood = Literal["ambient", "lofi", "rock", "electronic", "jazz", "classical", "pop"]
"""A plan's music mood: exactly the genres of :data:`avgen_dagster.backends.music.GENRES`."""

MOODS: tuple[str, ...] = get_args(MusicMood)


def _word_set(text: str) -> frozenset[str]:
    """The whitespace-separated words of ``text`` as a set."""
    return frozenset(text.split())


# fmt: off
MOOD_KEYWORDS: dict[str, tuple[str, ...]] = {
    "ambient": ("sky", "space", "star", "planet", "ocean", "sea", "nature", "forest", "calm",
                "sleep", "meditation", "rain", "cloud", "moon", "light", "breath", "relax",
                "water", "tide", "rainbow", "galaxy", "universe", "photosynthesis", "plant"),
    "lofi": ("study", "exam", "homework", "focus", "student", "read", "note", "learn",
             "vocabulary", "memory", "school", "class", "revise", "concentrate", "desk"),
    "rock": ("volcano", "erupt", "sport", "race", "adventure", "storm", "energy", "power",
             "exercise", "workout", "climb", "extreme", "fire", "engine", "earthquake"),
    "electronic": ("internet", "computer", "data", "technology", "software", "robot", "code",
                   "digital", "battery", "phone", "network", "password", "electric", "chip",
                   "machine", "ai", "program", "online"),
    "jazz": ("cook", "recipe", "food", "bread", "pasta", "bake", "kitchen", "coffee", "city",
             "restaurant", "travel", "trip", "cafe", "dinner", "breakfast", "pancake", "wine"),
    "classical": ("history", "ancient", "empire", "king", "queen", "century", "war", "roman",
                  "egypt", "pyramid", "museum", "art", "paint", "invention", "print", "castle",
                  "medieval", "emperor", "dinosaur"),
    "pop": ("fun", "party", "dance", "happy", "kid", "cat", "dog", "pet", "birthday", "game",
            "friend", "celebrate", "toy", "play", "summer"),
}
"""Keywords (stemmed when compared) that vote for each music mood."""

PLACE_WORDS = _word_set("""
sky ocean sea beach coast island mountain mountains volcano forest jungle desert river lake
city street town village kitchen classroom library laboratory lab space planet earth garden
farm field park road station airport hospital gym home house room office school museum
castle temple market restaurant cafe cave underwater atmosphere universe galaxy bakery
workshop stadium harbor harbour bridge temple pyramid
""")
"""Words that name where a scene takes place."""

TIME_WORDS = _word_set("""
sunset sunrise dawn dusk night midnight morning evening afternoon noon day daytime winter
summer autumn spring rain storm snow fog
""")
"""Time-of-day, season and weather words that colour a setting."""

FILLER_WORDS = _word_set("""
appear appears appeared happen happens happened make makes made making called known help
helps helped mean means become becomes allow allows get gets give gives go goes going come
comes take takes taking look looks looked seem seems want need needs keep keeps start
starts try tries think know see sees say says tell tells find finds put puts use uses used
using call lot lots little big small great good best better important different simple
really actually always never sometimes often usually also even still just maybe kind sort
part thing things way ways time times people someone something everyone everything first
next last new many much another each other such there here today now then why how what let
lets answer question explain example course sure occur occurs occurred result results
reality process phenomenon fact cause causes caused create creates created include includes
contain contains depend depends pass passes reach reaches became
""")
"""Common verbs, adjectives and adverbs that make poor picture subjects."""
# fmt: on

STYLE_BY_MOOD: dict[str, str] = {
    "ambient": "soft watercolor illustration, calm pastel light",
    "lofi": "cozy lo-fi illustration, warm lamp light",
    "rock": "bold high-contrast photograph, dramatic light",
    "electronic": "neon digital art, glowing lines",
    "jazz": "warm cinematic photograph, evening light",
    "classical": "classical oil painting, golden light",
    "pop": "bright colorful cartoon illustration",
}
"""The visual style of every scene of a plan, by its music mood."""

BROLL_MOVES: tuple[str, ...] = (
    "slow zoom in on {subject}",
    "gentle pan across {setting}",
    "slow pull back from {subject} to reveal {setting}",
    "close-up detail of {subject}",
    "tracking shot through {setting}",
)
"""B-roll camera moves; ``{subject}`` and ``{setting}`` are filled in."""

_WORD = re.compile(r"[A-Za-z]+")


def _lower_words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


_NOUNS_IN_LY = _word_set("family assembly butterfly supply anomaly monopoly italy")


def _is_adverb(word: str) -> bool:
    """Words of 6+ letters ending in "ly" (gradually, quickly), a few nouns excepted."""
    return len(word) >= 6 and word.endswith("ly") and word not in _NOUNS_IN_LY


def content_words(text: str) -> list[str]:
    """The content words of ``text`` in order (see the module docstring), duplicates kept."""
    return [
        w
        for w in _lower_words(text)
        if len(w) >= 3 and w not in STOPWORDS and w not in FILLER_WORDS and not _is_adverb(w)
    ]


def mood_for_text(text: str) -> MusicMood:
    """The music mood whose keywords occur most often in ``text`` (ties: earlier genre)."""
    stems = [stem(w) for w in _lower_words(text)]
    counts = {mood: 0 for mood in MOODS}
    for mood, words in MOOD_KEYWORDS.items():
        keys = {stem(w) for w in words}
        counts[mood] = sum(1 for s in stems if s in keys)
    best = max(MOODS, key=lambda m: (counts[m], -MOODS.index(m)))
    return best if counts[best] > 0 else "ambient"  # type: ignore[return-value]


def _setting_of(words: Sequence[str]) -> str | None:
    place = next((w for w in words if w in PLACE_WORDS), None)
    when = next((w for w in words if w in TIME_WORDS), None)
    if place and when:
        return (
            f"{place} at {when}"
            if when not in {"rain", "storm", "snow", "fog"}
            else (f"{place} in the {when}")
        )
    if place:
        return place
    return f"landscape at {when}" if when else None


def visual_for_sentence(
    sentence: str, *, fallback_setting: str, fallback_subject: str, style: str
) -> tuple[str, str, str]:
    """(subject, setting, style) for one sentence (see the module docstring).

    Args:
        sentence: One narration sentence.
        fallback_setting: Used when the sentence names no place or time.
        fallback_subject: Used when the sentence has no content words.
        style: The plan's style (:data:`STYLE_BY_MOOD`).
    """
    words = content_words(sentence)
    setting = _setting_of(words) or fallback_setting
    subject_words: list[str] = []
    for w in words:
        if w in PLACE_WORDS or w in TIME_WORDS or w in subject_words:
            continue
        subject_words.append(w)
        if len(subject_words) == 3:
            break
    subject = " ".join(subject_words) if subject_words else fallback_subject
    return subject, setting, style


def fallback_setting_for(text: str, topic: str) -> str:
    """The narration's first setting, else "a setting that suits <topic key terms>"."""
    found = _setting_of(content_words(text))
    if found:
        return found
    terms = key_terms(topic)[:3] or content_words(text)[:3] or ["the story"]
    return "a setting that suits " + " ".join(terms)


def broll_hint(sentence: str, subject: str, setting: str) -> str:
    """A camera move for the sentence's b-roll clip (picked by a hash of the sentence)."""
    digest = hashlib.sha256(sentence.strip().lower().encode("utf-8")).digest()
    move = BROLL_MOVES[digest[0] % len(BROLL_MOVES)]
    return move.format(subject=subject, setting=setting)


_SMALL_WORDS = _word_set("""
a an and as at but by for in of on or the to vs via
""")
_TRAILING_WORDS = _word_set("is are was were be with from into during about that which who")
_INSTRUCTION_LEAD = re.compile(
    r"^\s*(?:please\s+)?(?:explain|describe|tell(?: me| us)?(?: about)?|give(?: me| us)?|"
    r"share|write(?: about)?|talk about|teach(?: me| us)?)\s+",
    re.IGNORECASE,
)


def title_from_text(text: str, *, max_words: int = 8) -> str:
    """A short title from a prompt or a script's first sentence.

    Drops an audience ("to a curious ten-year-old") and a leading instruction ("Explain",
    "Tell me about"...), keeps the first sentence, at most ``max_words`` words without
    trailing small words, in title case (small words lower case inside).
    ``"Explain to a child why the sky is blue."`` -> ``"Why the Sky Is Blue"``.
    """
    first = re.split(r"(?<=[.!?])\s+", split_audience(text.strip())[0], maxsplit=1)[0]
    first = _INSTRUCTION_LEAD.sub("", first).strip().rstrip(".!?:;,")
    words = first.split()[:max_words] or ["Untitled"]
    while len(words) > 1 and words[-1].lower().strip(",;:") in _SMALL_WORDS | _TRAILING_WORDS:
        words.pop()
    out = []
    for i, w in enumerate(words):
        lower = w.lower()
        if i and lower in _SMALL_WORDS:
            out.append(lower)
        elif w.isupper() and len(w) > 1:
            out.append(w)
        else:
            out.append(w[:1].upper() + w[1:])
    return " ".join(out).rstrip(",;:-")
