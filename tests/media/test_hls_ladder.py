"""HLS ladder: every rendition decodes (ffmpeg CLI), keyframes aligned, master attributes right
(parsed with m3u8), WebVTT segments with the timestamp map; and hls.js (npm) in Debian's
Chromium plays the master playlist and lists the subtitle track."""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import imageio_ffmpeg
import m3u8
import numpy as np
import pytest
import webvtt

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.media.captions import build_cues, write_webvtt
from avgen_dagster.media.hls import validate_hls_playlist
from avgen_dagster.media.hls_ladder import (
    HlsLadderResult,
    RenditionSpec,
    build_hls_ladder,
    ladder_for,
)
from avgen_dagster.media.video_io import encode_video_mp4
from avgen_dagster.media.words import WordTiming
from tests.conftest import IN_CI, REPO

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
FPS, SECONDS, W, H = 25, 7.0, 1080, 1920
CHROMIUM = Path("/usr/bin/chromium")
HLSJS_DIR = REPO / "test-artifacts" / "hlsjs"


def _frames(n: int) -> Iterator[np.ndarray]:
    base = np.zeros((H, W, 3), np.uint8)
    base[..., 0] = np.linspace(0, 255, W, dtype=np.uint8)[None, :]
    base[..., 1] = np.linspace(0, 255, H, dtype=np.uint8)[:, None]
    for i in range(n):
        frame = np.roll(base, 12 * i, axis=1)
        frame[800:1100, 300:780] = (i * 9) % 256  # a changing block
        yield frame


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 1080x1920 final video (GOP 2 s, AAC) and its WebVTT sidecar."""
    folder = tmp_path_factory.mktemp("ladder_src")
    t = np.arange(round(SECONDS * 48_000)) / 48_000
    audio = 0.2 * np.sin(2 * np.pi * 330 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    mp4 = encode_video_mp4(
        _frames(round(SECONDS * FPS)), FPS, folder / "final.mp4", audio=audio.astype(np.float32),
        crf=30, preset="veryfast", gop_s=2.0,
    ).path  # fmt: skip
    words = [
        WordTiming(w, 0.3 + 0.45 * i, 0.3 + 0.45 * i + 0.35)
        for i, w in enumerate(
            ["One", "caption", "crosses", "the", "six", "second", "boundary", "right", "here."]
        )
    ]
    words += [WordTiming("Later.", 5.8, 6.6)]
    vtt = write_webvtt(build_cues(words), folder / "final.vtt")
    return mp4, vtt


@pytest.fixture(scope="module")
def ladder(source: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> HlsLadderResult:
    mp4, vtt = source
    # the rungs at the source's own CRF, as compose_final_video encodes them
    return build_hls_ladder(mp4, tmp_path_factory.mktemp("hls") / "hls", captions_vtt=vtt, crf=30)


def _keyframe_pts(rendition_dir: Path) -> list[int]:
    out = []
    for seg in sorted(rendition_dir.glob("segment_*.ts")):
        with av.open(str(seg)) as c:
            vs = c.streams.video[0]
            out += [p.pts for p in c.demux(vs) if p.pts is not None and p.is_keyframe]
    return out


def _sps_codec(segment: Path) -> str:
    """avc1.PPCCLL from the first SPS NAL unit (type 7) in a TS segment's H.264 stream."""
    with av.open(str(segment)) as c:
        vs = c.streams.video[0]
        data = next(bytes(p) for p in c.demux(vs) if p.size)
    i = data.find(b"\x00\x00\x01\x67")
    assert i >= 0, "no SPS in the first packet"
    return "avc1." + data[i + 4 : i + 7].hex()


def test_ladder_for_the_formats() -> None:
    assert [(r.name, r.width, r.height) for r in ladder_for(1080, 1920)] == [
        ("1080p", 1080, 1920), ("720p", 720, 1280), ("360p", 360, 640),
    ]  # fmt: skip
    assert [(r.width, r.height) for r in ladder_for(1920, 1080)] == [
        (1920, 1080), (1280, 720), (640, 360),
    ]  # fmt: skip
    assert [(r.width, r.height) for r in ladder_for(1080, 1080)][1:] == [(720, 720), (360, 360)]
    assert [r.name for r in ladder_for(720, 1280)] == ["720p", "360p"]  # no upscaled rung


