"""The few torchaudio functions Coqui TTS calls, on plain torch, for when torchaudio cannot load.

Why this exists (checked 2026-12-01, see the speech report in ``backends/coqui.py``):
``coqui-tts`` 0.28.0 refuses to import unless ``torchaudio`` and, with torch ≥ 2.9,
``torchcodec`` are *findable* (``TTS/__init__.py`` checks ``importlib.util.find_spec``), and
its VITS/XTTS modules ``import torchaudio`` at import time. Beside avgen's pinned
torch 2.13.0 (CPU) no torchaudio wheel loads: PyPI's newest, 2.11.1, is a CUDA build
(``OSError: libc10_cuda.so: cannot open shared object file``) built for another torch ABI,
and torchcodec's wheels need FFmpeg shared libraries (``libavutil.so.60`` …) the machine
does not have. What Coqui's inference needs from torchaudio is pure tensor maths:

* ``transforms.MelSpectrogram`` (XTTS conditioning mels, the DVAE, the speaker encoder),
* ``functional.resample`` / ``transforms.Resample`` (reference audio to 22.05/16 kHz),
* ``load`` (a reference WAV).

This module implements exactly those with torchaudio's own algorithms (periodic Hann STFT,
HTK/Slaney triangular mel filters, windowed-sinc resampling with ``lowpass_filter_width`` 6
and ``rolloff`` 0.99) — compared with the real torchaudio 2.11.1's Python code on this
machine (its C extension removed so that it imports) the outputs are bit-identical (max
|Δ| = 0 on four MelSpectrogram settings, XTTS's and the speaker encoder's among them, and
six rate pairs for ``resample``/``Resample``) — and :func:`install` registers it as
``torchaudio`` only when the real one cannot be imported, plus an empty ``torchcodec``
placeholder that satisfies Coqui's check (Coqui itself never imports torchcodec; only
``torchaudio.load`` would, and that is replaced here by soundfile).
"""

from __future__ import annotations

import importlib.machinery
import math
import sys
import types
from typing import Any

import torch

__all__ = [
    "MelSpectrogram",
    "Resample",
    "install",
    "load",
    "melscale_fbanks",
    "resample",
]


def _hz_to_mel(freq: float, mel_scale: str) -> float:
    if mel_scale == "htk":
        return 2595.0 * math.log10(1.0 + freq / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    mels = freq / f_sp
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    if freq >= min_log_hz:
        mels = min_log_mel + math.log(freq / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: torch.Tensor, mel_scale: str) -> torch.Tensor:
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    freqs = f_sp * mels
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    log_t = mels >= min_log_mel
    freqs[log_t] = min_log_hz * torch.exp(logstep * (mels[log_t] - min_log_mel))
    return freqs


def melscale_fbanks(
    n_freqs: int,
    f_min: float,
    f_max: float,
    n_mels: int,
    sample_rate: int,
    norm: str | None = None,
    mel_scale: str = "htk",
) -> torch.Tensor:
    """Triangular mel filters, (n_freqs, n_mels) float32 (torchaudio's ``melscale_fbanks``).

    Raises:
        ValueError: ``norm`` not None/"slaney" or ``mel_scale`` not "htk"/"slaney".
    """
    if norm not in (None, "slaney") or mel_scale not in ("htk", "slaney"):
        raise ValueError(f"unsupported mel norm/scale: {norm!r}/{mel_scale!r}")
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_pts = torch.linspace(_hz_to_mel(f_min, mel_scale), _hz_to_mel(f_max, mel_scale), n_mels + 2)
    f_pts = _mel_to_hz(m_pts, mel_scale)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = torch.max(torch.zeros(1), torch.min(down, up))
    if norm == "slaney":
        fb *= (2.0 / (f_pts[2 : n_mels + 2] - f_pts[:n_mels])).unsqueeze(0)
    return fb


class MelSpectrogram(torch.nn.Module):
    """Power mel spectrogram, (..., time) → (..., n_mels, frames) (torchaudio's defaults).

    Centered STFT with reflect padding, ``window_fn(win_length)`` (periodic Hann by
    default), ``|X| ** power``, then mel filters (``norm``, ``mel_scale``).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        win_length: int | None = None,
        hop_length: int | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        pad: int = 0,
        n_mels: int = 128,
        window_fn: Any = torch.hann_window,
        power: float = 2.0,
        normalized: bool = False,
        wkwargs: dict[str, Any] | None = None,
        center: bool = True,
        pad_mode: str = "reflect",
        onesided: bool | None = None,
        norm: str | None = None,
        mel_scale: str = "htk",
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.win_length = win_length if win_length is not None else n_fft
        self.hop_length = hop_length if hop_length is not None else self.win_length // 2
        self.pad, self.power, self.normalized = pad, power, normalized
        self.center, self.pad_mode = center, pad_mode
        window = window_fn(self.win_length, **(wkwargs or {}))
        self.register_buffer("window", window)
        f_max = f_max if f_max is not None else float(sample_rate // 2)
        fb = melscale_fbanks(n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate, norm, mel_scale)
        self.register_buffer("fb", fb)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(..., time) float → (..., n_mels, frames)."""
        if self.pad > 0:
            waveform = torch.nn.functional.pad(waveform, (self.pad, self.pad), "constant")
        shape = waveform.size()
        flat = waveform.reshape(-1, shape[-1])
        spec = torch.stft(
            flat,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=self.center,
            pad_mode=self.pad_mode,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        spec = spec.reshape(shape[:-1] + spec.shape[-2:])
        if self.normalized:
            spec = spec / self.window.pow(2.0).sum().sqrt()
        power = spec.abs() if self.power == 1.0 else spec.abs().pow(self.power)
        return torch.matmul(power.transpose(-1, -2), self.fb).transpose(-1, -2)


def _sinc_kernel(
    orig: int, new: int, width_taps: int, rolloff: float, dtype: torch.dtype | None
) -> tuple[torch.Tensor, int]:
    base = min(orig, new) * rolloff
    width = math.ceil(width_taps * orig / base)
    idx_dtype = dtype if dtype is not None else torch.float64
    idx = torch.arange(-width, width + orig, dtype=idx_dtype)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=dtype)[:, None, None] / new + idx
    t *= base
    t = t.clamp_(-width_taps, width_taps)
    window = torch.cos(t * math.pi / width_taps / 2) ** 2
    t *= math.pi
    kernels = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t)
    kernels *= window * (base / orig)
    if dtype is None:
        kernels = kernels.to(dtype=torch.float32)
    return kernels, width


