"""A request's options: the one typed model from intake to every asset.

:class:`RequestOptions` holds every option's default, range and help text — the CLI flags
(:func:`option_help`), the portal form (:func:`option_range`) and the HTTP API read them from
here. Intake parses the options once (:func:`parse_options`), stores them complete (every
field, defaults included, so a later change of a default never alters a stored request), and
the ``request`` asset hands the typed object to every asset.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from avgen_dagster.errors import InvalidInputError


class RequestOptions(BaseModel):
    """Options of one request; every field has a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    genre: str | None = Field(
        default=None,
        description=(
            "Music genre: ambient, lofi, rock, electronic, jazz, classical or pop. Default: the "
            "scene plan's mood."
        ),
    )
    music_duration_s: float = Field(default=30.0, gt=0, le=300.0, description="Music, seconds.")
    clip_duration_s: float = Field(default=5.0, gt=0, le=60.0, description="Each clip, seconds.")
    image_count: int = Field(default=5, ge=1, le=20, description="Number of images.")
    clip_count: int = Field(default=5, ge=1, le=20, description="Number of video clips.")
    image_size: int = Field(default=512, ge=128, le=2048, description="Image side, pixels.")
    seed: int = Field(
        default=0, ge=0, le=2**31 - 1, description="Seed of every random source (voice too)."
    )
    target_lufs: float = Field(
        default=-16.0,
        ge=-40.0,
        le=-5.0,
        description=(
            "Narration loudness, LUFS (ITU-R BS.1770-4): -16 for web speech, -23 for EBU R128 "
            "broadcast."
        ),
    )
    crossfade_s: float = Field(
        default=0.25, ge=0.0, le=2.0, description="Cross-fade between segments, seconds."
    )
    max_words: int = Field(
        default=160,
        ge=10,
        le=600,
        description="Length of an LLM-written narration, words (160 is about 45 s).",
    )
    driving_mode: Literal["loop", "pingpong", "trim"] = Field(
        default="loop", description="How a driving video is fitted to the narration's length."
    )
    llm: Literal["embedded", "openai"] | None = Field(
        default=None,
        description=(
            "Who writes a prompt's narration: the embedded SmolLM2 or the OpenAI-compatible "
            "endpoint the deployment configures. Default: the deployment's choice."
        ),
    )
    words_per_minute: float | None = Field(
        default=None, ge=100, le=300, description="Speaking rate, words per minute."
    )
    language: str | None = Field(
        default=None,
        pattern=r"^[a-z]{2,3}([_-][A-Za-z]{2,4})?$",
        description="The narration's language (e.g. en, en_US); the voice must speak it.",
    )
    talking_head_only: bool = Field(
        default=False,
        description="Make only the talking head and its final cut: no images, music or clips.",
    )
    # The composed final cut.
    format: Literal["vertical", "landscape", "square"] = Field(
        default="vertical",
        description=(
            "Final video format: vertical 1080x1920, landscape 1920x1080, square 1080x1080."
        ),
    )
    captions: bool = Field(default=True, description="Burn captions into the final video.")
    caption_position: Literal["bottom", "center", "top"] = Field(
        default="bottom", description="Where captions sit in the title-safe area."
    )
    caption_size: float = Field(
        default=0.045, ge=0.02, le=0.1, description="Caption text size, fraction of frame height."
    )
    caption_color: str = Field(default="#FFFFFF", description="Caption text colour, #RRGGBB.")
    caption_highlight: str = Field(
        default="#FFD400", description="Colour of the word being spoken, #RRGGBB."
    )
    caption_outline: str = Field(default="#000000", description="Caption outline colour, #RRGGBB.")
    caption_font: str | None = Field(
        default=None,
        description="A TrueType/OpenType font file on the server; default DejaVu Sans.",
    )
    broll: Literal["none", "every_n", "pip"] | None = Field(
        default=None,
        description=(
            "Cutaways to the clips at sentence boundaries: none, every_n sentences, or pip "
            "(speaker in an inset). Default: every_n when clips are made, else none."
        ),
    )
    broll_every: int = Field(default=2, ge=1, le=10, description="N for b-roll every N sentences.")
    music_bed: bool | None = Field(
        default=None,
        description="The music under the voice, ducked by the speech. Default: on with music.",
    )
    bed_level_lu: float = Field(
        default=18.0, ge=6.0, le=40.0, description="Music bed level under speech, LU below voice."
    )

    @model_validator(mode="before")
    @classmethod
    def _none_means_default(cls, data: Any) -> Any:
        # Rows stored before options were complete hold null for "the default".
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data

    @field_validator("caption_color", "caption_highlight", "caption_outline")
    @classmethod
    def _hex_colour(cls, value: str) -> str:
        if not re.fullmatch(r"#[0-9A-Fa-f]{6}", value):
            raise ValueError(f"colour {value!r} is not #RRGGBB")
        return value.upper()

    @field_validator("caption_font")
    @classmethod
    def _loadable_font(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from avgen_dagster.media.caption_render import load_font

        load_font(value, 16)  # InvalidInputError names the file
        return value

    @model_validator(mode="after")
    def _music_for_the_bed(self) -> RequestOptions:
        if self.talking_head_only and self.music_bed:
            raise ValueError("a music bed needs music; talking_head_only makes none")
        if self.talking_head_only and self.broll not in (None, "none"):
            raise ValueError(f"b-roll {self.broll!r} needs clips; talking_head_only makes none")
        return self

    @property
    def uses_music_bed(self) -> bool:
        """Mix the music under the voice: asked for, or by default when music is made."""
        return self.music_bed if self.music_bed is not None else not self.talking_head_only

    @property
    def broll_mode(self) -> str:
        """The b-roll mode: as asked, else ``every_n`` when clips are made, else ``none``."""
        return self.broll or ("none" if self.talking_head_only else "every_n")

    def rgb(self, name: str) -> tuple[int, int, int]:
        """A ``#RRGGBB`` colour option as an RGB triple of 0-255 integers."""
        value = getattr(self, name)
        return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))

    @field_validator("genre")
    @classmethod
    def _known_genre(cls, value: str | None) -> str | None:
        from avgen_dagster.backends.music import GENRES

        if value is None:
            return None
        name = value.strip().lower()
        if name not in GENRES:
            raise ValueError(f"unknown music genre {value!r}; choose one of: {', '.join(GENRES)}")
        return name

    def to_json(self) -> dict[str, Any]:
        """Every field as stored in ``generation_requests.options``."""
        return self.model_dump(mode="json")


