"""Login gate: streamlit-authenticator's widget and cookie, checked against server-side sessions.

The library's signed cookie only names a user; it survives logout and password changes
(its issues #91 and #195). So the cookie is bound to one server-side session row at login,
and every page load re-checks that row: ended, expired or unknown means logged out.
"""

from __future__ import annotations

import time
from typing import Any

import streamlit as st
import streamlit_authenticator as stauth
from streamlit_authenticator.utilities import LoginError

from core.domain import Actor
from core.errors import SessionInvalid, TradingError
from pages.common import ACTOR_KEY, client_info, footer, services

COOKIE_NAME = "sher_login"
SESSION_KEY = "sher_session_id"
PENDING_TOTP_KEY = "sher_pending_totp"
PASSWORD_OK_KEY = "sher_password_ok"  # noqa: S105 - a session-state key
NOTICE_KEY = "sher_notice"
RERUN_ARMED_KEY = "_sher_rerun_armed"
LOGIN_ERROR_KEY = "_sher_login_error"
LOGIN_REFUSED_KEY = "_sher_login_refused"
LOGIN_TYPED_KEY = "_sher_login_typed"
PENDING_TOTP_SECONDS = 300
RUN_AUTHENTICATOR_KEY = "_sher_authenticator"
_LIBRARY_KEYS = ("authentication_status", "username", "name", "email", "roles")


def _authenticator() -> stauth.Authenticate:
    """Return this run's authenticator (its cookie component may render once per run)."""
    existing = st.session_state.get(RUN_AUTHENTICATOR_KEY)
    if existing is not None:
        return existing
    svc = services()
    creds: dict[str, Any] = svc.auth.credentials()
    built = stauth.Authenticate(
        creds,
        cookie_name=COOKIE_NAME,
        cookie_key=svc.settings.resolved_secret_key(),
        cookie_expiry_days=svc.settings.cookie_expiry_days,
        auto_hash=False,
        login_sleep_time=0,
    )
    _check_deactivated(built)
    _remember_username(built)
    st.session_state[RUN_AUTHENTICATOR_KEY] = built
    return built


def _check_deactivated(authenticator: stauth.Authenticate) -> None:
    """Let the widget's password check tell a deactivated user so, once the password is right.

    The widget knows only active users (``credentials``), so it refuses a deactivated one as a
    wrong password; its typed values reach no key of ours, so its check is wrapped here and the
    service verifies the password against the stored hash.
    """
    model = authenticator.authentication_controller.authentication_model
    library_check = model.check_credentials

    def check(username: str, password: str) -> bool | None:
        if username in model.credentials["usernames"]:
            return library_check(username, password)
        try:
            services().auth.refuse_deactivated(username, password, client_info())
        except TradingError as exc:
            st.session_state[LOGIN_REFUSED_KEY] = str(exc)
        return False

    model.check_credentials = check  # type: ignore[method-assign]


def _remember_username(authenticator: stauth.Authenticate) -> None:
    """Keep the username the widget was given, so its lockout refusal can name the end time."""
    model = authenticator.authentication_controller.authentication_model
    library_login = model.login

    def login(username: str, password: str, *args: Any, **kwargs: Any) -> bool:
        st.session_state[LOGIN_TYPED_KEY] = username
        return library_login(username, password, *args, **kwargs)

    model.login = login  # type: ignore[method-assign]


def _forget(authenticator: stauth.Authenticate | None = None) -> None:
    """Drop this browser session's login state and ask the browser to drop the cookie."""
    st.session_state[SESSION_KEY] = None
    st.session_state.pop(ACTOR_KEY, None)
    st.session_state.pop(PENDING_TOTP_KEY, None)
    st.session_state["logout"] = True  # the library must not re-login from the cookie
    for key in _LIBRARY_KEYS:
        st.session_state[key] = None
    if authenticator is not None:
        authenticator.cookie_controller.delete_cookie()


def current_actor() -> Actor | None:
    """Return the actor of a valid server-side session, resuming from the cookie if bound."""
    st.session_state.pop(RUN_AUTHENTICATOR_KEY, None)  # a new script run starts here
    st.session_state.pop(RERUN_ARMED_KEY, None)
    st.session_state.setdefault(SESSION_KEY, None)
    st.session_state.setdefault("logout", None)
    svc = services()
    session_id = st.session_state[SESSION_KEY]
    if session_id is None and not st.session_state["logout"]:
        claims = _authenticator().cookie_controller.get_cookie()
        if claims:
            session_id = svc.auth.session_for_cookie(claims["username"], claims["exp_date"])
            st.session_state[SESSION_KEY] = session_id
            if session_id is None:
                st.session_state["logout"] = True
    if session_id is None:
        return None
    try:
        current = svc.auth.check_session(session_id, client_info())
    except SessionInvalid as exc:
        _forget()
        # A notice planned by the user's own action (Profile's password change) explains the end;
        # only a session that ended on them gets the bare reason.
        st.session_state[NOTICE_KEY] = st.session_state.get(NOTICE_KEY) or str(exc)
        return None
    st.session_state[ACTOR_KEY] = current
    return current


def logout(current: Actor) -> None:
    """End the session server-side, clear the browser's state and cookie, then reload."""
    services().auth.logout(current)
    _forget(_authenticator())
    st.session_state[NOTICE_KEY] = "You are logged out."
    st.info("Logging out…")
    _rerun_shortly()


def _on_password_ok(payload: dict[str, Any]) -> None:
    """Open the server-side session as soon as the login widget accepts the password.

    The widget calls this before it renders the cookie component, whose reply can rerun (and so
    interrupt) this script; storing the session first means an interrupted run still logs in.
    """
    username = payload["username"]
    st.session_state[PASSWORD_OK_KEY] = username
    st.session_state.pop(LOGIN_ERROR_KEY, None)
    try:
        _open_session(username, None, None)
    except TradingError as exc:
        st.session_state[LOGIN_ERROR_KEY] = str(exc)


