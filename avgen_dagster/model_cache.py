"""The one cache of loaded models every backend uses: each key loads once per process.

A backend keeps one module-level :class:`ModelCache` and asks it for its model with a key that
names everything the loaded object depends on (resolved path, file modification time, device,
dtype). No Dagster and no torch import here, so pure code and tests can use it alone.
"""

from __future__ import annotations

import logging
import threading
import time
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
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._models: dict[Hashable, M] = {}
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
                return self._models[key]
            start = time.perf_counter()
            model = loader()
            self.last_load_seconds = time.perf_counter() - start
            self.load_count += 1
            self._models[key] = model
            _LOG.info("loaded %s model %s in %.1f s", self.kind, key, self.last_load_seconds)
            return model

    def clear(self) -> None:
        """Forget every cached model (the next request loads again)."""
        with self._lock:
            self._models.clear()
        from avgen_dagster.backends.devices import free_accelerator_memory

        free_accelerator_memory()
