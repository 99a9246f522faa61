"""Caption cues from word timings, and their WebVTT / SRT sidecar files.

Cue rules (Netflix "English (USA) Timed Text Style Guide", sections "Character limitation",
"Line treatment", "Minimum/maximum duration", "Line breaks" and "Timing"):

* at most 2 lines per cue, at most 42 characters per line;
* each cue lasts between 5/6 s (20 frames at 24 fps) and 7 s;
* no cue runs across a sentence end (cues are built sentence by sentence);
* line and cue breaks go after punctuation, before conjunctions and prepositions, never
  inside a word, and avoid separating an article, a preposition, an auxiliary verb or a
  subject pronoun from the word that follows it, or a number from its unit;
* at least 2 frames between consecutive cues; gaps shorter than 12 frames (0.5 s at 24 fps)
  are closed to that minimum (the guide's "chaining" rule), so cues do not flicker.

Cue times are whole milliseconds (the resolution of both WebVTT and SRT), seconds from the
start of the narration. Sidecars are written with ``webvtt-py`` (W3C WebVTT) and ``srt``
(SubRip); WebVTT cue text escapes ``&``, ``<`` and ``>`` as the W3C spec requires
(section 4.2.2, "cue text"), SRT text is plain.
"""

from __future__ import annotations

import html
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import srt
import webvtt
from webvtt.models import Timestamp

from avgen_dagster.errors import InvalidInputError, MediaError
from avgen_dagster.media.atomic import atomic_path
from avgen_dagster.media.words import WordTiming

__all__ = [
    "CaptionRules",
    "CaptionTrack",
    "Cue",
    "Sentence",
    "build_cues",
    "normalize_text",
    "split_sentences",
    "webvtt_captions",
    "write_srt",
    "write_webvtt",
]


def _wordset(text: str) -> frozenset[str]:
    """The whitespace-separated words of ``text`` as a set."""
    return frozenset(text.split())


_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*$")
_ABBREVIATIONS = _wordset(
    "mr. mrs. ms. dr. prof. st. vs. etc. e.g. i.e. jr. sr. no. approx. fig. inc. ltd."
)
_CLAUSE_END = re.compile(r"[,;:—–]+[\"'”’)\]]*$")
_CONJUNCTIONS = _wordset(
    "and but or nor so yet because although though while whereas if unless since until "
    "when whenever where that which who whom whose than as"
)
_PREPOSITIONS = _wordset(
    "about above across after against along among around at before behind below beneath "
    "beside between beyond by during except for from in inside into near of off on onto "
    "out outside over past through throughout to toward towards under underneath up upon "
    "with within without"
)
_GLUE_AFTER = _wordset(
    "a an the this that these those my your his her its our their some any no every each "
    "i you he she we they it is are was were be been am will would shall should can could "
    "may might must do does did has have had not to very more most such"
)
_UNITS = _wordset(
    "percent % million billion trillion thousand hundred dollars euros pounds years year "
    "days day hours hour minutes minute seconds second km kg m cm mm miles feet meters "
    "metres degrees times"
)
_NUMBER = re.compile(r"^[$€£]?\d[\d,.]*%?$")


@dataclass(frozen=True)
class CaptionRules:
    """Cue constraints (Netflix English Timed Text Style Guide; see the module docstring).

    Attributes:
        max_lines: lines per cue (guide: 2).
        max_chars_per_line: characters per line incl. spaces (guide: 42; a smaller value
            suits large burned-in captions on a vertical frame).
        min_duration_s: shortest cue, seconds (guide: 5/6 s).
        max_duration_s: longest cue, seconds (guide: 7 s).
        fps: frame rate the gaps are counted in, frames per second.
        min_gap_frames: least gap between cues, frames (guide: 2).
        chain_gap_frames: gaps shorter than this are closed to ``min_gap_frames`` (guide: 12).
    """

    max_lines: int = 2
    max_chars_per_line: int = 42
    min_duration_s: float = 5.0 / 6.0
    max_duration_s: float = 7.0
    fps: float = 25.0
    min_gap_frames: int = 2
    chain_gap_frames: int = 12

    def __post_init__(self) -> None:
        if self.max_lines < 1 or self.max_chars_per_line < 8:
            raise InvalidInputError(
                f"caption rules need max_lines >= 1 and max_chars_per_line >= 8, got "
                f"{self.max_lines} and {self.max_chars_per_line}"
            )
        if not 0 < self.min_duration_s < self.max_duration_s or self.fps <= 0:
            raise InvalidInputError(
                f"caption rules need 0 < min_duration_s < max_duration_s and fps > 0, got "
                f"{self.min_duration_s}, {self.max_duration_s}, {self.fps}"
            )

    @property
    def min_gap_ms(self) -> int:
        """Least gap between cues, whole milliseconds (rounded up)."""
        return math.ceil(self.min_gap_frames / self.fps * 1000)

    @property
    def chain_gap_ms(self) -> int:
        """Gaps below this many milliseconds are closed to :attr:`min_gap_ms`."""
        return round(self.chain_gap_frames / self.fps * 1000)


