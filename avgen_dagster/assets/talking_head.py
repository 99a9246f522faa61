"""The talking-head chain: request → script → tts_clips → normalized_audio → lipsync_segments
→ stitched_mp4 → hls, every asset partitioned by ``user_id``.

Each asset is thin: it reads its upstream manifest, calls ``media/`` or a backend, writes its
files atomically under ``<content root>/<user_id>/<request_id>/<asset>/``, publishes them
(uploads, when the content store is an object store) and returns a manifest of file URIs
(paths on a local store) with metadata for the Dagster UI.
"""

import json
import socket
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np

from avgen_dagster.assets.manifests import (
    AudioClip,
    AudioManifest,
    HlsManifest,
    RequestSnapshot,
    ScriptManifest,
    SegmentsManifest,
    VideoManifest,
    VideoSegment,
)
from avgen_dagster.assets.previews import db_json, db_metadata, thumbnail_markdown
from avgen_dagster.errors import InvalidInputError
from avgen_dagster.media.atomic import atomic_path
from avgen_dagster.options import parse_options
from avgen_dagster.outputs import (
    HLS_PLAYLIST,
    PLAN_JSON,
    SCRIPT_TXT,
    SEGMENTS_JSON,
    TALKING_HEAD_MP4,
    is_driving_video_name,
)
from avgen_dagster.partitions import user_partitions
from avgen_dagster.resources import (
    AppDatabaseResource,
    ContentStore,
    LipsyncBackendResource,
    MediaChainResource,
    SpeechBackendResource,
    TextBackendResource,
)
from avgen_dagster.runs import (
    WORKER_HOST_TAG,
    WORKER_PID_TAG,
    WORKER_STARTED_TAG,
    parent_run_id,
    request_id_of_run,
)
from avgen_dagster.store import status
from avgen_dagster.store.requests import get_request

if TYPE_CHECKING:
    from avgen_dagster.backends.lipsync import LipsyncBackend

GROUP = "talking_head"
PREVIEW_FRAME_INDEX = 12  # 0.5 s in at 25 fps: usually mid-word, mouth open


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _tag_worker(context: dg.AssetExecutionContext) -> None:
    """Record where this run's worker process lives, so a lost worker can be told from a slow
    one (``lost_run_sensor``)."""
    import psutil

    me = psutil.Process()
    context.instance.add_run_tags(
        context.run.run_id,
        {
            WORKER_HOST_TAG: socket.gethostname(),
            WORKER_PID_TAG: str(me.pid),
            WORKER_STARTED_TAG: f"{me.create_time():.3f}",
        },
    )


@dg.asset(
    partitions_def=user_partitions,
    group_name=GROUP,
    kinds={"sqlite", "python"},
    description=(
        "Snapshot of the request this run works on (run tag `avgen/request_id`): prompt or "
        "script, face source, voice reference and typed options as intake stored them. "
        "Records the run on the request (a re-execution of a failed run counts as a retry)."
    ),
)
def request(
    context: dg.AssetExecutionContext, app_db: AppDatabaseResource, content: ContentStore
) -> dg.MaterializeResult:
    """Read the request row; write ``request/request.json``."""
    user_id = context.partition_key
    request_id = request_id_of_run(context.instance, context.run)
    with app_db.get().session() as s:
        if get_request(s, request_id).user_id != user_id:
            raise InvalidInputError(f"request {request_id} is not user {user_id!r}'s")
        req = status.start_run(
            s, request_id, context.run.run_id, parent_run_id=parent_run_id(context.run)
        )
        snapshot = RequestSnapshot(
            request_id=req.request_id,
            user_id=req.user_id,
            prompt=req.prompt,
            script=req.script,
            portrait_path=req.portrait_path or "",
            driving_video=is_driving_video_name(req.portrait_path or ""),
            options=parse_options(req.options),
            attempt=req.attempt,
            voice_reference_path=req.voice_reference_path,
        )
    _tag_worker(context)
    content.local_file(snapshot.portrait_path)  # ContentStoreError names a missing input
    if snapshot.voice_reference_path:
        content.local_file(snapshot.voice_reference_path)
    out = content.asset_dir(user_id, request_id, "request") / "request.json"
    _write_text(out, json.dumps({**asdict(snapshot), "options": snapshot.options.to_json()}))
    (out_uri,) = content.publish(out)
    return dg.MaterializeResult(
        value=snapshot,
        metadata={
            "request_id": request_id,
            "attempt": snapshot.attempt,
            "source": "script" if snapshot.script is not None else "prompt",
            "prompt": dg.MetadataValue.md(snapshot.prompt or "_(user's own script)_"),
            "portrait": dg.MetadataValue.path(snapshot.portrait_path),
            "driving_video": snapshot.driving_video,
            "voice_reference": snapshot.voice_reference_path or "none (the backend's voice)",
            "options": dg.MetadataValue.json(snapshot.options.to_json()),
            "file": dg.MetadataValue.path(out_uri),
        },
    )


