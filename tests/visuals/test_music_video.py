"""The music video composer and the compressed audio copy."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from avgen_dagster.backends.landscape import ProceduralImages
from avgen_dagster.backends.music import ProceduralMusic, normalize_music
from avgen_dagster.backends.video import PanZoomClips, write_clip
from avgen_dagster.devtools.ffmpeg_cli import ffmpeg_decode_info
from avgen_dagster.errors import MediaError
from avgen_dagster.media.audio_codec import encode_audio_file
from avgen_dagster.media.audio_io import write_wav
from avgen_dagster.media.music_video import compose_music_video
from avgen_dagster.media.probe import mp4_top_level_boxes

FPS = 24


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path, float]:
    root = tmp_path_factory.mktemp("mv")
    clips = []
    for i, prompt in enumerate(["forest", "sea at night", "desert"]):
        img = ProceduralImages().generate(prompt, seed=i, width=96, height=64)
        res = write_clip(
            PanZoomClips(fps=FPS),
            img,
            prompt,
            root / f"clip{i}.mp4",
            duration_s=1.0,
            seed=i,
            width=96,
            height=64,
        )
        clips.append(res.path)
    duration = 4.3
    music = ProceduralMusic(sample_rate=32000).generate("pop", duration, seed=1)
    music = normalize_music(music, 32000).samples
    return clips, write_wav(root / "music.wav", music, 32000), duration


def _decode_audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        chunks = [f.to_ndarray().reshape(-1) for f in c.decode(stream)]
        return np.concatenate(chunks).astype(np.float32), stream.rate


def test_music_video_length_streams_fades_faststart(material, tmp_path: Path) -> None:
    clips, music, duration = material
    res = compose_music_video(
        clips, music, tmp_path / "mv.mp4", crossfade_s=0.25, fade_in_s=0.5, fade_out_s=1.0, fps=FPS
    )
    assert res.video_frames == round(duration * FPS)
    assert abs(res.duration_s - duration) <= 1 / FPS
    assert res.clips_used > len(clips)  # 3 x 1 s clips looped to cover 4.3 s
    assert res.crossfade_frames == 6
    top = [kind for kind, _, _ in mp4_top_level_boxes(res.path)]
    assert top.index("moov") < top.index("mdat")  # fast start
    with av.open(str(res.path)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.audio[0].codec_context.name == "aac"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == res.video_frames
    assert frames[0].mean() < 0.3 * frames[len(frames) // 2].mean()  # fade from black
    assert frames[-1].mean() < 0.3 * frames[len(frames) // 2].mean()  # fade to black
    info = ffmpeg_decode_info(res.path)
    assert info.decoded_s == pytest.approx(duration, abs=1.5 / FPS)
    pcm, sr = _decode_audio(res.path)
    assert pcm.size / sr == pytest.approx(duration, abs=0.05)
    rms = lambda s: float(np.sqrt(np.mean(s**2)))  # noqa: E731
    mid = rms(pcm[pcm.size // 3 : 2 * pcm.size // 3])
    assert rms(pcm[2048 : 2048 + sr // 20]) < 0.2 * mid  # AAC priming skipped
    assert rms(pcm[-sr // 20 :]) < 0.2 * mid


def test_music_video_trims_when_clips_are_longer(material, tmp_path: Path) -> None:
    clips, _, _ = material
    wav = write_wav(tmp_path / "short.wav", 0.1 * np.sin(np.linspace(0, 900, 48000)), 32000)
    res = compose_music_video(clips, wav, tmp_path / "short.mp4", fps=FPS)
    assert res.video_frames == 36 and res.clips_used == 2
    with pytest.raises(MediaError, match="at least one clip"):
        compose_music_video([], wav, tmp_path / "x.mp4")


@pytest.mark.parametrize("suffix,codec", [(".m4a", "aac"), (".mp3", "mp3")])
def test_compressed_audio_copy(material, tmp_path: Path, suffix: str, codec: str) -> None:
    _, music, duration = material
    out = encode_audio_file(music, tmp_path / f"music{suffix}", bitrate=128_000)
    assert out.is_file() and not list(tmp_path.glob(".tmp-*"))
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name.startswith(codec)
    info = ffmpeg_decode_info(out)
    assert info.decoded_s == pytest.approx(duration, abs=0.06)
    with pytest.raises(MediaError, match="audio format"):
        encode_audio_file(music, tmp_path / "music.xyz")
