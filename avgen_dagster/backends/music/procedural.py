"""The embedded music backend: a procedural composer and synthesiser in numpy, by genre.

The tempo is chosen inside the genre's range so that a whole number of bars fills the
duration exactly; each bar gets the progression's chord on pads, a bass line, a two-bar
lead motif and the drum pattern; the mix gets a reverb, the genre's brightness and fades
(instruments: :mod:`avgen_dagster.backends.music.synth`, genres:
:mod:`avgen_dagster.backends.music.genres`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.signal

from avgen_dagster.backends.music.genres import (
    DEFAULT_MAX_DURATION_S,
    GENRES,
    SCALES,
    Genre,
    validate_music_request,
)
from avgen_dagster.backends.music.synth import drum, fades, mix_in, reverb, voice
from avgen_dagster.errors import InvalidInputError

__all__ = ["Composition", "ProceduralMusic"]


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
        tonic = int(rng.choice(g.roots))
        prog = list(g.progression)
        rot = int(rng.integers(0, 2)) * 2 if len(prog) >= 4 else 0
        score = _Score(g, sr, bpm, tonic, prog[rot:] + prog[:rot])
        n_buf = round(bars * score.bar_s * sr) + int(2 * sr)
        tracks = {k: np.zeros(n_buf, np.float32) for k in ("pads", "bass", "lead", "drums")}
        intro = 1 if bars >= 6 else 0
        outro = bars - 1 if bars >= 6 else bars
        motif_rng = np.random.default_rng(rng.integers(1 << 62))
        motif = [
            (s, int(motif_rng.integers(0, 4)), int(motif_rng.integers(-2, 3)))
            for s in range(2 * score.steps_per_bar)
            if motif_rng.random() < g.lead_density * (1.6 if s % 4 == 0 else 0.8)
        ]
        kit = {k: drum(k, sr, rng) for k in ("kick", "snare", "hat", "open")}
        for bar in range(bars):
            deg = score.prog[bar % len(score.prog)]
            _pads(score, bar, deg, tracks["pads"])
            _bass(score, bar, deg, tracks["bass"])
            if intro <= bar < outro and g.lead_density > 0:
                _lead(score, bar, deg, motif, rng, tracks["lead"])
            if g.kick and intro <= bar < outro:
                _drums(score, bar, kit, tracks["drums"])
        mix = _mixdown(score, tracks, rng)[:n_total]
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
            samples=_finish(mix, sr),
        )


@dataclass(frozen=True)
class _Score:
    """A genre at a tempo in a key: note names and step times."""

    g: Genre
    sr: int
    bpm: float
    tonic: int
    prog: list[int]

    @property
    def beat(self) -> float:
        return 60.0 / self.bpm

    @property
    def step(self) -> float:  # a 16th note
        return self.beat / 4

    @property
    def steps_per_bar(self) -> int:
        return 4 * self.g.beats_per_bar

    @property
    def bar_s(self) -> float:
        return self.beat * self.g.beats_per_bar

    def degree_note(self, deg: int, octave: int = 0) -> int:
        scale = SCALES[self.g.scale]
        return self.tonic + 12 * (octave + deg // 7) + scale[deg % 7]

    def chord(self, deg: int) -> list[int]:
        size = 4 if self.g.sevenths else 3
        return [self.degree_note(deg + 2 * i) for i in range(size)]

    def at(self, bar: int, s: int) -> int:
        """Sample index of 16th step ``s`` of ``bar``, odd steps delayed by the swing."""
        swing = self.g.swing * self.step if s % 2 == 1 else 0.0
        return round((bar * self.bar_s + s * self.step + swing) * self.sr)


def _pads(score: _Score, bar: int, deg: int, pads: np.ndarray) -> None:
    """The chord, one bar long (slight overlap for legato); comped keys for piano genres,
    arpeggiated piano over sustained strings for classical."""
    g, sr, step, notes = score.g, score.sr, score.step, score.chord(deg)
    start = round(bar * score.bar_s * sr)
    if g.pad in ("epiano", "piano") and g.name != "classical":
        for h in (0, 6, 10) if g.name == "jazz" else (0, 8):
            for note in notes:
                mix_in(pads, voice(g.pad, note + 12, step * 5, sr), score.at(bar, h), 0.8)
    elif g.name == "classical":
        for note in notes:
            mix_in(pads, voice("strings", note, score.bar_s * 1.05, sr), start, 0.8)
        for i, s in enumerate(range(0, score.steps_per_bar, 2)):
            note = notes[i % len(notes)] + 12 * (1 + (i // len(notes)) % 2)
            mix_in(pads, voice("piano", note, step * 4, sr), score.at(bar, s), 0.5)
    else:
        for note in notes:
            mix_in(pads, voice(g.pad, note + 12, score.bar_s * 1.05, sr), start)


def _bass(score: _Score, bar: int, deg: int, bass: np.ndarray) -> None:
    """Roots, eighths, off-beats, or a walking line towards the next chord."""
    g, sr, steps = score.g, score.sr, score.steps_per_bar
    root = score.degree_note(deg) - 12
    if g.bass_pattern == "walking":
        nxt = score.degree_note(score.prog[(bar + 1) % len(score.prog)]) - 12
        line = [root, score.degree_note(deg + 2) - 12, score.degree_note(deg + 4) - 12, nxt - 1]
        for b in range(g.beats_per_bar):
            mix_in(bass, voice(g.bass, line[b % 4], score.beat * 0.95, sr), score.at(bar, 4 * b))
        return
    if g.bass_pattern == "eighths":
        hits = list(range(0, steps, 2))
    elif g.bass_pattern == "offbeat":
        hits = list(range(2, steps, 4))
    else:
        hits = list(range(0, steps, 4 * g.beats_per_bar if g.name == "ambient" else 4))
    length = score.step * (2 if g.bass_pattern in ("eighths", "offbeat") else 4) * 0.95
    if g.name == "ambient":
        length = score.bar_s
    for s in hits:
        mix_in(bass, voice(g.bass, root, length, sr), score.at(bar, s))


def _lead(
    score: _Score,
    bar: int,
    deg: int,
    motif: list[tuple[int, int, int]],
    rng: np.random.Generator,
    lead: np.ndarray,
) -> None:
    """The two-bar motif: chord tones on beats, scale steps between, varied on repeats."""
    g, steps, notes = score.g, score.steps_per_bar, score.chord(deg)
    for s, idx, octave_shift in motif:
        if s // steps != bar % 2:
            continue
        ss = s % steps
        if ss % 4 == 0:
            note = notes[idx % len(notes)] + 12
        else:
            note = score.degree_note(deg + idx + octave_shift) + 12
        if bar // 2 % 2 == 1 and rng.random() < 0.3:
            note += int(rng.choice([-2, 2, 12]))
        if g.lead == "pluck" and g.name == "electronic":
            note += 12
        dur = score.step * (2 if g.lead in ("pluck", "epiano") else 3)
        mix_in(lead, voice(g.lead, note, dur, score.sr), score.at(bar, ss))


def _drums(score: _Score, bar: int, kit: dict[str, np.ndarray], drums: np.ndarray) -> None:
    """The genre's 16-step kick/snare/hat pattern, accents on the beats."""
    g = score.g
    for s in range(score.steps_per_bar):
        at = score.at(bar, s)
        vel = 1.0 if s % 4 == 0 else 0.75
        if g.kick[s % 16] == "x":
            mix_in(drums, kit["kick"], at, vel)
        if g.snare[s % 16] == "x":
            mix_in(drums, kit["snare"], at, vel)
        if g.hat[s % 16] == "x":
            mix_in(drums, kit["hat"], at, vel * (0.9 if s % 2 == 0 else 0.6))
        elif g.hat[s % 16] == "o":
            mix_in(drums, kit["open"], at, vel * 0.7)


