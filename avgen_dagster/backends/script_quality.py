"""What makes a spoken script acceptable, measured: on-topic, length, repetition, chatter.

Pure Python (``snowballstemmer`` for English stems), no model, no Dagster. The embedded
script writer ranks its candidates with :func:`score_script` and removes assistant chatter
with :func:`strip_chatter`; ``benchmarks/script_quality.py`` reports the same measures.

Definitions (the benchmark's, stated once here):

- **Key terms** of a prompt (:func:`key_terms`): its words (letters only, lower case,
  hyphenated words split) of at least 3 letters that are neither English stop words
  (the Snowball English stop-word list plus common contractions) nor instruction words
  that say how to talk rather than what about ("explain", "tell", "simple", "kid",
  "ten-year-old"...: :data:`INSTRUCTION_WORDS`), de-duplicated by stem.
- **Stems**: the Snowball (Porter2) English stemmer (Porter 2001, snowballstem.org), so
  "erupt"/"eruption"/"erupts" and "tides"/"tide" match.
- **On-topic** (:func:`topic_coverage`): at least half of the prompt's key-term stems occur
  among the script's word stems (and at least one). A prompt without key terms counts as
  on-topic when the script is not empty.
- **Length error**: ``|words − max_words| / max_words``; within tolerance at ≤ 0.15.
- **Repeated sentence** (:func:`repeated_sentences`): a sentence whose normalised words
  (lower case, letters and digits) equal an earlier sentence's, or, for sentences of at
  least 4 words, whose word set has a Jaccard similarity ≥ 0.8 with an earlier one.
- **Runaway list** (:func:`has_runaway_list`): a sentence with 6 or more comma-separated
  items of at most 3 words each, or 4 or more consecutive sentences starting with the
  same word.
- **Chatter** (:func:`is_chatter`): a sentence that speaks as an assistant or about the
  script rather than as the narrator: "Sure!", "Here's a ...", "rewritten version",
  "I made changes", "As an AI", "I hope this helps", "Let me know", "Note:", word counts,
  "this script/narration ..." (:data:`CHATTER_PATTERNS`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

from avgen_dagster.backends.textproc import count_words, split_sentences

__all__ = [
    "CHATTER_PATTERNS",
    "INSTRUCTION_WORDS",
    "STOPWORDS",
    "ScriptScore",
    "is_chatter",
    "key_terms",
    "repeated_sentences",
    "score_script",
    "split_audience",
    "stem",
    "strip_chatter",
    "topic_coverage",
    "word_stems",
]


def _word_set(text: str) -> frozenset[str]:
    """The whitespace-separated words of ``text`` as a set."""
    return frozenset(text.split())


# fmt: off
STOPWORDS = _word_set("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its
itself just me more most my myself no nor not now of off on once only or other ought our ours
ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself yourselves
also yet may might must shall let lets isn aren wasn weren hasn haven hadn doesn don didn
won wouldn shan shouldn cannot couldn mustn one ones get gets got make makes made many much
way ways thing things something anything everything really well even still every like just
another everyone use uses used see new role turn turns matter matters
""")
"""English function words (the Snowball English stop-word list, snowballstem.org, plus
contraction stems and a few near-empty verbs/nouns)."""

INSTRUCTION_WORDS = _word_set("""
explain explains explaining describe describes tell telling give share write narrate talk
show teach teaching answer answers question questions simple simply simplest words word
short brief briefly quick quickly curious ten year years old kid kids child children
beginner beginners someone somebody people person video script narration story please
detail detailed step steps know knowing learn want need practical tip tips advice important
happen happened happens basics first
""")
"""Words of a prompt that say how or to whom to talk, not what about; never key terms."""
# fmt: on

