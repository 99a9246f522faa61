"""Tiny random-weight models for the visuals tests, built and saved once per session
(:mod:`avgen_dagster.devtools.tiny_models`): the backends load them with
``from_pretrained(folder)`` exactly as they would load real weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from avgen_dagster.devtools.tiny_models import build_tiny_ltx, build_tiny_musicgen, build_tiny_sd


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny StableDiffusionPipeline (UNet 2 levels, VAE 2 levels, CLIP 2 layers)."""
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_musicgen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MusicGen (T5 1 layer, EnCodec 8 kHz / 50 frames per second, decoder 1 layer)."""
    return build_tiny_musicgen(tmp_path_factory.mktemp("tiny-musicgen"))


@pytest.fixture(scope="session")
def tiny_ltx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LTXPipeline with LTX-Video's real VAE compression (32× space, 8× time)."""
    return build_tiny_ltx(tmp_path_factory.mktemp("tiny-ltx"))
