"""Music backends: genre + duration in, mono float32 track out.

- :class:`ProceduralMusic` (embedded default, no model): a small composer and synthesiser
  in numpy. Each genre in :data:`GENRES` has its own tempo range, metre, key/scale, chord
  progression, 16-step drum pattern, swing and instrument timbres (additive and FM
  synthesis: Chowning 1973, "The Synthesis of Complex Audio Spectra by Means of Frequency
  Modulation"). The tempo is chosen inside the genre's range so that a whole number of bars
  fills the duration exactly; the track fades in and out.
- :class:`MusicGenMusic` (production): MusicGen (Copet et al. 2023, "Simple and
  Controllable Music Generation") through transformers' ``MusicgenForConditionalGeneration``
  + ``AutoProcessor`` from a local folder or a cached Hub id (facebook/musicgen-small...).
  Tracks longer than the model's window are generated window by window, each window
  prompted with the tail of the audio so far, joined by cross-fades.

:func:`normalize_music` brings a track to a loudness target (default -14 LUFS, the common
streaming-music reference level) with true peak <= -1 dBTP (EBU R128).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.signal

from avgen_dagster.backends.devices import (
    is_out_of_memory,
    resolve_device,
    resolve_dtype,
    torch_dtype,
)
from avgen_dagster.errors import BackendError, InvalidInputError
from avgen_dagster.media.loudness import NormalizationResult, normalize_loudness
from avgen_dagster.model_cache import ModelCache

__all__ = [
    "DEFAULT_MAX_DURATION_S",
    "GENRES",
    "Composition",
    "Genre",
    "MusicGenMusic",
    "MusicGenerator",
    "ProceduralMusic",
    "clear_model_cache",
    "model_load_count",
    "normalize_music",
    "validate_music_request",
]

_LOG = logging.getLogger(__name__)

#: Default longest track, seconds.
DEFAULT_MAX_DURATION_S = 300.0
#: Default music loudness target, LUFS (streaming reference level; speech uses -16).
MUSIC_TARGET_LUFS = -14.0


@runtime_checkable
class MusicGenerator(Protocol):
    """A music backend."""

    name: str
    model: str
    sample_rate: int

    def generate(self, genre: str, duration_s: float, *, seed: int) -> np.ndarray:
        """Return a mono float32 track of ``round(duration_s * sample_rate)`` samples in
        [-1, 1].

        Raises:
            InvalidInputError: unknown genre, duration <= 0 or above the maximum.
            BackendError: the model cannot load or run.
        """
        ...


# --- genres ---------------------------------------------------------------------------------

_SCALES: dict[str, tuple[int, ...]] = {
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
        scale: scale name in ``_SCALES``.
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


# --- synthesis ------------------------------------------------------------------------------


def _midi_hz(note: float) -> float:
    """Equal-tempered frequency, A4 (MIDI 69) = 440 Hz."""
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def _env(
    n: int, sr: int, attack: float, decay: float, sustain: float, release: float
) -> np.ndarray:
    """ADSR envelope of ``n`` samples (times in seconds; release inside the note)."""
    t = np.arange(n, dtype=np.float32) / sr
    a = max(attack, 1e-3)
    env = np.where(
        t < a, t / a, sustain + (1 - sustain) * np.exp(-(t - a) / max(decay, 1e-3))
    ).astype(np.float32)
    rel = min(n, max(1, int(release * sr)))
    env[n - rel :] *= np.linspace(1.0, 0.0, rel, dtype=np.float32) ** 2
    return env


def _additive(
    f: float, n: int, sr: int, amps: tuple[float, ...], detune: float = 0.0
) -> np.ndarray:
    t = np.arange(n, dtype=np.float32) / sr
    out = np.zeros(n, np.float32)
    for k, a in enumerate(amps, start=1):
        if a == 0 or k * f >= sr / 2 * 0.9:
            continue
        out += a * np.sin(2 * np.pi * k * f * (1 + detune * (k % 3 - 1)) * t)
    return out


def _saw(f: float, n: int, sr: int, harmonics: int = 24) -> np.ndarray:
    """Band-limited sawtooth (Fourier series 1/k, up to 0.9 Nyquist)."""
    kmax = max(1, min(harmonics, int(sr * 0.45 / max(f, 1.0))))
    return _additive(f, n, sr, tuple((-1) ** (k + 1) / k for k in range(1, kmax + 1))) * 0.6


def _fm(f: float, n: int, sr: int, ratio: float, index: float, decay: float) -> np.ndarray:
    """Two-operator FM (Chowning 1973): sin(2πft + I(t) sin(2π r f t)), I decaying."""
    t = np.arange(n, dtype=np.float32) / sr
    idx = index * np.exp(-t / decay)
    return np.sin(2 * np.pi * f * t + idx * np.sin(2 * np.pi * ratio * f * t)).astype(np.float32)


def _voice(kind: str, note: float, dur: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One note of an instrument, float32 ``(round(dur*sr),)``."""
    n = max(16, int(dur * sr))
    f = _midi_hz(note)
    if kind == "warm_pad":
        x = _additive(f, n, sr, (1, 0.5, 0.3, 0.15, 0.1, 0.05), detune=0.002)
        return x * _env(n, sr, min(1.5, dur / 3), 2.0, 0.8, min(1.5, dur / 3)) * 0.25
    if kind == "bright_pad":
        x = _saw(f, n, sr, 12) + _saw(f * 1.004, n, sr, 12)
        return x * _env(n, sr, 0.05, 0.4, 0.6, 0.2) * 0.12
    if kind == "supersaw":
        x = sum(_saw(f * (1 + d), n, sr, 16) for d in (-0.01, -0.004, 0.0, 0.005, 0.011))
        return x * _env(n, sr, 0.02, 0.3, 0.7, 0.1) * 0.07
    if kind == "strings":
        vib = 1 + 0.003 * np.sin(2 * np.pi * 5.5 * np.arange(n) / sr)
        t = np.arange(n) / sr
        amps = (1, 0.6, 0.45, 0.3, 0.22, 0.15, 0.1, 0.07)
        x = sum(a * np.sin(2 * np.pi * k * f * vib * t) for k, a in enumerate(amps, 1))
        return (x * _env(n, sr, 0.25, 1.0, 0.85, 0.3) * 0.12).astype(np.float32)
    if kind == "epiano":  # Rhodes-like: FM with a decaying bright tine
        x = _fm(f, n, sr, 1.0, 1.8, 0.25) + 0.3 * _fm(f, n, sr, 14.0, 0.5, 0.05)
        return x * _env(n, sr, 0.005, 0.9, 0.3, 0.1) * 0.2
    if kind == "piano":
        x = _additive(f, n, sr, (1, 0.5, 0.35, 0.2, 0.12, 0.08, 0.05), detune=0.001)
        return x * _env(n, sr, 0.004, 0.6, 0.15, 0.08) * 0.3
    if kind == "bell":
        x = _fm(f, n, sr, 3.5, 3.0, 0.8)
        return x * _env(n, sr, 0.002, 1.2, 0.0, 0.05) * 0.12
    if kind == "vibes":
        x = _fm(f, n, sr, 4.0, 1.2, 0.3) * (1 + 0.3 * np.sin(2 * np.pi * 6 * np.arange(n) / sr))
        return (x * _env(n, sr, 0.003, 0.7, 0.0, 0.05) * 0.16).astype(np.float32)
    if kind == "pluck":
        x = _saw(f, n, sr, 20)
        b, a = scipy.signal.butter(2, min(0.99, 6 * f / (sr / 2)))
        return (
            scipy.signal.lfilter(b, a, x).astype(np.float32)
            * _env(n, sr, 0.002, 0.18, 0.0, 0.03)
            * 0.4
        )
    if kind == "distorted":
        x = _saw(f, n, sr, 16) + _saw(f * 1.5, n, sr, 16)  # power chord (root + fifth)
        return np.tanh(4 * x).astype(np.float32) * _env(n, sr, 0.005, 0.5, 0.7, 0.05) * 0.09
    if kind == "distorted_lead":
        x = _saw(f, n, sr, 16)
        return np.tanh(3 * x).astype(np.float32) * _env(n, sr, 0.01, 0.3, 0.7, 0.05) * 0.12
    if kind == "sine_bass":
        x = _additive(f, n, sr, (1, 0.25, 0.08))
        return x * _env(n, sr, 0.01, 0.5, 0.6, 0.06) * 0.45
    if kind == "saw_bass":
        x = _saw(f, n, sr, 10)
        b, a = scipy.signal.butter(2, min(0.99, 900 / (sr / 2)))
        return (
            scipy.signal.lfilter(b, a, x).astype(np.float32)
            * _env(n, sr, 0.005, 0.25, 0.6, 0.04)
            * 0.5
        )
    if kind in ("upright", "cello"):
        x = _additive(f, n, sr, (1, 0.6, 0.3, 0.15, 0.08))
        attack = 0.01 if kind == "upright" else 0.12
        sustain = 0.2 if kind == "upright" else 0.8
        return x * _env(n, sr, attack, 0.35, sustain, 0.08) * 0.4
    raise ValueError(f"unknown voice {kind}")  # pragma: no cover - GENRES is fixed


