"""The Wav2Lip generator network (Prajwal et al. 2020) and its checkpoint loader.

Source: K R Prajwal, R Mukhopadhyay, V Namboodiri, C V Jawahar, "A Lip Sync Expert Is All You
Need for Speech to Lip Generation In The Wild", ACM Multimedia 2020 (arXiv:2008.10010), and
the layout of the published ``wav2lip.pth`` / ``wav2lip_gan.pth`` checkpoints (352 state-dict
entries, 36.3 M parameters; listed in ``tests/wav2lip/wav2lip_state_dict.tsv``). The module
names and shapes here are exactly those of the checkpoints, so they load with
``strict=True``:

* ``face_encoder_blocks``: 7 blocks, (B, 6, 96, 96) -> 16@96, 32@48, 64@24, 128@12, 256@6,
  512@3, 512@1.
* ``audio_encoder``: (B, 1, 80, 16) mel window -> (B, 512, 1, 1).
* ``face_decoder_blocks``: 7 blocks, each followed by a skip concatenation with the encoder
  feature of the same size (reverse order); outputs 512@1, 512@3, 512@6, 384@12, 256@24,
  128@48, 64@96 (before the concatenation).
* ``output_block``: conv unit 80 -> 32, plain 1×1 conv 32 -> 3, sigmoid.

A conv unit is Conv2d + BatchNorm2d (``conv_block.0`` / ``conv_block.1``), an optional
residual add, then ReLU; a transposed unit is ConvTranspose2d + BatchNorm2d + ReLU.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from avgen_dagster.errors import BackendError

__all__ = ["Wav2Lip", "load_wav2lip", "read_checkpoint_state_dict"]


class Conv2d(nn.Module):
    """Conv2d + BatchNorm2d (+ residual) + ReLU; keys ``conv_block.0.*``, ``conv_block.1.*``."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int,
        stride: int | tuple[int, int],
        padding: int,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout)
        )
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class Conv2dTranspose(nn.Module):
    """ConvTranspose2d + BatchNorm2d + ReLU; keys ``conv_block.0.*``, ``conv_block.1.*``."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int,
        stride: int,
        padding: int,
        output_padding: int = 0,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding),
            nn.BatchNorm2d(cout),
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


def _res(c: int) -> Conv2d:
    return Conv2d(c, c, 3, 1, 1, residual=True)


class Wav2Lip(nn.Module):
    """The Wav2Lip generator.

    ``forward(mel, face)``:

    Args:
        mel: (B, 1, 80, 16) float, normalised log-mel windows in [-4, 4]
            (:mod:`avgen_dagster.backends.wav2lip.audio`).
        face: (B, 6, 96, 96) float in [0, 1]: channels 0-2 the face crop with rows 48-95
            zeroed, channels 3-5 the unmasked reference crop; BGR order (the checkpoints were
            trained on OpenCV-read frames).

    Returns:
        (B, 3, 96, 96) float in [0, 1], BGR.
    """

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList(
            [
                nn.Sequential(Conv2d(6, 16, 7, 1, 3)),  # 96
                nn.Sequential(Conv2d(16, 32, 3, 2, 1), _res(32), _res(32)),  # 48
                nn.Sequential(Conv2d(32, 64, 3, 2, 1), _res(64), _res(64), _res(64)),  # 24
                nn.Sequential(Conv2d(64, 128, 3, 2, 1), _res(128), _res(128)),  # 12
                nn.Sequential(Conv2d(128, 256, 3, 2, 1), _res(256), _res(256)),  # 6
                nn.Sequential(Conv2d(256, 512, 3, 2, 1), _res(512)),  # 3
                nn.Sequential(Conv2d(512, 512, 3, 1, 0), Conv2d(512, 512, 1, 1, 0)),  # 1
            ]
        )
        self.audio_encoder = nn.Sequential(
            Conv2d(1, 32, 3, 1, 1),
            _res(32),
            _res(32),
            Conv2d(32, 64, 3, (3, 1), 1),
            _res(64),
            _res(64),
            Conv2d(64, 128, 3, 3, 1),
            _res(128),
            _res(128),
            Conv2d(128, 256, 3, (3, 2), 1),
            _res(256),
            Conv2d(256, 512, 3, 1, 0),
            Conv2d(512, 512, 1, 1, 0),
        )
        self.face_decoder_blocks = nn.ModuleList(
            [
                nn.Sequential(Conv2d(512, 512, 1, 1, 0)),  # 1
                nn.Sequential(Conv2dTranspose(1024, 512, 3, 1, 0), _res(512)),  # 3
                nn.Sequential(Conv2dTranspose(1024, 512, 3, 2, 1, 1), _res(512), _res(512)),  # 6
                nn.Sequential(Conv2dTranspose(768, 384, 3, 2, 1, 1), _res(384), _res(384)),  # 12
                nn.Sequential(Conv2dTranspose(512, 256, 3, 2, 1, 1), _res(256), _res(256)),  # 24
                nn.Sequential(Conv2dTranspose(320, 128, 3, 2, 1, 1), _res(128), _res(128)),  # 48
                nn.Sequential(Conv2dTranspose(160, 64, 3, 2, 1, 1), _res(64), _res(64)),  # 96
            ]
        )
        self.output_block = nn.Sequential(
            Conv2d(80, 32, 3, 1, 1),
            nn.Conv2d(32, 3, kernel_size=1, stride=1, padding=0),
            nn.Sigmoid(),
        )

    def forward(self, mel: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        """Generate the lower face for each (mel window, face) pair; shapes in the class doc."""
        audio_embedding = self.audio_encoder(mel)
        feats: list[torch.Tensor] = []
        x = face
        for block in self.face_encoder_blocks:
            x = block(x)
            feats.append(x)
        x = audio_embedding
        for block in self.face_decoder_blocks:
            x = block(x)
            x = torch.cat((x, feats.pop()), dim=1)
        return self.output_block(x)


def read_checkpoint_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """Read a Wav2Lip checkpoint's state dict, unwrapped and with ``module.`` prefixes stripped.

    Accepts the published format (a dict whose ``state_dict`` entry holds the weights, keys
    prefixed ``module.`` by ``nn.DataParallel``) and a bare state dict. The file is read with
    ``torch.load(weights_only=True)``: tensors and plain containers only, no code runs.

    Args:
        path: the ``.pth`` file.

    Returns:
        key -> tensor, on the CPU.

    Raises:
        BackendError: the file is missing, unreadable, or holds no state dict (the message
            names the path).
    """
    path = Path(path)
    if not path.is_file():
        raise BackendError(
            f"Wav2Lip checkpoint not found: {path} (set AVGEN_WAV2LIP_CHECKPOINT or the "
            f"backend's checkpoint path to wav2lip.pth / wav2lip_gan.pth)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise BackendError(
            f"cannot read Wav2Lip checkpoint {path}: {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise BackendError(
            f"{path} is not a Wav2Lip checkpoint: expected a dict with a 'state_dict' of "
            f"tensors, got {type(obj).__name__}"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise BackendError(
                f"{path} is not a Wav2Lip checkpoint: entry {key!r} is a "
                f"{type(value).__name__}, not a tensor"
            )
        out[key.removeprefix("module.")] = value
    return out


def _mismatches(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    expected = model.state_dict()
    problems = [
        f"{k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [f"missing {k}" for k in expected if k not in state]
    return problems


def load_wav2lip(path: Path | str, device: str | torch.device = "cpu") -> Wav2Lip:
    """Build :class:`Wav2Lip` and load a checkpoint strictly, in eval mode.

    Args:
        path: ``wav2lip.pth`` or ``wav2lip_gan.pth`` (or a file saved in that format).
        device: torch device for the model.

    Returns:
        The model, on ``device``, in ``eval()`` mode, float32.

    Raises:
        BackendError: missing or unreadable file, or a state dict whose keys/shapes are not
            Wav2Lip's (the message names the path and the first mismatching keys).
    """
    state = read_checkpoint_state_dict(path)
    with torch.device("meta"):  # no second copy of the weights: the loaded tensors are used
        model = Wav2Lip()
    problems = _mismatches(model, state)
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise BackendError(
            f"{path} is not a Wav2Lip generator checkpoint: {shown}{more}. Use wav2lip.pth "
            f"or wav2lip_gan.pth (not the lip-sync expert / discriminator weights)"
        )
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()
