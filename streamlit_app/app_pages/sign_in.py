"""Sign in with a user id and access code (every attempt is logged; lockout after failures)."""

from __future__ import annotations

import portal
import streamlit as st

from avgen_dagster.auth import authenticate

st.title("Sign in")
st.caption("Use the user id and access code you got when you registered, or the link in your "
           "notification email.")  # fmt: skip

with st.form("sign_in"):
    user_id = st.text_input("User id", max_chars=64)
    code = st.text_input("Access code", type="password", max_chars=64)
    submitted = st.form_submit_button("Sign in", type="primary")

if submitted:
    result = authenticate(portal.database(), user_id, code, client_address=portal.client_address())
    if result.ok:
        portal.sign_in(result)
        portal.flash("success", f"Signed in as {result.user_id}.")
        st.rerun()
    else:
        st.error(f"Sign-in failed: {result.reason}.")
