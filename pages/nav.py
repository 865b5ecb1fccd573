"""Which pages each role sees (the services enforce the same rules on every call)."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from core import authz
from core.config import PROJECT_ROOT
from core.domain import Role

ALL_ROLES = frozenset(Role)


@dataclass(frozen=True, slots=True)
class PageSpec:
    """One page: file, title, icon, navigation group and the roles that see it."""

    path: str
    title: str
    icon: str
    group: str
    roles: frozenset[Role]


PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/dashboard.py", "Dashboard", ":material/dashboard:", "Desk", ALL_ROLES),
    PageSpec("pages/market.py", "Market", ":material/monitoring:", "Desk", ALL_ROLES),
    PageSpec("pages/chart.py", "Chart", ":material/candlestick_chart:", "Desk", ALL_ROLES),
    PageSpec("pages/signals.py", "Signals", ":material/insights:", "Desk", ALL_ROLES),
    PageSpec(
        "pages/household.py",
        "Household & Accounts",
        ":material/family_restroom:",
        "Desk",
        ALL_ROLES,
    ),
    PageSpec("pages/risk.py", "Risk", ":material/shield:", "Desk", ALL_ROLES),
    PageSpec("pages/alerts.py", "Alerts", ":material/notifications:", "Desk", ALL_ROLES),
    PageSpec("pages/trade.py", "Trade", ":material/swap_horiz:", "Trading", authz.ACTING_ROLES),
    PageSpec("pages/orders.py", "Orders", ":material/list_alt:", "Trading", ALL_ROLES),
    PageSpec(
        "pages/portfolio.py",
        "Portfolio",
        ":material/account_balance_wallet:",
        "Trading",
        ALL_ROLES,
    ),
    PageSpec("pages/funds.py", "Funds & statements", ":material/payments:", "Trading", ALL_ROLES),
    PageSpec("pages/users.py", "Users", ":material/manage_accounts:", "Admin", authz.USER_MANAGERS),
    PageSpec(
        "pages/audit_log.py", "Audit log", ":material/receipt_long:", "Admin", authz.USER_MANAGERS
    ),
    PageSpec(
        "pages/data_import.py",
        "Import data",
        ":material/upload_file:",
        "Admin",
        authz.USER_MANAGERS,
    ),
    PageSpec("pages/profile.py", "Profile", ":material/person:", "You", ALL_ROLES),
)


def pages_for(role: Role) -> list[PageSpec]:
    """Return the pages ``role`` may open, in menu order."""
    return [spec for spec in PAGES if role in spec.roles]


def navigation_for(role: Role) -> dict[str, list[st.Page]]:
    """Return ``st.navigation``'s grouped page dict for ``role``."""
    groups: dict[str, list[st.Page]] = {}
    for spec in pages_for(role):
        page = st.Page(
            str(PROJECT_ROOT / spec.path),
            title=spec.title,
            icon=spec.icon,
            default=spec.path == PAGES[0].path,
        )
        groups.setdefault(spec.group, []).append(page)
    return groups
