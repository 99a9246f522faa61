"""Register a new user: user id + email → an access code, shown once."""

from __future__ import annotations

import portal
import streamlit as st

from avgen_dagster.auth import register_user
from avgen_dagster.errors import InvalidInputError

st.title("Register")

with st.form("register"):
    user_id = st.text_input(
        "User id", max_chars=64, help="1-64 characters: letters, digits, _ or -"
    )
    email = st.text_input("Email", max_chars=320, help="Where we tell you your content is ready")
    submitted = st.form_submit_button("Register", type="primary")

if submitted:
    try:
        with portal.database().session() as s:
            code = register_user(s, user_id.strip(), email)
    except InvalidInputError as exc:
        st.error(f"Could not register: {exc}")
    else:
        st.success(f"Welcome, {user_id.strip()}! Your access code is:")
        st.code(code, language=None)
        st.warning(
            "Keep this access code somewhere safe: it is shown only this once and cannot be "
            "recovered. Sign in with your user id and this code."
        )
