"""Taking in a request (portal and ``avgen request``): validate everything, store, queue.

Nothing is written unless every input is acceptable: the portrait is decoded, checked for a
face and re-encoded as PNG (so what is stored is a clean image, whatever was uploaded), then
saved atomically under ``<content root>/<user_id>/<request_id>/input/`` (uploaded when the
content store is an object store), and the request row is inserted Queued for the intake
sensor.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from avgen_dagster.errors import ContentStoreError, InvalidInputError
from avgen_dagster.media.atomic import atomic_path
from avgen_dagster.options import parse_options
from avgen_dagster.store.content import ContentTree
from avgen_dagster.store.models import RequestStatus, new_request_id, utcnow
from avgen_dagster.store.requests import create_request, ensure_user
from avgen_dagster.store.session import AppDatabase
from avgen_dagster.validation import validate_user_id

MAX_PORTRAIT_BYTES = 10 * 1024 * 1024
PORTRAIT_FORMATS = {"PNG", "JPEG", "WEBP"}
MAX_PORTRAIT_PIXELS = 40_000_000


@dataclass(frozen=True)
class NewRequest:
    """What a user asks for. Exactly one of ``prompt`` and ``script``."""

    user_id: str
    prompt: str | None
    script: str | None
    portrait: bytes
    portrait_name: str
    options: dict[str, Any]
    notify_at: datetime | None = None
    email: str | None = None


def decode_portrait(data: bytes, name: str) -> np.ndarray:
    """Decode an uploaded portrait to RGB uint8 (H, W, 3) after type and size checks.

    Raises:
        InvalidInputError: over :data:`MAX_PORTRAIT_BYTES`, not PNG/JPEG/WebP, corrupt, or
            too many pixels — each naming the file.
    """
    if len(data) > MAX_PORTRAIT_BYTES:
        raise InvalidInputError(
            f"portrait {name!r} is {len(data) / 1e6:.1f} MB; the limit is "
            f"{MAX_PORTRAIT_BYTES / 1e6:.0f} MB"
        )
    if not data:
        raise InvalidInputError(f"portrait {name!r} is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in PORTRAIT_FORMATS:
                raise InvalidInputError(
                    f"portrait {name!r} is {img.format or 'an unknown format'}; use PNG, JPEG "
                    "or WebP"
                )
            if img.width * img.height > MAX_PORTRAIT_PIXELS:
                raise InvalidInputError(f"portrait {name!r} has too many pixels")
            from PIL import ImageOps

            rgb = ImageOps.exif_transpose(img).convert("RGB")
            return np.asarray(rgb, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InvalidInputError(f"portrait {name!r} is not a readable image") from exc


def submit_request(db: AppDatabase, content: ContentTree | Path | str, new: NewRequest) -> str:
    """Validate ``new``, store its portrait and queue it; return the request id.

    ``content`` is the content store (a :class:`ContentTree`, or a local folder).

    A ``notify_at`` in the past means "as soon as it is ready" (stored as now, UTC).

    Raises:
        InvalidInputError / NoFaceError: naming the bad input; nothing is written.
    """
    from avgen_dagster.auth import normalise_email
    from avgen_dagster.backends.textproc import validate_prompt, validate_script
    from avgen_dagster.media.faces import require_face

    validate_user_id(new.user_id)
    if (new.prompt is None) == (new.script is None):
        raise InvalidInputError("give either a prompt or a script (exactly one)")
    prompt = validate_prompt(new.prompt) if new.prompt is not None else None
    script = validate_script(new.script) if new.script is not None else None
    email = normalise_email(new.email) if new.email else None
    options = parse_options(new.options).model_dump(exclude_none=True)
    notify_at = new.notify_at
    if notify_at is not None:
        if notify_at.tzinfo is None:
            raise InvalidInputError("notification time needs a time zone")
        notify_at = max(notify_at, utcnow())
    image = decode_portrait(new.portrait, new.portrait_name)
    require_face(image, new.portrait_name)

    request_id = new_request_id()
    tree = content if isinstance(content, ContentTree) else ContentTree(content)
    stored = tree.work_dir(new.user_id, request_id, "input") / "portrait.png"
    with atomic_path(stored) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    stored_uri = None
    try:
        (stored_uri,) = tree.publish(stored)
        with db.session() as s:
            ensure_user(s, new.user_id, email=email)
            create_request(
                s,
                user_id=new.user_id,
                prompt=prompt,
                script=script,
                portrait_path=stored_uri,
                options=options,
                status=RequestStatus.QUEUED,
                request_id=request_id,
                notify_at=notify_at,
                notify_address=email,
            )
    except BaseException:
        # The row did not commit: remove the portrait so no orphan folder is left.
        if stored_uri is not None:
            with contextlib.suppress(ContentStoreError):  # keep the original error
                tree.delete(stored_uri)
        stored.unlink(missing_ok=True)
        for folder in (stored.parent, stored.parent.parent):
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    return request_id
