"""Coqui TTS speech backend (``coqui-tts`` 0.28.0, MPL-2.0; the maintained fork, ``TTS`` import).

:class:`CoquiSpeech` runs a Coqui model folder offline: a VITS model (Kim et al. 2021;
``config.json`` with ``"model": "vits"`` + ``model.pth``) or XTTS-v2 (Casanova et al. 2024,
"XTTS: a Massively Multilingual Zero-Shot Text-to-Speech Model"; ``config.json`` with
``"model": "xtts"`` + ``model.pth`` + ``vocab.json``) that clones the voice of a reference
clip. Any other Coqui ``tts_models`` folder with ``config.json`` + ``model.pth`` loads the
same way as VITS.

torchaudio: coqui-tts imports it, and no torchaudio wheel loads beside avgen's torch 2.13.0
CPU build; :mod:`avgen_dagster.backends.coqui_torchaudio` supplies the few functions Coqui
uses (identical results to torchaudio 2.11.1's) when the real one is missing.

Transformers: XTTS's GPT decoding with ``coqui-tts`` 0.28.0 works with transformers 5.23.0
(the project's pin) and fails with 5.24.0 (``AttributeError: 'NoneType' object has no
attribute 'get_seq_length'`` in ``TTS/tts/layers/xtts/gpt_inference.py``).

Determinism: each call runs under ``torch.random.fork_rng`` seeded with the request's seed,
so the same text, model and seed give the same samples whatever ran before, without
touching the process's global RNG state.

Word timings: Coqui gives no alignment here, so :meth:`CoquiSpeech.synthesize_words` spreads
each sentence's words over that sentence's audio by length (``timed=False``).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from avgen_dagster.backends.speech import (
    SpeechResult,
    check_language,
    check_seed,
)
from avgen_dagster.errors import BackendError, InvalidInputError
from avgen_dagster.media.audio_io import trim_bounds
from avgen_dagster.media.words import WordTiming
from avgen_dagster.model_cache import ModelCache
from avgen_dagster.voice_reference import (
    MAX_REFERENCE_S,
    MIN_REFERENCE_S,
    check_reference_samples,
    read_reference_audio,
)

__all__ = [
    "MAX_REFERENCE_S",
    "MIN_REFERENCE_S",
    "CoquiSpeech",
    "check_reference_clip",
    "clear_coqui_cache",
    "coqui_load_count",
    "coqui_model_kind",
]

_MODELS: ModelCache[Any] = ModelCache("coqui tts")
_RUN_LOCK = threading.Lock()  # Coqui models hold per-call state; one synthesis at a time


def coqui_load_count() -> int:
    """How many Coqui models this process has loaded from disk (cache misses)."""
    return _MODELS.load_count


def clear_coqui_cache() -> None:
    """Forget every loaded Coqui model."""
    _MODELS.clear()


def check_reference_clip(path: str | Path) -> tuple[np.ndarray, int]:
    """Read and check an XTTS reference clip with the rules intake applies to an upload
    (:mod:`avgen_dagster.voice_reference`: one implementation).

    Returns:
        ``(samples (n,) float32 mono, sample rate Hz)``.

    Raises:
        InvalidInputError: the file is missing or unreadable as audio, shorter than
            ``MIN_REFERENCE_S`` (3 s), longer than ``MAX_REFERENCE_S`` (30 s), or silent
            (RMS below −50 dBFS); each message names the file and the measured value.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"reference clip {p} does not exist")
    label = f"reference clip {p}"
    mono, rate = read_reference_audio(p, label)
    check_reference_samples(mono, rate, label)
    return mono, rate


def coqui_model_kind(model_path: str | Path | None) -> str | None:
    """The ``model`` a Coqui model folder's ``config.json`` names, lower case (``"xtts"``,
    ``"vits"``, …); None when there is no readable config (the run reports that)."""
    if not model_path:
        return None
    try:
        config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
        return str(config["model"]).lower()
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _load(folder: Path, config_path: Path, kind: str, use_cuda: bool) -> Any:
    from avgen_dagster.backends.coqui_torchaudio import install

    install()
    try:
        from TTS.utils.synthesizer import Synthesizer
    except Exception as exc:  # pragma: no cover - environment problem
        raise BackendError(f"coqui-tts is not importable: {exc!r}") from exc
    checkpoint = folder if kind == "xtts" else folder / "model.pth"
    try:
        return Synthesizer(
            tts_checkpoint=checkpoint, tts_config_path=config_path, use_cuda=use_cuda
        )
    except Exception as exc:
        raise BackendError(f"cannot load Coqui model {folder}: {exc!r}") from exc


