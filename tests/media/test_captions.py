"""Caption cues by the Netflix timed-text rules, and WebVTT / SRT sidecars read back by the
libraries' own parsers."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
import srt
import webvtt

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.media.captions import (
    CaptionRules,
    CaptionTrack,
    build_cues,
    normalize_text,
    split_sentences,
    write_srt,
    write_webvtt,
)
from avgen_dagster.media.words import WordTiming

ARTICLES = {"a", "an", "the"}
SENTENCE_END = re.compile(r"[.!?…][\"')\]]*$")

LONG_SENTENCE = (
    "When the sun sits low in the evening sky, its light has to cross far more of the "
    "atmosphere before it reaches your eyes, and along that long path almost all of the "
    "blue and violet light is scattered away by the molecules of nitrogen and oxygen, "
    "which leaves the warm reds, oranges and golden yellows that paint the clouds."
)
SCRIPTS = {
    "paragraph": (
        "The sky looks blue during the day. Sunlight contains every colour, but air "
        "scatters blue light much more strongly than red light. That scattered blue "
        "reaches your eyes from every direction!"
    ),
    "long_sentence": LONG_SENTENCE,
    "one_word": "Here is the first idea. Yes. And here is the second one, which is longer.",
    "numbers": (
        "In 2024, about 3.5 million people visited. Tickets cost $1,200 or 40 percent "
        "more than in 1999. That is 12 km of queues!"
    ),
}


def timed_words(
    text: str,
    *,
    base_s: float = 0.1,
    per_char_s: float = 0.06,
    gap_s: float = 0.06,
    pause_s: float = 0.45,
) -> list[WordTiming]:
    """Words with durations proportional to their length and pauses after sentences."""
    out, t = [], 0.3
    for word in text.split():
        d = base_s + per_char_s * len(word)
        out.append(WordTiming(word, round(t, 4), round(t + d, 4)))
        t += d + gap_s + (pause_s if SENTENCE_END.search(word) else 0.0)
    return out


def assert_rules(track: CaptionTrack, words: list[WordTiming], rules: CaptionRules) -> None:
    """Every rule of the Netflix guide that build_cues promises."""
    assert normalize_text(track.text) == normalize_text(" ".join(w.word for w in words))
    assert [w.word for c in track.cues for w in c.words] == [w.word for w in words]
    gap_s = rules.min_gap_frames / rules.fps
    for cue in track.cues:
        assert 1 <= len(cue.lines) <= rules.max_lines, cue
        for line in cue.lines:
            assert len(line) <= rules.max_chars_per_line, (line, len(line))
            assert line == line.strip() and "  " not in line
            assert line.split()[-1].lower() not in ARTICLES, f"line ends on an article: {line!r}"
        assert [t for line in cue.lines for t in line.split()] == [w.word for w in cue.words]
        assert rules.min_duration_s - 0.0005 <= cue.duration_s <= rules.max_duration_s, cue
        # no cue runs across a sentence end: sentence punctuation only on a cue's last word
        assert not any(SENTENCE_END.search(w.word) for w in cue.words[:-1]), cue.text
        assert cue.start_s == round(cue.start_s, 3) and cue.end_s == round(cue.end_s, 3)
    for a, b in zip(track.cues, track.cues[1:], strict=False):
        assert b.start_s - a.end_s >= gap_s - 1e-9, (a.text, b.text, b.start_s - a.end_s)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_cues_follow_the_netflix_rules(name: str) -> None:
    words = timed_words(SCRIPTS[name])
    track = build_cues(words)
    assert_rules(track, words, track.rules)
    assert not track.sentence_fallback and track.untimed_word_count == 0
    for cue in track.cues:  # a cue shows up when its first word is spoken (or just before)
        assert cue.words[0].start_s - 0.85 <= cue.start_s <= cue.words[0].start_s + 0.001


def test_long_sentence_breaks_after_punctuation_and_splits_into_several_cues() -> None:
    words = timed_words(LONG_SENTENCE)
    track = build_cues(words)
    assert_rules(track, words, track.rules)
    assert len(track.cues) >= 4
    ends = [cue.lines[-1].split()[-1] for cue in track.cues]
    line_ends = [line.split()[-1] for cue in track.cues for line in cue.lines]
    assert "sky," in line_ends  # the clause break is used
    # most cue ends fall on punctuation or before a conjunction/preposition
    assert sum(e.endswith((",", ".")) for e in ends) >= 2, ends


def test_one_word_sentence_gets_its_own_cue_of_minimum_length() -> None:
    words = timed_words(SCRIPTS["one_word"])
    track = build_cues(words)
    yes = [c for c in track.cues if c.text == "Yes."]
    assert len(yes) == 1
    assert yes[0].duration_s >= 5 / 6 - 0.0005
    assert_rules(track, words, track.rules)


def test_numbers_stay_with_their_units() -> None:
    words = timed_words(SCRIPTS["numbers"])
    track = build_cues(words, rules=CaptionRules(max_chars_per_line=20))
    assert_rules(track, words, track.rules)
    line_ends = [line.split()[-1] for cue in track.cues for line in cue.lines]
    for number in ("3.5", "12", "40"):
        assert number not in line_ends, (number, [c.lines for c in track.cues])


def test_very_fast_speech_still_meets_minimum_durations_and_gaps() -> None:
    text = " ".join([SCRIPTS["paragraph"], "Go. Now. Run!", SCRIPTS["numbers"]])
    words = timed_words(text, base_s=0.06, per_char_s=0.014, gap_s=0.005, pause_s=0.03)
    rate = len(words) / (words[-1].end_s - words[0].start_s)
    assert rate > 6.0
    track = build_cues(words)
    assert_rules(track, words, track.rules)


def test_explicit_sentence_counts_and_narration_end() -> None:
    words = timed_words("one two three four five six seven eight")
    track = build_cues(words, sentence_word_counts=[3, 5], duration_s=words[-1].end_s + 0.2)
    assert [c.sentence for c in track.cues] == sorted(c.sentence for c in track.cues)
    assert {c.sentence for c in track.cues} == {0, 1}
    assert all(len({w.word for w in c.words} & {"three", "four"}) < 2 for c in track.cues)
    assert track.cues[-1].end_s <= words[-1].end_s + 0.2 + 1e-9
    assert [s.end_word for s in split_sentences(words, [3, 5])] == [3, 8]


def test_untimed_words_fall_back_to_sentence_timing_and_are_never_dropped() -> None:
    words = timed_words(SCRIPTS["paragraph"])
    # the second sentence's words came without alignment: every one estimated at 0 length
    sentences = split_sentences(words)
    s = sentences[1]
    for i in range(s.first_word, s.end_word):
        w = words[i]
        words[i] = WordTiming(w.word, words[s.first_word].start_s, words[s.first_word].start_s,
                              timed=False)  # fmt: skip
    words[s.end_word - 1] = WordTiming(
        words[s.end_word - 1].word, words[s.first_word].start_s, sentences[1].end_s, timed=False
    )
    track = build_cues(words)
    assert track.sentence_fallback
    assert track.untimed_word_count == s.end_word - s.first_word
    assert_rules(track, words, track.rules)
    fallback = [c for c in track.cues if c.sentence == 1]
    assert fallback and not any(c.timed for c in fallback)
    assert all(c.timed for c in track.cues if c.sentence != 1)


def test_sidecars_parse_back_with_the_same_text_and_times(tmp_path: Path) -> None:
    text = SCRIPTS["paragraph"] + " Tom & Jerry say <hi> -> bye."
    words = timed_words(text)
    track = build_cues(words)
    vtt = write_webvtt(track, tmp_path / "captions.vtt")
    srt_path = write_srt(track, tmp_path / "captions.srt")

    parsed_vtt = webvtt.read(str(vtt)).captions
    assert len(parsed_vtt) == len(track.cues)
    for cue, cap in zip(track.cues, parsed_vtt, strict=True):
        assert cap.start_time.in_milliseconds() == round(cue.start_s * 1000)
        assert cap.end_time.in_milliseconds() == round(cue.end_s * 1000)
        assert [html.unescape(line) for line in cap.lines] == list(cue.lines)
    assert "&amp;" in vtt.read_text() and "&lt;hi&gt;" in vtt.read_text()

    parsed_srt = list(srt.parse(srt_path.read_text(encoding="utf-8")))
    assert len(parsed_srt) == len(track.cues)
    for cue, sub in zip(track.cues, parsed_srt, strict=True):
        assert round(sub.start.total_seconds() * 1000) == round(cue.start_s * 1000)
        assert round(sub.end.total_seconds() * 1000) == round(cue.end_s * 1000)
        assert sub.content.split("\n") == list(cue.lines)
    joined = " ".join(s.content.replace("\n", " ") for s in parsed_srt)
    assert normalize_text(joined) == normalize_text(text)


def test_bad_input_is_rejected() -> None:
    words = timed_words("alpha beta gamma")
    with pytest.raises(InvalidInputError, match="out of order"):
        build_cues([words[1], words[0], words[2]])
    with pytest.raises(InvalidInputError, match="sum to"):
        build_cues(words, sentence_word_counts=[1, 1])
    with pytest.raises(InvalidInputError, match="max_lines"):
        CaptionRules(max_lines=0)
    assert build_cues([]).cues == ()


def test_overlapping_segments_keep_every_cue_on_its_first_word() -> None:
    """Word timings of adjacent segments overlap by the cross-fade (the demo's narration:
    "process." ends at 30.314 s, "The" starts at 30.178 s). The previous cue ends earlier,
    down to its minimum duration, rather than delaying the next cue past its first word —
    the case `captions_in_sync` caught (a cue 216 ms late)."""
    stretch = [
        ("that", 27.11, 27.191), ("each", 27.237, 27.458), ("color", 27.539, 27.818),
        ("has", 27.922, 28.097), ("two", 28.143, 28.34), ("possible", 28.375, 28.851),
        ("paths", 28.909, 29.223), ("for", 29.269, 29.385), ("this", 29.42, 29.559),
        ("process.", 29.641, 30.314), ("The", 30.178, 30.236), ("first", 30.294, 30.561),
        ("path", 30.608, 30.875), ("gets", 30.933, 31.142), ("reflected", 31.2, 31.71),
        ("back", 31.757, 32.012), ("down.", 32.07, 32.349),
    ]  # fmt: skip
    words = [WordTiming(w, a, b) for w, a, b in stretch]
    rules = CaptionRules(max_chars_per_line=26)  # the vertical format's line length
    track = build_cues(words, rules=rules)
    assert_rules(track, words, rules)
    for cue in track.cues:
        assert abs(cue.start_s - cue.words[0].start_s) <= 0.1, (cue.text, cue.start_s)
        assert cue.end_s >= cue.words[-1].start_s, cue.text


def test_a_minimum_length_cue_moves_earlier_rather_than_delay_the_next(tmp_path: Path) -> None:
    """A short sentence tail ("in the atmosphere.", already at the minimum duration) ends
    after the next sentence starts (10.007 s, overlapping segments): it shows a little early,
    taking room from the cue before it, so no cue is more than 100 ms off its first word —
    the second `make demo` narration that failed `captions_in_sync` (a cue 114 ms late)."""
    from avgen_dagster.media.captions import write_webvtt
    from avgen_dagster.media.deliverable_checks import caption_sync_problems

    stretch = [
        ("of", 5.214, 5.295), ("a", 5.295, 5.353), ("process", 5.388, 5.817),
        ("called", 5.887, 6.166), ("Rayleigh", 6.200, 6.537), ("scattering,", 6.560, 7.141),
        ("where", 7.385, 7.559), ("light", 7.594, 7.768), ("encounters", 7.826, 8.418),
        ("molecules", 8.476, 9.126), ("in", 9.207, 9.289), ("the", 9.289, 9.381),
        ("atmosphere.", 9.474, 10.171), ("When", 10.007, 10.158), ("sunlight", 10.192, 10.552),
        ("reaches", 10.587, 10.901), ("our", 10.924, 11.063), ("planet's", 11.133, 11.516),
        ("atmosphere.", 11.562, 12.271),
    ]  # fmt: skip
    words = [WordTiming(w, a, b) for w, a, b in stretch]
    rules = CaptionRules(max_chars_per_line=26)
    track = build_cues(words, rules=rules)
    assert_rules(track, words, rules)
    assert caption_sync_problems(write_webvtt(track, tmp_path / "c.vtt"), words) == []
