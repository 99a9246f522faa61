"""avgen's user portal: ``streamlit run streamlit_app/streamlit_app.py``.

Signed out: Sign in, Register. Signed in: Gallery, New request, API keys, Sign out. A sign-in link
(``/?token=…``, as a notification carries) is checked on load, then removed from the URL.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # `streamlit run` adds it; AppTest does not
    sys.path.insert(0, _HERE)

import portal  # noqa: E402

from avgen_dagster.auth import authenticate_token  # noqa: E402
from avgen_dagster.settings import secret_key  # noqa: E402

st.set_page_config(page_title="avgen", page_icon=":material/movie:", layout="wide")


def _token_sign_in() -> None:
    token = st.query_params.get("token")
    if token is None:
        return
    del st.query_params["token"]  # never left in the address bar or the history
    with portal.database().session() as s:
        result = authenticate_token(
            s, str(token), secret_key(), client_address=portal.client_address()
        )
    if result.ok:
        portal.sign_in(result)
        portal.flash("success", f"Signed in as {result.user_id}.")
    else:
        portal.sign_out()
        portal.flash("error", result.reason)


_token_sign_in()

if portal.current_user():
    pages = [
        st.Page(
            "app_pages/gallery.py", title="Gallery", icon=":material/video_library:", default=True
        ),
        st.Page("app_pages/new_request.py", title="New request", icon=":material/add_circle:"),
        st.Page("app_pages/api_keys.py", title="API keys", icon=":material/key:"),
        st.Page("app_pages/sign_out.py", title="Sign out", icon=":material/logout:"),
    ]
else:
    pages = [
        st.Page("app_pages/sign_in.py", title="Sign in", icon=":material/login:", default=True),
        st.Page("app_pages/register.py", title="Register", icon=":material/person_add:"),
    ]

page = st.navigation(pages)
if user := portal.current_user():
    st.sidebar.caption(f"Signed in as **{user}**")
portal.show_flash()
page.run()
