"""SQLAlchemy 2 ORM models of the app database.

Times are timezone-aware UTC. Paths are absolute strings (or object-store URLs later).
The schema is owned by the Alembic migrations in ``store/migrations``; keep both in step.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """A DateTime stored as naive UTC and read back as aware UTC (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_request_id() -> str:
    """A new request id: 32 lowercase hex characters (UUID4)."""
    return uuid.uuid4().hex


class RequestStatus(enum.StrEnum):
    """Life cycle of a generation request: Queued → Processing → Completed | Failed, and
    Failed → Queued by an explicit retry (see :mod:`avgen_dagster.store.status`)."""

    QUEUED = "Queued"
    PROCESSING = "Processing"
    COMPLETED = "Completed"
    FAILED = "Failed"


class Base(DeclarativeBase):
    """Declarative base of the app database."""


class User(Base):
    """A portal user; ``user_id`` is also the Dagster partition key."""

    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    # Argon2id hash (argon2-cffi, PHC string format); the code itself is never stored.
    access_code_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    requests: Mapped[list[GenerationRequest]] = relationship(back_populates="user")


class GenerationRequest(Base):
    """One request for a media package, and what came of it."""

    __tablename__ = "generation_requests"
    __table_args__ = (Index("ix_generation_requests_user_created", "user_id", "created_at"),)

    request_id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_request_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"), index=True)
    prompt: Mapped[str | None] = mapped_column(Text)
    script: Mapped[str | None] = mapped_column(Text)
    portrait_path: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=RequestStatus.QUEUED.value, index=True)
    # The typed outputs record (avgen_dagster.outputs.RequestOutputs as JSON); one writer.
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # 0 for the first run; +1 for each explicit retry (the run key is derived from it).
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    run_id: Mapped[str | None] = mapped_column(String(64))
    # When the user wants to be told (UTC); None means as soon as the content is ready.
    notify_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # How to tell the user: "email" (to notify_address) or "console".
    notify_channel: Mapped[str] = mapped_column(String(16), default="console")
    notify_address: Mapped[str | None] = mapped_column(String(320))
    # When the intake sensor requested the run (Queued → Processing).
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    generated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Where to POST a signed webhook when the request ends Completed or Failed (checked by
    # intake: http(s), no private/loopback/link-local target unless allowlisted). Migration 0006.
    callback_url: Mapped[str | None] = mapped_column(Text)
    # The voice the narration clones (an uploaded reference clip, checked and stored by intake
    # as input/voice_reference.wav); None: the speech backend's own voice. Migration 0007.
    voice_reference_path: Mapped[str | None] = mapped_column(Text)

    user: Mapped[User] = relationship(back_populates="requests")


class RequestEvent(Base):
    """One status change of a request (its history): from, to, why, by which run, when.

    Written only by :mod:`avgen_dagster.store.status`, in the same transaction as the change.
    """

    __tablename__ = "request_events"
    __table_args__ = (Index("ix_request_events_request_time", "request_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(
        ForeignKey("generation_requests.request_id", ondelete="CASCADE")
    )
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LoginAttempt(Base):
    """One sign-in attempt, good or bad (user id as typed, never the access code)."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_user_time", "user_id_tried", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id_tried: Mapped[str] = mapped_column(String(128))
    success: Mapped[bool] = mapped_column(Boolean)
    method: Mapped[str] = mapped_column(String(16))  # "code" or "link"
    reason: Mapped[str] = mapped_column(String(200))
    client_address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ContentView(Base):
    """One view of one item (video, HLS stream, script, image…) of a request by its owner."""

    __tablename__ = "content_views"
    __table_args__ = (Index("ix_content_views_user_time", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"))
    request_id: Mapped[str] = mapped_column(ForeignKey("generation_requests.request_id"))
    item: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class NotificationStatus(enum.StrEnum):
    """Pending → Sending → Sent | Failed (Sending again after a crash or a transient error)."""

    PENDING = "Pending"
    SENDING = "Sending"
    SENT = "Sent"
    FAILED = "Failed"


class Notification(Base):
    """One message about a request, recorded before every send attempt and after it.

    ``kind`` ``"message"``: the user's one notification (email or console) per request.
    ``kind`` ``"webhook"`` (migration 0006): one signed POST to the request's ``callback_url``
    (``target``) per outcome of each attempt (Completed or Failed).

    ``message_id`` is fixed when the row is created and reused by every attempt (SendGrid
    ``custom_args`` and the email's ``Message-ID``; a webhook's ``webhook-id``), so a resend
    after a crash carries the same id and the recipient can drop the duplicate (at-least-once
    delivery); it is unique across all rows.
    """

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("message_id", name="uq_notifications_message_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(
        ForeignKey("generation_requests.request_id"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16), default="message", server_default="message")
    # The webhook's URL (kind "webhook"); None for messages (their recipient is below).
    target: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(
        String(16), default=NotificationStatus.PENDING.value, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    dispatches: Mapped[int] = mapped_column(Integer, default=0)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    message_id: Mapped[str] = mapped_column(String(200))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiKey(Base):
    """A user's key for the HTTP API (``Authorization: Bearer avg_<prefix>_<secret>``).

    The key is shown once, when created; only ``prefix`` (for lookup, not secret) and the
    SHA-256 of the secret part are stored (see :mod:`avgen_dagster.store.api_keys`).
    ``last_used_at`` is refreshed at most once a minute. A revoked key stays listed.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IdempotencyRecord(Base):
    """An ``Idempotency-Key`` a user sent with a submission, and what it produced.

    ``body_sha256`` fingerprints the submission (fields and portrait bytes, not the raw
    multipart framing); ``request_id`` is None while the submission is being taken in, and the
    row goes with its request when the request is erased.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"))
    key: Mapped[str] = mapped_column(String(255))
    body_sha256: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(
        ForeignKey("generation_requests.request_id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Erasure(Base):
    """The record that a request was erased (who asked, when, how much went): no content."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(32), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(32))
    runs_terminated: Mapped[int] = mapped_column(Integer, default=0)
    runs_deleted: Mapped[int] = mapped_column(Integer, default=0)
    files_removed: Mapped[int] = mapped_column(Integer, default=0)
    rows_removed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
