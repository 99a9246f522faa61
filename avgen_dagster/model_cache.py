"""The one cache of loaded models every backend uses: each key loads once per process.

A backend keeps one module-level :class:`ModelCache` and asks it for its model with a key that
names everything the loaded object depends on (resolved path, file modification time, device,
dtype). No Dagster and no torch import here, so pure code and tests can use it alone. Users:
the image, video and music pipelines, the Wav2Lip checkpoint, the MediaPipe face landmarker
(and the text and speech backends).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["ModelCache"]

_LOG = logging.getLogger(__name__)

M = TypeVar("M")


class ModelCache(Generic[M]):
    """A process-wide cache of loaded models: each key loads once, then is reused.

    Keys are e.g. ``(resolved path, device, dtype)``. :attr:`load_count` counts cache
    misses (real loads from disk) so tests can assert "one load per process". Loading is
    serialised by a lock, so two threads asking for the same model load it once.

    Args:
        kind: what the models are, for logs (``"text-to-image"``, ``"wav2lip"``...).
        max_entries: keep at most this many models; loading one more evicts the least
            recently used (``None``: no limit).
        release: called with each model the cache drops (eviction or :meth:`clear`), e.g.
            to close a native handle; ``None`` leaves it to garbage collection.
    """

    def __init__(
        self,
        kind: str,
        *,
        max_entries: int | None = None,
        release: Callable[[M], None] | None = None,
    ) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be >= 1 or None, got {max_entries}")
        self.kind = kind
        self.max_entries = max_entries
        self._release = release
        self._models: OrderedDict[Hashable, M] = OrderedDict()
        self._lock = threading.Lock()
        self.load_count = 0
        self.last_load_seconds: float | None = None

    def get(self, key: Hashable, loader: Callable[[], M]) -> M:
        """Return the cached model for ``key``, calling ``loader()`` on the first request.

        Raises:
            Whatever ``loader`` raises (nothing is cached then).
        """
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            start = time.perf_counter()
            model = loader()
            self.last_load_seconds = time.perf_counter() - start
            self.load_count += 1
            self._models[key] = model
            _LOG.info("loaded %s model %s in %.1f s", self.kind, key, self.last_load_seconds)
            evicted = []
            while self.max_entries is not None and len(self._models) > self.max_entries:
                evicted.append(self._models.popitem(last=False)[1])
        self._drop(evicted)
        return model

    def __len__(self) -> int:
        """Number of models held now."""
        return len(self._models)

    def clear(self) -> None:
        """Forget every cached model (the next request loads again)."""
        with self._lock:
            dropped = list(self._models.values())
            self._models.clear()
        self._drop(dropped)

    def _drop(self, models: list[M]) -> None:
        if not models:
            return
        if self._release is not None:
            for model in models:
                self._release(model)
        models.clear()
        from avgen_dagster.backends.devices import free_accelerator_memory

        free_accelerator_memory()
