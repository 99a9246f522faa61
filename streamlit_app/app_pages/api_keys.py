"""API keys: create one (shown once), see your keys, revoke one; the webhook signing secret."""

from __future__ import annotations

import portal
import streamlit as st

from avgen_dagster.errors import AvgenError
from avgen_dagster.notifications.webhooks import webhook_secret
from avgen_dagster.settings import secret_key
from avgen_dagster.store.api_keys import create_key, list_keys, revoke_key

NEW_KEY = "avgen_new_api_key"

user_id = portal.current_user()
if user_id is None:
    st.stop()

st.title("API keys")
st.caption(
    "Use a key with the HTTP API: `Authorization: Bearer avg_…` "
    f"(docs at {portal.settings().media_url.rstrip('/')}/docs). A key acts as you."
)
db = portal.database()

with st.form("new_api_key", clear_on_submit=True):
    name = st.text_input("Name (what will use it)", max_chars=100, placeholder="n8n workflow")
    if st.form_submit_button("Create key", type="primary"):
        try:
            with db.session() as s:
                _, st.session_state[NEW_KEY] = create_key(s, user_id, name or None)
        except AvgenError as exc:
            st.error(str(exc))

if new_key := st.session_state.pop(NEW_KEY, None):
    st.success("Your new key. Copy it now: it is shown only this once.")
    st.code(new_key, language=None)

with db.session() as s:
    keys = list_keys(s, user_id)
if not keys:
    st.info("You have no API keys yet.")
for key in keys:
    col1, col2 = st.columns([4, 1])
    used = f"{key.last_used_at:%Y-%m-%d %H:%M} UTC" if key.last_used_at else "never"
    state = "active" if key.active else f"revoked {key.revoked_at:%Y-%m-%d %H:%M} UTC"
    col1.markdown(
        f"**{key.name or 'unnamed'}** — `avg_{key.prefix}_…` · {state} · created "
        f"{key.created_at:%Y-%m-%d %H:%M} UTC · last used {used}"
    )
    if key.active and col2.button("Revoke", key=f"revoke_{key.prefix}"):
        with db.session() as s:
            revoke_key(s, key.prefix, user_id=user_id)
        portal.flash("info", f"Key avg_{key.prefix}_… revoked.")
        st.rerun()

with st.expander("Webhook signing secret"):
    st.write(
        "Requests with a `callback_url` are reported there when they are Completed or Failed, "
        "signed per Standard Webhooks. Verify the `webhook-signature` header with this secret."
    )
    st.code(webhook_secret(user_id, secret_key()), language=None)