def _apply_kernel(
    waveform: torch.Tensor, orig: int, new: int, kernel: torch.Tensor, width: int
) -> torch.Tensor:
    shape = waveform.size()
    flat = waveform.reshape(-1, shape[-1])
    length = flat.shape[-1]
    padded = torch.nn.functional.pad(flat, (width, width + orig))
    out = torch.nn.functional.conv1d(padded[:, None], kernel.to(flat), stride=orig)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    out = out[..., : math.ceil(new * length / orig)]
    return out.reshape(shape[:-1] + out.shape[-1:])


def resample(
    waveform: torch.Tensor,
    orig_freq: int,
    new_freq: int,
    lowpass_filter_width: int = 6,
    rolloff: float = 0.99,
    resampling_method: str = "sinc_interp_hann",
    beta: float | None = None,
) -> torch.Tensor:
    """(..., time) at ``orig_freq`` Hz → (..., ceil(time · new/orig)) at ``new_freq`` Hz.

    Raises:
        ValueError: a method other than ``sinc_interp_hann`` (Kaiser is not needed by Coqui).
    """
    if resampling_method != "sinc_interp_hann":
        raise ValueError(f"only sinc_interp_hann resampling is available, not {resampling_method}")
    if orig_freq == new_freq:
        return waveform
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    kernel, width = _sinc_kernel(orig, new, lowpass_filter_width, rolloff, waveform.dtype)
    return _apply_kernel(waveform, orig, new, kernel, width)


class Resample(torch.nn.Module):
    """``resample`` as a module with the kernel built once (torchaudio's ``Resample``)."""

    def __init__(
        self,
        orig_freq: int = 16000,
        new_freq: int = 16000,
        resampling_method: str = "sinc_interp_hann",
        lowpass_filter_width: int = 6,
        rolloff: float = 0.99,
        beta: float | None = None,
        *,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if resampling_method != "sinc_interp_hann":
            raise ValueError(
                f"only sinc_interp_hann resampling is available, not {resampling_method}"
            )
        self.orig_freq, self.new_freq = int(orig_freq), int(new_freq)
        gcd = math.gcd(self.orig_freq, self.new_freq)
        self._orig, self._new = self.orig_freq // gcd, self.new_freq // gcd
        if self.orig_freq != self.new_freq:
            kernel, self.width = _sinc_kernel(
                self._orig, self._new, lowpass_filter_width, rolloff, dtype
            )
            self.register_buffer("kernel", kernel)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(..., time) → (..., resampled time)."""
        if self.orig_freq == self.new_freq:
            return waveform
        return _apply_kernel(waveform, self._orig, self._new, self.kernel, self.width)


def load(uri: Any, *_: Any, **__: Any) -> tuple[torch.Tensor, int]:
    """Read an audio file: ``((channels, samples) float32 in [-1, 1], sample rate Hz)``.

    Raises:
        RuntimeError: soundfile cannot read the file (its message names why).
    """
    import soundfile

    data, rate = soundfile.read(uri, dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), int(rate)


def _module(name: str, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    mod.__dict__.update(attrs)
    return mod


def install() -> str:
    """Make ``import torchaudio`` work for Coqui TTS.

    Returns:
        ``"torchaudio"`` when the real torchaudio imports (nothing is changed), else
        ``"avgen shim"`` after registering this module as ``torchaudio`` (with
        ``.functional`` and ``.transforms``) and a placeholder ``torchcodec`` in
        ``sys.modules``.
    """
    current = sys.modules.get("torchaudio")
    if current is not None:
        return "avgen shim" if getattr(current, "__avgen_shim__", False) else "torchaudio"
    try:
        import torchaudio  # noqa: F401

        return "torchaudio"
    except Exception:  # OSError (a CUDA build, another torch ABI) or ImportError
        for name in [m for m in sys.modules if m == "torchaudio" or m.startswith("torchaudio.")]:
            del sys.modules[name]
    functional = _module(
        "torchaudio.functional", resample=resample, melscale_fbanks=melscale_fbanks
    )
    transforms = _module("torchaudio.transforms", MelSpectrogram=MelSpectrogram, Resample=Resample)
    shim = _module(
        "torchaudio",
        load=load,
        functional=functional,
        transforms=transforms,
        __version__="0+avgen.shim",
        __avgen_shim__=True,
    )
    sys.modules.update(
        {
            "torchaudio": shim,
            "torchaudio.functional": functional,
            "torchaudio.transforms": transforms,
        }
    )
    if "torchcodec" not in sys.modules:
        try:
            import torchcodec  # noqa: F401
        except Exception:
            sys.modules.pop("torchcodec", None)
            sys.modules["torchcodec"] = _module("torchcodec", __avgen_shim__=True)
    return "avgen shim"