def _mixdown(score: _Score, tracks: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Side-chain pump, reverb, hiss/crackle, the genre's low-pass and a 30 Hz high-pass."""
    g, sr = score.g, score.sr
    pads = tracks["pads"]
    n_buf = pads.size
    if g.pump > 0:  # side-chain ducking on each beat
        t = np.arange(n_buf) / sr
        phase = (t % score.beat) / score.beat
        pads *= (1 - g.pump * np.exp(-phase / 0.18)).astype(np.float32)
    mix = 0.8 * pads + 0.9 * tracks["bass"] + 0.7 * tracks["lead"]
    mix = mix + 0.25 * reverb(mix, sr, rng) + tracks["drums"] * 0.8
    if g.noise > 0:
        hiss = rng.standard_normal(n_buf).astype(np.float32) * g.noise
        crackle = (rng.random(n_buf) > 0.9995) * rng.standard_normal(n_buf) * 0.15
        mix = mix + hiss + crackle.astype(np.float32)
    b, a = scipy.signal.butter(2, min(0.95, g.brightness / (sr / 2)))
    mix = scipy.signal.lfilter(b, a, mix)
    b, a = scipy.signal.butter(2, 30 / (sr / 2), "high")  # DC / rumble
    return scipy.signal.lfilter(b, a, mix)


def _finish(mix: np.ndarray, sr: int) -> np.ndarray:
    """Peak at -3 dBFS, then fades (in 0.5 s, out 1.5 s); float32."""
    mix = mix.astype(np.float32)
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    if peak > 0:
        mix *= 10 ** (-3 / 20) / peak
    return fades(mix, sr, 0.5, 1.5)
