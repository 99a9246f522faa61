"""How many CPU threads a step should use now: the cores other work leaves idle.

Used by CPU-bound steps whose thread count changes nothing but speed (SmolLM2 generation, the
final cut's top encoder): on an idle machine every core helps; on busy cores extra threads that
spin-wait stall each other. No Dagster.
"""

from __future__ import annotations

import math
import os

__all__ = ["idle_cpu_threads"]


def idle_cpu_threads(sample_s: float = 0.2) -> int:
    """Threads for a small model's generation: the cores other work leaves idle, at least 1.

    System CPU use is sampled for ``sample_s`` seconds just before generating
    (:func:`psutil.cpu_percent`; this process is idle then, so its own earlier work does not
    count, unlike the load average); a core counts as busy from 25 % use:
    ``threads = clamp(cores − ceil(busy_cores − 0.25), 1, cores)``. Measured here
    (SmolLM2-135M float32, 150 new tokens, 2 cores): idle, 1 thread 19 tokens/s and
    2 threads 31–32 tokens/s; with the cores busy (load 4–6), 1 thread 13–16 tokens/s and
    2 threads 1.6–2.3 tokens/s (threads that spin-wait on busy cores stall each other).
    Without psutil: the 1-minute load average stands in for ``busy_cores``. The thread
    count does not change the text: 220 greedy tokens of SmolLM2 on the demo prompt were
    identical with 1 and 2 threads.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, cores or 1)
    try:
        import psutil

        busy = psutil.cpu_percent(interval=sample_s) / 100.0 * (psutil.cpu_count() or cores)
    except ImportError:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):
            return 1
    return max(1, min(cores, cores - math.ceil(busy - 0.25)))