CHATTER_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"^(?:sure|certainly|absolutely|okay|ok)\s*[!,.]|^great question\b",
        r"^here(?:'s| is| are)\s+(?:a|an|the|your|my|some)\s+(?:[\w-]+\s+){0,3}"
        r"(?:version|script|narration|rewrite|draft|response|voice-?over|paragraph|text|"
        r"sample)s?\b",
        r"\b(?:below|above) (?:is|are) (?:a|an|the|your|my)\b",
        r"\b(?:rewritten|revised|updated|improved|edited|shortened|expanded) "
        r"(?:version|script|text|narration|draft|paragraph)\b",
        r"\bI (?:have |'ve )?(?:made (?:some |a few |several )?changes|added|removed|rephrased|"
        r"revised|rewrote|rewritten|edited|replaced|changed)\b",
        r"\bI (?:have |'ve )?(?:kept|made|tried to (?:make|keep)) (?:it|the (?:script|text|"
        r"language|tone|narration|sentences))\b",
        r"\bchanges such as\b",
        r"\byou(?:'ve| have) got it right\b|\byou(?:'re| are) (?:absolutely |exactly )?right\b",
        r"\b(?:stay safe and|enjoy your day|have a (?:great|nice|good|wonderful) day)\b",
        r"\bas an ai\b|\blanguage model\b|\bI'm an ai\b|\bI am an ai\b",
        r"\b(?:I hope (?:this|that|you)\b|hope this helps|happy to help|"
        r"glad to help|thank you for (?:reading|your request|asking))\b",
        r"\b(?:let me know|feel free to (?:ask|reach out|contact|let me)|"
        r"if you have any (?:other |more |further )?questions)\b",
        r"^(?:note|p\.?s|disclaimer)\b\s*[:.]|\bplease note\b",
        r"\bword count\b|\b\d{2,4} words (?:long|or (?:less|fewer))\b",
        r"\b(?:this|the|my|your|our) (?:script|narration|rewrite|draft|voice-?over) "
        r"(?:is|was|has|uses|should|will|can|includes|aims|focuses|contains|provides|"
        r"explains|covers|keeps|is designed|is written)\b",
        r"\b(?:original|above) (?:text|script|version|passage|prompt)\b",
        r"\b(?:enhance|improve) (?:clarity|readability|flow)\b",
        r"\bI(?:'d| would) be happy to\b|\bI can help\b|\bI'll (?:rewrite|write)\b",
        r"\ball I can do for you\b|\bI(?:'m| am) going to help you\b|"
        r"\byou(?:'re| are) going to have to work with me\b",
        r"^(?:good ?night|goodbye|bye)\b|\bthere you (?:go|have it),? my friend\b",
    )
)
"""Sentences matching any of these are assistant chatter, not narration."""

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


