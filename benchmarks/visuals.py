"""Benchmark the embedded visual and music backends (issue 5).

Embedded defaults, as a request's package: 5 procedural images (512×512 PNG), 5 pan-and-zoom
clips of 5 s (H.264 MP4, 24 fps), 30 s of procedural music (WAV, loudness-normalised, plus
an AAC .m4a copy) and the music video made from them. Prints per-asset timings and the total
against the target of ≤ 60 s on 2 cores.

``--gpu`` also times the production backends at real model sizes with random weights, when
CUDA is present: an SD-Turbo-sized UNet pipeline (images/s at 512×512, 1 step) and
MusicGen-small-sized (seconds of audio per second). Without CUDA it says so.

Usage: ``.venv/bin/python benchmarks/visuals.py [--keep DIR] [--gpu]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET_S = 60.0
PROMPTS = [
    "a calm sunset over the sea",
    "a pine forest at dawn",
    "night sky over snowy mountains",
    "desert dunes under a warm sky",
    "a river winding through green hills",
]


def run_embedded(out: Path) -> dict[str, float]:
    """Make the embedded package in ``out``; return seconds per stage and ``total``."""
    import cv2

    from avgen_dagster.backends.landscape import ProceduralImages
    from avgen_dagster.backends.music import ProceduralMusic, normalize_music
    from avgen_dagster.backends.video import PanZoomClips, write_clip
    from avgen_dagster.media.atomic import atomic_path
    from avgen_dagster.media.audio_codec import encode_audio_file
    from avgen_dagster.media.audio_io import write_wav
    from avgen_dagster.media.music_video import compose_music_video

    times: dict[str, float] = {}
    t_all = time.perf_counter()

    t = time.perf_counter()
    images = []
    gen = ProceduralImages()
    for i, prompt in enumerate(PROMPTS):
        rgb = gen.generate(prompt, seed=i, width=512, height=512)
        path = out / "images" / f"image_{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        images.append(rgb)
    times["images (5 x 512x512 PNG)"] = time.perf_counter() - t

    t = time.perf_counter()
    clips = []
    for i, (rgb, prompt) in enumerate(zip(images, PROMPTS, strict=True)):
        res = write_clip(
            PanZoomClips(fps=24),
            rgb,
            prompt,
            out / "clips" / f"clip_{i:02d}.mp4",
            duration_s=5.0,
            seed=i,
            width=512,
            height=512,
        )
        clips.append(res.path)
    times["video_clips (5 x 5 s, 512x512, 24 fps)"] = time.perf_counter() - t

    t = time.perf_counter()
    samples = ProceduralMusic(sample_rate=32000).generate("electronic", 30.0, seed=7)
    times["music: compose 30 s"] = time.perf_counter() - t
    t = time.perf_counter()
    norm = normalize_music(samples, 32000)
    wav = write_wav(out / "music" / "music.wav", norm.samples, 32000)
    encode_audio_file(wav, out / "music" / "music.m4a")
    times["music: normalise + WAV + m4a"] = time.perf_counter() - t

    t = time.perf_counter()
    mv = compose_music_video(clips, wav, out / "music_video" / "music_video.mp4")
    times["music_video (30 s)"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t_all
    print(
        f"music: {norm.after.integrated_lufs:.1f} LUFS, {norm.after.true_peak_dbtp:.2f} dBTP; "
        f"music video {mv.duration_s:.2f} s, {mv.video_frames} frames, {mv.clips_used} clip uses"
    )
    return times


def run_gpu() -> None:
    """Production backends at real sizes, random weights, on CUDA (if present)."""
    import torch

    if not torch.cuda.is_available():
        print("--gpu: no CUDA device here; production-backend timings skipped")
        return
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline
    from diffusers import UNet2DConditionModel as Unet
    from transformers import CLIPTextConfig, CLIPTextModel

    from avgen_dagster.backends.image import DiffusersImages
    from avgen_dagster.backends.music import MusicGenMusic
    from avgen_dagster.devtools.tiny_models import bpe_tokenizer, unigram_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        # SD 2.1-base / SD-Turbo sized UNet (865 M), VAE, CLIP-H sized text encoder (23 layers).
        tok = bpe_tokenizer("<|startoftext|>", "<|endoftext|>", "<|endoftext|>", 77)
        pipe = StableDiffusionPipeline(
            unet=Unet(
                cross_attention_dim=1024,
                attention_head_dim=(5, 10, 20, 20),
                use_linear_projection=True,
            ),
            vae=AutoencoderKL(
                block_out_channels=(128, 256, 512, 512),
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                latent_channels=4,
                layers_per_block=2,
            ),
            text_encoder=CLIPTextModel(
                CLIPTextConfig(
                    vocab_size=len(tok),
                    hidden_size=1024,
                    intermediate_size=4096,
                    num_attention_heads=16,
                    num_hidden_layers=23,
                    bos_token_id=0,
                    eos_token_id=1,
                    pad_token_id=1,
                )
            ),
            tokenizer=tok,
            scheduler=EulerDiscreteScheduler(steps_offset=1),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(Path(tmp) / "sd")
        gen = DiffusersImages(Path(tmp) / "sd", steps=1, guidance=0.0, batch_size=4)
        gen.generate("warm up", seed=0, width=512, height=512)
        torch.cuda.synchronize()
        t = time.perf_counter()
        gen.generate_batch(PROMPTS * 4, list(range(20)), width=512, height=512)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t
        print(f"diffusers SD-Turbo-sized, 1 step, 512x512, {gen.dtype}: {20 / dt:.1f} images/s")

        from transformers import (
            EncodecConfig,
            EncodecFeatureExtractor,
            MusicgenConfig,
            MusicgenDecoderConfig,
            MusicgenForConditionalGeneration,
            MusicgenProcessor,
            T5Config,
        )

        utok = unigram_tokenizer(64)
        model = MusicgenForConditionalGeneration(
            MusicgenConfig(
                text_encoder=T5Config(
                    vocab_size=len(utok), d_model=768, d_ff=3072, num_layers=12, num_heads=12
                ),
                audio_encoder=EncodecConfig(
                    sampling_rate=32000,
                    upsampling_ratios=[8, 5, 4, 4],
                    target_bandwidths=[2.2],
                    num_filters=64,
                    codebook_size=2048,
                ),
                decoder=MusicgenDecoderConfig(
                    vocab_size=2048,
                    hidden_size=1024,
                    num_hidden_layers=24,
                    num_attention_heads=16,
                    ffn_dim=4096,
                    num_codebooks=4,
                    pad_token_id=2048,
                    bos_token_id=2048,
                ),
            )
        )
        model.generation_config.decoder_start_token_id = 2048
        model.generation_config.pad_token_id = 2048
        model.generation_config.max_length = 2048
        model.save_pretrained(Path(tmp) / "mg")
        MusicgenProcessor(
            feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=32000),
            tokenizer=utok,
        ).save_pretrained(Path(tmp) / "mg")
        music = MusicGenMusic(Path(tmp) / "mg", window_s=30.0, prompt_s=10.0)
        music.generate("rock", 2.0, seed=0)
        t = time.perf_counter()
        music.generate("rock", 40.0, seed=1)
        dt = time.perf_counter() - t
        print(
            f"MusicGen-small-sized, {music.dtype}, 40 s in {music.last_windows} windows: "
            f"{40.0 / dt:.2f} s of audio per second"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the outputs here instead of a temp dir")
    parser.add_argument("--gpu", action="store_true", help="also time production backends")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        times = run_embedded(args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="avgen-visuals-") as tmp:
            times = run_embedded(Path(tmp))
    width = max(len(k) for k in times)
    for key, value in times.items():
        if key != "total":
            print(f"  {key:<{width}}  {value:6.2f} s")
    total = times["total"]
    verdict = "OK" if total <= TARGET_S else "OVER TARGET"
    print(f"  {'total':<{width}}  {total:6.2f} s  (target <= {TARGET_S:.0f} s: {verdict})")
    if args.gpu:
        run_gpu()


if __name__ == "__main__":
    main()