def test_every_rendition_decodes_fully_with_ffmpeg(ladder: HlsLadderResult) -> None:
    assert [(r.name, r.width, r.height, r.copied) for r in ladder.renditions] == [
        ("1080p", 1080, 1920, True), ("720p", 720, 1280, False), ("360p", 360, 640, False),
    ]  # fmt: skip
    for r in ladder.renditions:
        proc = subprocess.run(
            [FFMPEG, "-hide_banner", "-v", "error", "-stats", "-xerror", "-i", str(r.playlist),
             "-map", "0:v:0", "-map", "0:a:0", "-f", "null", "-"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        frames = int(re.findall(r"frame=\s*(\d+)", proc.stderr)[-1])
        assert frames == round(SECONDS * FPS), (r.name, frames)
        assert validate_hls_playlist(r.playlist) == [], r.name
        assert max(r.segment_durations_s) <= 6.0 + 1e-6


def test_keyframes_are_aligned_across_renditions(ladder: HlsLadderResult) -> None:
    keys = {r.name: _keyframe_pts(r.playlist.parent) for r in ladder.renditions}
    top = keys["1080p"]
    assert len(top) == 4  # 0, 2, 4, 6 s
    assert np.allclose(np.diff(top), 2.0 * 90_000)
    assert all(k == top for k in keys.values()), keys


def test_master_playlist_attributes(ladder: HlsLadderResult) -> None:
    master = m3u8.load(str(ladder.master))
    assert master.is_variant and master.is_independent_segments
    (subs,) = [m for m in master.media if m.type == "SUBTITLES"]
    assert (subs.group_id, subs.language, subs.default, subs.autoselect) == (
        "subs", "en", "YES", "YES",
    )  # fmt: skip
    assert (ladder.master.parent / subs.uri).is_file()
    assert len(master.playlists) == 3
    for variant, r in zip(master.playlists, ladder.renditions, strict=True):
        info = variant.stream_info
        segs = m3u8.load(str(ladder.master.parent / variant.uri)).segments
        sizes = [
            (ladder.master.parent / variant.uri).parent.joinpath(s.uri).stat().st_size for s in segs
        ]
        peak = max(8 * b / s.duration for b, s in zip(sizes, segs, strict=True))
        average = 8 * sum(sizes) / sum(s.duration for s in segs)
        assert info.bandwidth == pytest.approx(peak, abs=1)
        assert info.average_bandwidth == pytest.approx(average, abs=1)
        assert info.bandwidth >= info.average_bandwidth > 0
        assert info.resolution == (r.width, r.height)
        assert float(info.frame_rate) == pytest.approx(25.0)
        assert info.subtitles == "subs"
        video, audio = info.codecs.split(",")
        assert video == _sps_codec(ladder.master.parent.joinpath(variant.uri).parent / segs[0].uri)
        assert audio == "mp4a.40.2"
    assert [p.stream_info.bandwidth for p in master.playlists] == sorted(
        (p.stream_info.bandwidth for p in master.playlists), reverse=True
    )


def test_subtitle_segments_carry_the_timestamp_map(
    ladder: HlsLadderResult, source: tuple[Path, Path]
) -> None:
    with av.open(str(ladder.renditions[0].segments[0])) as c:
        vs = c.streams.video[0]
        first = min(p.pts for p in c.demux(vs) if p.pts is not None)
    assert ladder.mpegts_start == first  # 90 kHz: the stream time base of MPEG-TS
    playlist = m3u8.load(str(ladder.subtitles_playlist))
    assert [s.duration for s in playlist.segments] == list(ladder.renditions[0].segment_durations_s)
    assert playlist.playlist_type == "vod" and playlist.is_endlist
    sidecar = webvtt.read(str(source[1])).captions
    seen = set()
    starts = np.cumsum([0.0, *ladder.renditions[0].segment_durations_s])
    for k, seg in enumerate(ladder.subtitle_segments):
        lines = seg.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "WEBVTT"
        assert lines[1] == f"X-TIMESTAMP-MAP=MPEGTS:{first},LOCAL:00:00:00.000"
        for cap in webvtt.read(str(seg)).captions:
            assert cap.start_in_seconds < starts[k + 1] and cap.end_in_seconds >= starts[k] - 1
            seen.add((cap.start, cap.text))
    assert seen == {(c.start, c.text) for c in sidecar}  # every cue, none invented
    crossing = [c for c in sidecar if c.start_in_seconds < 6 <= c.end_time.in_seconds()]
    assert crossing, "the fixture should have a cue across the 6 s boundary"


def test_bad_segment_length_and_pre_encoded_size(source: tuple[Path, Path], tmp_path: Path) -> None:
    mp4, _ = source
    with pytest.raises(InvalidInputError, match="multiple of the GOP"):
        build_hls_ladder(mp4, tmp_path / "a", segment_s=5.0)
    result = build_hls_ladder(mp4, tmp_path / "b", renditions=[RenditionSpec("1080p", 1080, 1920)])
    assert [r.name for r in result.renditions] == ["1080p"] and result.subtitles_playlist is None


# --- a real player -------------------------------------------------------------------------

PAGE = """<!doctype html><html><body>
<video id="v" muted playsinline width="360" height="640"></video>
<script src="hls.min.js"></script>
<script>
window.errors = []; window.levels = 0;
const video = document.getElementById('v');
const hls = new Hls({ subtitleDisplay: true });
window.hls = hls;
hls.on(Hls.Events.ERROR, (e, d) => window.errors.push({fatal: d.fatal, details: d.details}));
hls.on(Hls.Events.MANIFEST_PARSED, (e, d) => { window.levels = d.levels.length; video.play(); });
hls.loadSource('hls/master.m3u8');
hls.attachMedia(video);
</script></body></html>"""


def _require_browser() -> None:
    missing = [] if CHROMIUM.exists() else [str(CHROMIUM)]
    if shutil.which("npm") is None:
        missing.append("npm")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if missing and not IN_CI:
        pytest.skip(f"the hls.js test needs {' and '.join(missing)} (apt install chromium npm)")
    assert not missing, f"CI must provide {missing} for the hls.js test"


def _hlsjs() -> Path:
    """hls.js 1.x from npm, installed once into test-artifacts/hlsjs."""
    dist = HLSJS_DIR / "node_modules" / "hls.js" / "dist" / "hls.min.js"
    if not dist.is_file():
        HLSJS_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(HLSJS_DIR), "--no-audit", "--no-fund",
             "--loglevel=error", "hls.js@1"],
            check=True, timeout=300, env={**os.environ, "npm_config_update_notifier": "false"},
        )  # fmt: skip
    return dist


