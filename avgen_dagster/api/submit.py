"""Taking a submission in: the body parsed, the one intake called, the Idempotency-Key kept.

A multipart body carries the face source as the file part ``portrait``, optionally the voice to
clone as the file part ``voice_reference``, and every other field as a text part (an empty text
part counts as absent); a JSON body carries the fields and reuses the user's last face source
(the newest of their requests that has one; none → 422 naming ``portrait``) and has no voice
reference. Either way the request goes through :func:`avgen_dagster.intake.check_request`
and :func:`~avgen_dagster.intake.record_request` — the same checks, limits and messages as the
CLI and the portal. When intake refuses, the problem names the field it refused: the cheap
checks are run again one by one, in intake's order, and the first that fails names it (else
the face source was refused).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request

from avgen_dagster.api.context import ApiContext
from avgen_dagster.api.problems import ApiProblem, FieldProblem, validation_problems
from avgen_dagster.api.schemas import SubmitFields
from avgen_dagster.errors import InvalidInputError
from avgen_dagster.intake import (
    NewRequest,
    check_callback,
    check_notify_at,
    check_request,
    check_text,
    check_voice,
    record_request,
)
from avgen_dagster.options import RequestOptions, parse_options
from avgen_dagster.portraits import MAX_VIDEO_BYTES, Upload
from avgen_dagster.store import idempotency
from avgen_dagster.store.listing import last_portrait_uri
from avgen_dagster.voice_reference import FIELD as VOICE_REFERENCE
from avgen_dagster.voice_reference import MAX_VOICE_REFERENCE_BYTES

MAX_FORM_FIELDS = 40
MAX_TEXT_PART_BYTES = 64 * 1024
# File parts and the most bytes read of each (one more than intake accepts, so it can say so).
FILE_PARTS = {"portrait": MAX_VIDEO_BYTES, VOICE_REFERENCE: MAX_VOICE_REFERENCE_BYTES}


@dataclass(frozen=True)
class Submission:
    """A parsed submission: its fields, its face source, its voice reference (if any), and the
    fingerprint of all three."""

    fields: SubmitFields
    portrait: Upload | None
    fingerprint: str
    voice_reference: Upload | None = None


def _fingerprint(
    fields: SubmitFields, portrait: Upload | None, voice_reference: Upload | None = None
) -> str:
    digest = hashlib.sha256(
        json.dumps(fields.model_dump(mode="json", exclude_unset=True), sort_keys=True).encode()
    )
    digest.update(b"\0" + (hashlib.sha256(portrait.data).digest() if portrait else b"last"))
    if voice_reference is not None:
        digest.update(b"\0voice" + hashlib.sha256(voice_reference.data).digest())
    return digest.hexdigest()


def parse_fields(raw: Any) -> SubmitFields:
    """The submission's fields, or a 422 naming every bad or unknown field.

    An option's message is intake's own (:func:`avgen_dagster.options.parse_options`).
    """
    if not isinstance(raw, dict):
        raise ApiProblem(422, "the body must be a JSON object", field="body", kind="invalid-input")
    try:
        return SubmitFields.model_validate(raw)
    except ValidationError as exc:
        errors = validation_problems(list(exc.errors()))
        for problem in errors:
            if problem.field in RequestOptions.model_fields and problem.detail != "unknown field":
                try:
                    parse_options({problem.field: raw.get(problem.field)})
                except InvalidInputError as option_error:
                    problem.detail = str(option_error)
        detail = "; ".join(f"{p.field}: {p.detail}" for p in errors)
        raise ApiProblem(422, detail, errors=errors, kind="invalid-input") from exc


async def _form(request: Request) -> tuple[dict[str, str], dict[str, Upload]]:
    form = await request.form(
        max_files=len(FILE_PARTS), max_fields=MAX_FORM_FIELDS, max_part_size=MAX_TEXT_PART_BYTES
    )
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name not in FILE_PARTS:
                raise ApiProblem(422, f"only {' and '.join(FILE_PARTS)} are file parts", field=name)
            if name in files:
                raise ApiProblem(422, "given more than once", field=name, kind="invalid-input")
            data = await value.read(FILE_PARTS[name] + 1)
            files[name] = Upload(PurePosixPath(value.filename or name).name or name, data)
        elif name in fields:
            raise ApiProblem(422, "given more than once", field=name, kind="invalid-input")
        elif value != "":
            fields[name] = value
    await form.close()
    for name in FILE_PARTS:
        if name in fields:
            raise ApiProblem(422, f"{name} must be a file part", field=name)
    return fields, files


async def read_submission(request: Request) -> Submission:
    """Parse a multipart or JSON submission (see the module docstring).

    Raises:
        ApiProblem: 415 for another content type, 400 for malformed JSON or multipart, 422 for
            bad fields.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    files: dict[str, Upload] = {}
    if kind == "multipart/form-data":
        raw, files = await _form(request)
    elif kind == "application/json":
        try:
            raw = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiProblem(400, f"malformed JSON: {exc}", field="body", kind="malformed") from exc
    else:
        raise ApiProblem(
            415, "send multipart/form-data (with a portrait) or application/json",
            field="Content-Type", kind="unsupported-media-type",
        )  # fmt: skip
    fields = parse_fields(raw)
    portrait, voice = files.get("portrait"), files.get(VOICE_REFERENCE)
    return Submission(fields, portrait, _fingerprint(fields, portrait, voice), voice)


