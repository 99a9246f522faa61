"""The HTTP API's request and response bodies (pydantic; the OpenAPI schema comes from here).

Request options are not restated: :class:`SubmitFields` *is* a
:class:`~avgen_dagster.options.RequestOptions` (every option by its name, with its default,
range and description) plus the fields of a request; :class:`OutputLinks` has one field per
field of :class:`~avgen_dagster.outputs.RequestOutputs`. Intake checks the values (the one
set of checks and messages); the models here only shape them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.options import RequestOptions, parse_options
from avgen_dagster.outputs import RequestOutputs

Status = Literal["Queued", "Processing", "Completed", "Failed"]


class SubmitFields(RequestOptions):
    """The fields of ``POST /v1/requests`` (text parts of the multipart form, or the JSON
    object): exactly one of ``prompt`` and ``script``, and any request option by its name."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="RequestSubmission")

    prompt: str | None = Field(
        default=None, description="What the narration is about (an LLM writes it)."
    )
    script: str | None = Field(default=None, description="The narration, spoken verbatim.")
    notify_at: datetime | None = Field(
        default=None,
        description="When to notify (ISO 8601 with an offset); empty: as soon as it is ready.",
    )
    email: str | None = Field(default=None, description="Where to send the notification.")
    callback_url: str | None = Field(
        default=None,
        description=(
            "Where to POST a Standard Webhooks-signed event when the request is Completed or "
            "Failed (http/https, public addresses only)."
        ),
    )

    def option_values(self) -> dict[str, Any]:
        """The request options the client set (intake fills in the defaults)."""
        return {
            name: getattr(self, name)
            for name in RequestOptions.model_fields
            if name in self.model_fields_set
        }


_MUSIC = RequestOptions.model_fields["music_duration_s"]
_GENRE = RequestOptions.model_fields["genre"]


class MusicVideoBody(BaseModel):
    """``POST /v1/music-videos``: the seed's ``/generate_content`` body (plus an optional
    webhook). The portrait is the user's last one."""

    model_config = ConfigDict(extra="forbid", title="MusicVideoSubmission")

    genre: str = Field(default=_GENRE.default, description=_GENRE.description)
    duration: Annotated[(float, *_MUSIC.metadata)] = Field(  # type: ignore[valid-type]
        default=_MUSIC.default,
        description="Length of the music and the music video, seconds (music_duration_s).",
    )
    video_prompt: str = Field(description="What the video (and its narration) is about.")
    callback_url: str | None = Field(default=None, description=SubmitFields.model_fields[
        "callback_url"].description)  # fmt: skip

    @field_validator("genre")
    @classmethod
    def _known_genre(cls, value: str) -> str:
        try:
            return parse_options({"genre": value}).genre
        except InvalidInputError as exc:
            raise ValueError(str(exc).removeprefix("bad request option — genre: ")) from exc


def _link_field(name: str) -> tuple[Any, Any]:
    info = RequestOutputs.model_fields[name]
    if get_origin(info.annotation) is list:
        return list[str], Field(default_factory=list, description=info.description)
    return str | None, Field(default=None, description=info.description)


OutputLinks: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "OutputLinks",
    __doc__="Every deliverable as a signed media URL, named like the outputs record.",
    **{name: _link_field(name) for name in RequestOutputs.model_fields},
)


class RunProgress(BaseModel):
    """The Dagster run working on a Processing request, read from its event log."""

    run_id: str = Field(description="Dagster run id.")
    run_status: str = Field(description="Dagster's run status (QUEUED, STARTED, …).")
    current_step: str | None = Field(description="The step running now (None between steps).")
    steps_done: int = Field(description="Steps finished successfully.")
    steps_total: int | None = Field(description="Steps in the run's execution plan.")
    fraction_done: float | None = Field(description="steps_done / steps_total (0..1).")
    completed_steps: list[str] = Field(description="Finished steps, in order.")


class Links(BaseModel):
    """Related URLs."""

    self: str = Field(description="This request's URL path.")


class RequestDoc(BaseModel):
    """One request's honest status."""

    request_id: str
    status: Status
    created_at: datetime
    attempt: int = Field(description="0 for the first run, +1 per retry.")
    queue_position: int | None = Field(
        default=None, description="Queued: 1-based place in the intake queue (oldest first)."
    )
    run: RunProgress | None = Field(default=None, description="Processing: the run's progress.")
    outputs: OutputLinks | None = Field(  # type: ignore[valid-type]
        default=None, description="Completed: every deliverable as a signed media URL."
    )
    outputs_expire_at: datetime | None = Field(
        default=None, description="When the output URLs stop working (UTC)."
    )
    error: str | None = Field(default=None, description="Failed: the reason.")
    links: Links


class RequestSummary(BaseModel):
    """One request in a listing."""

    request_id: str
    status: Status
    created_at: datetime
    attempt: int
    error: str | None = None
    links: Links


class RequestPage(BaseModel):
    """A page of the user's requests, newest first."""

    items: list[RequestSummary]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; None: end.")


class WebhookSecret(BaseModel):
    """The key that signs this user's webhooks (Standard Webhooks ``whsec_`` form)."""

    secret: str
