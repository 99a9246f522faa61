"""Device choice and the GPU out-of-memory retry helper."""

from __future__ import annotations

import pytest
import torch

from avgen_dagster.backends.devices import (
    is_out_of_memory,
    resolve_device,
    resolve_dtype,
    run_batched_with_oom_retry,
)
from avgen_dagster.errors import BackendError, InvalidInputError
from avgen_dagster.model_cache import ModelCache


def test_auto_device_and_dtype() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"
    assert resolve_dtype("cpu") == "float32"
    assert resolve_dtype("cpu", "bfloat16") == "bfloat16"
    with pytest.raises(InvalidInputError, match="unknown device"):
        resolve_device("tpu9")
    with pytest.raises(InvalidInputError, match="unknown dtype"):
        resolve_dtype("cpu", "float8")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="CUDA is not available"):
            resolve_device("cuda")


def test_oom_retry_halves_the_batch_and_keeps_order() -> None:
    calls: list[int] = []

    def fn(batch):
        calls.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return [x * 10 for x in batch]

    out = run_batched_with_oom_retry(fn, list(range(7)), 8, what="test")
    assert out == [x * 10 for x in range(7)]
    assert calls[:3] == [7, 4, 2]  # 8 -> 4 -> 2, then batches of 2 (7 items)
    assert all(c <= 2 for c in calls[2:])


def test_oom_at_batch_one_is_a_clear_error_and_other_errors_pass() -> None:
    def always_oom(batch):
        raise RuntimeError("CUDA error: out of memory")

    with pytest.raises(BackendError, match="out of GPU memory even at batch size 1"):
        run_batched_with_oom_retry(always_oom, [1, 2], 2, what="test")

    def broken(batch):
        raise ValueError("not memory")

    with pytest.raises(ValueError, match="not memory"):
        run_batched_with_oom_retry(broken, [1], 1)
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_model_cache_loads_once() -> None:
    cache: ModelCache[object] = ModelCache("test")
    made = []
    for _ in range(3):
        cache.get(("a", "cpu"), lambda: made.append(1) or object())
    assert cache.load_count == 1 and len(made) == 1
    cache.get(("b", "cpu"), object)
    assert cache.load_count == 2


def test_model_cache_evicts_least_recent_and_releases() -> None:
    released: list[str] = []
    cache: ModelCache[str] = ModelCache("test", max_entries=2, release=released.append)
    cache.get("a", lambda: "A")
    cache.get("b", lambda: "B")
    cache.get("a", lambda: "A2")  # a hit: "a" is now the most recent
    cache.get("c", lambda: "C")  # evicts "b", the least recent
    assert released == ["B"] and len(cache) == 2 and cache.load_count == 3
    assert cache.get("a", lambda: "A3") == "A"
    cache.clear()
    assert sorted(released) == ["A", "B", "C"] and len(cache) == 0
    with pytest.raises(ValueError, match="max_entries"):
        ModelCache("test", max_entries=0)
