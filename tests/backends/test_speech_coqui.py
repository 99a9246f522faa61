"""Coqui TTS backend on tiny random-weight VITS and XTTS models built here (no download).

Random weights speak noise, not words: these tests check the real loading and inference
code, the checks around it (reference clip, language, speaker), determinism and shapes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from avgen_dagster.backends import coqui_torchaudio
from avgen_dagster.backends.coqui import CoquiSpeech, coqui_load_count
from avgen_dagster.backends.speech import SpeechSynthesizer
from avgen_dagster.errors import BackendError, InvalidInputError


def _md5(x: np.ndarray) -> str:
    return hashlib.md5(x.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def vits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A character-input VITS (1.3 M parameters, random weights), saved as Coqui saves it."""
    coqui_torchaudio.install()
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits, VitsArgs

    folder = tmp_path_factory.mktemp("vits")
    torch.manual_seed(0)
    args = VitsArgs(
        hidden_channels=16,
        hidden_channels_ffn_text_encoder=32,
        num_heads_text_encoder=2,
        num_layers_text_encoder=1,
        resblock_type_decoder="2",
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3]],
        upsample_rates_decoder=[8, 8, 4],
        upsample_initial_channel_decoder=32,
        upsample_kernel_sizes_decoder=[16, 16, 8],
        num_layers_flow=1,
        num_layers_posterior_encoder=1,
        init_discriminator=False,
    )
    config = VitsConfig(
        model_args=args,
        use_phonemes=False,
        phoneme_language="en-us",
        text_cleaner="basic_cleaners",
        add_blank=True,
        characters=CharactersConfig(
            characters_class="TTS.tts.models.vits.VitsCharacters",
            pad="<PAD>",
            eos="<EOS>",
            bos="<BOS>",
            blank="<BLNK>",
            characters="abcdefghijklmnopqrstuvwxyz",
            punctuations="!'(),-.:;? ",
            phonemes=None,
            is_unique=True,
            is_sorted=True,
        ),
    )
    config.audio.sample_rate = 22050
    model = Vits(config)
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    return folder


@pytest.fixture
def xtts_dir(tiny_xtts_dir: Path) -> Path:
    """An XTTS-v2-shaped model (1-layer GPT of width 32, perceiver resampler, HiFi-GAN
    decoder and ResNet speaker encoder at XTTS's sizes; random weights) + a BPE vocab: the
    session's (``tests/conftest.py``)."""
    return tiny_xtts_dir