@dataclass(frozen=True)
class Sentence:
    """One sentence of the narration.

    Attributes:
        index: 0-based position in the narration.
        first_word: index of its first word in the word list.
        end_word: index one past its last word.
        start_s: onset of its first word, seconds.
        end_s: end of its last word, seconds.
    """

    index: int
    first_word: int
    end_word: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Cue:
    """One caption cue.

    Attributes:
        start_s: when it appears, seconds (whole milliseconds).
        end_s: when it disappears, seconds (whole milliseconds).
        lines: the text lines (1..max_lines), words joined by single spaces.
        words: the words shown, with the times used to highlight the one being spoken.
        sentence: index of the sentence the cue belongs to.
        timed: False when the sentence's word times were estimated (sentence-level
            fallback): the renderer then highlights no word.
    """

    start_s: float
    end_s: float
    lines: tuple[str, ...]
    words: tuple[WordTiming, ...]
    sentence: int
    timed: bool = True

    @property
    def text(self) -> str:
        """The cue's words joined by single spaces (lines joined too)."""
        return " ".join(self.lines)

    @property
    def duration_s(self) -> float:
        """``end_s - start_s``, seconds."""
        return self.end_s - self.start_s


@dataclass(frozen=True)
class CaptionTrack:
    """Result of :func:`build_cues`.

    Attributes:
        cues: the cues in time order, non-overlapping.
        sentences: the sentences the words were grouped into.
        word_count: words placed (all of the input's).
        untimed_word_count: input words with ``timed=False``.
        sentence_fallback: True when at least one sentence was timed at sentence level
            (some of its words had no alignment from the voice).
        rules: the rules the cues follow.
    """

    cues: tuple[Cue, ...]
    sentences: tuple[Sentence, ...]
    word_count: int
    untimed_word_count: int
    sentence_fallback: bool
    rules: CaptionRules = field(default_factory=CaptionRules)

    @property
    def text(self) -> str:
        """All cue text joined by single spaces (equals the script's words in order)."""
        return " ".join(c.text for c in self.cues)

    def cue_at(self, t_s: float) -> Cue | None:
        """The cue shown at ``t_s`` seconds (start inclusive, end exclusive), or None."""
        for cue in self.cues:
            if cue.start_s <= t_s < cue.end_s:
                return cue
            if cue.start_s > t_s:
                return None
        return None


def normalize_text(text: str) -> str:
    """``text`` with every run of whitespace made one space, ends stripped."""
    return " ".join(text.split())


def _ends_sentence(word: str) -> bool:
    return bool(_SENTENCE_END.search(word)) and word.lower() not in _ABBREVIATIONS


def split_sentences(
    words: Sequence[WordTiming], word_counts: Sequence[int] | None = None
) -> list[Sentence]:
    """Group words into sentences.

    Args:
        words: the narration's words in spoken order.
        word_counts: words per sentence (e.g. one per script segment), summing to
            ``len(words)``; default: split after words ending in ``. ! ? …`` (optionally
            followed by a closing quote or bracket), except common abbreviations.

    Returns:
        The sentences in order (empty for no words).

    Raises:
        InvalidInputError: ``word_counts`` has a non-positive count or does not sum to
            ``len(words)``.
    """
    if word_counts is None:
        counts: list[int] = []
        start = 0
        for i, w in enumerate(words):
            if _ends_sentence(w.word) or i == len(words) - 1:
                counts.append(i + 1 - start)
                start = i + 1
    else:
        counts = list(word_counts)
        if any(c <= 0 for c in counts) or sum(counts) != len(words):
            raise InvalidInputError(
                f"sentence word counts {counts} must be positive and sum to the "
                f"{len(words)} words of the narration"
            )
    out: list[Sentence] = []
    first = 0
    for k, n in enumerate(counts):
        part = words[first : first + n]
        start_s = min(w.start_s for w in part)
        end_s = max(w.end_s for w in part)
        out.append(Sentence(k, first, first + n, start_s, end_s))
        first += n
    return out


