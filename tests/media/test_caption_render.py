"""Burned-in captions: visible only in the caption area, inside the 90 % title-safe box, the
spoken word in the highlight colour, fonts from matplotlib's wheel, clear font errors."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.media import i420
from avgen_dagster.media.caption_render import (
    CaptionRenderer,
    CaptionStyle,
    default_font_path,
    highlighted_word,
    title_safe_box,
)
from avgen_dagster.media.captions import CaptionRules, build_cues
from avgen_dagster.media.words import WordTiming

HIGHLIGHT = (255, 212, 0)


def words_of(text: str, start: float = 0.5, each: float = 0.4) -> list[WordTiming]:
    return [
        WordTiming(w, start + i * each, start + i * each + each * 0.8)
        for i, w in enumerate(text.split())
    ]


def background(w: int, h: int) -> np.ndarray:
    """A textured frame (so nothing is accidentally equal to the text colours)."""
    rng = np.random.default_rng(7)
    base = np.full((h, w, 3), (40, 90, 140), np.uint8)
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def near(frame: np.ndarray, rgb: tuple[int, int, int], tol: int = 12) -> np.ndarray:
    return np.all(np.abs(frame.astype(int) - np.array(rgb)) <= tol, axis=-1)


@pytest.mark.parametrize(("w", "h"), [(1080, 1920), (1920, 1080), (1080, 1080)])
def test_caption_is_visible_only_inside_its_area_within_title_safe(w: int, h: int) -> None:
    words = words_of("The sky looks blue during the day because air scatters blue light.")
    track = build_cues(words, rules=CaptionRules(max_chars_per_line=26))
    renderer = CaptionRenderer(track, w, h)
    t = words[2].start_s + 0.05
    plain = background(w, h)
    drawn = renderer.render(plain.copy(), t)
    changed = np.any(drawn != plain, axis=-1)
    assert changed.sum() > 2000  # the text is there
    index = renderer.cue_index_at(t)
    assert index is not None
    x0, y0, x1, y1 = renderer.layer(index).box
    outside = changed.copy()
    outside[y0:y1, x0:x1] = False
    assert not outside.any()  # nothing changed outside the caption's area
    sx0, sy0, sx1, sy1 = title_safe_box(w, h)
    ys, xs = np.nonzero(changed)
    assert xs.min() >= sx0 and xs.max() < sx1 and ys.min() >= sy0 and ys.max() < sy1
    assert (sx0, sy0) == (round(0.05 * w), round(0.05 * h))
    # bottom position: the caption sits in the lower part of the safe area
    assert ys.mean() > 0.6 * h


def test_spoken_word_is_highlighted_and_moves_along() -> None:
    words = words_of("Sunlight contains every colour")  # one line
    track = build_cues(words)
    renderer = CaptionRenderer(track, 1080, 1920)
    centroids = []
    for k in (0, 2, 3):
        frame = renderer.render(background(1080, 1920), words[k].start_s + 0.01)
        mask = near(frame, HIGHLIGHT)
        assert mask.sum() > 300, k
        centroids.append(np.nonzero(mask)[1].mean())
        cue = track.cue_at(words[k].start_s + 0.01)
        assert cue is not None and highlighted_word(cue, words[k].start_s + 0.01) == k
    assert centroids[0] < centroids[1] < centroids[2]
    # the rest of the text is white
    frame = renderer.render(background(1080, 1920), words[2].start_s + 0.01)
    assert near(frame, (255, 255, 255), 8).sum() > 3 * near(frame, HIGHLIGHT).sum() / 2


def test_untimed_cue_has_no_highlight() -> None:
    words = [WordTiming(w.word, w.start_s, w.end_s, timed=False) for w in words_of("Hello there.")]
    track = build_cues(words)
    assert track.sentence_fallback
    renderer = CaptionRenderer(track, 1080, 1080)
    frame = renderer.render(background(1080, 1080), track.cues[0].start_s + 0.3)
    assert near(frame, (255, 255, 255), 8).sum() > 200
    assert near(frame, HIGHLIGHT).sum() == 0


def test_long_lines_shrink_to_stay_inside_title_safe() -> None:
    long_word = "Pneumonoultramicroscopicsilicovolcanoconiosis"  # one word, 45 characters
    words = words_of(f"{long_word} is long. ABCDEFGHIJ KLMNOPQRSTU VWXYZABCDEF GHIJKLMNOPQR")
    track = build_cues(words)
    style = CaptionStyle(size_frac=0.09, position="top")
    for w, h in [(1080, 1920), (1920, 1080)]:
        renderer = CaptionRenderer(track, w, h, style)
        sx0, sy0, sx1, sy1 = title_safe_box(w, h)
        for i in range(len(track.cues)):
            layer = renderer.layer(i)
            x0, y0, x1, y1 = layer.box
            assert sx0 <= x0 and x1 <= sx1 and sy0 <= y0 and y1 <= sy1, (i, layer.box)
            assert y0 == sy0  # top position
        assert renderer.layer(0).font_px < round(0.09 * h)  # shrunk to fit


def test_center_position_and_style_validation() -> None:
    track = build_cues(words_of("Centre me please."))
    renderer = CaptionRenderer(track, 1080, 1920, CaptionStyle(position="center"))
    x0, y0, x1, y1 = renderer.layer(0).box
    assert abs((y0 + y1) / 2 - 960) <= 2 and abs((x0 + x1) / 2 - 540) <= 2
    with pytest.raises(InvalidInputError, match="position"):
        CaptionStyle(position="left")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="highlight_color"):
        CaptionStyle(highlight_color=(300, 0, 0))
    with pytest.raises(InvalidInputError, match="size_frac"):
        CaptionStyle(size_frac=0.5)


def test_default_font_comes_from_matplotlib_and_bad_fonts_are_named(tmp_path: Path) -> None:
    font = default_font_path()
    assert font.is_file() and Path(matplotlib.get_data_path()) in font.parents
    broken = tmp_path / "broken.ttf"
    broken.write_bytes(b"this is not a font")
    track = build_cues(words_of("Hi."))
    with pytest.raises(InvalidInputError, match=r"broken\.ttf"):
        CaptionRenderer(track, 640, 360, CaptionStyle(font_path=broken))
    with pytest.raises(InvalidInputError, match="not found"):
        CaptionStyle(font_path=tmp_path / "missing.ttf").validate()
    other = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSerif.ttf"
    frame = CaptionRenderer(track, 640, 360, CaptionStyle(font_path=other)).render(
        background(640, 360), 0.6
    )
    assert near(frame, HIGHLIGHT).sum() > 20


def test_render_rejects_wrong_frames_and_leaves_frames_without_cue_alone() -> None:
    track = build_cues(words_of("Hi there.", start=2.0))
    renderer = CaptionRenderer(track, 640, 360)
    frame = background(640, 360)
    assert np.array_equal(renderer.render(frame.copy(), 0.1), frame)
    with pytest.raises(InvalidInputError, match="uint8"):
        renderer.render(np.zeros((360, 640, 3), np.float32), 2.1)


def test_i420_rendering_matches_rgb_rendering_and_changes_only_the_caption_area() -> None:
    words = words_of("Sunlight contains every colour of the rainbow")
    track = build_cues(words, rules=CaptionRules(max_chars_per_line=26))
    renderer = CaptionRenderer(track, 1080, 1920)
    t = words[3].start_s + 0.01
    plain = background(1080, 1920)
    expected = i420.from_rgb(renderer.render(plain.copy(), t))
    before = i420.from_rgb(plain)
    drawn = renderer.render_i420(before.copy(), t)
    diff = np.abs(drawn.astype(int) - expected)
    # equal but for chroma subsampling at glyph edges (blend-then-subsample vs the reverse)
    assert diff.mean() < 0.2 and np.percentile(diff, 99.9) <= 12
    changed = i420.planes(drawn)[0] != i420.planes(before)[0]
    x0, y0, x1, y1 = renderer.layer(renderer.cue_index_at(t)).box
    assert changed.sum() > 2000 and not changed[:y0].any() and not changed[y1:].any()
    assert x0 % 2 == y0 % 2 == x1 % 2 == y1 % 2 == 0  # chroma-aligned
    with pytest.raises(InvalidInputError, match="I420"):
        renderer.render_i420(np.zeros((1920, 1080), np.uint8), t)
