"""Text clean-up and segmentation for narration (pure Python, no model, no Dagster).

A narration script goes through three steps before speech synthesis:

1. :func:`validate_prompt` / :func:`validate_script` check what the user typed (length, not
   empty) and raise :class:`~avgen_dagster.errors.InvalidInputError` naming the problem.
2. :func:`clean_text` (in :mod:`avgen_dagster.backends.textclean`, re-exported here) turns
   LLM output or a user's script into plain speakable prose: no emojis, stage directions,
   markdown, speaker labels or URLs; normalised quotes and dashes.
3. :func:`split_segments` cuts the prose into sentence-aligned segments of at most
   ``max_chars`` characters, one TTS clip and one lip-sync segment each.

The sentence splitter is rule based (in the spirit of the Punkt and pySBD rules: a period
ends a sentence unless it follows a known abbreviation or a single-letter initial, and the
next word starts with a capital, a digit or a quote); it needs no downloaded data.
"""

from __future__ import annotations

import re

from avgen_dagster.backends.textclean import clean_text
from avgen_dagster.errors import InvalidInputError

__all__ = [
    "DEFAULT_MAX_PROMPT_CHARS",
    "DEFAULT_MAX_SCRIPT_CHARS",
    "clean_text",
    "count_words",
    "drop_unfinished_sentence",
    "split_segments",
    "split_sentences",
    "truncate_to_words",
    "validate_prompt",
    "validate_script",
]

DEFAULT_MAX_PROMPT_CHARS = 2000
"""Longest prompt accepted (characters)."""

DEFAULT_MAX_SCRIPT_CHARS = 6000
"""Longest user script accepted (characters): about 1000 words, 6-7 minutes of speech."""

# --- validation -----------------------------------------------------------------------------


def _validate(kind: str, text: object, max_chars: int) -> str:
    if not isinstance(text, str):
        raise InvalidInputError(f"{kind} must be text, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise InvalidInputError(f"{kind} is empty")
    if len(stripped) > max_chars:
        raise InvalidInputError(f"{kind} is {len(stripped)} characters; the limit is {max_chars}")
    return stripped


def validate_prompt(text: str, *, max_chars: int = DEFAULT_MAX_PROMPT_CHARS) -> str:
    """Check a user's prompt and return it stripped of surrounding whitespace.

    Args:
        text: The prompt as typed.
        max_chars: Longest accepted prompt, in characters (after stripping).

    Returns:
        The stripped prompt.

    Raises:
        InvalidInputError: ``"prompt is empty"`` for empty/blank text, or
            ``"prompt is N characters; the limit is M"`` when too long, or when not a str.
    """
    return _validate("prompt", text, max_chars)


def validate_script(text: str, *, max_chars: int = DEFAULT_MAX_SCRIPT_CHARS) -> str:
    """Check a user's own narration script and return it stripped.

    Besides the checks of :func:`validate_prompt`, the script must still contain speakable
    text after :func:`clean_text` (a script made only of emojis or stage directions is
    rejected).

    Args:
        text: The script as typed.
        max_chars: Longest accepted script, in characters (after stripping).

    Returns:
        The stripped script (not yet cleaned; clean it with :func:`clean_text`).

    Raises:
        InvalidInputError: ``"script is empty"``, ``"script is N characters; the limit is
            M"``, or ``"script has no speakable text ..."``.
    """
    stripped = _validate("script", text, max_chars)
    try:
        clean_text(stripped)
    except InvalidInputError as exc:
        raise InvalidInputError(
            "script has no speakable text after removing emojis, stage directions, "
            "markdown and links"
        ) from exc
    return stripped


_SENT_END_CHARS = ".!?"

# --- sentences and segments -----------------------------------------------------------------

# fmt: off
_ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "mx", "dr", "prof", "sr", "jr", "st", "mt", "ft", "vs", "approx",
    "dept", "inc", "ltd", "corp", "jan", "feb", "apr", "jun", "jul", "aug", "sep", "sept",
    "oct", "nov", "dec", "tue", "tues", "thu", "thur", "thurs", "fri", "gen", "lt", "sgt",
    "capt", "cmdr", "adm", "gov", "sen", "rev", "hon", "pres", "al", "cf", "ca", "e.g", "i.e",
    "a.m", "p.m", "u.s", "u.k", "e.u", "a.k.a", "ph.d", "b.c", "a.d",
})
# fmt: on
"""Periods after these words (lower case) never end a sentence. Words that are also common
English words at a sentence end ("sun", "sat", "no", "max") are left out, or listed in
:data:`_NUMBER_ABBREVIATIONS`."""