@dg.asset(
    partitions_def=user_partitions,
    group_name=GROUP,
    kinds={"transformers", "python"},
    description=(
        "The scene plan and its narration: written by the text backend (SmolLM2 by default, or "
        "an OpenAI-compatible endpoint) from the prompt, or the user's own script; per sentence "
        "a visual prompt and a b-roll hint, a music mood and a title; the narration cleaned and "
        "split into speakable segments."
    ),
)
def script(
    context: dg.AssetExecutionContext,
    request: RequestSnapshot,
    text_backend: TextBackendResource,
    content: ContentStore,
) -> dg.MaterializeResult:
    """Write ``script/script.txt``, ``script/segments.json`` and ``script/plan.json``."""
    from avgen_dagster.backends.textproc import split_segments

    opts = request.options
    if request.script is not None:
        backend = "verbatim"  # the user's own words; visual prompts derived from them
        plan = text_backend.plan_for_script(request.script)
    else:
        backend = text_backend.script_writer(opts.llm).name
        context.log.info(f"Writing a plan of up to {opts.max_words} words with {backend}")
        plan = text_backend.plan_for_prompt(
            request.prompt or "", max_words=opts.max_words, llm=opts.llm
        )
    text = plan.narration
    segments = split_segments(text)
    folder = content.asset_dir(request.user_id, request.request_id, "script")
    request_dir = folder.parent
    _write_text(request_dir / SEGMENTS_JSON, json.dumps(segments, indent=2))
    _write_text(request_dir / PLAN_JSON, plan.model_dump_json(indent=2))
    _write_text(request_dir / SCRIPT_TXT, text)
    content.publish(folder)
    script_uri = content.uri_of(request_dir / SCRIPT_TXT)
    numbered = "\n".join(f"{i + 1}. {seg}" for i, seg in enumerate(segments))
    scenes = "\n".join(
        f"| {i + 1} | {sc.sentence} | {sc.visual.text} | {sc.broll} |"
        for i, sc in enumerate(plan.scenes)
    )
    return dg.MaterializeResult(
        value=ScriptManifest(
            request_id=request.request_id,
            text=text,
            segments=segments,
            backend=backend,
            path=script_uri,
            plan=plan,
        ),
        metadata={
            "request_id": request.request_id,
            "title": plan.title,
            "script": dg.MetadataValue.md(text),
            "segments": dg.MetadataValue.md(numbered),
            "scene_plan": dg.MetadataValue.md(
                "| # | sentence | visual prompt | b-roll |\n|---|---|---|---|\n" + scenes
            ),
            "mood": plan.mood,
            "segment_count": len(segments),
            "word_count": len(text.split()),
            "backend": backend,
            "file": dg.MetadataValue.path(script_uri),
        },
    )


