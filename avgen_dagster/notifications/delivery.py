"""Delivering one request's notification with its record kept before and after the send.

Order (each step its own committed transaction):
1. read the notification; Sent or Failed → nothing to do (never sent twice);
2. render the message (a template error fails here, before any attempt is recorded);
3. record the attempt: Sending, attempts + 1;
4. call the provider;
5. record Sent with the provider's id — or the failure (permanent → Failed; transient → still
   Sending, retried; out of attempts → Failed).

A process killed between 3 and 5 leaves Sending: the next attempt sends again under the same
message id (at-least-once; the recipient's client can drop the duplicate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from avgen_dagster.auth import LINK_MAX_AGE_S, issue_login_token
from avgen_dagster.notifications.channels import (
    Channel,
    NotifierConfigError,
    PermanentSendError,
    TransientSendError,
)
from avgen_dagster.notifications.message import Message, render_message
from avgen_dagster.outputs import RequestOutputs
from avgen_dagster.store.models import NotificationStatus
from avgen_dagster.store.notifications import (
    begin_send,
    get_notification,
    record_failure,
    record_sent,
)
from avgen_dagster.store.requests import get_request, outputs_of
from avgen_dagster.store.session import AppDatabase

CrashHook = Callable[[str], None]


@dataclass(frozen=True)
class DeliveryOutcome:
    """What happened: ``status`` after the call, attempts so far, provider id."""

    request_id: str
    status: str
    attempts: int
    provider_message_id: str | None
    skipped: bool = False


def describe_items(outputs: RequestOutputs) -> list[str]:
    """Human descriptions of what a request produced (videos with their length in seconds)."""
    from avgen_dagster.errors import MediaError
    from avgen_dagster.media.probe import probe_media

    def video(label: str, uri: str | None) -> str | None:
        if not uri:
            return None
        try:
            return f"{label}, {probe_media(Path(uri)).duration_s:.1f} s"
        except MediaError:
            return label

    items = [
        video("a talking-head video", outputs.talking_head_mp4),
        "an HLS stream for web players" if outputs.hls_playlist else None,
        video("a music video", outputs.music_video),
        f"{len(outputs.video_clips)} video clip{'s' if len(outputs.video_clips) != 1 else ''}"
        if outputs.video_clips
        else None,
        f"{len(outputs.images)} image{'s' if len(outputs.images) != 1 else ''}"
        if outputs.images
        else None,
        "a music track" if outputs.music or outputs.music_wav else None,
    ]
    return [item for item in items if item]


def build_message(db: AppDatabase, request_id: str, portal_url: str, secret: str) -> Message:
    """The notification message of ``request_id`` with a signed gallery link."""
    with db.session() as s:
        req = get_request(s, request_id)
        note = get_notification(s, request_id)
        token = issue_login_token(req.user_id, secret)
        return render_message(
            to=note.recipient,
            user_id=req.user_id,
            request_id=request_id,
            message_id=note.message_id,
            gallery_url=f"{portal_url.rstrip('/')}/?token={token}",
            items=describe_items(outputs_of(req)),
            prompt=req.prompt,
            completed_at=req.generated_at,
            link_days=LINK_MAX_AGE_S // 86400,
        )


def deliver(
    db: AppDatabase,
    request_id: str,
    channel: Channel,
    message: Callable[[], Message],
    *,
    notification_id: int | None = None,
    crash_hook: CrashHook | None = None,
) -> DeliveryOutcome:
    """Send the notification of ``request_id`` through ``channel`` at most once more.

    Args:
        message: builds the message (called once, before the attempt is recorded).
        notification_id: the row to deliver (a webhook); default the request's message.
        crash_hook: called with ``"sending_recorded"`` and ``"provider_accepted"`` (crash
            tests kill the process there).

    Raises:
        TransientSendError: worth retrying (the record says Sending, with the error).
        PermanentSendError: the record says Failed with the provider's reason.
        NotifierConfigError: the channel is not configured (kept for a later attempt).
    """
    with db.session() as s:
        note = get_notification(s, request_id, notification_id=notification_id)
        if note.status in (NotificationStatus.SENT.value, NotificationStatus.FAILED.value):
            return DeliveryOutcome(
                request_id, note.status, note.attempts, note.provider_message_id, skipped=True
            )
    msg = message()
    with db.session() as s:
        begin_send(s, request_id, notification_id=notification_id)
    if crash_hook:
        crash_hook("sending_recorded")
    try:
        provider_id = channel.send(msg)
    except PermanentSendError as exc:
        with db.session() as s:
            record_failure(s, request_id, str(exc), permanent=True, notification_id=notification_id)
        raise
    except (TransientSendError, NotifierConfigError) as exc:
        with db.session() as s:
            note = record_failure(
                s, request_id, str(exc), permanent=False, notification_id=notification_id
            )
            final = note.status == NotificationStatus.FAILED.value
        if final:
            raise PermanentSendError(note.last_error or str(exc)) from exc
        raise
    if crash_hook:
        crash_hook("provider_accepted")
    with db.session() as s:
        record_sent(s, request_id, provider_id, notification_id=notification_id)
        note = get_notification(s, request_id, notification_id=notification_id)
        return DeliveryOutcome(request_id, note.status, note.attempts, provider_id)
