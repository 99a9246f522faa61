"""Same text + same seed → bit-identical Piper audio, across processes and process history."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avgen_dagster.backends.speech import PiperSpeech
from avgen_dagster.backends.speech_seeded import noise_stream

TEXT = "Tides rise twice a day. The moon pulls the sea, and the sun helps a little."
SEED = 1234

CHILD = """
import hashlib, sys
from avgen_dagster.backends.speech import PiperSpeech
audio = PiperSpeech().synthesize(sys.argv[1], seed=int(sys.argv[2]))
print(hashlib.md5(audio.tobytes()).hexdigest())
"""


def _md5(x: np.ndarray) -> str:
    return hashlib.md5(x.tobytes()).hexdigest()


def _fresh_process_md5(text: str, seed: int) -> str:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, text, str(seed)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_same_text_and_seed_give_identical_audio_across_processes_and_history() -> None:
    first = _fresh_process_md5(TEXT, SEED)
    second = _fresh_process_md5(TEXT, SEED)
    assert first == second

    # In this process, after other synthesis (other texts, other seeds, the timed path).
    tts = PiperSpeech()
    tts.synthesize("Something else entirely, said first.", seed=7)
    tts.synthesize_words("And more, with another seed.", seed=SEED + 1)
    after_history = tts.synthesize(TEXT, seed=SEED)
    assert _md5(after_history) == first
    assert _md5(PiperSpeech(seed=SEED).synthesize(TEXT)) == first  # the default seed

    other_seed = tts.synthesize(TEXT, seed=SEED + 1)
    assert _md5(other_seed) != first
    # A different seed changes the noise, not the voice: similar length, clearly not equal.
    assert abs(other_seed.size - after_history.size) < 0.25 * after_history.size
    n = min(other_seed.size, after_history.size)
    assert np.max(np.abs(other_seed[:n] - after_history[:n])) > 0.05


def test_timed_path_gives_the_same_samples_as_the_untimed_path() -> None:
    tts = PiperSpeech()
    samples, rate, words = tts.synthesize_words(TEXT, seed=SEED)
    assert rate == tts.sample_rate and len(words) == len(TEXT.split())
    assert np.array_equal(samples, tts.synthesize(TEXT, seed=SEED))


def test_noise_buffers_grown_on_a_retry_give_the_same_audio() -> None:
    """A sentence whose noise buffers were too short runs again with exact sizes: same audio."""
    tts = PiperSpeech()
    reference = tts.synthesize(TEXT, seed=SEED)
    loaded = tts._loaded()
    saved = list(loaded.per_id)
    try:
        loaded.per_id[:] = [0.0] * len(saved)  # forget the size hints: every buffer too short
        again = tts.synthesize(TEXT, seed=SEED)
        assert tts.last_reruns >= 2  # both sentences re-ran
    finally:
        loaded.per_id[:] = [max(a, b) for a, b in zip(saved, loaded.per_id, strict=True)]
    assert np.array_equal(again, reference)


def test_noise_streams_are_prefix_consistent_and_keyed() -> None:
    long = noise_stream(3, 1, 0, 5000)
    assert long.dtype == np.float32 and long.shape == (5000,)
    assert np.array_equal(noise_stream(3, 1, 0, 1234), long[:1234])
    assert not np.array_equal(noise_stream(3, 2, 0, 100), long[:100])  # other sentence
    assert not np.array_equal(noise_stream(3, 1, 1, 100), long[:100])  # other node
    assert not np.array_equal(noise_stream(4, 1, 0, 100), long[:100])  # other seed
    assert abs(float(long.mean())) < 0.1 and abs(float(long.std()) - 1.0) < 0.05


def test_a_model_that_is_not_a_piper_vits_export_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from avgen_dagster.backends.speech_seeded import seeded_voice_model
    from avgen_dagster.errors import BackendError

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    plain = tmp_path / "identity.onnx"
    onnx.save(
        helper.make_model(
            helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
        ),
        plain,
    )
    with pytest.raises(BackendError, match=r"expected one Ceil node .* found 0"):
        seeded_voice_model(plain)
    nodes = [helper.make_node("Ceil", ["x"], ["y"])]
    ceil_only = tmp_path / "ceil.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y])), ceil_only)
    with pytest.raises(BackendError, match="has no RandomNormalLike node"):
        seeded_voice_model(ceil_only)


def test_one_and_two_onnx_threads_give_the_same_audio() -> None:
    """The resource's default (2 threads) keeps the determinism contract: the same samples as
    one thread (onnxruntime's sums change only from 4 threads up on this CPU)."""
    text = "The sky is blue because air scatters blue light more than red light."
    one = PiperSpeech(seed=5, num_threads=1).synthesize(text)
    two = PiperSpeech(seed=5, num_threads=2).synthesize(text)
    assert np.array_equal(one, two)
