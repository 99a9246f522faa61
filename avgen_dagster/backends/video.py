"""Video-clip backends: an image and/or a prompt in, RGB frames out.

- :class:`PanZoomClips` (embedded default, no model): a Ken Burns move over a still image,
  a seeded zoom (in or out) and pan with smoothstep easing, rendered sub-pixel smoothly
  with an affine warp (bicubic) per frame.
- :class:`LTXVideoClips` (production): LTX-Video (HaCohen et al. 2024, "LTX-Video:
  Realtime Video Latent Diffusion") through diffusers' ``LTXPipeline`` (text-to-video) or
  ``LTXImageToVideoPipeline`` (from the same loaded components, when an image is given and
  ``image_to_video=True``). Its constraints (frames = 8k + 1, sides multiples of 32 for the
  released VAE) are enforced by rounding; :class:`RoundedRequest` says what changed.

:func:`write_clip` runs any backend into an H.264 MP4.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from avgen_dagster.backends.devices import (
    free_accelerator_memory,
    is_out_of_memory,
    resolve_device,
    resolve_dtype,
    torch_dtype,
)
from avgen_dagster.backends.hub import check_diffusers_model, quiet_hub_libraries
from avgen_dagster.backends.landscape import ProceduralImages
from avgen_dagster.errors import BackendError, InvalidInputError
from avgen_dagster.media.video_io import EncodedVideo, encode_video_mp4
from avgen_dagster.model_cache import ModelCache

__all__ = [
    "DEFAULT_MAX_CLIP_S",
    "MODEL_CACHE",
    "ClipGenerator",
    "LTXVideoClips",
    "PanZoomClips",
    "RoundedRequest",
    "frame_count",
    "write_clip",
]

_LOG = logging.getLogger(__name__)

#: Longest clip accepted by default, seconds.
DEFAULT_MAX_CLIP_S = 60.0


@runtime_checkable
class ClipGenerator(Protocol):
    """A video-clip backend (:class:`PanZoomClips`, :class:`LTXVideoClips`).

    Attributes:
        name: backend name (``panzoom``, ``ltx-video``).
        model: what moves the picture: a pipeline folder or Hub id, or the Ken Burns
            version.
        fps: frame rate of the clips, frames per second.
    """

    name: str
    model: str
    fps: float

    def generate(
        self,
        image_rgb: np.ndarray | None,
        prompt: str,
        *,
        duration_s: float,
        seed: int,
        width: int,
        height: int,
    ) -> Iterator[np.ndarray]:
        """Yield exactly :func:`frame_count` ``(duration_s, fps)`` RGB ``uint8`` frames of
        shape ``(height, width, 3)``.

        Raises:
            InvalidInputError: bad duration, size or image.
            BackendError: the model cannot load or run.
        """
        ...


def frame_count(duration_s: float, fps: float) -> int:
    """Frames of a clip: ``round(duration_s * fps)``, at least 1."""
    return max(1, round(duration_s * fps))


def _check_request(duration_s: float, width: int, height: int, max_s: float) -> None:
    if not isinstance(duration_s, int | float) or not math.isfinite(duration_s):
        raise InvalidInputError(f"clip duration must be a number of seconds, got {duration_s}")
    if duration_s <= 0:
        raise InvalidInputError(f"clip duration must be positive, got {duration_s} s")
    if duration_s > max_s:
        raise InvalidInputError(f"clip duration {duration_s} s is above the maximum {max_s} s")
    for label, side in (("width", width), ("height", height)):
        if not 16 <= int(side) <= 4096:
            raise InvalidInputError(f"clip {label} must be 16..4096 pixels, got {side}")


def _check_image(image_rgb: np.ndarray) -> np.ndarray:
    img = np.asarray(image_rgb)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 2:
        raise InvalidInputError(
            f"the clip's image must be RGB uint8 of shape (H, W, 3), got {img.dtype} {img.shape}"
        )
    return img


def _ease(t: float, kind: str) -> float:
    if kind == "cosine":
        return 0.5 - 0.5 * math.cos(math.pi * t)
    return t * t * (3.0 - 2.0 * t)  # smoothstep


class PanZoomClips:
    """Embedded clip backend: Ken Burns pan-and-zoom over a still image.

    The crop window keeps the output's aspect ratio. At zoom ``z`` it is ``1/z`` of the
    largest such window that fits in the image; its centre may move anywhere that keeps it
    inside. A seed picks zoom in or out (between ``1.0`` and ``max_zoom``, at least
    ``min_zoom_change`` apart), the start and end centres (at opposite sides along a random
    direction), and the easing (smoothstep or cosine). Frame ``i`` of ``N`` uses
    ``t = ease(i / (N - 1))`` to interpolate the log-zoom and the centre, then one
    ``cv2.warpAffine`` (``INTER_CUBIC``, reflected border) maps the window onto the output:
    sub-pixel positions, so slow moves do not judder. About 1-2 ms per 512×512 frame.

    With ``image_rgb=None`` the image is painted by :class:`ProceduralImages` from the
    prompt and seed (1.25× the output size, so the move has room).

    Args:
        fps: frames per second.
        max_zoom: largest zoom factor.
        min_zoom_change: least difference between start and end zoom.
        max_duration_s: longest accepted clip, seconds.
    """

    name = "panzoom"
    model = "ken-burns-v1"

    def __init__(
        self,
        fps: float = 24,
        *,
        max_zoom: float = 1.3,
        min_zoom_change: float = 0.1,
        max_duration_s: float = DEFAULT_MAX_CLIP_S,
    ) -> None:
        if fps <= 0:
            raise InvalidInputError(f"fps must be positive, got {fps}")
        if not 1.0 + min_zoom_change <= max_zoom <= 4.0:
            raise InvalidInputError(f"max_zoom must be in [1 + min_zoom_change, 4], got {max_zoom}")
        self.fps = float(fps)
        self.max_zoom = float(max_zoom)
        self.min_zoom_change = float(min_zoom_change)
        self.max_duration_s = float(max_duration_s)

    def generate(
        self,
        image_rgb: np.ndarray | None,
        prompt: str,
        *,
        duration_s: float,
        seed: int,
        width: int,
        height: int,
    ) -> Iterator[np.ndarray]:
        """Yield ``round(duration_s * fps)`` frames ``(height, width, 3)`` uint8 (see class).

        Raises:
            InvalidInputError: bad duration, size or image; empty prompt without an image.
        """
        _check_request(duration_s, width, height, self.max_duration_s)
        if image_rgb is None:
            img = ProceduralImages().generate(
                prompt, seed=seed, width=math.ceil(width * 1.25), height=math.ceil(height * 1.25)
            )
        else:
            img = _check_image(image_rgb)
        return self._frames(img, frame_count(duration_s, self.fps), seed, int(width), int(height))

    def _frames(
        self, img: np.ndarray, n: int, seed: int, width: int, height: int
    ) -> Iterator[np.ndarray]:
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x4B42])
        ih, iw = img.shape[:2]
        aspect = width / height
        base_w = min(iw, ih * aspect)  # largest window of the output aspect in the image
        base_h = base_w / aspect
        z_far = float(rng.uniform(1.0 + self.min_zoom_change, self.max_zoom))
        z0, z1 = (1.0, z_far) if rng.random() < 0.5 else (z_far, 1.0)
        angle = float(rng.uniform(0, 2 * math.pi))
        amount = float(rng.uniform(0.5, 1.0))
        ease = "cosine" if rng.random() < 0.5 else "smoothstep"

        def centre(z: float, sign: float) -> tuple[float, float]:
            free_x = (iw - base_w / z) / 2
            free_y = (ih - base_h / z) / 2
            return (
                iw / 2 + sign * amount * free_x * math.cos(angle),
                ih / 2 + sign * amount * free_y * math.sin(angle),
            )

        c0, c1 = centre(z0, -1.0), centre(z1, 1.0)
        src = np.ascontiguousarray(img)
        for i in range(n):
            t = _ease(i / (n - 1), ease) if n > 1 else 0.0
            z = math.exp(math.log(z0) + t * (math.log(z1) - math.log(z0)))
            cx = c0[0] + t * (c1[0] - c0[0])
            cy = c0[1] + t * (c1[1] - c0[1])
            s = (base_w / z) / width  # source pixels per output pixel
            # Output pixel centre (u + 0.5) maps to source cx + (u + 0.5 - W/2) * s.
            m = np.array(
                [
                    [s, 0.0, cx - s * width / 2 + 0.5 * s - 0.5],
                    [0.0, s, cy - s * height / 2 + 0.5 * s - 0.5],
                ]
            )
            yield cv2.warpAffine(
                src,
                m,
                (width, height),
                flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REFLECT101,
            )


# --- LTX-Video ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundedRequest:
    """A clip request and what the model can generate.

    Attributes:
        frames: frames to generate (``temporal_multiple * k + 1``).
        width: generation width, pixels (a multiple of ``spatial_multiple``).
        height: generation height, pixels.
        requested_frames: ``round(duration_s * fps)``.
        requested_width: pixels.
        requested_height: pixels.
        temporal_multiple: 8 for LTX-Video (VAE temporal compression).
        spatial_multiple: 32 for LTX-Video (VAE spatial compression × patch size).
    """

    frames: int
    width: int
    height: int
    requested_frames: int
    requested_width: int
    requested_height: int
    temporal_multiple: int
    spatial_multiple: int

    @property
    def changed(self) -> bool:
        """True when frames or size were rounded."""
        return (self.frames, self.width, self.height) != (
            self.requested_frames,
            self.requested_width,
            self.requested_height,
        )

    @property
    def message(self) -> str:
        """One line for logs and metadata."""
        if not self.changed:
            return f"{self.frames} frames at {self.width}x{self.height}: no rounding needed"
        return (
            f"LTX-Video needs {self.temporal_multiple}k+1 frames and sides that are multiples "
            f"of {self.spatial_multiple}: generating {self.frames} frames at "
            f"{self.width}x{self.height} for the requested {self.requested_frames} frames at "
            f"{self.requested_width}x{self.requested_height} (trimmed to "
            f"{self.requested_frames} frames and resized back)"
        )


#: Loaded LTX-Video pipelines, by (model, device, dtype).
MODEL_CACHE: ModelCache[Any] = ModelCache("text-to-video")


class LTXVideoClips:
    """Production clip backend: LTX-Video through diffusers.

    Frames: the requested ``n = round(duration_s * fps)`` is rounded up to ``8k + 1``
    (generated at ``fps``, LTX's ``frame_rate`` conditioning) and the extra frames are
    trimmed; sides are rounded to the nearest multiple of 32 and the frames resized back to
    the requested size (bilinear/area) when they differ. Both multiples are read from the
    loaded pipeline (VAE compression × transformer patch size), 8 and 32 for the released
    models. A GPU out-of-memory error is retried once with VAE tiling, then a clear error.

    Defaults follow the diffusers LTX-Video example (``guidance_scale=3``, 50 steps; the
    distilled 0.9.x checkpoints use ~8 steps and ``guidance_scale=1``).

    Args:
        model_path: a diffusers LTX pipeline folder, or a cached Hub id.
        steps: denoising steps.
        guidance_scale: classifier-free guidance (<= 1 disables it).
        negative_prompt: text to steer away from.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        dtype: ``None`` (bf16/fp16 on CUDA, fp32 on CPU) or a dtype name.
        fps: output frame rate.
        image_to_video: condition on the given image (``LTXImageToVideoPipeline``).
        max_sequence_length: text tokens for the T5 encoder.
        max_duration_s: longest accepted clip, seconds.

    Raises:
        BackendError: (at construction) the path does not exist or lacks files.
    """

    name = "ltx-video"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        steps: int = 50,
        guidance_scale: float = 3.0,
        negative_prompt: str | None = "worst quality, inconsistent motion, blurry, jittery",
        device: str = "auto",
        dtype: str | None = None,
        fps: float = 24,
        image_to_video: bool = False,
        max_sequence_length: int = 128,
        max_duration_s: float = DEFAULT_MAX_CLIP_S,
    ) -> None:
        self.model = check_diffusers_model(model_path, kind="video")
        if steps < 1:
            raise InvalidInputError(f"steps must be at least 1, got {steps}")
        if fps <= 0:
            raise InvalidInputError(f"fps must be positive, got {fps}")
        self.steps = int(steps)
        self.guidance_scale = float(guidance_scale)
        self.negative_prompt = negative_prompt
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(self.device, dtype)
        self.fps = float(fps)
        self.image_to_video = bool(image_to_video)
        self.max_sequence_length = int(max_sequence_length)
        self.max_duration_s = float(max_duration_s)
        self.last_request: RoundedRequest | None = None

    def load(self) -> Any:
        """The ``LTXPipeline``, loaded once per process.

        Raises:
            BackendError: diffusers cannot load the folder.
        """

        def loader() -> Any:
            try:
                quiet_hub_libraries()
                from diffusers import LTXPipeline

                pipe = LTXPipeline.from_pretrained(self.model, dtype=torch_dtype(self.dtype))
                pipe = pipe.to(self.device)
            except Exception as exc:
                raise BackendError(f"cannot load video model {self.model}: {exc}") from exc
            pipe.set_progress_bar_config(disable=True)
            return pipe

        return MODEL_CACHE.get((self.model, self.device, self.dtype), loader)

    def multiples(self) -> tuple[int, int]:
        """``(temporal, spatial)`` multiples of the loaded pipeline (8, 32 for LTX-Video)."""
        pipe = self.load()
        temporal = int(pipe.vae_temporal_compression_ratio) * int(
            pipe.transformer_temporal_patch_size
        )
        spatial = int(pipe.vae_spatial_compression_ratio) * int(pipe.transformer_spatial_patch_size)
        return temporal, spatial

    def plan(self, duration_s: float, width: int, height: int) -> RoundedRequest:
        """Round a request to the model's constraints (see the class docstring).

        Raises:
            InvalidInputError: bad duration or size.
        """
        _check_request(duration_s, width, height, self.max_duration_s)
        temporal, spatial = self.multiples()
        n = frame_count(duration_s, self.fps)
        frames = temporal * math.ceil((n - 1) / temporal) + 1
        return RoundedRequest(
            frames=frames,
            width=max(spatial, math.floor(width / spatial + 0.5) * spatial),
            height=max(spatial, math.floor(height / spatial + 0.5) * spatial),
            requested_frames=n,
            requested_width=int(width),
            requested_height=int(height),
            temporal_multiple=temporal,
            spatial_multiple=spatial,
        )

    def _run(
        self, pipe: Any, image: np.ndarray | None, prompt: str, req: RoundedRequest, seed: int
    ) -> np.ndarray:
        import torch

        kwargs: dict[str, Any] = {
            "prompt": prompt,
            "width": req.width,
            "height": req.height,
            "num_frames": req.frames,
            "frame_rate": round(self.fps),
            "num_inference_steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "generator": torch.Generator(
                device="cpu" if self.device == "mps" else self.device
            ).manual_seed(int(seed)),
            "output_type": "np",
            "max_sequence_length": self.max_sequence_length,
        }
        if self.negative_prompt and self.guidance_scale > 1:
            kwargs["negative_prompt"] = self.negative_prompt
        if image is not None and self.image_to_video:
            from diffusers import LTXImageToVideoPipeline
            from PIL import Image

            pipe = LTXImageToVideoPipeline(**pipe.components)
            pipe.set_progress_bar_config(disable=True)
            kwargs["image"] = Image.fromarray(image).resize((req.width, req.height))
        with torch.inference_mode():
            frames = pipe(**kwargs).frames
        return np.asarray(frames[0], dtype=np.float32)  # (F, H, W, 3) in [0, 1]

    def generate(
        self,
        image_rgb: np.ndarray | None,
        prompt: str,
        *,
        duration_s: float,
        seed: int,
        width: int,
        height: int,
    ) -> Iterator[np.ndarray]:
        """Generate a clip; yields ``round(duration_s * fps)`` frames ``(height, width, 3)``
        uint8 (generation at the rounded size/length, :attr:`last_request`).

        Raises:
            InvalidInputError: bad duration/size/image, empty prompt.
            BackendError: load/inference failure, or GPU OOM even with VAE tiling.
        """
        text = " ".join(str(prompt or "").split())
        if not text:
            raise InvalidInputError("the video prompt is empty")
        image = _check_image(image_rgb) if image_rgb is not None else None
        req = self.plan(duration_s, width, height)
        if req.changed:
            _LOG.warning("video model %s: %s", self.model, req.message)
        self.last_request = req
        pipe = self.load()
        try:
            try:
                video = self._run(pipe, image, text, req, seed)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                _LOG.warning(
                    "video model %s: out of GPU memory, retrying with VAE tiling", self.model
                )
                free_accelerator_memory()
                pipe.vae.enable_tiling()
                video = self._run(pipe, image, text, req, seed)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise BackendError(
                    f"video model {self.model} ran out of GPU memory for {req.frames} frames at "
                    f"{req.width}x{req.height} even with VAE tiling: ask for fewer seconds or "
                    "pixels"
                ) from exc
            raise BackendError(f"video model {self.model} failed: {exc}") from exc
        if not np.all(np.isfinite(video)):
            raise BackendError(f"video model {self.model} produced NaN/inf pixels")
        return self._deliver(video, req)

    @staticmethod
    def _deliver(video: np.ndarray, req: RoundedRequest) -> Iterator[np.ndarray]:
        size = (req.requested_width, req.requested_height)
        for i in range(req.requested_frames):
            frame = np.clip(video[min(i, len(video) - 1)] * 255.0 + 0.5, 0, 255).astype(np.uint8)
            if (frame.shape[1], frame.shape[0]) != size:
                shrink = frame.shape[1] > size[0]
                frame = cv2.resize(
                    frame, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
                )
            yield frame


def write_clip(
    generator: ClipGenerator,
    image_rgb: np.ndarray | None,
    prompt: str,
    output: Path,
    *,
    duration_s: float,
    seed: int,
    width: int,
    height: int,
    crf: int = 20,
    preset: str = "veryfast",
    gop_s: float = 2.0,
) -> EncodedVideo:
    """Generate a clip with ``generator`` and write it as an H.264 MP4 (no audio track),
    fast start, fixed GOP of ``gop_s`` seconds, atomically.

    Returns:
        The :class:`~avgen_dagster.media.video_io.EncodedVideo` (path, frames, duration).

    Raises:
        InvalidInputError, BackendError: from the generator.
        MediaError: encoding failure.
    """
    frames = generator.generate(
        image_rgb, prompt, duration_s=duration_s, seed=seed, width=width, height=height
    )
    return encode_video_mp4(
        frames, generator.fps, Path(output), crf=crf, preset=preset, gop_s=gop_s
    )
