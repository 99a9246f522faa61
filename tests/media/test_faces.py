"""Tests of avgen_dagster.media.faces on the sample portrait and synthetic images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avgen_dagster.errors import InvalidInputError, NoFaceError
from avgen_dagster.media.faces import (
    LANDMARKER_CACHE,
    FaceLandmarker,
    FaceLandmarks,
    default_landmarker,
    landmarker_model_path,
    load_image_rgb,
    require_face,
)

PORTRAIT = Path(__file__).resolve().parents[2] / "samples" / "portrait.png"


@pytest.fixture(scope="module")
def landmarker() -> Iterator[FaceLandmarker]:
    lm = FaceLandmarker()
    yield lm
    lm.close()


def test_model_path_is_the_task_file() -> None:
    path = landmarker_model_path()
    assert path.name == "face_landmarker.task"
    assert path.stat().st_size > 1_000_000  # 3.7 MB model bundle, not a pointer file


def test_detect_sample_portrait(landmarker: FaceLandmarker) -> None:
    img = load_image_rgb(PORTRAIT)
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
    face = landmarker.detect(img)
    assert isinstance(face, FaceLandmarks)
    pts = face.points
    assert pts.shape == (478, 2) and pts.dtype == np.float32
    assert np.all((pts >= 0) & (pts < 512))
    x0, _, _, y1 = face.bbox
    assert 60 < face.width < 200 and 60 < face.height < 200
    # anatomy: eyes above the nose tip above the mouth above the chin
    assert pts[159, 1] < pts[1, 1] < pts[13, 1] < pts[152, 1]
    # the subject's right mouth corner (61) is left of her left corner (291) in the image
    assert pts[61, 0] < pts[291, 0]
    assert x0 <= pts[:, 0].min() + 1e-3 and y1 >= pts[:, 1].max() - 1e-3
    assert "jawOpen" in face.blendshapes and 0.0 <= face.blendshapes["jawOpen"] <= 1.0
    # she smiles broadly in the photo
    assert face.blendshapes["mouthSmileLeft"] > 0.3


def test_no_face_on_gradient(landmarker: FaceLandmarker) -> None:
    grad = np.tile(np.linspace(0, 255, 256, dtype=np.uint8)[None, :, None], (256, 1, 3))
    assert landmarker.detect(grad) is None
    with pytest.raises(NoFaceError, match=r"no face found in gradient\.png"):
        require_face(grad, "gradient.png", landmarker)


def test_detect_rejects_bad_arrays(landmarker: FaceLandmarker) -> None:
    with pytest.raises(InvalidInputError, match="RGB uint8"):
        landmarker.detect(np.zeros((64, 64), np.uint8))
    with pytest.raises(InvalidInputError, match="RGB uint8"):
        landmarker.detect(np.zeros((64, 64, 3), np.float32))


def test_load_image_missing_and_corrupt(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        load_image_rgb(tmp_path / "nope.png")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    with pytest.raises(InvalidInputError, match=r"broken\.jpg"):
        load_image_rgb(bad)
    truncated = tmp_path / "half.png"
    truncated.write_bytes(PORTRAIT.read_bytes()[:2000])
    with pytest.raises(InvalidInputError, match=r"half\.png"):
        load_image_rgb(truncated)


def test_load_image_converts_and_applies_exif(tmp_path: Path) -> None:
    # RGBA -> RGB
    rgba = Image.new("RGBA", (40, 20), (10, 20, 30, 128))
    rgba.save(tmp_path / "a.png")
    arr = load_image_rgb(tmp_path / "a.png")
    assert arr.shape == (20, 40, 3) and arr.dtype == np.uint8
    assert tuple(arr[0, 0]) == (10, 20, 30)
    # EXIF orientation 6 (rotate 90 CW to display): stored 40x20 -> shown 20x40
    img = Image.new("RGB", (40, 20), (200, 0, 0))
    img.paste((0, 0, 200), (0, 0, 10, 20))  # blue band on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    shown = load_image_rgb(tmp_path / "rot.jpg")
    assert shown.shape == (40, 20, 3)
    # after a 90 degree clockwise turn the stored left edge is at the top
    assert shown[2, 10, 2] > 150 and shown[-3, 10, 0] > 150


def test_default_landmarker_loads_once_per_process() -> None:
    shared = default_landmarker()
    loads = LANDMARKER_CACHE.load_count
    assert default_landmarker() is shared and LANDMARKER_CACHE.load_count == loads
    assert require_face(load_image_rgb(PORTRAIT), "the portrait").points.shape == (478, 2)
    assert LANDMARKER_CACHE.load_count == loads  # require_face used the shared one
