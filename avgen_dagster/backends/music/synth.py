"""The procedural composer's instruments: additive, FM and subtractive voices, drums, reverb.

Every function returns float32 mono at full scale ±1.0. FM is the two-operator form of
Chowning 1973 ("The Synthesis of Complex Audio Spectra by Means of Frequency Modulation");
band-limited sawtooths are Fourier series up to 0.9 Nyquist; the reverb is an exponentially
decaying noise impulse response (RT60 as Sabine defined it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.signal

__all__ = ["VOICES", "drum", "fades", "midi_hz", "mix_in", "reverb", "voice"]


def midi_hz(note: float) -> float:
    """Equal-tempered frequency, Hz: A4 (MIDI 69) = 440 Hz."""
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


def _lowpassed(x: np.ndarray, cutoff_hz: float, sr: int) -> np.ndarray:
    """2nd-order Butterworth low-pass (cut-off capped just under Nyquist), float32."""
    b, a = scipy.signal.butter(2, min(0.99, cutoff_hz / (sr / 2)))
    return scipy.signal.lfilter(b, a, x).astype(np.float32)


def _strings(f: float, n: int, sr: int, dur: float) -> np.ndarray:
    vib = 1 + 0.003 * np.sin(2 * np.pi * 5.5 * np.arange(n) / sr)
    t = np.arange(n) / sr
    amps = (1, 0.6, 0.45, 0.3, 0.22, 0.15, 0.1, 0.07)
    x = sum(a * np.sin(2 * np.pi * k * f * vib * t) for k, a in enumerate(amps, 1))
    return (x * _env(n, sr, 0.25, 1.0, 0.85, 0.3) * 0.12).astype(np.float32)


def _vibes(f: float, n: int, sr: int, dur: float) -> np.ndarray:
    x = _fm(f, n, sr, 4.0, 1.2, 0.3) * (1 + 0.3 * np.sin(2 * np.pi * 6 * np.arange(n) / sr))
    return (x * _env(n, sr, 0.003, 0.7, 0.0, 0.05) * 0.16).astype(np.float32)


Timbre = Callable[[float, int, int, float], np.ndarray]

#: Instruments by name: ``(frequency Hz, samples, rate Hz, seconds) -> float32 note``.
VOICES: dict[str, Timbre] = {
    "warm_pad": lambda f, n, sr, dur: (
        _additive(f, n, sr, (1, 0.5, 0.3, 0.15, 0.1, 0.05), detune=0.002)
        * _env(n, sr, min(1.5, dur / 3), 2.0, 0.8, min(1.5, dur / 3))
        * 0.25
    ),
    "bright_pad": lambda f, n, sr, dur: (
        (_saw(f, n, sr, 12) + _saw(f * 1.004, n, sr, 12)) * _env(n, sr, 0.05, 0.4, 0.6, 0.2) * 0.12
    ),
    "supersaw": lambda f, n, sr, dur: (
        sum(_saw(f * (1 + d), n, sr, 16) for d in (-0.01, -0.004, 0.0, 0.005, 0.011))
        * _env(n, sr, 0.02, 0.3, 0.7, 0.1)
        * 0.07
    ),
    "strings": _strings,
    # Rhodes-like: FM with a decaying bright tine
    "epiano": lambda f, n, sr, dur: (
        (_fm(f, n, sr, 1.0, 1.8, 0.25) + 0.3 * _fm(f, n, sr, 14.0, 0.5, 0.05))
        * _env(n, sr, 0.005, 0.9, 0.3, 0.1)
        * 0.2
    ),
    "piano": lambda f, n, sr, dur: (
        _additive(f, n, sr, (1, 0.5, 0.35, 0.2, 0.12, 0.08, 0.05), detune=0.001)
        * _env(n, sr, 0.004, 0.6, 0.15, 0.08)
        * 0.3
    ),
    "bell": lambda f, n, sr, dur: (
        _fm(f, n, sr, 3.5, 3.0, 0.8) * _env(n, sr, 0.002, 1.2, 0.0, 0.05) * 0.12
    ),
    "vibes": _vibes,
    "pluck": lambda f, n, sr, dur: (
        _lowpassed(_saw(f, n, sr, 20), 6 * f, sr) * _env(n, sr, 0.002, 0.18, 0.0, 0.03) * 0.4
    ),
    # power chord (root + fifth)
    "distorted": lambda f, n, sr, dur: (
        np.tanh(4 * (_saw(f, n, sr, 16) + _saw(f * 1.5, n, sr, 16))).astype(np.float32)
        * _env(n, sr, 0.005, 0.5, 0.7, 0.05)
        * 0.09
    ),
    "distorted_lead": lambda f, n, sr, dur: (
        np.tanh(3 * _saw(f, n, sr, 16)).astype(np.float32)
        * _env(n, sr, 0.01, 0.3, 0.7, 0.05)
        * 0.12
    ),
    "sine_bass": lambda f, n, sr, dur: (
        _additive(f, n, sr, (1, 0.25, 0.08)) * _env(n, sr, 0.01, 0.5, 0.6, 0.06) * 0.45
    ),
    "saw_bass": lambda f, n, sr, dur: (
        _lowpassed(_saw(f, n, sr, 10), 900, sr) * _env(n, sr, 0.005, 0.25, 0.6, 0.04) * 0.5
    ),
    "upright": lambda f, n, sr, dur: (
        _additive(f, n, sr, (1, 0.6, 0.3, 0.15, 0.08)) * _env(n, sr, 0.01, 0.35, 0.2, 0.08) * 0.4
    ),
    "cello": lambda f, n, sr, dur: (
        _additive(f, n, sr, (1, 0.6, 0.3, 0.15, 0.08)) * _env(n, sr, 0.12, 0.35, 0.8, 0.08) * 0.4
    ),
}


def voice(kind: str, note: float, dur: float, sr: int) -> np.ndarray:
    """One note of instrument ``kind`` (a key of :data:`VOICES`).

    Args:
        kind: instrument name.
        note: MIDI note number (69 = A4, 440 Hz).
        dur: seconds.
        sr: Hz.

    Returns:
        float32 ``(max(16, int(dur * sr)),)``.

    Raises:
        KeyError: an unknown instrument (the genres name only known ones).
    """
    n = max(16, int(dur * sr))
    return VOICES[kind](midi_hz(note), n, sr, dur)


def drum(kind: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One drum hit: ``kick`` (sine falling 150 → 45 Hz plus a click, 0.35 s), ``snare``
    (band-passed noise + 185 Hz body, 0.22 s), ``hat`` (high-passed noise, 60 ms) or
    ``open`` (the same, 0.35 s). Noise is drawn from ``rng``; float32."""
    if kind == "kick":
        n = int(0.35 * sr)
        t = np.arange(n) / sr
        f = 45 + 105 * np.exp(-t / 0.03)
        x = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.12)
        x[: int(0.002 * sr)] += 0.3
        return (x * 0.9).astype(np.float32)
    if kind == "snare":
        n = int(0.22 * sr)
        t = np.arange(n) / sr
        b, a = scipy.signal.butter(2, [1500 / (sr / 2), min(0.95, 9000 / (sr / 2))], "band")
        noise = scipy.signal.lfilter(b, a, rng.standard_normal(n)) * np.exp(-t / 0.06)
        body = np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.04)
        return (0.7 * noise + 0.4 * body).astype(np.float32) * 0.8
    n = int((0.35 if kind == "open" else 0.06) * sr)
    t = np.arange(n) / sr
    b, a = scipy.signal.butter(2, min(0.95, 7000 / (sr / 2)), "high")
    x = scipy.signal.lfilter(b, a, rng.standard_normal(n)) * np.exp(
        -t / (0.12 if kind == "open" else 0.015)
    )
    return (x * 0.28).astype(np.float32)


def mix_in(buf: np.ndarray, x: np.ndarray, start: int, gain: float = 1.0) -> None:
    """Add ``gain * x`` into ``buf`` from sample ``start`` (what runs past the end is cut)."""
    if start >= buf.size:
        return
    end = min(buf.size, start + x.size)
    buf[start:end] += gain * x[: end - start]


def reverb(x: np.ndarray, sr: int, rng: np.random.Generator, rt60: float = 1.6) -> np.ndarray:
    """Wet signal of a convolution reverb: exponentially decaying noise impulse response
    (decay 60 dB in ``rt60`` s, Sabine's definition), low-passed at 5 kHz for darker tails,
    unit energy. Same length as ``x``, float32."""
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    ir = rng.standard_normal(n) * np.exp(-6.91 * t / rt60)
    b, a = scipy.signal.butter(1, 5000 / (sr / 2))
    ir = scipy.signal.lfilter(b, a, ir)
    ir /= np.sqrt(np.sum(ir**2))
    return scipy.signal.fftconvolve(x, ir)[: x.size].astype(np.float32)


def fades(x: np.ndarray, sr: int, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """Raised-cosine fade-in/out, each at most a quarter of the track; a new array."""
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
