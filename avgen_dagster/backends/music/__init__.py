"""Music backends: genre + duration in, mono float32 track out.

- :class:`ProceduralMusic` (embedded default, no model): a small composer and synthesiser
  in numpy (:mod:`.procedural`, instruments in :mod:`.synth`). Each genre in :data:`GENRES`
  (:mod:`.genres`) has its own tempo range, metre, key/scale, chord progression, 16-step
  drum pattern, swing and instrument timbres.
- :class:`MusicGenMusic` (production): MusicGen through transformers (:mod:`.musicgen`).

:func:`normalize_music` brings a track to a loudness target (default -14 LUFS, the common
streaming-music reference level) with true peak <= -1 dBTP (EBU R128).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from avgen_dagster.backends.music.genres import (
    DEFAULT_MAX_DURATION_S,
    GENRES,
    Genre,
    validate_music_request,
)
from avgen_dagster.backends.music.musicgen import MODEL_CACHE, MusicGenMusic
from avgen_dagster.backends.music.procedural import Composition, ProceduralMusic
from avgen_dagster.media.loudness import NormalizationResult, normalize_loudness

__all__ = [
    "DEFAULT_MAX_DURATION_S",
    "GENRES",
    "MODEL_CACHE",
    "MUSIC_TARGET_LUFS",
    "Composition",
    "Genre",
    "MusicGenMusic",
    "MusicGenerator",
    "ProceduralMusic",
    "normalize_music",
    "validate_music_request",
]

#: Default music loudness target, LUFS (streaming reference level; speech uses -16).
MUSIC_TARGET_LUFS = -14.0


@runtime_checkable
class MusicGenerator(Protocol):
    """A music backend.

    Attributes:
        name: backend name (configuration key, metadata).
        model: the model it runs (a path, a Hub id or a procedural version).
        sample_rate: rate of the tracks, Hz.
    """

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
