"""What every page shares: the service facade, the acting user, action feedback, the footer."""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar

import streamlit as st

from core.config import Settings
from core.domain import Actor, ClientInfo
from core.errors import SessionInvalid, TradingError
from core.services import Services
from db.engine import Database

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

DISCLAIMER = (
    "SHER is a tool, not advice. Signals are for education only; past performance does not "
    "guarantee future results. Consult a SEBI-registered investment adviser before investing."
)
ACTOR_KEY = "sher_actor"


@st.cache_resource(show_spinner=False)
def _services_for(database_url: str, secret_key: str) -> Services:
    settings = Settings()
    return Services(Database(settings.database_url), settings)


def services() -> Services:
    """Return the service facade for this process's DATABASE_URL (one engine per URL)."""
    return _services_for(os.environ.get("DATABASE_URL", ""), os.environ.get("SECRET_KEY", ""))


def client_info() -> ClientInfo:
    """Describe the browser making this request, for the audit trail."""
    try:
        ip = st.context.ip_address
        agent = st.context.headers.get("User-Agent")
    except (AttributeError, RuntimeError, KeyError):
        ip, agent = None, None
    # Only plain strings reach the database (test harnesses hand back stand-in objects).
    return ClientInfo(
        ip=ip if isinstance(ip, str) else None,
        user_agent=agent if isinstance(agent, str) else None,
        channel="web",
    )


def actor() -> Actor:
    """Return the logged-in user, re-validating the server-side session for this page run.

    app.py gates every run, but Streamlit can run a page script on its own (legacy ``pages/``
    handling on a server's first request), so a page never trusts session state alone.
    """
    session_id = st.session_state.get("sher_session_id")
    try:
        if not session_id:
            raise SessionInvalid("You are not logged in")
        current = services().auth.check_session(session_id, client_info())
    except SessionInvalid as exc:
        st.session_state.pop(ACTOR_KEY, None)
        st.session_state["sher_session_id"] = None
        st.warning(f"{exc}. Reload the page to log in.")
        st.stop()
    st.session_state[ACTOR_KEY] = current
    return current


def fetch(action: Callable[[], T]) -> T | None:
    """Run a service call; show its rule-and-values error instead of a stack trace."""
    try:
        return action()
    except SessionInvalid as exc:
        st.session_state.pop(ACTOR_KEY, None)
        st.session_state["sher_session_id"] = None
        st.warning(str(exc))
    except TradingError as exc:
        st.error(str(exc))
    return None


def attempt(action: Callable[[], object], success: str | None = None) -> bool:
    """Run a mutating service call; show success or the error. Return whether it worked."""
    try:
        action()
    except SessionInvalid as exc:
        st.session_state.pop(ACTOR_KEY, None)
        st.session_state["sher_session_id"] = None
        st.warning(str(exc))
        return False
    except TradingError as exc:
        st.error(str(exc))
        return False
    if success:
        st.toast(success)
        st.success(success)
    return True


def footer() -> None:
    """Render the compliance disclaimer every page carries."""
    st.divider()
    st.caption(DISCLAIMER)


def keep_pick(key: str, labels: Mapping[K, str], gone: Callable[[K], str]) -> dict[K, str]:
    """Return ``labels`` plus the option picked in the selectbox ``key`` if it has left them.

    A record can close (an order fills, another member cancels a GTT or lifts a stop) between
    the user's pick and the click. Streamlit would then fall back to the first option, and the
    button would act on a record the user never picked. The pick stays instead, labelled
    ``gone(pick)``, and the caller or its service answers for it ("Order 9 is FILLED; only
    open orders can be modified or cancelled").
    """
    picked = st.session_state.get(key)
    if picked is not None and picked not in labels:
        return {**labels, picked: gone(picked)}
    return dict(labels)