def _drum(kind: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "kick":  # sine with a falling pitch (150 -> 45 Hz) and a click
        n = int(0.35 * sr)
        t = np.arange(n) / sr
        f = 45 + 105 * np.exp(-t / 0.03)
        x = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.12)
        x[: int(0.002 * sr)] += 0.3
        return (x * 0.9).astype(np.float32)
    if kind == "snare":  # band-passed noise + 185 Hz body
        n = int(0.22 * sr)
        t = np.arange(n) / sr
        b, a = scipy.signal.butter(2, [1500 / (sr / 2), min(0.95, 9000 / (sr / 2))], "band")
        noise = scipy.signal.lfilter(b, a, rng.standard_normal(n)) * np.exp(-t / 0.06)
        body = np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.04)
        return (0.7 * noise + 0.4 * body).astype(np.float32) * 0.8
    n = int((0.35 if kind == "open" else 0.06) * sr)  # hats/ride: high-passed noise
    t = np.arange(n) / sr
    b, a = scipy.signal.butter(2, min(0.95, 7000 / (sr / 2)), "high")
    x = scipy.signal.lfilter(b, a, rng.standard_normal(n)) * np.exp(
        -t / (0.12 if kind == "open" else 0.015)
    )
    return (x * 0.28).astype(np.float32)


