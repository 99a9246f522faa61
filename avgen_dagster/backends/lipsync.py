"""Lip-sync backends: animate a still portrait's mouth from speech audio.

:class:`LipsyncBackend` is the protocol every backend follows (the embedded
:class:`LandmarkLipsync` here; Wav2Lip in production). A backend yields RGB uint8 frames of
the portrait's size (sides made even, as H.264 4:2:0 needs, by cropping at most one pixel
row/column) and exactly ``max(1, round(len(audio) / sample_rate * fps))`` frames, so the
video lasts as long as the audio (to within half a frame).

:class:`LandmarkLipsync` is landmark-driven 2-D animation, no neural network:

1. **Landmarks**, once per portrait (cached by content hash): MediaPipe Face Landmarker,
   478 points (:mod:`avgen_dagster.media.faces`).
2. **Mouth opening per frame** from the audio: RMS level in dB of a Hann window centred on
   each frame (length 1.5 frame periods), a noise gate (absolute -55 dBFS and 30 dB below the
   clip's 95th-percentile frame level), mapped linearly from the gate to that reference level
   onto [0, 1], then smoothed by an attack/release envelope follower (time constants 15 ms /
   70 ms, the usual one-pole "ballistics" of level meters and compressors, e.g. Giannoulis,
   Massberg & Reiss 2012, "Digital dynamic range compressor design", JAES 60(6)), which
   snaps to exactly 0 once it falls under 0.02 so silence means a closed mouth. The lip
   **width** follows the spectral centroid (100 Hz-5 kHz) relative to the clip's median:
   front vowels (/i/, /e/, high centroid) spread the lips, back rounded vowels (/u/, /o/,
   low centroid) narrow them (Ladefoged & Johnson, "A Course in Phonetics", ch. 1 and 9).
3. **Rendering** (:class:`~avgen_dagster.backends.landmark_rig.PortraitRig`, built once per
   portrait): a smooth backward displacement field over the lower face, linear in the
   opening and width parameters, fading to exactly zero outside the lower face (no box
   edge), plus a mouth-cavity fill; the eyelids are warped down for blinks.
4. **Blinks**: seeded random intervals of 2-6 s (adult spontaneous blink rate ~15-20 per
   minute, Bentivoglio et al. 1997, Movement Disorders 12(6)), none in the first 0.5 s, each
   ~150 ms (close 60 ms, open 90 ms; Kwon et al. 2013 measure 100-400 ms).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from avgen_dagster.backends.landmark_rig import PortraitRig
from avgen_dagster.errors import InvalidInputError
from avgen_dagster.media.audio_io import check_sample_rate, require_mono_audio
from avgen_dagster.media.faces import FaceLandmarker, default_landmarker

if TYPE_CHECKING:
    from avgen_dagster.media.driving_video import DrivingVideoResult, LoopMode

__all__ = [
    "LandmarkLipsync",
    "LipsyncBackend",
    "VideoLipsyncBackend",
    "even_crop_portrait",
    "frame_count",
]


def frame_count(n_samples: int, sample_rate: int, fps: float) -> int:
    """Frames for ``n_samples`` of audio: ``max(1, round(n_samples / sample_rate * fps))``."""
    return max(1, round(n_samples / sample_rate * fps))


@runtime_checkable
class LipsyncBackend(Protocol):
    """A lip-sync backend: turns a portrait and a speech clip into video frames.

    Attributes:
        name: short backend name (configuration key, metadata).
        fps: frame rate of the yielded frames, frames per second.
    """

    name: str
    fps: float

    def animate(
        self, portrait_rgb: np.ndarray, audio: np.ndarray, sample_rate: int
    ) -> Iterator[np.ndarray]:
        """Frames of the portrait speaking ``audio``.

        Args:
            portrait_rgb: (H, W, 3) uint8 RGB still image with one face.
            audio: (n,) float mono samples, full scale ±1.0.
            sample_rate: Hz.

        Returns:
            An iterator of exactly ``max(1, round(n / sample_rate * fps))`` frames, each
            (H', W', 3) uint8 RGB with H', W' = H, W rounded down to even numbers.

        Raises:
            NoFaceError: the portrait shows no detectable face.
            InvalidInputError: empty audio, bad shapes/dtypes or sample rate.
        """
        ...


@runtime_checkable
class VideoLipsyncBackend(LipsyncBackend, Protocol):
    """A lip-sync backend that also lip-syncs a driving video (a clip of a person).

    ``isinstance(backend, VideoLipsyncBackend)`` tells whether a backend takes a driving
    video instead of a still portrait (Wav2Lip does; the landmark backend does not).
    """

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
        """Lip-sync ``video_path`` to ``audio`` and write an H.264/AAC MP4 to ``output``.

        Args:
            video_path: the driving video (any format FFmpeg reads).
            audio: (n,) float mono samples, full scale ±1.0.
            sample_rate: Hz.
            output: the ``.mp4`` to write (atomically).
            mode: ``"loop"``, ``"pingpong"`` or ``"trim"`` the video to the audio's length.
            chunk_frames: frames decoded/processed/encoded at a time (bounds memory).
            crf: libx264 constant rate factor.
            preset: libx264 preset.

        Returns:
            :class:`~avgen_dagster.media.driving_video.DrivingVideoResult`: the output has
            ``max(1, round(n / sample_rate * fps))`` frames at the video's own frame rate.

        Raises:
            InvalidInputError: bad audio, sample rate or mode.
            MediaError: unreadable video or encode failure.
            BackendError: the model fails.
        """
        ...


def even_crop_portrait(portrait: np.ndarray) -> np.ndarray:
    """Validate a portrait and crop it to even sides (H.264 4:2:0 needs them).

    Args:
        portrait: (H, W, 3) uint8 RGB, H and W >= 16.

    Returns:
        A new C-contiguous (H - H % 2, W - W % 2, 3) uint8 copy (backends cache it, and
        callers may reuse their buffer).

    Raises:
        InvalidInputError: another shape or dtype, or a side under 16 px.
    """
    if not (
        isinstance(portrait, np.ndarray)
        and portrait.ndim == 3
        and portrait.shape[2] == 3
        and portrait.dtype == np.uint8
    ):
        raise InvalidInputError(
            "portrait must be an RGB uint8 array of shape (H, W, 3); got shape "
            f"{getattr(portrait, 'shape', None)}, dtype {getattr(portrait, 'dtype', None)}"
        )
    h, w = portrait.shape[:2]
    if h < 16 or w < 16:
        raise InvalidInputError(f"portrait is too small ({w}x{h} px); need at least 16x16")
    # a private copy: the cached rig keeps it, and callers may reuse their buffer
    return np.array(portrait[: h - h % 2, : w - w % 2], order="C", copy=True)


class LandmarkLipsync:
    """Embedded lip-sync backend: landmark-driven warping of a still portrait (CPU, offline).

    Args:
        fps: output frame rate, frames per second (> 0).
        seed: seed of the blink schedule (same seed, same blinks).
        landmarker: face landmarker; default the shared
            :func:`~avgen_dagster.media.faces.default_landmarker`.
        gate_db: absolute noise gate, dBFS (frames quieter than this keep the mouth closed).
        range_db: dynamic range mapped onto the opening, dB below the clip's 95th-percentile
            frame level (also the relative gate).
        attack_s, release_s: time constants of the opening envelope follower, seconds.
        blinks: whether to blink.
        teeth: draw a hint of upper teeth in the opened mouth; ``None`` = only if the
            portrait's mouth is closed (an open-mouthed portrait shows its own teeth).

    Raises:
        InvalidInputError: invalid parameter values.
    """

    name = "landmark"

    def __init__(
        self,
        fps: float = 25.0,
        seed: int = 0,
        landmarker: FaceLandmarker | None = None,
        gate_db: float = -55.0,
        range_db: float = 30.0,
        attack_s: float = 0.015,
        release_s: float = 0.07,
        blinks: bool = True,
        teeth: bool | None = None,
    ) -> None:
        if not (math.isfinite(fps) and 1.0 <= fps <= 120.0):
            raise InvalidInputError(f"fps must be within 1-120, got {fps}")
        if not range_db > 0 or attack_s < 0 or release_s < 0:
            raise InvalidInputError("range_db must be > 0 and attack_s, release_s >= 0")
        self.fps = float(fps)
        self.seed = int(seed)
        self.gate_db = float(gate_db)
        self.range_db = float(range_db)
        self.attack_s = float(attack_s)
        self.release_s = float(release_s)
        self.blinks = bool(blinks)
        self.teeth = teeth
        self._landmarker = landmarker
        self._rigs: OrderedDict[tuple, PortraitRig] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ audio analysis
    def _frames(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame (rms, centroid Hz) of Hann windows centred on each frame."""
        n = frame_count(len(audio), sample_rate, self.fps)
        hop = sample_rate / self.fps
        win = max(64, round(1.5 * hop))
        window = np.hanning(win).astype(np.float32)
        norm = float(np.sum(window**2))
        nfft = 1 << (win - 1).bit_length()
        freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
        band = (freqs >= 100.0) & (freqs <= 5000.0)
        pad = np.concatenate([np.zeros(win, np.float32), audio, np.zeros(win, np.float32)])
        centres = ((np.arange(n) + 0.5) * hop).astype(np.int64)
        starts = centres - win // 2 + win
        rms = np.empty(n, np.float64)
        cent = np.empty(n, np.float64)
        offs = np.arange(win)
        for i0 in range(0, n, 1024):
            st = starts[i0 : i0 + 1024]
            seg = pad[st[:, None] + offs[None, :]] * window
            rms[i0 : i0 + len(st)] = np.sqrt(np.sum(seg.astype(np.float64) ** 2, 1) / norm)
            if band.any():
                mag = np.abs(np.fft.rfft(seg, nfft, axis=1))[:, band] ** 2
                tot = mag.sum(1)
                cent[i0 : i0 + len(st)] = (mag @ freqs[band]) / np.maximum(tot, 1e-20)
            else:
                cent[i0 : i0 + len(st)] = 0.0
        return rms, cent

    def _follow(self, target: np.ndarray) -> np.ndarray:
        a_att = 1.0 - math.exp(-1.0 / (self.fps * self.attack_s)) if self.attack_s > 0 else 1.0
        a_rel = 1.0 - math.exp(-1.0 / (self.fps * self.release_s)) if self.release_s > 0 else 1.0
        out = np.empty_like(target)
        y = 0.0
        for i, x in enumerate(target.tolist()):
            y += (a_att if x > y else a_rel) * (x - y)
            if x == 0.0 and y < 0.02:
                y = 0.0
            out[i] = y
        return out

    def curves(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame mouth opening and lip width parameters.

        Args:
            audio: (n,) float mono (or (n, channels), averaged; integer PCM is scaled).
            sample_rate: Hz.

        Returns:
            ``(opening, width)``: float32 arrays of shape (n_frames,), opening in [0, 1]
            (0 = closed, exactly 0 in gated silence), width in [-1, 1] (negative = rounded,
            positive = spread; 0 when the mouth is closed).

        Raises:
            InvalidInputError: empty audio, bad shape/dtype or sample rate.
        """
        sample_rate = check_sample_rate(sample_rate)
        audio = require_mono_audio(audio)
        rms, cent = self._frames(audio, sample_rate)
        db = 20.0 * np.log10(np.maximum(rms, 1e-10))
        voiced = db > self.gate_db
        if not voiced.any():
            z = np.zeros(len(db), np.float32)
            return z, z.copy()
        ref = float(np.percentile(db[voiced], 95))
        floor = max(self.gate_db, ref - self.range_db)
        target = np.clip((db - floor) / max(ref - floor, 1e-6), 0.0, 1.0)
        target[db <= floor] = 0.0
        opening = np.clip(self._follow(target), 0.0, 1.0)
        c_ref = float(np.median(cent[target > 0])) if np.any(target > 0) else 1000.0
        wt = np.tanh(np.log2(np.maximum(cent, 50.0) / max(c_ref, 50.0)) / 0.8)
        wt = np.where(target > 0, wt, 0.0)
        width = self._follow_signed(wt) * np.minimum(1.0, 4.0 * opening)
        width[opening == 0.0] = 0.0
        return opening.astype(np.float32), np.clip(width, -1, 1).astype(np.float32)

    def _follow_signed(self, x: np.ndarray) -> np.ndarray:
        a = 1.0 - math.exp(-1.0 / (self.fps * max(self.release_s, 1e-6)))
        out = np.empty_like(x)
        y = 0.0
        for i, v in enumerate(x.tolist()):
            y += a * (v - y)
            out[i] = y
        return out

    def mouth_openings(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Mouth opening per video frame, float32 (n_frames,) in [0, 1]; see :meth:`curves`.

        ``n_frames = max(1, round(len(audio) / sample_rate * fps))``.

        Raises:
            InvalidInputError: empty audio, bad shape/dtype or sample rate.
        """
        return self.curves(audio, sample_rate)[0]

    def blink_curve(self, n_frames: int) -> np.ndarray:
        """Eyelid closure per frame, float32 (n_frames,) in [0, 1] (1 = closed).

        Blink starts are seeded-random: the first 0.5 + U(0.5, 3.0) s, then every U(2, 6) s;
        each blink closes over 60 ms and reopens over 90 ms (sampled at frame centres).
        The generator is seeded with ``(seed, n_frames)``: deterministic for a given seed,
        fps and length, while the segments of one video (different lengths) do not all
        blink at the same moments.
        """
        out = np.zeros(max(0, int(n_frames)), np.float32)
        if not self.blinks or n_frames <= 0:
            return out
        rng = np.random.default_rng([self.seed, int(n_frames)])
        dur = n_frames / self.fps
        t_frames = (np.arange(n_frames) + 0.5) / self.fps
        start = 0.5 + rng.uniform(0.5, 3.0)
        close_s, open_s = 0.06, 0.09
        while start < dur:
            rel = t_frames - start
            closing = np.clip(rel / close_s, 0.0, 1.0)
            opening = np.clip(1.0 - (rel - close_s) / open_s, 0.0, 1.0)
            b = np.where(rel < close_s, closing, opening)
            b[(rel < 0) | (rel > close_s + open_s)] = 0.0
            # a frame that falls between samples of a fast blink still shows it closed
            out = np.maximum(out, b.astype(np.float32))
            k = int(np.argmin(np.abs(rel - close_s)))
            if 0 <= rel[k] <= close_s + open_s:
                out[k] = max(out[k], 0.9)
            start += rng.uniform(2.0, 6.0)
        return out

    # ------------------------------------------------------------------ rendering
    def _rig(self, portrait: np.ndarray) -> PortraitRig:
        key = (portrait.shape, hashlib.blake2b(portrait.tobytes(), digest_size=16).digest())
        with self._lock:
            rig = self._rigs.get(key)
            if rig is not None:
                self._rigs.move_to_end(key)
                return rig
        from avgen_dagster.media.faces import require_face

        landmarker = self._landmarker or default_landmarker()
        lm = require_face(portrait, "the portrait", landmarker)
        rig = PortraitRig(portrait, lm, self.teeth)
        with self._lock:
            self._rigs[key] = rig
            while len(self._rigs) > 4:
                self._rigs.popitem(last=False)
        return rig

    def animate(
        self, portrait_rgb: np.ndarray, audio: np.ndarray, sample_rate: int
    ) -> Iterator[np.ndarray]:
        """Frames of the portrait speaking ``audio`` (see :class:`LipsyncBackend`).

        Validation, face detection and audio analysis happen in this call (errors surface
        here, not at the first ``next``); frames are rendered lazily, one at a time, so
        memory stays flat however long the audio is.

        Args:
            portrait_rgb: (H, W, 3) uint8 RGB with one face (H, W >= 16).
            audio: (n,) float mono, full scale ±1.0, n > 0.
            sample_rate: Hz.

        Returns:
            Iterator of ``max(1, round(n / sample_rate * fps))`` frames, each a new
            (H - H % 2, W - W % 2, 3) uint8 RGB array.

        Raises:
            NoFaceError: no face in the portrait.
            InvalidInputError: bad portrait, empty audio, bad shape/dtype or sample rate.
            BackendError: the landmarker model cannot be loaded.
        """
        portrait = even_crop_portrait(portrait_rgb)
        opening, width = self.curves(audio, sample_rate)
        rig = self._rig(portrait)
        blink = self.blink_curve(len(opening))
        return self._render_iter(rig, opening, width, blink)

    @staticmethod
    def _render_iter(
        rig: PortraitRig, opening: np.ndarray, width: np.ndarray, blink: np.ndarray
    ) -> Iterator[np.ndarray]:
        for o, w, b in zip(opening.tolist(), width.tolist(), blink.tolist(), strict=True):
            yield rig.render(o, w, b)
