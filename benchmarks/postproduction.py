"""Benchmark the post-production chain against the usual ffmpeg-CLI notebook chain.

Inputs (not timed): N segments of S seconds, 512x512 @ 25 fps synthetic moving frames with
speech-like audio at 22.05 kHz and varied loudness, each as an MP4 (like a lip-sync
segment) and as a WAV.

Timed, in one run:

* ours: loudness-normalise every WAV (-16 LUFS, -1 dBTP) + ``stitch_segments`` (one
  decode/filter/encode pass, normalised WAVs as audio) + ``export_hls`` (remux).
* (a) notebook chain with imageio-ffmpeg's ffmpeg CLI: per-clip ``loudnorm`` re-encode,
  per-clip conform re-encode (fps/scale/format), n-1 chained pairwise xfade/acrossfade
  re-encodes, a ``-movflags +faststart`` pass, an HLS re-encode.
* (b) the floor: one libx264 + AAC encode of the final video at the same settings (CLI).
* (b') the same floor through PyAV (the FFmpeg build that ``stitch_segments`` uses).

Targets: ours/(a) <= 0.5, ours/(b) <= 1.3.

Usage: ``.venv/bin/python benchmarks/postproduction.py [--quick] [--segments N]
[--seconds S] [--repeat R] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import scipy.ndimage
import scipy.signal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avgen_dagster.media.audio_io import read_wav, write_wav
from avgen_dagster.media.hls import export_hls, validate_hls_playlist
from avgen_dagster.media.loudness import normalize_loudness
from avgen_dagster.media.probe import probe_media
from avgen_dagster.media.stitch import stitch_segments
from avgen_dagster.media.video_io import encode_segment_mp4

FPS = 25
SIZE = 512
SR = 22050
CROSSFADE_S = 0.24
GOP_S = 2.0
CRF = 20
PRESET = "veryfast"
TARGET_LUFS = -16.0
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
X264_GOP = f"keyint={round(GOP_S * FPS)}:min-keyint={round(GOP_S * FPS)}:scenecut=0:open-gop=0"


def _frames(n: int, seed: int) -> Iterator[np.ndarray]:
    """Smooth random texture panned and modulated, plus a moving disc (like a head)."""
    rng = np.random.default_rng(seed)
    tex = scipy.ndimage.gaussian_filter(rng.random((SIZE * 2, SIZE * 2, 3)), (6, 6, 0))
    tex = ((tex - tex.min()) / np.ptp(tex) * 255).astype(np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(n):
        y0, x0 = (3 * i) % SIZE, (2 * i + seed * 17) % SIZE
        f = tex[y0 : y0 + SIZE, x0 : x0 + SIZE].copy()
        cy, cx = SIZE / 2 + 40 * np.sin(i / 20), SIZE / 2 + 40 * np.cos(i / 25)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < (90 + 10 * np.sin(i / 3)) ** 2
        f[disc] = (220, 180, 150)
        yield f


def _speech(seconds: float, seed: int, gain_db: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    b, a = scipy.signal.butter(4, [100 / (SR / 2), 3400 / (SR / 2)], "band")
    x = scipy.signal.lfilter(b, a, rng.standard_normal(t.size))
    env = (0.5 + 0.5 * np.sin(2 * np.pi * (3.5 + seed % 3) * t)) ** 2
    env *= 0.15 + 0.85 * (np.sin(np.pi * 0.7 * t + seed) > -0.3)
    y = x * env
    return (y / np.abs(y).max() * 10 ** (gain_db / 20)).astype(np.float32)


def make_inputs(workdir: Path, n: int, seconds: float) -> tuple[list[Path], list[Path]]:
    """Write ``n`` segment MP4s and WAVs (varied loudness) under ``workdir/inputs``."""
    d = workdir / "inputs"
    d.mkdir(parents=True, exist_ok=True)
    mp4s, wavs = [], []
    for k in range(n):
        audio = _speech(seconds, k, gain_db=-4.0 - 3.0 * (k % 5))  # peaks -4 .. -16 dBFS
        wavs.append(write_wav(d / f"seg{k:02d}.wav", audio, SR))
        mp4s.append(
            encode_segment_mp4(
                _frames(round(seconds * FPS), k), FPS, audio, SR, d / f"seg{k:02d}.mp4"
            )
        )
    return mp4s, wavs


def _run(args: list[str]) -> None:
    proc = subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {' '.join(args)}\n{proc.stderr[-2000:]}")


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process, its threads and its waited children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


Timing = dict[str, tuple[float, float]]  # stage -> (wall seconds, CPU seconds)


def _timed(stages: Timing, name: str, fn: Callable[[], object]) -> object:
    """Run ``fn``, add its wall-clock and CPU seconds to ``stages[name]``."""
    c0, t0 = _cpu_s(), time.perf_counter()
    result = fn()
    wall, cpu = stages.get(name, (0.0, 0.0))
    stages[name] = (wall + time.perf_counter() - t0, cpu + _cpu_s() - c0)
    return result


def _total(stages: Timing) -> tuple[float, float]:
    return sum(v[0] for v in stages.values()), sum(v[1] for v in stages.values())


def run_ours(mp4s: list[Path], wavs: list[Path], out: Path) -> tuple[Timing, Path]:
    """Loudness-normalise every WAV, stitch in one pass, remux to HLS. Returns stage times."""
    stages: Timing = {}
    norm_dir = out / "normalized"

    def normalise() -> list[Path]:
        paths = []
        for w in wavs:
            x, sr = read_wav(w)
            r = normalize_loudness(x, sr, TARGET_LUFS, -1.0)
            paths.append(write_wav(norm_dir / w.name, r.samples, sr))
        return paths

    normed = _timed(stages, "loudness", normalise)
    final = out / "final.mp4"
    _timed(
        stages,
        "stitch",
        lambda: stitch_segments(
            mp4s, final, crossfade_s=CROSSFADE_S, fps=FPS, gop_s=GOP_S, crf=CRF,
            preset=PRESET, audio=normed,
        ),
    )  # fmt: skip
    hls = _timed(stages, "hls", lambda: export_hls(final, out / "hls", segment_s=6.0))
    problems = validate_hls_playlist(hls.playlist)  # type: ignore[attr-defined]
    if problems:
        raise RuntimeError(f"our HLS output is invalid: {problems}")
    return stages, final


def run_cli_chain(mp4s: list[Path], out: Path) -> Timing:
    """The notebook-style ffmpeg CLI chain (every step a full re-encode)."""
    stages: Timing = {}
    out.mkdir(parents=True, exist_ok=True)
    enc = ["-c:v", "libx264", "-crf", str(CRF), "-preset", PRESET, "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-b:a", "128k", "-ar", "48000"]  # fmt: skip
    loud, conf = [], []
    for k, m in enumerate(mp4s):
        p = out / f"loud{k:02d}.mp4"
        af = f"loudnorm=I={TARGET_LUFS}:TP=-1.0:LRA=11,aresample=48000"
        _timed(
            stages,
            "loudnorm",
            lambda m=m, p=p, af=af: _run(["-i", str(m), "-af", af, *enc, str(p)]),
        )
        loud.append(p)
    for k, m in enumerate(loud):
        p = out / f"conf{k:02d}.mp4"
        vf = f"fps={FPS},scale={SIZE}:{SIZE},format=yuv420p"
        _timed(
            stages, "conform", lambda m=m, p=p, vf=vf: _run(["-i", str(m), "-vf", vf, *enc, str(p)])
        )
        conf.append(p)
    acc, acc_dur = conf[0], float(probe_media(conf[0]).video.duration_s)
    for k in range(1, len(conf)):
        p = out / f"xf{k:02d}.mp4"
        offset = acc_dur - CROSSFADE_S
        fc = (
            f"[0:v][1:v]xfade=transition=fade:duration={CROSSFADE_S}:offset={offset:.4f}[v];"
            f"[0:a][1:a]acrossfade=d={CROSSFADE_S}[a]"
        )
        _timed(
            stages,
            "xfade chain",
            lambda acc=acc, c=conf[k], fc=fc, p=p: _run(
                ["-i", str(acc), "-i", str(c), "-filter_complex", fc, "-map", "[v]",
                 "-map", "[a]", *enc, str(p)]
            ),
        )  # fmt: skip
        acc = p
        acc_dur = acc_dur + float(probe_media(conf[k]).video.duration_s) - CROSSFADE_S
    fast = out / "final.mp4"
    _timed(
        stages,
        "faststart",
        lambda: _run(["-i", str(acc), "-c", "copy", "-movflags", "+faststart", str(fast)]),
    )
    hls = out / "hls"
    hls.mkdir(exist_ok=True)
    _timed(
        stages,
        "hls encode",
        lambda: _run(
            ["-i", str(fast), *enc, "-x264-params", X264_GOP, "-f", "hls", "-hls_time", "6",
             "-hls_playlist_type", "vod", "-hls_list_size", "0",
             "-hls_segment_filename", str(hls / "seg_%03d.ts"), str(hls / "index.m3u8")]
        ),
    )  # fmt: skip
    return stages


def run_floor_cli(final: Path, out: Path) -> None:
    """One libx264 + AAC encode of the final video at the stitch settings (ffmpeg CLI)."""
    _run(["-i", str(final), "-c:v", "libx264", "-crf", str(CRF), "-preset", PRESET,
          "-x264-params", X264_GOP, "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k",
          "-movflags", "+faststart", str(out)])  # fmt: skip


def run_floor_pyav(final: Path, out: Path) -> None:
    """The same single encode through PyAV (decode final -> libx264/AAC), no filters."""
    with (
        av.open(str(final)) as src,
        av.open(str(out), "w", options={"movflags": "+faststart"}) as dst,
    ):
        sv, sa = src.streams.video[0], src.streams.audio[0]
        if (os.cpu_count() or 1) > 4:  # same rule as stitch_segments
            sv.thread_type = "AUTO"
        vs = dst.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = sv.codec_context.width, sv.codec_context.height, "yuv420p"
        vs.codec_context.thread_count = 0
        vs.codec_context.thread_type = "FRAME"
        vs.options = {"crf": str(CRF), "preset": PRESET, "x264-params": X264_GOP}
        as_ = dst.add_stream("aac", rate=48000, layout="mono")
        as_.bit_rate = 128_000
        for packet in src.demux(sv, sa):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    frame.pict_type = av.video.frame.PictureType.NONE
                    dst.mux(vs.encode(frame))
                else:
                    dst.mux(as_.encode(frame))
        dst.mux(vs.encode(None))
        dst.mux(as_.encode(None))


def _table(rows: list[tuple[str, tuple[float, float], str]]) -> str:
    width = max(len(r[0]) for r in rows)
    lines = [f"{'step':<{width}}  {'wall s':>7}  {'CPU s':>7}  note", "-" * (width + 40)]
    lines += [f"{name:<{width}}  {w:7.2f}  {c:7.2f}  {note}" for name, (w, c), note in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark, print a table, return measured seconds and ratios by name.

    Wall-clock times suffer when other processes share the CPU; CPU seconds (this process,
    its threads and its ffmpeg children) measure the work done and are steadier, so both
    are printed and both ratios are checked against the targets.
    """
    parser = argparse.ArgumentParser(description="avgen post-production benchmark")
    parser.add_argument("--quick", action="store_true", help="4 segments of 3 s")
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep the outputs")
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of ours and of the floors (fastest kept)"
    )
    parser.add_argument(
        "--no-demo",
        action="store_true",
        help="skip the per-stage timings of make demo's whole pipeline (SmolLM2 included)",
    )
    args = parser.parse_args(argv)
    n, seconds = (4, 3.0) if args.quick else (args.segments, args.seconds)

    work = args.keep or Path(tempfile.mkdtemp(prefix="avgen-bench-"))
    try:
        t0 = time.perf_counter()
        mp4s, wavs = make_inputs(work, n, seconds)
        print(f"inputs: {n} segments x {seconds:g} s, {SIZE}x{SIZE} @ {FPS} fps, "
              f"speech-like audio {SR} Hz ({time.perf_counter() - t0:.1f} s to make)")  # fmt: skip

        # Ours and the floors run --repeat times, interleaved so that load from other
        # processes hits both alike; each keeps its fastest (wall-clock) repetition.
        ours_runs: list[Timing] = []
        floor_runs: dict[str, list[tuple[float, float]]] = {"cli": [], "pyav": []}
        final = work / "ours0" / "final.mp4"
        for i in range(max(1, args.repeat)):
            timing, final = run_ours(mp4s, wavs, work / f"ours{i}")
            ours_runs.append(timing)
            for name, fn in (("cli", run_floor_cli), ("pyav", run_floor_pyav)):
                one: Timing = {}
                _timed(
                    one,
                    name,
                    lambda fn=fn, name=name, src=final: fn(src, work / f"floor_{name}.mp4"),
                )
                floor_runs[name].append(one[name])
        ours = min(ours_runs, key=lambda t: _total(t)[0])
        floors: Timing = {k: min(v) for k, v in floor_runs.items()}
        chain = run_cli_chain(mp4s, work / "cli")
        info = probe_media(final)
        ours_t, chain_t = _total(ours), _total(chain)

        rows = [(f"ours: {k}", v, "") for k, v in ours.items()]
        rows.append(("ours: total", ours_t, f"final {info.duration_s:.2f} s, "
                     f"A/V drift {info.av_drift_s * 1000:+.1f} ms"))  # fmt: skip
        rows += [(f"(a) cli: {k}", v, "") for k, v in chain.items()]
        rows.append(("(a) cli: total", chain_t, f"{2 * n + n} encodes + 1 copy"))
        rows.append(("(b) floor: one encode (CLI)", floors["cli"], "libx264 + aac, same settings"))
        rows.append(("(b') floor: one encode (PyAV)", floors["pyav"], "same, PyAV's FFmpeg"))
        print(_table(rows))

        results: dict[str, float] = {}
        for prefix, stages in (("ours", ours), ("cli", chain), ("floor", floors)):
            for k, (w, c) in stages.items():
                results[f"{prefix}.{k}.wall_s"] = w
                results[f"{prefix}.{k}.cpu_s"] = c
        results |= {"ours.total.wall_s": ours_t[0], "ours.total.cpu_s": ours_t[1],
                    "cli.total.wall_s": chain_t[0], "cli.total.cpu_s": chain_t[1]}  # fmt: skip
        print()
        for i, kind in enumerate(("wall", "cpu")):
            for label, ref, target in (
                ("ours/(a)", chain_t[i], 0.5),
                ("ours/(b)", floors["cli"][i], 1.3),
                ("ours/(b')", floors["pyav"][i], 1.3),
            ):
                ratio = ours_t[i] / ref
                results[f"ratio.{label}.{kind}"] = ratio
                ok = "OK" if ratio <= target else "MISSED"
                print(f"{label:<10} {kind:<4} {ratio:6.2f}x  (target <= {target}x)  {ok}")
        if not args.no_demo:
            from demo_stages import print_demo_stages, time_demo_pipeline

            demo = time_demo_pipeline()
            print_demo_stages(demo)
            results |= {f"demo.{k}_s": v for k, v in demo.items()}
        return results
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