def _last_portrait(ctx: ApiContext, user_id: str) -> Upload:
    with ctx.db.session() as s:
        uri = last_portrait_uri(s, user_id)
    if uri is None:
        raise ApiProblem(
            422, "no portrait on file: send the first request as multipart/form-data with a "
            "portrait file part", field="portrait", kind="invalid-input",
        )  # fmt: skip
    return Upload(PurePosixPath(uri).name, ctx.tree.read_bytes(uri))


def fields_at_fault(new: NewRequest, non_cloning_speech: str | None = None) -> list[str]:
    """Which fields intake refused: the first check (in intake's order) that fails — the
    cheap ones, then the voice reference (both ``prompt`` and ``script`` when neither or both
    came); else the face source."""
    text_fields = [n for n, v in (("prompt", new.prompt), ("script", new.script)) if v is not None]
    checks: list[tuple[list[str], Any]] = [
        (text_fields if len(text_fields) == 1 else ["prompt", "script"],
         lambda: check_text(new.prompt, new.script)),
        (["options"], lambda: parse_options(new.options)),
        (["notify_at"], lambda: check_notify_at(new.notify_at)),
        (["email"], lambda: _email(new.email)),
        (["callback_url"], lambda: check_callback(new.callback_url)),
        ([VOICE_REFERENCE], lambda: check_voice(new.voice_reference, non_cloning_speech)),
    ]  # fmt: skip
    for names, check in checks:
        try:
            check()
        except InvalidInputError as exc:
            if names == ["options"] and isinstance(exc.__cause__, ValidationError):
                return [str(e["loc"][0]) for e in exc.__cause__.errors() if e["loc"]] or names
            return names
    return ["portrait"]


def _email(address: str | None) -> None:
    from avgen_dagster.auth import normalise_email

    if address:
        normalise_email(address)


def new_request(ctx: ApiContext, user_id: str, sub: Submission) -> NewRequest:
    """The intake's :class:`NewRequest` for a submission (the last portrait when none came)."""
    f = sub.fields
    return NewRequest(
        user_id=user_id,
        prompt=f.prompt,
        script=f.script,
        portrait=sub.portrait or _last_portrait(ctx, user_id),
        options=f.option_values(),
        notify_at=f.notify_at,
        email=f.email,
        callback_url=f.callback_url,
        voice_reference=sub.voice_reference,
    )


def take_in(ctx: ApiContext, new: NewRequest) -> str:
    """Check and record ``new`` through the one intake; return the request id.

    Raises:
        ApiProblem: 422 naming the refused field, with intake's message.
    """
    speech = ctx.non_cloning_speech
    try:
        checked = check_request(new, non_cloning_speech=speech)
    except InvalidInputError as exc:
        fields = fields_at_fault(new, speech)
        errors = [FieldProblem(field=name, detail=str(exc)) for name in fields]
        raise ApiProblem(422, str(exc), errors=errors, kind="invalid-input") from exc
    return record_request(ctx.db, ctx.tree, checked)


async def submit(
    ctx: ApiContext, user_id: str, sub: Submission, idempotency_key: str | None
) -> tuple[str, bool]:
    """Take a parsed submission in, honouring ``Idempotency-Key``.

    Returns:
        ``(request_id, created)``: ``created`` is False when the key replayed an earlier one.

    Raises:
        ApiProblem: 409 (key reused with another body, or still in progress), 422.
    """
    if idempotency_key is not None:
        try:
            earlier = await run_in_threadpool(
                idempotency.reserve, ctx.db, user_id, idempotency_key, sub.fingerprint
            )
        except (idempotency.IdempotencyConflict, idempotency.IdempotencyInProgress) as exc:
            raise ApiProblem(409, str(exc), field="Idempotency-Key", kind="idempotency") from exc
        if earlier is not None:
            return earlier, False
    try:
        new = await run_in_threadpool(new_request, ctx, user_id, sub)
        request_id = await run_in_threadpool(take_in, ctx, new)
    except BaseException:  # refused or failed: the key may be used again
        if idempotency_key is not None:
            await run_in_threadpool(idempotency.release, ctx.db, user_id, idempotency_key)
        raise
    if idempotency_key is not None:
        await run_in_threadpool(idempotency.complete, ctx.db, user_id, idempotency_key, request_id)
    return request_id, True
