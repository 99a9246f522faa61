"""The production music backend: MusicGen (Copet et al. 2023, "Simple and Controllable Music
Generation") through transformers' ``MusicgenForConditionalGeneration`` + ``AutoProcessor``
from a local folder or a cached Hub id (facebook/musicgen-small...). Tracks longer than the
model's window are generated window by window, each window prompted with the tail of the
audio so far, joined by cross-fades.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from avgen_dagster.backends.devices import (
    is_out_of_memory,
    resolve_device,
    resolve_dtype,
    torch_dtype,
)
from avgen_dagster.backends.hub import cached_hub_file, looks_like_hub_id, quiet_hub_libraries
from avgen_dagster.backends.music.genres import (
    DEFAULT_MAX_DURATION_S,
    GENRES,
    validate_music_request,
)
from avgen_dagster.backends.music.synth import fades
from avgen_dagster.errors import BackendError, InvalidInputError
from avgen_dagster.model_cache import ModelCache

__all__ = ["MODEL_CACHE", "MusicGenMusic"]

#: Loaded ``(processor, model)`` pairs, by (model, device, dtype).
MODEL_CACHE: ModelCache[Any] = ModelCache("music")


def _check_musicgen_path(model_path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """``(folder or Hub id, config)`` of a MusicGen model: a folder with config.json (model
    type musicgen) and a tokenizer, or a Hub id in the local cache."""
    text = str(model_path)
    p = Path(text).expanduser()
    if p.is_dir():
        cfg_path = p / "config.json"
        if not cfg_path.is_file():
            raise BackendError(f"music model folder {p} lacks config.json")
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BackendError(f"music model file {cfg_path} is not valid JSON: {exc}") from exc
        if cfg.get("model_type") != "musicgen":
            raise BackendError(
                f"music model folder {p} holds a {cfg.get('model_type')!r} model, not musicgen"
            )
        if not any((p / f).is_file() for f in ("tokenizer.json", "spiece.model")):
            raise BackendError(f"music model folder {p} lacks its tokenizer (tokenizer.json)")
        return str(p.resolve()), cfg
    if looks_like_hub_id(text):
        return text, json.loads(
            Path(cached_hub_file(text, "config.json", kind="music")).read_text()
        )
    raise BackendError(f"music model not found: {text} does not exist")


class MusicGenMusic:
    """Production music backend: MusicGen through transformers.

    Prompt: ``"<genre> music, <genre description>"``. Generation samples (top-k 250, as
    MusicGen's reference) with classifier-free guidance ``guidance_scale``. The decoder
    emits ``frame_rate`` (50 for the 32 kHz EnCodec) code frames per second with the
    "delay" interleaving of K codebooks, so ``frames + K - 1`` tokens give ``frames`` of
    audio.

    Windowed continuation for tracks longer than ``window_s`` (30 s, MusicGen's training
    length): window 1 is generated from text; each next window is prompted with the last
    ``prompt_s`` seconds of the track so far (re-encoded by EnCodec) and generates up to
    ``window_s - prompt_s`` new seconds; the model's re-decoding of the prompt's last
    ``crossfade_s`` is cross-faded (linear, equal gain: the two are correlated) with the
    track's tail, then the new audio is appended. The result is trimmed to the duration
    and faded (0.5 s in, 1.5 s out).

    Args:
        model_path: folder with config.json, weights, tokenizer and feature extractor
            files; or a cached Hub id (facebook/musicgen-small).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        dtype: ``None`` (bf16/fp16 on CUDA, fp32 on CPU) or a dtype name.
        guidance_scale: classifier-free guidance (3.0 in the paper; <= 1 disables it).
        window_s: longest single generation, seconds.
        prompt_s: audio context for continuation windows, seconds (< ``window_s``).
        crossfade_s: overlap cross-fade between windows, seconds (<= ``prompt_s``).
        max_duration_s: longest accepted track, seconds.

    Raises:
        BackendError: (at construction) missing folder/config/tokenizer, not a MusicGen model.
        InvalidInputError: inconsistent window settings.
    """

    name = "musicgen"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        device: str = "auto",
        dtype: str | None = None,
        guidance_scale: float = 3.0,
        window_s: float = 30.0,
        prompt_s: float = 10.0,
        crossfade_s: float = 0.5,
        max_duration_s: float = DEFAULT_MAX_DURATION_S,
        top_k: int = 250,
    ) -> None:
        self.model, cfg = _check_musicgen_path(model_path)
        if not 0 < prompt_s < window_s:
            raise InvalidInputError(f"prompt_s must be in (0, window_s={window_s}), got {prompt_s}")
        if not 0 <= crossfade_s <= prompt_s:
            raise InvalidInputError(f"crossfade_s must be in [0, prompt_s], got {crossfade_s}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(self.device, dtype)
        self.guidance_scale = float(guidance_scale)
        self.window_s = float(window_s)
        self.prompt_s = float(prompt_s)
        self.crossfade_s = float(crossfade_s)
        self.max_duration_s = float(max_duration_s)
        self.top_k = int(top_k)
        audio_cfg = cfg.get("audio_encoder", {})
        self.sample_rate = int(audio_cfg.get("sampling_rate", 32000))
        self.last_windows = 0

    def load(self) -> tuple[Any, Any]:
        """``(processor, model)``, loaded once per process.

        Raises:
            BackendError: transformers cannot load the model (the message names it).
        """

        def loader() -> tuple[Any, Any]:
            try:
                quiet_hub_libraries(diffusers=False)
                from transformers import AutoProcessor, MusicgenForConditionalGeneration

                processor = AutoProcessor.from_pretrained(self.model)
                model = MusicgenForConditionalGeneration.from_pretrained(
                    self.model, dtype=torch_dtype(self.dtype)
                )
                model.to(self.device)
                model.eval()
            except Exception as exc:
                raise BackendError(f"cannot load music model {self.model}: {exc}") from exc
            return processor, model

        return MODEL_CACHE.get((self.model, self.device, self.dtype), loader)

    def _window(
        self, processor: Any, model: Any, text: str, prompt_audio: np.ndarray | None, frames: int
    ) -> np.ndarray:
        import torch

        kwargs: dict[str, Any] = {"text": [text], "padding": True, "return_tensors": "pt"}
        if prompt_audio is not None:
            kwargs.update(audio=[prompt_audio], sampling_rate=self.sample_rate)
        inputs = processor(**kwargs)
        inputs = {
            k: (
                v.to(self.device, dtype=torch_dtype(self.dtype))
                if v.is_floating_point()
                else v.to(self.device)
            )
            for k, v in inputs.items()
        }
        k_codebooks = int(model.config.decoder.num_codebooks)
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=frames + k_codebooks - 1,
                do_sample=True,
                top_k=self.top_k,
                guidance_scale=self.guidance_scale if self.guidance_scale > 1 else None,
            )
        audio = out[0, 0].float().cpu().numpy().astype(np.float32)
        if not np.all(np.isfinite(audio)):
            raise BackendError(f"music model {self.model} produced NaN/inf samples")
        return audio

    def generate(self, genre: str, duration_s: float, *, seed: int) -> np.ndarray:
        """Generate ``duration_s`` seconds of ``genre`` (windowed beyond ``window_s``).

        Returns:
            float32 ``(round(duration_s * sample_rate),)`` in [-1, 1].

        Raises:
            InvalidInputError: unknown genre or bad duration.
            BackendError: load or inference failure (GPU OOM included).
        """
        import torch

        name = validate_music_request(genre, duration_s, max_duration_s=self.max_duration_s)
        processor, model = self.load()
        sr = self.sample_rate
        frame_rate = float(model.config.audio_encoder.frame_rate)
        text = f"{name} music, {GENRES[name].description}"
        n_total = round(duration_s * sr)
        xf = round(self.crossfade_s * sr)
        track = np.zeros(0, np.float32)
        windows = 0
        try:
            with torch.random.fork_rng(devices=[] if self.device == "cpu" else None):
                torch.manual_seed(int(seed))
                while track.size < n_total:
                    remaining = (n_total - track.size) / sr
                    if track.size == 0:
                        new_s = min(self.window_s, remaining)
                        audio = self._window(
                            processor, model, text, None, math.ceil(new_s * frame_rate)
                        )
                        track = audio
                    else:
                        p_n = min(track.size, round(self.prompt_s * sr))
                        new_s = min(self.window_s - self.prompt_s, remaining + self.crossfade_s)
                        audio = self._window(
                            processor, model, text, track[-p_n:], math.ceil(new_s * frame_rate)
                        )
                        # The output starts with the model's decoding of the prompt frames.
                        prompt_frames = math.ceil(p_n * frame_rate / sr)
                        cont = min(audio.size, round(prompt_frames * sr / frame_rate))
                        c = min(xf, cont, track.size)
                        if c > 0:
                            w = np.linspace(0.0, 1.0, c, dtype=np.float32)
                            track[-c:] = track[-c:] * (1 - w) + audio[cont - c : cont] * w
                        if audio.size <= cont:
                            raise BackendError(
                                f"music model {self.model} returned no new audio after a "
                                f"{p_n / sr:.1f} s prompt"
                            )
                        track = np.concatenate([track, audio[cont:]])
                    windows += 1
        except BackendError:
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                raise BackendError(
                    f"music model {self.model} ran out of GPU memory (batch size 1): use a "
                    "shorter window_s, float16/bfloat16 or a smaller model"
                ) from exc
            raise BackendError(f"music model {self.model} failed: {exc}") from exc
        self.last_windows = windows
        track = np.clip(track[:n_total], -1.0, 1.0)
        if track.size < n_total:
            track = np.pad(track, (0, n_total - track.size))
        return fades(track.astype(np.float32), sr, 0.5, 1.5)
