"""Content on an S3-compatible object store (moto on 127.0.0.1): the content tree, intake, the
media server, and the talking-head job re-executed on "another machine" (an empty working copy).
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import dagster as dg
import pytest

from avgen_dagster.errors import ContentStoreError
from avgen_dagster.intake import NewRequest, submit_request
from avgen_dagster.media_server import media_url
from avgen_dagster.portraits import Upload
from avgen_dagster.store import AppDatabase
from avgen_dagster.store.content import ContentTree
from avgen_dagster.store.requests import get_request
from tests.conftest import SAMPLE_PORTRAIT, AvgenEnv
from tests.deploy.servers import S3Server
from tests.portal.conftest import media_server
from tests.portal.test_browser import CHROMIUM, CHROMIUM_ARGS, _require_browser

SECRET = "object-store-test-secret"
USER = "alice"
RID = "0123456789abcdef0123456789abcdef"
OTHER_RID = "fedcba9876543210fedcba9876543210"


@pytest.fixture
def bucket_url(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto server, the AWS environment pointing at it; its URL."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    name = f"avgen-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return f"s3://{name}/content"


def _objects(s3_server: S3Server, url: str) -> dict[str, bytes]:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    s3 = s3_server.client()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    return {
        o["Key"][len(prefix) + 1 :]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in listed
    }


def _write_hls(tree: ContentTree) -> Path:
    folder = tree.work_dir(USER, RID, "hls")
    (folder / "seg_000.ts").write_bytes(b"\x47" * 188 * 4)
    (folder / "seg_001.ts").write_bytes(b"\x47" * 188 * 2)
    (folder / "index.m3u8").write_text("#EXTM3U\n#EXTINF:6.0,\nseg_000.ts\n#EXT-X-ENDLIST\n")
    (folder / ".tmp-abc-seg_002.ts").write_bytes(b"half written")
    return folder


def test_publish_uploads_visible_files_playlists_last_and_reads_back_elsewhere(
    s3_server: S3Server, bucket_url: str, tmp_path: Path
) -> None:
    writer = ContentTree(bucket_url, cache_dir=tmp_path / "machine_a")
    uris = writer.publish(_write_hls(writer))
    base = f"{bucket_url}/{USER}/{RID}/hls"
    assert uris == [f"{base}/seg_000.ts", f"{base}/seg_001.ts", f"{base}/index.m3u8"]
    stored = _objects(s3_server, bucket_url)
    assert sorted(stored) == sorted(
        f"{USER}/{RID}/hls/{n}" for n in ("seg_000.ts", "seg_001.ts", "index.m3u8")
    )
    assert list(writer.iter_request_files(USER, RID)) == sorted(uris)

    # Another machine: an empty working copy, files fetched on demand, byte for byte.
    reader = ContentTree(bucket_url, cache_dir=tmp_path / "machine_b")
    local = reader.local_file(f"{base}/seg_000.ts")
    assert local.is_relative_to(tmp_path / "machine_b")
    assert local.read_bytes() == stored[f"{USER}/{RID}/hls/seg_000.ts"]
    assert not [p for p in local.parent.iterdir() if p.name.startswith(".tmp-")]
    # A re-run replaced the object: the stale working copy is fetched again.
    folder = writer.work_dir(USER, RID, "hls")
    (folder / "seg_000.ts").write_bytes(b"\x47" * 188 * 8)
    writer.publish(folder / "seg_000.ts")
    assert reader.local_file(f"{base}/seg_000.ts").stat().st_size == 188 * 8


def test_missing_object_and_foreign_uri_are_clear_errors(bucket_url: str, tmp_path: Path) -> None:
    tree = ContentTree(bucket_url, cache_dir=tmp_path / "cache")
    missing = f"{bucket_url}/{USER}/{RID}/stitched_mp4/talking_head.mp4"
    with pytest.raises(ContentStoreError, match="does not exist"):
        tree.local_file(missing)
    with pytest.raises(ContentStoreError, match="not in the content store"):
        tree.local_file("s3://some-other-bucket/x/talking_head.mp4")
    assert not tree.exists(missing)
    with pytest.raises(ContentStoreError, match="does not exist"):
        tree.read_bytes(missing)


def test_unreachable_store_fails_with_the_file_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.deploy.servers import free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    tree = ContentTree(
        "s3://avgen-nowhere/content",
        cache_dir=tmp_path / "cache",
        storage_options={
            "endpoint_url": dead,
            "config_kwargs": {"retries": {"max_attempts": 1}},
        },
    )
    out = tree.work_dir(USER, RID, "script") / "script.txt"
    out.write_text("hello")
    with pytest.raises(ContentStoreError, match=r"could not upload script\.txt"):
        tree.publish(out)


def test_gate_names_only_files_inside_the_request(bucket_url: str, tmp_path: Path) -> None:
    tree = ContentTree(bucket_url, cache_dir=tmp_path / "cache")
    base = f"{bucket_url}/{USER}/{RID}"
    assert tree.relative_in_request(USER, RID, f"{base}/hls/index.m3u8") == "hls/index.m3u8"
    assert tree.relative_in_request(USER, RID, "stitched_mp4/talking_head.mp4") == (
        "stitched_mp4/talking_head.mp4"
    )
    for bad in (
        f"{bucket_url}/{USER}/{OTHER_RID}/hls/index.m3u8",  # another request
        f"{bucket_url}/bob/{RID}/hls/index.m3u8",  # another user
        f"{base}/../{OTHER_RID}/x.mp4",
        f"{base}/hls/.tmp-1-index.m3u8",
        f"{base}",
        "s3://elsewhere/alice/x.mp4",
        None,
    ):
        assert tree.relative_in_request(USER, RID, bad) is None, bad


def test_intake_stores_the_portrait_in_the_store_and_rolls_back(
    s3_server: S3Server, bucket_url: str, tmp_path: Path
) -> None:
    tree = ContentTree(bucket_url, cache_dir=tmp_path / "cache")
    db = AppDatabase(f"sqlite:///{tmp_path / 'app.db'}")
    new = NewRequest(
        user_id=USER,
        prompt="Why is the sky blue?",
        script=None,
        portrait=Upload("portrait.png", SAMPLE_PORTRAIT.read_bytes()),
        options={},
    )
    rid = submit_request(db, tree, new)
    with db.session() as s:
        stored = get_request(s, rid).portrait_path
    assert stored == f"{bucket_url}/{USER}/{rid}/input/portrait.png"
    assert _objects(s3_server, bucket_url)[f"{USER}/{rid}/input/portrait.png"][:8] == (
        b"\x89PNG\r\n\x1a\n"
    )

    # The database refuses the row: the uploaded portrait is removed again.
    broken_db = AppDatabase(f"sqlite:///{tmp_path / 'app.db'}")

    def refuse(*_a: object, **_k: object) -> None:
        raise RuntimeError("database is down")

    broken_db.session = refuse  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="database is down"):
        submit_request(broken_db, tree, new)
    assert list(_objects(s3_server, bucket_url)) == [f"{USER}/{rid}/input/portrait.png"]


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_media_server_proxies_playlists_and_presigns_the_rest(
    bucket_url: str, tmp_path: Path
) -> None:
    tree = ContentTree(bucket_url, cache_dir=tmp_path / "cache")
    tree.publish(_write_hls(tree))
    # The server runs with its own, empty working copy: everything comes from the store.
    server_tree = ContentTree(bucket_url, cache_dir=tmp_path / "server_cache")
    with media_server(server_tree, SECRET) as base:  # type: ignore[arg-type]
        playlist = media_url(base, USER, RID, "hls/index.m3u8", SECRET)
        status, body, headers = _get(playlist)
        assert status == 200 and body.startswith(b"#EXTM3U")
        assert headers["content-type"] == "application/vnd.apple.mpegurl"

        # Segments: 307 to a presigned URL of the object, which serves the bytes and ranges.
        segment = playlist.rsplit("/", 1)[0] + "/seg_000.ts"
        opener = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(segment, timeout=20)
        assert redirect.value.code == 307
        location = redirect.value.headers["location"]
        assert "X-Amz-Signature=" in location and "/hls/seg_000.ts" in location
        status, body, _ = _get(segment)
        assert status == 200 and body == b"\x47" * 188 * 4
        status, body, _ = _get(segment, {"Range": "bytes=0-187"})
        assert status == 206 and len(body) == 188

        # Everything else is refused with 404 and no redirect.
        tampered = playlist.replace("/media/", "/media/x")
        for url in (
            tampered,
            media_url(base, USER, OTHER_RID, "hls/index.m3u8", SECRET),
            media_url(base, USER, RID, "hls/.tmp-abc-seg_002.ts", SECRET),
            media_url(base, USER, RID, "hls/missing.ts", SECRET),
            playlist.rsplit("/", 2)[0] + "/hls/../../" + OTHER_RID + "/hls/index.m3u8",
        ):
            status, _, _ = _get(url)
            assert status == 404, url
    assert not (tmp_path / "server_cache").exists()  # served from the store, not copied


@pytest.mark.slow
def test_job_writes_to_the_store_and_reexecutes_on_another_machine(
    avgen_env: AvgenEnv,
    s3_server: S3Server,
    bucket_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The talking-head assets with content and outputs in the store, then `hls` alone
    re-materialized with an empty working copy (a different pod): it loads its input from
    the store's IO manager and fetches the MP4 from the store."""
    from avgen_dagster.assets import final_cut, records, talking_head, visuals
    from avgen_dagster.checks import talking_head_checks
    from avgen_dagster.definitions import default_resources
    from avgen_dagster.resources.io import RequestOutputsIOManager
    from avgen_dagster.runs import REQUEST_ID_TAG
    from avgen_dagster.settings import get_settings
    from avgen_dagster.store import status

    monkeypatch.setenv("AVGEN_CONTENT_URL", bucket_url)
    monkeypatch.setenv("AVGEN_CONTENT_CACHE_DIR", str(tmp_path / "pod_1"))
    db = AppDatabase(avgen_env.db_url)
    rid = submit_request(
        db,
        get_settings().content_tree(),
        NewRequest(
            user_id=USER,
            prompt=None,
            script="Hello from the object store. This video lives in a bucket.",
            portrait=Upload("portrait.png", SAMPLE_PORTRAIT.read_bytes()),
            options={},
        ),
    )
    with db.session() as s:
        status.submit(s, rid)  # as the request sensor does
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("user_id", [USER])
    assets = [
        *dg.load_assets_from_modules([talking_head, visuals, final_cut, records]),
        *talking_head_checks,
    ]
    resources = default_resources()
    # Asset outputs go to the store too, beside the request's files (another pod reads them).
    assert isinstance(resources["io_manager"], RequestOutputsIOManager)
    assert resources["io_manager"].root == bucket_url
    first = dg.materialize(
        assets,
        instance=instance,
        partition_key=USER,
        resources=resources,
        tags={REQUEST_ID_TAG: rid},
        selection=dg.AssetSelection.groups("talking_head"),
    )
    assert first.success
    checks = {
        (e.asset_key.to_user_string(), e.asset_check_key.name): e.passed
        for e in first.get_asset_check_evaluations()
    }
    assert all(checks.values()) and len(checks) == 8, checks

    stored = _objects(s3_server, bucket_url)
    names = {k.split("/", 2)[2] for k in stored if k.startswith(f"{USER}/{rid}/")}
    assert {
        "input/portrait.png",
        "script/script.txt",
        "tts_clips/segment_000.wav",
        "normalized_audio/segment_000.wav",
        "lipsync_segments/segment_000.mp4",
        "stitched_mp4/talking_head.mp4",
        "hls/index.m3u8",
    } <= names
    assert f"{USER}/{rid}/.outputs/stitched_mp4.pickle" in stored
    mp4_meta = first.asset_materializations_for_node("stitched_mp4")[0].metadata
    assert mp4_meta["file"].value == f"{bucket_url}/{USER}/{rid}/stitched_mp4/talking_head.mp4"

    # Pod 2: nothing local. HLS alone, from the store.
    shutil.rmtree(tmp_path / "pod_1")
    monkeypatch.setenv("AVGEN_CONTENT_CACHE_DIR", str(tmp_path / "pod_2"))
    before = stored[f"{USER}/{rid}/hls/index.m3u8"]
    second = dg.materialize(
        assets,
        instance=instance,
        partition_key=USER,
        resources=default_resources(),
        tags={REQUEST_ID_TAG: rid},
        selection=dg.AssetSelection.assets("hls"),
    )
    assert second.success
    assert (tmp_path / "pod_2" / USER / rid / "stitched_mp4" / "talking_head.mp4").is_file()
    after = _objects(s3_server, bucket_url)
    assert after[f"{USER}/{rid}/hls/index.m3u8"] == before  # same MP4 in → same playlist out
    hls_meta = second.asset_materializations_for_node("hls")[0].metadata
    assert hls_meta["playlist"].value == f"{bucket_url}/{USER}/{rid}/hls/index.m3u8"

    # A real browser plays the MP4 through the media server's redirect to the bucket.
    _require_browser()
    from playwright.sync_api import sync_playwright

    server_tree = ContentTree(bucket_url, cache_dir=tmp_path / "media_server")
    with media_server(server_tree, SECRET) as base, sync_playwright() as pw:  # type: ignore[arg-type]
        src = media_url(base, USER, rid, "stitched_mp4/talking_head.mp4", SECRET)
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.set_content(f'<video muted preload="auto" src="{src}"></video>')
            page.wait_for_function(
                "() => { const v = document.querySelector('video');"
                " return v.readyState >= 1 && v.duration > 0 || v.error; }",
                timeout=30_000,
            )
            state = page.evaluate(
                "() => { const v = document.querySelector('video'); return {"
                " readyState: v.readyState, duration: v.duration, src: v.currentSrc,"
                " error: v.error ? v.error.code + ' ' + v.error.message : null }; }"
            )
        finally:
            browser.close()
    assert state["error"] is None and state["readyState"] >= 1, state
    assert abs(state["duration"] - mp4_meta["duration_s"].value) < 0.1, state
    assert state["src"] == src  # the page names the media server; the bytes came from S3