def _add(buf: np.ndarray, x: np.ndarray, start: int, gain: float = 1.0) -> None:
    if start >= buf.size:
        return
    end = min(buf.size, start + x.size)
    buf[start:end] += gain * x[: end - start]


@dataclass(frozen=True)
class Composition:
    """What :class:`ProceduralMusic` composed.

    Attributes:
        genre: genre name.
        bpm: tempo, beats per minute.
        beats_per_bar: metre numerator.
        bars: whole bars in the track.
        tonic_midi: key tonic, MIDI note.
        scale: scale name.
        duration_s: track length, seconds.
        bar_aligned: True when ``bars`` bars fill the duration exactly (tempo inside the
            genre's range); False for very short tracks that end mid-bar with a fade.
        sample_rate: Hz.
        samples: the track, float32 ``(n,)``.
    """

    genre: str
    bpm: float
    beats_per_bar: int
    bars: int
    tonic_midi: int
    scale: str
    duration_s: float
    bar_aligned: bool
    sample_rate: int
    samples: np.ndarray = field(repr=False)


def _choose_tempo(g: Genre, duration_s: float, rng: np.random.Generator) -> tuple[float, int, bool]:
    """Tempo in the genre's range so an integer number of bars fills ``duration_s``.

    Bars ``m`` give ``bpm = 60 m b / D`` (b beats per bar); of the ``m`` whose tempo lies
    in range, the one nearest a seeded target tempo wins. If none fits (tracks shorter than
    a couple of bars), the target tempo is used and the last bar is cut by the fade-out.
    """
    lo, hi = g.tempo_bpm
    target = float(rng.uniform(lo, hi))
    beats = g.beats_per_bar
    m_lo = max(1, math.ceil(lo * duration_s / (60 * beats) - 1e-9))
    m_hi = math.floor(hi * duration_s / (60 * beats) + 1e-9)
    if m_hi >= m_lo:
        m = min(range(m_lo, m_hi + 1), key=lambda k: abs(60 * k * beats / duration_s - target))
        return 60.0 * m * beats / duration_s, m, True
    return target, max(1, math.ceil(target * duration_s / (60 * beats))), False


