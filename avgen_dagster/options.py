"""A request's options (pydantic): what to make and how, with defaults and limits.

Stored as JSON in ``generation_requests.options``; validated when the request is taken in and
again when a run reads it, so a bad value is refused before any work with a message that names
the option.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from avgen_dagster.errors import InvalidInputError

MAX_MUSIC_DURATION_S = 300.0
MAX_CLIP_DURATION_S = 60.0


class RequestOptions(BaseModel):
    """Options of one request; every field has a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    genre: str = Field(default="ambient", description="Music genre (see backends.music.GENRES).")
    music_duration_s: float = Field(default=30.0, gt=0, le=MAX_MUSIC_DURATION_S)
    clip_duration_s: float = Field(default=5.0, gt=0, le=MAX_CLIP_DURATION_S)
    image_count: int = Field(default=5, ge=1, le=20)
    clip_count: int = Field(default=5, ge=1, le=20)
    image_size: int = Field(default=512, ge=128, le=2048)
    seed: int = Field(default=0, ge=0)
    target_lufs: float | None = Field(default=None, ge=-40.0, le=-5.0)
    crossfade_s: float | None = Field(default=None, ge=0.0, le=2.0)
    max_words: int | None = Field(default=None, ge=10, le=600)
    driving_mode: Literal["loop", "pingpong", "trim"] = Field(
        default="loop", description="How a driving video is fitted to the narration's length."
    )

    @field_validator("genre")
    @classmethod
    def _known_genre(cls, value: str) -> str:
        from avgen_dagster.backends.music import GENRES

        name = value.strip().lower()
        if name not in GENRES:
            raise ValueError(f"unknown music genre {value!r}; choose one of: {', '.join(GENRES)}")
        return name


def parse_options(raw: dict[str, Any] | None) -> RequestOptions:
    """Validate ``raw`` (None → all defaults).

    Raises:
        InvalidInputError: naming each bad option and why.
    """
    try:
        return RequestOptions.model_validate(raw or {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "options"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}")
        raise InvalidInputError("bad request option — " + "; ".join(problems)) from exc