@dg.asset(
    partitions_def=user_partitions,
    group_name=GROUP,
    kinds={"piper", "python"},
    description=(
        "One WAV per script segment from the speech backend (Piper by default; Coqui XTTS "
        "clones the request's voice reference)."
    ),
)
def tts_clips(
    context: dg.AssetExecutionContext,
    script: ScriptManifest,
    request: RequestSnapshot,
    speech_backend: SpeechBackendResource,
    content: ContentStore,
) -> dg.MaterializeResult:
    """Synthesize each segment to ``tts_clips/segment_NNN.wav``, with its word timings.

    A request with a voice reference hands it to the backend to clone; a backend that cannot
    clone, or a reference that fails the checks, fails the step (the request is marked Failed
    with that reason) rather than speaking in another voice."""
    from avgen_dagster.media.audio_io import write_wav

    # Seeded by the request: the same request and seed give bit-identical audio.
    opts = request.options
    reference = request.voice_reference_path
    synth = speech_backend.synthesizer(
        seed=opts.seed,
        language=opts.language,
        words_per_minute=opts.words_per_minute,
        reference_wav=str(content.local_file(reference)) if reference else None,
    )
    folder = content.asset_dir(request.user_id, request.request_id, "tts_clips")
    clips: list[AudioClip] = []
    for i, text in enumerate(script.segments):
        samples, rate, words = synth.synthesize_words(text)
        path = folder / f"segment_{i:03d}.wav"
        write_wav(path, samples, rate)
        duration = len(samples) / rate
        clips.append(AudioClip(content.uri_of(path), duration, rate, words=tuple(words)))
        context.log.info(f"segment {i + 1}/{len(script.segments)}: {duration:.2f} s")
    content.publish(folder)
    total = sum(c.duration_s for c in clips)
    return dg.MaterializeResult(
        value=AudioManifest(request_id=request.request_id, clips=clips),
        metadata={
            "request_id": request.request_id,
            "clip_count": len(clips),
            "total_duration_s": dg.MetadataValue.float(round(total, 3)),
            "durations_s": dg.MetadataValue.json([round(c.duration_s, 3) for c in clips]),
            "sample_rate_hz": synth.sample_rate,
            "backend": synth.name,
            "voice_reference": reference or "none (the backend's voice)",
            "seed": request.options.seed,
            "words": sum(len(c.words) for c in clips),
            "words_untimed": sum(not w.timed for c in clips for w in c.words),
            "folder": dg.MetadataValue.path(content.uri_of(folder)),
        },
    )


@dg.asset(
    partitions_def=user_partitions,
    group_name=GROUP,
    kinds={"python"},
    description=(
        "Each clip normalised to the integrated loudness target (ITU-R BS.1770-4 / EBU R128, "
        "default −16 LUFS) with a true-peak limiter (≤ −1 dBTP)."
    ),
)
def normalized_audio(
    tts_clips: AudioManifest,
    request: RequestSnapshot,
    media: MediaChainResource,
    content: ContentStore,
) -> dg.MaterializeResult:
    """Write ``normalized_audio/segment_NNN.wav`` at the loudness target."""
    from avgen_dagster.media.audio_io import read_wav, write_wav
    from avgen_dagster.media.loudness import normalize_loudness

    target = request.options.target_lufs
    folder = content.asset_dir(request.user_id, request.request_id, "normalized_audio")
    clips: list[AudioClip] = []
    for clip in tts_clips.clips:
        samples, sr = read_wav(content.local_file(clip.path))
        result = normalize_loudness(
            samples, sr, target_lufs=target, max_true_peak_dbtp=media.max_true_peak_dbtp
        )
        path = folder / Path(clip.path).name
        write_wav(path, result.samples, sr)
        clips.append(
            AudioClip(
                content.uri_of(path),
                len(result.samples) / sr,
                sr,
                integrated_lufs=result.after.integrated_lufs,
                true_peak_dbtp=result.after.true_peak_dbtp,
                words=clip.words,  # gain only: the timing is the voice's
            )
        )
    content.publish(folder)
    lufs = [c.integrated_lufs for c in clips if c.integrated_lufs is not None]
    peaks = [c.true_peak_dbtp for c in clips if c.true_peak_dbtp is not None]
    return dg.MaterializeResult(
        value=AudioManifest(request_id=request.request_id, clips=clips, target_lufs=target),
        metadata={
            "request_id": request.request_id,
            "target_lufs": dg.MetadataValue.float(target),
            "integrated_lufs_min": db_metadata(min(lufs)),
            "integrated_lufs_max": db_metadata(max(lufs)),
            "true_peak_dbtp_max": db_metadata(max(peaks)),
            "per_clip": dg.MetadataValue.json(
                [
                    {
                        "clip": Path(c.path).name,
                        "lufs": db_json(c.integrated_lufs),
                        "true_peak_dbtp": db_json(c.true_peak_dbtp),
                    }
                    for c in clips
                ]
            ),
            "folder": dg.MetadataValue.path(content.uri_of(folder)),
        },
    )


