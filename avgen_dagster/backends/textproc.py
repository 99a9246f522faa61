"""Text clean-up and segmentation for narration (pure Python, no model, no Dagster).

A narration script goes through three steps before speech synthesis:

1. :func:`validate_prompt` / :func:`validate_script` check what the user typed (length, not
   empty) and raise :class:`~avgen_dagster.errors.InvalidInputError` naming the problem.
2. :func:`clean_text` turns LLM output or a user's script into plain speakable prose: no
   emojis, stage directions, markdown, speaker labels or URLs; normalised quotes and dashes.
3. :func:`split_segments` cuts the prose into sentence-aligned segments of at most
   ``max_chars`` characters, one TTS clip and one lip-sync segment each.

The sentence splitter is rule based (in the spirit of the Punkt and pySBD rules: a period
ends a sentence unless it follows a known abbreviation or a single-letter initial, and the
next word starts with a capital, a digit or a quote); it needs no downloaded data.
"""

from __future__ import annotations

import re
import unicodedata

import emoji

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


# --- cleaning -------------------------------------------------------------------------------

_QUOTES = str.maketrans(
    {
        "\u201c": '"',  # left double quotation mark
        "\u201d": '"',  # right double quotation mark
        "\u201e": '"',  # double low-9
        "\u201f": '"',
        "\u00ab": '"',  # guillemets
        "\u00bb": '"',
        "\u2033": '"',
        "\u2018": "'",  # left single quotation mark
        "\u2019": "'",  # right single quotation mark / apostrophe
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u2039": "'",
        "\u203a": "'",
        "`": "'",
        "\u00a0": " ",  # no-break space
        "\u2007": " ",
        "\u202f": " ",
        "\u2009": " ",
        "\u200a": " ",
        "\u2026": "...",  # ellipsis
        "\u2010": "-",  # hyphen
        "\u2011": "-",  # non-breaking hyphen
        "\u2212": "-",  # minus sign
    }
)
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\ufe0f\ufe0e]")

_CODE_FENCE = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`\n]*)`")
_MD_IMAGE = re.compile(r"!\[[^\]\n]*\]\([^)\n]*\)")
_MD_LINK = re.compile(r"\[([^\]\n]+)\]\((?:[^)\n]*)\)")
_URL = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"')\]]+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>\n]*>")
_HASHTAG = re.compile(r"(?<![\w&])#[A-Za-z_]\w*")
_HANDLE = re.compile(r"(?<![\w.])@[A-Za-z_]\w*")

_HEADING = re.compile(r"^\s{0,3}#{1,6}(?:\s.*)?$")
_SETEXT_UNDERLINE = re.compile(r"^\s*(?:=+|-+)\s*$")
_HRULE = re.compile(r"^\s*(?:[-*_]\s*){3,}$")
_BULLET = re.compile(r"^\s*(?:[-*+\u2022\u25cf\u25aa\u2023\u2043]|\d{1,3}[.)])\s+")
_BLOCKQUOTE = re.compile(r"^\s*>+\s?")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")

_ROLE_WORDS = (
    r"narrator|narration|host|co-host|speaker(?:\s+\d+|\s+[A-Z])?|presenter|announcer|"
    r"voice[- ]?over|vo|guest|interviewer|interviewee|teacher|student|assistant|ai|user|"
    r"script|person\s+[A-Z\d]|character|reporter|anchor|moderator|instructor|guide|"
    r"storyteller|expert|scientist|kid|child|mom|dad"
)
# A role label ("Narrator:", "**Host**:", "[Narrator]:") at the start of a line or after a
# sentence end, or a screenplay-style ALL-CAPS name ("JOHN:").
_SPEAKER_LABEL = re.compile(
    r"(?:(?<=^)|(?<=\n)|(?<=[.!?]\s))[ \t]*(?:\*\*|__)?"
    r"(?:(?i:" + _ROLE_WORDS + r")|[A-Z][A-Z'\-]{1,20}(?:\s[A-Z][A-Z'\-]{1,20})?)"
    r"(?:\s*\([^)\n]{0,40}\))?(?:\*\*|__)?\s*:(?:\*\*|__)?(?=\s|$)"
)
_TITLE_LINE = re.compile(r"^\s*(?:\*\*|__)?\s*title\s*:.*$", re.IGNORECASE)

_SQUARE = re.compile(r"\[[^\[\]\n]*\]")
_CURLY = re.compile(r"\{[^{}\n]*\}")
_PAREN = re.compile(r"\(([^()\n]*)\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", re.DOTALL)
_STAR = re.compile(r"\*(?=\S)([^*\n]+?)(?<=\S)\*")
_UNDERSCORE_EM = re.compile(r"(?<![\w])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w])")
_STRIKE = re.compile(r"~~(.+?)~~")

