"""Benchmark the Wav2Lip backend and the streaming driving-video pipeline.

Measures (random weights: the published ones are not downloadable here):

1. Wav2Lip network throughput, frames/s, on the CPU at batch 16 (float32).
2. ``--gpu``: frames/s at batch 128 with float16 autocast on CUDA (prints "no CUDA" when
   there is none). Target >= 1,000 frames/s on an H100.
3. Peak memory (RSS) and wall time of the full driving-video pipeline (scan with face
   detection on every frame, segments, Wav2Lip on face frames, paste-back, libx264 + AAC
   encode) on synthetic 720p driving videos of 1 and 5 minutes (the sample portrait pasted
   on a 1280x720 background with slight motion, a 2 s no-face stretch every 15 s), each in
   a fresh subprocess that reports its own ``ru_maxrss``. Target < 1.5 GiB (1,536 MB) in
   every run, and not growing with length, defined as the longest run's peak within 10 % of
   the shortest run's (printed side by side with PASS/FAIL). ``--skip-model-long`` skips
   the network on the 5-minute run (memory only; said in the output); the 1-minute run
   always takes the real path.

Usage: ``.venv/bin/python benchmarks/lipsync.py [--gpu] [--minutes 1 5]
[--skip-model-long] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FPS = 25
SR = 16000


def network_throughput(batch: int, device: str, fp16: bool, iters: int) -> float:
    """Frames per second of the bare network (random weights) at ``batch``."""
    import torch

    from avgen_dagster.backends.wav2lip.model import Wav2Lip

    torch.manual_seed(0)
    model = Wav2Lip().to(device).eval()
    face = torch.rand(batch, 6, 96, 96, device=device)
    mel = torch.rand(batch, 1, 80, 16, device=device) * 8 - 4
    ctx = (
        torch.autocast(device_type="cuda", dtype=torch.float16)
        if fp16
        else torch.autocast(device_type="cpu", enabled=False)
    )
    with torch.inference_mode(), ctx:
        for _ in range(2):
            model(mel, face)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(iters):
            model(mel, face)
        if device == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    return batch * iters / dt


def make_driving_video(path: Path, seconds: float) -> None:
    """720p synthetic driving video: portrait with slight motion, no-face stretches."""
    import av
    import cv2

    from avgen_dagster.media.faces import load_image_rgb

    portrait = load_image_rgb(REPO / "samples" / "portrait.png")
    yy, xx = np.mgrid[0:720, 0:1280]
    bg = np.stack([60 + xx * 80 // 1280, 70 + yy * 60 // 720, 90 + 0 * xx], -1).astype(np.uint8)
    noface = bg.copy()
    cv2.rectangle(noface, (300, 200), (980, 520), (200, 180, 160), -1)
    n = round(seconds * FPS)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 1280, 720, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(n):
            t = i / FPS
            if t % 15.0 >= 13.0:  # 2 s without a face every 15 s
                img = noface
            else:
                img = bg.copy()
                x = 384 + round(24 * np.sin(2 * np.pi * t / 4.0))
                y = 104 + round(8 * np.sin(2 * np.pi * t / 3.0))
                img[y : y + 512, x : x + 512] = portrait
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))


def child(video: Path, seconds: float, skip_model: bool, out_mp4: Path) -> None:
    """Run the full pipeline once and print a JSON line with timings and peak RSS."""
    from avgen_dagster.backends.wav2lip.inference import Wav2LipLipsync
    from avgen_dagster.devtools.tiny_models import synthetic_voice
    from avgen_dagster.media.driving_video import render_driving_video, scan_driving_video

    ck = out_mp4.parent / "wav2lip_random.pth"
    audio = synthetic_voice(seconds, 22050, seed=None)
    t0 = time.perf_counter()
    if skip_model:
        scan = scan_driving_video(video)
        res = render_driving_video(video, audio, 22050, out_mp4, process=None, scan=scan)
    else:
        backend = Wav2LipLipsync(ck, batch_size=16)
        res = backend.animate_video(video, audio, 22050, out_mp4, mode="loop")
    wall = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "frames": res.n_frames,
                "face_frames": res.face_frames,
                "segments": len(res.segments),
                "duration_s": res.duration_s,
                "audio_s": res.audio_duration_s,
                "detect_ms": 1000 * res.detect_s / res.source_frames,
                "wall_s": wall,
                "peak_rss_mb": rss_mb,
            }
        )
    )


RSS_LIMIT_MB = 1536.0  # 1.5 GiB
GROWTH_TOLERANCE = 0.10  # "not growing": the longest run's peak within 10 % of the shortest's


def summary(rows: list[dict], network_fps: float | None = None) -> str:
    """Side-by-side table of the runs, the peak-RSS ratio and the PASS/FAIL verdicts."""
    a, b = rows[0], rows[-1]
    names = [f"{r['minutes']:g} min" for r in rows]
    lines = [
        "",
        f"{'':<26}" + "".join(f"{n:>14}" for n in names),
        f"{'peak RSS (MB)':<26}" + "".join(f"{r['peak_rss_mb']:>14,.0f}" for r in rows),
        f"{'wall (s)':<26}" + "".join(f"{r['wall_s']:>14,.1f}" for r in rows),
        f"{'frames':<26}" + "".join(f"{r['frames']:>14,}" for r in rows),
        f"{'frames/s (whole path)':<26}"
        + "".join(f"{r['frames'] / r['wall_s']:>14.1f}" for r in rows),
        f"{'Wav2Lip network':<26}"
        + "".join(f"{'skipped' if r['skip'] else 'on':>14}" for r in rows),
    ]
    if network_fps is not None:
        lines.append(f"Wav2Lip network alone, CPU, batch 16, fp32: {network_fps:.1f} frames/s")
    ratio = b["peak_rss_mb"] / a["peak_rss_mb"]
    peak = max(r["peak_rss_mb"] for r in rows)
    lines.append(
        f"peak RSS {a['minutes']:g} min -> {b['minutes']:g} min: {a['peak_rss_mb']:,.0f} -> "
        f"{b['peak_rss_mb']:,.0f} MB, ratio {ratio:.3f} ({100 * (ratio - 1):+.1f} %)"
    )
    lines.append(
        f"target peak RSS < {RSS_LIMIT_MB:,.0f} MB (1.5 GiB) in every run: "
        f"{'PASS' if peak < RSS_LIMIT_MB else 'FAIL'} (max {peak:,.0f} MB)"
    )
    same_path = a["skip"] == b["skip"]
    verdict = "PASS" if ratio <= 1.0 + GROWTH_TOLERANCE else "FAIL"
    if not same_path:
        verdict = "n/a (the runs did not take the same path: --skip-model-long)"
    lines.append(
        f"not growing with length (defined as: the {b['minutes']:g}-min peak within "
        f"{100 * GROWTH_TOLERANCE:.0f} % of the {a['minutes']:g}-min peak, ratio <= "
        f"{1 + GROWTH_TOLERANCE:.2f}): {verdict}"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true", help="only: frames/s at batch 128 fp16 on CUDA")
    ap.add_argument("--minutes", type=float, nargs="+", default=[1.0, 5.0])
    ap.add_argument("--skip-model-long", action="store_true", help="no network beyond 1 min")
    ap.add_argument("--keep", type=Path, default=None, help="keep the videos in this folder")
    ap.add_argument("--child", nargs=4, metavar=("VIDEO", "SECONDS", "SKIP", "OUT"))
    args = ap.parse_args()
    if args.child:
        video, secs, skip, out = args.child
        child(Path(video), float(secs), skip == "1", Path(out))
        return
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            print("no CUDA")
            return
        fps = network_throughput(128, "cuda", True, 50)
        print(f"Wav2Lip GPU ({torch.cuda.get_device_name()}), batch 128, fp16: {fps:,.0f} frames/s")
        return

    import torch

    from avgen_dagster.devtools.tiny_models import save_wav2lip_checkpoint

    fps = network_throughput(16, "cpu", False, 6)
    print(
        f"Wav2Lip network, CPU ({torch.get_num_threads()} threads), batch 16, fp32: "
        f"{fps:.1f} frames/s"
    )
    root = args.keep or Path(tempfile.mkdtemp(prefix="lipsync-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    save_wav2lip_checkpoint(root / "wav2lip_random.pth", seed=0)
    rows = []
    for minutes in args.minutes:
        seconds = 60.0 * minutes
        video = root / f"driving_{minutes:g}min_720p.mp4"
        t0 = time.perf_counter()
        if not video.exists():
            make_driving_video(video, seconds)
        gen_s = time.perf_counter() - t0
        skip = args.skip_model_long and minutes > 1.0
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(video),
            str(seconds),
            "1" if skip else "0",
            str(root / f"out_{minutes:g}min.mp4"),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr[-3000:])
            raise SystemExit(f"child failed for {minutes:g} min")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        info.update(minutes=minutes, skip=skip, gen_s=gen_s)
        rows.append(info)
        path = "scan + pass-through (NO Wav2Lip: memory only)" if skip else "full Wav2Lip path"
        print(
            f"{minutes:g} min 720p driving video ({path}): peak RSS {info['peak_rss_mb']:.0f} MB, "
            f"wall {info['wall_s']:.1f} s ({info['frames'] / info['wall_s']:.1f} frames/s), "
            f"{info['frames']} frames, {info['face_frames']} in face segments, "
            f"{info['segments']} segments, face detection {info['detect_ms']:.1f} ms/frame, "
            f"output {info['duration_s']:.3f} s for {info['audio_s']:.3f} s of audio "
            f"(video generated in {gen_s:.0f} s)"
        )
    if len(rows) >= 2:
        print(summary(rows, fps))
    if args.keep is None:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
