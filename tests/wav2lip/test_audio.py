"""The 16 kHz mel front end and the video-frame -> mel-window mapping."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from avgen_dagster.backends.wav2lip.audio import (
    mel_chunks,
    mel_filterbank,
    mel_start,
    mel_windows,
    melspectrogram,
)
from avgen_dagster.devtools.tiny_models import synthetic_voice
from avgen_dagster.errors import InvalidInputError


@pytest.mark.parametrize(("seconds", "sr"), [(1.0, 16000), (2.5, 16000), (3.0, 22050)])
def test_eighty_frames_per_second_and_range(seconds: float, sr: int) -> None:
    mel = melspectrogram(synthetic_voice(seconds, sr), sr)
    assert mel.dtype == np.float32 and mel.shape[0] == 80
    assert mel.shape[1] == 1 + round(seconds * 16000) // 200  # 80 per second, centred
    assert mel.min() >= -4.0 and mel.max() <= 4.0
    assert mel.max() > 0.0  # speech is well above the floor


def test_silence_and_tone() -> None:
    sr = 16000
    assert np.all(melspectrogram(np.zeros(sr, np.float32), sr) == -4.0)
    t = np.arange(sr) / sr
    mel = melspectrogram((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), sr)
    fb = mel_filterbank()
    freqs = np.linspace(0, 8000, 401)
    centres = freqs[np.argmax(fb, axis=1)]
    assert np.all(np.diff(centres) >= 0) and 55 <= centres[0] < 120 and centres[-1] <= 7600
    band = int(np.argmax(mel[:, 40]))
    assert abs(centres[band] - 1000) < 60
    # expected level by hand: |pre-emphasis(1 kHz)| = 0.386, Hann peak 0.5·0.386/2·400 = 38.6,
    # Slaney band (~72 Hz wide, height 2/72) over the main lobe ~1.5 -> -16.5 dB -> 2.7
    assert mel[:, 40].max() == pytest.approx(2.6, abs=0.3)
    with pytest.raises(InvalidInputError):
        melspectrogram(np.zeros(0, np.float32), sr)


@pytest.mark.parametrize("fps", [25, 29.97, 30])
def test_window_mapping(fps: float) -> None:
    exact = Fraction(30000, 1001) if fps == 29.97 else Fraction(fps)
    i = np.arange(0, 5000)
    starts = mel_start(i, fps)
    assert starts.tolist() == [int(k * 80 // exact) for k in i.tolist()]
    if fps == 25:
        assert starts[:6].tolist() == [0, 3, 6, 9, 12, 16]
    # 10 s of audio: every video frame gets a 16-column window, none dropped at the end
    mel = melspectrogram(synthetic_voice(10.0, 16000), 16000)
    chunks = mel_chunks(mel, fps)
    n = round(10.0 * exact)
    assert chunks.shape == (n, 80, 16)
    for k in (0, 1, n // 2, n - 30):
        s = int(starts[k])
        np.testing.assert_array_equal(chunks[k], mel[:, s : s + 16])
    # the last windows run past the spectrogram: padded with the silence floor
    assert np.all(chunks[-1][:, -1] == -4.0)
    # streaming use: a slice equals the same frames of the full mapping
    part = mel_chunks(mel, fps, n_frames=7, start_frame=100)
    np.testing.assert_array_equal(part, chunks[100:107])
    np.testing.assert_array_equal(mel_windows(mel, fps, np.array([5, 2, 5])), chunks[[5, 2, 5]])