class CoquiSpeech:
    """Coqui TTS: a VITS (or other ``tts_models``) folder, or XTTS-v2 with a reference clip.

    The folder holds ``config.json`` and ``model.pth`` (XTTS also ``vocab.json``). XTTS
    needs ``reference_wav`` (3-30 s, not silent) and speaks in the request's ``language``
    (one of the config's ``languages``; default the first). Output is peak-normalised to
    ``peak`` and trimmed to 50 ms of silence at each end, like :class:`PiperSpeech`.

    Args:
        model_path: the model folder.
        reference_wav: XTTS: the voice to clone (WAV/FLAC/OGG).
        language: the request's language; checked against the model's (XTTS: its
            ``languages``; VITS: ``phoneme_language`` when the config names one).
        speaker: a speaker name of a multi-speaker model.
        length_scale: > 1 slower (XTTS: ``speed = 1 / length_scale``), in [0.5, 3.0].
        seed: default seed (0 ≤ seed < 2**63).
        peak: output peak amplitude (0 < peak ≤ 1).
        use_cuda: run on CUDA.

    Raises:
        BackendError: the folder, its config or its checkpoint is missing or not a Coqui
            model (at construction: files and config; at first synthesis: the weights).
        InvalidInputError: a reference clip, language, speaker or setting the model or the
            limits do not allow; XTTS without a reference clip.
    """

    name = "coqui"

    def __init__(
        self,
        model_path: str | Path,
        *,
        reference_wav: str | Path | None = None,
        language: str | None = None,
        speaker: str | None = None,
        length_scale: float | None = None,
        seed: int = 0,
        peak: float = 0.9,
        use_cuda: bool = False,
    ) -> None:
        from avgen_dagster.backends.speech import length_scale_for

        folder = Path(model_path)
        config_path = folder / "config.json"
        if not folder.is_dir():
            raise BackendError(f"Coqui model folder {folder} does not exist")
        if not config_path.is_file() or not (folder / "model.pth").is_file():
            raise BackendError(f"Coqui model folder {folder} needs config.json and model.pth")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            self.kind = str(config["model"]).lower()
            audio = config.get("audio", {})
            self.sample_rate = int(audio.get("output_sample_rate") or audio["sample_rate"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BackendError(
                f"Coqui config {config_path} is not usable (needs model, audio.sample_rate): "
                f"{exc!r}"
            ) from exc
        if not 0 < peak <= 1:
            raise InvalidInputError(f"peak must be in (0, 1], got {peak}")
        self.folder, self.config_path = folder, config_path
        self.languages = [str(x) for x in (config.get("languages") or [])]
        if self.kind == "xtts":
            if not (folder / "vocab.json").is_file():
                raise BackendError(f"XTTS model folder {folder} has no vocab.json")
            if reference_wav is None:
                raise InvalidInputError(
                    f"XTTS model {folder.name!r} clones a voice: give a reference clip "
                    f"({MIN_REFERENCE_S:g}-{MAX_REFERENCE_S:g} s of speech)"
                )
            check_reference_clip(reference_wav)
            family = (language or (self.languages or ["en"])[0]).strip().lower()
            family = family.replace("_", "-").split("-")[0]
            codes = self.languages or [family]
            match = next((c for c in codes if c.lower().split("-")[0] == family), None)
            if match is None:
                raise InvalidInputError(
                    f"XTTS model {folder.name!r} speaks {', '.join(codes)}; the request's "
                    f"text is marked {language!r}"
                )
            self.language: str | None = match
        else:
            own = config.get("phoneme_language")
            if own and language:
                check_language(folder.name, str(own), language)
            self.language = None
        self.reference_wav = None if reference_wav is None else Path(reference_wav)
        self.speaker = speaker
        self.length_scale = length_scale_for(length_scale, None)
        self.seed = check_seed(seed)
        self.peak = peak
        self.use_cuda = use_cuda

    def load(self) -> Any:
        """The loaded ``TTS.utils.synthesizer.Synthesizer`` (once per process per folder)."""
        path = self.folder.resolve()
        mtime = (path / "model.pth").stat().st_mtime_ns
        return _MODELS.get(
            ("coqui", str(path), mtime, self.use_cuda),
            lambda: _load(path, self.config_path, self.kind, self.use_cuda),
        )

    def _check_speaker(self, synth: Any) -> str | None:
        manager = getattr(synth.tts_model, "speaker_manager", None)
        names = sorted(getattr(manager, "name_to_id", {}) or {}) if manager is not None else []
        if self.speaker is None:
            return names[0] if names and self.kind != "xtts" else None
        if self.speaker not in names:
            have = ", ".join(names) if names else "none (single speaker)"
            raise InvalidInputError(
                f"Coqui model {self.folder.name!r} has no speaker {self.speaker!r}; "
                f"speakers: {have}"
            )
        return self.speaker

    def _run(self, text: str, seed: int | None) -> tuple[np.ndarray, list[dict[str, Any]]]:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("text to speak is empty")
        seed = self.seed if seed is None else check_seed(seed)
        import torch

        synth = self.load()
        speaker = self._check_speaker(synth)
        kwargs: dict[str, Any] = {}
        if self.kind == "xtts":
            kwargs["speaker_wav"] = str(self.reference_wav)
            kwargs["language_name"] = self.language
            if self.length_scale is not None:
                kwargs["speed"] = 1.0 / self.length_scale
        with _RUN_LOCK, torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(seed % 2**63)
            model = synth.tts_model
            old_scale = getattr(model, "length_scale", None)
            try:
                if self.kind != "xtts" and self.length_scale is not None and old_scale is not None:
                    model.length_scale = self.length_scale
                out = synth.tts(text.strip(), speaker_name=speaker, return_dict=True, **kwargs)
            except (InvalidInputError, BackendError):
                raise
            except Exception as exc:
                raise BackendError(
                    f"Coqui model {self.folder} failed on the text: {exc!r}"
                ) from exc
            finally:
                if old_scale is not None:
                    model.length_scale = old_scale
        audio = np.asarray(out["wav"], dtype=np.float32).reshape(-1)
        return audio, list(out.get("segments") or [])

    def synthesize(self, text: str, *, seed: int | None = None) -> np.ndarray:
        """Speak ``text``: (n,) float32 mono in [-1, 1] at :attr:`sample_rate` Hz.

        Raises:
            InvalidInputError: empty text, a bad seed or speaker.
            BackendError: the model cannot load or fails, or produces silence.
        """
        return self.synthesize_words(text, seed=seed).samples

    def synthesize_words(self, text: str, *, seed: int | None = None) -> SpeechResult:
        """Speak ``text``; every word of it with a time estimated within its sentence.

        Coqui reports sentence spans (its own sentence splitter); each sentence's words are
        spread over that span by character count (``timed=False``). When the sentences
        cannot be matched to the words, all words are spread over the whole voiced audio.

        Raises:
            InvalidInputError: empty text, a bad seed or speaker.
            BackendError: the model cannot load or fails, or produces silence.
        """
        raw, segments = self._run(text, seed)
        top = float(np.max(np.abs(raw))) if raw.size else 0.0
        if top < 1e-6:
            raise BackendError(f"Coqui model {self.folder} produced silence for the text")
        audio = raw * np.float32(self.peak / top)
        bounds = trim_bounds(audio, self.sample_rate, 0.05, -50.0)
        start, stop, lead, tail = bounds if bounds is not None else (0, audio.size, 0, 0)
        out = np.concatenate(
            [np.zeros(lead, np.float32), audio[start:stop], np.zeros(tail, np.float32)]
        )
        out = np.clip(out, -1.0, 1.0).astype(np.float32, copy=False)
        shift_s = (lead - start) / self.sample_rate
        words = _estimate_words(text.split(), segments, shift_s, out.size / self.sample_rate)
        return SpeechResult(out, self.sample_rate, words)


def _spread(words: list[str], start_s: float, end_s: float) -> list[WordTiming]:
    """``words`` one after another over [start_s, end_s], each by its length (untimed)."""
    weights = [max(1, len(w)) for w in words]
    total = sum(weights)
    out, acc = [], 0
    for word, weight in zip(words, weights, strict=True):
        s = start_s + (end_s - start_s) * acc / total
        acc += weight
        out.append(WordTiming(word, s, max(s, start_s + (end_s - start_s) * acc / total), False))
    return out


def _estimate_words(
    words: list[str], segments: list[dict[str, Any]], shift_s: float, duration_s: float
) -> list[WordTiming]:
    """Words spread within Coqui's sentence segments (moved by ``shift_s``, clamped)."""

    def clamp(t: float) -> float:
        return min(max(t, 0.0), duration_s)

    counts = [len(str(seg.get("text", "")).split()) for seg in segments]
    if segments and sum(counts) == len(words):
        out: list[WordTiming] = []
        i = 0
        for seg, n in zip(segments, counts, strict=True):
            s = clamp(float(seg["start"]) + shift_s)
            e = clamp(float(seg["end"]) + shift_s)
            out += _spread(words[i : i + n], s, max(s, e))
            i += n
        return out
    return _spread(words, clamp(0.05), clamp(duration_s - 0.05))
