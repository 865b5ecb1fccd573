"""Profile: password change, TOTP two-factor login, your sessions."""

import segno
import streamlit as st

from core.clock import format_ist
from pages.common import actor, attempt, footer, services
from pages.trading_parts import flash, show_flash

FLASH = "profile_flash"

me = actor()
svc = services()
st.title("Profile")
st.write(f"**{me.display_name}** (`{me.username}`), role `{me.role.value}`")

st.subheader("Change password")
with st.form("profile_password", clear_on_submit=True):
    current = st.text_input("Current password", type="password", key="profile_pw_current")
    new = st.text_input("New password", type="password", key="profile_pw_new")
    again = st.text_input("Repeat new password", type="password", key="profile_pw_again")
    if st.form_submit_button("Change password"):
        if new != again:
            st.error("The two new passwords differ.")
        elif attempt(lambda: svc.auth.change_password(me, current, new)):
            st.session_state["sher_notice"] = (
                "Password changed. Every session of yours has ended; log in with the new one."
            )
            st.rerun()

st.subheader("Two-factor login (TOTP)")
show_flash(FLASH)  # a change reruns the page, so it is drawn in its new state
if svc.auth.totp_enabled(me):
    st.success("Two-factor login is on.")
    with st.form("profile_totp_off", clear_on_submit=True):
        password = st.text_input("Password to turn it off", type="password", key="profile_totp_pw")
        if st.form_submit_button("Turn off two-factor login") and attempt(
                lambda: svc.auth.disable_totp(me, password)):
            flash(FLASH, "Two-factor login turned off.")
else:
    pending = st.session_state.get("profile_totp_pending")
    if pending is None and st.button("Set up two-factor login", key="profile_totp_start"):
        pending = svc.auth.start_totp(me)
        st.session_state["profile_totp_pending"] = pending
    if pending is not None:
        st.write("Scan this QR code with an authenticator app (shown once), or type the secret.")
        st.image(segno.make(pending.uri).png_data_uri(scale=5), width=220)
        st.code(pending.secret)
        with st.form("profile_totp_confirm"):
            code = st.text_input("6-digit code from the app", max_chars=6, key="profile_totp_code")
            confirmed = st.form_submit_button("Confirm")
        if confirmed and attempt(lambda: svc.auth.confirm_totp(me, pending.secret, code)):
            st.session_state.pop("profile_totp_pending", None)
            st.rerun()

st.subheader("Your sessions")
st.dataframe(
    [
        {
            "session": s.id_prefix,
            "started (IST)": format_ist(s.created_at),
            "last seen (IST)": format_ist(s.last_seen_at),
            "ends (IST)": format_ist(s.expires_at),
            "ended (IST)": format_ist(s.ended_at),
            "why": s.end_reason or "",
            "client": s.client,
        }
        for s in svc.auth.my_sessions(me)
    ],
    hide_index=True,
    key="profile_sessions",
)

footer()
