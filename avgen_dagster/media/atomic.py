"""Atomic file and folder writes: a reader never sees a half-written file.

Write to a temporary name in the destination folder, then :func:`os.replace` it into place
(atomic on POSIX within one file system). On any exception the temporary is removed.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; move it onto ``final`` when the block succeeds.

    The temporary keeps ``final``'s suffix (encoders pick the container from it) and starts
    with ``.tmp-`` so listings can skip it. The parent folder is created if missing.

    Raises:
        Whatever the block raises; the temporary file is deleted first.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".tmp-{uuid.uuid4().hex[:12]}-{final.name}")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(final: Path | str) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; rename it to ``final`` when the block succeeds.

    Used for multi-file outputs (an HLS playlist with its segments). If ``final`` exists it
    is replaced as a whole.

    Raises:
        Whatever the block raises; the temporary folder is deleted first.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".tmp-{uuid.uuid4().hex[:12]}-{final.name}")
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".old-{uuid.uuid4().hex[:12]}-{final.name}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
