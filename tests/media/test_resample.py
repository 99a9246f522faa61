"""Streamed resampling equals the whole-array polyphase resample, block by block."""

from __future__ import annotations

import numpy as np
import pytest

from avgen_dagster.errors import MediaError
from avgen_dagster.media.audio_io import iter_resample, resample

RATES = [(22050, 48000), (16000, 48000), (48000, 16000), (44100, 48000), (24000, 16000)]


@pytest.mark.parametrize(("sr_in", "sr_out"), RATES)
@pytest.mark.parametrize("n", [1, 100, 441, 2 * 22050 + 17, 150_001])
def test_blocks_join_to_the_whole_array_result(sr_in: int, sr_out: int, n: int) -> None:
    x = np.random.default_rng(n).uniform(-1, 1, n).astype(np.float32)
    whole = resample(x, sr_in, sr_out)
    blocks = list(iter_resample(x, sr_in, sr_out, block_s=0.37))
    joined = np.concatenate(blocks)
    assert joined.dtype == np.float32
    assert joined.shape == whole.shape == (-(-n * sr_out // sr_in),)
    np.testing.assert_allclose(joined, whole, atol=1e-5)
    if n > sr_in:  # more than one block, none larger than about block_s at the new rate
        assert len(blocks) > 1
        assert max(b.size for b in blocks) <= 0.37 * sr_out + sr_out / sr_in * 160


def test_same_rate_and_empty_and_bad_rates() -> None:
    x = np.linspace(-1, 1, 1000, dtype=np.float32)
    np.testing.assert_array_equal(np.concatenate(list(iter_resample(x, 48000, 48000))), x)
    assert list(iter_resample(np.empty(0, np.float32), 22050, 48000)) == []
    with pytest.raises(MediaError, match="positive"):
        list(iter_resample(x, 0, 48000))
