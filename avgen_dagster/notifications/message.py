"""The notification message: subject, plain-text and HTML bodies from Jinja2 templates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "notification"


@dataclass(frozen=True)
class Message:
    """One message to one recipient; ``message_id`` is the stable RFC 5322 Message-ID."""

    to: str | None
    subject: str
    text: str
    html: str
    message_id: str
    request_id: str


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def render_message(
    *,
    to: str | None,
    user_id: str,
    request_id: str,
    message_id: str,
    gallery_url: str,
    items: list[str],
    prompt: str | None,
    completed_at: datetime | None,
    link_days: int,
) -> Message:
    """Render ``templates/notification/{subject.txt, body.txt, body.html}``.

    ``items`` describe what was made ("a talking-head video, 37.3 s", …). The HTML body is
    autoescaped; the subject is one line.
    """
    env = _environment()
    context = {
        "user_id": user_id,
        "request_id": request_id,
        "gallery_url": gallery_url,
        "items": items,
        "prompt": (prompt or "").strip()[:200],
        "completed_at": completed_at.strftime("%Y-%m-%d %H:%M UTC") if completed_at else "",
        "link_days": link_days,
    }
    subject = " ".join(env.get_template("subject.txt").render(context).split())
    return Message(
        to=to,
        subject=subject,
        text=env.get_template("body.txt").render(context),
        html=env.get_template("body.html").render(context),
        message_id=message_id,
        request_id=request_id,
    )
