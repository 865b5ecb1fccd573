"""The Funds page's pieces: funds metrics, the statement period picker and downloads, and the
"add paper funds" and "withdraw paper funds" forms."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta

import streamlit as st

from core.clock import now_ist
from core.domain import Account, Actor
from core.trading import Funds
from pages.common import fetch, services
from pages.trading_parts import rupees, table

PERIODS = {"day": "A day", "month": "A month", "custom": "Custom range"}
FUND_FIELDS = (("Available", "available"), ("Used margin", "used_margin"), ("Cash", "cash"),
               ("Deposits", "deposits"), ("Charges today", "charges_today"),
               ("Realized P&L", "realized_pnl"))


def funds_metrics(funds: Funds) -> None:
    """Show one account's funds as metrics, three to a row (six in one row cut the digits)."""
    for row in (FUND_FIELDS[:3], FUND_FIELDS[3:]):
        for column, (label, name) in zip(st.columns(len(row)), row, strict=True):
            column.metric(label, rupees(getattr(funds, name)))


def family_funds(me: Actor) -> None:
    """Show each viewable account's funds as a row, and the family's total, with a download."""
    frame = fetch(lambda: services().portfolio.funds_frame(me))
    if frame is not None:
        table(frame, "funds_family", "family_funds", "No accounts.")


def statement_period() -> tuple[date, date] | None:
    """Render the period picker (a day, a month, or a custom range); return its bounds."""
    today = now_ist().date()
    cols = st.columns([2, 3])
    kind = cols[0].radio("Period", list(PERIODS), format_func=PERIODS.get, horizontal=True,
                         key="funds_period")
    if kind == "custom":
        chosen = cols[1].date_input("From – to", value=(today - timedelta(days=30), today),
                                    max_value=today, key="funds_range")
        if not isinstance(chosen, tuple) or len(chosen) != 2:
            st.info("Pick the last day of the range too.")
            return None
        return chosen[0], chosen[1]
    label = "Day" if kind == "day" else "Any day of the month"
    anchor = cols[1].date_input(label, value=today, max_value=today, key="funds_anchor")
    return services().portfolio.period_bounds(kind, anchor)


def statements(me: Actor, account_id: int | None, start: date, end: date) -> None:
    """Offer the trade book, P&L and charges statements of ``start``..``end`` as CSV files."""
    pf = services().portfolio
    scope = "family" if account_id is None else f"account{account_id}"
    files: tuple[tuple[str, str, Callable[[], bytes]], ...] = (
        ("Trade book", "trade_book",
         lambda: pf.trade_book_csv(me, account_id, start, end)),
        ("P&L statement", "pnl", lambda: pf.pnl_statement_csv(me, account_id, start, end)),
        ("Charges statement", "charges",
         lambda: pf.charges_statement_csv(me, account_id, start, end)),
    )
    for column, (label, stem, build) in zip(st.columns(3), files, strict=True):
        data = fetch(build)
        if data is not None:
            column.download_button(
                f"{label} (CSV)", data, file_name=f"{stem}_{scope}_{start}_{end}.csv",
                mime="text/csv", key=f"funds_{stem}_csv", icon=":material/download:")


def add_funds_form(managed: Sequence[Account]) -> tuple[int, str, str] | None:
    """Render the "add paper funds" form; return (account id, amount as typed, note) when
    submitted."""
    return _transfer_form(managed, "add", "**Add paper funds** (pretend money paid into a "
                          "paper account)", "1,00,000", "Paper top-up", "Add funds")


def withdraw_funds_form(managed: Sequence[Account]) -> tuple[int, str, str] | None:
    """Render the "withdraw paper funds" form; return (account id, amount as typed, note) when
    sent."""
    return _transfer_form(managed, "withdraw", "**Withdraw paper funds** (pretend money taken "
                          "out). At most the available funds: cash less the margin that open "
                          "orders and open intraday positions block.", "", "Paper withdrawal",
                          "Withdraw funds")


def _transfer_form(managed: Sequence[Account], kind: str, title: str, amount: str,
                   note: str, button: str) -> tuple[int, str, str] | None:
    # The amount is text the service parses and judges as typed: a number widget would turn
    # "-5000" or "abc" silently into its default and deposit that.
    labels = {a.id: a.label for a in managed}
    with st.form(f"funds_{kind}", clear_on_submit=True):
        st.markdown(title)
        cols = st.columns([2, 1, 3])
        account_id = cols[0].selectbox("Account", list(labels), format_func=labels.get,
                                       key=f"funds_{kind}_account")
        value = cols[1].text_input("Amount [₹]", value=amount, placeholder="e.g. 25,000.50",
                                   key=f"funds_{kind}_amount")
        text = cols[2].text_input("Note", value=note, key=f"funds_{kind}_note")
        if st.form_submit_button(button, key=f"funds_{kind}_submit"):
            return account_id, value, text
    return None
