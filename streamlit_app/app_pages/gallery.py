"""The signed-in user's gallery: every request, newest first, with its content when ready."""

from __future__ import annotations

import catalog
import portal
import streamlit as st

from avgen_dagster.errors import AvgenError, ContentStoreError
from avgen_dagster.store.models import RequestStatus

user_id = portal.current_user()
if user_id is None:  # navigation only offers this page when signed in; belt and braces
    st.stop()

st.title("Your gallery")
db = portal.database()
limit = int(st.session_state.get(portal.GALLERY_LIMIT_KEY, portal.GALLERY_PAGE_SIZE))
items, more = portal.gallery_items(db, user_id, limit)

if not items:
    st.info("You have no requests yet. Ask for your first video under **New request**.")
    st.stop()

completed = [i.request_id for i in items if i.status == RequestStatus.COMPLETED.value]
try:
    meta = catalog.request_catalog(user_id, completed) if completed else {}
except Exception as exc:  # the catalog is an enhancement; files and the DB still work
    st.caption(f"(The asset catalog could not be read: {type(exc).__name__}.)")
    meta = {}

views: list[tuple[str, str]] = []


def _path_in(item: portal.GalleryItem, path: str | None) -> str | None:
    return portal.relative_in_request(user_id, item.request_id, path)


def _show_final(item: portal.GalleryItem, assets: dict[str, dict]) -> None:
    """The finished cut first: player with its captions track, downloads, the HLS ladder."""
    rid, out = item.request_id, item.outputs
    final = _path_in(item, out.final_video)
    if final is None:
        return
    vtt = _path_in(item, out.captions_vtt)
    subtitles = None
    if vtt is not None and out.captions_vtt:
        try:  # the player's captions track (on/off in its menu), served by Streamlit
            subtitles = {"English": portal.content_tree().read_bytes(out.captions_vtt)}
        except ContentStoreError:
            subtitles = None
    left, right = st.columns([2, 3])
    left.video(portal.signed_url(user_id, rid, final), subtitles=subtitles)
    views.append((rid, "final_video"))
    with right:
        info = assets.get("final_video", {})
        if info.get("resolution"):
            st.caption(
                f"Final cut · {info.get('format', '')} {info['resolution']} · "
                f"{float(info.get('duration_s', 0)):.1f} s · {info.get('cue_count', 0)} captions"
            )
        links = [f"[MP4]({portal.signed_url(user_id, rid, final)})"]
        for label, uri in (("SRT", out.captions_srt), ("VTT", out.captions_vtt)):
            if rel := _path_in(item, uri):
                links.append(f"[{label}]({portal.signed_url(user_id, rid, rel)})")
        st.markdown("Download: " + " · ".join(links))
        if master := _path_in(item, out.hls_master):
            url = portal.signed_url(user_id, rid, master)
            st.markdown(f"Adaptive HLS (1080p/720p/360p, subtitles): [master.m3u8]({url})")
            views.append((rid, "hls_master"))


def _show_completed(item: portal.GalleryItem, assets: dict[str, dict]) -> None:
    _show_final(item, assets)
    rid, out = item.request_id, item.outputs
    mp4 = _path_in(item, out.talking_head_mp4)
    if out.final_video:
        st.markdown("**Talking head**")
    left, right = st.columns([2, 3])
    if mp4 is not None:
        left.video(portal.signed_url(user_id, rid, mp4))
        views.append((rid, "video"))
    else:
        left.warning("The video file of this request is missing.")

    with right:
        if duration := assets.get("stitched_mp4", {}).get("duration_s"):
            st.caption(f"Talking head · {float(duration):.1f} s")
        if playlist := _path_in(item, out.hls_playlist):
            url = portal.signed_url(user_id, rid, playlist)
            st.markdown(f"HLS stream for web players: [index.m3u8]({url})")
            views.append((rid, "hls"))
        text = assets.get("script", {}).get("script")
        if not text and out.script and _path_in(item, out.script):
            try:
                text = portal.content_tree().read_bytes(out.script).decode()
            except ContentStoreError:
                text = None  # missing: the gallery shows the rest
        if text:
            st.markdown("**Script**")
            with st.container(height=220 if len(text) > 600 else "content"):
                st.markdown(text)
            views.append((rid, "script"))

    images = [rel for p in out.images if (rel := _path_in(item, p))]
    if images:
        st.markdown("**Images**")
        cols = st.columns(4)
        for n, rel in enumerate(images):
            cols[n % 4].image(portal.signed_url(user_id, rid, rel), width="stretch")
            views.append((rid, f"image:{rel}"))

    videos = [("Music video", _path_in(item, out.music_video))] + [
        (f"Clip {n + 1}", _path_in(item, p)) for n, p in enumerate(out.video_clips)
    ]
    videos = [(label, rel) for label, rel in videos if rel]
    if videos:
        st.markdown("**Videos**")
        cols = st.columns(3)
        for n, (label, rel) in enumerate(videos):
            with cols[n % 3]:
                st.video(portal.signed_url(user_id, rid, rel))
                st.caption(label)
            views.append((rid, f"video:{rel}"))

    # Music: the AAC file browsers play everywhere, else the WAV.
    if music := _path_in(item, out.music) or _path_in(item, out.music_wav):
        meta = assets.get("music", {})
        st.markdown("**Music**")
        st.audio(portal.signed_url(user_id, rid, music))
        if meta.get("genre") and meta.get("duration_s"):
            st.caption(f"{str(meta['genre']).title()} · {float(meta['duration_s']):.0f} s")
        views.append((rid, "music"))


def _show_failed(item: portal.GalleryItem) -> None:
    st.error(f"This request failed: {item.error or 'no reason was recorded'}")
    if st.button("Retry", key=f"retry-{item.request_id}", icon=":material/refresh:"):
        try:
            portal.retry_request(db, user_id, item.request_id)
        except AvgenError as exc:
            st.error(f"Could not retry: {exc}")
        else:
            portal.flash("info", f"Request {item.request_id} is queued again.")
            st.rerun()


for item in items:
    with st.container(border=True):
        title = (item.prompt or item.script or "").strip().replace("\n", " ")
        st.subheader(title[:80] + ("…" if len(title) > 80 else "") or "(untitled)")
        st.caption(f"Requested {item.created_at} · {item.status} · id `{item.request_id}`")
        if portal.is_pending(item.status):
            st.info(portal.PROCESSING_MESSAGE)
        elif item.status == RequestStatus.FAILED.value:
            _show_failed(item)
        elif item.status == RequestStatus.COMPLETED.value:
            _show_completed(item, meta.get(item.request_id, {}))
            if item.notification_failed:
                st.warning(item.notification)
            elif item.notification:
                st.caption(item.notification)

if more and st.button("Show older requests"):
    st.session_state[portal.GALLERY_LIMIT_KEY] = limit + portal.GALLERY_PAGE_SIZE
    st.rerun()

portal.record_views(db, user_id, views)
