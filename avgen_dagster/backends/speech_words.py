"""Word timings from a voice's phoneme alignments (pure code: no model, no Dagster).

Piper speaks espeak-ng phonemes and reports, per sentence, how many samples each phoneme
took. espeak's output does not map one-to-one onto the written words: numbers expand
("2026," → ``tˈuː θˈaʊzənd twˈɛnti sˈɪks,``), function words merge ("in the" → ``ɪnðə``),
ellipses join words ("Hello... world" → ``həlˈoʊwˈɜːld``), abbreviations split sentences
("Dr." ends a sentence). So words are found by *aligning sounds*: each written word is
phonemized on its own, the concatenated sounds of all words are aligned to the spoken
sounds (a global edit-distance alignment, banded), and each word takes the time span of
the spoken phonemes its sounds were aligned to. Stress marks, spaces and punctuation carry
no sound identity and are left out of the alignment; a stress mark right before a word's
first sound is counted in the word (it is a phoneme id with its own duration).

A word with no aligned sound, or whose sounds lie in a sentence Piper could not align, is
kept with ``timed=False`` and times spread over the gap between its timed neighbours —
never dropped.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from avgen_dagster.media.words import WordTiming

__all__ = ["SpokenPhoneme", "align_words", "sound_chars"]

_STRESS = frozenset("ˈˌ")
_MARKERS = frozenset("^$_")  # Piper's BOS, EOS, PAD
_VOWELS = frozenset("aeiouyæɐɑɒɔəɘɚɛɜɝɞɤɨɪʉʊʌʏøœɶɵ")
_MATCH, _NEAR, _MISMATCH, _GAP = 0.0, 0.5, 1.2, 1.0


@dataclass(frozen=True)
class SpokenPhoneme:
    """One phoneme as spoken, on the output audio's sample axis.

    Attributes:
        phoneme: the phoneme symbol (one or a few code points, e.g. ``"ˈ"``, ``"aɪ"``).
        start: first sample (int, ≥ 0).
        end: one past the last sample (≥ ``start``).
        sentence: index of the sentence (Piper chunk) it belongs to.
        timed: False when the voice gave no alignment for the sentence and the time was
            spread evenly over the sentence's audio.
    """

    phoneme: str
    start: int
    end: int
    sentence: int
    timed: bool = True


def _is_sound(ch: str) -> bool:
    """Whether code point ``ch`` identifies a sound (not a stress, space, punctuation, marker)."""
    if ch.isspace() or ch in _STRESS or ch in _MARKERS:
        return False
    return not unicodedata.category(ch).startswith(("P", "S"))


def sound_chars(phonemes: str) -> str:
    """The sound-identifying code points of a phoneme string (NFD), in order."""
    return "".join(c for c in unicodedata.normalize("NFD", phonemes) if _is_sound(c))


def _cost(a: str, b: str) -> float:
    if a == b:
        return _MATCH
    if a in _VOWELS and b in _VOWELS:
        return _NEAR
    return _MISMATCH


def _align(ref: str, hyp: str) -> list[int | None]:
    """For each index of ``ref``, the index of ``hyp`` it is aligned to (None: deleted).

    Global alignment (match 0, vowel↔vowel 0.5, other substitution 1.2, gap 1), restricted
    to a band around the diagonal of half-width ``|len(ref) − len(hyp)| + 64``:
    O(len · band) time.
    """
    n, m = len(ref), len(hyp)
    if n == 0 or m == 0:
        return [None] * n
    band = abs(n - m) + 64
    inf = float("inf")
    lo = [max(0, (i * m) // n - band) for i in range(n + 1)]
    hi = [min(m, (i * m) // n + band) for i in range(n + 1)]
    # cost[i][j - lo[i]], back[i][j - lo[i]]: 0 diag, 1 up (ref gap), 2 left (hyp gap)
    cost: list[list[float]] = []
    back: list[list[int]] = []
    for i in range(n + 1):
        row = [inf] * (hi[i] - lo[i] + 1)
        brow = [0] * len(row)
        for j in range(lo[i], hi[i] + 1):
            best, move = inf, 0
            if i == 0 and j == 0:
                best = 0.0
            if i > 0 and lo[i - 1] <= j - 1 <= hi[i - 1]:
                c = cost[i - 1][j - 1 - lo[i - 1]] + _cost(ref[i - 1], hyp[j - 1])
                if c < best:
                    best, move = c, 0
            if i > 0 and lo[i - 1] <= j <= hi[i - 1]:
                c = cost[i - 1][j - lo[i - 1]] + _GAP
                if c < best:
                    best, move = c, 1
            if j > lo[i]:
                c = row[j - 1 - lo[i]] + _GAP
                if c < best:
                    best, move = c, 2
            row[j - lo[i]] = best
            brow[j - lo[i]] = move
        cost.append(row)
        back.append(brow)
    pairs: list[int | None] = [None] * n
    i, j = n, m
    while i > 0 or j > 0:
        move = back[i][j - lo[i]] if lo[i] <= j <= hi[i] else (1 if i > 0 else 2)
        if i == 0:
            move = 2
        elif j == 0:
            move = 1
        if move == 0:
            pairs[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif move == 1:
            i -= 1
        else:
            j -= 1
    return pairs


def align_words(
    words: Sequence[str],
    word_phonemes: Sequence[str],
    spoken: Sequence[SpokenPhoneme],
    sample_rate: int,
    total_samples: int,
) -> list[WordTiming]:
    """Time each written word from the spoken phonemes.

    Args:
        words: the text's words as written (``text.split()``), punctuation attached.
        word_phonemes: each word phonemized on its own (any string; only sounds count).
        spoken: the phonemes as spoken, in order, on the output audio's sample axis.
        sample_rate: Hz.
        total_samples: length of the output audio, samples (times are clamped into it).

    Returns:
        One :class:`WordTiming` per word, same order and text; onsets non-decreasing;
        ``timed=False`` for a word the alignment could not time (estimated).

    Raises:
        ValueError: ``words`` and ``word_phonemes`` differ in length.
    """
    if len(words) != len(word_phonemes):
        raise ValueError(f"{len(words)} words but {len(word_phonemes)} phonemizations")
    ref_chars: list[str] = []
    ref_word: list[int] = []
    for w, ph in enumerate(word_phonemes):
        for c in sound_chars(ph):
            ref_chars.append(c)
            ref_word.append(w)
    hyp_chars: list[str] = []
    hyp_phone: list[int] = []
    for p, ph in enumerate(spoken):
        for c in sound_chars(ph.phoneme):
            hyp_chars.append(c)
            hyp_phone.append(p)
    pairs = _align("".join(ref_chars), "".join(hyp_chars))

    first: list[int | None] = [None] * len(words)
    last: list[int | None] = [None] * len(words)
    for r, h in enumerate(pairs):
        if h is None:
            continue
        w, p = ref_word[r], hyp_phone[h]
        first[w] = p if first[w] is None else min(first[w], p)  # type: ignore[type-var]
        last[w] = p if last[w] is None else max(last[w], p)  # type: ignore[type-var]

    spans: list[tuple[int, int, bool] | None] = []
    for w in range(len(words)):
        f, la = first[w], last[w]
        if f is None or la is None:
            spans.append(None)
            continue
        while (
            f > 0
            and spoken[f - 1].phoneme in _STRESS
            and spoken[f - 1].sentence == spoken[f].sentence
        ):
            f -= 1
        timed = all(spoken[k].timed for k in range(f, la + 1))
        spans.append((spoken[f].start, spoken[la].end, timed))
    return _fill_untimed(words, spans, spoken, sample_rate, total_samples)


def _fill_untimed(
    words: Sequence[str],
    spans: list[tuple[int, int, bool] | None],
    spoken: Sequence[SpokenPhoneme],
    sample_rate: int,
    total_samples: int,
) -> list[WordTiming]:
    """Spread words without a span evenly (by length) between their timed neighbours."""
    audio_start = spoken[0].start if spoken else 0
    audio_end = spoken[-1].end if spoken else total_samples
    out: list[tuple[int, int, bool]] = []
    i = 0
    while i < len(words):
        if spans[i] is not None:
            out.append(spans[i])  # type: ignore[arg-type]
            i += 1
            continue
        j = i
        while j < len(words) and spans[j] is None:
            j += 1
        left = out[-1][1] if out else audio_start
        right = spans[j][0] if j < len(words) else audio_end  # type: ignore[index]
        right = max(left, right)
        weights = [max(1, len(words[k])) for k in range(i, j)]
        total = sum(weights)
        acc = 0
        for k in range(i, j):
            s = left + (right - left) * acc // total
            acc += weights[k - i]
            e = left + (right - left) * acc // total
            out.append((s, e, False))
        i = j
    result: list[WordTiming] = []
    prev_start = 0.0
    for word, (s, e, timed) in zip(words, out, strict=True):
        s = min(max(s, 0), total_samples)
        e = min(max(e, s), total_samples)
        start = max(s / sample_rate, prev_start)
        result.append(WordTiming(word, start, max(e / sample_rate, start), timed))
        prev_start = start
    return result
