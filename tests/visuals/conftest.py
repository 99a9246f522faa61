"""Tiny random-weight models for the visuals tests, built and saved once per session.

Each builder constructs a production architecture at toy size (a few thousand parameters),
trains a tiny tokenizer locally (no downloads), saves everything with ``save_pretrained``
into a temp folder, and returns the folder: the backends then load it with
``from_pretrained(folder)`` exactly as they would load real weights.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest

_WORDS = [
    "a red sunset over calm hills",
    "blue ocean waves at night under the moon",
    "ambient lofi rock electronic jazz classical pop music",
    "slow evolving pads soft bells calm spacious energetic drums guitars",
    "mountain landscape forest river clouds sky",
]


def _bpe_tokenizer(bos: str, eos: str, pad: str, max_len: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=[bos, eos, "<unk>"])
    tk.train_from_iterator(_WORDS * 5, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token="<unk>",
        model_max_length=max_len,
    )


def _unigram_tokenizer(max_len: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.Unigram())
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=80, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tk.train_from_iterator(_WORDS * 5, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=max_len,
    )


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny StableDiffusionPipeline (UNet 2 levels, VAE 2 levels, CLIP 2 layers)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )
    tok = _bpe_tokenizer("<|startoftext|>", "<|endoftext|>", "<|endoftext|>", 77)
    text = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=len(tok),
            max_position_embeddings=77,
            projection_dim=16,
        )
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text,
        tokenizer=tok,
        scheduler=EulerDiscreteScheduler(steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    folder = tmp_path_factory.mktemp("tiny-sd")
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_musicgen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MusicGen: T5 text encoder (1 layer), EnCodec at 8 kHz / 50 frames per second
    (hop 8*5*4 = 160), decoder 1 layer over its codebooks; processor saved beside it."""
    import torch
    from transformers import (
        EncodecConfig,
        EncodecFeatureExtractor,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        MusicgenProcessor,
        T5Config,
    )

    torch.manual_seed(0)
    tok = _unigram_tokenizer(64)
    t5 = T5Config(
        vocab_size=len(tok),
        d_model=16,
        d_kv=4,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    enc = EncodecConfig(
        sampling_rate=8000,
        audio_channels=1,
        num_filters=4,
        upsampling_ratios=[8, 5, 4],
        codebook_size=64,
        codebook_dim=16,
        hidden_size=16,
        num_residual_layers=1,
        target_bandwidths=[1.0],
        num_lstm_layers=1,
    )
    dec = MusicgenDecoderConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        ffn_dim=32,
        num_codebooks=enc.num_quantizers,
        max_position_embeddings=1024,
        pad_token_id=64,
        bos_token_id=64,
    )
    model = MusicgenForConditionalGeneration(
        MusicgenConfig(text_encoder=t5, audio_encoder=enc, decoder=dec)
    )
    model.generation_config.decoder_start_token_id = 64
    model.generation_config.pad_token_id = 64
    model.generation_config.max_length = 1024
    folder = tmp_path_factory.mktemp("tiny-musicgen")
    model.save_pretrained(folder)
    proc = MusicgenProcessor(
        feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=8000),
        tokenizer=tok,
    )
    proc.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_ltx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LTXPipeline whose VAE has LTX-Video's real compression (32× space via patch
    size 4 and three 2× stages, 8× time), so the 8k+1 / 32 constraints are the real ones."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=1,
        caption_channels=16,
    )
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4,
        upsample_factor=(1,) * 4,
        timestep_conditioning=False,
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    tok = _unigram_tokenizer(32)
    text = T5EncoderModel(
        T5Config(
            vocab_size=len(tok),
            d_model=16,
            d_kv=4,
            d_ff=32,
            num_layers=1,
            num_heads=2,
            pad_token_id=0,
            eos_token_id=1,
        )
    )
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text,
        tokenizer=tok,
        transformer=transformer,
    )
    folder = tmp_path_factory.mktemp("tiny-ltx")
    pipe.save_pretrained(folder)
    return folder


def ffmpeg_ebur128(path: Path) -> dict[str, float]:
    """Integrated loudness (LUFS) and true peak (dBTP) measured by the ffmpeg CLI's
    ``ebur128=peak=true`` filter (an implementation independent of ours)."""
    proc = subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-hide_banner",
            "-nostats",
            "-i",
            str(path),
            "-filter_complex",
            "ebur128=peak=true",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = proc.stderr[proc.stderr.rfind("Summary:") :]
    values: dict[str, float] = {}
    for line in summary.splitlines():
        parts = line.split()
        if parts[:1] == ["I:"]:
            values["integrated_lufs"] = float(parts[1])
        if parts[:1] == ["Peak:"]:
            values["true_peak_dbtp"] = float(parts[1])
    return values


def ffmpeg_decode_info(path: Path) -> dict[str, object]:
    """Decode a media file with the ffmpeg CLI and return what it reports: the stream
    lines and the decoded duration (from the last ``time=`` of a null-muxer run)."""
    proc = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    streams = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip().startswith("Stream #0")]
    times = [seg.split()[0] for seg in proc.stderr.split("time=")[1:]]
    h, m, s = times[-1].split(":")
    return {
        "streams": streams,
        "decoded_s": int(h) * 3600 + int(m) * 60 + float(s),
        "stderr": proc.stderr,
    }


def atoms(path: Path) -> list[str]:
    """Top-level MP4 box types in file order."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        out.append(data[pos + 4 : pos + 8].decode("latin1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        if size < 8:
            break
        pos += size
    return out