_DIRECTION_WORDS = re.compile(
    r"^(?:laugh|chuckl|giggl|smil|grin|sigh|paus|whisper|shout|wav|nod|clear|cough|"
    r"music|sound|applause|beat|silence|excit|enthusiast|chee|gasp|wink|point|gestur|"
    r"look|turn|lean|sfx|fx|intro|outro|cut|scene|fade|upbeat|soft|dramatic|camera|"
    r"on[- ]screen|voice|tone|background|end|begin|start)",
    re.IGNORECASE,
)

_SENT_END_CHARS = ".!?"


def _standalone(text: str, start: int, end: int, *, sentence_end: bool = True) -> bool:
    """True when text[start:end] starts a line/sentence, or (``sentence_end``) ends one."""
    before = text[:start].rstrip(" \t")
    after = text[end:].lstrip(" \t")
    at_start = not before or before[-1] in "\n.!?:;\"'"
    at_end = not after or after[0] in "\n.!?"
    return at_start or (sentence_end and at_end)


def _remove_parenthetical(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        inner = m.group(1).strip()
        if not inner:
            return " "
        words = inner.split()
        acronym = len(words) == 1 and inner.isupper() and len(inner) >= 2
        if acronym:
            return m.group(0)
        looks_direction = (
            # An aside at a sentence end ("(about 5 dollars).") is kept, unlike "*waves*."
            _standalone(text, m.start(), m.end(), sentence_end=False)
            or (len(words) == 1 and inner.replace("-", "").isalpha())
            or bool(_DIRECTION_WORDS.match(inner))
        )
        if looks_direction:
            return " "
        # A real aside: speak it between commas.
        return f", {inner},"

    prev = None
    while prev != text:  # innermost first, so nested parentheses also go
        prev = text
        text = _PAREN.sub(repl, text)
    return text


def _remove_asterisk_spans(text: str) -> str:
    """Single-asterisk spans: stage directions when standalone, else emphasis (keep)."""

    def repl(m: re.Match[str]) -> str:
        if _standalone(text, m.start(), m.end()):
            return " "
        return m.group(1)

    return _STAR.sub(repl, text)


def _clean_lines(text: str) -> str:
    """Line-level markdown: headings, rules, bullets, quotes, tables, title lines."""
    out: list[str] = []
    for raw in text.split("\n"):
        line = raw
        if _HEADING.match(line) or _HRULE.match(line) or _TABLE_RULE.match(line):
            out.append("")
            continue
        if _SETEXT_UNDERLINE.match(line) and out and out[-1].strip():
            out[-1] = ""  # "Title\n=====": the title line is a heading too
            out.append("")
            continue
        if _TITLE_LINE.match(line):
            out.append("")
            continue
        line = _BLOCKQUOTE.sub("", line)
        is_item = bool(_BULLET.match(line))
        line = _BULLET.sub("", line)
        if "|" in line and line.strip().startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|") if c.strip()]
            line = ", ".join(cells)
            is_item = True
        line = line.strip()
        if is_item and line:
            # A list item is its own sentence once the lines are joined.
            out.append("")
            out.append(line)
            out.append("")
        else:
            out.append(line)
    return "\n".join(out)


def _join_paragraphs(text: str) -> str:
    """Join lines: paragraphs (blank-line separated) end with a period if they lack one."""
    paragraphs = re.split(r"\n\s*\n", text)
    parts: list[str] = []
    for para in paragraphs:
        p = " ".join(line.strip() for line in para.split("\n") if line.strip())
        p = p.strip()
        if not p:
            continue
        if not re.search(r"[.!?][\"')]*$", p):
            p = p.rstrip(",;:- ") + "."
        parts.append(p)
    return " ".join(parts)


def _tidy_punctuation(text: str) -> str:
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)  # no space before punctuation
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)  # ", ," -> ","
    text = re.sub(r"[,;:]\s*([.!?])", r"\1", text)  # ", ." -> "."
    text = re.sub(r"([.!?])\s*[,;:]", r"\1", text)  # ". ," -> "."
    text = re.sub(r"(?<!\.)\.\s*\.(?!\.)", ".", text)  # ". ." -> "." (not an ellipsis)
    text = re.sub(r"([!?])\1+", r"\1", text)  # "!!!" -> "!"
    text = re.sub(r"\.{4,}", "...", text)
    text = re.sub(r"\(\s*\)|\[\s*\]|\"\s*\"", " ", text)  # empty brackets / quotes
    text = re.sub(r"([,;:.!?])(?=[A-Za-z\"])", r"\1 ", text)  # space after punctuation
    # ...but not inside decimals, abbreviations like e.g. or times like 3:30.
    text = re.sub(r"(\d)([.,:]) (\d)", r"\1\2\3", text)
    text = re.sub(r"\b([a-zA-Z])\. ([a-zA-Z])\.", r"\1.\2.", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^[\s,.;:!?\-\u2014]+", "", text)  # no leading punctuation
    return text.strip()


def clean_text(text: str) -> str:
    """Turn LLM output or a user's script into plain, speakable prose.

    Removes: emojis (the ``emoji`` package's database), code fences and HTML tags, URLs,
    e-mail addresses, hashtags and @handles, markdown (headings, horizontal rules, bullets,
    numbered items, block quotes, table rules, bold/italic/strike markers, inline code ticks; links
    become their link text, images vanish), stage directions (``[laughs]``, ``{beat}``,
    ``*waves*`` and ``(smiling)``), speaker labels (``Narrator:``, ``**Host:**``,
    ``JOHN:``) and "Title: ..." lines.

    Keeps: words, sentence punctuation, apostrophes; a real parenthetical aside
    ("the sky (which is huge) is blue") is kept between commas. Heuristics: a parenthesis
    or single-asterisk span is a stage direction when it stands alone (at a line start or
    after a sentence end; for asterisks also at a sentence end), when it is one word, or
    when it starts with a typical direction word (laughs, smiling, pause, music ...); an
    all-caps acronym in parentheses ("(NASA)") is kept. Markdown heading lines are dropped
    (not spoken).

    Normalises: typographic quotes to ``"`` and ``'``, the ellipsis character to ``...``,
    en/em dashes and ``--`` between words to `` — ``, an en dash between digits to ``-``,
    Unicode to NFKC, whitespace runs to one space, list items and paragraphs to sentences
    (a period is added where one is missing).

    Args:
        text: Any text.

    Returns:
        One line of prose (no newlines).

    Raises:
        InvalidInputError: when nothing speakable remains.
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"text must be a str, got {type(text).__name__}")
    t = text.replace("\r\n", "\n").replace("\r", "\n")
    t = _ZERO_WIDTH.sub("", t)
    t = _CODE_FENCE.sub("\n", t)
    t = _INLINE_CODE.sub(r"\1", t)
    t = emoji.replace_emoji(t, replace=" ")
    t = unicodedata.normalize("NFKC", t)
    t = t.translate(_QUOTES)
    t = _HTML_TAG.sub(" ", t)
    t = _MD_IMAGE.sub(" ", t)
    t = _MD_LINK.sub(r"\1", t)
    t = _URL.sub(" ", t)
    t = _EMAIL.sub(" ", t)
    t = _clean_lines(t)
    # Dashes: between digits a hyphen, as punctuation a spaced em dash.
    t = re.sub(r"(\d)\s*[\u2012\u2013]\s*(\d)", r"\1-\2", t)
    t = re.sub(r"\s*(?:[\u2012\u2013\u2014\u2015]+|(?<=\s)-{1,2}(?=\s)|-{2,3})\s*", " \u2014 ", t)
    t = _SPEAKER_LABEL.sub(" ", t)
    t = _SQUARE.sub(" ", t)
    t = _CURLY.sub(" ", t)
    t = _STRIKE.sub(r"\1", t)
    t = _BOLD.sub(r"\2", t)
    t = _remove_asterisk_spans(t)
    t = _UNDERSCORE_EM.sub(r"\1", t)
    t = _remove_parenthetical(t)
    t = _SPEAKER_LABEL.sub(" ", t)  # labels uncovered by removing bold markers
    t = _HASHTAG.sub(" ", t)
    t = _HANDLE.sub(" ", t)
    t = t.replace("*", " ").replace("#", " ").replace("_", " ")
    t = re.sub(r"[<>|\\^~{}\[\]]", " ", t)
    t = _join_paragraphs(t)
    t = re.sub(r"\s*\u2014\s*", " \u2014 ", t)
    t = _tidy_punctuation(t)
    t = re.sub(r"(?:\s*\u2014\s*)+([.!?,;:])", r"\1", t)  # a dash before punctuation
    t = re.sub(r"^(?:\u2014\s*)+", "", t).strip()
    if not re.search(r"\w", t):
        raise InvalidInputError(
            "text has no speakable words after removing emojis, stage directions, "
            "markdown and links"
        )
    return t


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
