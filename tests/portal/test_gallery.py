"""The gallery: only the signed-in user's requests, the right message per status, real media
through signed URLs, the script from the Dagster catalog, and one view log per item."""

from __future__ import annotations

import re

import catalog
import dagster as dg
from sqlalchemy import select

from avgen_dagster.media_server import resolve_media_path
from avgen_dagster.store.models import ContentView
from avgen_dagster.store.session import AppDatabase
from tests.portal.conftest import BOB_FAILURE, SECRET, PortalWorld, app_test, rendered

PROCESSING = "Your content is being generated. Please check back later."
MEDIA_URL = re.compile(r"http://127\.0\.0\.1:9/media/([A-Za-z0-9_.\-]+)/([A-Za-z0-9_./\-]+)")


def _gallery(user_id: str):  # type: ignore[no-untyped-def]
    at = app_test(user_id)
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Your gallery"]
    return at


def _views(world: PortalWorld, user_id: str) -> list[tuple[str, str]]:
    with AppDatabase(world.db_url).session() as s:
        rows = s.scalars(
            select(ContentView).where(ContentView.user_id == user_id).order_by(ContentView.id)
        )
        return [(r.request_id, r.item) for r in rows]


def test_completed_request_shows_video_hls_and_script(world: PortalWorld) -> None:
    at = _gallery("demo")
    text = rendered(at)
    urls = MEDIA_URL.findall(text)
    paths = sorted({path for _, path in urls})
    assert paths == [
        "final_hls/master.m3u8",
        "final_video/captions.srt",
        "final_video/captions.vtt",
        "final_video/final.mp4",
        "hls/index.m3u8",
        "images/image_00.png",
        "images/image_01.png",
        "music/music.m4a",
        "music_video/music_video.mp4",
        "stitched_mp4/talking_head.mp4",
        "video_clips/clip_00.mp4",
    ]
    for token, path in urls:  # each URL resolves, on the server side, to demo's real file
        target = resolve_media_path(world.content, token, path, SECRET)
        assert target == world.content / "demo" / world.demo_completed / path
    assert "Hello there." in [m.value for m in at.markdown]  # the script, from the catalog
    captions = [c.value for c in at.caption]
    assert any(c.startswith("Talking head · ") for c in captions)
    # The final cut leads: vertical, its captions track on the player, downloads.
    assert any(c.startswith("Final cut · vertical 1080x1920") for c in captions), captions
    assert at.get("video")[0].proto.url.endswith("/final_video/final.mp4")
    assert len(at.get("video")[0].proto.subtitles) == 1
    assert "Music video" in captions and "Clip 1" in captions
    assert "Ambient · 2 s" in captions  # genre and length from the catalog
    assert PROCESSING not in text and not at.error


def test_gallery_lists_only_the_users_own_requests(world: PortalWorld) -> None:
    demo = rendered(_gallery("demo"))
    bob = rendered(_gallery("bob"))
    bob_ids = [world.bob_completed, world.bob_queued, world.bob_processing, world.bob_failed]
    for request_id in bob_ids:
        assert request_id not in demo and request_id in bob
    assert world.demo_completed in demo and world.demo_completed not in bob
    assert "/bob/" not in demo and str(world.content) not in demo  # no file paths at all
    for token, path in MEDIA_URL.findall(demo):
        assert resolve_media_path(world.content, token, path, SECRET).is_relative_to(
            world.content / "demo"
        )


def test_processing_and_failed_requests(world: PortalWorld) -> None:
    at = _gallery("bob")
    assert [i.value for i in at.info].count(PROCESSING) == 2  # queued + processing
    assert [e.value for e in at.error] == [f"This request failed: {BOB_FAILURE}"]
    captions = [c.value for c in at.caption]
    assert any(world.bob_queued in c and "Queued" in c for c in captions)
    assert any(world.bob_processing in c and "Processing" in c for c in captions)
    # Newest first: the failed one was created last, bob's completed run first.
    order = [c for c in captions if "· id `" in c]
    assert world.bob_failed in order[0] and world.bob_completed in order[-1]