def render_login() -> None:
    """The login page: password (streamlit-authenticator), then TOTP when enabled."""
    st.title("SHER · household trading desk")
    _render_login_steps()
    footer()


def _render_login_steps() -> None:
    notice = st.session_state.get(NOTICE_KEY)  # stays until the next login succeeds
    if notice:
        st.info(notice)
    if st.session_state.get(PENDING_TOTP_KEY):
        _render_totp_step()
        return
    svc = services()
    if _locked(None):
        return
    authenticator = _authenticator()
    credentials = authenticator.authentication_controller.authentication_model.credentials
    before = {u: c.get("failed_login_attempts", 0) for u, c in credentials["usernames"].items()}
    for key in (*_LIBRARY_KEYS, PASSWORD_OK_KEY, LOGIN_ERROR_KEY, LOGIN_REFUSED_KEY,
                LOGIN_TYPED_KEY):
        st.session_state[key] = None
    try:
        authenticator.login(
            location="main",
            key="login",
            callback=_on_password_ok,
            max_login_attempts=svc.settings.login_max_failures,
        )
    except LoginError:
        _refuse_locked(st.session_state.pop(LOGIN_TYPED_KEY, None))
        return
    refused = st.session_state.pop(LOGIN_REFUSED_KEY, None)
    if st.session_state.get("authentication_status") is False and refused:
        st.session_state["authentication_status"] = None
        st.error(refused)  # audited by the service as a refused login, not a failure
        return
    if st.session_state.get("authentication_status") is False:
        failed = [
            u
            for u, c in credentials["usernames"].items()
            if c.get("failed_login_attempts", 0) > before.get(u, 0)
        ]
        svc.auth.record_failure(
            failed[0] if failed else None, client_info(), "wrong username or password"
        )
        st.session_state["authentication_status"] = None
        st.error("Username or password is incorrect.")
        return
    username = st.session_state.pop(PASSWORD_OK_KEY, None)
    if username:
        error = st.session_state.pop(LOGIN_ERROR_KEY, None)
        if error:
            _forget(authenticator)
            st.error(error)
            return
        exp_date = authenticator.cookie_controller.cookie_model.exp_date
        _bind_cookie(username, (username, exp_date) if exp_date else None)


def _locked(username: str | None) -> bool:
    """Show the service's lockout refusal (with the time, IST, it ends) if it refuses; say so."""
    try:
        services().auth.refuse_if_locked(username, client_info())
    except TradingError as exc:
        st.error(str(exc))
        return True
    return False


def _refuse_locked(username: str | None) -> None:
    """Show the widget's lockout refusal in the service's words, with the time (IST) it ends."""
    if _locked(username):
        return
    svc = services()
    st.error(  # the widget counted the failures just before the lockout ended
        f"Login locked: {svc.settings.login_max_failures} failed attempts within "
        f"{svc.settings.login_lockout_minutes} minutes. Try again later."
    )


def _open_session(username: str, code: str | None, claims: tuple[str, float] | None) -> None:
    """Open the session (or ask for the TOTP code); raise TradingError when refused."""
    result = services().auth.password_verified(username, client_info(), code, claims)
    if result.needs_totp:
        st.session_state[PENDING_TOTP_KEY] = {
            "username": username,
            "claims": claims,
            "since": time.monotonic(),
        }
    else:
        st.session_state.pop(PENDING_TOTP_KEY, None)
        st.session_state.pop(NOTICE_KEY, None)
        st.session_state[SESSION_KEY] = result.session_id
        st.session_state["logout"] = False


def _bind_cookie(username: str, claims: tuple[str, float] | None) -> None:
    """Tie the re-login cookie the widget just wrote to the session (or to the TOTP step)."""
    pending = st.session_state.get(PENDING_TOTP_KEY)
    session_id = st.session_state.get(SESSION_KEY)
    if pending is not None:
        pending["claims"] = claims
        st.success("Password accepted. Next: your two-factor code…")
    elif session_id is not None:
        if claims is not None:
            services().auth.bind_cookie(session_id, *claims)
        st.success("Logged in. Opening your desk…")
    _rerun_shortly()


@st.fragment(run_every=1)
def _rerun_shortly() -> None:
    """Rerun the app about a second from now, not at once.

    The re-login cookie is written by a browser-side component rendered in this run; an
    immediate ``st.rerun()`` would discard it before it runs.
    """
    if st.session_state.get(RERUN_ARMED_KEY):
        st.session_state.pop(RERUN_ARMED_KEY, None)
        st.rerun(scope="app")
    st.session_state[RERUN_ARMED_KEY] = True


def _render_totp_step() -> None:
    pending = st.session_state[PENDING_TOTP_KEY]
    if time.monotonic() - pending["since"] > PENDING_TOTP_SECONDS:
        _forget()
        st.warning(
            f"The 2FA step timed out after {PENDING_TOTP_SECONDS // 60} minutes; log in again."
        )
        return
    with st.form("login_totp"):
        st.subheader("Two-factor code")
        st.caption(f"Enter the 6-digit code from your authenticator app for {pending['username']}.")
        code = st.text_input("Code", max_chars=6, key="login_totp_code")
        submitted = st.form_submit_button("Verify")
    if st.button("Cancel", key="login_totp_cancel"):
        _forget()
        st.rerun()
    if submitted:
        try:
            _open_session(pending["username"], code, pending["claims"])
        except TradingError as exc:
            st.error(str(exc))
            return
        st.success("Logged in. Opening your desk…")
        _rerun_shortly()
