"""Fixtures for the Wav2Lip tests: a random-weight checkpoint in the published format."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from avgen_dagster.backends.wav2lip.model import Wav2Lip
from avgen_dagster.media.faces import load_image_rgb
from avgen_dagster.media.video_io import encode_segment_mp4

SPEC_TSV = Path(__file__).with_name("wav2lip_state_dict.tsv")
PORTRAIT = Path(__file__).resolve().parents[2] / "samples" / "portrait.png"


def save_published_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """Save ``model`` as the published wav2lip.pth is laid out: a dict with ``state_dict``
    whose keys carry DataParallel's ``module.`` prefix, beside optimizer/step entries."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "optimizer": {}, "global_step": 0, "global_epoch": 0}, path)
    return path


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Wav2Lip checkpoint (seed 0) in the published format."""
    torch.manual_seed(0)
    model = Wav2Lip()
    return save_published_checkpoint(model, tmp_path_factory.mktemp("w2l") / "wav2lip.pth")


def synthetic_voice(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Speech-like test signal: harmonic bursts (f0 110-180 Hz, 12 harmonics) with gaps."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 13))
    env = (np.sin(2 * np.pi * 3.1 * t + rng.uniform(0, 6)) > -0.2).astype(np.float64)
    env = np.convolve(env, np.hanning(401) / np.hanning(401).sum(), mode="same")
    return (0.25 * tone * env).astype(np.float32)


@pytest.fixture(scope="session")
def driving_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """256 px, 25 fps: 20 portrait frames (slow pan), 15 frames without a face, 20 portrait."""
    small = cv2.resize(load_image_rgb(PORTRAIT), (256, 256), interpolation=cv2.INTER_AREA)
    noface = np.full_like(small, 120)
    noface[::8] = 60
    frames = [np.roll(small, i // 4, axis=1) for i in range(20)] + [noface] * 15 + [small] * 20
    out = tmp_path_factory.mktemp("drv") / "driving.mp4"
    return encode_segment_mp4(frames, 25, np.zeros(16000 * 55 // 25, np.float32), 16000, out)
