"""The new-request page: a real upload through the page is stored Queued; bad input is not."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from avgen_dagster.store.models import GenerationRequest, User
from avgen_dagster.store.session import AppDatabase
from tests.conftest import SAMPLE_PORTRAIT
from tests.portal.conftest import PortalWorld, app_test


def _requests(world: PortalWorld, user_id: str) -> list[GenerationRequest]:
    with AppDatabase(world.db_url).session() as s:
        return list(
            s.scalars(select(GenerationRequest).where(GenerationRequest.user_id == user_id))
        )


def _page(user_id: str, email: str | None = None):  # type: ignore[no-untyped-def]
    at = app_test(user_id)
    at.run()
    at.switch_page("app_pages/new_request.py").run()
    assert not at.exception
    assert [t.value for t in at.title] == ["New request"]
    return at


def _no_face_png() -> bytes:
    """A smooth colour gradient: a valid PNG with no face in it."""
    y, x = np.mgrid[0:256, 0:256]
    img = np.stack([x, y, (x + y) // 2], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def test_request_with_uploaded_portrait_is_stored_queued(world: PortalWorld) -> None:
    with AppDatabase(world.db_url).session() as s:
        s.add(User(user_id="carol", email="carol@example.com", created_at=datetime.now(UTC)))
    day = date.today() + timedelta(days=30)
    at = _page("carol")
    assert at.text_input(key="email").value == "carol@example.com"  # prefilled from the user
    at.radio[0].set_value("Use my own script").run()
    at.text_area[0].input("Hello, and welcome to the team.")
    at.get("file_uploader")[0].upload("me.png", SAMPLE_PORTRAIT.read_bytes(), "image/png")
    at.selectbox(key="genre").set_value("jazz")
    at.number_input(key="music_s").set_value(45)
    at.number_input(key="clip_s").set_value(6)
    at.number_input(key="image_count").set_value(3)
    at.number_input(key="clip_count").set_value(1)
    at.date_input(key="notify_date").set_value(day)
    at.time_input(key="notify_time").set_value(time(9, 30))
    at.selectbox(key="time_zone").set_value("Europe/Berlin")
    at.button[0].click()
    at.run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    (req,) = _requests(world, "carol")
    assert req.request_id in at.success[0].value
    assert "queued and will start shortly" in at.success[0].value
    assert req.status == "Queued"
    assert req.script == "Hello, and welcome to the team." and req.prompt is None
    expected = {
        "genre": "jazz",
        "music_duration_s": 45,
        "clip_duration_s": 6,
        "image_count": 3,
        "clip_count": 1,
    }
    assert {key: req.options[key] for key in expected} == expected
    berlin = datetime.combine(day, time(9, 30), tzinfo=ZoneInfo("Europe/Berlin"))
    assert req.notify_at == berlin.astimezone(UTC)
    assert req.notify_at.hour in (7, 8)  # 09:30 CEST / CET
    stored = Path(req.portrait_path or "")
    assert stored.is_file() and stored.is_relative_to(world.content / "carol" / req.request_id)
    with Image.open(stored) as img:
        assert img.format == "PNG" and img.size == Image.open(SAMPLE_PORTRAIT).size


def test_prompt_request_defaults_to_notify_when_ready(world: PortalWorld) -> None:
    at = _page("dave")
    at.context = {}
    at.text_area[0].input("A short welcome for new volunteers")
    at.get("file_uploader")[0].upload("me.jpg", SAMPLE_PORTRAIT.read_bytes(), "image/jpeg")
    at.button[0].click()
    at.run()
    assert not at.error, [e.value for e in at.error]
    (req,) = _requests(world, "dave")
    assert req.prompt == "A short welcome for new volunteers" and req.script is None
    assert req.notify_at is None and req.options["genre"] is None  # the plan's mood


def test_browser_time_zone_is_the_default(world: PortalWorld) -> None:
    at = app_test("erin")
    at.context = {"timezone": "America/New_York"}
    at.run()
    at.switch_page("app_pages/new_request.py").run()
    assert at.selectbox(key="time_zone").value == "America/New_York"
    at = _page("erin")
    assert at.selectbox(key="time_zone").value == "UTC"  # no browser zone known


def test_no_face_upload_is_refused_and_nothing_is_stored(world: PortalWorld) -> None:
    at = _page("frank")
    at.text_area[0].input("A short welcome")
    at.get("file_uploader")[0].upload("landscape.png", _no_face_png(), "image/png")
    at.button[0].click()
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "face" in at.error[0].value.lower()
    assert "landscape.png" in at.error[0].value
    assert not at.success
    assert _requests(world, "frank") == []
    assert not (world.content / "frank").exists()


def test_wrong_type_and_missing_upload_are_refused(world: PortalWorld) -> None:
    buf = io.BytesIO()
    Image.open(SAMPLE_PORTRAIT).convert("RGB").save(buf, format="GIF")
    at = _page("grace")
    at.text_area[0].input("A short welcome")
    at.get("file_uploader")[0].upload("me.png", buf.getvalue(), "image/png")  # GIF inside
    at.button[0].click()
    at.run()
    assert "GIF" in at.error[0].value and "PNG, JPEG or WebP" in at.error[0].value

    at = _page("grace")
    at.text_area[0].input("A short welcome")
    at.button[0].click()
    at.run()
    assert "choose a portrait photo" in at.error[0].value
    assert _requests(world, "grace") == []
    assert not (world.content / "grace").exists()


def test_a_voice_reference_is_cloned_where_the_backend_can_and_refused_where_not(
    world: PortalWorld, monkeypatch: pytest.MonkeyPatch, tiny_xtts_dir: Path
) -> None:
    from tests.test_voice_reference import clip_bytes

    def submit(voice: tuple[str, bytes]):  # type: ignore[no-untyped-def]
        at = _page("vera")
        at.text_area[0].input("A short welcome")
        at.get("file_uploader")[0].upload("me.png", SAMPLE_PORTRAIT.read_bytes(), "image/png")
        (uploader,) = [u for u in at.get("file_uploader") if u.key == "voice_reference"]
        uploader.upload(*voice, "audio/wav")
        at.button[0].click()
        at.run()
        assert not at.exception
        return at

    at = submit(("me.wav", clip_bytes(4.0)))  # the default speech backend, Piper
    assert "voice_reference: the speech backend here (piper) does not clone" in at.error[0].value
    assert _requests(world, "vera") == [] and not (world.content / "vera").exists()

    monkeypatch.setenv("AVGEN_SPEECH_BACKEND", "coqui")
    monkeypatch.setenv("AVGEN_SPEECH_MODEL", str(tiny_xtts_dir))
    at = submit(("short.wav", clip_bytes(2.0)))
    assert "voice reference 'short.wav' is 2.00 s long" in at.error[0].value
    assert _requests(world, "vera") == []
    at = submit(("me.wav", clip_bytes(4.0)))
    assert not at.error, [e.value for e in at.error]
    (req,) = _requests(world, "vera")
    assert req.voice_reference_path == str(
        world.content / "vera" / req.request_id / "input" / "voice_reference.wav"
    )
