"""Burned-in captions: caption cues drawn onto RGB frames with the spoken word highlighted.

* Placement: inside the title-safe area, the centre 90 % of the frame's width and height
  (EBU R 95 "Safe areas for 16:9 television production", section 3; SMPTE ST 2046-1
  "Safe Areas for Widescreen Image Display", the 90 % title-safe rectangle). Lines that
  would not fit at the requested size are set smaller until they do.
* Font: a TrueType file; by default DejaVu Sans Bold from matplotlib's wheel
  (``matplotlib/mpl-data/fonts/ttf/``, found with :func:`matplotlib.get_data_path`), so no
  system font is assumed.
* Each cue's text is rasterised once (two 8-bit coverage masks: glyphs with their outline,
  and glyphs alone) and kept as a small RGB + alpha layer in the text colour and one in the
  highlight colour; per frame only an alpha blend of that layer's rectangle happens, with
  the current word's columns taken from the highlight layer (premultiplied colour and the
  inverse alpha are kept, so the blend is two OpenCV passes over the caption's rectangle).

Frames are RGB ``uint8`` arrays of shape ``(H, W, 3)``; sizes in pixels; times in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.media import i420
from avgen_dagster.media.captions import CaptionTrack, Cue

__all__ = [
    "POSITIONS",
    "CaptionLayer",
    "CaptionRenderer",
    "CaptionStyle",
    "default_font_path",
    "highlighted_word",
    "load_font",
    "title_safe_box",
]

Position = Literal["bottom", "center", "top"]
#: Allowed caption positions inside the title-safe area.
POSITIONS: tuple[str, ...] = ("bottom", "center", "top")
RGB = tuple[int, int, int]
_DEFAULT_FONT = "DejaVuSans-Bold.ttf"
_CACHE_CUES = 4


def default_font_path() -> Path:
    """DejaVu Sans Bold inside matplotlib's wheel (``mpl-data/fonts/ttf/DejaVuSans-Bold.ttf``).

    Raises:
        InvalidInputError: matplotlib is not installed or ships no such file.
    """
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - matplotlib is a locked dependency
        raise InvalidInputError("the default caption font needs matplotlib installed") from exc
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / _DEFAULT_FONT
    if not path.is_file():
        raise InvalidInputError(f"caption font {path} is missing from matplotlib's data")
    return path


def load_font(path: Path | str, size_px: int) -> ImageFont.FreeTypeFont:
    """Open a TrueType/OpenType font at ``size_px`` pixels (em size).

    Raises:
        InvalidInputError: the file is missing or FreeType cannot load it (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"caption font file not found: {path}")
    try:
        return ImageFont.truetype(str(path), max(1, int(size_px)))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"caption font {path.name} cannot be loaded: {exc}") from exc


def _check_color(name: str, value: RGB) -> None:
    if len(value) != 3 or any(not isinstance(c, int) or not 0 <= c <= 255 for c in value):
        raise InvalidInputError(f"caption {name} must be three integers 0-255, got {value!r}")


@dataclass(frozen=True)
class CaptionStyle:
    """How burned-in captions look.

    Attributes:
        font_path: TrueType/OpenType file; None = :func:`default_font_path`.
        size_frac: font em size as a fraction of the frame height (0.045 of 1920 px = 86 px);
            reduced per cue when a line would leave the title-safe width.
        text_color: RGB of the words.
        highlight_color: RGB of the word being spoken.
        outline_color: RGB of the outline around the glyphs.
        outline_frac: outline width as a fraction of the font size (0 = none).
        position: ``"bottom"``, ``"center"`` or ``"top"`` of the title-safe area.
        line_spacing: line pitch as a multiple of the font's ascent + descent.
        safe_fraction: the title-safe fraction of width and height (EBU R 95: 0.9).
    """

    font_path: Path | None = None
    size_frac: float = 0.045
    text_color: RGB = (255, 255, 255)
    highlight_color: RGB = (255, 212, 0)
    outline_color: RGB = (0, 0, 0)
    outline_frac: float = 0.09
    position: Position = "bottom"
    line_spacing: float = 1.15
    safe_fraction: float = 0.9

    def __post_init__(self) -> None:
        if self.position not in POSITIONS:
            raise InvalidInputError(
                f"caption position {self.position!r} is not one of {', '.join(POSITIONS)}"
            )
        if not 0.005 <= self.size_frac <= 0.2:
            raise InvalidInputError(f"caption size_frac must be 0.005-0.2, got {self.size_frac}")
        if not 0 <= self.outline_frac <= 0.3 or not 0.5 <= self.safe_fraction <= 1.0:
            raise InvalidInputError(
                f"caption outline_frac must be 0-0.3 and safe_fraction 0.5-1, got "
                f"{self.outline_frac}, {self.safe_fraction}"
            )
        for name in ("text_color", "highlight_color", "outline_color"):
            _check_color(name, getattr(self, name))

    def resolved_font(self) -> Path:
        """The font file used: ``font_path`` or the default."""
        return Path(self.font_path) if self.font_path is not None else default_font_path()

    def validate(self) -> None:
        """Check that the font loads (for intake: a clear error before any work).

        Raises:
            InvalidInputError: the font file is missing or unloadable.
        """
        load_font(self.resolved_font(), 16)


