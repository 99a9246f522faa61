"""What a request produces: the file names inside its folder, and the one typed outputs record.

Every file of a request lives under ``<content root>/<user_id>/<request_id>/``; the names below
are the only place those relative paths are spelled. The assets write to them, the portal and
the API read them, and :class:`RequestOutputs` — stored as JSON in
``generation_requests.outputs`` and written by one writer, the ``content_record`` asset — names
each deliverable by what it is, never by a file suffix a reader has to interpret.

No Dagster import: the store, the portal and the API use this module alone.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# --- file names inside a request's folder (POSIX, relative) ---------------------------------
INPUT_DIR = "input"
PORTRAIT_PNG = "input/portrait.png"
VOICE_REFERENCE_WAV = "input/voice_reference.wav"  # the voice to clone, as intake stored it
SCRIPT_TXT = "script/script.txt"
SEGMENTS_JSON = "script/segments.json"
PLAN_JSON = "script/plan.json"
TALKING_HEAD_MP4 = "stitched_mp4/talking_head.mp4"
HLS_PLAYLIST = "hls/index.m3u8"
MUSIC_WAV = "music/music.wav"
MUSIC_M4A = "music/music.m4a"
MUSIC_VIDEO_MP4 = "music_video/music_video.mp4"
FINAL_VIDEO_MP4 = "final_video/final.mp4"
HLS_MASTER = "final_hls/master.m3u8"
CAPTIONS_VTT = "final_video/captions.vtt"
CAPTIONS_SRT = "final_video/captions.srt"
# Dagster's pickled asset outputs of this request (hidden: never served, erased with the folder).
ASSET_OUTPUTS_DIR = ".outputs"


def driving_video_name(container_suffix: str) -> str:
    """``input/driving<suffix>`` for a driving video stored at intake (suffix like ``.mp4``)."""
    return f"{INPUT_DIR}/driving{container_suffix.lower()}"


def is_driving_video_name(uri: str) -> bool:
    """Whether a stored face source (its path or URI) is a driving video — by the name intake
    gave it (:func:`driving_video_name`), not by anything the user chose."""
    return PurePosixPath(uri).name.startswith("driving.")


def image_name(index: int) -> str:
    """``images/image_NN.png`` for the ``index``-th image (0-based)."""
    return f"images/image_{index:02d}.png"


def clip_name(index: int) -> str:
    """``video_clips/clip_NN.mp4`` for the ``index``-th clip (0-based)."""
    return f"video_clips/clip_{index:02d}.mp4"


class RequestOutputs(BaseModel):
    """Every deliverable of one request, by name: file URIs (absolute paths on a local content
    store, ``s3://…`` object URLs on an object store), None or empty when not made.

    Unknown keys in stored JSON are ignored, so a row written by a newer version stays readable.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    script: str | None = Field(default=None, description="The narration as text (UTF-8).")
    talking_head_mp4: str | None = Field(
        default=None, description="The stitched, fast-start talking-head MP4."
    )
    hls_playlist: str | None = Field(
        default=None, description="HLS VOD playlist of the talking head."
    )
    images: list[str] = Field(default_factory=list, description="PNG images, in order.")
    video_clips: list[str] = Field(default_factory=list, description="Short MP4 clips.")
    music: str | None = Field(default=None, description="The music track as AAC (.m4a).")
    music_wav: str | None = Field(default=None, description="The music track as WAV.")
    music_video: str | None = Field(default=None, description="The music video MP4.")
    final_video: str | None = Field(default=None, description="The composed final cut MP4.")
    hls_master: str | None = Field(
        default=None, description="HLS master playlist of the final cut (adaptive ladder)."
    )
    captions_vtt: str | None = Field(default=None, description="Captions as WebVTT.")
    captions_srt: str | None = Field(default=None, description="Captions as SubRip (SRT).")

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> RequestOutputs:
        """The record stored in the database (None → nothing made yet)."""
        return cls.model_validate(raw or {})

    def to_json(self) -> dict[str, Any]:
        """The JSON-able dict stored in the database."""
        return self.model_dump(mode="json")

    def files(self) -> list[str]:
        """Every file URI in the record (for erasure, listings), in field order."""
        found: list[str] = []
        for value in self.model_dump().values():
            if isinstance(value, str):
                found.append(value)
            elif isinstance(value, list):
                found.extend(value)
        return found
