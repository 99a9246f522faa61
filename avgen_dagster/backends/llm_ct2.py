"""CTranslate2 runtime for small local causal LMs on CPU: convert once, load once, generate.

Why: on this project's 2-core CPU, transformers' ``generate`` on SmolLM2-135M in float32
made 14–17 tokens/s, and CTranslate2 (Klein et al., OpenNMT; ``ctranslate2`` 4.8.5, MIT) in
float32 ~21 tokens/s: one token reads every weight once, so a model this small is bound by
memory bandwidth (540 MB of float32 weights a token). With int8 weights (``compute_type
"int8"``: per-row int8 weights, int32 accumulation, activations quantised on the fly) it made
98–103 tokens/s on one thread of the idle machine (74–80 beside other jobs; two threads
only 31–33: the matrices are too small to share out), loads in 0.2–0.3 s, and the benchmark's
quality measures held (``benchmarks/script_quality.py``; figures in the README).

Conversion cache: :class:`ctranslate2.converters.TransformersConverter` turns a local
transformers folder (for the embedded model, the GGUF conversion folder of
:mod:`~avgen_dagster.backends.llm_local`) into ``<cache>/ctranslate2/<key>.<quantization>/``
(``config.json``, ``model.bin``, ``vocabulary.json``, plus the tokenizer files copied from the
source, so the folder is self-contained); ``<key>`` is the GGUF file's sha256 for the embedded
model, else a hash of the source folder's path and its files' sizes and modification times.
The folder is written to a temporary name and renamed, so a crash or a concurrent process
never leaves half a model where a reader looks. When the cache cannot be written, the model is
converted into a temporary folder, loaded, and the folder removed: that process pays the
conversion (~5–9 s for SmolLM2) every time, nothing else breaks.

Seeding: CTranslate2 keeps one random generator per worker thread, seeded from the value of
:func:`ctranslate2.set_random_seed` the first time that thread samples; seeding again later
does not reset it (checked here: two sampled calls on one ``Generator`` after the same
``set_random_seed`` gave different texts, a fresh ``Generator`` the same text). So every
sampled generation runs on a fresh ``Generator`` (0.2 s to load int8) under a lock, and the
same prompt + seed gives the same text in any process (checked: same md5 in two processes; and
with 1 or 2 threads). Greedy generations use the cached one.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avgen_dagster.backends.llm_local import converted_cache_dir
from avgen_dagster.errors import BackendError
from avgen_dagster.model_cache import ModelCache

__all__ = [
    "CT2_QUANTIZATION",
    "Ct2Model",
    "Ct2Sampling",
    "clear_ct2_cache",
    "convert_to_ct2",
    "ct2_cache_dir",
    "ct2_folder_for",
    "ct2_installed",
    "ct2_load_count",
    "generate_ct2",
    "load_ct2",
]

_LOG = logging.getLogger(__name__)

CT2_QUANTIZATION = "int8"
"""Weight type of the converted model and compute type on CPU. Measured on SmolLM2-135M
(2-core CPU, one thread, the demo prompt): float32 21–23 tokens/s, int16 37–43, int8 74–80;
int8 kept the benchmark's quality targets (see the module docstring)."""

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
)
"""Files copied from the transformers folder so the CTranslate2 folder holds its tokenizer."""

_SEED_LOCK = threading.Lock()


def ct2_installed() -> bool:
    """Whether the ``ctranslate2`` package can be imported (found without importing it)."""
    return importlib.util.find_spec("ctranslate2") is not None


def ct2_cache_dir() -> Path:
    """Root of the CTranslate2 conversion cache: ``ctranslate2/`` beside ``converted/``."""
    return converted_cache_dir().parent / "ctranslate2"