def _break_penalty(before: str, after: str) -> float:
    """Cost of a line or cue break between ``before`` and ``after`` (0 = ideal)."""
    a, b = before.lower().strip("\"'“”‘’()[]"), after.lower().strip("\"'“”‘’()[]")
    if _SENTENCE_END.search(before):
        return 0.0
    if _CLAUSE_END.search(before) or after.startswith(("—", "–", "-")):
        return 0.2
    if _NUMBER.match(a) and b in _UNITS:
        return 6.0
    if a in _GLUE_AFTER or a in _PREPOSITIONS:
        return 6.0
    if b in _CONJUNCTIONS:
        return 0.5
    if b in _PREPOSITIONS:
        return 0.7
    if before[:1].isupper() and after[:1].isupper():
        return 2.0  # likely a name ("Ada Lovelace")
    return 1.5


def _layout(tokens: Sequence[str], rules: CaptionRules) -> tuple[float, tuple[str, ...]] | None:
    """Best split of ``tokens`` into at most ``max_lines`` lines, or None if none fits."""
    text = " ".join(tokens)
    if len(text) <= rules.max_chars_per_line:
        return 0.0, (text,)
    if rules.max_lines == 1 or len(tokens) < 2:
        return None
    best: tuple[float, tuple[str, ...]] | None = None
    for k in range(1, len(tokens)):
        head = " ".join(tokens[:k])
        if len(head) > rules.max_chars_per_line:
            break
        rest = _layout(tokens[k:], replace(rules, max_lines=rules.max_lines - 1))
        if rest is None:
            continue
        balance = abs(len(head) - len(rest[1][0])) / rules.max_chars_per_line
        cost = _break_penalty(tokens[k - 1], tokens[k]) + 0.5 * balance + rest[0]
        if best is None or cost < best[0]:
            best = (cost, (head, *rest[1]))
    return best


def _segment_sentence(
    words: Sequence[WordTiming], rules: CaptionRules
) -> list[tuple[int, int, tuple[str, ...]]]:
    """Split one sentence into cues by dynamic programming over cue end positions.

    Cost of a cue = 1 (fewer, fuller cues) + its line-break cost + the cost of the break
    after it (0 at the sentence end) + a penalty growing as its spoken span falls under the
    minimum duration. Cues must fit the line rules and, unless a single word, span at most
    ``max_duration_s``. A single word longer than a line is a cue of its own (never split).
    """
    n = len(words)
    best: list[tuple[float, int, tuple[str, ...]]] = [(0.0, 0, ())] + [(math.inf, 0, ())] * n
    tokens = [w.word for w in words]
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):
            span = words[j - 1].end_s - words[i].start_s
            if j - i > 1 and span > rules.max_duration_s:
                break
            layout = _layout(tokens[i:j], rules)
            if layout is None:
                if j - i > 1:
                    break
                layout = (5.0, (tokens[i],))  # an over-long single word stands alone
            short = max(0.0, rules.min_duration_s - span) / rules.min_duration_s
            after = _break_penalty(tokens[j - 1], tokens[j]) if j < n else 0.0
            cost = best[i][0] + 1.0 + layout[0] + 3.0 * after + 3.0 * short
            if cost < best[j][0]:
                best[j] = (cost, i, layout[1])
    cues: list[tuple[int, int, tuple[str, ...]]] = []
    j = n
    while j > 0:
        _, i, lines = best[j]
        cues.append((i, j, lines))
        j = i
    return cues[::-1]


def _estimate_sentence_times(words: Sequence[WordTiming]) -> list[WordTiming]:
    """Spread a sentence's words over its span in proportion to their length (+1 char)."""
    lo = min(w.start_s for w in words)
    hi = max(max(w.end_s for w in words), lo + 0.3 * len(words))
    weights = [len(w.word) + 1 for w in words]
    total = sum(weights)
    out, t = [], lo
    for w, weight in zip(words, weights, strict=True):
        d = (hi - lo) * weight / total
        out.append(WordTiming(w.word, t, t + d, timed=False))
        t += d
    return out


MAX_LEAD_MS = 90
"""How long before its first word a cue may appear when the cues around it leave no other room,
milliseconds: the 100 ms the ``captions_in_sync`` check allows either way, less a margin for
the millisecond rounding of cue times (a caption a moment early reads fine; beyond that it is
out of sync, as is one late)."""


