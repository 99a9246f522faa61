"""What the Dagster UI shows of an asset: small inline previews (Markdown images) and levels."""

from __future__ import annotations

import base64
import io
import math

import dagster as dg
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


def db_json(value: float | None) -> float | None:
    """A level in dB (LUFS, dBTP) rounded for JSON; silence (−inf, which JSON cannot carry)
    and None become null."""
    return round(value, 2) if value is not None and math.isfinite(value) else None


def db_metadata(value: float | None) -> dg.MetadataValue:
    """A level in dB (LUFS, dBTP) as UI metadata; silence (−inf) shows as text."""
    rounded = db_json(value)
    return dg.MetadataValue.float(rounded) if rounded is not None else dg.MetadataValue.text("-inf")