@dg.asset(
    partitions_def=user_partitions,
    group_name=GROUP,
    kinds={"mediapipe", "python"},
    pool="gpu",
    description=(
        "One MP4 per segment: the portrait's mouth driven by that segment's normalised audio "
        "(landmark animation by default), 25 fps, with the audio."
    ),
)
def lipsync_segments(
    context: dg.AssetExecutionContext,
    normalized_audio: AudioManifest,
    request: RequestSnapshot,
    lipsync_backend: LipsyncBackendResource,
    media: MediaChainResource,
    content: ContentStore,
) -> dg.MaterializeResult:
    """Write ``lipsync_segments/segment_NNN.mp4``."""
    from avgen_dagster.media.audio_io import read_wav
    from avgen_dagster.media.faces import load_image_rgb
    from avgen_dagster.media.video_io import encode_segment_mp4

    backend = lipsync_backend.lipsync()
    if request.driving_video:
        return _lipsync_driving_video(context, normalized_audio, request, backend, content)
    portrait = load_image_rgb(content.local_file(request.portrait_path))
    folder = content.asset_dir(request.user_id, request.request_id, "lipsync_segments")
    segments: list[VideoSegment] = []
    preview_frame: np.ndarray | None = None
    for i, clip in enumerate(normalized_audio.clips):
        audio, sr = read_wav(content.local_file(clip.path))
        frames = 0

        def counted(it: Iterator[np.ndarray], first: bool) -> Iterator[np.ndarray]:
            # Count frames as they stream to the encoder; keep one early frame as a preview.
            nonlocal frames, preview_frame
            for frame in it:
                if first and frames == PREVIEW_FRAME_INDEX:
                    preview_frame = frame
                frames += 1
                yield frame

        path = folder / f"segment_{i:03d}.mp4"
        encode_segment_mp4(
            counted(backend.animate(portrait, audio, sr), i == 0),
            backend.fps,
            audio,
            sr,
            path,
            crf=18,
        )
        segments.append(VideoSegment(content.uri_of(path), frames / backend.fps, frames))
        context.log.info(f"segment {i + 1}/{len(normalized_audio.clips)}: {frames} frames")
    content.publish(folder)
    metadata: dict[str, dg.RawMetadataValue] = {
        "request_id": request.request_id,
        "segment_count": len(segments),
        "frames": sum(s.frames for s in segments),
        "fps": backend.fps,
        "total_duration_s": dg.MetadataValue.float(round(sum(s.duration_s for s in segments), 3)),
        "backend": backend.name,
        "folder": dg.MetadataValue.path(content.uri_of(folder)),
    }
    if preview_frame is not None:
        metadata["preview"] = dg.MetadataValue.md(thumbnail_markdown(preview_frame))
    return dg.MaterializeResult(
        value=SegmentsManifest(
            request_id=request.request_id, segments=segments, fps=backend.fps, backend=backend.name
        ),
        metadata=metadata,
    )


