"""export_hls (remux only) and validate_hls_playlist, checked with the independent ffmpeg CLI."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest

from avgen_dagster.errors import MediaError
from avgen_dagster.media.hls import export_hls, validate_hls_playlist
from avgen_dagster.media.probe import probe_media
from avgen_dagster.media.stitch import stitch_segments
from avgen_dagster.media.video_io import encode_segment_mp4

FPS = 25
SR = 22050


def moving(n: int, seed: int):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    for i in range(n):
        yield np.roll(base, 2 * i, axis=1)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hls_src")
    t = np.arange(5 * SR) / SR
    segs = [
        encode_segment_mp4(moving(5 * FPS, k), FPS, 0.2 * np.sin(2 * np.pi * 300 * t), SR,
                           d / f"s{k}.mp4")
        for k in range(3)
    ]  # fmt: skip
    return stitch_segments(segs, d / "final.mp4", crossfade_s=0.24, fps=FPS, gop_s=2.0).path


@pytest.fixture(scope="module")
def hls(source: Path, tmp_path_factory: pytest.TempPathFactory):
    return export_hls(source, tmp_path_factory.mktemp("hls_out") / "hls", segment_s=6.0)


def packets(paths: list[Path]) -> tuple[int, int, list[int]]:
    count = size = 0
    keys = []
    for p in paths:
        with av.open(str(p)) as c:
            for pk in c.demux(c.streams.video[0]):
                if pk.size:
                    count += 1
                    size += pk.size
                    keys.append(int(pk.is_keyframe))
    return count, size, keys


def test_playlist_is_valid(hls) -> None:
    assert validate_hls_playlist(hls.playlist) == []
    text = hls.playlist.read_text()
    assert text.startswith("#EXTM3U") and "#EXT-X-ENDLIST" in text
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in text
    assert hls.target_duration_s <= 6
    assert len(hls.segments) == 3
    assert all(d <= hls.target_duration_s + 0.5 for d in hls.segment_durations_s)
    assert sum(hls.segment_durations_s) == pytest.approx(15 - 2 * 0.24, abs=0.05)
    assert all(p.is_file() and p.parent == hls.playlist.parent for p in hls.segments)
    assert not list(hls.playlist.parent.parent.glob(".tmp-*"))


def test_remux_only(source: Path, hls) -> None:
    n_src, bytes_src, _ = packets([source])
    n_hls, bytes_hls, keys = packets(list(hls.segments))
    assert n_hls == n_src
    assert abs(bytes_hls - bytes_src) / bytes_src < 0.05  # Annex B start codes, same payload
    src, seg = probe_media(source), probe_media(hls.segments[0])
    assert (seg.video.codec, seg.video.width, seg.video.height, seg.video.pix_fmt) == (
        src.video.codec, src.video.width, src.video.height, src.video.pix_fmt,
    )  # fmt: skip
    assert (seg.audio.codec, seg.audio.sample_rate) == (src.audio.codec, src.audio.sample_rate)
    assert sum(keys) == 8  # keyframes at 0, 2, ..., 14 s: all kept, none added


def test_ffmpeg_cli_decodes_end_to_end(source: Path, hls) -> None:
    proc = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(hls.playlist),
         "-f", "null", "-"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    frames = int(re.findall(r"frame=\s*(\d+)", proc.stderr)[-1])
    assert frames == probe_media(source).video.frames
    h, m, s = re.findall(r"time=(\d+):(\d+):([\d.]+)", proc.stderr)[-1]
    assert int(h) * 3600 + int(m) * 60 + float(s) == pytest.approx(15 - 0.48, abs=0.1)


def test_validator_catches_broken_playlists(hls, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(hls.playlist.parent, broken)
    pl = broken / "index.m3u8"
    good = pl.read_text()
    pl.write_text(good.replace("#EXT-X-ENDLIST\n", ""))
    assert any("ENDLIST" in p for p in validate_hls_playlist(pl))
    pl.write_text(good.replace("#EXT-X-PLAYLIST-TYPE:VOD\n", ""))
    assert any("PLAYLIST-TYPE" in p for p in validate_hls_playlist(pl))
    pl.write_text(good.replace("#EXT-X-TARGETDURATION:6", "#EXT-X-TARGETDURATION:4"))
    assert any("above target" in p for p in validate_hls_playlist(pl))
    pl.write_text(good.replace("#EXTM3U\n", ""))
    assert validate_hls_playlist(pl)
    pl.write_text(good)
    (broken / hls.segments[1].name).unlink()
    assert any("missing" in p for p in validate_hls_playlist(pl))
    # a segment that starts mid-GOP: drop its first (IDR) video packet
    seg = broken / hls.segments[2].name
    cut = broken / "cut.ts"
    with av.open(str(seg)) as src, av.open(str(cut), "w", format="mpegts") as dst:
        vs = dst.add_stream_from_template(src.streams.video[0])
        for i, pk in enumerate(src.demux(src.streams.video[0])):
            if pk.size and i > 0:
                pk.stream = vs
                dst.mux(pk)
    shutil.move(cut, seg)
    assert any("keyframe" in p and seg.name in p for p in validate_hls_playlist(pl))
    assert validate_hls_playlist(tmp_path / "none.m3u8") == [
        f"playlist not found: {tmp_path / 'none.m3u8'}"
    ]


def test_export_errors(tmp_path: Path) -> None:
    with pytest.raises(MediaError):
        export_hls(tmp_path / "missing.mp4", tmp_path / "out")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(MediaError):
        export_hls(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".tmp-*"))


def test_a_one_frame_last_segment_is_valid(tmp_path: Path) -> None:
    """A stitched 6.04 s at 25 fps with a 2 s GOP (like the demo's 48.04 s narration) leaves a
    last segment of one keyframe, which a decoder returns only when flushed: valid."""
    rng = np.random.default_rng(0)
    frames = (np.full((64, 64, 3), (i * 5) % 255, np.uint8) for i in range(151))
    voice = rng.normal(0, 0.1, int(16000 * 6.04)).astype(np.float32)
    seg = encode_segment_mp4(frames, 25, voice, 16000, tmp_path / "s.mp4")
    stitched = tmp_path / "stitched.mp4"
    stitch_segments([seg], stitched, crossfade_s=0.25, fps=25)
    result = export_hls(stitched, tmp_path / "hls", segment_s=6.0)
    assert [round(d, 2) for d in result.segment_durations_s] == [6.0, 0.04]
    assert validate_hls_playlist(result.playlist) == []
