"""The procedural composer's genres, and the checks every music request passes.

Each genre has its own tempo range, metre, key/scale, chord progression, 16-step drum
pattern, swing and instrument timbres; ``description`` words condition text-to-music models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from avgen_dagster.errors import InvalidInputError

__all__ = ["DEFAULT_MAX_DURATION_S", "GENRES", "SCALES", "Genre", "validate_music_request"]

#: Default longest track, seconds.
DEFAULT_MAX_DURATION_S = 300.0

#: Scales by name: semitones above the tonic of the seven degrees.
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}


@dataclass(frozen=True)
class Genre:
    """What the procedural composer needs to know about a genre.

    Attributes:
        name: genre name (lower case).
        description: words for text-conditioned models ("<genre> music, <description>").
        tempo_bpm: (min, max) tempo, beats per minute.
        beats_per_bar: metre numerator (quarter-note beats per bar).
        scale: scale name in :data:`SCALES`.
        roots: candidate tonic MIDI notes (the seed picks one).
        progression: chord roots as scale degrees (0 = tonic), one chord per bar.
        sevenths: four-note (7th) chords instead of triads.
        kick, snare, hat: drum patterns, one character per 16th note of a bar
            (``x`` hit, ``.`` rest; ``o`` open/ride for ``hat``); empty for no drums.
        swing: delay of every second 16th, fraction of a 16th (0 straight, ~0.33 swung).
        pad, bass, lead: instrument timbres (keys of the synth voices).
        lead_density: probability of a lead note on a 16th step (0 = no lead).
        bass_pattern: ``"root"`` (on beats), ``"eighths"``, ``"walking"``, ``"offbeat"``.
        pump: side-chain style ducking depth of the pad on each beat (0..1).
        noise: vinyl/tape hiss level (lo-fi character).
        brightness: low-pass cut-off of the mix, Hz.
    """

    name: str
    description: str
    tempo_bpm: tuple[float, float]
    beats_per_bar: int
    scale: str
    roots: tuple[int, ...]
    progression: tuple[int, ...]
    sevenths: bool
    kick: str
    snare: str
    hat: str
    swing: float
    pad: str
    bass: str
    lead: str
    lead_density: float
    bass_pattern: str
    pump: float = 0.0
    noise: float = 0.0
    brightness: float = 12000.0


GENRES: dict[str, Genre] = {
    g.name: g
    for g in (
        Genre(
            "ambient",
            "slow evolving pads, soft bells, calm and spacious",
            (60, 76),
            4,
            "lydian",
            (50, 52, 53, 55),
            (0, 4, 5, 3),
            True,
            "",
            "",
            "",
            0.0,
            "warm_pad",
            "sine_bass",
            "bell",
            0.06,
            "root",
            brightness=6000,
        ),
        Genre(
            "lofi",
            "lo-fi hip hop, dusty drums, mellow electric piano, vinyl crackle",
            (70, 88),
            4,
            "dorian",
            (50, 51, 53, 55),
            (1, 4, 0, 5),
            True,
            "x......x..x.....",
            "....x.......x...",
            "x.x.x.x.x.x.x.x.",
            0.3,
            "epiano",
            "sine_bass",
            "epiano",
            0.12,
            "root",
            noise=0.012,
            brightness=4500,
        ),
        Genre(
            "rock",
            "energetic rock, distorted electric guitars, bass and live drums",
            (108, 140),
            4,
            "minor",
            (40, 42, 43, 45),
            (0, 5, 2, 6),
            False,
            "x.....x.x.......",
            "....x.......x...",
            "x.x.x.x.x.x.x.x.",
            0.0,
            "distorted",
            "saw_bass",
            "distorted_lead",
            0.18,
            "eighths",
            brightness=9000,
        ),
        Genre(
            "electronic",
            "electronic dance music, four on the floor, synth arpeggios",
            (120, 128),
            4,
            "minor",
            (45, 46, 48, 50),
            (0, 5, 3, 4),
            False,
            "x...x...x...x...",
            "....x.......x...",
            "..o...o...o...o.",
            0.0,
            "supersaw",
            "saw_bass",
            "pluck",
            0.5,
            "offbeat",
            pump=0.6,
            brightness=14000,
        ),
        Genre(
            "jazz",
            "swing jazz trio, walking bass, piano comping, ride cymbal",
            (100, 150),
            4,
            "major",
            (48, 50, 53, 55),
            (1, 4, 0, 5),
            True,
            "x.......x.......",
            "..........x.....",
            "o..xo..xo..xo..x",
            0.33,
            "epiano",
            "upright",
            "vibes",
            0.22,
            "walking",
            brightness=8000,
        ),
        Genre(
            "classical",
            "classical strings and piano, gentle waltz",
            (80, 108),
            3,
            "major",
            (48, 50, 53, 55),
            (0, 3, 4, 0, 5, 1, 4, 0),
            False,
            "",
            "",
            "",
            0.0,
            "strings",
            "cello",
            "piano",
            0.35,
            "root",
            brightness=9000,
        ),
        Genre(
            "pop",
            "upbeat pop, bright synths, punchy drums, catchy melody",
            (96, 120),
            4,
            "major",
            (48, 50, 52, 55),
            (0, 4, 5, 3),
            False,
            "x.......x.x.....",
            "....x.......x...",
            "x.x.x.x.x.x.x.x.",
            0.0,
            "bright_pad",
            "saw_bass",
            "pluck",
            0.3,
            "eighths",
            pump=0.25,
            brightness=12000,
        ),
    )
}
"""The procedural composer's genres, by name."""


def validate_music_request(
    genre: str, duration_s: float, *, max_duration_s: float = DEFAULT_MAX_DURATION_S
) -> str:
    """Check a music request; return the normalised (lower-case) genre name.

    Raises:
        InvalidInputError: unknown genre (the message lists :data:`GENRES`), or a duration
            <= 0, non-finite, or above ``max_duration_s`` seconds.
    """
    name = str(genre or "").strip().lower()
    if name not in GENRES:
        raise InvalidInputError(
            f"unknown music genre {genre!r}; choose one of: {', '.join(sorted(GENRES))}"
        )
    if not isinstance(duration_s, int | float) or not math.isfinite(duration_s):
        raise InvalidInputError(f"music duration must be a number of seconds, got {duration_s}")
    if duration_s <= 0:
        raise InvalidInputError(f"music duration must be positive, got {duration_s} s")
    if duration_s > max_duration_s:
        raise InvalidInputError(
            f"music duration {duration_s} s is above the maximum of {max_duration_s} s"
        )
    return name