def _lipsync_driving_video(
    context: dg.AssetExecutionContext,
    normalized_audio: AudioManifest,
    request: RequestSnapshot,
    backend: "LipsyncBackend",
    content: ContentStore,
) -> dg.MaterializeResult:
    """A driving video is continuous: lip-sync it once to the whole narration (the clips
    joined end to end) instead of restarting it for every segment."""
    from avgen_dagster.backends.lipsync import VideoLipsyncBackend
    from avgen_dagster.media.audio_io import read_wav, write_wav

    if not isinstance(backend, VideoLipsyncBackend):
        raise InvalidInputError(
            f"a driving video needs a lip-sync backend that handles video (wav2lip); "
            f"{backend.name!r} animates still portraits only"
        )
    clips = [read_wav(content.local_file(c.path)) for c in normalized_audio.clips]
    rate = clips[0][1]
    audio = np.concatenate([samples for samples, _ in clips])
    folder = content.asset_dir(request.user_id, request.request_id, "lipsync_segments")
    narration = write_wav(folder / "narration.wav", audio, rate)
    mode = request.options.driving_mode
    result = backend.animate_video(
        content.local_file(request.portrait_path),
        audio,
        rate,
        folder / "segment_000.mp4",
        mode=mode,
    )
    content.publish(folder)
    context.log.info(
        f"driving video: {result.n_frames} frames at {float(result.fps):.3f} fps, "
        f"{result.face_frames} lip-synced, {len(result.segments)} face/no-face segments"
    )
    return dg.MaterializeResult(
        value=SegmentsManifest(
            request_id=request.request_id,
            segments=[
                VideoSegment(content.uri_of(result.output), result.duration_s, result.n_frames)
            ],
            fps=float(result.fps),
            backend=backend.name,
            audio=content.uri_of(narration),
        ),
        metadata={
            "request_id": request.request_id,
            "segment_count": 1,
            "frames": result.n_frames,
            "face_frames": result.face_frames,
            "driving_segments": dg.MetadataValue.json(
                [[s.start, s.stop, s.face] for s in result.segments]
            ),
            "mode": mode,
            "fps": float(result.fps),
            "total_duration_s": dg.MetadataValue.float(round(result.duration_s, 3)),
            "backend": backend.name,
        },
    )


def _clip_starts(
    segments: SegmentsManifest, audio: AudioManifest, crossfade_frames: tuple[int, ...]
) -> tuple[float, ...]:
    """Where each narration clip starts in the stitched MP4, seconds: each segment after the
    previous one less the cross-fade (frames); a driving video's one segment carries the clips
    end to end."""
    if segments.audio is not None:  # one continuous narration (driving video)
        durations = [c.duration_s for c in audio.clips]
        return tuple(float(sum(durations[:i])) for i in range(len(durations)))
    joins = len(segments.segments) - 1
    fades = [*crossfade_frames, *[0] * (joins - len(crossfade_frames))]  # none: no fades
    starts, frames = [0.0], 0
    for seg, fade in zip(segments.segments[:-1], fades, strict=True):
        frames += seg.frames - fade
        starts.append(frames / segments.fps)
    return tuple(starts)


