"""The notifier resource: which channel delivers a request's notification, and its settings."""

from __future__ import annotations

import os
from typing import Literal

import dagster as dg
from pydantic import Field

from avgen_dagster.notifications.channels import (
    Channel,
    ConsoleChannel,
    SendGridChannel,
    SmtpChannel,
)
from avgen_dagster.settings import get_settings


class NotifierResource(dg.ConfigurableResource):
    """Chooses the channel per request: ``email`` (SendGrid or SMTP) or ``console``.

    Secrets come from the environment through ``dg.EnvVar`` (see :func:`notifier_from_env`):
    ``SENDGRID_API_KEY``, ``AVGEN_SMTP_PASSWORD``. A missing SendGrid key is reported at the
    first email send (a clear configuration error), never when the sensor runs.
    """

    email_provider: Literal["sendgrid", "smtp"] = "sendgrid"
    sender: str = Field(default="avgen <no-reply@avgen.local>", description="From address.")
    sendgrid_api_key: str | None = None
    sendgrid_host: str = "https://api.sendgrid.com"
    sandbox_mode: bool = Field(default=False, description="SendGrid validates, does not send.")
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = None
    portal_url: str = Field(default_factory=lambda: get_settings().portal_url)

    def channel(self, name: str) -> Channel:
        """The channel for a request's ``notify_channel`` ("email" or "console")."""
        if name == "console":
            return ConsoleChannel()
        if self.email_provider == "smtp":
            return SmtpChannel(
                self.smtp_host,
                self.smtp_port,
                self.sender,
                security=self.smtp_security,
                username=self.smtp_username,
                password=self.smtp_password,
            )
        return SendGridChannel(
            self.sendgrid_api_key,
            self.sender,
            host=self.sendgrid_host,
            sandbox_mode=self.sandbox_mode,
        )


def notifier_from_env() -> NotifierResource:
    """The notifier configured from ``AVGEN_EMAIL_*`` / ``AVGEN_SMTP_*`` and secret env vars.

    ================================  ==========================================
    ``AVGEN_EMAIL_PROVIDER``          ``sendgrid`` (default) or ``smtp``
    ``AVGEN_EMAIL_FROM``              sender address
    ``SENDGRID_API_KEY``              SendGrid key (secret, via ``dg.EnvVar``)
    ``AVGEN_SENDGRID_HOST``           API host (default https://api.sendgrid.com)
    ``AVGEN_SENDGRID_SANDBOX``        ``1`` for sandbox mode
    ``AVGEN_SMTP_HOST`` / ``_PORT``   SMTP server
    ``AVGEN_SMTP_SECURITY``           ``starttls`` (default), ``ssl`` or ``none``
    ``AVGEN_SMTP_USERNAME``           SMTP user
    ``AVGEN_SMTP_PASSWORD``           SMTP password (secret, via ``dg.EnvVar``)
    ================================  ==========================================
    """
    env = os.environ
    kwargs: dict[str, object] = {
        "email_provider": env.get("AVGEN_EMAIL_PROVIDER", "sendgrid"),
        "sendgrid_host": env.get("AVGEN_SENDGRID_HOST", "https://api.sendgrid.com"),
        "sandbox_mode": env.get("AVGEN_SENDGRID_SANDBOX", "") in {"1", "true", "yes"},
        "smtp_host": env.get("AVGEN_SMTP_HOST", "localhost"),
        "smtp_port": int(env.get("AVGEN_SMTP_PORT", "587")),
        "smtp_security": env.get("AVGEN_SMTP_SECURITY", "starttls"),
    }
    if sender := env.get("AVGEN_EMAIL_FROM"):
        kwargs["sender"] = sender
    if user := env.get("AVGEN_SMTP_USERNAME"):
        kwargs["smtp_username"] = user
    # Secrets stay out of the run config: EnvVar is resolved when the resource starts.
    if "SENDGRID_API_KEY" in env:
        kwargs["sendgrid_api_key"] = dg.EnvVar("SENDGRID_API_KEY")
    if "AVGEN_SMTP_PASSWORD" in env:
        kwargs["smtp_password"] = dg.EnvVar("AVGEN_SMTP_PASSWORD")
    return NotifierResource(**kwargs)