def _fix_timing(
    raw: list[list[float]],
    rules: CaptionRules,
    end_limit_ms: int | None,
    last_onsets_ms: Sequence[float] | None = None,
    first_onsets_ms: Sequence[float] | None = None,
) -> None:
    """Make cue times obey duration, gap and chaining rules, in place (milliseconds).

    For each cue in order: start no earlier than the previous end plus the gap (the previous
    cue ends earlier when it can stay long enough, else this one starts later); a short cue
    is extended after its end (into the pause), then before its start, then earlier still by
    ending the previous cue sooner (never below its minimum duration nor before the onset of
    its last word, ``last_onsets_ms``), and only then past the next cue's start (which is
    pushed later, out of sync with its first word: the last resort); the end is capped at
    ``max_duration_s``; a following gap under the chaining threshold is closed to the minimum
    gap. When the previous cue cannot end early enough (it is already at its minimum), it moves
    earlier whole, into the cue before it (shortened as far as that one's floors allow), showing
    at most :data:`MAX_LEAD_MS` before its first word (``first_onsets_ms``): a caption a moment
    early reads fine, a late one is out of sync.
    """
    gap = rules.min_gap_ms
    lo_ms = math.ceil(rules.min_duration_s * 1000)
    hi_ms = math.floor(rules.max_duration_s * 1000)
    for k, cue in enumerate(raw):
        prev_end = raw[k - 1][1] if k else -gap
        if k and cue[0] < prev_end + gap:
            # Keep the in-time on the speech onset: the previous cue ends earlier, as far as
            # its minimum duration and its last word's onset allow (word timings of adjacent
            # segments overlap by the cross-fade); only what is left delays this cue.
            floor = raw[k - 1][0] + lo_ms
            if last_onsets_ms is not None:
                floor = max(floor, last_onsets_ms[k - 1])
            earlier = max(cue[0] - gap, floor)
            if earlier < prev_end:
                raw[k - 1][1] = prev_end = earlier
            short = prev_end + gap - cue[0]
            if short > 0 and k >= 2 and last_onsets_ms is not None and first_onsets_ms:
                prev, before = raw[k - 1], raw[k - 2]
                before_floor = max(before[0] + lo_ms, last_onsets_ms[k - 2])
                shift = min(
                    short,
                    prev[0] - (first_onsets_ms[k - 1] - MAX_LEAD_MS),  # how early it may show
                    prev[1] - last_onsets_ms[k - 1],  # still on screen at its last word
                    prev[0] - gap - before_floor,  # room once the cue before is shortened
                )
                if shift > 0:
                    before[1] = min(before[1], prev[0] - shift - gap)
                    prev[0] -= shift
                    prev[1] -= shift
                    prev_end = prev[1]
        cue[0] = max(cue[0], prev_end + gap)
        need = lo_ms - (cue[1] - cue[0])
        if need > 0:
            nxt = raw[k + 1][0] if k + 1 < len(raw) else end_limit_ms
            room_after = need if nxt is None else max(0, nxt - gap - cue[1])
            cue[1] += min(need, room_after)
            need -= min(need, room_after)
            room_before = max(0, cue[0] - max(0, prev_end + gap))
            cue[0] -= min(need, room_before)
            need -= min(need, room_before)
            if need > 0 and k:
                prev = raw[k - 1]
                floor = prev[0] + lo_ms
                if last_onsets_ms is not None:
                    floor = max(floor, last_onsets_ms[k - 1])
                give = max(0, min(need, prev[1] - floor))
                prev[1] -= give
                cue[0] -= give
                need -= give
            cue[1] += need
        cue[1] = min(cue[1], cue[0] + hi_ms)
        if k + 1 < len(raw):
            follow = raw[k + 1][0] - cue[1]
            if gap < follow < rules.chain_gap_ms:
                cue[1] = min(raw[k + 1][0] - gap, cue[0] + hi_ms)


