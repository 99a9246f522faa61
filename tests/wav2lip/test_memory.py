"""Memory regressions of the driving-video path (issue 6: RSS must not grow with length).

The cause found: every distinct batch shape the CPU network saw kept ~60-80 MB of oneDNN
state for the life of the process, and a driving video's chunks ran 1-16 face frames as one
batch, so memory grew as new chunk sizes turned up. ``predict`` now pads every batch to
``batch_size``. These tests are cheap (no timing assertions).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from avgen_dagster.backends.wav2lip.inference import Wav2LipLipsync
from avgen_dagster.media.driving_video import scan_driving_video

REPO = Path(__file__).resolve().parents[2]


class _ShapeRecorder:
    """Stands in for the network on one backend instance, recording its input shapes."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def __call__(self, mel: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        self.shapes.append((tuple(mel.shape), tuple(face.shape)))
        return self.model(mel, face)


def test_predict_runs_one_batch_shape(checkpoint: Path) -> None:
    rng = np.random.default_rng(2)
    faces = rng.integers(0, 256, (7, 96, 96, 3), dtype=np.uint8)
    mels = rng.uniform(-4, 4, (7, 80, 16)).astype(np.float32)
    backend = Wav2LipLipsync(checkpoint, batch_size=4)
    rec = _ShapeRecorder(backend.model)
    backend.model = rec  # type: ignore[assignment]  # this instance only; the cache is untouched
    outs = [backend.predict(faces[:k], mels[:k]) for k in (1, 3, 4, 7)]
    assert [o.shape[0] for o in outs] == [1, 3, 4, 7]
    assert set(rec.shapes) == {((4, 1, 80, 16), (4, 6, 96, 96))}
    # padding does not change a frame's result: frame 0 alone, in a batch of 3, of 4, of 7
    for o in outs[1:]:
        assert np.abs(o[0].astype(int) - outs[0][0].astype(int)).max() <= 1
    assert np.abs(outs[3][:3].astype(int) - outs[1].astype(int)).max() <= 1


def test_scan_keeps_compact_per_frame_arrays(driving_video: Path) -> None:
    scan = scan_driving_video(driving_video)
    n = scan.n_frames
    assert n == 55
    assert scan.pts is not None and scan.pts.dtype == np.int64 and scan.pts.shape == (n,)
    assert scan.detected.dtype == bool and scan.detected.shape == (n,)
    assert scan.boxes.dtype == np.float64 and scan.boxes.shape == (n, 4)
    # 41 bytes a frame, owned (not views into a larger growable buffer)
    assert scan.pts.nbytes + scan.detected.nbytes + scan.boxes.nbytes == 41 * n
    assert scan.pts.base is None and scan.boxes.base is None


_RSS_SCRIPT = textwrap.dedent(
    """
    import ctypes
    import sys
    import numpy as np
    import torch
    from avgen_dagster.backends.wav2lip.inference import Wav2LipLipsync

    def rss_mb():
        # Free heap pages go back to the system first: without this, what glibc happens to
        # keep moves RSS by -31..+36 MB between identical runs (measured), hiding or faking
        # a leak; live allocations (a cache of one primitive per shape) stay counted.
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024

    torch.set_num_threads(1)
    backend = Wav2LipLipsync(sys.argv[1], batch_size=8, device="cpu")
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (8, 96, 96, 3), dtype=np.uint8)
    mels = rng.uniform(-4, 4, (8, 80, 16)).astype(np.float32)
    backend.predict(faces, mels)
    before = rss_mb()
    for k in (1, 3, 5, 7, 3):  # face frames per chunk vary like this in a driving video
        backend.predict(faces[:k], mels[:k])
    print(rss_mb() - before)
    """
)


def test_rss_flat_over_varying_face_counts(checkpoint: Path) -> None:
    """Chunks with 1-7 face frames must not each leave memory behind (fresh process)."""
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(checkpoint)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    growth_mb = float(proc.stdout.strip().splitlines()[-1])
    # one shape: 0 MB measured; before the fix (one shape per count) this grew by 77 MB
    assert growth_mb < 30.0, f"RSS grew by {growth_mb:.0f} MB over varying face counts"
