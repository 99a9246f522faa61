"""Wav2Lip lip-sync for a still portrait (:class:`Wav2LipLipsync`) and for a driving video.

Per frame (after Prajwal et al. 2020 and the reference ``inference.py``):

1. The face box (MediaPipe landmarks' bounding box, forehead to chin) is padded by
   ``pads = (top, bottom, left, right) = (0, 10, 0, 0)`` px (the reference default, which
   takes in the chin), clipped to the frame and, in a video, smoothed over 5 frames
   (:mod:`avgen_dagster.media.driving_video`).
2. The crop is resized to 96×96, BGR, /255; the network input is the crop with rows 48-95
   zeroed stacked on the unmasked crop (6 channels), plus the frame's 80×16 mel window
   (:mod:`.audio`).
3. Batched inference (``batch_size``; float16 autocast on CUDA by default, bfloat16 on
   request, float32 on CPU). Every batch has exactly ``batch_size`` rows (a short one is
   zero-padded): the network sees a single input shape, because the CPU kernels keep state
   per shape and a driving video's varying face counts per chunk made memory grow with the
   video's length (:meth:`Wav2LipLipsync.predict`).
4. **Paste-back without a visible box**: the 96×96 output is resized to the box, its colours
   matched to the original crop (per-channel mean/std transfer in CIE L*a*b* inside the mouth
   region, E. Reinhard et al., "Color Transfer between Images", IEEE CG&A 21(5), 2001; the
   gain clipped to [0.5, 2]), and blended through a feathered elliptic mouth-region mask
   (:func:`mouth_mask`) that is exactly 0 well inside the box edge: pixels outside it are
   never changed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
import torch

from avgen_dagster.backends.lipsync import even_crop_portrait, frame_count
from avgen_dagster.backends.wav2lip.audio import MEL_STEP, N_MELS, mel_windows, melspectrogram
from avgen_dagster.backends.wav2lip.model import Wav2Lip, load_wav2lip
from avgen_dagster.errors import BackendError, InvalidInputError
from avgen_dagster.media.audio_io import check_sample_rate, require_mono_audio
from avgen_dagster.model_cache import ModelCache

if TYPE_CHECKING:
    from avgen_dagster.media.driving_video import DrivingVideoResult, LoopMode
    from avgen_dagster.media.faces import FaceLandmarker

__all__ = [
    "CHECKPOINT_ENV",
    "DEFAULT_PADS",
    "MODEL_CACHE",
    "Wav2LipLipsync",
    "match_colour",
    "mouth_mask",
    "padded_box",
    "paste_back",
    "resolve_checkpoint",
]

#: Environment variable naming the checkpoint file when none is configured.
CHECKPOINT_ENV = "AVGEN_WAV2LIP_CHECKPOINT"
#: Face-box padding (top, bottom, left, right) in px: the reference inference default.
DEFAULT_PADS = (0, 10, 0, 0)
FACE_SIZE = 96

# Mouth-region mask in the 96×96 face-crop frame: an ellipse (centre, semi-axes) at full
# weight, fading (smoothstep) to exactly 0 at FEATHER times its size. Outer extent
# x 6.4-89.6, y 42.4-93.6: strictly inside the crop, so the crop's edge is never visible.
_MASK_CENTRE = (48.0, 68.0)
_MASK_AXES = (26.0, 16.0)
_MASK_FEATHER = 1.6

Precision = Literal["auto", "fp32", "fp16", "bf16"]
Box = tuple[int, int, int, int]


def resolve_checkpoint(checkpoint: Path | str | None) -> Path:
    """The checkpoint path: ``checkpoint`` if given, else ``$AVGEN_WAV2LIP_CHECKPOINT``.

    Raises:
        BackendError: neither is set.
    """
    if checkpoint is None or str(checkpoint) == "":
        env = os.environ.get(CHECKPOINT_ENV, "")
        if not env:
            raise BackendError(
                f"the wav2lip backend needs a checkpoint: set {CHECKPOINT_ENV} to the path "
                f"of wav2lip.pth or wav2lip_gan.pth (research-only weights, not bundled)"
            )
        checkpoint = env
    return Path(checkpoint).expanduser()


#: Loaded Wav2Lip networks, one per process (36 M parameters; a new checkpoint replaces it).
MODEL_CACHE: ModelCache[Wav2Lip] = ModelCache("wav2lip", max_entries=1)


def _load_cached(path: Path, device: torch.device) -> Wav2Lip:
    """The network of ``path`` on ``device``, keyed by resolved path, mtime, size and device
    (a checkpoint rewritten in place loads again)."""
    try:
        st = path.stat()
    except OSError:
        st = None
    key = (str(path.resolve()), st.st_mtime_ns if st else 0, st.st_size if st else 0, str(device))
    return MODEL_CACHE.get(key, lambda: load_wav2lip(path, device))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def mouth_mask(height: int, width: int) -> np.ndarray:
    """Feathered mouth-region blend mask for a face crop of ``height``×``width`` px.

    Defined in the 96×96 network frame (ellipse centred at (48, 68), semi-axes (26, 16),
    full weight inside, smoothstep fade to exactly 0 at 1.6× the ellipse) and sampled at
    the crop's pixel centres.

    Returns:
        (height, width) float32 in [0, 1]; 0 on and near the crop's border.
    """
    ys = (np.arange(height, dtype=np.float32) + 0.5) * (FACE_SIZE / height)
    xs = (np.arange(width, dtype=np.float32) + 0.5) * (FACE_SIZE / width)
    dy = ((ys - _MASK_CENTRE[1]) / _MASK_AXES[1])[:, None]
    dx = ((xs - _MASK_CENTRE[0]) / _MASK_AXES[0])[None, :]
    d = np.sqrt(dx * dx + dy * dy)
    return (1.0 - _smoothstep((d - 1.0) / (_MASK_FEATHER - 1.0))).astype(np.float32)


def match_colour(src_rgb: np.ndarray, ref_rgb: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer: match ``src``'s L*a*b* mean/std to ``ref``'s in ``region``.

    Args:
        src_rgb, ref_rgb: (h, w, 3) uint8 RGB of the same size.
        region: (h, w) bool, the pixels whose statistics are matched (the mouth region).

    Returns:
        (h, w, 3) uint8 RGB, ``src`` with per-channel gain (std ratio, clipped to [0.5, 2])
        and offset applied in L*a*b*.
    """
    if not region.any():
        return src_rgb
    src = cv2.cvtColor(src_rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    ref = cv2.cvtColor(ref_rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    s, r = src[region], ref[region]
    ms, ss = s.mean(axis=0), s.std(axis=0)
    mr, sr = r.mean(axis=0), r.std(axis=0)
    gain = np.clip(sr / np.maximum(ss, 1e-3), 0.5, 2.0)
    out = (src - ms) * gain + mr
    rgb = cv2.cvtColor(out.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def padded_box(
    box: Sequence[float], frame_shape: tuple[int, ...], pads: Sequence[int] = DEFAULT_PADS
) -> Box | None:
    """Integer crop box (x0, y0, x1, y1) of a face box plus ``pads`` (top, bottom, left, right).

    Returns:
        The box clipped to the frame, or ``None`` when it is smaller than 8×8 px or not
        finite.
    """
    h, w = frame_shape[:2]
    b = [float(v) for v in box]
    if len(b) != 4 or not all(np.isfinite(b)):
        return None
    x0 = max(0, round(b[0]) - pads[2])
    y0 = max(0, round(b[1]) - pads[0])
    x1 = min(w, round(b[2]) + pads[3])
    y1 = min(h, round(b[3]) + pads[1])
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    return x0, y0, x1, y1


def paste_back(
    frame_rgb: np.ndarray, box: Box, face_rgb: np.ndarray, *, colour_match: bool = True
) -> np.ndarray:
    """Blend a generated face crop into a frame through the feathered mouth mask.

    Args:
        frame_rgb: (H, W, 3) uint8 RGB; not modified.
        box: (x0, y0, x1, y1) int crop box inside the frame (from :func:`padded_box`).
        face_rgb: (h, w, 3) uint8 RGB generated crop (96×96 from the network), resized to
            the box with bicubic interpolation.
        colour_match: apply :func:`match_colour` first.

    Returns:
        A new (H, W, 3) uint8 frame; pixels where :func:`mouth_mask` is 0 (all outside the
        box, and the box's border zone) equal ``frame_rgb`` exactly.
    """
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    gen = cv2.resize(face_rgb, (bw, bh), interpolation=cv2.INTER_CUBIC)
    orig = frame_rgb[y0:y1, x0:x1]
    mask = mouth_mask(bh, bw)
    if colour_match:
        gen = match_colour(gen, orig, mask > 0.5)
    m = mask[..., None]
    blend = np.clip(orig * (1.0 - m) + gen * m + 0.5, 0, 255).astype(np.uint8)
    out = frame_rgb.copy()
    np.copyto(out[y0:y1, x0:x1], blend, where=m > 0.0)
    return out


class Wav2LipLipsync:
    """Wav2Lip lip-sync backend (:class:`~avgen_dagster.backends.lipsync.LipsyncBackend`).

    The checkpoint is loaded (strictly) in the constructor, so a missing or wrong file fails
    before any work starts; the network is cached per process (:data:`MODEL_CACHE`: path,
    mtime, size, device).

    Args:
        checkpoint: ``wav2lip.pth`` / ``wav2lip_gan.pth``; default ``$AVGEN_WAV2LIP_CHECKPOINT``.
        fps: frame rate of :meth:`animate`'s frames (a driving video keeps its own).
        batch_size: frames per network batch (the reference uses 128 on a GPU; 16 suits CPUs).
        device: torch device; default CUDA when available, else CPU.
        precision: ``"auto"`` (float16 autocast on CUDA, float32 on CPU), ``"fp32"``,
            ``"fp16"`` or ``"bf16"`` (autocast on CUDA; on CPU only bf16 is honoured).
        pads: face-box padding (top, bottom, left, right), px.
        colour_match: match the generated mouth's colours to the frame (:func:`match_colour`).
        landmarker: face landmarker for portraits and videos; default the shared one.

    Raises:
        BackendError: no checkpoint configured, file missing, unreadable or not Wav2Lip's.
        InvalidInputError: bad fps, batch size or precision.
    """

    name = "wav2lip"

    def __init__(
        self,
        checkpoint: Path | str | None = None,
        *,
        fps: float = 25.0,
        batch_size: int = 16,
        device: str | torch.device | None = None,
        precision: Precision = "auto",
        pads: Sequence[int] = DEFAULT_PADS,
        colour_match: bool = True,
        landmarker: FaceLandmarker | None = None,
    ) -> None:
        if not (np.isfinite(fps) and 1.0 <= float(fps) <= 120.0):
            raise InvalidInputError(f"fps must be within 1-120, got {fps}")
        if not 1 <= int(batch_size) <= 4096:
            raise InvalidInputError(f"batch_size must be within 1-4096, got {batch_size}")
        if precision not in ("auto", "fp32", "fp16", "bf16"):
            raise InvalidInputError(f"precision must be auto/fp32/fp16/bf16, got {precision!r}")
        if len(pads) != 4:
            raise InvalidInputError(f"pads must be (top, bottom, left, right), got {pads!r}")
        self.fps = float(fps)
        self.batch_size = int(batch_size)
        self.device = torch.device(
            device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.precision: Precision = precision
        self.pads = tuple(int(p) for p in pads)
        self.colour_match = bool(colour_match)
        self._landmarker = landmarker
        self.checkpoint = resolve_checkpoint(checkpoint)
        self.model = _load_cached(self.checkpoint, self.device)

    # ------------------------------------------------------------------ network
    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        dev = self.device.type
        if self.precision == "fp32" or (dev != "cuda" and self.precision != "bf16"):
            return contextlib.nullcontext()
        if self.precision == "bf16":
            return torch.autocast(device_type=dev, dtype=torch.bfloat16)
        return torch.autocast(device_type=dev, dtype=torch.float16)

    def predict(self, faces_bgr: np.ndarray, mels: np.ndarray) -> np.ndarray:
        """Run the network on prepared inputs, in batches of exactly ``batch_size``.

        A short last batch is zero-padded to ``batch_size`` (the padding's outputs are
        dropped), so the network only ever sees one input shape. On the CPU, PyTorch's oneDNN
        kernels keep about 60-80 MB of state per distinct batch shape for the life of the
        process: when each chunk of a driving video ran its own 1-16 face frames as one
        batch, that state grew with every new chunk size seen, i.e. with the video's length
        (measured: 16 batch sizes took RSS from 0.46 to 1.42 GB, then 2.05 GB on a second
        pass; one fixed shape stays at 0.51 GB). Per-sample results do not depend on the
        padding (BatchNorm is in eval mode).

        Args:
            faces_bgr: (B, 96, 96, 6) float32 in [0, 1] (masked crop, reference crop; BGR),
                or (B, 96, 96, 3) uint8 BGR crops (masked and stacked here).
            mels: (B, 80, 16) float32 mel windows.

        Returns:
            (B, 96, 96, 3) uint8 BGR generated faces.

        Raises:
            InvalidInputError: shape mismatch.
            BackendError: the network produced non-finite values.
        """
        if faces_bgr.ndim != 4 or faces_bgr.shape[1:3] != (FACE_SIZE, FACE_SIZE):
            raise InvalidInputError(f"faces must be (B, 96, 96, 3|6), got {faces_bgr.shape}")
        if mels.shape != (faces_bgr.shape[0], N_MELS, MEL_STEP):
            raise InvalidInputError(f"mels must be (B, 80, 16), got {mels.shape}")
        n_all, bs = faces_bgr.shape[0], self.batch_size
        out = np.empty((n_all, FACE_SIZE, FACE_SIZE, 3), np.uint8)
        with torch.inference_mode(), self._autocast():
            for s in range(0, n_all, bs):
                n = min(bs, n_all - s)
                fb, mb = faces_bgr[s : s + n], mels[s : s + n]
                if n < bs:  # one input shape only (see above)
                    fb = np.concatenate([fb, np.zeros((bs - n, *fb.shape[1:]), fb.dtype)])
                    mb = np.concatenate([mb, np.zeros((bs - n, *mb.shape[1:]), mb.dtype)])
                f = torch.from_numpy(np.ascontiguousarray(fb))
                f = f.to(self.device, non_blocking=True)
                if f.dtype == torch.uint8:
                    f = f.float().div_(255.0)
                    masked = f.clone()
                    masked[:, FACE_SIZE // 2 :] = 0.0
                    f = torch.cat([masked, f], dim=3)
                x = f.permute(0, 3, 1, 2)
                m = torch.from_numpy(np.ascontiguousarray(mb, dtype=np.float32))
                m = m.to(self.device, non_blocking=True).unsqueeze(1)
                y = self.model(m, x)[:n].float()
                if not torch.isfinite(y).all():
                    raise BackendError("the Wav2Lip network produced NaN/inf (bad checkpoint?)")
                y = (y.clamp_(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1)
                out[s : s + n] = y.cpu().numpy()
        return out

    # ------------------------------------------------------------------ frames
    def lipsync_frames(
        self, frames_rgb: Sequence[np.ndarray], boxes: np.ndarray, mels: np.ndarray
    ) -> list[np.ndarray]:
        """Lip-sync frames whose face boxes are known.

        Args:
            frames_rgb: k frames, each (H, W, 3) uint8 RGB (not modified).
            boxes: (k, 4) float face boxes (x0, y0, x1, y1) in px before padding; rows that
                are not finite (or too small once padded) leave their frame unchanged.
            mels: (k, 80, 16) float32, the frames' mel windows.

        Returns:
            k new (H, W, 3) uint8 RGB frames.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(frames_rgb) != boxes.shape[0] or mels.shape[0] != boxes.shape[0]:
            raise InvalidInputError(
                f"{len(frames_rgb)} frames, {boxes.shape[0]} boxes and {mels.shape[0]} mel "
                f"windows: counts must match"
            )
        pboxes = [padded_box(b, f.shape, self.pads) for f, b in zip(frames_rgb, boxes, strict=True)]
        todo = [i for i, b in enumerate(pboxes) if b is not None]
        out = [frames_rgb[i].copy() if b is None else frames_rgb[i] for i, b in enumerate(pboxes)]
        if not todo:
            return out
        crops = np.empty((len(todo), FACE_SIZE, FACE_SIZE, 3), np.uint8)
        for j, i in enumerate(todo):
            x0, y0, x1, y1 = pboxes[i]  # type: ignore[misc]
            crop = frames_rgb[i][y0:y1, x0:x1]
            interp = cv2.INTER_AREA if min(crop.shape[:2]) > FACE_SIZE else cv2.INTER_LINEAR
            crops[j] = cv2.resize(crop, (FACE_SIZE, FACE_SIZE), interpolation=interp)[..., ::-1]
        gen = self.predict(crops, np.asarray(mels, dtype=np.float32)[todo])
        for j, i in enumerate(todo):
            out[i] = paste_back(
                frames_rgb[i],
                pboxes[i],  # type: ignore[arg-type]
                np.ascontiguousarray(gen[j][..., ::-1]),
                colour_match=self.colour_match,
            )
        return out

    def animate(
        self, portrait_rgb: np.ndarray, audio: np.ndarray, sample_rate: int
    ) -> Iterator[np.ndarray]:
        """Frames of the portrait speaking ``audio`` (see ``LipsyncBackend``).

        Validation, face detection and the mel spectrogram happen in this call; frames are
        generated lazily in batches of ``batch_size``.

        Args:
            portrait_rgb: (H, W, 3) uint8 RGB with one face (H, W >= 16).
            audio: (n,) float mono, full scale ±1.0, n > 0.
            sample_rate: Hz.

        Returns:
            Iterator of ``max(1, round(n / sample_rate · fps))`` frames, each a new
            (H - H % 2, W - W % 2, 3) uint8 RGB array.

        Raises:
            NoFaceError: no face in the portrait.
            InvalidInputError: bad portrait, empty audio, bad shape/dtype or sample rate.
            BackendError: the landmarker cannot be loaded; non-finite network output.
        """
        from avgen_dagster.media.faces import require_face

        portrait = even_crop_portrait(portrait_rgb)
        pcm = require_mono_audio(audio)
        sr = check_sample_rate(sample_rate)
        n = frame_count(pcm.size, sr, self.fps)
        lm = require_face(portrait, "the portrait", self._landmarker)
        mel = melspectrogram(pcm, sr)
        return self._animate_iter(portrait, np.asarray(lm.bbox, np.float64), mel, n)

    def _animate_iter(
        self, portrait: np.ndarray, box: np.ndarray, mel: np.ndarray, n: int
    ) -> Iterator[np.ndarray]:
        step = self.batch_size
        for s in range(0, n, step):
            k = min(step, n - s)
            mels = mel_windows(mel, Fraction(self.fps).limit_denominator(1001), np.arange(s, s + k))
            yield from self.lipsync_frames([portrait] * k, np.tile(box, (k, 1)), mels)

    def animate_video(
        self,
        video_path: Path | str,
        audio: np.ndarray,
        sample_rate: int,
        output: Path | str,
        *,
        mode: LoopMode = "loop",
        chunk_frames: int | None = None,
        crf: int = 18,
        preset: str = "veryfast",
    ) -> DrivingVideoResult:
        """Lip-sync a driving video to ``audio`` and encode it (streaming, in chunks).

        Faces are detected on every frame and grouped into face / no-face segments; face
        segments are lip-synced, no-face segments pass through; the video loops, ping-pongs
        or is trimmed to the audio's length, keeping its own frame rate
        (:func:`avgen_dagster.media.driving_video.render_driving_video`). Memory does not
        grow with the video's length: frames are held one chunk at a time, the scan keeps
        41 bytes a frame, and the network runs one batch shape; what does scale with length
        is the audio (the caller's array, its mel spectrogram, the encoder's 48 kHz copy:
        ~90 MB for 5 minutes at 22.05 kHz).

        Args:
            video_path: the driving video (any format FFmpeg reads).
            audio: (n,) float mono, full scale ±1.0.
            sample_rate: Hz.
            output: the ``.mp4`` to write (atomically).
            mode: ``"loop"``, ``"pingpong"`` or ``"trim"`` (see ``source_indices``).
            chunk_frames: frames decoded/processed/encoded per chunk; default
                ``max(16, batch_size)``.
            crf, preset: libx264 settings.

        Returns:
            :class:`~avgen_dagster.media.driving_video.DrivingVideoResult`.

        Raises:
            InvalidInputError: bad audio or mode.
            MediaError: unreadable video or encode failure.
            BackendError: non-finite network output.
        """
        from avgen_dagster.media.driving_video import render_driving_video, scan_driving_video
        from avgen_dagster.media.face_track import FaceTracker

        pcm = require_mono_audio(audio)
        sr = check_sample_rate(sample_rate)
        mel = melspectrogram(pcm, sr)
        scan = scan_driving_video(video_path, tracker=FaceTracker(self._landmarker))

        def process(
            frames: list[np.ndarray], boxes: np.ndarray, out_idx: np.ndarray
        ) -> list[np.ndarray]:
            return self.lipsync_frames(frames, boxes, mel_windows(mel, scan.fps, out_idx))

        return render_driving_video(
            video_path,
            pcm,
            sr,
            output,
            process=process,
            mode=mode,
            chunk_frames=chunk_frames or max(16, self.batch_size),
            crf=crf,
            preset=preset,
            scan=scan,
        )
