"""The sidebar: who is logged in, the worker's heartbeat, the session's expiry, logout."""

from __future__ import annotations

import streamlit as st

from core.clock import format_ist, next_expiry_after, now_ist
from core.domain import Actor
from pages.auth_gate import logout
from pages.common import services


@st.fragment(run_every=5)
def worker_health() -> None:
    """Show the worker's heartbeat, refreshed every 5 seconds."""
    status = services().worker.status()
    if status.is_up:
        st.success(status.describe(), icon=":material/favorite:")
    else:
        st.warning(
            status.describe() + ". Start it with `python -m jobs.worker`.",
            icon=":material/warning:",
        )
    st.caption(services().feed.summary())


def render_sidebar(current: Actor) -> None:
    """Render the sidebar for a logged-in user."""
    svc = services()
    with st.sidebar:
        st.markdown(f"**{current.display_name}** · `{current.role.value}`")
        expiry = next_expiry_after(now_ist(), svc.settings.session_expiry_time)
        st.caption(f"Session ends at {format_ist(expiry)} (daily logout)")
        worker_health()
        if st.button("Log out", key="sidebar_logout", icon=":material/logout:"):
            logout(current)