def _source_key(hf_folder: Path) -> str:
    folder = hf_folder.resolve()
    if folder.parent == converted_cache_dir().resolve():
        return folder.name  # the GGUF file's sha256: the folder's content is fixed
    stats = sorted(
        (f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir() if f.is_file()
    )
    blob = json.dumps([str(folder), stats]).encode()
    return hashlib.sha256(blob).hexdigest()


def ct2_folder_for(hf_folder: Path, quantization: str = CT2_QUANTIZATION) -> Path:
    """Where the CTranslate2 conversion of ``hf_folder`` is cached (it may not exist yet)."""
    return ct2_cache_dir() / f"{_source_key(hf_folder)}.{quantization}"


def convert_to_ct2(hf_folder: Path, out: Path, quantization: str = CT2_QUANTIZATION) -> None:
    """Convert the transformers causal LM in ``hf_folder`` to a CTranslate2 model in ``out``.

    Written to a temporary sibling folder, then renamed to ``out``; when another process
    renamed its copy first, that copy is kept. Takes ~5–9 s for SmolLM2-135M (loading the
    float32 weights with transformers, quantising, writing 130 MB for int8).

    Raises:
        BackendError: CTranslate2 cannot convert this model (an architecture it does not
            support, a broken folder).
        OSError: ``out``'s parent folder cannot be written.
    """
    from ctranslate2.converters import TransformersConverter

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        try:
            TransformersConverter(str(hf_folder)).convert(
                str(tmp), quantization=quantization, force=True
            )
        except (OSError, MemoryError):
            raise
        except Exception as exc:
            raise BackendError(f"CTranslate2 cannot convert {hf_folder}: {exc}") from exc
        for name in TOKENIZER_FILES:
            if (hf_folder / name).is_file():
                shutil.copy2(hf_folder / name, tmp / name)
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / "model.bin").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Ct2Model:
    """A loaded CTranslate2 generator with its tokenizer.

    Attributes:
        generator: The ``ctranslate2.Generator`` (greedy decoding; sampling uses a fresh one).
        tokenizer: The transformers tokenizer from the model folder (chat template, decode).
        folder: The CTranslate2 model folder (``None`` after a temporary conversion).
        compute_type: CTranslate2 compute type (``"int8"``...).
        threads: Intra-op threads of the generator (0: CTranslate2's default).
        load_seconds: Wall time to load, including a conversion when there was one.
        converted: Whether this load converted the model (the cache was empty).
    """

    generator: Any
    tokenizer: Any
    folder: Path | None
    compute_type: str
    threads: int
    load_seconds: float
    converted: bool = False
    _files: dict[str, bytes] | None = None

    def fresh_generator(self) -> Any:
        """A new ``ctranslate2.Generator`` on the same weights (its own random generator)."""
        import ctranslate2

        if self.folder is not None and (self.folder / "model.bin").is_file():
            return ctranslate2.Generator(
                str(self.folder), compute_type=self.compute_type, intra_threads=self.threads
            )
        return ctranslate2.Generator(
            "memory", compute_type=self.compute_type, intra_threads=self.threads, files=self._files
        )


_CACHE: ModelCache[Ct2Model] = ModelCache("text-ctranslate2")


def ct2_load_count() -> int:
    """How many times this process has loaded a CTranslate2 text model (cache misses)."""
    return _CACHE.load_count


def clear_ct2_cache() -> None:
    """Forget every loaded CTranslate2 text model (the next use loads again)."""
    _CACHE.clear()


@contextlib.contextmanager
def _model_folder(hf_folder: Path, quantization: str) -> Iterator[tuple[Path, bool, bool]]:
    """(folder, converted now, temporary): the cached conversion, made when missing."""
    folder = ct2_folder_for(hf_folder, quantization)
    if (folder / "model.bin").is_file():
        yield folder, False, False
        return
    try:
        convert_to_ct2(hf_folder, folder, quantization)
        yield folder, True, False
        return
    except OSError as exc:
        _LOG.warning("cannot cache the CTranslate2 model in %s (%s): converting once", folder, exc)
    with tempfile.TemporaryDirectory(prefix="avgen-ct2-") as scratch:
        folder = Path(scratch) / "model"
        convert_to_ct2(hf_folder, folder, quantization)
        yield folder, True, True


def _load_uncached(hf_folder: Path, quantization: str, threads: int) -> Ct2Model:
    try:
        import ctranslate2
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise BackendError(f"ctranslate2/transformers are not importable: {exc}") from exc
    start = time.perf_counter()
    with _model_folder(hf_folder, quantization) as (folder, converted, temporary):
        files = None
        if temporary:  # keep the bytes: sampling needs fresh generators after the folder goes
            files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        try:
            generator = ctranslate2.Generator(
                str(folder), device="cpu", compute_type=quantization, intra_threads=threads
            )
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except Exception as exc:
            raise BackendError(f"cannot load the CTranslate2 model in {folder}: {exc}") from exc
    return Ct2Model(
        generator,
        tokenizer,
        None if temporary else folder,
        quantization,
        threads,
        time.perf_counter() - start,
        converted,
        files,
    )


def load_ct2(
    hf_folder: Path, *, threads: int = 0, quantization: str = CT2_QUANTIZATION
) -> Ct2Model:
    """The CTranslate2 model for the transformers folder ``hf_folder`` (once per process per
    (folder, quantization, threads)); converted first when the cache has none.

    Args:
        hf_folder: A local transformers causal-LM folder (``config.json``, weights,
            tokenizer), e.g. from
            :func:`~avgen_dagster.backends.llm_local.ensure_transformers_folder`.
        threads: Intra-op CPU threads (fixed per generator; 0: CTranslate2's default).
        quantization: Weight and compute type: ``"int8"`` (default), ``"int16"``,
            ``"float32"``, ``"int8_float32"``.

    Raises:
        BackendError: ``ctranslate2`` is not installed, the model cannot be converted (an
            unsupported architecture) or loaded.
    """
    if not ct2_installed():
        raise BackendError("ctranslate2 is not installed: pip install ctranslate2==4.8.5")
    key = (str(hf_folder.resolve()), quantization, threads)
    return _CACHE.get(key, lambda: _load_uncached(hf_folder, quantization, threads))


