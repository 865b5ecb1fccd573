"""A family's figures are the sums of its accounts' figures as shown, on every screen (SQLite and
PostgreSQL): Portfolio's and Funds' family rows, the daily summary's total, /pnl's total, and a
trade book whose fills add up to their account's charges (core.money.accounts_total)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime, time
from decimal import Decimal

import pandas as pd
import pytest
import time_machine

from core.clock import IST
from core.domain import Actor
from core.money import paise
from core.services import Services
from core.services.daily_summary import DailySummaryService
from core.services.trade_book import load_trades
from core.trading import OrderRequest, OrderType, Product, Side
from db.models import AlertOutboxRow
from tests.support.market import open_market, tick
from tests.support.outbox import alert_rows
from tests.test_daily_summary import _link
from tests.test_telegram_bot_corners import _pnl_rows

pytestmark = pytest.mark.usefixtures("backend")
THURSDAY = datetime(2026, 11, 19, 11, 0, tzinfo=IST)  # an NSE trading day
#: Intraday buys of SBIN at ₹800 whose charges end in a half paisa or more (₹0.336981,
#: ₹2.695846, ₹3.706789): each rounds up, so rounded one by one they overshoot their sum.
BUYS = (("Rahul · Long-term", 1), ("Kamla · Pension", 8), ("Rahul · Intraday", 1),
        ("Rahul · Intraday", 8), ("Rahul · Intraday", 11))


def number(cell: str) -> Decimal:
    """Return a table cell shown with Indian digit grouping as a Decimal."""
    return Decimal(cell.replace(",", ""))


@pytest.fixture
def day(services: Services, login) -> Iterator[Actor]:
    """Thursday 11:00: Rahul buys SBIN intraday in three accounts (five fills); yield Rahul."""
    with time_machine.travel(THURSDAY, tick=False):
        open_market(services.db, {"SBIN": "800.00"})
        rahul = login("rahul")
        ids = {a.label: a.id for a in services.household.list_accounts(rahul)}
        for label, quantity in BUYS:
            services.orders.place(rahul, OrderRequest(
                ids[label], "SBIN", Side.BUY, quantity, OrderType.LIMIT, Product.MIS,
                price=Decimal("800.00")))
            tick(services.db, "SBIN", "800.00")
            services.orders.step()
        yield rahul


def test_every_screen_gives_the_family_the_sum_of_the_account_rows_shown(
        services: Services, day: Actor) -> None:
    trades = load_trades(services.db, services.orders.viewable_ids(day, None))
    assert len(trades) == len(BUYS) and {t.price for t in trades} == {Decimal("800.00")}
    charges: dict[int, Decimal] = {}
    for trade in trades:
        charges[trade.account_id] = charges.get(trade.account_id, Decimal(0)) + (
            trade.charges.total)
    shown = sum((paise(c) for c in charges.values()), Decimal(0))
    assert shown == paise(sum(charges.values(), Decimal(0))) + Decimal("0.01")  # the trap

    family = services.portfolio.family_frame(day).set_index("Account")
    for column in ("Charges [₹]", "Net P&L [₹]", "Day P&L [₹]", "Deposits [₹]",
                   "Open value [₹]"):
        rows = family[column].iloc[:-1].map(number)
        assert number(family.loc["Whole family", column]) == sum(rows, Decimal(0)), column
    assert number(family.loc["Whole family", "Charges [₹]"]) == shown
    day_pnl = number(family.loc["Whole family", "Day P&L [₹]"])
    assert day_pnl == -shown

    funds = services.portfolio.funds_frame(day).set_index("Account")
    for column in ("Available [₹]", "Used margin [₹]", "Cash [₹]", "Deposits [₹]",
                   "Charges today [₹]", "Realized P&L [₹]"):
        rows = funds[column].iloc[:-1].map(number)
        assert number(funds.loc["Whole family", column]) == sum(rows, Decimal(0)), column
    assert number(funds.loc["Whole family", "Charges today [₹]"]) == shown

    pnl = _pnl_rows(services.telegram_replies.pnl(day))
    total = pnl.pop("Total")
    assert total[0] == sum((today for today, _ in pnl.values()), Decimal(0)) == day_pnl

    _link(services, "rahul", time(16, 0))
    assert DailySummaryService(services.pnl_snapshots).run(
        THURSDAY.replace(hour=16, minute=1)).written == ["rahul"]
    (summary,) = alert_rows(services, AlertOutboxRow.kind == "summary.daily")
    lines = summary.body.splitlines()
    accounts = [line for line in lines if line.endswith(tuple("0123456789"))
                and "·" in line and ": " in line and not line.startswith(" ")]
    nets = [number(line.rsplit(": ", 1)[1].replace("₹", "")) for line in accounts]
    assert len(nets) == len(family) - 1
    assert f"Total ({len(nets)} accounts): -₹{-sum(nets, Decimal(0))}" in lines
    assert sum(nets, Decimal(0)) == day_pnl
    assert f"  charges ₹{shown}" in lines
    assert summary.title.endswith(f"-₹{-day_pnl} net")


def test_a_trade_books_fills_add_up_to_their_accounts_charges_today_and_statements(
        services: Services, day: Actor) -> None:
    intraday = next(a.id for a in services.household.list_accounts(day)
                    if a.label == "Rahul · Intraday")
    own = load_trades(services.db, [intraday])
    assert sum(paise(t.charges.total) for t in own) == Decimal("6.75")  # rounded one by one
    charges_today = services.portfolio.funds(day, intraday).charges_today
    assert paise(charges_today) == Decimal("6.74")
    pf, today = services.portfolio, THURSDAY.date()
    book = pd.read_csv(io.BytesIO(pf.trade_book_csv(day, intraday, today, today)), dtype=str)
    assert sum(map(Decimal, book["Charges [₹]"]), Decimal(0)) == Decimal("6.74")
    statement = pd.read_csv(io.BytesIO(pf.charges_statement_csv(day, intraday, today, today)),
                            dtype=str)
    assert Decimal(statement["Total [₹]"].iloc[-1]) == Decimal("6.74")
    pnl = pd.read_csv(io.BytesIO(pf.pnl_statement_csv(day, intraday, today, today)), dtype=str)
    assert Decimal(pnl["Charges [₹]"].iloc[-1]) == Decimal("6.74")
    orders_book = services.orders.trade_book_frame(day, intraday, today, today)
    assert sum(orders_book["Charges [₹]"], Decimal(0)) == Decimal("6.74")
    # The whole family's trade book and charges statement: the sum of the accounts' figures.
    family = pd.read_csv(io.BytesIO(pf.trade_book_csv(day, None, today, today)), dtype=str)
    whole = pd.read_csv(io.BytesIO(pf.charges_statement_csv(day, None, today, today)),
                        dtype=str)
    funds = pf.funds_frame(day).set_index("Account")
    assert sum(map(Decimal, family["Charges [₹]"]), Decimal(0)) == Decimal(
        whole["Total [₹]"].iloc[-1]) == number(funds.loc["Whole family", "Charges today [₹]"])
