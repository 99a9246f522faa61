"""Access codes, login attempts, content views, and the notification time of a request.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("access_code_hash", sa.String(255), nullable=True))
    with op.batch_alter_table("generation_requests") as batch:
        batch.add_column(sa.Column("notify_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("submitted_at", sa.DateTime(), nullable=True))
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_id_tried", sa.String(128), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("client_address", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index(
        "ix_login_attempts_user_time", "login_attempts", ["user_id_tried", "created_at"]
    )
    op.create_table(
        "content_views",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(64), sa.ForeignKey("users.user_id"), nullable=False),
        sa.Column(
            "request_id",
            sa.String(32),
            sa.ForeignKey("generation_requests.request_id"),
            nullable=False,
        ),
        sa.Column("item", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_content_views_user_time", "content_views", ["user_id", "created_at"])


def downgrade() -> None:
    op.drop_table("content_views")
    op.drop_table("login_attempts")
    with op.batch_alter_table("generation_requests") as batch:
        batch.drop_column("submitted_at")
        batch.drop_column("notify_at")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("access_code_hash")
