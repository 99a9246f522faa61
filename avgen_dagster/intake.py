"""The one intake: every entry point (``avgen generate``, ``avgen request``, the portal, the HTTP
API) takes a request in here — the same checks, limits and messages, the same normalisation of
the face source, one database row.

Nothing is written unless every input is acceptable:

* user id ``[A-Za-z0-9_-]{1,64}``; exactly one of prompt and script, control characters
  stripped (newlines and tabs kept), within the length limits;
* options parsed once into :class:`~avgen_dagster.options.RequestOptions` and stored complete;
* a notification time with a time zone, not in the past (a few minutes of grace for a form
  filled slowly), at most :data:`MAX_NOTIFY_AHEAD` ahead; an email address that is valid;
* a webhook ``callback_url`` (HTTP API) that is http(s) and resolves to public addresses only,
  unless ``AVGEN_WEBHOOK_ALLOW_HOSTS`` allows it (:mod:`avgen_dagster.notifications.webhook_url`);
* an optional voice reference (the voice to clone) checked by
  :mod:`avgen_dagster.voice_reference` (size, readable audio, 3-30 s, not silent) — refused
  outright when the caller says the speech backend cannot clone (Piper, Coqui VITS) — and
  stored re-encoded as ``input/voice_reference.wav``;
* the portrait photo or driving video checked by :mod:`avgen_dagster.portraits` (formats,
  byte and pixel limits, a face), then stored atomically under
  ``<content root>/<user_id>/<request_id>/input/`` (uploaded when the content store is an
  object store).

The row is inserted Queued for the request sensor — or, for ``avgen generate``, straight to
Processing with the run id it is about to execute (one transaction, so the sensor never sees
it Queued). The ``request`` asset trusts what intake guaranteed and does not check again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from avgen_dagster.errors import ContentStoreError, InvalidInputError
from avgen_dagster.media.atomic import atomic_path
from avgen_dagster.options import RequestOptions, parse_options
from avgen_dagster.outputs import (
    INPUT_DIR,
    PORTRAIT_PNG,
    VOICE_REFERENCE_WAV,
    driving_video_name,
)
from avgen_dagster.portraits import FaceSource, Upload, check_face_source
from avgen_dagster.store import status
from avgen_dagster.store.content import ContentTree
from avgen_dagster.store.models import new_request_id, utcnow
from avgen_dagster.store.requests import create_request, ensure_user
from avgen_dagster.store.session import AppDatabase
from avgen_dagster.validation import strip_control_characters, validate_user_id
from avgen_dagster.voice_reference import VoiceReference, check_voice_reference, cloning_refused

MAX_NOTIFY_AHEAD = timedelta(days=366)
NOTIFY_PAST_GRACE = timedelta(minutes=5)


@dataclass(frozen=True)
class NewRequest:
    """What a user asks for, as handed in (unvalidated). Exactly one of ``prompt`` and
    ``script``; ``options`` a :class:`RequestOptions` or a dict of its fields;
    ``voice_reference`` an audio clip of the voice to clone (None: the backend's voice)."""

    user_id: str
    prompt: str | None
    script: str | None
    portrait: Upload
    options: RequestOptions | dict[str, Any] | None = None
    notify_at: datetime | None = None
    email: str | None = None
    callback_url: str | None = None
    voice_reference: Upload | None = None


@dataclass(frozen=True)
class CheckedRequest:
    """A request every check has passed: what gets stored."""

    user_id: str
    prompt: str | None
    script: str | None
    face: FaceSource
    options: RequestOptions
    notify_at: datetime | None
    email: str | None
    callback_url: str | None = None
    voice: VoiceReference | None = None


def check_text(prompt: str | None, script: str | None) -> tuple[str | None, str | None]:
    """The prompt or script (exactly one), control characters stripped, within its limits.

    Raises:
        InvalidInputError: neither or both given; empty after stripping; too long; a script
            with nothing speakable.
    """
    from avgen_dagster.backends.textproc import validate_prompt, validate_script

    if (prompt is None) == (script is None):
        raise InvalidInputError("give either a prompt or a script (exactly one)")
    if prompt is not None:
        return validate_prompt(strip_control_characters(prompt)), None
    assert script is not None
    return None, validate_script(strip_control_characters(script))


def check_notify_at(when: datetime | None, now: datetime | None = None) -> datetime | None:
    """The notification time as aware UTC (None: as soon as the content is ready).

    A time up to :data:`NOTIFY_PAST_GRACE` in the past means "now".

    Raises:
        InvalidInputError: no time zone; in the past; more than :data:`MAX_NOTIFY_AHEAD`
            ahead (including times too far out to represent in UTC).
    """
    if when is None:
        return None
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidInputError(
            f"notification time {when.isoformat()} has no time zone; add one, e.g. +01:00"
        )
    now = now or utcnow()
    try:
        utc = when.astimezone(UTC)
    except OverflowError:
        utc = datetime.max.replace(tzinfo=UTC)
    if utc > now + MAX_NOTIFY_AHEAD:
        raise InvalidInputError(
            f"notification time {when.isoformat()} is more than {MAX_NOTIFY_AHEAD.days} days away"
        )
    if utc < now - NOTIFY_PAST_GRACE:
        raise InvalidInputError(
            f"notification time {when.isoformat()} is in the past; leave it empty to be told "
            "as soon as your content is ready"
        )
    return max(utc, now)


def check_voice(
    upload: Upload | None, non_cloning_speech: str | None = None
) -> VoiceReference | None:
    """The request's voice reference, checked and re-encoded (None when none was given).

    Args:
        non_cloning_speech: see :func:`check_request`.

    Raises:
        InvalidInputError: naming ``voice_reference``/the clip: the speech backend cannot
            clone; empty, too large, unreadable, shorter than 3 s, longer than 30 s, silent.
    """
    if upload is None:
        return None
    if non_cloning_speech:
        raise InvalidInputError(cloning_refused(non_cloning_speech))
    return check_voice_reference(upload)


def check_request(
    new: NewRequest,
    *,
    photo_only_backend: str | None = None,
    non_cloning_speech: str | None = None,
) -> CheckedRequest:
    """Every check of intake, in the order a user would fix them (the face source last: it is
    the dearest to check); writes nothing.

    Args:
        photo_only_backend: the name of the lip-sync backend that will run, when the caller
            knows it animates still photos only (``"landmark"``): a driving video is then
            refused here rather than failing the run.
        non_cloning_speech: the name of the speech backend that will run, when the caller
            knows it cannot clone a voice (``"piper"``, ``"coqui vits"``; see
            :meth:`~avgen_dagster.resources.backends.SpeechBackendResource.without_cloning`):
            a voice reference is then refused here rather than failing the run.

    Raises:
        InvalidInputError / NoFaceError: naming the bad input.
    """
    from avgen_dagster.auth import normalise_email

    validate_user_id(new.user_id)
    prompt, script = check_text(new.prompt, new.script)
    options = parse_options(new.options)
    notify_at = check_notify_at(new.notify_at)
    email = normalise_email(new.email) if new.email else None
    callback_url = check_callback(new.callback_url)
    voice = check_voice(new.voice_reference, non_cloning_speech)
    face = check_face_source(new.portrait)
    if face.kind == "video" and photo_only_backend:
        raise InvalidInputError(
            f"portrait {new.portrait.name!r} is a driving video; the {photo_only_backend} "
            "lip-sync backend animates still photos only (use wav2lip for a driving video)"
        )
    return CheckedRequest(
        new.user_id, prompt, script, face, options, notify_at, email, callback_url, voice
    )


def check_callback(url: str | None) -> str | None:
    """The webhook URL, checked against the SSRF rule with this process's allowlist
    (``AVGEN_WEBHOOK_ALLOW_HOSTS``); None or empty → None.

    Raises:
        InvalidInputError: naming ``callback_url`` and why it is refused.
    """
    from avgen_dagster.notifications.webhook_url import check_callback_url
    from avgen_dagster.settings import get_settings

    if url is None or not url.strip():
        return None
    return check_callback_url(url, allow_hosts=get_settings().webhook_allow_hosts)


def submit_request(
    db: AppDatabase,
    content: ContentTree | Path | str,
    new: NewRequest,
    *,
    run_id: str | None = None,
    photo_only_backend: str | None = None,
    non_cloning_speech: str | None = None,
) -> str:
    """Check ``new`` (:func:`check_request`), then record it (:func:`record_request`); return
    the request id.

    Raises:
        InvalidInputError / NoFaceError: naming the bad input; nothing is written.
        ContentStoreError: an input file could not be stored; nothing is recorded.
    """
    checked = check_request(
        new, photo_only_backend=photo_only_backend, non_cloning_speech=non_cloning_speech
    )
    return record_request(db, content, checked, run_id=run_id)


def record_request(
    db: AppDatabase,
    content: ContentTree | Path | str,
    checked: CheckedRequest,
    *,
    run_id: str | None = None,
) -> str:
    """Store a checked request's face source (and voice reference) and insert its row;
    return the request id.

    Args:
        content: the content store (a :class:`ContentTree`, or a local folder).
        run_id: the id of a run the caller is about to execute in-process for this request
            (``avgen generate``): the row is created Processing with that run id, in the same
            transaction. Default: Queued, for the request sensor.

    Raises:
        ContentStoreError: an input file could not be stored; nothing is recorded.
    """
    if not isinstance(content, ContentTree):
        content = ContentTree(content)
    request_id = new_request_id()
    face = checked.face
    folder = content.work_dir(checked.user_id, request_id)
    files = {PORTRAIT_PNG if face.kind == "photo" else driving_video_name(face.suffix): face.data}
    if checked.voice is not None:
        files[VOICE_REFERENCE_WAV] = checked.voice.data
    stored: list[Path] = []
    uris: list[str] = []
    try:
        for name, data in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            stored.append(path)
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        for path in stored:
            uris += content.publish(path)
        with db.session() as s:
            ensure_user(s, checked.user_id, email=checked.email)
            req = create_request(
                s,
                user_id=checked.user_id,
                prompt=checked.prompt,
                script=checked.script,
                portrait_path=uris[0],
                options=checked.options.to_json(),
                request_id=request_id,
                notify_at=checked.notify_at,
                notify_address=checked.email,
            )
            req.callback_url = checked.callback_url
            req.voice_reference_path = uris[1] if len(uris) > 1 else None
            if run_id is not None:
                status.submit(s, request_id, run_id=run_id)
    except BaseException:
        # The row did not commit: remove the input files so no orphan folder is left.
        for uri in uris:
            with contextlib.suppress(ContentStoreError):  # keep the original error
                content.delete(uri)
        for path in stored:
            path.unlink(missing_ok=True)
        for parent in (folder / INPUT_DIR, folder):
            if parent.exists() and not any(parent.iterdir()):
                parent.rmdir()
        raise
    return request_id
