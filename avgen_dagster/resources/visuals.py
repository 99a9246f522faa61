"""Resources choosing the image, music and video-clip backends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    from avgen_dagster.backends.image import ImageGenerator
    from avgen_dagster.backends.music import MusicGenerator
    from avgen_dagster.backends.video import ClipGenerator


class ImageBackendResource(dg.ConfigurableResource):
    """Images: ``procedural`` (embedded default) or ``diffusers`` (``model_path``: a local
    folder or cached model id of an ``AutoPipelineForText2Image`` model: SD-Turbo, SDXL-Turbo,
    SD 1.5, LCM)."""

    backend: Literal["procedural", "diffusers"] = "procedural"
    model_path: str | None = None
    steps: int = Field(default=4, ge=1, le=100)
    guidance: float = Field(default=0.0, ge=0.0)
    negative_prompt: str | None = None
    device: str = "auto"

    def generator(self) -> ImageGenerator:
        """The configured generator (a missing model is a BackendError naming it)."""
        from avgen_dagster.backends.image import DiffusersImages
        from avgen_dagster.backends.landscape import ProceduralImages

        if self.backend == "procedural":
            return ProceduralImages()
        return DiffusersImages(
            self.model_path or "",
            steps=self.steps,
            guidance=self.guidance,
            negative_prompt=self.negative_prompt,
            device=self.device,
        )


class MusicBackendResource(dg.ConfigurableResource):
    """Music: ``procedural`` (embedded default) or ``musicgen`` (transformers MusicGen from
    ``model_path``), normalised to ``target_lufs`` with true peak ≤ −1 dBTP."""

    backend: Literal["procedural", "musicgen"] = "procedural"
    model_path: str | None = None
    device: str = "auto"
    target_lufs: float = Field(default=-14.0, ge=-40.0, le=-5.0)

    def generator(self) -> MusicGenerator:
        """The configured generator."""
        from avgen_dagster.backends.music import MusicGenMusic, ProceduralMusic

        if self.backend == "procedural":
            return ProceduralMusic()
        return MusicGenMusic(self.model_path or "", device=self.device)


class VideoBackendResource(dg.ConfigurableResource):
    """Video clips: ``panzoom`` over the images (embedded default) or ``ltx`` (LTX-Video via
    diffusers from ``model_path``), 24 fps."""

    backend: Literal["panzoom", "ltx"] = "panzoom"
    model_path: str | None = None
    steps: int = Field(default=30, ge=1, le=200)
    device: str = "auto"

    def generator(self) -> ClipGenerator:
        """The configured generator."""
        from avgen_dagster.backends.video import LTXVideoClips, PanZoomClips

        if self.backend == "panzoom":
            return PanZoomClips(fps=24)
        return LTXVideoClips(self.model_path or "", steps=self.steps, device=self.device)
