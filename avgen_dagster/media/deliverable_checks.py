"""Checks of the final cut's deliverables, read back from the files with independent parsers:
captions against the voice's word timings (``webvtt-py``), and an HLS ladder's master playlist,
renditions and subtitles (``m3u8``).

Each function returns human-readable problems; an empty list means the deliverable passes.
No Dagster: the asset checks call these, and tests can too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from avgen_dagster.media.hls import validate_hls_playlist
from avgen_dagster.media.words import WordTiming

__all__ = ["caption_sync_problems", "hls_ladder_problems", "normalized_words"]

#: How far a cue may start from the onset of its first word (the acceptance bound of issue #13).
MAX_CUE_OFFSET_S = 0.1
_WORD = re.compile(r"[\w']+")
_ALIGNED_S = 0.002  # segment durations of two renditions agree to this (aligned GOPs)


def normalized_words(text: str) -> list[str]:
    """Lower-case words of ``text`` without punctuation or markup (for comparing texts)."""
    return _WORD.findall(re.sub(r"<[^>]+>", " ", text).lower().replace("\u2019", "'"))


def caption_sync_problems(vtt: Path, words: Sequence[WordTiming]) -> list[str]:
    """Problems of a WebVTT caption file against the narration's word timings.

    Passes when the cues' text is the narration's text, word for word and in order (after
    :func:`normalized_words`), and every cue starts within :data:`MAX_CUE_OFFSET_S` of the
    onset of its first word and ends after the onset of its last word.

    Args:
        vtt: the WebVTT sidecar.
        words: the narration's words, seconds on the video's timeline.
    """
    import webvtt

    try:
        cues = list(webvtt.read(str(vtt)))
    except Exception as exc:  # webvtt-py raises its own errors for malformed files
        return [f"{vtt.name} is not readable WebVTT: {exc}"]
    spoken = [(w, t) for t in words for w in normalized_words(t.word)]
    problems: list[str] = []
    at = 0
    for n, cue in enumerate(cues, 1):
        tokens = normalized_words(cue.text)
        if [w for w, _ in spoken[at : at + len(tokens)]] != tokens:
            problems.append(f"cue {n} ({cue.text!r}) is not the next words of the narration")
            break
        first, last = spoken[at][1], spoken[at + len(tokens) - 1][1]
        # (webvtt-py's *_in_seconds are whole seconds; milliseconds keep the precision.)
        start_s = cue.start_time.in_milliseconds() / 1000
        end_s = cue.end_time.in_milliseconds() / 1000
        if abs(start_s - first.start_s) > MAX_CUE_OFFSET_S:
            problems.append(
                f"cue {n} starts at {start_s:.3f} s, its first word "
                f"{first.word!r} at {first.start_s:.3f} s"
            )
        if end_s < last.start_s:
            problems.append(f"cue {n} ends before its last word {last.word!r} is spoken")
        at += len(tokens)
    if not problems and at != len(spoken):
        problems.append(f"the cues hold {at} of the narration's {len(spoken)} words")
    return problems


def hls_ladder_problems(master: Path, *, min_renditions: int = 3) -> list[str]:
    """Problems of an HLS master playlist and everything it names (RFC 8216 §4.3.4).

    Checks: at least ``min_renditions`` variants, each with ``BANDWIDTH``,
    ``AVERAGE-BANDWIDTH``, ``RESOLUTION`` and ``CODECS``; each variant playlist valid
    (:func:`~avgen_dagster.media.hls.validate_hls_playlist`: VOD, keyframe-led segments within
    the target duration); the same segment durations in every variant (GOPs aligned, so a
    player can switch at any boundary); a ``SUBTITLES`` rendition whose WebVTT segments all
    carry ``X-TIMESTAMP-MAP`` (§3.5).
    """
    import m3u8

    if not master.is_file():
        return [f"master playlist not found: {master}"]
    parsed = m3u8.load(str(master))
    variants = parsed.playlists
    problems = [] if len(variants) >= min_renditions else [
        f"{len(variants)} variants; at least {min_renditions} expected"
    ]  # fmt: skip
    durations: dict[str, list[float]] = {}
    for v in variants:
        info = v.stream_info
        for attr in ("bandwidth", "average_bandwidth", "resolution", "codecs"):
            if not getattr(info, attr, None):
                problems.append(f"variant {v.uri}: no {attr.upper().replace('_', '-')}")
        playlist = master.parent / v.uri
        problems += [f"{v.uri}: {p}" for p in validate_hls_playlist(playlist)]
        if playlist.is_file():
            durations[v.uri] = [s.duration for s in m3u8.load(str(playlist)).segments]
    reference = next(iter(durations.values()), [])
    for uri, ds in durations.items():
        if len(ds) != len(reference) or any(
            abs(a - b) > _ALIGNED_S for a, b in zip(ds, reference, strict=False)
        ):
            problems.append(f"{uri}: segments not aligned with the first variant's")
    problems += _subtitle_problems(master, parsed)
    return problems


def _subtitle_problems(master: Path, parsed: object) -> list[str]:
    import m3u8

    subs = [m for m in parsed.media if m.type == "SUBTITLES"]  # type: ignore[attr-defined]
    if not subs:
        return ["no SUBTITLES rendition"]
    problems = []
    for media in subs:
        playlist = master.parent / media.uri
        if not playlist.is_file():
            problems.append(f"subtitles playlist not found: {media.uri}")
            continue
        for seg in m3u8.load(str(playlist)).segments:
            text = (playlist.parent / seg.uri).read_text(encoding="utf-8")
            if not text.startswith("WEBVTT") or "X-TIMESTAMP-MAP=" not in text.split("\n\n")[0]:
                problems.append(f"{seg.uri}: no WEBVTT header with X-TIMESTAMP-MAP")
    return problems