_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def parse_options(raw: RequestOptions | dict[str, Any] | None) -> RequestOptions:
    """Validate ``raw`` (None → all defaults; a :class:`RequestOptions` passes through).

    Raises:
        InvalidInputError: naming each bad option and why, e.g. ``"bad request option —
            target_lufs: Input should be less than or equal to -5"``.
    """
    if isinstance(raw, RequestOptions):
        return raw
    try:
        return RequestOptions.model_validate(raw or {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            if err["type"] in _RANGE_ERRORS and where in RequestOptions.model_fields:
                lo, hi = option_range(where)
                msg = f"{err['input']} is outside {lo:g}..{hi:g}"
            else:
                msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}" if where else msg)
        raise InvalidInputError("bad request option — " + "; ".join(problems)) from exc


def option_range(name: str) -> tuple[float | None, float | None]:
    """The inclusive ``(min, max)`` an option allows (None where unbounded); a strict bound
    (``gt``) is reported as is — the model refuses the bound itself."""
    lo = hi = None
    for meta in RequestOptions.model_fields[name].metadata:
        lo = getattr(meta, "ge", None) if getattr(meta, "ge", None) is not None else lo
        lo = getattr(meta, "gt", None) if getattr(meta, "gt", None) is not None else lo
        hi = getattr(meta, "le", None) if getattr(meta, "le", None) is not None else hi
    return lo, hi


def option_default(name: str) -> Any:
    """The option's default value."""
    return RequestOptions.model_fields[name].default


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def option_help(name: str) -> str:
    """Help text for a CLI flag or form field: the description, the range and the default."""
    field = RequestOptions.model_fields[name]
    parts = [field.description or name]
    strict = any(getattr(m, "gt", None) is not None for m in field.metadata)
    lo, hi = option_range(name)
    if lo is not None or hi is not None:
        low = "-inf" if lo is None else f"{'>' if strict else ''}{_number(lo)}"
        parts.append(f"Range {low}..{'inf' if hi is None else _number(hi)}.")
    parts.append(f"Default {field.default}.")
    return " ".join(parts)
