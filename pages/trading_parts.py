"""Pieces the trading pages share: rupee formatting, account pickers, tables with downloads,
and a message that survives the rerun after an action."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pandas as pd
import streamlit as st

from core.clock import now_ist
from core.domain import Account, Actor
from core.money import inr
from core.services.portfolio import CLOSED
from pages.common import fetch, footer, services

WHOLE_FAMILY = "Whole family"


def rupees(value: Decimal | float | int | None) -> str:
    """Format money for people: ``₹1,23,456.78`` (Indian digit grouping, 2 decimals)."""
    return inr(Decimal(str(value)) if isinstance(value, float) else value)


def viewable_accounts(me: Actor, include_closed: bool = False) -> list[Account]:
    """Return the open accounts ``me`` may view (closed ones too if ``include_closed``: the
    whole family of the portfolio and statements); with none, say why and end the page."""
    accounts = fetch(lambda: services().portfolio.accounts(me) if include_closed
                     else services().household.list_accounts(me)) or []
    if not accounts:
        st.info("No accounts are visible to you yet. The account's owner or a household admin "
                "can grant you access on Household & Accounts.")
        footer()
        st.stop()
    return accounts


def to_decimal(value: float | None) -> Decimal | None:
    """Return a widget's float as the Decimal it shows (``Decimal(str(x))``), or None."""
    return None if value is None else Decimal(str(value))


def pick_account(
    accounts: Sequence[Account],
    key: str,
    *,
    family: bool = True,
    label: str = "Account",
    help_text: str | None = None,
) -> int | None:
    """Render an account selectbox ("Whole family" first when ``family``); return its id.

    Returns None for the whole family (every account the user may view). A closed account
    reads "Rahul · Intraday (Rahul Sharma) (closed)".
    """
    labels: dict[int | None, str] = {None: WHOLE_FAMILY} if family else {}
    labels.update({a.id: f"{a.label} ({a.owner_name}){'' if a.is_active else CLOSED}"
                   for a in accounts})
    return st.selectbox(label, list(labels), format_func=labels.__getitem__, key=key,
                        help=help_text)


def table(frame: pd.DataFrame | None, key: str, file_stem: str, empty: str) -> None:
    """Render a service's display-ready frame with a CSV download, or ``empty`` as info."""
    if frame is None:
        return  # the service's error is already shown
    if frame.empty:
        st.info(empty)
        return
    money = {  # numeric rupee columns show as ₹ with 2 decimals (text ones come formatted)
        name: st.column_config.NumberColumn(format="₹%.2f")
        for name in frame.columns
        if str(name).endswith("[₹]") and pd.api.types.is_numeric_dtype(frame[name])
    }
    st.dataframe(frame, hide_index=True, key=key, column_config=money)
    st.download_button(
        "Download CSV",
        csv_bytes(frame),
        file_name=f"{file_stem}_{now_ist():%Y%m%d_%H%M%S}.csv",
        mime="text/csv",
        key=f"{key}_download",
        icon=":material/download:",
    )


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """Return ``frame`` as CSV with rupee columns as plain numbers a spreadsheet can sum.

    On screen a ``[₹]`` column may hold text with Indian digit grouping ("10,00,000.00", "—"
    for none); the file gets 1000000.00 and an empty cell, as the statements' CSVs do.
    """
    plain = frame.copy()
    for name in plain.columns:
        if str(name).endswith("[₹]") and plain[name].dtype == object:
            plain[name] = [value.replace("₹", "").replace(",", "").replace("—", "")
                           if isinstance(value, str) else value for value in plain[name]]
    return plain.to_csv(index=False).encode("utf-8")


def flash(key: str, message: str) -> None:
    """Keep ``message`` for the next run, then rerun so every table shows the change."""
    st.session_state[key] = message
    st.rerun()


def show_flash(key: str) -> None:
    """Show (once) the message an action left before its rerun."""
    message = st.session_state.pop(key, None)
    if message:
        st.success(message)