@pytest.mark.slow
def test_hlsjs_in_chromium_plays_the_master_and_lists_subtitles(
    ladder: HlsLadderResult, tmp_path: Path
) -> None:
    _require_browser()
    from playwright.sync_api import sync_playwright

    site = tmp_path / "site"
    shutil.copytree(ladder.master.parent, site / "hls")
    shutil.copy(_hlsjs(), site / "hls.min.js")
    (site / "index.html").write_text(PAGE, encoding="utf-8")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM), headless=True,
                args=["--no-sandbox", "--disable-gpu",
                      "--autoplay-policy=no-user-gesture-required"],
            )  # fmt: skip
            try:
                page = browser.new_page()
                page.goto(url)
                page.wait_for_function(
                    "() => document.getElementById('v').currentTime > 2.5"
                    " || window.errors.some(e => e.fatal)", timeout=60_000,
                )  # fmt: skip
                page.evaluate("() => { window.hls.subtitleTrack = 0; }")
                page.wait_for_function(
                    "() => { const t = document.getElementById('v').textTracks;"
                    " return t.length > 0 && t[0].cues && t[0].cues.length > 0; }",
                    timeout=30_000,
                )  # fmt: skip
                state = page.evaluate(
                    "() => { const v = document.getElementById('v'); const t = v.textTracks[0];"
                    " return { time: v.currentTime, errors: window.errors, levels: window.levels,"
                    " subs: window.hls.subtitleTracks.map(s => ({lang: s.lang, name: s.name})),"
                    " cue: t.cues[0].startTime, video0: v.buffered.start(0) }; }"
                )
            finally:
                browser.close()
    finally:
        server.shutdown()
    assert not [e for e in state["errors"] if e["fatal"]], state["errors"]
    assert state["time"] > 2.5 and state["levels"] == 3
    assert state["subs"] == [{"lang": "en", "name": "English"}]
    first_cue = webvtt.read(str(ladder.subtitle_segments[0])).captions[0]
    # The timestamp map puts the cue on the video's timeline: hls.js shows the first video
    # frame at buffered.start(0) (audio, with its AAC priming, starts earlier), and the cue
    # its sidecar time after that frame.
    shown = state["cue"] - state["video0"]
    assert abs(shown - first_cue.start_time.in_milliseconds() / 1000) < 0.02, state