@dg.asset(
    partitions_def=user_partitions,
    group_name=GROUP,
    kinds={"ffmpeg", "python"},
    description=(
        "The segments joined with video and audio cross-fades in one H.264/AAC encode, fixed "
        "GOP for HLS, fast-start MP4."
    ),
)
def stitched_mp4(
    lipsync_segments: SegmentsManifest,
    normalized_audio: AudioManifest,
    request: RequestSnapshot,
    media: MediaChainResource,
    content: ContentStore,
) -> dg.MaterializeResult:
    """Write ``stitched_mp4/talking_head.mp4``."""
    from avgen_dagster.media.delivery import measure_delivered_audio
    from avgen_dagster.media.probe import is_faststart, probe_media
    from avgen_dagster.media.stitch import stitch_segments

    crossfade = request.options.crossfade_s
    content.asset_dir(request.user_id, request.request_id, "stitched_mp4")
    out = content.request_dir(request.user_id, request.request_id) / TALKING_HEAD_MP4
    stitched = stitch_segments(
        [content.local_file(s.path) for s in lipsync_segments.segments],
        out,
        crossfade_s=crossfade,
        fps=lipsync_segments.fps,
        gop_s=media.gop_s,
        crf=media.crf,
        preset=media.preset,
        # The lossless normalised WAVs, not the segments' AAC: one audio encode, not two.
        audio=[content.local_file(lipsync_segments.audio)]
        if lipsync_segments.audio
        else [content.local_file(c.path) for c in normalized_audio.clips],
        # Mastered so the delivered AAC decodes on target and under the true-peak ceiling.
        target_lufs=request.options.target_lufs,
        max_true_peak_dbtp=media.max_true_peak_dbtp,
    )
    info = probe_media(out)
    loud = measure_delivered_audio(out)  # the AAC the user receives, decoded
    (out_uri,) = content.publish(out)
    manifest = VideoManifest(
        request_id=request.request_id,
        path=out_uri,
        duration_s=info.duration_s,
        video_duration_s=info.video.duration_s if info.video else 0.0,
        audio_duration_s=info.audio.duration_s if info.audio else 0.0,
        av_drift_s=info.av_drift_s,
        faststart=is_faststart(out),
        target_lufs=request.options.target_lufs,
        clip_starts_s=_clip_starts(lipsync_segments, normalized_audio, stitched.crossfade_frames),
    )
    return dg.MaterializeResult(
        value=manifest,
        metadata={
            "request_id": request.request_id,
            "file": dg.MetadataValue.path(out_uri),
            "duration_s": dg.MetadataValue.float(round(info.duration_s, 3)),
            "video_duration_s": dg.MetadataValue.float(round(manifest.video_duration_s, 3)),
            "audio_duration_s": dg.MetadataValue.float(round(manifest.audio_duration_s, 3)),
            "av_drift_s": dg.MetadataValue.float(round(info.av_drift_s, 4)),
            "integrated_lufs": db_metadata(loud.integrated_lufs),
            "true_peak_dbtp": db_metadata(loud.true_peak_dbtp),
            "crossfade_s": dg.MetadataValue.float(crossfade),
            "segment_count": len(lipsync_segments.segments),
            "faststart": manifest.faststart,
            "size_bytes": out.stat().st_size,
        },
    )


@dg.asset(
    partitions_def=user_partitions,
    group_name=GROUP,
    kinds={"ffmpeg", "python"},
    description="HLS VOD rendition of the stitched MP4 by remuxing (no re-encode), ≤ 6 s segments.",
)
def hls(
    stitched_mp4: VideoManifest,
    request: RequestSnapshot,
    media: MediaChainResource,
    content: ContentStore,
) -> dg.MaterializeResult:
    """Write ``hls/index.m3u8`` and its ``.ts`` segments (the folder appears whole)."""
    from avgen_dagster.media.hls import export_hls

    playlist_path = content.request_dir(request.user_id, request.request_id) / HLS_PLAYLIST
    out_dir = playlist_path.parent
    result = export_hls(
        content.local_file(stitched_mp4.path), out_dir, segment_s=media.hls_segment_s
    )
    content.publish(out_dir)  # segments first, the playlist last
    playlist = content.uri_of(result.playlist)
    return dg.MaterializeResult(
        value=HlsManifest(
            request_id=request.request_id,
            playlist=playlist,
            segments=[content.uri_of(p) for p in result.segments],
            target_duration_s=result.target_duration_s,
            target_lufs=stitched_mp4.target_lufs,
        ),
        metadata={
            "request_id": request.request_id,
            "playlist": dg.MetadataValue.path(playlist),
            "segment_count": len(result.segments),
            "target_duration_s": dg.MetadataValue.float(result.target_duration_s),
            "segment_durations_s": dg.MetadataValue.json(
                [round(d, 3) for d in result.segment_durations_s]
            ),
        },
    )
