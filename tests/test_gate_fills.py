"""The risk gate's running book of an account's fills equals a replay of every fill.

The gate no longer replays all fills per order: it extends a per-queue book and computes the
figures of the fills before a week's Monday once per week. These tests hold it to the full
replay it replaced, across week boundaries, a late (out of time order) fill and a new week.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from decimal import Decimal

from core.clock import IST
from core.portfolio import build_book, replay
from core.services.risk_gate import _Fills, week_start
from core.trading import ZERO, Charges, Product, Side, Trade

START = datetime(2025, 6, 2, 9, 20, tzinfo=IST)  # a Monday


def _trades(count: int, seed: int) -> list[Trade]:
    """Return ``count`` fills over three weeks, in time order, with charges."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not a secret
    trades, at = [], START
    for n in range(count):
        at += timedelta(hours=rng.choice([1, 2, 5, 20]))
        trades.append(Trade(
            account_id=1, symbol=rng.choice(["INFY", "TCS", "SBIN"]),
            side=rng.choice([Side.BUY, Side.SELL]),
            product=rng.choice([Product.MIS, Product.CNC]), quantity=rng.randint(1, 9),
            price=Decimal(rng.randint(9000, 11000)) / 10, executed_at=at,
            trade_date=at.date(), broker_trade_id=f"T{n}", broker_order_id=f"O{n}",
            charges=Charges(brokerage=Decimal(rng.randint(0, 40)) / 4)))
    return trades


def _week_figures(trades: list[Trade], monday: date) -> tuple[Decimal, Decimal]:
    """Return (realized, charges) of the week from ``monday``: the old full replay."""
    realized = sum((c.realized for c in replay(trades).closes
                    if c.trade.trade_date >= monday), ZERO)
    charges = sum((t.charges.total for t in trades if t.trade_date >= monday), ZERO)
    return realized, charges


def test_the_running_book_and_week_figures_equal_a_full_replay_as_fills_arrive() -> None:
    trades = _trades(120, seed=3)
    prices = {"INFY": Decimal("1001.5"), "TCS": Decimal("998.25"), "SBIN": Decimal("1010")}
    fills = _Fills()
    for cut in range(0, len(trades), 7):
        fills.extend(trades[cut:cut + 7])
        seen = trades[:cut + 7]
        today = seen[-1].trade_date
        monday = week_start(today)
        book = fills.book.book(prices, today)
        full = build_book(seen, prices, today)
        assert (book.realized_pnl, book.charges, book.day_pnl, book.unrealized_pnl) == (
            full.realized_pnl, full.charges, full.day_pnl, full.unrealized_pnl)
        realized_before, charges_before = fills.before(monday)
        assert (book.realized_pnl - realized_before, book.charges - charges_before) == \
            _week_figures(seen, monday)


def test_a_late_fill_rebuilds_the_book_in_time_order() -> None:
    trades = _trades(40, seed=5)
    late = trades.pop(10)
    fills = _Fills()
    fills.extend(trades)
    fills.extend([late])
    assert [t.broker_trade_id for t in fills.trades] == \
        [t.broker_trade_id for t in sorted([*trades, late], key=lambda t: t.executed_at)]
    today = fills.trades[-1].trade_date
    full = build_book(fills.trades, {}, today)
    assert fills.book.book({}, today).realized_pnl == full.realized_pnl
    assert fills.before(week_start(today)) == (
        full.realized_pnl - _week_figures(fills.trades, week_start(today))[0],
        full.charges - _week_figures(fills.trades, week_start(today))[1])


def test_the_figures_before_a_monday_are_cached_until_that_week_gets_an_earlier_fill() -> None:
    trades = _trades(60, seed=8)
    fills = _Fills()
    fills.extend(trades)
    monday = week_start(trades[-1].trade_date)
    first = fills.before(monday)
    assert fills.before(monday) == first  # same week, nothing earlier added
    assert fills.before(monday + timedelta(days=7)) == (
        sum((c.realized for c in replay(trades).closes), ZERO),
        sum((t.charges.total for t in trades), ZERO))  # next week: every fill is before