@dataclass(frozen=True)
class Ct2Sampling:
    """Sampling settings of one generation (``temperature`` → top-k → top-p, as transformers).

    CTranslate2's ``RandomSampler`` keeps the ``top_k`` best logits, divides by the
    temperature, then masks to the nucleus ``top_p`` of the tempered distribution — the order
    of transformers' warpers; ``top_k=50`` is transformers' default.
    """

    temperature: float = 0.4
    top_p: float = 0.9
    top_k: int = 50
    seed: int = 0


def generate_ct2(
    model: Ct2Model,
    prompt_ids: Sequence[int],
    *,
    max_new_tokens: int,
    min_new_tokens: int = 0,
    sampling: Ct2Sampling | None = None,
    repetition_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    stop: Callable[[list[int]], bool] | None = None,
    stop_every: int = 8,
) -> list[int]:
    """Generate up to ``max_new_tokens`` token ids after ``prompt_ids`` (end token excluded).

    The prompt is run through the decoder at once (``include_prompt_in_result=False``), so
    the repetition penalty and the no-repeat n-gram rule see the generated tokens only.

    Args:
        model: From :func:`load_ct2`.
        prompt_ids: The prompt's token ids (chat template applied).
        max_new_tokens: Most new tokens.
        min_new_tokens: The end token is suppressed before this many new tokens.
        sampling: ``None`` decodes greedily (the cached generator); else samples on a fresh
            generator seeded with ``sampling.seed`` (see the module docstring).
        repetition_penalty: CTRL-style penalty on tokens already generated (1: off).
        no_repeat_ngram_size: Forbid repeating an n-gram of this size (0: off).
        stop: Called with the new ids every ``stop_every`` tokens; ``True`` ends decoding.
        stop_every: How often ``stop`` is asked.

    Raises:
        BackendError: CTranslate2 fails.
    """
    import ctranslate2

    tokens = model.tokenizer.convert_ids_to_tokens(list(prompt_ids))
    new: list[int] = []

    def on_token(step: Any) -> bool:
        new.append(step.token_id)
        return bool(stop is not None and len(new) % stop_every == 0 and stop(new))

    options: dict[str, Any] = {
        "max_length": max_new_tokens,
        "min_length": min(min_new_tokens, max_new_tokens),
        "repetition_penalty": repetition_penalty,
        "no_repeat_ngram_size": no_repeat_ngram_size,
        "include_prompt_in_result": False,
        "callback": on_token,
    }
    try:
        if sampling is None:
            result = model.generator.generate_batch([tokens], **options)
        else:
            options.update(
                sampling_topk=sampling.top_k,
                sampling_topp=sampling.top_p,
                sampling_temperature=sampling.temperature,
            )
            with _SEED_LOCK:
                ctranslate2.set_random_seed(sampling.seed)
                generator = model.fresh_generator()
                result = generator.generate_batch([tokens], **options)
                del generator
    except (RuntimeError, ValueError) as exc:
        raise BackendError(f"CTranslate2 generation failed: {exc}") from exc
    return list(result[0].sequences_ids[0])


def prepare_embedded_model() -> str:
    """Convert the embedded SmolLM2 once, ahead of the first script (``make install``).

    The GGUF file becomes a transformers folder (27–28 s) and, when ``ctranslate2`` is
    installed, a CTranslate2 int8 model (~5–9 s), both in the caches a writer reads; a second
    call finds both and returns at once.

    Returns:
        A line saying what is ready, and where.

    Raises:
        BackendError: the model is not installed, or a conversion fails.
    """
    from avgen_dagster.backends.llm_local import ensure_transformers_folder, resolve_source

    source = resolve_source(None)
    folder = ensure_transformers_folder(source)
    assert folder is not None  # a GGUF source always has one
    if not ct2_installed():
        return f"text model ready for transformers in {folder} (ctranslate2 not installed)"
    out = ct2_folder_for(folder)
    if not (out / "model.bin").is_file():
        convert_to_ct2(folder, out)
    return f"text model ready: {folder} (transformers), {out} (CTranslate2 {CT2_QUANTIZATION})"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m avgen_dagster.backends.llm_ct2 --prepare``: :func:`prepare_embedded_model`.

    Exits 0 also when preparing fails (the first script then converts instead), so an
    install never stops here; the reason is printed.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Prepare the embedded text model.")
    parser.add_argument("--prepare", action="store_true", help="convert it into the caches")
    args = parser.parse_args(argv)
    if not args.prepare:
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    try:
        line = prepare_embedded_model()
    except (BackendError, OSError) as exc:
        print(f"text model not prepared ({exc}); the first script will convert it", file=sys.stderr)
        return 0
    print(f"{line} [{time.perf_counter() - start:.1f} s]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
