"""Image backends: prompt in, RGB picture out.

Two backends implement :class:`ImageGenerator`:

- :class:`~avgen_dagster.backends.landscape.ProceduralImages` (embedded default, no model):
  a deterministic landscape painter seeded by the prompt and the seed.
- :class:`DiffusersImages` (production, here): any diffusers text-to-image pipeline through
  ``diffusers.AutoPipelineForText2Image`` (SD-Turbo, SDXL-Turbo, SD 1.5, LCM, ...), from a
  local folder (``model_index.json`` + components) or a Hub id already in the local cache
  (:func:`avgen_dagster.backends.hub.check_diffusers_model`).

Pipelines load once per process (:data:`MODEL_CACHE`, keyed by path, device and dtype).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from avgen_dagster.backends.devices import (
    resolve_device,
    resolve_dtype,
    run_batched_with_oom_retry,
    torch_dtype,
)
from avgen_dagster.backends.hub import check_diffusers_model, quiet_hub_libraries
from avgen_dagster.errors import BackendError, InvalidInputError
from avgen_dagster.model_cache import ModelCache

__all__ = [
    "MAX_SIDE",
    "MODEL_CACHE",
    "DiffusersImages",
    "ImageGenerator",
    "RoundedSize",
    "check_image_size",
    "check_prompt",
    "round_to_multiple",
]

_LOG = logging.getLogger(__name__)

#: Largest side accepted by the backends, pixels (a guard against typos like 51200).
MAX_SIDE = 4096


@runtime_checkable
class ImageGenerator(Protocol):
    """A text-to-image backend (:class:`~avgen_dagster.backends.landscape.ProceduralImages`,
    :class:`DiffusersImages`).

    Attributes:
        name: backend name, as the resource's ``backend`` setting spells it.
        model: what draws: a pipeline folder, a Hub id, or the painter's version.
    """

    name: str
    model: str

    def generate(self, prompt: str, *, seed: int, width: int, height: int) -> np.ndarray:
        """Render ``prompt``.

        Returns:
            RGB ``uint8`` array of shape ``(H, W, 3)``; ``(height, width)`` unless the
            backend rounds the size (see :class:`DiffusersImages`).

        Raises:
            InvalidInputError: empty prompt or a bad size.
            BackendError: the model cannot load or run.
        """
        ...


def check_image_size(width: int, height: int) -> None:
    """Refuse an image side outside 16..:data:`MAX_SIDE` pixels.

    Raises:
        InvalidInputError: the message names the side and the allowed range.
    """
    for label, side in (("width", width), ("height", height)):
        if not isinstance(side, int | np.integer) or not 16 <= side <= MAX_SIDE:
            raise InvalidInputError(f"image {label} must be 16..{MAX_SIDE} pixels, got {side}")


def check_prompt(prompt: str) -> str:
    """The prompt with white space folded.

    Raises:
        InvalidInputError: the prompt is empty.
    """
    text = " ".join(str(prompt or "").split())
    if not text:
        raise InvalidInputError("the image prompt is empty")
    return text


# --- diffusers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundedSize:
    """A requested size and the size a model can produce.

    Attributes:
        width: width to generate, pixels (a multiple of ``multiple``).
        height: height to generate, pixels.
        requested_width: what was asked, pixels.
        requested_height: what was asked, pixels.
        multiple: the model's size multiple, pixels.
    """

    width: int
    height: int
    requested_width: int
    requested_height: int
    multiple: int

    @property
    def changed(self) -> bool:
        """True when the size had to be rounded."""
        return (self.width, self.height) != (self.requested_width, self.requested_height)

    @property
    def message(self) -> str:
        """A one-line explanation for logs and metadata."""
        if not self.changed:
            return f"{self.width}x{self.height} (a multiple of {self.multiple})"
        return (
            f"size {self.requested_width}x{self.requested_height} rounded to "
            f"{self.width}x{self.height}: this model needs sides that are multiples of "
            f"{self.multiple} pixels"
        )


def round_to_multiple(value: int, multiple: int) -> int:
    """Nearest positive multiple of ``multiple`` to ``value`` (ties round up), at least one
    ``multiple``."""
    return max(multiple, math.floor(value / multiple + 0.5) * multiple)


#: Loaded text-to-image pipelines, by (model, device, dtype).
MODEL_CACHE: ModelCache[Any] = ModelCache("text-to-image")


class DiffusersImages:
    """Production image backend: a diffusers text-to-image pipeline.

    Loaded through ``AutoPipelineForText2Image.from_pretrained`` (the class named in
    ``model_index.json``: StableDiffusion, StableDiffusionXL, LCM, ...), once per process
    per (path, device, dtype). Sizes are rounded to the model's multiple: the VAE scale
    factor (8 for SD/SDXL) times the UNet's downsampling (``2 ** (levels - 1)``, 8 for
    SD/SDXL), i.e. 64 px for the real models, at least 8 (the SD pipelines' own
    ``height % 8`` check); the image comes back at the rounded size and
    :attr:`last_rounding` says what changed.

    Typical settings: SD-Turbo / SDXL-Turbo ``steps=1..4, guidance=0`` (Sauer et al. 2023,
    "Adversarial Diffusion Distillation"); SD 1.5 ``steps=25, guidance=7.5``; LCM
    ``steps=4..8, guidance=1..2``.

    Args:
        model_path: local pipeline folder, or a Hub id in the local cache.
        steps: denoising steps.
        guidance: classifier-free guidance scale (<= 1 disables CFG).
        negative_prompt: text to steer away from (used only with CFG).
        device: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda"``...
        dtype: ``None`` (bf16/fp16 on CUDA, fp32 on CPU) or a dtype name.
        batch_size: images per pipeline call in :meth:`generate_batch` (halved on GPU OOM).

    Raises:
        BackendError: (at construction) the model path does not exist or lacks files.
        InvalidInputError: bad steps, device or dtype.
    """

    name = "diffusers"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        steps: int = 4,
        guidance: float = 0.0,
        negative_prompt: str | None = None,
        device: str = "auto",
        dtype: str | None = None,
        batch_size: int = 1,
    ) -> None:
        self.model = check_diffusers_model(model_path, kind="image")
        if steps < 1:
            raise InvalidInputError(f"steps must be at least 1, got {steps}")
        self.steps = int(steps)
        self.guidance = float(guidance)
        self.negative_prompt = negative_prompt
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(self.device, dtype)
        self.batch_size = int(batch_size)
        self.last_rounding: RoundedSize | None = None

    def load(self) -> Any:
        """The pipeline (loaded on first use, then from the process cache).

        Raises:
            BackendError: diffusers cannot load the folder (the message names it).
        """

        def loader() -> Any:
            try:
                quiet_hub_libraries()
                from diffusers import AutoPipelineForText2Image

                pipe = AutoPipelineForText2Image.from_pretrained(
                    self.model, dtype=torch_dtype(self.dtype)
                )
                pipe = pipe.to(self.device)
            except Exception as exc:
                raise BackendError(f"cannot load image model {self.model}: {exc}") from exc
            pipe.set_progress_bar_config(disable=True)
            return pipe

        return MODEL_CACHE.get((self.model, self.device, self.dtype), loader)

    def size_multiple(self) -> int:
        """The model's size multiple in pixels (see the class docstring)."""
        pipe = self.load()
        vae_scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        levels = len(getattr(getattr(denoiser, "config", None), "block_out_channels", ()) or ())
        return max(8, vae_scale * 2 ** max(levels - 1, 0))

    def round_size(self, width: int, height: int) -> RoundedSize:
        """Round a requested size to the model's multiple (nearest, at least one multiple)."""
        check_image_size(width, height)
        m = self.size_multiple()
        return RoundedSize(
            round_to_multiple(width, m), round_to_multiple(height, m), width, height, m
        )

    def generate(self, prompt: str, *, seed: int, width: int, height: int) -> np.ndarray:
        """Generate one image (see :meth:`generate_batch`).

        Returns:
            RGB ``uint8`` ``(H, W, 3)`` at the rounded size (:attr:`last_rounding`).
        """
        return self.generate_batch([prompt], [seed], width=width, height=height)[0]

    def generate_batch(
        self, prompts: Sequence[str], seeds: Sequence[int], *, width: int, height: int
    ) -> list[np.ndarray]:
        """Generate one image per (prompt, seed), :attr:`batch_size` per pipeline call.

        Each image has its own ``torch.Generator`` seeded with its seed, so an image does
        not depend on its batch neighbours' seeds. A GPU out-of-memory error halves the
        batch and retries (:func:`~avgen_dagster.backends.devices.run_batched_with_oom_retry`).

        Returns:
            RGB ``uint8`` arrays ``(H, W, 3)`` at the rounded size, in input order.

        Raises:
            InvalidInputError: empty prompt, mismatched lengths, bad size.
            BackendError: load failure, inference failure, or OOM at batch size 1.
        """
        import torch

        texts = [check_prompt(p) for p in prompts]
        if len(texts) != len(seeds):
            raise InvalidInputError(f"got {len(texts)} prompts and {len(seeds)} seeds")
        rounding = self.round_size(width, height)
        if rounding.changed:
            _LOG.warning("image model %s: %s", self.model, rounding.message)
        self.last_rounding = rounding
        pipe = self.load()
        gen_device = "cpu" if self.device == "mps" else self.device

        def run(batch: Sequence[tuple[str, int]]) -> list[np.ndarray]:
            kwargs: dict[str, Any] = {
                "prompt": [p for p, _ in batch],
                "num_inference_steps": self.steps,
                "guidance_scale": self.guidance,
                "width": rounding.width,
                "height": rounding.height,
                "generator": [
                    torch.Generator(device=gen_device).manual_seed(int(s)) for _, s in batch
                ],
                "output_type": "np",
            }
            if self.negative_prompt and self.guidance > 1.0:
                kwargs["negative_prompt"] = [self.negative_prompt] * len(batch)
            with torch.inference_mode():
                images = pipe(**kwargs).images
            arr = np.asarray(images, dtype=np.float32)
            if not np.all(np.isfinite(arr)):
                raise BackendError(f"image model {self.model} produced NaN/inf pixels")
            return [np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8) for a in arr]

        try:
            return run_batched_with_oom_retry(
                run,
                list(zip(texts, seeds, strict=True)),
                self.batch_size,
                what=f"image generation with {self.model}",
            )
        except (BackendError, InvalidInputError):
            raise
        except Exception as exc:
            raise BackendError(f"image model {self.model} failed: {exc}") from exc
