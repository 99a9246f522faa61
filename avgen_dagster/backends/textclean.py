"""Clean-up of narration text: LLM output or a user's script into plain speakable prose.

Pure Python (the ``emoji`` package's database, regular expressions), no model, no Dagster.
:func:`clean_text` removes what must never be spoken (emojis, stage directions, markdown,
speaker labels, URLs) and normalises quotes, dashes and whitespace. Split out of
:mod:`avgen_dagster.backends.textproc`, which re-exports :func:`clean_text`.
"""

from __future__ import annotations

import re
import unicodedata

import emoji

from avgen_dagster.errors import InvalidInputError

__all__ = ["clean_text"]

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
    # Space after punctuation before a word or an opening quote (not a closing one: "blue.")
    text = re.sub(r"([,;:.!?])(?=[A-Za-z]|\"\w)", r"\1 ", text)
    # ...but not inside decimals, abbreviations like e.g. or times like 3:30.
    text = re.sub(r"(\d)([.,:]) (\d)", r"\1\2\3", text)
    text = re.sub(r"\b([a-zA-Z])\. ([a-zA-Z])\.", r"\1.\2.", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^[\s,.;:!?\-\u2014]+", "", text)  # no leading punctuation
    return text.strip()


def _strip_markup(text: str) -> str:
    """Line ends, zero-width characters, code, emojis, quotes, HTML, links, line markdown."""
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
    return t


def _strip_directions(t: str) -> str:
    """Dashes, speaker labels, stage directions, emphasis markers; joined and tidied."""
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
    return t


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
    t = _strip_directions(_strip_markup(text))
    if not re.search(r"\w", t):
        raise InvalidInputError(
            "text has no speakable words after removing emojis, stage directions, "
            "markdown and links"
        )
    return t