_NUMBER_ABBREVIATIONS = frozenset(
    {"no", "nos", "vol", "vols", "fig", "figs", "ch", "sec", "p", "pp", "op", "art"}
)
"""Abbreviations that do not end a sentence when a number follows ("No. 5", "p. 12")."""

# Candidate sentence ends: terminal punctuation, optional closing quotes/brackets, space.
_SENT_END = re.compile(r"[.!?]+[\"')\]]*(?=\s+)")
_NEXT_START = re.compile(r"\s+[\"'(\[]?[A-Z0-9\u00c0-\u00de]")


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences.

    A boundary is ``.``, ``!`` or ``?`` (possibly repeated, possibly followed by closing
    quotes or brackets) followed by whitespace and a word starting with a capital letter,
    a digit or an opening quote. A period after a known abbreviation ("Dr.", "e.g.",
    "a.m.") or a single-letter initial ("J. R. R. Tolkien") is not a boundary; decimals
    ("3.5") never are, as no whitespace follows the point.

    Args:
        text: One paragraph of prose (already cleaned; newlines are treated as spaces).

    Returns:
        Sentences, stripped, in order; empty list for blank text.
    """
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        return []
    sentences: list[str] = []
    start = 0
    for m in _SENT_END.finditer(text):
        end = m.end()
        if not _NEXT_START.match(text, end):
            continue
        punct = m.group(0)
        if punct.startswith(".") and not punct.startswith(".."):
            # The word the period ends ("Dr", "e.g", "J").
            word_m = re.search(r"([A-Za-z][A-Za-z.]*)$", text[start : m.start()])
            word = word_m.group(1).lower() if word_m else ""
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue
            if word in _NUMBER_ABBREVIATIONS and re.match(r"\s+\d", text[end:]):
                continue
        sentence = text[start:end].strip()
        if sentence:
            sentences.append(sentence)
        start = end
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


# Clause boundaries inside a sentence, strongest first: ";" / ":" / dash, then ",".
_CLAUSE_BREAKS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?<=[;:])\s+|\s+(?=\u2014)"),
    re.compile(r"(?<=,)\s+"),
)


def _split_at(text: str, pattern: re.Pattern[str]) -> list[str]:
    pieces: list[str] = []
    start = 0
    for m in pattern.finditer(text):
        piece = text[start : m.start()].strip()
        if piece:
            pieces.append(piece)
        start = m.end()
    rest = text[start:].strip()
    if rest:
        pieces.append(rest)
    return pieces


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    """Greedily join pieces with spaces into chunks of at most max_chars."""
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current} {piece}" if current else piece
        if len(candidate) <= max_chars:
            current = candidate
        else:
            if current:
                chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks


def _split_long(sentence: str, max_chars: int, level: int = 0) -> list[str]:
    """Split one over-long sentence: clauses first, then words, then characters."""
    if len(sentence) <= max_chars:
        return [sentence]
    if level < len(_CLAUSE_BREAKS):
        pieces = _split_at(sentence, _CLAUSE_BREAKS[level])
        if len(pieces) > 1:
            out: list[str] = []
            for piece in pieces:
                out.extend(_split_long(piece, max_chars, level + 1))
            return _pack(out, max_chars)
        return _split_long(sentence, max_chars, level + 1)
    words = sentence.split()
    if len(words) > 1:
        out = []
        for w in words:
            out.extend(_split_long(w, max_chars, level))
        return _pack(out, max_chars)
    # One word longer than max_chars: a hard cut is the only way to keep the bound.
    return [sentence[i : i + max_chars] for i in range(0, len(sentence), max_chars)]


def _best_cut(text: str, target: int, min_chars: int, max_chars: int) -> int | None:
    """Index of the space where text splits into two parts in [min_chars, max_chars].

    Prefers sentence ends, then clause punctuation, then any space, and among equals the
    one closest to ``target``.
    """
    best: tuple[int, int, int] | None = None
    for m in re.finditer(r" ", text):
        i = m.start()
        left, right = text[:i], text[i + 1 :]
        if not (min_chars <= len(left) <= max_chars and min_chars <= len(right) <= max_chars):
            continue
        prev = left[-1]
        rank = 0 if prev in _SENT_END_CHARS else 1 if prev in ",;:" or right[0] == "\u2014" else 2
        key = (rank, abs(i - target), i)
        if best is None or key < best:
            best = key
    return None if best is None else best[2]


def _merge_short(segments: list[str], min_chars: int, max_chars: int) -> list[str]:
    """Merge segments shorter than min_chars into a neighbour, rebalancing if needed."""
    segs = list(segments)
    changed = True
    while changed and len(segs) > 1:
        changed = False
        for i, seg in enumerate(segs):
            if len(seg) >= min_chars:
                continue
            neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(segs)]
            # Prefer a neighbour the fragment fits into whole; the smaller one first.
            neighbours.sort(key=lambda j: len(segs[j]))
            fits = [j for j in neighbours if len(segs[j]) + 1 + len(seg) <= max_chars]
            if fits:
                j = fits[0]
                a, b = min(i, j), max(i, j)
                segs[a : b + 1] = [f"{segs[a]} {segs[b]}"]
                changed = True
                break
            # Otherwise join with the smaller neighbour and cut the pair anew.
            j = neighbours[0]
            a, b = min(i, j), max(i, j)
            joined = f"{segs[a]} {segs[b]}"
            cut = _best_cut(joined, len(segs[a]), min_chars, max_chars)
            if cut is not None:
                segs[a : b + 1] = [joined[:cut], joined[cut + 1 :]]
                changed = True
                break
    return segs


def split_segments(text: str, *, max_chars: int = 220, min_chars: int = 20) -> list[str]:
    """Split prose into speakable segments, one TTS clip each.

    Sentences (see :func:`split_sentences`) are packed greedily into segments of at most
    ``max_chars`` characters. A sentence longer than ``max_chars`` is cut at clause
    boundaries (``;``, ``:``, `` — ``, then ``,``), then at word boundaries (and only a
    single word longer than ``max_chars`` is cut inside). A segment shorter than
    ``min_chars`` is merged into a neighbour when the result fits, else the pair is
    re-cut at the best boundary giving two segments of at least ``min_chars``. A text
    shorter than ``min_chars`` is one segment.

    Args:
        text: Cleaned prose (see :func:`clean_text`).
        max_chars: Longest segment, in characters (default 220, about 12-15 s of speech).
        min_chars: Shortest segment wanted, in characters (default 20, about 1 s).

    Returns:
        Non-empty segments whose concatenation with single spaces equals the
        whitespace-normalised input.

    Raises:
        InvalidInputError: for blank text, or when ``max_chars < 2 * min_chars`` or
            ``min_chars < 1``.
    """
    if min_chars < 1 or max_chars < 2 * min_chars:
        raise InvalidInputError(
            f"segment bounds are invalid: min_chars={min_chars}, max_chars={max_chars} "
            "(need min_chars >= 1 and max_chars >= 2 * min_chars)"
        )
    sentences = split_sentences(text)
    if not sentences:
        raise InvalidInputError("text is empty; there is nothing to split into segments")
    pieces: list[str] = []
    for s in sentences:
        pieces.extend(_split_long(s, max_chars))
    segments = _pack(pieces, max_chars)
    return _merge_short(segments, min_chars, max_chars)


# --- LLM output helpers ---------------------------------------------------------------------


def count_words(text: str) -> int:
    """Number of whitespace-separated tokens containing a letter or digit."""
    return sum(1 for w in text.split() if re.search(r"\w", w))


def drop_unfinished_sentence(text: str) -> str:
    """Drop a trailing sentence that does not end with ``.``, ``!`` or ``?``.

    LLM output cut by the token limit usually ends mid-sentence. If no sentence in the
    text is finished, the text is returned with a period appended (a fragment is still
    better than nothing; callers check the length).

    Args:
        text: Cleaned prose.

    Returns:
        Text ending with sentence punctuation (possibly followed by closing quotes).
    """
    text = text.strip()
    if not text:
        return text
    sentences = split_sentences(text)
    finished = re.compile(r"[.!?][\"')\]]*$")
    while sentences and not finished.search(sentences[-1]):
        sentences.pop()
    if sentences:
        return " ".join(sentences)
    return text.rstrip(",;:- \u2014") + "."


def truncate_to_words(text: str, max_words: int) -> str:
    """Keep whole sentences while the total stays within ``max_words`` words.

    The first sentence is always kept (cut at ``max_words`` words and closed with a period
    if it alone is too long).
    """
    sentences = split_sentences(text)
    kept: list[str] = []
    total = 0
    for s in sentences:
        n = count_words(s)
        if kept and total + n > max_words:
            break
        kept.append(s)
        total += n
    if kept and count_words(kept[0]) > max_words:
        words = kept[0].split()[:max_words]
        return " ".join(words).rstrip(",;:- \u2014") + "."
    return " ".join(kept)
