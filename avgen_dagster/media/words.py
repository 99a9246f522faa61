"""Word timings: when each word of a narration is spoken (the link between speech and captions).

The speech backend produces them (Piper's phoneme alignments grouped into words); the caption
builder groups them into cues; the final video highlights the word being spoken. Times are
seconds from the start of the audio they belong to (one segment's WAV, or the whole narration
once segments are placed on the timeline with :func:`shift_words`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class WordTiming:
    """One spoken word.

    Attributes:
        word: the word as written in the script (punctuation attached, e.g. ``"blue."``).
        start_s: onset, seconds (≥ 0).
        end_s: end, seconds (≥ ``start_s``).
        timed: False when the time was estimated (a word the voice gave no alignment for,
            spread evenly over its sentence) rather than taken from the speech backend.
    """

    word: str
    start_s: float
    end_s: float
    timed: bool = True

    def __post_init__(self) -> None:
        if not self.word or any(c.isspace() for c in self.word):
            raise ValueError(f"a word timing needs one word without spaces, got {self.word!r}")
        if not (0.0 <= self.start_s <= self.end_s):
            raise ValueError(
                f"word {self.word!r}: need 0 <= start_s <= end_s, got {self.start_s}, {self.end_s}"
            )


def shift_words(words: Iterable[WordTiming], offset_s: float) -> list[WordTiming]:
    """``words`` moved by ``offset_s`` seconds (a segment placed on the narration's timeline)."""
    return [replace(w, start_s=w.start_s + offset_s, end_s=w.end_s + offset_s) for w in words]
