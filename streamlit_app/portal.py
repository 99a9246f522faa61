"""Shared state and helpers of the portal pages (signed-in user, app database, media URLs).

Nothing here trusts the browser: the signed-in user id lives in Streamlit's server-side
session state, every query is filtered by it, and the only file locations handed to the
browser are signed media-server URLs for files inside that user's request folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

import streamlit as st
from sqlalchemy import select

from avgen_dagster.auth import AuthResult
from avgen_dagster.backends.music import GENRES as MUSIC_GENRES
from avgen_dagster.errors import InvalidInputError
from avgen_dagster.intake import NewRequest, submit_request
from avgen_dagster.media_server import media_url
from avgen_dagster.outputs import RequestOutputs
from avgen_dagster.portraits import Upload
from avgen_dagster.settings import Settings, get_settings, secret_key
from avgen_dagster.store import status
from avgen_dagster.store.content import ContentTree
from avgen_dagster.store.models import (
    GenerationRequest,
    Notification,
    NotificationStatus,
    RequestStatus,
)
from avgen_dagster.store.notifications import KIND_MESSAGE
from avgen_dagster.store.requests import get_request, list_requests, log_view, outputs_of
from avgen_dagster.store.session import AppDatabase

USER_KEY = "avgen_user_id"
FLASH_KEY = "avgen_flash"
VIEWED_KEY = "avgen_viewed"
GALLERY_LIMIT_KEY = "avgen_gallery_limit"
GALLERY_PAGE_SIZE = 20
PROCESSING_MESSAGE = "Your content is being generated. Please check back later."


def settings() -> Settings:
    """The process settings (re-read each script run: cheap, and tests change them)."""
    return get_settings()


def database() -> AppDatabase:
    """The app database at the settings' URL (the process's one, migrated once)."""
    return settings().database()


def current_user() -> str | None:
    """The signed-in user id, or None."""
    user = st.session_state.get(USER_KEY)
    return user if isinstance(user, str) else None


def sign_in(result: AuthResult) -> None:
    """Remember a successful :class:`AuthResult`'s user in the session (and nothing else)."""
    if not result.ok or result.user_id is None:
        raise ValueError("sign_in needs a successful AuthResult")
    for key in (VIEWED_KEY, GALLERY_LIMIT_KEY):
        st.session_state.pop(key, None)
    st.session_state[USER_KEY] = result.user_id


def sign_out() -> None:
    """Forget everything this session knew about its user."""
    for key in (USER_KEY, VIEWED_KEY, GALLERY_LIMIT_KEY, FLASH_KEY):
        st.session_state.pop(key, None)


def flash(kind: str, message: str) -> None:
    """Queue a message (``kind`` = success|info|warning|error) for the next page shown."""
    st.session_state[FLASH_KEY] = (kind, message)


def show_flash() -> None:
    """Show and clear the queued message, if any."""
    item = st.session_state.pop(FLASH_KEY, None)
    if item:
        kind, message = item
        getattr(st, kind, st.info)(message)


def client_address() -> str | None:
    """The browser's IP address as Streamlit sees it (None in tests and behind some proxies)."""
    try:
        address = st.context.ip_address
    except Exception:
        return None
    return address if isinstance(address, str) and address else None


@dataclass
class GalleryItem:
    """What the gallery shows of one request (plain values; built inside one DB session)."""

    request_id: str
    status: str
    created_at: str
    prompt: str | None
    script: str | None
    error: str | None
    options: dict[str, Any] = field(default_factory=dict)
    outputs: RequestOutputs = field(default_factory=RequestOutputs)
    notification: str | None = None
    notification_failed: bool = False


def _notification_text(note: Notification | None) -> tuple[str | None, bool]:
    if note is None:
        return None, False
    if note.status == NotificationStatus.SENT.value and note.sent_at is not None:
        return f"Notification sent {note.sent_at.strftime('%Y-%m-%d %H:%M UTC')}", False
    if note.status == NotificationStatus.FAILED.value:
        return f"Notification could not be sent: {note.last_error or 'no reason recorded'}", True
    return "Notification pending", False


def _item(req: GenerationRequest, note: Notification | None = None) -> GalleryItem:
    text, failed = _notification_text(note)
    return GalleryItem(
        request_id=req.request_id,
        status=req.status,
        created_at=req.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        prompt=req.prompt,
        script=req.script,
        error=req.error,
        options=dict(req.options or {}),
        outputs=outputs_of(req),
        notification=text,
        notification_failed=failed,
    )


def gallery_items(db: AppDatabase, user_id: str, limit: int) -> tuple[list[GalleryItem], bool]:
    """The user's newest ``limit`` requests, and whether older ones exist (one indexed query)."""
    with db.session() as s:
        rows = list_requests(s, user_id, limit=limit + 1)
        shown = rows[:limit]
        ids = [r.request_id for r in shown]
        notes = {
            n.request_id: n
            for n in s.scalars(
                select(Notification).where(
                    Notification.request_id.in_(ids), Notification.kind == KIND_MESSAGE
                )
            )
        }
        return [_item(r, notes.get(r.request_id)) for r in shown], len(rows) > limit


def relative_in_request(user_id: str, request_id: str, path: str | None) -> str | None:
    """``path`` relative to the request's folder if it is a file inside it, else None.

    This is the gate for anything the browser is given: a path or object URI recorded in the
    database or the catalog that points anywhere else (another request, another user, outside
    the content store) yields None and is never shown. See
    :meth:`~avgen_dagster.store.content.ContentTree.relative_in_request`.
    """
    return content_tree().relative_in_request(user_id, request_id, path)


def content_tree() -> ContentTree:
    """The content store of the settings (local folder or object store)."""
    return settings().content_tree()


