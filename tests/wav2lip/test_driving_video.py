"""Driving video: face / no-face segments, loop modes, streaming render, audio sync."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from avgen_dagster.backends.wav2lip.inference import Wav2LipLipsync
from avgen_dagster.devtools.tiny_models import synthetic_voice
from avgen_dagster.media.driving_video import (
    iter_driving_frames,
    render_driving_video,
    scan_driving_video,
    source_indices,
)
from avgen_dagster.media.face_track import FaceSegment, segment_faces
from avgen_dagster.media.probe import probe_media
from avgen_dagster.media.video_io import encode_segment_mp4, read_video_frames

PORTRAIT = Path(__file__).resolve().parents[2] / "samples" / "portrait.png"


def test_segment_faces_hysteresis() -> None:
    d = np.array([1] * 10 + [0, 0] + [1] * 10 + [0] * 8 + [1] * 3 + [0] * 5 + [1] * 8, bool)
    segs = segment_faces(d, max_gap=4, min_face_frames=6)
    # a 2-frame dropout does not split; a 3-frame flash is not a face segment
    assert segs == [FaceSegment(0, 22, True), FaceSegment(22, 38, False), FaceSegment(38, 46, True)]
    assert segment_faces(np.zeros(5, bool)) == [FaceSegment(0, 5, False)]


def test_source_indices_modes() -> None:
    j = np.arange(10)
    assert source_indices(j, 4, "loop").tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert source_indices(j, 4, "pingpong").tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert source_indices(j, 4, "trim").tolist() == [0, 1, 2, 3, 3, 3, 3, 3, 3, 3]
    assert source_indices(j, 1, "pingpong").tolist() == [0] * 10


def test_face_and_no_face_segments(driving_video: Path, checkpoint: Path) -> None:
    scan = scan_driving_video(driving_video)
    assert scan.n_frames == 55 and scan.fps == 25 and (scan.width, scan.height) == (256, 256)
    kinds = [s.face for s in scan.segments]
    assert kinds == [True, False, True]
    assert abs(scan.segments[0].stop - 20) <= 2 and abs(scan.segments[1].stop - 35) <= 2
    assert np.isfinite(scan.boxes[scan.face_frames]).all()
    assert np.isnan(scan.boxes[~scan.face_frames]).all()

    backend = Wav2LipLipsync(checkpoint, batch_size=16)
    mel_fps = scan.fps
    from avgen_dagster.backends.wav2lip.audio import mel_windows, melspectrogram

    mel = melspectrogram(synthetic_voice(55 / 25, 16000), 16000)

    def process(frames: list, boxes: np.ndarray, idx: np.ndarray) -> list:
        return backend.lipsync_frames(frames, boxes, mel_windows(mel, mel_fps, idx))

    plain = list(iter_driving_frames(scan, 55, mode="trim", chunk_frames=16))
    synced = list(iter_driving_frames(scan, 55, mode="trim", process=process, chunk_frames=16))
    assert len(plain) == len(synced) == 55  # no frame lost or duplicated
    decoded = list(read_video_frames(driving_video))
    assert all(np.array_equal(a, b) for a, b in zip(plain, decoded, strict=True))
    face = scan.face_frames
    for i in range(55):
        same = np.array_equal(plain[i], synced[i])
        assert same != face[i], i  # face frames altered, no-face frames passed through
    # only the lower face changed in a face frame
    diff = np.any(plain[5] != synced[5], axis=2)
    ys, xs = np.nonzero(diff)
    box = scan.boxes[5]
    assert xs.min() >= box[0] - 1 and xs.max() <= box[2] + 1
    assert ys.min() >= 0.5 * (box[1] + box[3]) - 0.2 * (box[3] - box[1])


def test_animate_video_end_to_end(driving_video: Path, checkpoint: Path, tmp_path: Path) -> None:
    backend = Wav2LipLipsync(checkpoint, batch_size=16)
    sr = 22050
    audio = synthetic_voice(1.5, sr)
    res = backend.animate_video(driving_video, audio, sr, tmp_path / "out.mp4", mode="pingpong")
    assert res.n_frames == round(1.5 * 25) and res.source_frames == 55
    frames = list(read_video_frames(res.output))
    assert len(frames) == res.n_frames and frames[0].shape == (256, 256, 3)
    assert not any(np.isnan(f).any() for f in frames[:1])
    info = probe_media(res.output)
    assert abs(info.video.duration_s - 1.5) <= 1 / 25
    assert abs(info.audio.duration_s - 1.5) <= 1 / 25


@pytest.fixture(scope="module")
def counter_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[float, Path]:
    """13-frame 64 px videos whose frame k is uniformly grey at level 40 + 14 k."""
    root = tmp_path_factory.mktemp("cnt")
    out = {}
    for fps in (25, 29.97, 30):
        frames = [np.full((64, 64, 3), 40 + 14 * k, np.uint8) for k in range(13)]
        out[fps] = encode_segment_mp4(
            frames, fps, np.zeros(1, np.float32), 16000, root / f"c{fps}.mp4", crf=10
        )
    return out


@pytest.mark.parametrize("fps", [25, 29.97, 30])
@pytest.mark.parametrize("mode", ["loop", "pingpong", "trim"])
def test_sync_and_order(counter_videos: dict, fps: float, mode: str, tmp_path: Path) -> None:
    sr = 16000
    seconds = 1.37  # longer than the 13-frame driving video: loops / holds
    audio = synthetic_voice(seconds, sr)
    res = render_driving_video(
        counter_videos[fps], audio, sr, tmp_path / "o.mp4", mode=mode, chunk_frames=8
    )
    exact = Fraction(30000, 1001) if fps == 29.97 else Fraction(fps)
    assert res.fps == exact and res.n_frames == round(seconds * exact)
    assert abs(res.duration_s - seconds) <= 0.5 / float(exact) + 1e-9
    info = probe_media(res.output)
    assert abs(info.video.duration_s - seconds) <= 1 / float(exact)
    assert abs(info.audio.duration_s - seconds) <= 1 / float(exact)
    levels = [float(f.mean()) for f in read_video_frames(res.output)]
    assert len(levels) == res.n_frames
    expected = 40 + 14 * source_indices(np.arange(res.n_frames), 13, mode)  # type: ignore[arg-type]
    assert np.abs(np.array(levels) - expected).max() < 4.0
