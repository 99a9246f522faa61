"""One typed outputs record per request, a retry counter and the status history.

``generation_requests.video_paths`` / ``image_paths`` / ``audio_paths`` (lists whose meaning
readers recovered from file suffixes) become one JSON object ``outputs`` with named fields
(``avgen_dagster.outputs.RequestOutputs``); existing rows are converted here, once, by the
same suffix rules the readers used, so they stay readable. ``attempt`` counts explicit retries;
``request_events`` records every status change.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_requests = sa.table(
    "generation_requests",
    sa.column("request_id", sa.String),
    sa.column("video_paths", sa.JSON),
    sa.column("image_paths", sa.JSON),
    sa.column("audio_paths", sa.JSON),
    sa.column("outputs", sa.JSON),
)
_TALKING_HEAD = "/stitched_mp4/talking_head.mp4"


def outputs_from_lists(
    videos: list[str] | None, images: list[str] | None, audio: list[str] | None
) -> dict[str, Any]:
    """The outputs record of a pre-0005 row (kept here: migrations don't import app code)."""
    out: dict[str, Any] = {"images": list(images or []), "video_clips": []}
    for path in videos or []:
        if path.endswith(_TALKING_HEAD):
            out["talking_head_mp4"] = path
            out["script"] = path[: -len(_TALKING_HEAD)] + "/script/script.txt"
        elif path.endswith(".m3u8"):
            out["hls_playlist"] = path
        elif path.endswith("/music_video.mp4"):
            out["music_video"] = path
        elif path.endswith(".mp4"):
            out["video_clips"].append(path)
    for path in audio or []:
        out["music" if path.endswith(".m4a") else "music_wav"] = path
    return out


def lists_from_outputs(out: dict[str, Any] | None) -> tuple[list[str], list[str], list[str]]:
    """The pre-0005 lists of an outputs record (for the downgrade)."""
    out = out or {}
    videos = [*out.get("video_clips", [])]
    for key in ("music_video", "talking_head_mp4", "hls_playlist"):
        if out.get(key):
            videos.append(out[key])
    audio = [out[k] for k in ("music", "music_wav") if out.get(k)]
    return videos, list(out.get("images", [])), audio


def upgrade() -> None:
    with op.batch_alter_table("generation_requests") as batch:
        batch.add_column(sa.Column("outputs", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"))
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(
            _requests.c.request_id,
            _requests.c.video_paths,
            _requests.c.image_paths,
            _requests.c.audio_paths,
        )
    ).all()
    for request_id, videos, images, audio in rows:
        conn.execute(
            _requests.update()
            .where(_requests.c.request_id == request_id)
            .values(outputs=outputs_from_lists(videos, images, audio))
        )
    with op.batch_alter_table("generation_requests") as batch:
        batch.alter_column("outputs", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("video_paths")
        batch.drop_column("image_paths")
        batch.drop_column("audio_paths")
    op.create_table(
        "request_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "request_id",
            sa.String(32),
            sa.ForeignKey("generation_requests.request_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index(
        "ix_request_events_request_time", "request_events", ["request_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_request_events_request_time", table_name="request_events")
    op.drop_table("request_events")
    with op.batch_alter_table("generation_requests") as batch:
        batch.add_column(sa.Column("video_paths", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("image_paths", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("audio_paths", sa.JSON(), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.select(_requests.c.request_id, _requests.c.outputs)).all()
    for request_id, out in rows:
        videos, images, audio = lists_from_outputs(out)
        conn.execute(
            _requests.update()
            .where(_requests.c.request_id == request_id)
            .values(video_paths=videos, image_paths=images, audio_paths=audio)
        )
    with op.batch_alter_table("generation_requests") as batch:
        batch.alter_column("video_paths", existing_type=sa.JSON(), nullable=False)
        batch.alter_column("image_paths", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("attempt")
        batch.drop_column("outputs")