def build_cues(
    words: Sequence[WordTiming],
    *,
    sentence_word_counts: Sequence[int] | None = None,
    rules: CaptionRules | None = None,
    duration_s: float | None = None,
) -> CaptionTrack:
    """Group word timings into caption cues by the Netflix rules (module docstring).

    Every input word appears in exactly one cue, in order, verbatim. A sentence with any
    word whose ``timed`` is False is timed at sentence level: its words are spread over the
    sentence's span in proportion to their length, its cues carry ``timed=False`` and the
    track's ``sentence_fallback`` is True.

    Args:
        words: the narration's words, seconds from the start of the narration.
        sentence_word_counts: words per sentence; default: split at sentence punctuation
            (:func:`split_sentences`).
        rules: cue constraints; default :class:`CaptionRules` ().
        duration_s: the narration's length, seconds: the last cue ends by then when it
            can (it is extended backwards instead).

    Returns:
        A :class:`CaptionTrack` (no cues for no words).

    Raises:
        InvalidInputError: words out of time order, or bad ``sentence_word_counts``.
    """
    rules = rules or CaptionRules()
    for a, b in itertools.pairwise(words):
        if b.start_s + 1e-6 < a.start_s:
            raise InvalidInputError(
                f"word timings are out of order: {b.word!r} at {b.start_s:.3f} s comes "
                f"after {a.word!r} at {a.start_s:.3f} s"
            )
    sentences = split_sentences(words, sentence_word_counts) if words else []
    pieces: list[tuple[list[float], tuple[str, ...], tuple[WordTiming, ...], int, bool]] = []
    fallback = False
    for s in sentences:
        part = list(words[s.first_word : s.end_word])
        timed = all(w.timed for w in part)
        if not timed:
            part, fallback = _estimate_sentence_times(part), True
        for i, j, lines in _segment_sentence(part, rules):
            ms = [round(part[i].start_s * 1000), round(part[j - 1].end_s * 1000)]
            pieces.append((ms, lines, tuple(part[i:j]), s.index, timed))
    limit = None if duration_s is None else math.floor(duration_s * 1000)
    last_onsets = [round(p[2][-1].start_s * 1000) for p in pieces]
    first_onsets = [round(p[2][0].start_s * 1000) for p in pieces]
    _fix_timing([p[0] for p in pieces], rules, limit, last_onsets, first_onsets)
    cues = tuple(
        Cue(ms[0] / 1000, ms[1] / 1000, lines, ws, sentence, timed)
        for ms, lines, ws, sentence, timed in pieces
    )
    return CaptionTrack(
        cues=cues,
        sentences=tuple(sentences),
        word_count=len(words),
        untimed_word_count=sum(not w.timed for w in words),
        sentence_fallback=fallback,
        rules=rules,
    )


def _vtt_time(seconds: float) -> str:
    return str(Timestamp.from_seconds(round(seconds, 3)))


def webvtt_captions(track: CaptionTrack, offset_s: float = 0.0) -> list[webvtt.Caption]:
    """The track's cues as ``webvtt.Caption`` objects (text escaped for WebVTT).

    Args:
        track: the cues.
        offset_s: subtracted from every time (e.g. an HLS segment's start), seconds.
    """
    return [
        webvtt.Caption(
            start=_vtt_time(c.start_s - offset_s),
            end=_vtt_time(c.end_s - offset_s),
            text=[html.escape(line, quote=False) for line in c.lines],
        )
        for c in track.cues
    ]


def write_webvtt(track: CaptionTrack, path: Path | str) -> Path:
    """Write the cues as a W3C WebVTT file (UTF-8) with ``webvtt-py``, atomically.

    Args:
        track: the cues.
        path: destination ``.vtt``.

    Returns:
        ``path``.

    Raises:
        MediaError: the file cannot be written or a cue cannot be encoded.
    """
    path = Path(path)
    doc = webvtt.WebVTT(captions=webvtt_captions(track))
    try:
        with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
            doc.write(f)
    except (OSError, ValueError) as exc:
        raise MediaError(f"cannot write WebVTT file {path}: {exc}") from exc
    return path


def write_srt(track: CaptionTrack, path: Path | str) -> Path:
    """Write the cues as a SubRip (``.srt``) file (UTF-8) with the ``srt`` package, atomically.

    Args:
        track: the cues.
        path: destination ``.srt``.

    Returns:
        ``path``.

    Raises:
        MediaError: the file cannot be written.
    """
    path = Path(path)
    subs = [
        srt.Subtitle(
            index=k + 1,
            start=timedelta(milliseconds=round(c.start_s * 1000)),
            end=timedelta(milliseconds=round(c.end_s * 1000)),
            content="\n".join(c.lines),
        )
        for k, c in enumerate(track.cues)
    ]
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(srt.compose(subs, reindex=False), encoding="utf-8")
    except OSError as exc:
        raise MediaError(f"cannot write SRT file {path}: {exc}") from exc
    return path
