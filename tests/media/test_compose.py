"""The composed final cut, from a talking head made of real Piper speech: format, GOP,
cutaways at sentence boundaries, burned-in captions, the delivered audio on target
(ffmpeg's ebur128), the same-pass HLS rungs, PiP, streaming memory, bad input."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
import webvtt
from PIL import Image

from avgen_dagster.backends.music import ProceduralMusic
from avgen_dagster.backends.speech import PiperSpeech
from avgen_dagster.errors import InvalidInputError
from avgen_dagster.media.audio_conform import conform_delivered_audio
from avgen_dagster.media.audio_io import write_wav
from avgen_dagster.media.caption_render import CaptionRenderer, CaptionStyle, title_safe_box
from avgen_dagster.media.captions import build_cues, split_sentences
from avgen_dagster.media.compose import ComposeOptions, FinalVideoResult, compose_final_video
from avgen_dagster.media.faces import load_image_rgb, require_face
from avgen_dagster.media.framing import FaceAnchor, Framer, plan_framing
from avgen_dagster.media.hls import validate_hls_playlist
from avgen_dagster.media.hls_ladder import build_hls_ladder
from avgen_dagster.media.probe import is_faststart, keyframe_times, probe_media
from avgen_dagster.media.rungs import RenditionEncoder, RenditionSpec
from avgen_dagster.media.video_io import encode_video_mp4
from avgen_dagster.media.words import WordTiming
from tests.conftest import SAMPLE_PORTRAIT
from tests.media.test_bed import ffmpeg_ebur128

TEXT = (
    "The sky looks blue during the day. Air scatters blue light the most. "
    "Red light passes straight through. At sunset the whole sky turns red. Now you know why."
)
FPS = 25


@dataclass(frozen=True)
class Inputs:
    talking_head: Path
    words: list[WordTiming]
    frames: int
    clip: Path
    image: Path
    music: Path


def _speaker_frames(n: int) -> Iterator[np.ndarray]:
    portrait = load_image_rgb(SAMPLE_PORTRAIT)
    for i in range(n):
        frame = portrait.copy()
        frame[300:306, 200:260] = (40 * i) % 256  # something changes every frame
        yield frame


def _clip_frames(n: int) -> Iterator[np.ndarray]:
    x = np.linspace(0, 1, 640, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, 360, dtype=np.float32)[:, None]
    for i in range(n):
        r = np.sin(6 * x + i / 8) * 0.5 + 0.5 + 0 * y
        g = np.broadcast_to(y, (360, 640))
        b = np.cos(4 * x * y + i / 8) * 0.5 + 0.5
        yield (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    folder = tmp_path_factory.mktemp("compose_in")
    speech = PiperSpeech().synthesize_words(TEXT, seed=7)
    n = round(speech.samples.size / speech.sample_rate * FPS)
    th = encode_video_mp4(
        _speaker_frames(n), FPS, folder / "talking_head.mp4", audio=speech.samples,
        sample_rate=speech.sample_rate, crf=18, gop_s=2.0,
    )  # fmt: skip
    clip = encode_video_mp4(_clip_frames(48), 24, folder / "clip.mp4", gop_s=None).path
    rng = np.random.default_rng(5)
    blobs = (rng.random((24, 36, 3)) * 255).astype(np.uint8)
    image = folder / "still.png"
    Image.fromarray(blobs).resize((900, 600), Image.BICUBIC).save(image)
    gen = ProceduralMusic()
    music = write_wav(folder / "music.wav", gen.generate("lofi", 4.0, seed=3), gen.sample_rate)
    return Inputs(th.path, list(speech.words), th.frames, clip, image, music)


@pytest.fixture(scope="module")
def vertical(
    inputs: Inputs, tmp_path_factory: pytest.TempPathFactory
) -> tuple[FinalVideoResult, int]:
    """Vertical, captions, every 2nd sentence b-roll, music bed, same-pass rungs; peak RAM."""
    folder = tmp_path_factory.mktemp("vertical")
    tracemalloc.start()
    try:
        result = compose_final_video(
            inputs.talking_head, inputs.words, folder / "final.mp4",
            broll=[inputs.clip, inputs.image], music=inputs.music,
            options=ComposeOptions(format="vertical", broll_mode="every_n", broll_every_n=2),
            ladder_dir=folder / "rungs",
        )  # fmt: skip
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


def _frame_at(path: Path, t: float) -> np.ndarray:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for f in c.decode(s):
            if float(f.pts * s.time_base) >= t - 1e-6:
                return f.to_ndarray(format="rgb24")
    raise AssertionError(f"no frame at {t} s in {path}")


def _last_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        last = None
        for last in c.decode(video=0):  # noqa: B007
            pass
        assert last is not None
        return last.to_ndarray(format="rgb24")


def test_vertical_cut_is_fast_start_h264_aac_with_a_fixed_closed_gop(vertical, inputs) -> None:
    result, _ = vertical
    info = probe_media(result.path)
    assert (info.video.codec, info.audio.codec) == ("h264", "aac")
    assert (info.video.width, info.video.height) == (1080, 1920) == (result.width, result.height)
    assert result.frames == inputs.frames and info.video.frames == inputs.frames
    assert abs(info.audio.duration_s - info.video.duration_s) <= 1 / FPS + 0.025
    assert is_faststart(result.path) and result.faststart
    keys = keyframe_times(result.path)
    assert keys[0] == 0.0 and np.allclose(np.diff(keys), 2.0), keys
    assert result.gop_frames == 50 and result.face_found
    assert result.upscale_factor == pytest.approx(1920 / 512)  # stated: the portrait is 512 px


def test_cutaways_at_sentence_boundaries_and_speaker_first_and_last(vertical, inputs) -> None:
    result, _ = vertical
    sentences = split_sentences(inputs.words)
    assert len(sentences) == 5
    assert [c.sentence for c in result.cutaways] == [1, 3]  # every 2nd, never first or last
    assert [c.source for c in result.cutaways] == [inputs.clip, inputs.image]
    for c in result.cutaways:
        before, this = sentences[c.sentence - 1], sentences[c.sentence]
        assert before.end_s - 0.04 <= c.start_s <= this.start_s + 0.04  # in the pause
        if c.sentence + 1 < len(sentences):
            assert c.end_s <= sentences[c.sentence + 1].start_s + 0.04
    for frame in (_frame_at(result.path, 0.2), _last_frame(result.path)):
        face = FaceAnchor.from_landmarks(require_face(frame, "speaker frame"))
        assert abs(face.eye_y / 1920 - 1 / 3) < 0.03
    cut = result.cutaways[0]
    broll = _frame_at(result.path, (cut.start_s + cut.end_s) / 2)
    framer = Framer(plan_framing(640, 360, 1080, 1920, fit="cover"))
    upper = slice(0, 1200)  # above the captions
    best = min(  # the cutaway shows the clip (at some point of it), cover-framed
        np.abs(broll[upper].astype(int) - framer.apply(f)[upper]).mean() for f in _clip_frames(48)
    )
    assert best < 12, best
    speaker = _frame_at(result.path, 0.2)
    assert np.abs(broll[upper].astype(int) - speaker[upper]).mean() > 40


def test_captions_are_burned_in_the_safe_area_and_sidecars_match(vertical, inputs) -> None:
    result, _ = vertical
    cues = webvtt.read(str(result.vtt)).captions
    assert len(cues) == result.cue_count > 0 and result.srt.is_file()
    words = iter(inputs.words)
    for cue in cues:  # each cue appears with its first word, from Piper's alignment
        first = next(words)
        onset = first.start_s
        for _ in range(len(cue.text.split()) - 1):
            next(words)
        assert abs(cue.start_time.in_milliseconds() / 1000 - onset) <= 0.1, (cue.text, onset)
    # pixel difference against the same frame without captions, only inside the caption area
    track = build_cues(
        inputs.words, rules=ComposeOptions().rules(FPS), duration_s=inputs.frames / FPS
    )
    t = (track.cues[0].start_s + track.cues[0].end_s) / 2
    renderer = CaptionRenderer(track, 1080, 1920, CaptionStyle())
    x0, y0, x1, y1 = renderer.layer(renderer.cue_index_at(t)).box
    portrait = load_image_rgb(SAMPLE_PORTRAIT)
    anchor = FaceAnchor.from_landmarks(require_face(portrait, "portrait"))
    plain = Framer(plan_framing(512, 512, 1080, 1920, anchor)).apply(
        list(_speaker_frames(round(t * FPS) + 1))[-1]
    )
    shown = _frame_at(result.path, t)
    differs = np.abs(shown.astype(int) - plain).max(axis=-1) > 60
    inside = differs[y0:y1, x0:x1].sum()
    assert inside > 2000
    assert differs.sum() - inside < 0.01 * inside
    sx0, sy0, sx1, sy1 = title_safe_box(1080, 1920)
    assert sx0 <= x0 and x1 <= sx1 and sy0 <= y0 and y1 <= sy1


def test_delivered_audio_is_on_target_by_ffmpeg(vertical) -> None:
    result, _ = vertical
    lufs, peak = ffmpeg_ebur128(result.path)
    assert abs(lufs + 16.0) <= 0.5, lufs
    assert peak <= -1.0, peak
    assert result.integrated_lufs == pytest.approx(lufs, abs=0.3)
    assert result.true_peak_dbtp <= -1.0 and result.audio_in_spec
    assert result.music_bed and result.music_looped
    assert result.bed_lu_measured == pytest.approx(result.bed_lu_below_voice, abs=1.5)


def test_frames_are_streamed_not_held(vertical, inputs) -> None:
    _, peak = vertical
    whole = inputs.frames * 1080 * 1920 * 3
    assert peak < 0.25 * whole, (peak / 2**20, whole / 2**20)


def test_same_pass_rungs_make_an_aligned_ladder(vertical, tmp_path: Path) -> None:
    result, _ = vertical
    assert sorted(result.rendition_videos) == ["360p", "720p"]
    ladder = build_hls_ladder(
        result.path, tmp_path / "hls", captions_vtt=result.vtt,
        pre_encoded=result.rendition_videos,
    )  # fmt: skip
    assert [r.copied for r in ladder.renditions] == [True, False, False]
    # a usable ladder: every smaller rung needs less bandwidth (peak and average)
    for key in ("bandwidth", "average_bandwidth"):
        values = [getattr(r, key) for r in ladder.renditions]
        assert values == sorted(values, reverse=True) and values[1] < 0.8 * values[0], values
    keys = []
    for r in ladder.renditions:
        assert validate_hls_playlist(r.playlist) == []
        pts = []
        for seg in r.segments:
            with av.open(str(seg)) as c:
                pts += [p.pts for p in c.demux(c.streams.video[0]) if p.is_keyframe]
        keys.append(pts)
    assert keys[0] == keys[1] == keys[2]


def test_picture_in_picture_keeps_the_speaker_in_an_inset(inputs, tmp_path: Path) -> None:
    result = compose_final_video(
        inputs.talking_head, inputs.words, tmp_path / "pip.mp4", broll=[inputs.image],
        options=ComposeOptions(broll_mode="pip", broll_every_n=2),
    )  # fmt: skip
    assert result.broll_mode == "pip" and len(result.cutaways) == 2
    cut = result.cutaways[0]
    frame = _frame_at(result.path, (cut.start_s + cut.end_s) / 2)
    inset = frame[96:700, 600:1030]  # top right, inside the title-safe margin
    face = require_face(np.ascontiguousarray(inset), "the inset")
    assert face.height > 60
    assert np.any(np.all(frame[80:700, 600:1040] == 255, axis=-1))  # its white border
    with pytest.raises(InvalidInputError):
        require_face(np.ascontiguousarray(frame[900:1500, 60:1000]), "the b-roll")


def test_landscape_without_extras_and_untimed_words(inputs, tmp_path: Path) -> None:
    words = list(inputs.words)
    s = split_sentences(words)[2]
    for i in range(s.first_word, s.end_word):  # the voice gave no alignment for this one
        words[i] = WordTiming(words[i].word, words[i].start_s, words[i].end_s, timed=False)
    result = compose_final_video(
        inputs.talking_head, words, tmp_path / "landscape.mp4",
        options=ComposeOptions(format="landscape", captions=False, broll_mode="none"),
    )  # fmt: skip
    assert (result.width, result.height) == (1920, 1080) and result.cutaways == ()
    assert result.captions_sentence_fallback and result.untimed_words == s.end_word - s.first_word
    assert not result.captions_burned and not result.music_bed
    text = " ".join(c.text.replace("\n", " ") for c in webvtt.read(str(result.vtt)).captions)
    assert text.split() == TEXT.split()
    face = FaceAnchor.from_landmarks(require_face(_frame_at(result.path, 1.0), "frame"))
    assert abs(face.eye_y / 1080 - 1 / 3) < 0.03
    lufs, peak = ffmpeg_ebur128(result.path)
    assert abs(lufs + 16.0) <= 0.5 and peak <= -1.0


def test_bad_input_is_refused_before_any_output(inputs, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="format"):
        ComposeOptions(format="portrait")
    with pytest.raises(InvalidInputError, match="b-roll mode"):
        ComposeOptions(broll_mode="split")  # type: ignore[arg-type]
    out = tmp_path / "x.mp4"
    with pytest.raises(InvalidInputError, match="not found"):
        compose_final_video(inputs.talking_head, inputs.words, out, broll=[tmp_path / "no.mp4"])
    with pytest.raises(InvalidInputError, match="word timings"):
        compose_final_video(inputs.talking_head, [], out)
    bad_font = tmp_path / "bad.ttf"
    bad_font.write_bytes(b"nope")
    style = CaptionStyle(font_path=bad_font)
    with pytest.raises(InvalidInputError, match=r"bad\.ttf"):
        compose_final_video(
            inputs.talking_head, inputs.words, out, options=ComposeOptions(caption_style=style)
        )
    assert not out.exists()


def test_delivered_audio_out_of_spec_is_corrected_once_video_untouched(tmp_path: Path) -> None:
    sr = 48_000
    t = np.arange(3 * sr) / sr
    loud = 0.9 * np.sin(2 * np.pi * 440 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    loud = loud.astype(np.float32)  # about -6 LUFS, peaks near 0 dBTP: out of spec
    encoder = RenditionEncoder(
        RenditionSpec("test", 320, 240), tmp_path / "loud.mp4", FPS, audio=loud, sample_rate=sr,
        faststart=True,
    )  # fmt: skip
    for frame in _clip_frames(75):
        encoder.add(frame)
    mp4 = encoder.close()

    def video_packets() -> list[bytes]:
        with av.open(str(mp4)) as c:
            return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]

    before = video_packets()
    result = conform_delivered_audio(mp4, loud, sr, target_lufs=-16.0, ceiling_dbtp=-1.0)
    assert result.corrected and result.in_spec
    lufs, peak = ffmpeg_ebur128(mp4)
    assert abs(lufs + 16.0) <= 0.5 and peak <= -1.0, (lufs, peak)
    assert video_packets() == before and is_faststart(mp4)
    again = conform_delivered_audio(mp4, loud, sr, target_lufs=-16.0)
    assert not again.corrected  # what is in spec is left alone
