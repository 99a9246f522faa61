"""The one intake: the same bad input gets the same message on every entry point — `avgen
generate`, `avgen request` and the portal's new-request page (AppTest) — and nothing is written
(no content folder, no database row, no database file for the CLI)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from avgen_dagster.cli import app
from avgen_dagster.intake import NewRequest, check_notify_at, submit_request
from avgen_dagster.portraits import Upload
from avgen_dagster.store import AppDatabase
from avgen_dagster.store.requests import get_request, list_requests
from avgen_dagster.validation import strip_control_characters
from tests.conftest import SAMPLE_PORTRAIT, AvgenEnv
from tests.portal.conftest import app_test  # also puts streamlit_app/ on sys.path

USER = "intake_user"
CLI_ERROR = "error: "
PORTAL_ERROR = "Your request was not accepted: "


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _no_face() -> bytes:
    y, x = np.mgrid[0:240, 0:320]
    return _png(Image.fromarray(np.stack([x, y, (x + y) // 2], -1).astype(np.uint8)))


def _animated(fmt: str) -> bytes:
    """Two frames of the sample portrait as an animated GIF or PNG (APNG)."""
    frames = [Image.open(SAMPLE_PORTRAIT).convert("RGB").resize((256, 256)) for _ in range(2)]
    frames[1] = frames[1].rotate(10)
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], duration=100)
    return buf.getvalue()


def _wav(seconds: float) -> bytes:
    import soundfile

    from avgen_dagster.devtools.tiny_models import synthetic_voice

    buf = io.BytesIO()
    soundfile.write(buf, synthetic_voice(seconds, 16000), 16000, format="WAV")
    return buf.getvalue()


def _huge_png(side: int) -> bytes:
    """A ``side``×``side`` bilevel PNG: megabytes of pixels in a few kilobytes of file."""
    return _png(Image.new("1", (side, side)))


@dataclass(frozen=True)
class Case:
    """One bad input: what to change from a good request, and the message intake gives."""

    name: str
    message: str
    prompt: str | None = "Tell me about tides"
    script: str | None = None
    portrait: tuple[str, bytes] | None = None  # (file name, bytes); None = the sample portrait
    email: str | None = None
    notify_at: str | None = None  # ISO 8601
    user_id: str = USER
    cli_only: list[str] = field(default_factory=list)  # extra CLI args (portal can't express)
    portal: bool = True  # False: the portal's form cannot express it
    portrait_path: str | None = None  # a path given to the CLI as is (e.g. a missing file)
    voice: tuple[str, bytes] | None = None  # a voice reference (file name, bytes)
    script_path: str | None = None

    @property
    def portal_can(self) -> bool:
        """The portal's form can express it (its user id is the signed-in one; its widgets
        bound the options; its date picker bounds the notification date and it always has a
        time zone)."""
        zoned = self.notify_at is None or datetime.fromisoformat(self.notify_at).tzinfo
        return bool(
            self.portal
            and self.user_id == USER
            and not self.cli_only
            and self.notify_at != FAR_FUTURE
            and zoned
        )


FAR_FUTURE = "9999-12-31T23:59-01:00"
YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).replace(
    hour=0, minute=5, second=0, microsecond=0
)

CASES = [
    Case("empty user id", "user id is empty", user_id=""),
    Case("traversal in user id", "not allowed", user_id="../x"),
    Case("long user id", "limit is 64", user_id="a" * 65),
    Case("space in user id", "not allowed", user_id="a b"),
    Case("neither prompt nor script", "exactly one", prompt=None, portal=False),
    Case("missing portrait", "nope.png", portrait_path="/nope.png", portal=False),
    Case(
        "missing script file",
        "does not exist",
        prompt=None,
        script_path="/no/such.txt",
        portal=False,
    ),
    Case("empty prompt", "prompt is empty", prompt="   "),
    Case("only control characters", "prompt is empty", prompt="\x07\x1b\u202e"),
    Case("huge prompt", "limit is 2000", prompt="word " * 2000),
    Case("script of emojis", "no speakable text", prompt=None, script="🎉🎉 [laughs] 🚀"),
    Case("no face", "no face found in landscape.png", portrait=("landscape.png", _no_face())),
    Case("not an image", "not a readable image or video", portrait=("notes.png", b"not a PNG")),
    Case("animated GIF", "is GIF; use PNG, JPEG or WebP", portrait=("anim.png", _animated("GIF"))),
    Case("animated PNG", "is an animated PNG", portrait=("anim.png", _animated("PNG"))),
    Case("decompression bomb", "has too many pixels", portrait=("bomb.png", _huge_png(20000))),
    Case("100 megapixels", "the limit is 40 megapixels", portrait=("big.png", _huge_png(10000))),
    Case("bad email", "is not valid", email="someone@@nowhere"),
    Case("notification in the past", "is in the past", notify_at=YESTERDAY.isoformat()),
    Case("notification far away", "days away", notify_at=FAR_FUTURE),
    Case("notification without zone", "has no time zone", notify_at="2030-01-01T09:00"),
    Case("loud", "target_lufs: 3.0 is outside -40..-5", cli_only=["--target-lufs", "3"]),
    Case("unknown genre", "unknown music genre 'polka'", cli_only=["--genre", "polka"]),
    Case(
        "voice reference where the voice cannot clone",
        "voice_reference: the speech backend here (piper) does not clone voices",
        voice=("me.wav", _wav(4.0)),
    ),
]


def _files(tmp_path: Path, case: Case) -> tuple[Path, Path | None]:
    name, data = case.portrait or ("portrait.png", SAMPLE_PORTRAIT.read_bytes())
    portrait = tmp_path / "in" / name
    portrait.parent.mkdir(exist_ok=True)
    portrait.write_bytes(data)
    script = None
    if case.script is not None:
        script = tmp_path / "in" / "script.txt"
        script.write_text(case.script, encoding="utf-8")
    if case.voice is not None:
        (tmp_path / "in" / case.voice[0]).write_bytes(case.voice[1])
    return portrait, script


def _cli(command: str, case: Case, tmp_path: Path) -> str:
    portrait, script = _files(tmp_path, case)
    script = case.script_path or script
    args = [command, "--user-id", case.user_id, "--portrait", case.portrait_path or str(portrait)]
    args += ["--prompt", case.prompt] if case.prompt is not None else []
    args += ["--script-file", str(script)] if script is not None else []
    args += ["--voice-reference", str(tmp_path / "in" / case.voice[0])] if case.voice else []
    if case.email or case.notify_at:
        if command == "generate":
            return ""  # `generate` runs now: it takes no notification time or address
        args += ["--email", case.email] if case.email else []
        args += ["--notify-at", case.notify_at] if case.notify_at else []
    result = CliRunner().invoke(app, [*args, *case.cli_only])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith(CLI_ERROR)]
    assert len(lines) == 1, result.output
    return lines[0].removeprefix(CLI_ERROR)


def _portal(case: Case) -> str:
    import portal  # streamlit_app/portal.py

    at = app_test(USER)
    at.run()
    at.switch_page("app_pages/new_request.py").run()
    if case.script is not None:
        at.radio[0].set_value(portal.MODE_SCRIPT).run()
    at.text_area[0].input(case.prompt if case.prompt is not None else case.script)
    name, data = case.portrait or ("portrait.png", SAMPLE_PORTRAIT.read_bytes())
    at.get("file_uploader")[0].upload(name, data, "image/png")
    if case.voice:
        at.get("file_uploader")[1].upload(*case.voice, "audio/wav")
    if case.email:
        at.text_input(key="email").input(case.email)
    if case.notify_at:
        when = datetime.fromisoformat(case.notify_at)
        at.date_input(key="notify_date").set_value(when.date())
        at.time_input(key="notify_time").set_value(when.time().replace(tzinfo=None))
        at.selectbox(key="time_zone").set_value("UTC")
    at.button[0].click()
    at.run()
    assert not at.exception and not at.success
    assert len(at.error) == 1, [e.value for e in at.error]
    return str(at.error[0].value).removeprefix(PORTAL_ERROR)


def _nothing_written(env: AvgenEnv, user_id: str) -> None:
    assert not (env.content / user_id).exists() if user_id else not env.content.exists()
    db_file = Path(env.db_url.removeprefix("sqlite:///"))
    if db_file.exists():  # the portal opens the database to show the page
        with AppDatabase(env.db_url).session() as s:
            assert list_requests(s, user_id or USER) == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_message_on_every_entry_point(
    case: Case, avgen_env: AvgenEnv, tmp_path: Path
) -> None:
    messages = {}
    for command in ("generate", "request"):
        if message := _cli(command, case, tmp_path):
            messages[command] = message
        # The CLI checks everything before it creates anything, the database file included.
        assert not Path(avgen_env.db_url.removeprefix("sqlite:///")).exists()
        _nothing_written(avgen_env, case.user_id)
    if case.portal_can:
        messages["portal"] = _portal(case)
        _nothing_written(avgen_env, case.user_id)
    assert case.message in next(iter(messages.values())), messages
    assert len(set(messages.values())) == 1, messages


def test_control_characters_are_stripped_newlines_and_tabs_kept(avgen_env: AvgenEnv) -> None:
    """BEL, ESC[2J, RLO and NUL never reach the database, a terminal or a page."""
    raw = "Tell me\tabout \x07tides\x1b[2J and \u202emoons\x00.\r\nThanks"
    assert strip_control_characters(raw) == "Tell me\tabout tides[2J and moons.\nThanks"
    db = AppDatabase(avgen_env.db_url)
    for text, kind in ((raw, "prompt"), ("Hello\x00 there. How are\x07 you?", "script")):
        rid = submit_request(
            db,
            avgen_env.content,
            NewRequest(
                user_id="clean",
                prompt=text if kind == "prompt" else None,
                script=text if kind == "script" else None,
                portrait=Upload("p.png", SAMPLE_PORTRAIT.read_bytes()),
            ),
        )
        with db.session() as s:
            stored = getattr(get_request(s, rid), kind)
        assert stored == strip_control_characters(text).strip()
        assert not any(ord(c) < 32 and c not in "\n\t" for c in stored)


def test_notification_times(avgen_env: AvgenEnv) -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert check_notify_at(None, now) is None
    assert check_notify_at(now - timedelta(minutes=2), now) == now  # a slow form: now
    later = datetime(2026, 12, 24, 9, 0, tzinfo=UTC)
    assert check_notify_at(later, now) == later


def test_a_portrait_is_stored_as_a_clean_png(avgen_env: AvgenEnv) -> None:
    """A JPEG with an EXIF rotation is stored upright as PNG under input/portrait.png."""
    buf = io.BytesIO()
    img = Image.open(SAMPLE_PORTRAIT).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    img.rotate(90, expand=True).save(buf, format="JPEG", exif=exif)
    db = AppDatabase(avgen_env.db_url)
    rid = submit_request(
        db,
        avgen_env.content,
        NewRequest("jpeg_user", "Hi", None, Upload("me.jpg", buf.getvalue())),
    )
    with db.session() as s:
        stored = Path(get_request(s, rid).portrait_path)
    assert stored == avgen_env.content / "jpeg_user" / rid / "input" / "portrait.png"
    with Image.open(stored) as png, Image.open(SAMPLE_PORTRAIT) as original:
        assert png.format == "PNG" and png.size == original.size


def test_a_request_from_every_entry_point_is_stored_the_same_way(avgen_env: AvgenEnv) -> None:
    """`avgen request` and the portal store the same row for the same input."""
    import portal

    result = CliRunner().invoke(
        app,
        ["request", "--user-id", "same", "--portrait", str(SAMPLE_PORTRAIT), "--prompt",
         "Tides", "--genre", "jazz", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    form = portal.RequestForm(
        mode=portal.MODE_PROMPT, text="Tides", portrait=SAMPLE_PORTRAIT.read_bytes(),
        portrait_name="portrait.png", genre="jazz", music_duration_s=30, clip_duration_s=5,
        image_count=5, clip_count=5, notify_date=None, notify_time=None, time_zone="UTC",
        email="",
    )  # fmt: skip
    portal.submit_form(AppDatabase(avgen_env.db_url), "same", form)
    with AppDatabase(avgen_env.db_url).session() as s:
        a, b = list_requests(s, "same")
        assert (a.prompt, a.options, a.status) == (b.prompt, b.options, b.status)
        assert Path(a.portrait_path).read_bytes() == Path(b.portrait_path).read_bytes()
        assert a.options["target_lufs"] == -16.0  # stored complete, defaults included