def test_views_are_logged_once_per_session_and_item(world: PortalWorld) -> None:
    before = len(_views(world, "demo"))
    at = _gallery("demo")
    at.run()  # a rerun in the same session logs nothing new
    logged = _views(world, "demo")[before:]
    rid = world.demo_completed
    assert sorted(item for _, item in logged) == [
        "final_video",
        "hls",
        "hls_master",
        "image:images/image_00.png",
        "image:images/image_01.png",
        "music",
        "script",
        "video",
        "video:music_video/music_video.mp4",
        "video:video_clips/clip_00.mp4",
    ]
    assert {r for r, _ in logged} == {rid}
    _gallery("demo")  # a new session is a new view
    assert len(_views(world, "demo")) == before + 2 * len(logged)
    assert all(rid != world.demo_completed for rid, _ in _views(world, "bob"))


def test_catalog_reads_the_users_partition_only(world: PortalWorld) -> None:
    instance = dg.DagsterInstance.get()
    demo = catalog.read_catalog(instance, "demo", [world.demo_completed])
    assets = demo[world.demo_completed]
    assert assets["script"]["script"] == "Hello there." and assets["script"]["segment_count"] == 1
    assert assets["stitched_mp4"]["duration_s"] > 0.3
    assert assets["hls"]["playlist"].endswith("hls/index.m3u8")
    # Asking bob's partition for demo's request finds nothing; so does an unknown request.
    assert catalog.read_catalog(instance, "bob", [world.demo_completed]) == {}
    assert catalog.read_catalog(instance, "demo", ["0" * 32]) == {}
    # The cached adapter returns the same plain data.
    assert catalog.request_catalog("demo", [world.demo_completed]) == demo


def test_earlier_requests_stay_listed(world: PortalWorld) -> None:
    from avgen_dagster.store.requests import create_request

    with AppDatabase(world.db_url).session() as s:
        ids = [
            create_request(
                s, user_id="many", prompt=f"prompt {n}", script=None, portrait_path=None
            ).request_id
            for n in range(23)
        ]
    at = _gallery("many")
    shown = [c.value for c in at.caption if "· id `" in c.value]
    assert len(shown) == 20 and ids[-1] in shown[0] and ids[3] in shown[-1]  # newest first
    at.button[0].click()  # "Show older requests"
    at.run()
    shown = [c.value for c in at.caption if "· id `" in c.value]
    assert len(shown) == 23 and ids[0] in shown[-1]
    assert not at.button  # nothing older left


def test_retry_button_requeues_a_failed_request(world: PortalWorld) -> None:
    """A Failed request offers Retry: it goes back to Queued (new attempt, same id, history
    kept); the gallery then shows it as being generated."""
    from avgen_dagster.store import status
    from avgen_dagster.store.requests import create_request, get_request

    with AppDatabase(world.db_url).session() as s:
        rid = create_request(
            s, user_id="retrier", prompt="try me", script=None, portrait_path=None
        ).request_id
        status.submit(s, rid)
        status.fail(s, rid, "lipsync_segments: the run worker was killed")
    at = _gallery("retrier")
    assert [e.value for e in at.error] == [
        "This request failed: lipsync_segments: the run worker was killed"
    ]
    (button,) = [b for b in at.button if b.label == "Retry"]
    button.click()
    at.run()
    assert not at.exception and not at.error
    assert PROCESSING in [i.value for i in at.info]
    with AppDatabase(world.db_url).session() as s:
        req = get_request(s, rid)
        assert (req.status, req.attempt, req.error) == ("Queued", 1, None)
        assert any("retry (portal)" in (e.reason or "") for e in status.history(s, rid))
    # Bob's failed request shows a Retry button too, but another user's cannot be retried.
    assert any(b.label == "Retry" for b in _gallery("bob").button)
    import portal
    import pytest

    from avgen_dagster.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="not 'retrier'"):
        portal.retry_request(AppDatabase(world.db_url), "retrier", world.bob_failed)
