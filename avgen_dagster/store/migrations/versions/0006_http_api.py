"""The HTTP API: API keys, idempotency keys, erasure records, webhooks as notifications.

* ``api_keys``: per-user keys, stored as a lookup prefix and the SHA-256 of the secret part;
* ``idempotency_keys``: a user's ``Idempotency-Key`` and the request it produced (unique per
  user and key; erased with the request);
* ``erasures``: that a request was erased, by whom, when and how much went (no content);
* ``generation_requests.callback_url``: where the request's webhooks go;
* ``notifications`` carries webhooks too: ``kind`` (``message`` | ``webhook``) and ``target``
  (the URL); a request may now have several rows (its message, one webhook per outcome), so
  the unique key moves from ``request_id`` (indexed instead) to ``message_id``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# SQLite keeps the 0003 unique constraint on notifications.request_id unnamed: batch mode
# recreates the table and needs a name to drop it by; Postgres named it itself.
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
_SQLITE_REQUEST_UQ = "uq_notifications_request_id"
_PG_REQUEST_UQ = "notifications_request_id_key"


def _create_api_tables() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(64), sa.ForeignKey("users.user_id"), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False, unique=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(64), sa.ForeignKey("users.user_id"), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column(
            "request_id",
            sa.String(32),
            sa.ForeignKey("generation_requests.request_id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_key"),
    )
    op.create_table(
        "erasures",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(32), nullable=False),
        sa.Column("runs_terminated", sa.Integer(), nullable=False),
        sa.Column("runs_deleted", sa.Integer(), nullable=False),
        sa.Column("files_removed", sa.Integer(), nullable=False),
        sa.Column("rows_removed", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_erasures_request_id", "erasures", ["request_id"])


def upgrade() -> None:
    _create_api_tables()
    with op.batch_alter_table("generation_requests") as batch:
        batch.add_column(sa.Column("callback_url", sa.Text(), nullable=True))
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("notifications", naming_convention=_NAMING) as batch:
        batch.drop_constraint(_SQLITE_REQUEST_UQ if sqlite else _PG_REQUEST_UQ, type_="unique")
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="message"))
        batch.add_column(sa.Column("target", sa.Text(), nullable=True))
        batch.create_unique_constraint("uq_notifications_message_id", ["message_id"])
        batch.create_index("ix_notifications_request_id", ["request_id"])


def downgrade() -> None:
    # Back to one notification per request: webhook rows have no place in the old schema.
    op.execute(sa.text("DELETE FROM notifications WHERE kind <> 'message'"))
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("notifications", naming_convention=_NAMING) as batch:
        batch.drop_index("ix_notifications_request_id")
        batch.drop_constraint("uq_notifications_message_id", type_="unique")
        batch.drop_column("target")
        batch.drop_column("kind")
        batch.create_unique_constraint(
            _SQLITE_REQUEST_UQ if sqlite else _PG_REQUEST_UQ, ["request_id"]
        )
    with op.batch_alter_table("generation_requests") as batch:
        batch.drop_column("callback_url")
    op.drop_index("ix_erasures_request_id", table_name="erasures")
    op.drop_table("erasures")
    op.drop_table("idempotency_keys")
    op.drop_index("ix_api_keys_user_id", table_name="api_keys")
    op.drop_table("api_keys")
