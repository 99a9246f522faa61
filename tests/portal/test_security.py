"""A user can never see or fetch another user's files: the media server's signed URLs are bound
to one request folder, and the portal hands out URLs for the signed-in user's requests only."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from avgen_dagster.errors import InvalidInputError
from avgen_dagster.media_server import media_url, resolve_media_path
from tests.portal.conftest import SECRET, PortalWorld, app_test, media_server, rendered

MP4 = "stitched_mp4/talking_head.mp4"


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_media_server_serves_one_request_folder_only(world: PortalWorld) -> None:
    demo_mp4 = world.content / "demo" / world.demo_completed / MP4
    with media_server(world.content, SECRET) as base:
        good = media_url(base, "demo", world.demo_completed, MP4, SECRET)
        status, body = _get(good)
        assert status == 200 and body == demo_mp4.read_bytes()

        # demo's token with the path pointed at bob's request (percent-encoded so no client
        # normalises the dots away before the server sees them).
        token = good.split("/media/")[1].split("/")[0]
        escape = f"%2E%2E%2F%2E%2E%2Fbob%2F{world.bob_completed}%2F{MP4.replace('/', '%2F')}"
        assert _get(f"{base}/media/{token}/{escape}")[0] == 404
        assert _get(f"{base}/media/{token}/../../bob/{world.bob_completed}/{MP4}")[0] == 404

        # A token signed for bob cannot be re-labelled as demo's; a tampered one is refused.
        bob = media_url(base, "bob", world.bob_completed, MP4, SECRET)
        bob_token = bob.split("/media/")[1].split("/")[0]
        tampered = bob_token[:-2] + ("AA" if not bob_token.endswith("AA") else "BB")
        assert _get(f"{base}/media/{tampered}/{MP4}")[0] == 404
        forged = media_url(base, "bob", world.bob_completed, MP4, "not-the-secret")
        assert _get(forged)[0] == 404
        # Folder listings, hidden files and the request folder itself are not served.
        assert _get(f"{base}/media/{token}/stitched_mp4/")[0] == 404
        assert _get(f"{base}/media/{token}/")[0] == 404
        assert _get(f"{base}/media/{token}/%2Fetc%2Fpasswd")[0] == 404


def test_malformed_media_paths_are_refused_without_a_traceback(
    world: PortalWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """A NUL, other control characters or a 10,000-character path: 4xx, no 500, no traceback."""
    with media_server(world.content, SECRET) as base:
        good = media_url(base, "demo", world.demo_completed, MP4, SECRET)
        token = good.split("/media/")[1].split("/")[0]
        for path in (f"{MP4}%00.png", "stitched_mp4/%00", "a%07b", "a/" * 5000, "x" * 300):
            code, _ = _get(f"{base}/media/{token}/{path}")
            assert 400 <= code < 500, (path[:40], code)
        assert 400 <= _get(f"{base}/media/{'t' * 5000}/{MP4}")[0] < 500
        assert _get(good)[0] == 200  # still serving
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(
    "path",
    [
        "../../bob/{bob}/" + MP4,
        "../{bob}/" + MP4,
        "/etc/passwd",
        "..",
        "stitched_mp4/../../../../etc/passwd",
    ],
)
def test_resolve_refuses_escapes(world: PortalWorld, path: str) -> None:
    token = media_url("http://x", "demo", world.demo_completed, MP4, SECRET).split("/")[-3]
    with pytest.raises(InvalidInputError):
        resolve_media_path(world.content, token, path.format(bob=world.bob_completed), SECRET)


def test_gallery_never_hands_out_another_users_request(world: PortalWorld) -> None:
    at = app_test("demo")
    at.run()
    text = rendered(at)
    for request_id in (world.bob_completed, world.bob_queued, world.bob_failed):
        assert request_id not in text
    # Even a session whose state names bob's request id cannot make demo's gallery show it:
    # every query is filtered by the signed-in user id.
    at.session_state["avgen_gallery_limit"] = 1000
    at.run()
    assert world.bob_completed not in rendered(at)
