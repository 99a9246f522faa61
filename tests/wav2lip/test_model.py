"""Wav2Lip network and checkpoint loading against the published state-dict layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avgen_dagster.backends.lipsync import (
    LandmarkLipsync,
    LipsyncBackend,
    VideoLipsyncBackend,
    frame_count,
)
from avgen_dagster.backends.wav2lip.inference import CHECKPOINT_ENV, MODEL_CACHE, Wav2LipLipsync
from avgen_dagster.backends.wav2lip.model import Wav2Lip, load_wav2lip, read_checkpoint_state_dict
from avgen_dagster.devtools.tiny_models import synthetic_voice
from avgen_dagster.errors import BackendError
from avgen_dagster.media.faces import load_image_rgb

from .conftest import SPEC_TSV

PORTRAIT = Path(__file__).resolve().parents[2] / "samples" / "portrait.png"


def _spec() -> dict[str, tuple[tuple[int, ...], str]]:
    rows = [line.split("\t") for line in SPEC_TSV.read_text().splitlines()[1:] if line.strip()]
    out = {}
    for key, shape, dtype in rows:
        dims = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
        out[key] = (dims, dtype)
    return out


def test_checkpoint_loads_and_matches_spec(checkpoint: Path) -> None:
    raw = torch.load(checkpoint, weights_only=True)
    assert set(raw) >= {"state_dict"}
    assert all(k.startswith("module.") for k in raw["state_dict"])
    spec = _spec()
    assert len(spec) == 352
    backend = Wav2LipLipsync(checkpoint, batch_size=8)
    state = backend.model.state_dict()
    assert set(state) == set(spec)
    for key, (shape, dtype) in spec.items():
        assert tuple(state[key].shape) == shape, key
        assert str(state[key].dtype).removeprefix("torch.") == dtype, key
    n_params = sum(p.numel() for p in backend.model.parameters())
    assert round(n_params / 1e6, 1) == 36.3
    # the loaded weights are the saved ones (prefix stripped, nothing re-initialised)
    saved = read_checkpoint_state_dict(checkpoint)
    assert torch.equal(saved["output_block.1.weight"], state["output_block.1.weight"])
    assert isinstance(backend, LipsyncBackend) and backend.name == "wav2lip"
    assert isinstance(backend, VideoLipsyncBackend)  # it takes driving videos
    assert not isinstance(LandmarkLipsync(), VideoLipsyncBackend)  # still portraits only


def test_checkpoint_loads_once_per_process(checkpoint: Path, tmp_path: Path) -> None:
    first = Wav2LipLipsync(checkpoint, device="cpu")
    before = MODEL_CACHE.load_count
    again = Wav2LipLipsync(checkpoint, device="cpu", batch_size=4)
    assert again.model is first.model and MODEL_CACHE.load_count == before
    other = tmp_path / "other.pth"
    other.write_bytes(checkpoint.read_bytes())
    replaced = Wav2LipLipsync(other, device="cpu")  # one network per process: replaces it
    assert MODEL_CACHE.load_count == before + 1 and len(MODEL_CACHE) == 1
    assert replaced.model is not first.model


def test_inference_on_portrait(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CHECKPOINT_ENV, str(checkpoint))
    backend = Wav2LipLipsync(fps=25.0, batch_size=16)  # path from the environment
    portrait = load_image_rgb(PORTRAIT)
    sr = 22050
    audio = synthetic_voice(1.1, sr)
    frames = list(backend.animate(portrait, audio, sr))
    n = frame_count(audio.size, sr, 25.0)
    assert len(frames) == n == 28
    assert abs(len(frames) / backend.fps - audio.size / sr) <= 0.5 / backend.fps + 1e-9
    stack = np.stack(frames)
    assert stack.shape == (n, 512, 512, 3) and stack.dtype == np.uint8
    changed = np.any(stack != portrait[None], axis=(0, 3))
    ys, xs = np.nonzero(changed)
    # only the lower face changed: inside the face box (landmarks x 180-270, y 72-177 + pads)
    assert xs.min() >= 170 and xs.max() <= 280 and ys.min() >= 100 and ys.max() <= 190
    # network outputs are finite, in [0, 1], and depend on the audio window
    faces = torch.rand(2, 6, 96, 96)
    mels = torch.stack([torch.full((1, 80, 16), -4.0), torch.full((1, 80, 16), 3.0)])
    with torch.inference_mode():
        y = backend.model(mels, faces)
        y_same = backend.model(mels[:1].expand(2, -1, -1, -1), faces)
    assert y.shape == (2, 3, 96, 96) and torch.isfinite(y).all()
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    # (default-initialised random weights attenuate the audio path through 13 layers, so the
    # effect on the image is tiny, but it is there)
    assert float((y - y_same).abs().max()) > 0.0
    with torch.inference_mode():
        emb = backend.model.audio_encoder(mels)
    assert emb.shape == (2, 512, 1, 1) and float((emb[0] - emb[1]).abs().max()) > 1e-3


def test_batch_size_does_not_change_output(checkpoint: Path) -> None:
    rng = np.random.default_rng(1)
    faces = rng.integers(0, 256, (5, 96, 96, 3), dtype=np.uint8)
    mels = rng.uniform(-4, 4, (5, 80, 16)).astype(np.float32)
    a = Wav2LipLipsync(checkpoint, batch_size=2).predict(faces, mels)
    b = Wav2LipLipsync(checkpoint, batch_size=5).predict(faces, mels)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_missing_or_wrong_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoint: Path
) -> None:
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    with pytest.raises(BackendError, match=CHECKPOINT_ENV):
        Wav2LipLipsync()
    missing = tmp_path / "nope.pth"
    with pytest.raises(BackendError, match=r"not found: .*nope\.pth"):
        Wav2LipLipsync(missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(BackendError, match=r"garbage\.pth"):
        load_wav2lip(garbage)
    # a different network (e.g. the SyncNet expert) is named with its first mismatching keys
    other = tmp_path / "other.pth"
    state = {
        "output_block.1.weight": torch.zeros(3, 32, 3, 3),
        "face_encoder_blocks.0.0.conv_block.0.weight": torch.zeros(16, 6, 7, 7),
    }
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, other)
    with pytest.raises(BackendError) as info:
        Wav2LipLipsync(other)
    msg = str(info.value)
    assert "other.pth" in msg and "missing face_encoder_blocks.0.0.conv_block.0.bias" in msg
    assert "(and 346 more)" in msg
    assert msg.split(": ", 1)[1].startswith("output_block.1.weight has shape (3, 32, 3, 3)")
    # a bare state dict (no wrapper, no prefix) loads too
    bare = tmp_path / "bare.pth"
    torch.save(read_checkpoint_state_dict(checkpoint), bare)
    assert isinstance(load_wav2lip(bare), Wav2Lip)
