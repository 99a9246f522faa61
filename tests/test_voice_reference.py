"""A voice reference (the voice to clone) taken in through the one intake: checked once with the
rules the XTTS backend applies, stored as ``input/voice_reference.wav`` and recorded with the
request; refused — naming it — when bad or when the speech backend cannot clone, with nothing
left behind; cloned by ``tts_clips`` on a tiny random-weight XTTS model built here; and a
reference that fails at run time marks the request Failed with the reason."""

from __future__ import annotations

import io
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from avgen_dagster.cli import app
from avgen_dagster.devtools.tiny_models import synthetic_voice
from avgen_dagster.errors import BackendError, InvalidInputError
from avgen_dagster.intake import NewRequest, submit_request
from avgen_dagster.outputs import VOICE_REFERENCE_WAV
from avgen_dagster.portraits import Upload
from avgen_dagster.resources.backends import SpeechBackendResource
from avgen_dagster.store import AppDatabase, status
from avgen_dagster.store.requests import get_request, list_requests
from avgen_dagster.voice_reference import MAX_VOICE_REFERENCE_BYTES, check_voice_reference
from tests.conftest import SAMPLE_PORTRAIT, AvgenEnv


def clip_bytes(
    seconds: float, fmt: str = "WAV", amplitude: float = 1.0, rate: int = 16000, seed: int = 0
) -> bytes:
    """``seconds`` of speech-like sound (or silence, amplitude 0) encoded as ``fmt``."""
    out = io.BytesIO()
    samples = amplitude * synthetic_voice(seconds, rate, seed=seed)
    subtype = {"OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}.get(fmt)
    soundfile.write(out, samples, rate, format=fmt, subtype=subtype)
    return out.getvalue()


BAD_CLIPS = [
    ("silent", ("quiet.wav", clip_bytes(5.0, amplitude=0.0)), "'quiet.wav' is silent (RMS -inf"),
    ("too short", ("short.wav", clip_bytes(2.0)), "'short.wav' is 2.00 s long; voice cloning"),
    ("too long", ("long.flac", clip_bytes(31.0, "FLAC")), "'long.flac' is 31.0 s long; give at"),
    ("not audio", ("notes.wav", b"RIFF....WAVEjunk" * 8), "'notes.wav' is not readable audio"),
    ("empty", ("empty.wav", b""), "'empty.wav' is empty"),
    ("too big", ("big.wav", bytes(MAX_VOICE_REFERENCE_BYTES + 1)), "MB; the limit is 20 MB"),
]  # fmt: skip


def _new(user_id: str, voice: tuple[str, bytes] | None) -> NewRequest:
    return NewRequest(
        user_id=user_id,
        prompt=None,
        script="Hello there.",
        portrait=Upload("me.png", SAMPLE_PORTRAIT.read_bytes()),
        voice_reference=Upload(*voice) if voice else None,
    )


def _nothing_written(env: AvgenEnv, user_id: str) -> None:
    assert not (env.content / user_id).exists()
    if Path(env.db_url.removeprefix("sqlite:///")).exists():
        with AppDatabase(env.db_url).session() as s:
            assert list_requests(s, user_id) == []


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
def test_a_good_clip_in_any_format_is_stored_as_mono_pcm_wav(fmt: str) -> None:
    stereo = io.BytesIO()
    voice = synthetic_voice(4.0, 22050)
    soundfile.write(stereo, np.stack([voice, 0.5 * voice], axis=1), 22050, format=fmt,
                    subtype={"OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}.get(fmt))  # fmt: skip
    checked = check_voice_reference(Upload(f"me.{fmt.lower()}", stereo.getvalue()))
    info = soundfile.info(io.BytesIO(checked.data))
    assert (info.format, info.subtype, info.channels) == ("WAV", "PCM_16", 1)
    assert info.samplerate == checked.sample_rate == 22050
    assert checked.duration_s == pytest.approx(4.0, abs=0.1)  # MP3 adds encoder padding
    assert -30 < checked.rms_dbfs < -10


def test_a_long_file_is_refused_from_its_header_before_decoding() -> None:
    ten_minutes = io.BytesIO()
    soundfile.write(ten_minutes, np.zeros(600 * 8000, np.int16), 8000, format="WAV")  # 9.6 MB
    with pytest.raises(InvalidInputError, match=r"'lecture.wav' is 600.0 s long; give at most"):
        check_voice_reference(Upload("lecture.wav", ten_minutes.getvalue()))


def test_intake_stores_and_records_the_reference(avgen_env: AvgenEnv) -> None:
    db = AppDatabase(avgen_env.db_url)
    rid = submit_request(db, avgen_env.content, _new("voiced", ("me.mp3", clip_bytes(4.0, "MP3"))))
    with db.session() as s:
        req = get_request(s, rid)
        stored = Path(req.voice_reference_path)
    assert stored == avgen_env.content / "voiced" / rid / VOICE_REFERENCE_WAV
    samples, rate = soundfile.read(stored)
    assert rate == 16000 and samples.ndim == 1 and 3.9 < samples.size / rate < 4.2
    # Without a reference, nothing is stored for it.
    rid = submit_request(db, avgen_env.content, _new("voiced", None))
    with db.session() as s:
        assert get_request(s, rid).voice_reference_path is None
    assert not (avgen_env.content / "voiced" / rid / VOICE_REFERENCE_WAV).exists()


@pytest.mark.parametrize(("case", "voice", "words"), BAD_CLIPS, ids=[c[0] for c in BAD_CLIPS])
def test_intake_refuses_a_bad_clip_naming_it_and_writes_nothing(
    avgen_env: AvgenEnv, case: str, voice: tuple[str, bytes], words: str
) -> None:
    db = AppDatabase(avgen_env.db_url)
    with pytest.raises(InvalidInputError) as refused:
        submit_request(db, avgen_env.content, _new("refused", voice))
    assert str(refused.value).startswith("voice reference '") and words in str(refused.value)
    _nothing_written(avgen_env, "refused")


def test_a_speech_backend_that_cannot_clone_refuses_the_reference(
    avgen_env: AvgenEnv, tiny_xtts_dir: Path, tmp_path: Path
) -> None:
    vits = tmp_path / "vits"
    vits.mkdir()
    (vits / "config.json").write_text(json.dumps({"model": "vits"}))
    env = {"AVGEN_SPEECH_BACKEND": "coqui", "AVGEN_SPEECH_MODEL": str(tiny_xtts_dir)}
    assert SpeechBackendResource.from_env({}).without_cloning() == "piper"
    assert SpeechBackendResource.from_env(env).without_cloning() is None
    assert SpeechBackendResource.from_env(env).model_path == str(tiny_xtts_dir)
    coqui_vits = SpeechBackendResource.from_env({**env, "AVGEN_SPEECH_MODEL": str(vits)})
    assert coqui_vits.without_cloning() == "coqui vits"
    with pytest.raises(BackendError, match="AVGEN_SPEECH_BACKEND='espeak': choose piper or"):
        SpeechBackendResource.from_env({"AVGEN_SPEECH_BACKEND": "espeak"})

    db = AppDatabase(avgen_env.db_url)
    for backend in ("piper", "coqui vits"):
        with pytest.raises(InvalidInputError) as refused:
            submit_request(db, avgen_env.content, _new("piper", ("me.wav", clip_bytes(4.0))),
                           non_cloning_speech=backend)  # fmt: skip
        assert str(refused.value).startswith(
            f"voice_reference: the speech backend here ({backend}) does not clone voices"
        )
    _nothing_written(avgen_env, "piper")
    # The same at run time, for a request recorded before the backend changed.
    with pytest.raises(InvalidInputError, match=r"\(piper\) does not clone voices"):
        SpeechBackendResource().synthesizer(reference_wav="/any/voice_reference.wav")


def _cli(args: list[str]) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, args)
    return result.exit_code, [ln for ln in result.output.splitlines() if ln.startswith("error: ")]


def test_cli_voice_reference(
    avgen_env: AvgenEnv, tiny_xtts_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, short = tmp_path / "me.wav", tmp_path / "short.ogg"
    good.write_bytes(clip_bytes(3.5))
    short.write_bytes(clip_bytes(1.0, "OGG"))
    base = ["--user-id", "clia", "--portrait", str(SAMPLE_PORTRAIT), "--script-file"]
    script = tmp_path / "s.txt"
    script.write_text("Hello there.")
    base.append(str(script))
    db_file = Path(avgen_env.db_url.removeprefix("sqlite:///"))
    for command in ("generate", "request"):  # piper (the default) cannot clone: exit 2
        code, errors = _cli([command, *base, "--voice-reference", str(good)])
        assert code == 2 and len(errors) == 1, errors
        assert "voice_reference: the speech backend here (piper) does not clone" in errors[0]
        code, errors = _cli([command, *base, "--voice-reference", str(tmp_path / "no.wav")])
        assert code == 2 and "voice reference" in errors[0] and "does not exist" in errors[0]
    assert not db_file.exists() and not avgen_env.content.exists()

    monkeypatch.setenv("AVGEN_SPEECH_BACKEND", "coqui")
    monkeypatch.setenv("AVGEN_SPEECH_MODEL", str(tiny_xtts_dir))
    for command in ("generate", "request"):
        code, errors = _cli([command, *base, "--voice-reference", str(short)])
        assert code == 2 and errors == [
            "error: voice reference 'short.ogg' is 1.00 s long; voice cloning needs at least "
            "3 s of speech"
        ]
    assert not db_file.exists() and not avgen_env.content.exists()
    result = CliRunner().invoke(app, ["request", *base, "--voice-reference", str(good), "--json"])
    assert result.exit_code == 0, result.output
    rid = json.loads(result.output)["request_id"]
    with AppDatabase(avgen_env.db_url).session() as s:
        stored = get_request(s, rid).voice_reference_path
    assert stored and soundfile.info(stored).duration == pytest.approx(3.5, abs=1e-3)


def _speak(env: AvgenEnv, user_id: str, rid: str, instance: dg.DagsterInstance):  # type: ignore[no-untyped-def]
    """Materialize request → script → tts_clips for ``rid`` with the environment's resources."""
    from avgen_dagster.assets import talking_head
    from avgen_dagster.definitions import default_resources
    from avgen_dagster.runs import REQUEST_ID_TAG

    with AppDatabase(env.db_url).session() as s:
        status.submit(s, rid)  # as the request sensor does
    if not instance.has_dynamic_partition("user_id", user_id):
        instance.add_dynamic_partitions("user_id", [user_id])
    return dg.materialize(
        [talking_head.request, talking_head.script, talking_head.tts_clips],
        instance=instance,
        partition_key=user_id,
        resources=default_resources(),
        tags={REQUEST_ID_TAG: rid},
        raise_on_error=False,
    )


@pytest.mark.slow
def test_tts_clips_clone_the_uploaded_reference_and_a_bad_one_fails_the_request(
    avgen_env: AvgenEnv, tiny_xtts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avgen_dagster.failures import mark_run_failed

    monkeypatch.setenv("AVGEN_SPEECH_BACKEND", "coqui")
    monkeypatch.setenv("AVGEN_SPEECH_MODEL", str(tiny_xtts_dir))
    db = AppDatabase(avgen_env.db_url)
    instance = dg.DagsterInstance.ephemeral()
    speech = SpeechBackendResource.from_env().without_cloning()
    made = []
    for seed in (1, 2):  # two voices: the clone follows the reference (same text, same seed)
        voice = ("me.wav", clip_bytes(3.5, rate=24000, seed=seed))
        rid = submit_request(db, avgen_env.content, _new("clone", voice), non_cloning_speech=speech)
        result = _speak(avgen_env, "clone", rid, instance)
        assert result.success
        clips = result.output_for_node("tts_clips").clips
        meta = result.asset_materializations_for_node("tts_clips")[0].metadata
        assert meta["backend"].value == "coqui"
        assert meta["voice_reference"].value.endswith(f"{rid}/{VOICE_REFERENCE_WAV}")
        (clip,) = clips
        samples, rate = soundfile.read(clip.path, dtype="float32")
        assert rate == 24000 and samples.size > 0 and np.all(np.abs(samples) <= 1.0)
        made.append(samples)
    assert not np.array_equal(made[0], made[1])

    # A stored reference that fails the checks at run time (shortened after intake) marks the
    # request Failed with the reason; no clip is left where a reader looks.
    rid = submit_request(db, avgen_env.content, _new("clone", ("me.wav", clip_bytes(3.5))))
    stored = avgen_env.content / "clone" / rid / VOICE_REFERENCE_WAV
    stored.write_bytes(clip_bytes(1.0))
    result = _speak(avgen_env, "clone", rid, instance)
    assert not result.success
    reason = mark_run_failed(db, instance, result.dagster_run, rid)
    with db.session() as s:
        req = get_request(s, rid)
    assert req.status == "Failed" and req.error == reason
    assert reason.startswith("tts_clips: ") and "voice_reference.wav is 1.00 s long" in reason
    assert not (avgen_env.content / "clone" / rid / "tts_clips").exists()

    # Recorded while XTTS was configured, run after the operator switched to Piper: Failed,
    # never spoken in another voice.
    rid = submit_request(db, avgen_env.content, _new("clone", ("me.wav", clip_bytes(3.5))))
    monkeypatch.setenv("AVGEN_SPEECH_BACKEND", "piper")
    monkeypatch.delenv("AVGEN_SPEECH_MODEL")
    result = _speak(avgen_env, "clone", rid, instance)
    assert not result.success
    assert "(piper) does not clone voices" in mark_run_failed(db, instance, result.dagster_run, rid)
