"""Music paths of a request.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("generation_requests") as batch:
        batch.add_column(sa.Column("audio_paths", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generation_requests") as batch:
        batch.drop_column("audio_paths")
