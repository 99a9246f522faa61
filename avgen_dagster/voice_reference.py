"""The voice a request's narration clones: a short recording of speech the user uploads.

One set of rules for every entry point (CLI, portal, HTTP API) and for the speech backend that
clones from it (:func:`avgen_dagster.backends.coqui.check_reference_clip` applies the same
:func:`check_reference_samples` at run time):

* at most :data:`MAX_VOICE_REFERENCE_BYTES`; any format libsndfile reads here (WAV, FLAC,
  OGG Vorbis/Opus, MP3, AIFF …), judged by content, never by name;
* a sample rate of :data:`MIN_REFERENCE_RATE_HZ`-:data:`MAX_REFERENCE_RATE_HZ` and at most
  :data:`MAX_REFERENCE_CHANNELS` channels (mixed down to mono);
* :data:`MIN_REFERENCE_S`-:data:`MAX_REFERENCE_S` seconds long (XTTS conditions on at most
  30 s; a longer file is refused from its header, before it is decoded);
* not silent: RMS at least :data:`SILENT_REFERENCE_DBFS`.

A clip that passes is re-encoded as 16-bit PCM mono WAV at its own sample rate (stored by
intake as ``input/voice_reference.wav``). Every refusal is an
:class:`~avgen_dagster.errors.InvalidInputError` whose message names the clip and the measured
value. No Dagster, no torch.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avgen_dagster.errors import InvalidInputError

if TYPE_CHECKING:
    from avgen_dagster.portraits import Upload

MAX_VOICE_REFERENCE_BYTES = 20_000_000
"""Largest upload accepted (30 s of 48 kHz stereo 32-bit float is 11.5 MB)."""

MIN_REFERENCE_S, MAX_REFERENCE_S = 3.0, 30.0
"""Accepted length of a reference clip, seconds (XTTS uses at most 30 s of it)."""

SILENT_REFERENCE_DBFS = -50.0
"""A reference clip whose RMS is below this (dBFS) is refused as silent."""

MIN_REFERENCE_RATE_HZ, MAX_REFERENCE_RATE_HZ = 8_000, 192_000
MAX_REFERENCE_CHANNELS = 8

FIELD = "voice_reference"
"""The request field's name (API multipart part, ``NewRequest`` attribute)."""


@dataclass(frozen=True)
class VoiceReference:
    """A checked reference clip, ready to store.

    Attributes:
        data: 16-bit PCM mono WAV bytes.
        sample_rate: Hz (the upload's own).
        duration_s: seconds.
        rms_dbfs: loudness of the whole clip, RMS in dBFS.
    """

    data: bytes
    sample_rate: int
    duration_s: float
    rms_dbfs: float


def cloning_refused(backend: str) -> str:
    """The message for a voice reference given where speech backend ``backend`` (e.g.
    ``"piper"``, ``"coqui vits"``) will speak: it cannot clone a voice."""
    return (
        f"{FIELD}: the speech backend here ({backend}) does not clone voices, so a voice "
        "reference cannot be used; leave it out, or run with Coqui XTTS "
        "(AVGEN_SPEECH_BACKEND=coqui, AVGEN_SPEECH_MODEL=<an XTTS model folder>)"
    )


def _check_length(seconds: float, label: str) -> None:
    if seconds < MIN_REFERENCE_S:
        raise InvalidInputError(
            f"{label} is {seconds:.2f} s long; voice cloning needs at least "
            f"{MIN_REFERENCE_S:g} s of speech"
        )
    if seconds > MAX_REFERENCE_S:
        raise InvalidInputError(
            f"{label} is {seconds:.1f} s long; give at most {MAX_REFERENCE_S:g} s "
            "(cut a clean stretch of speech)"
        )