def retry_request(db: AppDatabase, user_id: str, request_id: str) -> None:
    """Re-queue the user's own Failed request (Failed → Queued, a new run key).

    Raises:
        InvalidInputError: not the user's request. TransitionError: not Failed.
    """
    with db.session() as s:
        if get_request(s, request_id).user_id != user_id:
            raise InvalidInputError(f"request {request_id} is not {user_id!r}'s")
        status.retry(s, request_id, by="portal")


def signed_url(user_id: str, request_id: str, path_in_request: str) -> str:
    """A signed media-server URL for one file of one of the user's requests."""
    return media_url(settings().media_url, user_id, request_id, path_in_request, secret_key())


def record_views(db: AppDatabase, user_id: str, views: list[tuple[str, str]]) -> int:
    """Log each ``(request_id, item)`` view once per session (one transaction); return count.

    ``log_view`` refuses a request that is not ``user_id``'s, so a view is only ever logged
    against the signed-in user's own request.
    """
    seen: set[tuple[str, str]] = st.session_state.setdefault(VIEWED_KEY, set())
    fresh = [v for v in dict.fromkeys(views) if v not in seen]
    if not fresh:
        return 0
    with db.session() as s:
        for request_id, item in fresh:
            log_view(s, user_id, request_id, item)
    seen.update(fresh)
    return len(fresh)


def is_pending(status: str) -> bool:
    """Queued or Processing: the gallery shows :data:`PROCESSING_MESSAGE`."""
    return status in (RequestStatus.QUEUED.value, RequestStatus.PROCESSING.value)


# --- new request -----------------------------------------------------------------------------

MODE_PROMPT = "Write it from my prompt"
MODE_SCRIPT = "Use my own script"
PORTRAIT_TYPES = ("png", "jpg", "jpeg", "webp")
VOICE_REFERENCE_TYPES = ("wav", "flac", "ogg", "oga", "opus", "mp3")
GENRES: tuple[str, ...] = tuple(MUSIC_GENRES)


@st.cache_data(show_spinner=False)
def time_zones() -> list[str]:
    """IANA time zone names (``zoneinfo``), sorted, always including ``UTC``."""
    import zoneinfo

    return sorted(zoneinfo.available_timezones() | {"UTC"})


def browser_time_zone() -> str:
    """The browser's IANA time zone (``st.context.timezone``) when known and valid, else UTC."""
    try:
        zone = st.context.timezone
    except Exception:
        zone = None
    return zone if zone in time_zones() else "UTC"


@dataclass(frozen=True)
class RequestForm:
    """The new-request form's values as the page read them (unvalidated)."""

    mode: str
    text: str
    portrait: bytes | None
    portrait_name: str
    genre: str | None
    music_duration_s: float
    clip_duration_s: float
    image_count: int
    clip_count: int
    notify_date: date | None
    notify_time: time | None
    time_zone: str
    email: str
    final_options: dict[str, Any] = field(default_factory=dict)  # format, captions, b-roll…
    voice_reference: bytes | None = None  # a recording of the voice to clone
    voice_reference_name: str = ""


def notify_at(form: RequestForm) -> datetime | None:
    """The notification time as an aware datetime in the chosen zone; None = when ready.

    A time without a date means today (in that zone); a date without a time is refused.

    Raises:
        InvalidInputError: unknown time zone, or a date without a time.
    """
    import zoneinfo

    if form.notify_date is None and form.notify_time is None:
        return None
    try:
        tz = zoneinfo.ZoneInfo(form.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInputError(f"unknown time zone {form.time_zone!r}") from exc
    if form.notify_time is None:
        raise InvalidInputError("choose a time for the notification, or clear the date")
    day = form.notify_date or datetime.now(tz).date()
    return datetime.combine(day, form.notify_time, tzinfo=tz)


def submit_form(db: AppDatabase, user_id: str, form: RequestForm) -> str:
    """Queue the form's request through the one intake (:func:`submit_request`); return its id.

    Every check — text, options (:class:`avgen_dagster.options.RequestOptions`), notification
    time, email, the voice reference (and whether this deployment's speech backend can clone
    it), the portrait's type, size, pixels and face — is intake's, with intake's messages,
    exactly as for ``avgen request`` and the API.

    Raises:
        InvalidInputError / NoFaceError: with a user-readable message; nothing is stored.
    """
    if form.mode not in (MODE_PROMPT, MODE_SCRIPT):
        raise InvalidInputError(f"unknown narration mode {form.mode!r}")
    if form.portrait is None:
        raise InvalidInputError("choose a portrait photo to upload")
    text = form.text
    new = NewRequest(
        user_id=user_id,
        prompt=text if form.mode == MODE_PROMPT else None,
        script=text if form.mode == MODE_SCRIPT else None,
        portrait=Upload(form.portrait_name or "portrait", form.portrait),
        options={
            "genre": form.genre,
            "music_duration_s": float(form.music_duration_s),
            "clip_duration_s": float(form.clip_duration_s),
            "image_count": int(form.image_count),
            "clip_count": int(form.clip_count),
            **form.final_options,
        },
        notify_at=notify_at(form),
        email=form.email.strip() or None,
        voice_reference=(
            Upload(form.voice_reference_name or "recording", form.voice_reference)
            if form.voice_reference is not None
            else None
        ),
    )
    return submit_request(db, content_tree(), new, non_cloning_speech=speech_without_cloning())


def speech_without_cloning() -> str | None:
    """The configured speech backend's name when it cannot clone a voice (the sensor's runs
    use the environment's: ``AVGEN_SPEECH_BACKEND``, ``AVGEN_SPEECH_MODEL``), else None."""
    from avgen_dagster.resources.backends import SpeechBackendResource

    return SpeechBackendResource.from_env().without_cloning()