def _clip(path: Path, seconds: float, amplitude: float = 0.3, sr: int = 22050) -> Path:
    t = np.arange(round(seconds * sr)) / sr
    voiced = np.sin(2 * np.pi * 140 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    soundfile.write(path, (amplitude * voiced).astype(np.float32), sr)
    return path


def test_torchaudio_shim_matches_independent_references() -> None:
    """The shim's mel filters equal librosa's (same formulas), resampling keeps a tone."""
    import librosa

    fb = coqui_torchaudio.melscale_fbanks(1025, 0.0, 8000.0, 80, 22050, "slaney", "slaney")
    ref = librosa.filters.mel(sr=22050, n_fft=2048, n_mels=80, fmin=0.0, fmax=8000.0)
    assert fb.shape == (1025, 80)
    assert np.allclose(fb.numpy().T, ref, atol=1e-6)

    sr, new = 24000, 22050
    t = torch.arange(sr) / sr
    tone = torch.sin(2 * torch.pi * 440.0 * t)[None]
    out = coqui_torchaudio.resample(tone, sr, new)
    assert out.shape == (1, new)
    spectrum = np.abs(np.fft.rfft(out[0, 2000:-2000].numpy()))
    peak_hz = np.argmax(spectrum) * new / (out.shape[1] - 4000)
    assert abs(peak_hz - 440.0) < 2.0
    # The module builds its kernel in float64 (as torchaudio's does): equal to float32 rounding.
    assert torch.allclose(coqui_torchaudio.Resample(sr, new)(tone), out, atol=1e-5)

    mel = coqui_torchaudio.MelSpectrogram(sample_rate=22050, n_fft=1024, n_mels=80)(tone)
    assert mel.shape == (1, 80, sr // 512 + 1) and bool(torch.all(mel >= 0))


def test_vits_model_folder_speaks_deterministically(vits_dir: Path) -> None:
    before = coqui_load_count()
    tts = CoquiSpeech(vits_dir, language="en")
    assert isinstance(tts, SpeechSynthesizer) and tts.sample_rate == 22050
    text = "hello world, this is a test. a second sentence follows."
    a = tts.synthesize(text, seed=11)
    assert a.dtype == np.float32 and a.ndim == 1 and a.size > 0.2 * tts.sample_rate
    assert float(np.max(np.abs(a))) == pytest.approx(0.9, abs=1e-6)
    torch.manual_seed(999)  # unrelated global RNG use does not matter
    CoquiSpeech(vits_dir).synthesize("something else first.", seed=3)
    b = CoquiSpeech(vits_dir, seed=11).synthesize(text)
    assert _md5(a) == _md5(b)
    assert _md5(tts.synthesize(text, seed=12)) != _md5(a)
    assert coqui_load_count() == before + 1

    samples, rate, words = tts.synthesize_words(text, seed=11)
    assert np.array_equal(samples, a) and rate == 22050
    assert [w.word for w in words] == text.split()
    assert all(not w.timed for w in words)
    assert [w.start_s for w in words] == sorted(w.start_s for w in words)
    assert words[-1].end_s <= samples.size / rate


def test_vits_checks(vits_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"speaks en-us.*marked 'de'"):
        CoquiSpeech(vits_dir, language="de")
    with pytest.raises(InvalidInputError, match=r"has no speaker 'bob'.*single speaker"):
        CoquiSpeech(vits_dir, speaker="bob").synthesize("hello.")
    with pytest.raises(InvalidInputError, match="empty"):
        CoquiSpeech(vits_dir).synthesize(" ")
    with pytest.raises(BackendError, match="does not exist"):
        CoquiSpeech(tmp_path / "nothing")
    with pytest.raises(BackendError, match=r"needs config\.json and model\.pth"):
        CoquiSpeech(tmp_path)


def test_xtts_clones_a_reference_clip(xtts_dir: Path, tmp_path: Path) -> None:
    reference = _clip(tmp_path / "me.wav", 4.0)
    tts = CoquiSpeech(xtts_dir, reference_wav=reference, language="en")
    assert tts.sample_rate == 24000 and tts.language == "en"
    a = tts.synthesize("hello world.", seed=5)
    assert a.dtype == np.float32 and a.ndim == 1 and a.size > 0
    assert np.all(np.abs(a) <= 1.0)
    assert np.array_equal(
        CoquiSpeech(xtts_dir, reference_wav=reference).synthesize("hello world.", seed=5), a
    )
    result = tts.synthesize_words("hello world.", seed=5)
    assert [w.word for w in result.words] == ["hello", "world."]


def test_xtts_reference_and_language_checks(xtts_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="clones a voice: give a reference clip"):
        CoquiSpeech(xtts_dir)
    silent = _clip(tmp_path / "silent.wav", 5.0, amplitude=0.0)
    with pytest.raises(InvalidInputError, match=r"silent.wav is silent \(RMS -inf dBFS"):
        CoquiSpeech(xtts_dir, reference_wav=silent)
    short = _clip(tmp_path / "short.wav", 2.0)
    with pytest.raises(InvalidInputError, match=r"short.wav is 2.00 s long; .* at least 3 s"):
        CoquiSpeech(xtts_dir, reference_wav=short)
    long = _clip(tmp_path / "long.wav", 31.0, sr=8000)
    with pytest.raises(InvalidInputError, match=r"long.wav is 31.0 s long; give at most 30 s"):
        CoquiSpeech(xtts_dir, reference_wav=long)
    with pytest.raises(InvalidInputError, match="does not exist"):
        CoquiSpeech(xtts_dir, reference_wav=tmp_path / "missing.wav")
    ok = _clip(tmp_path / "ok.wav", 3.5)
    with pytest.raises(InvalidInputError, match="speaks en, de; the request's text is marked 'fr'"):
        CoquiSpeech(xtts_dir, reference_wav=ok, language="fr")
    assert CoquiSpeech(xtts_dir, reference_wav=ok, language="de_DE").language == "de"


def test_speech_resource_builds_the_coqui_backend(xtts_dir: Path, tmp_path: Path) -> None:
    from avgen_dagster.resources.backends import SpeechBackendResource

    reference = _clip(tmp_path / "me.wav", 3.5)
    resource = SpeechBackendResource(
        backend="coqui", model_path=str(xtts_dir), reference_wav=str(reference)
    )
    tts = resource.synthesizer(seed=2, language="de", length_scale=1.25)
    assert isinstance(tts, CoquiSpeech)
    assert (tts.language, tts.seed, tts.length_scale) == ("de", 2, 1.25)
    with pytest.raises(InvalidInputError, match=r"short.wav is 1.00 s long"):
        resource.synthesizer(reference_wav=str(_clip(tmp_path / "short.wav", 1.0)))
