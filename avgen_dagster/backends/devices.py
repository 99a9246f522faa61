"""Device and dtype choice for the neural backends, and a GPU out-of-memory retry helper.

``device="auto"`` means CUDA when ``torch.cuda.is_available()``, else CPU. Half precision
is used only on CUDA: bfloat16 where the GPU supports it (Ampere and newer), else float16;
CPU inference stays in float32 (CPU half-precision kernels are slow or missing).
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from avgen_dagster.errors import BackendError, InvalidInputError

__all__ = [
    "free_accelerator_memory",
    "is_out_of_memory",
    "resolve_device",
    "resolve_dtype",
    "run_batched_with_oom_retry",
    "torch_dtype",
]

_LOG = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_DTYPES = {"float32", "float16", "bfloat16"}


def resolve_device(device: str = "auto") -> str:
    """Turn a device name into a concrete torch device string.

    Args:
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.

    Returns:
        ``"cuda"``/``"cuda:N"``/``"cpu"``/``"mps"``.

    Raises:
        InvalidInputError: an unknown device name.
        BackendError: CUDA was asked for but is not available.
    """
    import torch

    name = (device or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu" or name == "mps":
        return name
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise BackendError(f"device {device!r} requested but CUDA is not available here")
        return name
    raise InvalidInputError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")


def resolve_dtype(device: str, dtype: str | None = None) -> str:
    """Pick the weights' dtype name for ``device``.

    Args:
        device: a concrete device from :func:`resolve_device`.
        dtype: ``None`` for automatic (``bfloat16`` on a CUDA GPU that supports it, else
            ``float16`` on CUDA, ``float32`` elsewhere) or one of ``float32``, ``float16``,
            ``bfloat16``.

    Returns:
        The dtype name.

    Raises:
        InvalidInputError: an unknown dtype name.
    """
    if dtype is not None:
        if dtype not in _DTYPES:
            raise InvalidInputError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}")
        return dtype
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def torch_dtype(name: str) -> Any:
    """The ``torch.dtype`` object for a dtype name (``"float16"`` -> ``torch.float16``)."""
    import torch

    return getattr(torch, name)


def is_out_of_memory(exc: BaseException) -> bool:
    """True when ``exc`` is a GPU (or accelerator) out-of-memory error.

    Recognises ``torch.OutOfMemoryError`` (``torch.cuda.OutOfMemoryError``) and the older
    ``RuntimeError("CUDA out of memory ...")`` / MPS messages.
    """
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_accelerator_memory() -> None:
    """Collect garbage and release PyTorch's cached CUDA blocks (best effort).

    PyTorch is only asked when something already imported it (no multi-second import to
    free memory that cannot be held).
    """
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort
        pass


def run_batched_with_oom_retry(
    fn: Callable[[Sequence[T]], Sequence[R]],
    items: Sequence[T],
    batch_size: int,
    *,
    what: str = "generation",
) -> list[R]:
    """Run ``fn`` over ``items`` in batches, halving the batch on out-of-memory errors.

    Each batch ``items[i:i + b]`` goes to ``fn``, which must return one result per item.
    When a batch raises an out-of-memory error (:func:`is_out_of_memory`), memory is freed
    (``gc.collect`` + ``torch.cuda.empty_cache``), ``b`` is halved and the same items are
    retried; the smaller batch size is kept for the rest. Other exceptions propagate.

    Args:
        fn: batch function, ``len(fn(batch)) == len(batch)``.
        items: the work items, in order.
        batch_size: first batch size to try (>= 1).
        what: a name for messages (e.g. ``"image generation with sd-turbo"``).

    Returns:
        The results, in the order of ``items``.

    Raises:
        InvalidInputError: ``batch_size`` < 1.
        BackendError: out of memory even at batch size 1, or ``fn`` returned the wrong
            number of results.
    """
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}")
    results: list[R] = []
    b = batch_size
    i = 0
    while i < len(items):
        batch = items[i : i + b]
        try:
            out = list(fn(batch))
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            free_accelerator_memory()
            if b == 1:
                raise BackendError(
                    f"{what} ran out of GPU memory even at batch size 1: use a smaller "
                    "size/duration, a smaller model, float16/bfloat16, or a larger GPU"
                ) from exc
            b = max(1, b // 2)
            _LOG.warning("%s: out of GPU memory, retrying at batch size %d", what, b)
            continue
        if len(out) != len(batch):
            raise BackendError(f"{what} returned {len(out)} results for {len(batch)} inputs")
        results.extend(out)
        i += len(batch)
    return results
