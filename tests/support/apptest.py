"""AppTest helpers shared by page tests: a running demo desk and a logged-in app."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.seed import DemoLogin
from core.services import Services
from tests.conftest import TEST_CLIENT

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "tests" / "support" / "app_entry.py")

Desk = tuple[Services, dict[str, DemoLogin]]


def app_as(desk: Desk, username: str) -> AppTest:
    """Return an AppTest whose browser session holds a fresh server-side session."""
    svc, logins = desk
    result = svc.auth.login(username, logins[username].password, TEST_CLIENT)
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["sher_session_id"] = result.session_id
    return at.run()


def page(path: str) -> str:
    """Return the absolute page path AppTest.switch_page expects, e.g. page('pages/chart.py')."""
    return str(ROOT / path)


def texts(at: AppTest) -> str:
    """Return all visible text of the last run, for assertions."""
    parts = [
        e.value
        for e in (*at.title, *at.caption, *at.markdown, *at.error, *at.warning, *at.info,
                  *at.success)
    ]
    return "\n".join(str(p) for p in parts)


def open_tab_index(at: AppTest) -> int:
    """Return which tab the last run tells the browser to show (0: the first).

    Tracked tabs (``st.tabs(key=..., on_change="rerun")``) send the open tab with every run, so
    a rerun after an action reopens the tab it was taken in; untracked tabs send 0.
    """
    stack = list(at.main.children.values())
    while stack:
        node = stack.pop()
        proto = getattr(node, "proto", None)
        if getattr(node, "type", None) == "tab_container" or (
                proto is not None and proto.DESCRIPTOR.name == "Block"
                and proto.WhichOneof("type") == "tab_container"):
            return int(proto.tab_container.default_tab_index)
        stack.extend(getattr(node, "children", {}).values())
    raise AssertionError("no tabs on the page")
