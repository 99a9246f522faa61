"""Image backends: prompt in, RGB picture out.

Two backends implement :class:`ImageGenerator`:

- :class:`ProceduralImages` (embedded default, no model): a deterministic landscape painter
  seeded by the prompt and the seed: a palette and a mood from the prompt's words (sunset,
  night, ocean, forest, desert, snow, ... or a hue hashed from the words), then layered sky
  gradient, sun or moon with glow, fBm clouds, stars, ridge-line hills with atmospheric
  perspective, water with a sun path, pine silhouettes, vignette and grain.
- :class:`DiffusersImages` (production): any diffusers text-to-image pipeline through
  ``diffusers.AutoPipelineForText2Image`` (SD-Turbo, SDXL-Turbo, SD 1.5, LCM, ...), from a
  local folder (``model_index.json`` + components) or a Hub id already in the local cache.

Pipelines load once per process (a cache keyed by path, device and dtype,
:func:`model_load_count`).
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from avgen_dagster.backends.devices import (
    resolve_device,
    resolve_dtype,
    run_batched_with_oom_retry,
    torch_dtype,
)
from avgen_dagster.errors import BackendError, InvalidInputError
from avgen_dagster.model_cache import ModelCache

__all__ = [
    "DiffusersImages",
    "ImageGenerator",
    "ProceduralImages",
    "RoundedSize",
    "check_diffusers_model",
    "clear_model_cache",
    "model_load_count",
    "round_to_multiple",
]

_LOG = logging.getLogger(__name__)

#: Largest side accepted by the backends, pixels (a guard against typos like 51200).
MAX_SIDE = 4096


@runtime_checkable
class ImageGenerator(Protocol):
    """A text-to-image backend."""

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


def _check_size(width: int, height: int) -> None:
    for label, side in (("width", width), ("height", height)):
        if not isinstance(side, int | np.integer) or not 16 <= side <= MAX_SIDE:
            raise InvalidInputError(f"image {label} must be 16..{MAX_SIDE} pixels, got {side}")


def _check_prompt(prompt: str) -> str:
    text = " ".join(str(prompt or "").split())
    if not text:
        raise InvalidInputError("the image prompt is empty")
    return text


# --- procedural landscapes ------------------------------------------------------------------


def _hash_int(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _smoothstep(e0: float | np.ndarray, e1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0), 1.0)))


def _fbm(
    rng: np.random.Generator, h: int, w: int, base: int, octaves: int, aspect: float = 1.0
) -> np.ndarray:
    """Fractal value noise in [0, 1], shape ``(h, w)``: octaves of bicubically upsampled
    random grids, amplitude halving per octave (Perlin 1985 style fBm)."""
    out = np.zeros((h, w), np.float32)
    total = 0.0
    amp = 1.0
    for o in range(octaves):
        gh = max(2, int(base * 2**o))
        gw = max(2, int(base * 2**o * aspect))
        grid = rng.random((gh + 3, gw + 3)).astype(np.float32)
        up = cv2.resize(grid, (w + w * 3 // gw, h + h * 3 // gh), interpolation=cv2.INTER_CUBIC)
        out += amp * up[:h, :w]
        total += amp
        amp *= 0.5
    out /= total
    lo, hi = np.percentile(out, (1, 99))
    return np.clip((out - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def _noise1d(rng: np.random.Generator, n: int, base: int, octaves: int) -> np.ndarray:
    """Fractal 1-D value noise, zero mean, shape ``(n,)``."""
    out = np.zeros(n, np.float64)
    amp = 1.0
    for o in range(octaves):
        k = max(2, base * 2**o)
        knots = rng.standard_normal(k + 3)
        xs = np.linspace(0, k, n)
        out += amp * np.interp(xs, np.arange(k + 3), knots)
        amp *= 0.5
    return out - out.mean()


_MOODS: dict[str, tuple[str, ...]] = {
    "night": ("night", "moon", "star", "stars", "midnight", "galaxy", "dark", "nocturne"),
    "sunset": ("sunset", "dusk", "evening", "golden", "autumn", "fall", "fire", "warm"),
    "dawn": ("dawn", "sunrise", "morning", "spring", "pastel", "dream", "soft"),
    "water": ("ocean", "sea", "lake", "river", "water", "beach", "coast", "bay", "waves"),
    "forest": ("forest", "tree", "trees", "pine", "woods", "jungle", "green", "nature"),
    "desert": ("desert", "sand", "dune", "dunes", "canyon", "mars", "dry"),
    "snow": ("snow", "winter", "ice", "frozen", "arctic", "glacier", "cold"),
}


def _moods(prompt: str) -> set[str]:
    words = set(re.findall(r"[a-z]+", prompt.lower()))
    return {mood for mood, keys in _MOODS.items() if words & set(keys)}


class ProceduralImages:
    """Embedded image backend: deterministic abstract landscape paintings.

    The palette (hue family, saturation) comes from a SHA-256 hash of the normalised prompt
    and from mood words in it (night, sunset, dawn, water, forest, desert, snow); the
    composition (horizon, sun, clouds, ridge shapes, trees, water line) from a hash of the
    prompt and ``seed``. Same prompt + seed → identical pixels on any machine (numpy's
    PCG64 generator and OpenCV resizes are deterministic); another seed or prompt gives a
    visibly different picture. About 30-60 ms for 512×512 on one CPU core.
    """

    name = "procedural"
    model = "procedural-landscape-v1"

    def generate(self, prompt: str, *, seed: int, width: int, height: int) -> np.ndarray:
        """Paint a landscape for ``prompt``.

        Args:
            prompt: any text; its words pick the palette and mood.
            seed: composition seed (any int).
            width: pixels, 16..4096.
            height: pixels, 16..4096.

        Returns:
            RGB ``uint8`` array of shape ``(height, width, 3)``.

        Raises:
            InvalidInputError: empty prompt or a size out of range.
        """
        text = _check_prompt(prompt)
        _check_size(width, height)
        key = text.lower()
        prng = np.random.default_rng(_hash_int("palette", key))
        rng = np.random.default_rng(_hash_int("scene", key, int(seed)))
        moods = _moods(key)
        img = self._paint(prng, rng, moods, int(width), int(height))
        return np.ascontiguousarray(np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8))

    # The painting itself: float32 RGB in [0, 1], layer by layer (back to front).
    def _paint(
        self,
        prng: np.random.Generator,
        rng: np.random.Generator,
        moods: set[str],
        w: int,
        h: int,
    ) -> np.ndarray:
        night = "night" in moods
        hue = float(prng.random())
        if "sunset" in moods:
            hue = 0.02 + 0.07 * float(prng.random())
        elif "dawn" in moods:
            hue = 0.85 + 0.12 * float(prng.random())
        elif "desert" in moods:
            hue = 0.07 + 0.05 * float(prng.random())
        elif "snow" in moods:
            hue = 0.55 + 0.06 * float(prng.random())
        elif night:
            hue = 0.6 + 0.12 * float(prng.random())
        sat = 0.35 + 0.4 * float(prng.random()) - (0.2 if "snow" in moods else 0.0)
        shift = float(prng.choice([0.08, -0.08, 0.5, 0.33, -0.33]))
        # Sky colours: top (deeper) to horizon (lighter, hue-shifted towards warm).
        val = 0.25 if night else 0.8
        sky_top = _hsv(hue + 0.05 * rng.standard_normal(), sat + 0.15, val * 0.75)
        sky_hor = _hsv(hue + shift * 0.5, sat * 0.6, min(1.0, val * 1.2 + 0.1))
        hill_far = _hsv(hue + shift, sat * 0.5, 0.35 if night else 0.62)
        hill_near = _hsv(hue + shift + 0.5 * float(prng.random()) - 0.25, sat + 0.2, 0.08)
        if "forest" in moods:
            hill_near = _hsv(0.3 + 0.1 * float(prng.random()), 0.6, 0.12)
        if "snow" in moods:
            hill_far = _hsv(hue, 0.1, 0.9)

        y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
        x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
        aspect = w / h
        horizon = float(rng.uniform(0.5, 0.7))

        # Sky gradient (gamma-shaped), slightly tilted.
        tilt = float(rng.uniform(-0.08, 0.08))
        t = np.clip((y + tilt * (x - 0.5)) / horizon, 0.0, 1.0) ** float(rng.uniform(0.7, 1.6))
        img = sky_top * (1 - t)[..., None] + sky_hor * t[..., None]

        # Sun or moon with a glow.
        sx, sy = float(rng.uniform(0.15, 0.85)), float(rng.uniform(0.12, horizon - 0.08))
        radius = float(rng.uniform(0.04, 0.09))
        d = np.sqrt(((x - sx) * aspect) ** 2 + (y - sy) ** 2)
        sun_col = _hsv(0.13, 0.05, 0.98) if night else _hsv(hue + 0.08, 0.35, 1.0)
        glow_col = _hsv(hue + 0.05, 0.5, 1.0) if not night else _hsv(0.6, 0.2, 0.8)
        glow = np.exp(-((d / (radius * (4 if not night else 2.5))) ** 2))[..., None]
        img = img + (0.55 if not night else 0.25) * glow * (glow_col - img * 0.5)
        if night:  # stars: sparse bright points, fainter near the horizon
            stars = (rng.random((h, w)) > 0.9985).astype(np.float32)
            stars = cv2.GaussianBlur(stars, (0, 0), 0.6) * 6.0
            img = img + (np.clip(stars, 0, 1) * (1 - t))[..., None] * 0.9

        # Clouds: stretched fBm, soft threshold, lit from the sun side.
        cover = float(rng.uniform(0.45, 0.75))
        clouds = _fbm(rng, h, w, base=5, octaves=5, aspect=aspect * 0.3)
        cmask = _smoothstep(cover, cover + 0.25, clouds) * (
            1 - _smoothstep(horizon - 0.1, horizon, y)
        )
        cloud_col = _hsv(hue + shift * 0.3, 0.15, 0.45 if night else 0.97)
        img = img * (1 - 0.75 * cmask[..., None]) + 0.75 * cmask[..., None] * cloud_col
        disk = _smoothstep(radius, radius * 0.93, d)[..., None]
        img = img * (1 - disk * (1 - 0.6 * cmask[..., None])) + disk * sun_col * (
            1 - 0.6 * cmask[..., None]
        )

        # Ridge lines, far to near: atmospheric perspective blends far layers into the sky.
        water = "water" in moods or ("desert" not in moods and rng.random() < 0.25)
        layers = int(rng.integers(3, 6))
        texture = _fbm(rng, h, w, base=6, octaves=4, aspect=aspect)
        xs = np.linspace(0.0, 1.0, w)
        aa = 1.5 / h
        tops: list[np.ndarray] = []
        for i in range(layers):
            depth = i / max(layers - 1, 1)
            base = horizon - 0.12 + depth * (0.42 if not water else 0.12) * (1 - horizon + 0.3)
            amp = (0.05 + 0.12 * float(rng.random())) * (1.0 - 0.4 * depth)
            ridge = np.zeros(w)
            for _ in range(3):
                f = float(rng.uniform(0.5, 3.0))
                ridge += np.sin(2 * math.pi * (f * xs + float(rng.random()))) / f
            ridge = ridge / 2.0 + 0.35 * _noise1d(rng, w, int(rng.integers(3, 8)), 4)
            if "desert" in moods:
                ridge = np.abs(ridge) * 0.8  # dunes: smooth, rounded crests
            top = (base - amp * ridge).astype(np.float32)[None, :]
            if water:
                top = np.minimum(top, horizon + 0.005)
            tops.append(top)
            m = _smoothstep(top - aa, top + aa, y)[..., None]
            col = hill_far * (1 - depth) + hill_near * depth
            haze = (1 - depth) * 0.55
            col = col * (1 - haze) + sky_hor * haze
            shade = (1.0 - 0.35 * np.clip((y - top) * 3.0, 0, 1))[..., None]
            tex = (0.9 + 0.2 * texture)[..., None] if depth > 0.3 else 1.0
            img = img * (1 - m) + m * col * shade * tex
            if water:
                break_after = int(rng.integers(1, 3))
                if i + 1 >= break_after:
                    break

        if water:
            wl = horizon + 0.005
            wm = _smoothstep(wl - aa, wl + aa, y)
            ripples = _fbm(rng, h, w, base=24, octaves=3, aspect=aspect * 0.06)
            depth_t = np.clip((y - wl) / (1 - wl + 1e-6), 0, 1)
            wcol = sky_hor * (1 - depth_t[..., None]) + sky_top * 0.6 * depth_t[..., None]
            wcol = wcol * (0.85 + 0.25 * ripples[..., None])
            path = np.exp(-(((x - sx) * aspect / (radius * (1.5 + 6 * depth_t))) ** 2))
            path = path * _smoothstep(0.45, 0.8, ripples) * (0.5 if night else 0.9)
            wcol = wcol + path[..., None] * (sun_col - wcol) * 0.8
            img = img * (1 - wm[..., None]) + wm[..., None] * wcol

        # Pines on the nearest ridge (forest, snow, or by chance).
        if not water and ("forest" in moods or "snow" in moods or rng.random() < 0.35):
            top = tops[-1][0]
            tree_col = hill_near * 0.6
            for _ in range(int(rng.integers(6, 30))):
                tx = float(rng.random())
                col_i = min(w - 1, int(tx * (w - 1)))
                th = float(rng.uniform(0.04, 0.14))
                tw = th * float(rng.uniform(0.22, 0.35)) / aspect
                ty = float(top[col_i]) + 0.01
                x0, x1 = max(0, int((tx - tw) * w) - 1), min(w, int((tx + tw) * w) + 2)
                y0, y1 = max(0, int((ty - th) * h) - 1), min(h, int(ty * h) + 2)
                if x1 <= x0 or y1 <= y0:
                    continue
                yy, xx = y[y0:y1], x[:, x0:x1]
                half = tw * np.clip((yy - (ty - th)) / th, 0, 1)
                tm = _smoothstep(half + 1.0 / w, half - 1.0 / w, np.abs(xx - tx))
                tm = tm * (yy <= ty) * (yy >= ty - th)
                sub = img[y0:y1, x0:x1]
                img[y0:y1, x0:x1] = sub * (1 - tm[..., None]) + tm[..., None] * tree_col

        # Vignette and film grain.
        r2 = ((x - 0.5) * 1.2) ** 2 + ((y - 0.5) * 1.2) ** 2
        img = img * (1.0 - 0.35 * np.clip(r2, 0, 1))[..., None]
        img = img + (rng.standard_normal((h, w, 1)).astype(np.float32) * 0.012)
        return np.clip(img, 0.0, 1.0).astype(np.float32)


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


def _looks_like_hub_id(model_path: str) -> bool:
    return (
        not Path(model_path).is_absolute()
        and not model_path.startswith((".", "~"))
        and model_path.count("/") == 1
    )


def check_diffusers_model(model_path: str | os.PathLike[str], *, kind: str = "diffusers") -> str:
    """Check that ``model_path`` names a loadable diffusers pipeline, before any work.

    A local folder must contain ``model_index.json`` and, for every component listed in
    it, a sub-folder of that name. A Hub id (``owner/name``) must already be in the local
    Hugging Face cache (nothing is downloaded).

    Returns:
        The resolved folder path or the Hub id.

    Raises:
        BackendError: the folder does not exist, lacks ``model_index.json`` or a component
            folder, or the Hub id is not cached; the message names the path.
    """
    text = str(model_path)
    p = Path(text).expanduser()
    if p.is_dir():
        index = p / "model_index.json"
        if not index.is_file():
            raise BackendError(
                f"{kind} model folder {p} lacks model_index.json: not a diffusers pipeline "
                "folder (save one with pipeline.save_pretrained)"
            )
        try:
            spec = json.loads(index.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BackendError(f"{kind} model file {index} is not valid JSON: {exc}") from exc
        for comp, value in spec.items():
            if comp.startswith("_") or not isinstance(value, list) or value[0] is None:
                continue
            if not (p / comp).is_dir():
                raise BackendError(
                    f"{kind} model folder {p} lacks the {comp!r} component folder listed in "
                    "model_index.json"
                )
        return str(p.resolve())
    if _looks_like_hub_id(text):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(text, "model_index.json")
        if isinstance(cached, str):
            return text
        raise BackendError(
            f"{kind} model {text!r} is not a local folder and not in the local Hugging Face "
            "cache (downloads are disabled): download it first or give a folder path"
        )
    raise BackendError(f"{kind} model not found: {text} does not exist")


_CACHE: ModelCache[Any] = ModelCache("text-to-image")


def model_load_count() -> int:
    """How many text-to-image pipelines this process has loaded from disk (cache misses)."""
    return _CACHE.load_count


def clear_model_cache() -> None:
    """Forget every loaded text-to-image pipeline."""
    _CACHE.clear()


def _quiet_diffusers() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.disable_progress_bar()
    tlog.disable_progress_bar()


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
            _quiet_diffusers()
            try:
                from diffusers import AutoPipelineForText2Image

                pipe = AutoPipelineForText2Image.from_pretrained(
                    self.model, dtype=torch_dtype(self.dtype)
                )
                pipe = pipe.to(self.device)
            except Exception as exc:
                raise BackendError(f"cannot load image model {self.model}: {exc}") from exc
            pipe.set_progress_bar_config(disable=True)
            return pipe

        return _CACHE.get((self.model, self.device, self.dtype), loader)

    def size_multiple(self) -> int:
        """The model's size multiple in pixels (see the class docstring)."""
        pipe = self.load()
        vae_scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        levels = len(getattr(getattr(denoiser, "config", None), "block_out_channels", ()) or ())
        return max(8, vae_scale * 2 ** max(levels - 1, 0))

    def round_size(self, width: int, height: int) -> RoundedSize:
        """Round a requested size to the model's multiple (nearest, at least one multiple)."""
        _check_size(width, height)
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

        texts = [_check_prompt(p) for p in prompts]
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
