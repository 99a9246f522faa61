"""Real browser: Debian's Chromium (driven by Playwright) signs in to the portal as ``demo``,
opens the gallery and plays the demo MP4 from the media server.

The portal and the media server are started exactly as ``make serve`` starts them (the
Procfile's ``streamlit run …`` and ``avgen serve-media`` commands) on free 127.0.0.1 ports.
The screenshot is saved to ``test-artifacts/portal_gallery.png``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import IN_CI, REPO
from tests.portal.conftest import DEMO_CODE, PortalWorld, free_port

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def _require_browser() -> None:
    missing = [] if CHROMIUM.exists() else [str(CHROMIUM)]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if missing and not IN_CI:
        pytest.skip(f"real-browser test needs {' and '.join(missing)} (apt install chromium)")
    assert not missing, f"CI must provide {missing} for the real-browser test"


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


@contextmanager
def _serve(args: list[str], health: str, env: dict[str, str], log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_http(health, proc)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_gallery_plays_the_demo_video_in_chromium(world: PortalWorld, tmp_path: Path) -> None:
    _require_browser()
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    media_port, portal_port = free_port(), free_port()
    env = {**os.environ, **world.env(), "AVGEN_MEDIA_URL": f"http://127.0.0.1:{media_port}"}
    env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    media = [str(BIN / "avgen"), "serve-media", "--host", "127.0.0.1", "--port", str(media_port)]
    portal = [
        str(BIN / "streamlit"), "run", "streamlit_app/streamlit_app.py",
        "--server.address", "127.0.0.1", "--server.port", str(portal_port),
        "--server.headless", "true",
    ]  # fmt: skip
    portal_url = f"http://127.0.0.1:{portal_port}"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "portal_gallery.png"
    with (
        _serve(media, f"http://127.0.0.1:{media_port}/healthz", env, tmp_path / "media.log"),
        _serve(portal, f"{portal_url}/_stcore/health", env, tmp_path / "portal.log"),
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1500})
            page.goto(portal_url, wait_until="domcontentloaded")
            page.get_by_label("User id").fill("demo", timeout=60_000)
            page.get_by_label("Access code").fill(DEMO_CODE)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("heading", name="Your gallery").wait_for(timeout=60_000)
            page.locator("video").first.wait_for(state="attached", timeout=30_000)
            page.wait_for_function(
                "() => { const v = document.querySelector('video');"
                " return v && (v.readyState >= 1 && v.duration > 0 || v.error); }",
                timeout=30_000,
            )
            state = page.evaluate(
                "() => { const v = document.querySelector('video'); return {"
                " readyState: v.readyState, duration: v.duration, src: v.currentSrc,"
                " tracks: [...v.textTracks].map(t => t.kind + ':' + t.label),"
                " error: v.error ? v.error.code + ' ' + v.error.message : null }; }"
            )
            # The captions track can be switched on and its cues load (off again after).
            page.evaluate(
                "() => { document.querySelector('video').textTracks[0].mode = 'showing'; }"
            )
            page.wait_for_function(
                "() => { const t = document.querySelector('video').textTracks[0];"
                " return t.cues && t.cues.length > 0; }",
                timeout=30_000,
            )
            cue = page.evaluate("() => document.querySelector('video').textTracks[0].cues[0].text")
            page.evaluate(
                "() => { document.querySelector('video').textTracks[0].mode = 'hidden'; }"
            )
            page.get_by_text("Hello there.").first.wait_for(state="attached", timeout=10_000)
            # The images of the package load from the media server too.
            page.wait_for_function(
                f"() => {{ const imgs = [...document.images].filter("
                f"i => i.src.startsWith('http://127.0.0.1:{media_port}/media/'));"
                " return imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
                timeout=30_000,
            )
            # For the screenshot: wait for a decoded frame (readyState 2) if one comes.
            with contextlib.suppress(PlaywrightTimeout):
                page.wait_for_function(
                    "() => document.querySelector('video').readyState >= 2", timeout=15_000
                )
            with contextlib.suppress(PlaywrightTimeout):  # the script run has finished
                page.locator('[data-testid="stStatusWidget"]').wait_for(
                    state="detached", timeout=10_000
                )
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert state["error"] is None, state
    assert state["readyState"] >= 1 and state["duration"] > 0.3, state
    assert state["src"].startswith(f"http://127.0.0.1:{media_port}/media/"), state
    assert state["src"].endswith("/final_video/final.mp4"), state  # the final cut leads
    assert state["tracks"] == ["captions:English"], state
    assert "Hello" in cue
    assert world.demo_completed not in state["src"]  # the request id travels signed only
    assert shot.stat().st_size > 10_000
