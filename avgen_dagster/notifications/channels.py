"""Delivery channels: SendGrid (HTTP API), SMTP and the console.

Each channel's ``send`` returns the provider's message id (or None) and raises
:class:`TransientSendError` for failures worth retrying (timeouts, connection errors, HTTP 429
and 5xx, SMTP 4xx) and :class:`PermanentSendError` for those that are not (HTTP 4xx such as a
bad address or key, SMTP 5xx), with the provider's reason. A channel that is not configured
raises :class:`NotifierConfigError` at its first send.
"""

from __future__ import annotations

import json
import re
import smtplib
import ssl
from email.message import EmailMessage
from typing import Literal, Protocol

from avgen_dagster.errors import AvgenError
from avgen_dagster.notifications.message import Message


class SendError(AvgenError):
    """A message could not be delivered."""


class TransientSendError(SendError):
    """Delivery failed for a reason that may pass (retry with backoff)."""


class PermanentSendError(SendError):
    """Delivery failed for a reason a retry will not fix (bad address, bad key…)."""


class NotifierConfigError(AvgenError):
    """The channel lacks configuration (e.g. ``SENDGRID_API_KEY`` is not set)."""


class Channel(Protocol):
    """Something that delivers a :class:`Message`."""

    name: str

    def send(self, message: Message) -> str | None:
        """Deliver ``message``; return the provider's message id if it gives one."""
        ...


_TOKEN_PARAM = re.compile(r"([?&]token=)[^&#\s]*")


class ConsoleChannel:
    """Prints one clear line per message (laptops, demos); never fails."""

    name = "console"

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.sent: list[Message] = []

    def send(self, message: Message) -> str | None:
        """Print ``[avgen notification] <subject> — <first link, token elided>`` to stdout.

        The console is a run's compute log, which the Dagster UI shows to every operator and
        keeps: a live sign-in link there would let any operator sign in as the user. So the
        token is elided (``?token=…``); the user gets a fresh link from ``avgen user link``.
        """
        link = next((w for w in message.text.split() if w.startswith("http")), "")
        if self.echo:
            print(f"[avgen notification] {message.subject} — {elide_tokens(link)}", flush=True)
        self.sent.append(message)
        return None


def elide_tokens(url: str) -> str:
    """``url`` with the value of every ``token`` query parameter replaced by ``…``
    (``https://portal/?token=abc.def`` → ``https://portal/?token=…``)."""
    return _TOKEN_PARAM.sub(r"\1…", url)


class SendGridChannel:
    """SendGrid's v3 Mail Send API through the ``sendgrid`` client.

    The stable message id travels as ``custom_args.avgen_message_id`` and as the
    ``Message-ID`` header; ``host`` may point at a local server (tests) or a regional API.
    """

    name = "sendgrid"

    def __init__(
        self,
        api_key: str | None,
        sender: str,
        *,
        host: str = "https://api.sendgrid.com",
        sandbox_mode: bool = False,
        timeout_s: float = 15.0,
    ) -> None:
        self.api_key = api_key
        self.sender = sender
        self.host = host
        self.sandbox_mode = sandbox_mode
        self.timeout_s = timeout_s

    def send(self, message: Message) -> str | None:
        """POST /v3/mail/send; 202 → the ``X-Message-Id`` header.

        Raises:
            NotifierConfigError: no API key. PermanentSendError: 4xx other than 429.
            TransientSendError: 429, 5xx, timeouts and connection errors.
        """
        from python_http_client.exceptions import HTTPError
        from sendgrid import SendGridAPIClient
        from sendgrid.helpers.mail import (
            CustomArg,
            Header,
            Mail,
            MailSettings,
            SandBoxMode,
        )

        if not self.api_key:
            raise NotifierConfigError(
                "SENDGRID_API_KEY is not set: set it (or choose the smtp or console channel) "
                "to send email notifications"
            )
        if not message.to:
            raise PermanentSendError("the request has no email address to notify")
        mail = Mail(
            from_email=self.sender,
            to_emails=message.to,
            subject=message.subject,
            plain_text_content=message.text,
            html_content=message.html,
        )
        mail.custom_arg = CustomArg("avgen_message_id", message.message_id)
        mail.custom_arg = CustomArg("avgen_request_id", message.request_id)
        mail.header = Header("Message-ID", message.message_id)
        if self.sandbox_mode:
            mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
        client = SendGridAPIClient(api_key=self.api_key, host=self.host)
        client.client.timeout = self.timeout_s
        try:
            response = client.send(mail)
        except HTTPError as exc:
            reason = _sendgrid_reason(exc.body)
            if exc.status_code == 429 or exc.status_code >= 500:
                raise TransientSendError(f"SendGrid {exc.status_code}: {reason}") from exc
            raise PermanentSendError(
                f"SendGrid refused the message ({exc.status_code}): {reason}"
            ) from exc
        except OSError as exc:  # URLError, timeouts, refused connections
            raise TransientSendError(f"SendGrid is unreachable: {exc}") from exc
        headers = getattr(response, "headers", None)
        return headers.get("X-Message-Id") if headers is not None else None


def _sendgrid_reason(body: bytes | str | None) -> str:
    if not body:
        return "no details"
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        errors = json.loads(text).get("errors", [])
        return "; ".join(str(e.get("message", e)) for e in errors) or text[:300]
    except (ValueError, AttributeError):
        return text[:300]


class SmtpChannel:
    """SMTP (standard library ``smtplib``) with STARTTLS, implicit TLS or plain."""

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        security: Literal["starttls", "ssl", "none"] = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.security = security
        self.username, self.password = username, password
        self.timeout_s = timeout_s

    def _message(self, message: Message) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = message.to or ""
        msg["Subject"] = message.subject
        msg["Message-ID"] = message.message_id
        msg.set_content(message.text)
        msg.add_alternative(message.html, subtype="html")
        return msg

    def send(self, message: Message) -> str | None:
        """Send over SMTP; returns the Message-ID.

        Raises:
            PermanentSendError: 5xx replies, refused recipients, bad credentials.
            TransientSendError: 4xx replies, timeouts and connection errors.
        """
        if not message.to:
            raise PermanentSendError("the request has no email address to notify")
        try:
            if self.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout_s,
                    context=ssl.create_default_context(),
                )  # fmt: skip
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
            with smtp:
                if self.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(self._message(message))
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentSendError(f"SMTP login refused ({exc.smtp_code})") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = {code for code, _ in exc.recipients.values()}
            kind = TransientSendError if all(400 <= c < 500 for c in codes) else PermanentSendError
            raise kind(f"SMTP refused the recipient: {exc.recipients}") from exc
        except smtplib.SMTPResponseException as exc:
            kind = TransientSendError if 400 <= exc.smtp_code < 500 else PermanentSendError
            raise kind(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientSendError(f"SMTP server {self.host}:{self.port}: {exc}") from exc
        return message.message_id
