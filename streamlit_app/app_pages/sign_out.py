"""Sign out: forget the session's user and go back to the sign-in page."""

from __future__ import annotations

import portal
import streamlit as st

portal.sign_out()
portal.flash("info", "You are signed out.")
st.rerun()
