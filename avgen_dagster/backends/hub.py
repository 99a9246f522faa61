"""Model folders and Hugging Face Hub ids, offline: checks before any work, quiet loaders.

Shared by the diffusers backends (images, video clips) and MusicGen (transformers). Nothing
is ever downloaded: a Hub id must already be in the local Hugging Face cache.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from avgen_dagster.errors import BackendError

__all__ = ["cached_hub_file", "check_diffusers_model", "looks_like_hub_id", "quiet_hub_libraries"]


def looks_like_hub_id(model_path: str) -> bool:
    """True for ``owner/name`` (relative, not ``./`` or ``~``, exactly one slash)."""
    return (
        not Path(model_path).is_absolute()
        and not model_path.startswith((".", "~"))
        and model_path.count("/") == 1
    )


def cached_hub_file(model_id: str, filename: str, *, kind: str) -> str:
    """Path of ``filename`` of Hub model ``model_id`` in the local Hugging Face cache.

    Args:
        model_id: ``owner/name``.
        filename: a file of the repository (``config.json``, ``model_index.json``).
        kind: what the model is for error messages (``"image"``, ``"music"``...).

    Raises:
        BackendError: not cached (downloads are disabled); the message names the model.
    """
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model_id, filename)
    if isinstance(cached, str):
        return cached
    raise BackendError(
        f"{kind} model {model_id!r} is not a local folder and not in the local Hugging Face "
        "cache (downloads are disabled): download it first or give a folder path"
    )


def check_diffusers_model(model_path: str | os.PathLike[str], *, kind: str = "diffusers") -> str:
    """Check that ``model_path`` names a loadable diffusers pipeline, before any work.

    A local folder must contain ``model_index.json`` and, for every component listed in
    it, a sub-folder of that name. A Hub id (``owner/name``) must already be in the local
    Hugging Face cache (nothing is downloaded).

    Returns:
        The resolved folder path or the Hub id.

    Raises:
        BackendError: the folder does not exist, lacks ``model_index.json`` or a component
            folder, or the Hub id is not cached; the message names the path.
    """
    text = str(model_path)
    p = Path(text).expanduser()
    if p.is_dir():
        index = p / "model_index.json"
        if not index.is_file():
            raise BackendError(
                f"{kind} model folder {p} lacks model_index.json: not a diffusers pipeline "
                "folder (save one with pipeline.save_pretrained)"
            )
        try:
            spec = json.loads(index.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BackendError(f"{kind} model file {index} is not valid JSON: {exc}") from exc
        for comp, value in spec.items():
            if comp.startswith("_") or not isinstance(value, list) or value[0] is None:
                continue
            if not (p / comp).is_dir():
                raise BackendError(
                    f"{kind} model folder {p} lacks the {comp!r} component folder listed in "
                    "model_index.json"
                )
        return str(p.resolve())
    if looks_like_hub_id(text):
        cached_hub_file(text, "model_index.json", kind=kind)
        return text
    raise BackendError(f"{kind} model not found: {text} does not exist")


def quiet_hub_libraries(*, diffusers: bool = True) -> None:
    """Before loading a model: Hub offline (``HF_HUB_OFFLINE=1`` unless set) and no progress
    bars from transformers (and diffusers, when ``diffusers``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as tlog

    tlog.disable_progress_bar()
    if diffusers:
        from diffusers.utils import logging as dlog

        dlog.disable_progress_bar()
