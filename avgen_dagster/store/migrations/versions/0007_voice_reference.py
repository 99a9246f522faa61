"""A request's voice reference: ``generation_requests.voice_reference_path``.

The URI of the reference clip intake stored for the request (``input/voice_reference.wav``,
16-bit PCM mono), which the speech backend clones (Coqui XTTS); NULL for requests spoken in the
backend's own voice — every request before this revision.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("generation_requests") as batch:
        batch.add_column(sa.Column("voice_reference_path", sa.Text(), nullable=True))


def downgrade() -> None:
    # The clips stay on disk in their request folders; only the reference to them goes.
    with op.batch_alter_table("generation_requests") as batch:
        batch.drop_column("voice_reference_path")