class ProceduralMusic:
    """Embedded music backend: a procedural composer by genre (see :data:`GENRES`).

    Composition: a seeded tonic from the genre's candidates, the genre's progression (one
    chord per bar, diatonic triads or sevenths of its scale), a bass line (roots, eighths,
    off-beats or a walking line), pads, a seeded lead motif of two bars repeated with
    variation (chord tones on strong steps, scale steps between), the drum pattern with
    swing, an intro (pads only) and outro (drums out) when there are enough bars. Mix:
    optional side-chain pump, a convolution reverb (exponentially decaying noise, 1.6 s),
    a low-pass at the genre's brightness, peak at -3 dBFS, raised-cosine fades (in 0.5 s,
    out 1.5 s, shortened for short tracks).

    ``generate`` is deterministic for (genre, duration, seed); about 0.5-1.5 s of CPU for
    30 s at 32 kHz.

    Args:
        sample_rate: output rate, Hz (default 32 kHz, MusicGen's rate).
        max_duration_s: longest accepted track, seconds.
    """

    name = "procedural"
    model = "procedural-composer-v1"

    def __init__(
        self, sample_rate: int = 32000, *, max_duration_s: float = DEFAULT_MAX_DURATION_S
    ) -> None:
        if sample_rate < 8000:
            raise InvalidInputError(f"sample_rate must be at least 8000 Hz, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.max_duration_s = float(max_duration_s)
        self.last_composition: Composition | None = None

    def generate(self, genre: str, duration_s: float, *, seed: int) -> np.ndarray:
        """Compose and render a track (see :meth:`compose`).

        Returns:
            float32 ``(round(duration_s * sample_rate),)`` in [-1, 1].

        Raises:
            InvalidInputError: unknown genre, bad duration.
        """
        comp = self.compose(genre, duration_s, seed=seed)
        self.last_composition = comp
        return comp.samples

    def compose(self, genre: str, duration_s: float, *, seed: int) -> Composition:
        """Compose and render a track, returning the samples with the musical facts.

        Raises:
            InvalidInputError: unknown genre, bad duration.
        """
        name = validate_music_request(genre, duration_s, max_duration_s=self.max_duration_s)
        g = GENRES[name]
        sr = self.sample_rate
        digest = hashlib.sha256(f"{name}\x1f{int(seed)}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        n_total = round(duration_s * sr)
        bpm, bars, aligned = _choose_tempo(g, float(duration_s), rng)
        beat = 60.0 / bpm
        step = beat / 4  # a 16th note
        steps_per_bar = 4 * g.beats_per_bar
        bar_s = beat * g.beats_per_bar
        tonic = int(rng.choice(g.roots))
        scale = _SCALES[g.scale]

        def degree_note(deg: int, octave: int = 0) -> int:
            return tonic + 12 * (octave + deg // 7) + scale[deg % 7]

        def chord(deg: int) -> list[int]:
            size = 4 if g.sevenths else 3
            return [degree_note(deg + 2 * i) for i in range(size)]

        prog = list(g.progression)
        rot = int(rng.integers(0, 2)) * 2 if len(prog) >= 4 else 0
        prog = prog[rot:] + prog[:rot]
        n_buf = round(bars * bar_s * sr) + int(2 * sr)
        pads = np.zeros(n_buf, np.float32)
        bass = np.zeros(n_buf, np.float32)
        lead = np.zeros(n_buf, np.float32)
        drums = np.zeros(n_buf, np.float32)

        def t_step(bar: int, s: int) -> float:
            swing = g.swing * step if s % 2 == 1 else 0.0
            return bar * bar_s + s * step + swing

        intro = 1 if bars >= 6 else 0
        outro = bars - 1 if bars >= 6 else bars
        motif_rng = np.random.default_rng(rng.integers(1 << 62))
        motif = [
            (s, int(motif_rng.integers(0, 4)), int(motif_rng.integers(-2, 3)))
            for s in range(2 * steps_per_bar)
            if motif_rng.random() < g.lead_density * (1.6 if s % 4 == 0 else 0.8)
        ]
        drum_kit = {k: _drum(k, sr, rng) for k in ("kick", "snare", "hat", "open")}
        for bar in range(bars):
            deg = prog[bar % len(prog)]
            notes = chord(deg)
            start = round(bar * bar_s * sr)
            # Pads: the chord, one bar long (slight overlap for legato).
            if g.pad in ("epiano", "piano") and g.name != "classical":
                hits = (0, 6, 10) if g.name == "jazz" else (0, 8)
                for h in hits:
                    for note in notes:
                        v = _voice(g.pad, note + 12, step * 5, sr, rng)
                        _add(pads, v, round(t_step(bar, h) * sr), 0.8)
            elif g.name == "classical":  # arpeggiated piano + sustained strings
                for note in notes:
                    _add(pads, _voice("strings", note, bar_s * 1.05, sr, rng), start, 0.8)
                for i, s in enumerate(range(0, steps_per_bar, 2)):
                    note = notes[i % len(notes)] + 12 * (1 + (i // len(notes)) % 2)
                    _add(
                        pads,
                        _voice("piano", note, step * 4, sr, rng),
                        round(t_step(bar, s) * sr),
                        0.5,
                    )
            else:
                for note in notes:
                    _add(pads, _voice(g.pad, note + 12, bar_s * 1.05, sr, rng), start)
            # Bass.
            root = degree_note(deg) - 12
            if g.bass_pattern == "walking":
                nxt = degree_note(prog[(bar + 1) % len(prog)]) - 12
                line = [root, degree_note(deg + 2) - 12, degree_note(deg + 4) - 12, nxt - 1]
                for b in range(g.beats_per_bar):
                    v = _voice(g.bass, line[b % 4], beat * 0.95, sr, rng)
                    _add(bass, v, round(t_step(bar, 4 * b) * sr))
            else:
                if g.bass_pattern == "eighths":
                    hits = list(range(0, steps_per_bar, 2))
                elif g.bass_pattern == "offbeat":
                    hits = list(range(2, steps_per_bar, 4))
                else:
                    hits = list(
                        range(0, steps_per_bar, 4 * g.beats_per_bar if g.name == "ambient" else 4)
                    )
                length = step * (2 if g.bass_pattern in ("eighths", "offbeat") else 4) * 0.95
                if g.name == "ambient":
                    length = bar_s
                for s in hits:
                    _add(bass, _voice(g.bass, root, length, sr, rng), round(t_step(bar, s) * sr))
            # Lead motif (2 bars), varied on repeats.
            if intro <= bar < outro and g.lead_density > 0:
                half = bar % 2
                for s, idx, octave_shift in motif:
                    if s // steps_per_bar != half:
                        continue
                    ss = s % steps_per_bar
                    if ss % 4 == 0:
                        note = notes[idx % len(notes)] + 12
                    else:
                        note = degree_note(deg + idx + octave_shift) + 12
                    if bar // 2 % 2 == 1 and rng.random() < 0.3:
                        note += int(rng.choice([-2, 2, 12]))
                    if g.lead == "pluck" and g.name == "electronic":
                        note += 12
                    dur = step * (2 if g.lead in ("pluck", "epiano") else 3)
                    _add(lead, _voice(g.lead, note, dur, sr, rng), round(t_step(bar, ss) * sr))
            # Drums.
            if g.kick and intro <= bar < outro:
                for s in range(steps_per_bar):
                    at = round(t_step(bar, s) * sr)
                    vel = 1.0 if s % 4 == 0 else 0.75
                    if g.kick[s % 16] == "x":
                        _add(drums, drum_kit["kick"], at, vel)
                    if g.snare[s % 16] == "x":
                        _add(drums, drum_kit["snare"], at, vel)
                    if g.hat[s % 16] == "x":
                        _add(drums, drum_kit["hat"], at, vel * (0.9 if s % 2 == 0 else 0.6))
                    elif g.hat[s % 16] == "o":
                        _add(drums, drum_kit["open"], at, vel * 0.7)
        if g.pump > 0:  # side-chain ducking on each beat
            t = np.arange(n_buf) / sr
            phase = (t % beat) / beat
            pads *= (1 - g.pump * np.exp(-phase / 0.18)).astype(np.float32)
        mix = 0.8 * pads + 0.9 * bass + 0.7 * lead
        mix = mix + 0.25 * _reverb(mix, sr, rng) + drums * 0.8
        if g.noise > 0:
            hiss = rng.standard_normal(n_buf).astype(np.float32) * g.noise
            crackle = (rng.random(n_buf) > 0.9995) * rng.standard_normal(n_buf) * 0.15
            mix = mix + hiss + crackle.astype(np.float32)
        b, a = scipy.signal.butter(2, min(0.95, g.brightness / (sr / 2)))
        mix = scipy.signal.lfilter(b, a, mix)
        b, a = scipy.signal.butter(2, 30 / (sr / 2), "high")  # DC / rumble
        mix = scipy.signal.lfilter(b, a, mix)[:n_total].astype(np.float32)
        peak = float(np.max(np.abs(mix))) if mix.size else 0.0
        if peak > 0:
            mix *= 10 ** (-3 / 20) / peak
        mix = _fades(mix, sr, 0.5, 1.5)
        return Composition(
            genre=name,
            bpm=bpm,
            beats_per_bar=g.beats_per_bar,
            bars=bars,
            tonic_midi=tonic,
            scale=g.scale,
            duration_s=n_total / sr,
            bar_aligned=aligned,
            sample_rate=sr,
            samples=mix,
        )


def _reverb(x: np.ndarray, sr: int, rng: np.random.Generator, rt60: float = 1.6) -> np.ndarray:
    """Wet signal of a convolution reverb: exponentially decaying noise impulse response
    (decay 60 dB in ``rt60`` s, Sabine's definition), low-passed for darker tails."""
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    ir = rng.standard_normal(n) * np.exp(-6.91 * t / rt60)
    b, a = scipy.signal.butter(1, 5000 / (sr / 2))
    ir = scipy.signal.lfilter(b, a, ir)
    ir /= np.sqrt(np.sum(ir**2))
    return scipy.signal.fftconvolve(x, ir)[: x.size].astype(np.float32)


def _fades(x: np.ndarray, sr: int, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """Raised-cosine fade-in/out, each at most a quarter of the track."""
    y = x.copy()
    for seconds, head in ((fade_in_s, True), (fade_out_s, False)):
        n = min(int(seconds * sr), y.size // 4)
        if n < 2:
            continue
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n))).astype(np.float32)
        if head:
            y[:n] *= ramp
        else:
            y[-n:] *= ramp[::-1]
    return y


def normalize_music(
    samples: np.ndarray, sample_rate: int, target_lufs: float = MUSIC_TARGET_LUFS
) -> NormalizationResult:
    """Loudness-normalise a music track to ``target_lufs`` with true peak <= -1 dBTP.

    Uses :func:`avgen_dagster.media.loudness.normalize_loudness` (BS.1770-4 integrated
    loudness, look-ahead true-peak limiter).

    Args:
        samples: float mono ``(n,)``.
        sample_rate: Hz.
        target_lufs: LUFS (default -14, streaming music reference).

    Returns:
        The :class:`~avgen_dagster.media.loudness.NormalizationResult`.

    Raises:
        MediaError: non-mono or non-finite samples.
    """
    return normalize_loudness(samples, sample_rate, target_lufs, -1.0)


# --- MusicGen -------------------------------------------------------------------------------

_CACHE: ModelCache[Any] = ModelCache("music")


def model_load_count() -> int:
    """How many MusicGen models this process has loaded from disk (cache misses)."""
    return _CACHE.load_count


def clear_model_cache() -> None:
    """Forget every loaded MusicGen model."""
    _CACHE.clear()


def _check_musicgen_path(model_path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    text = str(model_path)
    p = Path(text).expanduser()
    if p.is_dir():
        cfg_path = p / "config.json"
        if not cfg_path.is_file():
            raise BackendError(f"music model folder {p} lacks config.json")
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BackendError(f"music model file {cfg_path} is not valid JSON: {exc}") from exc
        if cfg.get("model_type") != "musicgen":
            raise BackendError(
                f"music model folder {p} holds a {cfg.get('model_type')!r} model, not musicgen"
            )
        if not any((p / f).is_file() for f in ("tokenizer.json", "spiece.model")):
            raise BackendError(f"music model folder {p} lacks its tokenizer (tokenizer.json)")
        return str(p.resolve()), cfg
    if not p.is_absolute() and not text.startswith((".", "~")) and text.count("/") == 1:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(text, "config.json")
        if isinstance(cached, str):
            return text, json.loads(Path(cached).read_text())
        raise BackendError(
            f"music model {text!r} is not a local folder and not in the local Hugging Face "
            "cache (downloads are disabled): download it first or give a folder path"
        )
    raise BackendError(f"music model not found: {text} does not exist")


class MusicGenMusic:
    """Production music backend: MusicGen through transformers.

    Prompt: ``"<genre> music, <genre description>"``. Generation samples (top-k 250, as
    MusicGen's reference) with classifier-free guidance ``guidance_scale``. The decoder
    emits ``frame_rate`` (50 for the 32 kHz EnCodec) code frames per second with the
    "delay" interleaving of K codebooks, so ``frames + K - 1`` tokens give ``frames`` of
    audio.

    Windowed continuation for tracks longer than ``window_s`` (30 s, MusicGen's training
    length): window 1 is generated from text; each next window is prompted with the last
    ``prompt_s`` seconds of the track so far (re-encoded by EnCodec) and generates up to
    ``window_s - prompt_s`` new seconds; the model's re-decoding of the prompt's last
    ``crossfade_s`` is cross-faded (linear, equal gain: the two are correlated) with the
    track's tail, then the new audio is appended. The result is trimmed to the duration
    and faded (0.5 s in, 1.5 s out).

    Args:
        model_path: folder with config.json, weights, tokenizer and feature extractor
            files; or a cached Hub id (facebook/musicgen-small).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        dtype: ``None`` (bf16/fp16 on CUDA, fp32 on CPU) or a dtype name.
        guidance_scale: classifier-free guidance (3.0 in the paper; <= 1 disables it).
        window_s: longest single generation, seconds.
        prompt_s: audio context for continuation windows, seconds (< ``window_s``).
        crossfade_s: overlap cross-fade between windows, seconds (<= ``prompt_s``).
        max_duration_s: longest accepted track, seconds.

    Raises:
        BackendError: (at construction) missing folder/config/tokenizer, not a MusicGen model.
        InvalidInputError: inconsistent window settings.
    """

    name = "musicgen"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        device: str = "auto",
        dtype: str | None = None,
        guidance_scale: float = 3.0,
        window_s: float = 30.0,
        prompt_s: float = 10.0,
        crossfade_s: float = 0.5,
        max_duration_s: float = DEFAULT_MAX_DURATION_S,
        top_k: int = 250,
    ) -> None:
        self.model, cfg = _check_musicgen_path(model_path)
        if not 0 < prompt_s < window_s:
            raise InvalidInputError(f"prompt_s must be in (0, window_s={window_s}), got {prompt_s}")
        if not 0 <= crossfade_s <= prompt_s:
            raise InvalidInputError(f"crossfade_s must be in [0, prompt_s], got {crossfade_s}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(self.device, dtype)
        self.guidance_scale = float(guidance_scale)
        self.window_s = float(window_s)
        self.prompt_s = float(prompt_s)
        self.crossfade_s = float(crossfade_s)
        self.max_duration_s = float(max_duration_s)
        self.top_k = int(top_k)
        audio_cfg = cfg.get("audio_encoder", {})
        self.sample_rate = int(audio_cfg.get("sampling_rate", 32000))
        self.last_windows = 0

    def load(self) -> tuple[Any, Any]:
        """``(processor, model)``, loaded once per process.

        Raises:
            BackendError: transformers cannot load the model (the message names it).
        """

        def loader() -> tuple[Any, Any]:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                from transformers import AutoProcessor, MusicgenForConditionalGeneration
                from transformers.utils import logging as tlog

                tlog.disable_progress_bar()
                processor = AutoProcessor.from_pretrained(self.model)
                model = MusicgenForConditionalGeneration.from_pretrained(
                    self.model, dtype=torch_dtype(self.dtype)
                )
                model.to(self.device)
                model.eval()
            except Exception as exc:
                raise BackendError(f"cannot load music model {self.model}: {exc}") from exc
            return processor, model

        return _CACHE.get((self.model, self.device, self.dtype), loader)

    def _window(
        self, processor: Any, model: Any, text: str, prompt_audio: np.ndarray | None, frames: int
    ) -> np.ndarray:
        import torch

        kwargs: dict[str, Any] = {"text": [text], "padding": True, "return_tensors": "pt"}
        if prompt_audio is not None:
            kwargs.update(audio=[prompt_audio], sampling_rate=self.sample_rate)
        inputs = processor(**kwargs)
        inputs = {
            k: (
                v.to(self.device, dtype=torch_dtype(self.dtype))
                if v.is_floating_point()
                else v.to(self.device)
            )
            for k, v in inputs.items()
        }
        k_codebooks = int(model.config.decoder.num_codebooks)
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=frames + k_codebooks - 1,
                do_sample=True,
                top_k=self.top_k,
                guidance_scale=self.guidance_scale if self.guidance_scale > 1 else None,
            )
        audio = out[0, 0].float().cpu().numpy().astype(np.float32)
        if not np.all(np.isfinite(audio)):
            raise BackendError(f"music model {self.model} produced NaN/inf samples")
        return audio

    def generate(self, genre: str, duration_s: float, *, seed: int) -> np.ndarray:
        """Generate ``duration_s`` seconds of ``genre`` (windowed beyond ``window_s``).

        Returns:
            float32 ``(round(duration_s * sample_rate),)`` in [-1, 1].

        Raises:
            InvalidInputError: unknown genre or bad duration.
            BackendError: load or inference failure (GPU OOM included).
        """
        import torch

        name = validate_music_request(genre, duration_s, max_duration_s=self.max_duration_s)
        processor, model = self.load()
        sr = self.sample_rate
        frame_rate = float(model.config.audio_encoder.frame_rate)
        text = f"{name} music, {GENRES[name].description}"
        n_total = round(duration_s * sr)
        xf = round(self.crossfade_s * sr)
        track = np.zeros(0, np.float32)
        windows = 0
        try:
            with torch.random.fork_rng(devices=[] if self.device == "cpu" else None):
                torch.manual_seed(int(seed))
                while track.size < n_total:
                    remaining = (n_total - track.size) / sr
                    if track.size == 0:
                        new_s = min(self.window_s, remaining)
                        audio = self._window(
                            processor, model, text, None, math.ceil(new_s * frame_rate)
                        )
                        track = audio
                    else:
                        p_n = min(track.size, round(self.prompt_s * sr))
                        new_s = min(self.window_s - self.prompt_s, remaining + self.crossfade_s)
                        audio = self._window(
                            processor, model, text, track[-p_n:], math.ceil(new_s * frame_rate)
                        )
                        # The output starts with the model's decoding of the prompt frames.
                        prompt_frames = math.ceil(p_n * frame_rate / sr)
                        cont = min(audio.size, round(prompt_frames * sr / frame_rate))
                        c = min(xf, cont, track.size)
                        if c > 0:
                            w = np.linspace(0.0, 1.0, c, dtype=np.float32)
                            track[-c:] = track[-c:] * (1 - w) + audio[cont - c : cont] * w
                        if audio.size <= cont:
                            raise BackendError(
                                f"music model {self.model} returned no new audio after a "
                                f"{p_n / sr:.1f} s prompt"
                            )
                        track = np.concatenate([track, audio[cont:]])
                    windows += 1
        except BackendError:
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                raise BackendError(
                    f"music model {self.model} ran out of GPU memory (batch size 1): use a "
                    "shorter window_s, float16/bfloat16 or a smaller model"
                ) from exc
            raise BackendError(f"music model {self.model} failed: {exc}") from exc
        self.last_windows = windows
        track = np.clip(track[:n_total], -1.0, 1.0)
        if track.size < n_total:
            track = np.pad(track, (0, n_total - track.size))
        return _fades(track.astype(np.float32), sr, 0.5, 1.5)
