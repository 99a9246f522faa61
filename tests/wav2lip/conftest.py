"""Fixtures for the Wav2Lip tests: a random-weight checkpoint in the published format
(:func:`avgen_dagster.devtools.tiny_models.save_wav2lip_checkpoint`) and a driving video."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from avgen_dagster.devtools.tiny_models import save_wav2lip_checkpoint
from avgen_dagster.media.faces import load_image_rgb
from avgen_dagster.media.video_io import encode_segment_mp4

SPEC_TSV = Path(__file__).with_name("wav2lip_state_dict.tsv")
PORTRAIT = Path(__file__).resolve().parents[2] / "samples" / "portrait.png"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Wav2Lip checkpoint (seed 0) in the published format."""
    return save_wav2lip_checkpoint(tmp_path_factory.mktemp("w2l") / "wav2lip.pth", seed=0)


@pytest.fixture(scope="session")
def driving_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """256 px, 25 fps: 20 portrait frames (slow pan), 15 frames without a face, 20 portrait."""
    small = cv2.resize(load_image_rgb(PORTRAIT), (256, 256), interpolation=cv2.INTER_AREA)
    noface = np.full_like(small, 120)
    noface[::8] = 60
    frames = [np.roll(small, i // 4, axis=1) for i in range(20)] + [noface] * 15 + [small] * 20
    out = tmp_path_factory.mktemp("drv") / "driving.mp4"
    return encode_segment_mp4(frames, 25, np.zeros(16000 * 55 // 25, np.float32), 16000, out)
