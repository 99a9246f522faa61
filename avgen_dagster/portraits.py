"""The face source of a request, as uploaded: a portrait photo or a driving video.

One set of formats and limits for every entry point (CLI, portal, HTTP API), checked from the
file's content (never its name) before anything is decoded in full:

* a **photo**: PNG, JPEG or WebP, not animated, at most :data:`MAX_PHOTO_BYTES` and
  :data:`MAX_PHOTO_PIXELS` (checked from the header, so a 20000×20000 "decompression bomb" is
  refused before a pixel is decoded); stored re-encoded as PNG with its EXIF orientation applied;
* a **driving video**: MP4/MOV or Matroska/WebM with a video stream, at most
  :data:`MAX_VIDEO_BYTES`, :data:`MAX_VIDEO_SECONDS` and :data:`MAX_VIDEO_PIXELS` per frame;
  stored as uploaded under a name of its container's kind.

Both must show a face (MediaPipe's landmarker; for a video, in at least one of
:data:`VIDEO_FACE_SAMPLES` frames spread over it). Every refusal is an
:class:`~avgen_dagster.errors.InvalidInputError` naming the file and the problem. No Dagster.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from avgen_dagster.errors import InvalidInputError, NoFaceError

MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_PHOTO_PIXELS = 40_000_000
PHOTO_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_VIDEO_BYTES = 200 * 1024 * 1024
MAX_VIDEO_SECONDS = 600.0
MAX_VIDEO_PIXELS = 3840 * 2160
# FFmpeg demuxer names → the suffix a stored driving video gets.
VIDEO_CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2": ".mp4", "matroska,webm": ".mkv"}
VIDEO_FACE_SAMPLES = 8


@dataclass(frozen=True)
class Upload:
    """A file as a user handed it in: its name (for messages only) and its bytes."""

    name: str
    data: bytes

    @classmethod
    def from_path(
        cls,
        path: Path | str,
        *,
        kind: str = "portrait",
        max_bytes: int = MAX_VIDEO_BYTES,
        limit_text: str | None = None,
    ) -> Upload:
        """Read ``path``, refusing a missing file or one over ``max_bytes`` before reading.

        Args:
            kind: what the file is, for messages (``"portrait"``, ``"voice reference"``).
            max_bytes: the largest file accepted, bytes (default: a portrait's largest kind,
                a driving video).
            limit_text: the limit as the message states it (default: a portrait's limits).

        Raises:
            InvalidInputError: missing, not a regular file, or over ``max_bytes``.
        """
        path = Path(path)
        if not path.is_file():
            raise InvalidInputError(f"{kind} {str(path)!r} does not exist")
        size = path.stat().st_size
        if size > max_bytes:
            limit_text = limit_text or (
                f"the limit is {MAX_PHOTO_BYTES / 1e6:.0f} MB for a photo, "
                f"{MAX_VIDEO_BYTES / 1e6:.0f} MB for a driving video"
            )
            raise InvalidInputError(f"{kind} {path.name!r} is {size / 1e6:.1f} MB; {limit_text}")
        return cls(path.name, path.read_bytes())


@dataclass(frozen=True)
class FaceSource:
    """A checked face source, ready to store.

    Attributes:
        kind: ``"photo"`` or ``"video"``.
        suffix: ``.png`` (photos are re-encoded) or the video container's suffix.
        data: the bytes to store (PNG for a photo; the upload for a video).
        width: pixels. height: pixels.
        duration_s: seconds (0.0 for a photo).
    """

    kind: str
    suffix: str
    data: bytes
    width: int
    height: int
    duration_s: float = 0.0


def check_face_source(upload: Upload) -> FaceSource:
    """Check an uploaded photo or driving video and normalise it for storage.

    Raises:
        InvalidInputError: empty, too large, an unsupported or animated format, corrupt, too
            many pixels, too long, no video stream — each naming the file.
        NoFaceError: no face found.
    """
    if not upload.data:
        raise InvalidInputError(f"portrait {upload.name!r} is empty")
    try:
        image = Image.open(io.BytesIO(upload.data))
    except Image.DecompressionBombError as exc:
        raise InvalidInputError(
            f"portrait {upload.name!r} has too many pixels; the limit is "
            f"{MAX_PHOTO_PIXELS / 1e6:.0f} megapixels"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return _check_video(upload)
    with image:
        return _check_photo(upload, image)


def _check_photo(upload: Upload, image: Image.Image) -> FaceSource:
    name = upload.name
    if len(upload.data) > MAX_PHOTO_BYTES:
        raise InvalidInputError(
            f"portrait {name!r} is {len(upload.data) / 1e6:.1f} MB; the limit is "
            f"{MAX_PHOTO_BYTES / 1e6:.0f} MB"
        )
    if image.format not in PHOTO_FORMATS:
        raise InvalidInputError(
            f"portrait {name!r} is {image.format or 'an unknown format'}; use PNG, JPEG or WebP"
        )
    if getattr(image, "is_animated", False):
        raise InvalidInputError(
            f"portrait {name!r} is an animated {image.format}; use a still photo (or a video "
            "file as a driving video)"
        )
    pixels = image.width * image.height
    if pixels > MAX_PHOTO_PIXELS:
        raise InvalidInputError(
            f"portrait {name!r} is {image.width}x{image.height} ({pixels / 1e6:.0f} megapixels); "
            f"the limit is {MAX_PHOTO_PIXELS / 1e6:.0f} megapixels"
        )
    try:
        rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.uint8).copy()
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInputError(f"portrait {name!r} is not a readable image") from exc
    _require_face([rgb], name)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return FaceSource("photo", ".png", out.getvalue(), rgb.shape[1], rgb.shape[0])


def _check_video(upload: Upload) -> FaceSource:
    import av

    name = upload.name
    if len(upload.data) > MAX_VIDEO_BYTES:
        raise InvalidInputError(
            f"driving video {name!r} is {len(upload.data) / 1e6:.1f} MB; the limit is "
            f"{MAX_VIDEO_BYTES / 1e6:.0f} MB"
        )
    # PyAV/FFmpeg probe a real file most reliably (seeking MP4s whose index is at the end).
    with tempfile.NamedTemporaryFile(suffix=".upload") as tmp:
        tmp.write(upload.data)
        tmp.flush()
        try:
            with av.open(tmp.name) as container:
                suffix = VIDEO_CONTAINERS.get(container.format.name)
                if suffix is None or not container.streams.video:
                    raise InvalidInputError(
                        f"portrait {name!r} is neither a PNG/JPEG/WebP photo nor an "
                        "MP4/MOV/MKV/WebM video"
                    )
                stream = container.streams.video[0]
                width, height = stream.codec_context.width, stream.codec_context.height
                duration = _duration_s(container, stream)
                _check_video_size(name, width, height, duration)
                frames = _sample_frames(container, stream, duration)
        except av.FFmpegError as exc:
            raise InvalidInputError(
                f"portrait {name!r} is not a readable image or video ({exc.strerror or exc})"
            ) from exc
    if not frames:
        raise InvalidInputError(f"driving video {name!r} has no decodable frames")
    _require_face(frames, name)
    return FaceSource("video", suffix, upload.data, width, height, duration)


def _duration_s(container: object, stream: object) -> float:
    if getattr(stream, "duration", None) and getattr(stream, "time_base", None):
        return float(stream.duration * stream.time_base)  # type: ignore[attr-defined]
    duration = getattr(container, "duration", None)
    return float(duration) / 1e6 if duration else 0.0


def _check_video_size(name: str, width: int, height: int, duration: float) -> None:
    if width * height > MAX_VIDEO_PIXELS:
        raise InvalidInputError(
            f"driving video {name!r} is {width}x{height}; the limit is 3840x2160 (4K UHD)"
        )
    if duration > MAX_VIDEO_SECONDS:
        raise InvalidInputError(
            f"driving video {name!r} is {duration:.0f} s long; the limit is "
            f"{MAX_VIDEO_SECONDS:.0f} s"
        )


def _sample_frames(container: object, stream: object, duration: float) -> list[np.ndarray]:
    """Up to :data:`VIDEO_FACE_SAMPLES` RGB frames spread over the video (seek + decode one)."""
    frames: list[np.ndarray] = []
    times = np.linspace(0.0, max(duration - 0.1, 0.0), VIDEO_FACE_SAMPLES)
    for t in times:
        try:
            container.seek(int(t * 1e6))  # type: ignore[attr-defined]
            frame = next(container.decode(stream))  # type: ignore[attr-defined]
        except (StopIteration, OSError, ValueError):
            continue
        frames.append(frame.to_ndarray(format="rgb24"))
    return frames


def _require_face(frames: list[np.ndarray], name: str) -> None:
    from avgen_dagster.media.faces import require_face

    last: NoFaceError | None = None
    for frame in frames:
        try:
            require_face(frame, name)
            return
        except NoFaceError as exc:
            last = exc
    assert last is not None
    raise last