def title_safe_box(width: int, height: int, fraction: float = 0.9) -> tuple[int, int, int, int]:
    """The centred title-safe rectangle ``(x0, y0, x1, y1)``, pixels, ``x1``/``y1`` exclusive.

    ``fraction`` of the width and of the height (EBU R 95 / SMPTE ST 2046-1: 0.9), rounded
    inwards.
    """
    mx = math.ceil(width * (1 - fraction) / 2)
    my = math.ceil(height * (1 - fraction) / 2)
    return mx, my, width - mx, height - my


@dataclass(frozen=True)
class CaptionLayer:
    """One cue rasterised.

    Attributes:
        x: left edge in the frame, pixels.
        y: top edge in the frame, pixels.
        alpha: (h, w) uint8 coverage of glyphs plus outline.
        rgb: (h, w, 3) uint8 colour in the text colour (outline around).
        rgb_highlight: (h, w, 3) uint8 colour in the highlight colour.
        word_spans: per word of the cue, its columns ``(x0, x1)`` and rows ``(y0, y1)``
            in the layer, pixels (outline included).
        font_px: font size used, pixels.
        premultiplied: (h, w, 3) uint8 ``rgb * alpha / 255`` (blend input).
        premultiplied_highlight: (h, w, 3) uint8 ``rgb_highlight * alpha / 255``.
        inverse_alpha: (h, w, 3) uint8 ``255 - alpha`` on every channel.
    """

    x: int
    y: int
    alpha: np.ndarray
    rgb: np.ndarray
    rgb_highlight: np.ndarray
    word_spans: tuple[tuple[int, int, int, int], ...]
    font_px: int
    premultiplied: np.ndarray
    premultiplied_highlight: np.ndarray
    inverse_alpha: np.ndarray

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of the layer in the frame, pixels (exclusive ends)."""
        h, w = self.alpha.shape
        return self.x, self.y, self.x + w, self.y + h


def highlighted_word(cue: Cue, t_s: float) -> int | None:
    """Index (in ``cue.words``) of the word to highlight at ``t_s`` seconds, or None.

    The last word whose onset has passed stays highlighted until the next one starts (no
    flicker in the short gaps between words); nothing before the first onset, and nothing
    for a cue timed at sentence level (``cue.timed`` False).
    """
    if not cue.timed:
        return None
    current = None
    for i, w in enumerate(cue.words):
        if w.start_s <= t_s:
            current = i
        else:
            break
    return current


@dataclass(frozen=True)
class _I420Layer:
    """A caption layer converted once for I420 pictures (premultiplied Y, U, V)."""

    premultiplied: tuple[np.ndarray, np.ndarray, np.ndarray]
    premultiplied_highlight: tuple[np.ndarray, np.ndarray, np.ndarray]
    inverse_alpha: tuple[np.ndarray, np.ndarray]


def _i420_layer(layer: CaptionLayer) -> _I420Layer:
    h, w = layer.alpha.shape
    a_half = cv2.resize(layer.alpha, (w // 2, h // 2), interpolation=cv2.INTER_AREA)

    def premultiplied(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y, u, v = i420.planes(i420.from_rgb(rgb))
        return (
            cv2.multiply(y, layer.alpha, scale=1 / 255),
            cv2.multiply(u, a_half, scale=1 / 255),
            cv2.multiply(v, a_half, scale=1 / 255),
        )

    return _I420Layer(
        premultiplied(layer.rgb), premultiplied(layer.rgb_highlight),
        (255 - layer.alpha, 255 - a_half),
    )  # fmt: skip


class CaptionRenderer:
    """Draws a :class:`CaptionTrack` onto frames of one size.

    Args:
        track: the cues.
        width: frame width, pixels.
        height: frame height, pixels.
        style: look; default :class:`CaptionStyle` ().

    Raises:
        InvalidInputError: the font cannot be loaded, or the frame size is not positive.
    """

    def __init__(
        self, track: CaptionTrack, width: int, height: int, style: CaptionStyle | None = None
    ) -> None:
        if width <= 0 or height <= 0:
            raise InvalidInputError(f"caption frame size must be positive, got {width}x{height}")
        self.track, self.width, self.height = track, width, height
        self.style = style or CaptionStyle()
        self.font_path = self.style.resolved_font()
        self.font_px = max(8, round(self.style.size_frac * height))
        load_font(self.font_path, self.font_px)  # fail early on a bad font
        self.safe_box = title_safe_box(width, height, self.style.safe_fraction)
        self._layers: dict[int, CaptionLayer] = {}
        self._i420: dict[int, _I420Layer] = {}

    def layer(self, index: int) -> CaptionLayer:
        """The rasterised layer of cue ``index`` (built on first use, then cached)."""
        layer = self._layers.get(index)
        if layer is None:
            if len(self._layers) >= _CACHE_CUES:
                self._layers.pop(next(iter(self._layers)))
            layer = self._rasterise(self.track.cues[index])
            self._layers[index] = layer
        return layer

    def _fit_font(self, lines: tuple[str, ...]) -> tuple[ImageFont.FreeTypeFont, int]:
        """The largest font (<= the style's size) whose lines fit the safe width."""
        x0, _, x1, _ = self.safe_box
        size = self.font_px
        while True:
            font = load_font(self.font_path, size)
            stroke = round(self.style.outline_frac * size)
            widest = max(font.getlength(line) for line in lines) + 2 * stroke + 2
            if widest <= x1 - x0 or size <= 8:
                return font, stroke
            size = max(8, min(size - 1, math.floor(size * (x1 - x0) / widest)))

    def _rasterise(self, cue: Cue) -> CaptionLayer:
        font, stroke = self._fit_font(cue.lines)
        ascent, descent = font.getmetrics()
        pitch = round((ascent + descent) * self.style.line_spacing)
        widths = [math.ceil(font.getlength(line)) for line in cue.lines]
        w = max(widths) + 2 * stroke + 2
        h = pitch * (len(cue.lines) - 1) + ascent + descent + 2 * stroke + 2
        w, h = w + w % 2, h + h % 2  # even: the layer also blends onto I420 pictures
        outer, inner = Image.new("L", (w, h), 0), Image.new("L", (w, h), 0)
        d_outer, d_inner = ImageDraw.Draw(outer), ImageDraw.Draw(inner)
        spans: list[tuple[int, int, int, int]] = []
        for k, (line, lw) in enumerate(zip(cue.lines, widths, strict=True)):
            lx, ly = stroke + 1 + (max(widths) - lw) // 2, stroke + 1 + k * pitch
            d_outer.text((lx, ly), line, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
            d_inner.text((lx, ly), line, font=font, fill=255)
            prefix = ""
            for word in line.split(" "):
                x0 = lx + font.getlength(prefix)
                x1 = x0 + font.getlength(word)
                spans.append(
                    (
                        max(0, math.floor(x0) - stroke - 1),
                        min(w, math.ceil(x1) + stroke + 1),
                        max(0, ly - stroke - 1),
                        min(h, ly + ascent + descent + stroke + 1),
                    )
                )
                prefix += word + " "
        alpha = np.asarray(outer, dtype=np.uint8)
        fill = np.asarray(inner, dtype=np.uint16)[..., None]
        outline = np.array(self.style.outline_color, np.uint16)

        def colour(rgb: RGB) -> np.ndarray:
            mixed = (np.array(rgb, np.uint16) * fill + outline * (255 - fill) + 127) // 255
            return mixed.astype(np.uint8)

        rgb, rgb_hl = colour(self.style.text_color), colour(self.style.highlight_color)
        a3 = np.repeat(alpha[..., None], 3, axis=2)
        return CaptionLayer(
            x=self._layer_x(w),
            y=self._layer_y(h),
            alpha=alpha,
            rgb=rgb,
            rgb_highlight=rgb_hl,
            word_spans=tuple(spans),
            font_px=font.size,
            premultiplied=cv2.multiply(rgb, a3, scale=1 / 255),
            premultiplied_highlight=cv2.multiply(rgb_hl, a3, scale=1 / 255),
            inverse_alpha=255 - a3,
        )

    @staticmethod
    def _even_within(pos: int, size: int, lo: int, hi: int) -> int:
        """``pos`` moved to an even pixel (for I420 chroma), staying inside ``[lo, hi)``."""
        pos += pos % 2
        return pos - 2 if pos + size > hi and pos - 2 >= lo else pos

    def _layer_x(self, w: int) -> int:
        x0, _, x1, _ = self.safe_box
        return self._even_within(max(x0, x0 + (x1 - x0 - w) // 2), w, x0, x1)

    def _layer_y(self, h: int) -> int:
        _, y0, _, y1 = self.safe_box
        if self.style.position == "top":
            y = y0
        elif self.style.position == "center":
            y = max(y0, (self.height - h) // 2)
        else:
            y = max(y0, y1 - h)
        return self._even_within(y, h, y0, y1)

    def cue_index_at(self, t_s: float) -> int | None:
        """Index of the cue shown at ``t_s`` seconds, or None."""
        for i, cue in enumerate(self.track.cues):
            if cue.start_s <= t_s < cue.end_s:
                return i
            if cue.start_s > t_s:
                break
        return None

    def render(self, frame: np.ndarray, t_s: float) -> np.ndarray:
        """Draw the caption shown at ``t_s`` seconds onto ``frame``, in place.

        Args:
            frame: (H, W, 3) uint8 RGB of the renderer's size, writable.
            t_s: time on the narration's timeline, seconds.

        Returns:
            ``frame`` (unchanged when no cue is shown).

        Raises:
            InvalidInputError: ``frame`` has another shape or dtype.
        """
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise InvalidInputError(
                f"caption frames must be uint8 ({self.height}, {self.width}, 3), got "
                f"{frame.dtype} {frame.shape}"
            )
        index = self.cue_index_at(t_s)
        if index is None:
            return frame
        layer = self.layer(index)
        fg = layer.premultiplied
        word = highlighted_word(self.track.cues[index], t_s)
        if word is not None and word < len(layer.word_spans):
            x0, x1, y0, y1 = layer.word_spans[word]
            fg = fg.copy()
            fg[y0:y1, x0:x1] = layer.premultiplied_highlight[y0:y1, x0:x1]
        bx0, by0, bx1, by1 = layer.box
        region = frame[by0:by1, bx0:bx1]
        # "over" with premultiplied colour: out = fg * a + bg * (1 - a), in 8 bits (OpenCV)
        cv2.add(cv2.multiply(region, layer.inverse_alpha, scale=1 / 255), fg, dst=region)
        return frame

    def render_i420(
        self, picture: np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray], t_s: float
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`render` for an I420 picture (see :mod:`avgen_dagster.media.i420`), in place.

        Args:
            picture: uint8 ``(H * 3 // 2, W)`` I420 buffer of the renderer's size, or its
                ``(Y, U, V)`` planes (e.g. views into a ``VideoFrame``).
            t_s: time on the narration's timeline, seconds.

        Returns:
            ``picture``.

        Raises:
            InvalidInputError: ``picture`` has another shape or dtype.
        """
        h, w = self.height, self.width
        if isinstance(picture, np.ndarray):
            if picture.shape != (h * 3 // 2, w) or picture.dtype != np.uint8:
                raise InvalidInputError(
                    f"I420 caption pictures must be uint8 ({h * 3 // 2}, {w}), got "
                    f"{picture.dtype} {picture.shape}"
                )
            planes = i420.planes(picture)
        else:
            planes = picture
            if planes[0].shape != (h, w) or planes[1].shape != (h // 2, w // 2):
                raise InvalidInputError(
                    f"I420 caption planes must be ({h}, {w}) and ({h // 2}, {w // 2}), got "
                    f"{planes[0].shape} and {planes[1].shape}"
                )
        index = self.cue_index_at(t_s)
        if index is None:
            return picture
        layer = self.layer(index)
        if index not in self._i420:
            self._i420 = {k: v for k, v in self._i420.items() if k in self._layers}
            self._i420[index] = _i420_layer(layer)
        yuv = self._i420[index]
        fg = list(yuv.premultiplied)
        word = highlighted_word(self.track.cues[index], t_s)
        if word is not None and word < len(layer.word_spans):
            x0, x1, y0, y1 = layer.word_spans[word]
            for k, div in enumerate((1, 2, 2)):
                fg[k] = fg[k].copy()
                box = np.s_[y0 // div : -(-y1 // div), x0 // div : -(-x1 // div)]
                fg[k][box] = yuv.premultiplied_highlight[k][box]
        bx0, by0, bx1, by1 = layer.box
        for k, div in enumerate((1, 2, 2)):
            region = planes[k][by0 // div : by1 // div, bx0 // div : bx1 // div]
            inverse = yuv.inverse_alpha[0 if div == 1 else 1]
            cv2.add(cv2.multiply(region, inverse, scale=1 / 255), fg[k], dst=region)
        return picture