def check_reference_samples(samples: np.ndarray, sample_rate: int, label: str) -> float:
    """Check decoded reference audio against the length and silence rules.

    Args:
        samples: (n,) mono, float in [-1, 1].
        sample_rate: Hz.
        label: how messages name the clip, e.g. ``"voice reference 'me.wav'"``.

    Returns:
        The clip's RMS in dBFS.

    Raises:
        InvalidInputError: shorter than :data:`MIN_REFERENCE_S`, longer than
            :data:`MAX_REFERENCE_S`, or silent (RMS below :data:`SILENT_REFERENCE_DBFS`); the
            message names ``label`` and the measured value.
    """
    _check_length(samples.size / sample_rate, label)
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    rms_db = 20 * float(np.log10(rms)) if rms > 0 else float("-inf")
    if rms_db < SILENT_REFERENCE_DBFS:
        raise InvalidInputError(
            f"{label} is silent (RMS {rms_db:.1f} dBFS, below {SILENT_REFERENCE_DBFS:g} dBFS): "
            "record the voice to clone"
        )
    return rms_db


def read_reference_audio(source: Path | bytes, label: str) -> tuple[np.ndarray, int]:
    """Decode a reference clip to mono, refusing what the rules refuse before decoding it
    (rate, channels, length from the header).

    Args:
        source: a file path, or the file's bytes.
        label: how messages name the clip.

    Returns:
        ``(samples (n,) float32 mono in [-1, 1], sample rate Hz)``; not yet checked for
        shortness or silence (:func:`check_reference_samples`).

    Raises:
        InvalidInputError: not readable as audio; a sample rate, channel count or length out
            of bounds.
    """
    import soundfile

    handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        with soundfile.SoundFile(handle) as f:
            rate, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
            if not MIN_REFERENCE_RATE_HZ <= rate <= MAX_REFERENCE_RATE_HZ:
                raise InvalidInputError(
                    f"{label} is sampled at {rate} Hz; use {MIN_REFERENCE_RATE_HZ}-"
                    f"{MAX_REFERENCE_RATE_HZ} Hz"
                )
            if channels > MAX_REFERENCE_CHANNELS:
                raise InvalidInputError(f"{label} has {channels} channels; use mono or stereo")
            if frames > MAX_REFERENCE_S * rate:
                _check_length(frames / rate, label)
            # Read no more than the limit allows, whatever the header claimed.
            data = f.read(int(MAX_REFERENCE_S * rate) + 1, dtype="float32", always_2d=True)
    except InvalidInputError:
        raise
    except Exception as exc:  # libsndfile's errors: unknown format, truncated, corrupt
        raise InvalidInputError(
            f"{label} is not readable audio (WAV, FLAC, OGG or MP3): {exc}"
        ) from exc
    return data.mean(axis=1).astype(np.float32), rate


def check_voice_reference(upload: Upload) -> VoiceReference:
    """Check an uploaded reference clip (see the module docstring) and re-encode it as 16-bit
    PCM mono WAV for storage.

    Raises:
        InvalidInputError: empty, over :data:`MAX_VOICE_REFERENCE_BYTES`, unreadable, out of
            bounds, too short, too long or silent — each naming ``voice reference '<file>'``.
    """
    import soundfile

    label = f"voice reference {upload.name!r}"
    if not upload.data:
        raise InvalidInputError(f"{label} is empty")
    if len(upload.data) > MAX_VOICE_REFERENCE_BYTES:
        raise InvalidInputError(
            f"{label} is {len(upload.data) / 1e6:.1f} MB; the limit is "
            f"{MAX_VOICE_REFERENCE_BYTES / 1e6:.0f} MB"
        )
    samples, rate = read_reference_audio(upload.data, label)
    rms_db = check_reference_samples(samples, rate, label)
    out = io.BytesIO()
    soundfile.write(out, np.clip(samples, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    return VoiceReference(out.getvalue(), rate, samples.size / rate, rms_db)


def voice_reference_upload(path: Path | str) -> Upload:
    """Read a reference clip from ``path`` (the CLI's ``--voice-reference``), refusing a
    missing file or one over :data:`MAX_VOICE_REFERENCE_BYTES` before reading it.

    Raises:
        InvalidInputError: missing, not a regular file, or too large.
    """
    from avgen_dagster.portraits import Upload

    return Upload.from_path(
        path,
        kind="voice reference",
        max_bytes=MAX_VOICE_REFERENCE_BYTES,
        limit_text=f"the limit is {MAX_VOICE_REFERENCE_BYTES / 1e6:.0f} MB",
    )