@lru_cache(maxsize=1)
def _stemmer() -> snowballstemmer.stemmer:
    return snowballstemmer.stemmer("english")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Snowball English stem of ``word`` (lower-cased), e.g. ``"eruptions" -> "erupt"``."""
    return _stemmer().stemWord(word.lower())


def _words(text: str) -> list[str]:
    """Lower-case words (letters, inner apostrophes kept; hyphenated words split)."""
    return [w.lower().split("'")[0] for w in _WORD.findall(text)]


def word_stems(text: str) -> set[str]:
    """The set of Snowball stems of every word in ``text``."""
    return {stem(w) for w in _words(text) if w}


def key_terms(prompt: str) -> list[str]:
    """The prompt's key content words, in order, one per stem (see the module docstring).

    Example: "Explain to a curious ten-year-old why the sky is blue during the day" ->
    ``["sky", "blue", "day"]``.
    """
    seen: set[str] = set()
    terms: list[str] = []
    for w in _words(prompt):
        if len(w) < 3 or w in STOPWORDS or w in INSTRUCTION_WORDS:
            continue
        s = stem(w)
        if s in seen:
            continue
        seen.add(s)
        terms.append(w)
    return terms


def topic_coverage(prompt: str, script: str) -> tuple[float, bool]:
    """(fraction of key-term stems found in the script, on-topic?).

    On-topic: at least ``max(1, ceil(0.5 × n))`` of the ``n`` key-term stems occur in the
    script. With no key terms: coverage 1.0, on-topic iff the script has a word.
    """
    terms = key_terms(prompt)
    stems_in_script = word_stems(script)
    if not terms:
        return 1.0, bool(stems_in_script)
    hits = sum(1 for t in terms if stem(t) in stems_in_script)
    return hits / len(terms), hits >= max(1, math.ceil(0.5 * len(terms)))


def _norm_words(sentence: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", sentence.lower())


def repeated_sentences(text: str) -> int:
    """How many sentences repeat an earlier one (equal words, or Jaccard ≥ 0.8)."""
    earlier: list[tuple[tuple[str, ...], frozenset[str]]] = []
    count = 0
    for sentence in split_sentences(text):
        words = tuple(_norm_words(sentence))
        if not words:
            continue
        bag = frozenset(words)
        for prev_words, prev_bag in earlier:
            same = words == prev_words
            similar = (
                len(words) >= 4
                and len(prev_words) >= 4
                and len(bag & prev_bag) / len(bag | prev_bag) >= 0.8
            )
            if same or similar:
                count += 1
                break
        earlier.append((words, bag))
    return count


def has_runaway_list(text: str) -> bool:
    """True for a list-like run: ≥ 6 short comma items in a sentence, or ≥ 4 sentences
    in a row that start with the same word."""
    sentences = split_sentences(text)
    for sentence in sentences:
        items = [i for i in re.split(r",|\band\b", sentence) if i.strip()]
        short = sum(1 for i in items if 0 < count_words(i) <= 3)
        if len(items) >= 6 and short >= 6:
            return True
    run, prev = 0, None
    for sentence in sentences:
        words = _norm_words(sentence)
        first = words[0] if words else None
        run = run + 1 if first is not None and first == prev else 1
        prev = first
        if run >= 4:
            return True
    return False


def is_chatter(sentence: str) -> bool:
    """True when ``sentence`` is assistant chatter (matches :data:`CHATTER_PATTERNS`)."""
    s = sentence.strip().strip("\"'")
    return any(p.search(s) for p in CHATTER_PATTERNS)


def strip_chatter(text: str) -> str:
    """``text`` without its chatter sentences (may return an empty string)."""
    return " ".join(s for s in split_sentences(text) if not is_chatter(s))


_AUDIENCE_LEAD = re.compile(
    r"^\s*(?P<verb>explain|describe|tell|teach)(?: me| us)?(?: it)?\s+(?:to|for)\s+"
    r"(?P<who>(?:a|an|my|the|our)?\s*[\w' -]{1,40}?)\s*,?\s+"
    r"(?=(?:why|how|what|where|when|who|which|whether|about|that)\b)",
    re.IGNORECASE,
)
_AUDIENCE_TAIL = re.compile(
    r"(?:^|(?<=[.!?]))\s*(?:answer|explain|tell it|say it|describe it|write it)\s+"
    r"(?:to|for)\s+(?P<who>(?:a|an|my|the|our)?\s*[\w' -]{1,40}?)\s*[.!]?\s*$",
    re.IGNORECASE,
)


def split_audience(prompt: str) -> tuple[str, str | None]:
    """Separate who the narration is for from what it is about.

    ``"Explain to a curious ten-year-old why the sky is blue."`` ->
    ``("Explain why the sky is blue.", "a curious ten-year-old")``; a trailing
    ``"Answer for a child."`` / ``"Tell it to a curious kid."`` is removed the same way.

    Returns:
        (the prompt without the audience phrase, the audience or ``None``).
    """
    m = _AUDIENCE_LEAD.match(prompt)
    if m:
        rest = prompt[m.end() :]
        return f"{m.group('verb').capitalize()} {rest}", m.group("who").strip()
    m = _AUDIENCE_TAIL.search(prompt)
    if m and prompt[: m.start()].strip():
        return prompt[: m.start()].strip(), m.group("who").strip()
    return prompt, None


@dataclass(frozen=True)
class ScriptScore:
    """Quality measures of one script for one prompt (see the module docstring).

    Attributes:
        words: Word count (:func:`~avgen_dagster.backends.textproc.count_words`).
        length_error: ``|words − max_words| / max_words``.
        coverage: Fraction of the prompt's key-term stems in the script, 0–1.
        on_topic: Coverage rule met.
        repeated: Repeated-sentence count.
        runaway_list: A list-like run was found.
        chatter: Chatter-sentence count.
        topical_sentences: Fraction of sentences with at least one key-term stem, 0–1.
    """

    words: int
    length_error: float
    coverage: float
    on_topic: bool
    repeated: int
    runaway_list: bool
    chatter: int
    topical_sentences: float

    @property
    def acceptable(self) -> bool:
        """On-topic, within ±15 % of the length, no repeats, no list run, no chatter."""
        return (
            self.on_topic
            and self.length_error <= 0.15
            and self.repeated == 0
            and not self.runaway_list
            and self.chatter == 0
        )

    @property
    def penalty(self) -> float:
        """Lower is better: the order in which candidates are ranked.

        Weights: chatter 4 and repeats 3 per sentence, off-topic 3, list run 2, the
        length error beyond 15 % ×4, plus ``1 − coverage`` and ``1 − topical_sentences``
        as tie-breakers.
        """
        return (
            4.0 * self.chatter
            + 3.0 * self.repeated
            + (0.0 if self.on_topic else 3.0)
            + (2.0 if self.runaway_list else 0.0)
            + 4.0 * max(0.0, self.length_error - 0.15)
            + (1.0 - self.coverage)
            + (1.0 - self.topical_sentences)
        )


def score_script(prompt: str, script: str, max_words: int) -> ScriptScore:
    """Measure ``script`` against ``prompt`` and the word budget ``max_words`` (≥ 1).

    Raises:
        ValueError: ``max_words`` < 1.
    """
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words}")
    words = count_words(script)
    coverage, on_topic = topic_coverage(prompt, script)
    sentences = split_sentences(script)
    key_stems = {stem(t) for t in key_terms(prompt)}
    topical = (
        sum(1 for s in sentences if word_stems(s) & key_stems) / len(sentences)
        if sentences and key_stems
        else float(bool(sentences))
    )
    return ScriptScore(
        words=words,
        length_error=abs(words - max_words) / max_words,
        coverage=coverage,
        on_topic=on_topic,
        repeated=repeated_sentences(script),
        runaway_list=has_runaway_list(script),
        chatter=sum(1 for s in sentences if is_chatter(s)),
        topical_sentences=topical,
    )
