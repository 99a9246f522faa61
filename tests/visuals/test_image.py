"""Image backends: the procedural painter and diffusers on a tiny random-weight pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from avgen_dagster.backends import image as image_mod
from avgen_dagster.backends.image import DiffusersImages, ImageGenerator, round_to_multiple
from avgen_dagster.backends.landscape import ProceduralImages
from avgen_dagster.errors import BackendError, InvalidInputError


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


def test_procedural_shape_determinism_and_variety() -> None:
    gen = ProceduralImages()
    assert isinstance(gen, ImageGenerator)
    a = gen.generate("a calm sunset over the sea", seed=1, width=160, height=96)
    assert a.shape == (96, 160, 3) and a.dtype == np.uint8
    again = ProceduralImages().generate("a calm sunset over the sea", seed=1, width=160, height=96)
    assert np.array_equal(a, again)
    other_seed = gen.generate("a calm sunset over the sea", seed=2, width=160, height=96)
    other_prompt = gen.generate("night sky over snowy mountains", seed=1, width=160, height=96)
    assert _mad(a, other_seed) > 8.0
    assert _mad(a, other_prompt) > 8.0
    # A picture, not noise or a flat fill: broad tonal range, smooth neighbourhoods.
    assert a.std() > 15
    assert _mad(a[:, 1:], a[:, :-1]) < 6.0


def test_procedural_five_prompts_all_distinct() -> None:
    gen = ProceduralImages()
    prompts = ["forest at dawn", "desert dunes", "ocean waves", "city at night", "winter snow"]
    imgs = [gen.generate(p, seed=0, width=64, height=64) for p in prompts]
    for i in range(len(imgs)):
        for j in range(i + 1, len(imgs)):
            assert _mad(imgs[i], imgs[j]) > 5.0, (prompts[i], prompts[j])


def test_procedural_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        ProceduralImages().generate("   ", seed=0, width=64, height=64)
    with pytest.raises(InvalidInputError, match="width"):
        ProceduralImages().generate("x", seed=0, width=8, height=64)


def test_round_to_multiple() -> None:
    assert round_to_multiple(500, 64) == 512
    assert round_to_multiple(31, 64) == 64
    assert round_to_multiple(96, 64) == 128  # ties round up


def test_diffusers_missing_paths_fail_before_work(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="does not exist"):
        DiffusersImages(tmp_path / "nope")
    with pytest.raises(BackendError, match=r"lacks model_index\.json"):
        DiffusersImages(tmp_path)
    with pytest.raises(BackendError, match="not in the local Hugging Face cache"):
        DiffusersImages("nobody/no-such-model-xyz")


def test_diffusers_folder_missing_component(tiny_sd_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "sd"
    shutil.copytree(tiny_sd_dir, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(BackendError, match="'unet'"):
        DiffusersImages(broken)
    index = json.loads((tiny_sd_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"


def test_diffusers_tiny_pipeline_generates_and_loads_once(tiny_sd_dir: Path) -> None:
    image_mod.MODEL_CACHE.clear()
    before = image_mod.MODEL_CACHE.load_count
    gen = DiffusersImages(tiny_sd_dir, steps=2, guidance=0.0, device="auto")
    assert isinstance(gen, ImageGenerator)
    assert gen.size_multiple() == 8  # tiny: VAE scale 2 x UNet 2 levels -> max(8, 4)
    a = gen.generate("a red sunset", seed=3, width=48, height=32)
    assert a.shape == (32, 48, 3) and a.dtype == np.uint8
    assert not gen.last_rounding.changed
    b = gen.generate("a red sunset", seed=3, width=48, height=32)
    assert np.array_equal(a, b)  # seeded
    c = gen.generate("a red sunset", seed=4, width=48, height=32)
    assert _mad(a, c) > 0.5
    # Rounding: 45x30 -> 48x32 with a message naming both sizes.
    d = gen.generate("blue ocean", seed=1, width=45, height=30)
    assert d.shape == (32, 48, 3)
    assert gen.last_rounding.changed and "45x30 rounded to 48x32" in gen.last_rounding.message
    # Batched generation with CFG + negative prompt, same per-seed results as single calls.
    gen2 = DiffusersImages(
        tiny_sd_dir, steps=2, guidance=2.0, negative_prompt="blurry", batch_size=2
    )
    batch = gen2.generate_batch(["hills", "sea", "sky"], [1, 2, 3], width=32, height=32)
    assert [x.shape for x in batch] == [(32, 32, 3)] * 3
    single = gen2.generate("sea", seed=2, width=32, height=32)
    assert _mad(batch[1], single) < 2.0
    assert image_mod.MODEL_CACHE.load_count - before == 1  # one load for every call above
