"""Small inline previews for asset metadata (the Dagster UI renders Markdown images)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def thumbnail_markdown(frame_rgb: np.ndarray, *, max_side: int = 160, alt: str = "preview") -> str:
    """Markdown with a data-URI JPEG thumbnail of ``frame_rgb`` (H, W, 3) uint8.

    The thumbnail's longer side is at most ``max_side`` pixels (a few kB), small enough for the
    event log.
    """
    img = Image.fromarray(np.ascontiguousarray(frame_rgb, dtype=np.uint8))
    img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"![{alt}](data:image/jpeg;base64,{data})"
