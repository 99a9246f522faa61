"""Small, picklable manifests the assets hand to each other (paths plus measurements)."""

from __future__ import annotations

from dataclasses import dataclass

from avgen_dagster.backends.scene_plan import ScenePlan
from avgen_dagster.media.words import WordTiming
from avgen_dagster.options import RequestOptions


@dataclass(frozen=True)
class RequestSnapshot:
    """The request as it was when its run started (see the ``request`` asset).

    Attributes:
        portrait_path: URI of the face source stored at intake (photo or driving video).
        driving_video: whether that face source is a driving video (else a still photo).
        options: the typed options, parsed at intake.
        attempt: 0 for the first run, +1 per retry.
        voice_reference_path: URI of the voice to clone, as stored at intake (16-bit PCM mono
            WAV); None: the speech backend's own voice.
    """

    request_id: str
    user_id: str
    prompt: str | None
    script: str | None
    portrait_path: str
    driving_video: bool
    options: RequestOptions
    attempt: int = 0
    voice_reference_path: str | None = None


@dataclass(frozen=True)
class ScriptManifest:
    """The narration: full text, its speakable segments in order, and the scene plan (per
    sentence a visual prompt and a b-roll hint; the music mood)."""

    request_id: str
    text: str
    segments: list[str]
    backend: str
    path: str
    plan: ScenePlan | None = None


@dataclass(frozen=True)
class AudioClip:
    """One segment's audio file.

    Attributes:
        path: absolute WAV path.
        duration_s: seconds.
        sample_rate: Hz.
        integrated_lufs: BS.1770-4 integrated loudness, LUFS (None when not measured).
        true_peak_dbtp: BS.1770-4 Annex 2 true peak, dBTP (None when not measured).
        words: when each word of the segment is spoken, seconds from the clip's start (from
            the speech backend's own alignment; ``timed=False`` where it gave none).
    """

    path: str
    duration_s: float
    sample_rate: int
    integrated_lufs: float | None = None
    true_peak_dbtp: float | None = None
    words: tuple[WordTiming, ...] = ()


@dataclass(frozen=True)
class AudioManifest:
    """The audio clips of one request, one per script segment."""

    request_id: str
    clips: list[AudioClip]
    target_lufs: float | None = None


@dataclass(frozen=True)
class VideoSegment:
    """One lip-synced segment: MP4 path, seconds, frame count."""

    path: str
    duration_s: float
    frames: int


@dataclass(frozen=True)
class SegmentsManifest:
    """The lip-synced segments of one request, in script order."""

    request_id: str
    segments: list[VideoSegment]
    fps: float
    backend: str
    audio: str | None = None  # one WAV for all segments (driving video), else one per clip


@dataclass(frozen=True)
class VideoManifest:
    """The stitched, fast-start MP4 and its probe results (seconds)."""

    request_id: str
    path: str
    duration_s: float
    video_duration_s: float
    audio_duration_s: float
    av_drift_s: float
    faststart: bool
    target_lufs: float | None = None  # what the delivered audio is mastered to
    clip_starts_s: tuple[float, ...] = ()  # where each narration clip starts, seconds


@dataclass(frozen=True)
class HlsManifest:
    """The HLS VOD rendition: playlist path and segment files."""

    request_id: str
    playlist: str
    segments: list[str]
    target_duration_s: float
    target_lufs: float | None = None


@dataclass(frozen=True)
class ImagesManifest:
    """The request's images (PNG paths, in order) and how they were made."""

    request_id: str
    paths: list[str]
    seeds: list[int]
    width: int
    height: int
    backend: str
    model: str


@dataclass(frozen=True)
class MusicManifest:
    """The request's music track: WAV and compressed copy, seconds, loudness."""

    request_id: str
    wav: str
    compressed: str
    duration_s: float
    sample_rate: int
    genre: str
    integrated_lufs: float
    true_peak_dbtp: float
    backend: str
    model: str
    target_lufs: float | None = None


@dataclass(frozen=True)
class ClipsManifest:
    """The request's short video clips (MP4 paths, seconds each)."""

    request_id: str
    paths: list[str]
    durations_s: list[float]
    fps: float
    backend: str
    model: str


@dataclass(frozen=True)
class MusicVideoManifest:
    """The request's music video (MP4 path, seconds)."""

    request_id: str
    path: str
    duration_s: float
    target_lufs: float | None = None


@dataclass(frozen=True)
class FinalVideoManifest:
    """The composed final cut and its sidecars (URIs), with the narration's word timings on
    its timeline (what the captions were built from).

    Attributes:
        rung_videos: rung name → a video-only MP4 encoded in the same pass (for the ladder).
        words: the narration's words, seconds on the final video's timeline.
        integrated_lufs / true_peak_dbtp: the delivered file's decoded audio.
    """

    request_id: str
    path: str
    captions_vtt: str
    captions_srt: str
    format: str
    width: int
    height: int
    fps: float
    duration_s: float
    cue_count: int
    words: tuple[WordTiming, ...]
    rung_videos: dict[str, str]
    integrated_lufs: float
    true_peak_dbtp: float
    target_lufs: float


@dataclass(frozen=True)
class FinalHlsManifest:
    """The final cut's HLS ladder: master playlist, each rendition's playlist and segments,
    and the WebVTT subtitles rendition (URIs)."""

    request_id: str
    master: str
    renditions: dict[str, list[str]]  # rung name → [playlist, segment, …]
    subtitles: list[str]  # [playlist, segment, …] (empty without captions)
    target_lufs: float
