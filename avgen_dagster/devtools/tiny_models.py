"""Tiny random-weight models, built offline in well under a second each: for tests and
benchmarks only (nothing in the pipeline imports this module).

Each builder constructs a production architecture at toy size (a few thousand parameters),
trains a tiny tokenizer locally (no downloads), saves everything with ``save_pretrained``
into a folder and returns it: the backends then load it with ``from_pretrained(folder)``
exactly as they would load real weights (``build_tiny_*(folder) -> folder``; the folder is
created when missing). :func:`save_wav2lip_checkpoint` writes a Wav2Lip network in the
layout of the published checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "TOKENIZER_WORDS",
    "bpe_tokenizer",
    "build_tiny_ltx",
    "build_tiny_musicgen",
    "build_tiny_sd",
    "build_tiny_xtts",
    "save_wav2lip_checkpoint",
    "synthetic_voice",
    "unigram_tokenizer",
]

#: The corpus the tiny tokenizers are trained on.
TOKENIZER_WORDS = [
    "a red sunset over calm hills",
    "blue ocean waves at night under the moon",
    "ambient lofi rock electronic jazz classical pop music",
    "slow evolving pads soft bells calm spacious energetic drums guitars",
    "mountain landscape forest river clouds sky",
]


def bpe_tokenizer(bos: str, eos: str, pad: str, max_len: int) -> Any:
    """A BPE ``PreTrainedTokenizerFast`` (120 tokens, whitespace pre-tokenizer) trained on
    :data:`TOKENIZER_WORDS`, with the given special tokens and ``model_max_length``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=[bos, eos, "<unk>"])
    tk.train_from_iterator(TOKENIZER_WORDS * 5, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token="<unk>",
        model_max_length=max_len,
    )


def unigram_tokenizer(max_len: int) -> Any:
    """A Unigram ``PreTrainedTokenizerFast`` (80 tokens, Metaspace, ``<pad>``/``</s>``/
    ``<unk>``) trained on :data:`TOKENIZER_WORDS`, T5-style."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.Unigram())
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=80, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tk.train_from_iterator(TOKENIZER_WORDS * 5, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=max_len,
    )


def build_tiny_sd(folder: Path) -> Path:
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
    tok = bpe_tokenizer("<|startoftext|>", "<|endoftext|>", "<|endoftext|>", 77)
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
    pipe.save_pretrained(folder)
    return folder


def build_tiny_musicgen(folder: Path) -> Path:
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
    )

    torch.manual_seed(0)
    tok = unigram_tokenizer(64)
    t5 = _tiny_t5_config(len(tok), decoder_start_token_id=0)
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
    model.save_pretrained(folder)
    proc = MusicgenProcessor(
        feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=8000),
        tokenizer=tok,
    )
    proc.save_pretrained(folder)
    return folder


def build_tiny_ltx(folder: Path) -> Path:
    """A tiny LTXPipeline whose VAE has LTX-Video's real compression (32× space via patch
    size 4 and three 2× stages, 8× time), so the 8k+1 / 32 constraints are the real ones."""
    import torch
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5EncoderModel

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
    vae = _tiny_ltx_vae()
    tok = unigram_tokenizer(32)
    text = T5EncoderModel(_tiny_t5_config(len(tok)))
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text,
        tokenizer=tok,
        transformer=transformer,
    )
    pipe.save_pretrained(folder)
    return folder


def _tiny_t5_config(vocab_size: int, **extra: int) -> Any:
    """A T5 text encoder config at toy size (1 layer, width 16), pad 0, eos 1."""
    from transformers import T5Config

    return T5Config(
        vocab_size=vocab_size,
        d_model=16,
        d_kv=4,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        pad_token_id=0,
        eos_token_id=1,
        **extra,
    )


def _tiny_ltx_vae() -> Any:
    """LTX-Video's VAE at toy width with its real compression: 32× in space (patch size 4
    and three 2× stages), 8× in time."""
    from diffusers import AutoencoderKLLTXVideo

    return AutoencoderKLLTXVideo(
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


def save_wav2lip_checkpoint(path: Path, *, seed: int = 0, model: Any = None) -> Path:
    """Save a Wav2Lip network as the published ``wav2lip.pth`` is laid out: a dict with
    ``state_dict`` whose keys carry DataParallel's ``module.`` prefix, beside optimizer and
    step entries.

    Args:
        path: the ``.pth`` file to write.
        seed: ``torch.manual_seed`` for a new random-weight network.
        model: a network to save instead of a new one.

    Returns:
        ``path``.
    """
    import torch

    from avgen_dagster.backends.wav2lip.model import Wav2Lip

    if model is None:
        torch.manual_seed(seed)
        model = Wav2Lip()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "optimizer": {}, "global_step": 0, "global_epoch": 0}, path)
    return path


def build_tiny_xtts(folder: Path) -> Path:
    """An XTTS-v2-shaped Coqui model folder (``config.json``, ``model.pth``, ``vocab.json``):
    a 1-layer GPT of width 32 with the perceiver resampler, HiFi-GAN decoder and ResNet speaker
    encoder at XTTS's sizes, random weights (seed 0), a BPE vocab trained here; languages
    ``en`` and ``de``, 24 kHz output. Loads with
    :class:`~avgen_dagster.backends.coqui.CoquiSpeech` as real XTTS-v2 weights would (~4 s
    to build on one core); it speaks noise, not words.
    """
    import torch
    from tokenizers import Tokenizer, models, trainers

    from avgen_dagster.backends import coqui_torchaudio

    coqui_torchaudio.install()
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts, XttsArgs

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    trainer = trainers.BpeTrainer(
        vocab_size=120,
        special_tokens=["[STOP]", "[UNK]", "[SPACE]", "[START]", "[en]", "[de]"],
        initial_alphabet=list("abcdefghijklmnopqrstuvwxyz.,!?'-"),
    )
    tokenizer.train_from_iterator(
        ["hello world this is a tiny test of the voice", "the quick brown fox jumps"] * 10,
        trainer,
    )
    tokenizer.save(str(folder / "vocab.json"))
    args = XttsArgs(
        gpt_layers=1,
        gpt_n_model_channels=32,
        gpt_n_heads=2,
        gpt_num_audio_tokens=66,
        gpt_start_audio_token=64,
        gpt_stop_audio_token=65,
        gpt_max_audio_tokens=12,
        gpt_max_text_tokens=100,
        gpt_max_prompt_tokens=20,
        gpt_use_perceiver_resampler=True,
        decoder_input_dim=32,
        d_vector_dim=512,
        gpt_code_stride_len=1024,
        output_sample_rate=24000,
    )
    config = XttsConfig(model_args=args, languages=["en", "de"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Xtts(config)
        model.tokenizer = VoiceBpeTokenizer(folder / "vocab.json")
        model.init_models()
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    return folder


def synthetic_voice(seconds: float, sample_rate: int, seed: int | None = 0) -> np.ndarray:
    """Speech-like test signal: harmonic bursts (f0 100-180 Hz, 12 harmonics) with gaps.

    Args:
        seconds: duration.
        sample_rate: Hz.
        seed: phase of the syllable gating (``None``: phase 0).

    Returns:
        float32 ``(round(seconds * sample_rate),)``, peak about 0.5.
    """
    phase0 = 0.0 if seed is None else float(np.random.default_rng(seed).uniform(0, 6))
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 13))
    env = (np.sin(2 * np.pi * 3.1 * t + phase0) > -0.2).astype(np.float64)
    if seed is not None:
        env = np.convolve(env, np.hanning(401) / np.hanning(401).sum(), mode="same")
    return (0.25 * tone * env).astype(np.float32)
