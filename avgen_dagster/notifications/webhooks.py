"""Webhooks: a request's outcome POSTed to its ``callback_url``, signed per Standard Webhooks.

Standard Webhooks (https://www.standardwebhooks.com, spec v1): every delivery carries
``webhook-id`` (stable across retries: the notification row's message id), ``webhook-timestamp``
(Unix seconds of this attempt) and ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">``), computed with the ``standardwebhooks`` library. The body is::

    {"type": "request.completed" | "request.failed",
     "timestamp": "<when the outcome happened, ISO 8601 UTC>",
     "data": {"request_id", "status", "attempt", "error", "outputs", "outputs_expire_at",
              "links": {"self": "<API URL of the request>"}}}

``outputs`` are signed media URLs named like the outputs record (fresh on every attempt).

The signing secret is per user (``whsec_`` + base64 of HMAC-SHA256(``AVGEN_SECRET_KEY``,
"avgen-webhook:<user id>")): derived, not stored, the same in every process; the user reads it
from ``GET /v1/webhook-secret``, ``avgen key create`` or the portal's API keys page.

Delivery goes through :func:`avgen_dagster.notifications.delivery.deliver` like every other
notification (recorded before and after each attempt, retried with backoff). Here: 2xx is
delivered; 3xx (redirects are not followed) and 410 Gone are permanent; any other status,
timeouts and connection errors are transient (retried, at most
:data:`~avgen_dagster.store.notifications.MAX_ATTEMPTS` attempts). The URL is checked again
before each attempt (:mod:`.webhook_url`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import httpx
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.notifications.channels import PermanentSendError, TransientSendError
from avgen_dagster.notifications.message import Message
from avgen_dagster.notifications.webhook_url import check_callback_url
from avgen_dagster.outputs import RequestOutputs
from avgen_dagster.store import status as request_status
from avgen_dagster.store.content import ContentTree
from avgen_dagster.store.models import GenerationRequest, RequestStatus
from avgen_dagster.store.notifications import get_notification, webhook_outcome
from avgen_dagster.store.requests import get_request, outputs_of
from avgen_dagster.store.session import AppDatabase

USER_AGENT = "avgen-webhooks/1"
TIMEOUT_S = 10.0
_SECRET_SALT = "avgen-webhook:"


def webhook_secret(user_id: str, secret_key: str) -> str:
    """The user's Standard Webhooks signing secret (``whsec_<base64 of 32 bytes>``)."""
    digest = hmac.new(
        secret_key.encode(), (_SECRET_SALT + user_id).encode(), hashlib.sha256
    ).digest()
    return "whsec_" + base64.b64encode(digest).decode("ascii")


class WebhookChannel:
    """POSTs ``message.text`` (JSON) to ``message.to`` with Standard Webhooks headers."""

    name = "webhook"

    def __init__(
        self,
        signing_secret: str,
        *,
        allow_hosts: Sequence[str] = (),
        timeout_s: float = TIMEOUT_S,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._signer = Webhook(signing_secret)
        self.allow_hosts = tuple(allow_hosts)
        self.timeout_s = timeout_s
        self._clock = clock or (lambda: datetime.now(UTC))

    def headers(self, message: Message) -> dict[str, str]:
        """The signed headers of one attempt (``webhook-timestamp`` = now)."""
        now = self._clock()
        return {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": message.message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(message.message_id, now, message.text),
        }

    def send(self, message: Message) -> str | None:
        """One attempt; returns ``"HTTP <status>"`` of the receiver's 2xx answer.

        Raises:
            PermanentSendError: the URL is no longer allowed, a 3xx or 410 answer.
            TransientSendError: any other non-2xx answer, a timeout or a connection error.
        """
        try:
            url = check_callback_url(message.to or "", allow_hosts=self.allow_hosts)
        except InvalidInputError as exc:
            raise PermanentSendError(f"webhook not sent: {exc}") from exc
        try:
            response = httpx.post(
                url,
                content=message.text.encode("utf-8"),
                headers=self.headers(message),
                timeout=self.timeout_s,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise TransientSendError(f"webhook receiver unreachable: {exc!r}") from exc
        code = response.status_code
        if 200 <= code < 300:
            return f"HTTP {code}"
        reason = f"webhook receiver answered {code}: {response.text[:200]!r}"
        if 300 <= code < 400 or code == 410:
            raise PermanentSendError(reason + " (redirects are not followed; 410: gone)")
        raise TransientSendError(reason)


def _event_time(session: Session, req: GenerationRequest, state: str) -> datetime:
    """When the request last became ``state`` (its history), else when it was made."""
    if state == RequestStatus.COMPLETED.value and req.generated_at is not None:
        return req.generated_at
    times = [e.created_at for e in request_status.history(session, req.request_id)
             if e.to_status == state]  # fmt: skip
    return times[-1] if times else req.created_at


def _utc_text(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def webhook_payload(
    db: AppDatabase,
    request_id: str,
    message_id: str,
    *,
    tree: ContentTree,
    media_base_url: str,
    secret_key: str,
) -> dict[str, object]:
    """The Standard Webhooks body of the outcome ``message_id`` names (see the module doc).

    The outcome is the one the row was made for, even if the request has moved on since (a
    Failed request retried): then its outputs and error are no longer this outcome's (empty).
    """
    from avgen_dagster.api.links import request_path, signed_outputs

    attempt, state = webhook_outcome(message_id)
    with db.session() as s:
        req = get_request(s, request_id)
        when = _event_time(s, req, state)
        current = req.attempt == attempt and req.status == state
        done = current and state == RequestStatus.COMPLETED.value
        outputs = outputs_of(req) if done else RequestOutputs()
        user_id, error = req.user_id, (req.error if current else None)
    links, expires = signed_outputs(
        tree, user_id, request_id, outputs, media_base_url=media_base_url, secret=secret_key
    )
    return {
        "type": f"request.{state.lower()}",
        "timestamp": _utc_text(when),
        "data": {
            "request_id": request_id,
            "status": state,
            "attempt": attempt,
            "error": error,
            "outputs": links,
            "outputs_expire_at": _utc_text(expires) if done else None,
            "links": {"self": f"{media_base_url.rstrip('/')}{request_path(request_id)}"},
        },
    }


def webhook_delivery(
    db: AppDatabase,
    request_id: str,
    notification_id: int,
    *,
    tree: ContentTree,
    media_base_url: str,
    secret_key: str,
    allow_hosts: Sequence[str] = (),
) -> tuple[WebhookChannel, Callable[[], Message]]:
    """The channel (signing with the request's user's secret) and the message builder of one
    webhook row, for :func:`~avgen_dagster.notifications.delivery.deliver`.

    Raises:
        InvalidInputError: no such request or webhook row (e.g. the request was erased).
    """
    with db.session() as s:
        user_id = get_request(s, request_id).user_id
        note = get_notification(s, request_id, notification_id=notification_id)
        target, message_id = note.target, note.message_id
    channel = WebhookChannel(webhook_secret(user_id, secret_key), allow_hosts=allow_hosts)

    def build() -> Message:
        payload = webhook_payload(
            db, request_id, message_id, tree=tree, media_base_url=media_base_url,
            secret_key=secret_key,
        )  # fmt: skip
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        return Message(
            to=target,
            subject=str(payload["type"]),
            text=body,
            html="",
            message_id=message_id,
            request_id=request_id,
        )

    return channel, build
