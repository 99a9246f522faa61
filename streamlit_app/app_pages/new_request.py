"""Ask for new content: prompt or script, portrait, music, durations, counts, notification."""

from __future__ import annotations

from datetime import date, timedelta

import portal
import streamlit as st

from avgen_dagster.errors import AvgenError
from avgen_dagster.options import option_default, option_help, option_range
from avgen_dagster.store.models import User

user_id = portal.current_user()
if user_id is None:
    st.stop()

st.title("New request")
db = portal.database()
with db.session() as s:
    user = s.get(User, user_id)
    default_email = (user.email if user is not None else None) or ""

mode = st.radio(
    "Narration",
    [portal.MODE_PROMPT, portal.MODE_SCRIPT],
    horizontal=True,
    help="Let the writer turn a prompt into a narration, or give the exact words yourself.",
)
zones = portal.time_zones()
browser_zone = portal.browser_time_zone()

with st.form("new_request"):
    if mode == portal.MODE_PROMPT:
        text = st.text_area("Prompt", placeholder="A warm welcome to our new volunteers")
    else:
        text = st.text_area("Script", placeholder="Hello everyone, and welcome…", height=200)
    upload = st.file_uploader(
        "Portrait photo (one face, PNG, JPEG or WebP, up to 10 MB)",
        type=list(portal.PORTRAIT_TYPES),
    )
    voice = st.file_uploader(
        "Voice to clone (optional: 3-30 s of your speech, WAV, FLAC, OGG or MP3, up to 20 MB)",
        type=list(portal.VOICE_REFERENCE_TYPES),
        help="The narration is spoken in this voice where the server's speech backend clones "
        "voices (Coqui XTTS); otherwise the request is refused and you can send it without.",
        key="voice_reference",
    )
    col1, col2 = st.columns(2)
    genre = col1.selectbox(
        "Music genre",
        [None, *portal.GENRES],
        format_func=lambda g: "From the script's mood" if g is None else g.title(),
        help=option_help("genre"),
        key="genre",
    )
    music_s = col2.number_input(
        "Music length (seconds)", 5, int(option_range("music_duration_s")[1] or 300),
        int(option_default("music_duration_s")), step=5, help=option_help("music_duration_s"),
        key="music_s",
    )  # fmt: skip
    col1, col2, col3 = st.columns(3)
    image_count = col1.number_input(
        "Images", *map(int, option_range("image_count")), option_default("image_count"),
        help=option_help("image_count"), key="image_count",
    )  # fmt: skip
    clip_count = col2.number_input(
        "Video clips", *map(int, option_range("clip_count")), option_default("clip_count"),
        help=option_help("clip_count"), key="clip_count",
    )  # fmt: skip
    clip_s = col3.number_input(
        "Clip length (seconds)", 1, int(option_range("clip_duration_s")[1] or 60),
        int(option_default("clip_duration_s")), help=option_help("clip_duration_s"),
        key="clip_s",
    )  # fmt: skip
    st.markdown("**Final cut**")
    col1, col2, col3, col4 = st.columns(4)
    video_format = col1.selectbox(
        "Format", ["vertical", "landscape", "square"], help=option_help("format"), key="format"
    )
    captions = col2.toggle("Captions", value=True, help=option_help("captions"), key="captions")
    broll = col3.selectbox(
        "B-roll", ["every_n", "pip", "none"], help=option_help("broll"), key="broll"
    )
    music_bed = col4.toggle("Music bed", value=True, help=option_help("music_bed"), key="music_bed")
    st.markdown("**Notify me** (leave the date empty to be told as soon as it is ready)")
    col3, col4, col5 = st.columns(3)
    notify_date = col3.date_input(
        "Date",
        value=None,
        min_value=date.today() - timedelta(days=1),
        max_value=date.today() + timedelta(days=366),
        key="notify_date",
    )
    notify_time = col4.time_input("Time", value=None, step=300, key="notify_time")
    zone = col5.selectbox("Time zone", zones, index=zones.index(browser_zone), key="time_zone")
    email = st.text_input(
        "Email for the notification", value=default_email, max_chars=320, key="email"
    )
    submitted = st.form_submit_button("Request", type="primary")

if submitted:
    form = portal.RequestForm(
        mode=mode,
        text=text,
        portrait=upload.getvalue() if upload is not None else None,
        portrait_name=upload.name if upload is not None else "",
        genre=genre,
        music_duration_s=float(music_s),
        clip_duration_s=float(clip_s),
        image_count=int(image_count),
        clip_count=int(clip_count),
        final_options={
            "format": video_format,
            "captions": bool(captions),
            "broll": broll,
            "music_bed": bool(music_bed),
        },
        notify_date=notify_date,
        notify_time=notify_time,
        time_zone=zone,
        email=email,
        voice_reference=voice.getvalue() if voice is not None else None,
        voice_reference_name=voice.name if voice is not None else "",
    )
    try:
        request_id = portal.submit_form(db, user_id, form)
    except AvgenError as exc:
        st.error(f"Your request was not accepted: {exc}")
    else:
        st.success(
            f"Request `{request_id}` is queued and will start shortly. Follow it in your "
            "**Gallery**."
        )
