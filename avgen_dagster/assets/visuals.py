"""The visual and music package: images, music, video clips and a music video, partitioned by
``user_id`` like the talking head. Their manifests reach the app database through
``content_record``, the one writer of a request's outputs record."""

from pathlib import Path

import dagster as dg
import numpy as np

from avgen_dagster.assets.manifests import (
    ClipsManifest,
    ImagesManifest,
    MusicManifest,
    MusicVideoManifest,
    RequestSnapshot,
    ScriptManifest,
)
from avgen_dagster.assets.previews import thumbnail_markdown
from avgen_dagster.outputs import MUSIC_M4A, MUSIC_VIDEO_MP4, MUSIC_WAV, clip_name, image_name
from avgen_dagster.partitions import user_partitions
from avgen_dagster.resources import (
    ContentStore,
    ImageBackendResource,
    MusicBackendResource,
    VideoBackendResource,
)

GROUP = "visuals"


def visual_prompts(script: ScriptManifest, count: int) -> list[str]:
    """``count`` prompts for images or clips from the scene plan, in narration order: the
    plan's scenes spread evenly over ``count`` (every scene when there are as many), so the
    pictures follow what is said."""
    prompts = script.plan.visual_prompts if script.plan is not None else [script.text[:300]]
    return [prompts[(i * len(prompts)) // count] for i in range(count)]


@dg.asset(
    partitions_def=user_partitions,
    group_name=GROUP,
    kinds={"python", "diffusers"},
    pool="gpu",
    description=(
        "PNG images of the scene plan's visual prompts (subject, setting, style), in narration "
        "order: the procedural renderer by default (deterministic per prompt and seed), or a "
        "diffusers text-to-image pipeline. Count, size and seed from the request options."
    ),
)
def images(
    context: dg.AssetExecutionContext,
    request: RequestSnapshot,
    script: ScriptManifest,
    image_backend: ImageBackendResource,
    content: ContentStore,
) -> dg.MaterializeResult:
    """Write ``images/image_NN.png``."""
    from PIL import Image

    from avgen_dagster.media.atomic import atomic_path

    opts = request.options
    generator = image_backend.generator()
    folder = content.asset_dir(request.user_id, request.request_id, "images")
    request_dir = folder.parent
    prompts = visual_prompts(script, opts.image_count)
    paths, seeds, arrays = [], [], []
    for i, prompt in enumerate(prompts):
        seed = opts.seed + i
        rgb = generator.generate(prompt, seed=seed, width=opts.image_size, height=opts.image_size)
        path = request_dir / image_name(i)
        with atomic_path(path) as tmp:
            Image.fromarray(rgb).save(tmp, format="PNG")
        paths.append(content.uri_of(path))
        seeds.append(seed)
        arrays.append(rgb)
        context.log.info(f"image {i + 1}/{opts.image_count} ({rgb.shape[1]}x{rgb.shape[0]})")
    content.publish(folder)
    height, width = arrays[0].shape[:2]
    strip = np.concatenate(
        [a[:: max(1, height // 128), :: max(1, width // 128)] for a in arrays], 1
    )
    return dg.MaterializeResult(
        value=ImagesManifest(
            request.request_id,
            paths,
            seeds,
            width,
            height,
            generator.name,
            getattr(generator, "model", generator.name),
        ),
        metadata={
            "request_id": request.request_id,
            "paths": dg.MetadataValue.json(paths),
            "count": len(paths),
            "size": f"{width}x{height}",
            "seeds": dg.MetadataValue.json(seeds),
            "backend": generator.name,
            "model": str(getattr(generator, "model", generator.name)),
            "prompts": dg.MetadataValue.json(prompts),
            "preview": dg.MetadataValue.md(thumbnail_markdown(strip, max_side=640)),
        },
    )


@dg.asset(
    partitions_def=user_partitions,
    group_name=GROUP,
    kinds={"python", "transformers"},
    pool="gpu",
    description=(
        "A music track in the requested genre (else the scene plan's mood) and duration "
        "(procedural composer by default, or "
        "MusicGen), loudness-normalised (−14 LUFS, true peak ≤ −1 dBTP); WAV and AAC (.m4a)."
    ),
)
def music(
    request: RequestSnapshot,
    script: ScriptManifest,
    music_backend: MusicBackendResource,
    content: ContentStore,
) -> dg.MaterializeResult:
    """Write ``music/music.wav`` and ``music/music.m4a``."""
    from avgen_dagster.backends.music import normalize_music
    from avgen_dagster.media.audio_codec import encode_audio_file
    from avgen_dagster.media.audio_io import write_wav

    opts = request.options
    generator = music_backend.generator()
    genre = opts.genre or (script.plan.mood if script.plan is not None else "ambient")
    samples = generator.generate(genre, opts.music_duration_s, seed=opts.seed)
    result = normalize_music(samples, generator.sample_rate, target_lufs=music_backend.target_lufs)
    request_dir = content.asset_dir(request.user_id, request.request_id, "music").parent
    wav = write_wav(request_dir / MUSIC_WAV, result.samples, generator.sample_rate)
    # The delivered AAC is mastered (and measured decoded) to the same target as the WAV.
    m4a = encode_audio_file(wav, request_dir / MUSIC_M4A, target_lufs=music_backend.target_lufs)
    duration = len(result.samples) / generator.sample_rate
    size_bytes = Path(m4a).stat().st_size
    wav_uri, m4a_uri = content.publish(wav)[0], content.publish(m4a)[0]
    composition = getattr(generator, "last_composition", None)
    metadata: dict[str, dg.RawMetadataValue] = {
        "request_id": request.request_id,
        "file": dg.MetadataValue.path(wav_uri),
        "compressed_path": dg.MetadataValue.path(m4a_uri),
        "genre": genre,
        "genre_from": "request" if opts.genre else "scene plan mood",
        "duration_s": dg.MetadataValue.float(round(duration, 3)),
        "sample_rate_hz": generator.sample_rate,
        "integrated_lufs": dg.MetadataValue.float(round(result.after.integrated_lufs, 2)),
        "true_peak_dbtp": dg.MetadataValue.float(round(result.after.true_peak_dbtp, 2)),
        "seed": opts.seed,
        "backend": generator.name,
        "model": str(getattr(generator, "model", generator.name)),
        "size_bytes": size_bytes,
    }
    if composition is not None:
        metadata["bpm"] = dg.MetadataValue.float(round(float(composition.bpm), 2))
        metadata["bars"] = int(composition.bars)
    return dg.MaterializeResult(
        value=MusicManifest(
            request.request_id,
            wav_uri,
            m4a_uri,
            duration,
            generator.sample_rate,
            genre,
            result.after.integrated_lufs,
            result.after.true_peak_dbtp,
            generator.name,
            str(getattr(generator, "model", generator.name)),
            target_lufs=music_backend.target_lufs,
        ),
        metadata=metadata,
    )


@dg.asset(
    partitions_def=user_partitions,
    group_name=GROUP,
    kinds={"python", "diffusers"},
    pool="gpu",
    description=(
        "Short H.264 clips at 24 fps, one per image, prompted by the scene plan: eased "
        "pan-and-zoom by default, or LTX-Video (frames rounded to 8k+1, sides to multiples "
        "of 32)."
    ),
)
def video_clips(
    context: dg.AssetExecutionContext,
    request: RequestSnapshot,
    script: ScriptManifest,
    images: ImagesManifest,
    video_backend: VideoBackendResource,
    content: ContentStore,
) -> dg.MaterializeResult:
    """Write ``video_clips/clip_NN.mp4``."""
    from avgen_dagster.backends.video import write_clip
    from avgen_dagster.media.faces import load_image_rgb

    opts = request.options
    generator = video_backend.generator()
    folder = content.asset_dir(request.user_id, request.request_id, "video_clips")
    paths, durations, first_frame = [], [], None
    prompts = visual_prompts(script, opts.clip_count)
    for i in range(opts.clip_count):
        image = load_image_rgb(content.local_file(images.paths[i % len(images.paths)]))
        if first_frame is None:
            first_frame = image
        out = folder.parent / clip_name(i)
        encoded = write_clip(
            generator, image, prompts[i], out, duration_s=opts.clip_duration_s,
            seed=opts.seed + i, width=images.width, height=images.height,
        )  # fmt: skip
        paths.append(content.uri_of(encoded.path))
        durations.append(encoded.duration_s)
        context.log.info(f"clip {i + 1}/{opts.clip_count}: {encoded.frames} frames")
    content.publish(folder)
    return dg.MaterializeResult(
        value=ClipsManifest(
            request.request_id,
            paths,
            durations,
            generator.fps,
            generator.name,
            str(getattr(generator, "model", generator.name)),
        ),
        metadata={
            "request_id": request.request_id,
            "paths": dg.MetadataValue.json(paths),
            "count": len(paths),
            "durations_s": dg.MetadataValue.json([round(d, 3) for d in durations]),
            "fps": generator.fps,
            "backend": generator.name,
            "model": str(getattr(generator, "model", generator.name)),
            "first_frame": dg.MetadataValue.md(thumbnail_markdown(first_frame)),
        },
    )


@dg.asset(
    partitions_def=user_partitions,
    group_name=GROUP,
    kinds={"ffmpeg", "python"},
    description=(
        "The clips cross-faded (looped or trimmed) to the music's length, music faded in and out, "
        "in one encode pass; fast-start MP4."
    ),
)
def music_video(
    request: RequestSnapshot,
    video_clips: ClipsManifest,
    music: MusicManifest,
    content: ContentStore,
) -> dg.MaterializeResult:
    """Write ``music_video/music_video.mp4``."""
    from avgen_dagster.media.music_video import compose_music_video

    folder = content.asset_dir(request.user_id, request.request_id, "music_video")
    result = compose_music_video(
        [content.local_file(p) for p in video_clips.paths],
        content.local_file(music.wav),
        folder.parent / MUSIC_VIDEO_MP4,
        fps=video_clips.fps,
        target_lufs=music.target_lufs,
    )
    size_bytes = Path(result.path).stat().st_size
    (uri,) = content.publish(result.path)
    return dg.MaterializeResult(
        value=MusicVideoManifest(request.request_id, uri, result.duration_s, music.target_lufs),
        metadata={
            "request_id": request.request_id,
            "file": dg.MetadataValue.path(uri),
            "duration_s": dg.MetadataValue.float(round(result.duration_s, 3)),
            "music_duration_s": dg.MetadataValue.float(round(result.music_duration_s, 3)),
            "clips_used": result.clips_used,
            "frames": result.video_frames,
            "size_bytes": size_bytes,
        },
    )
