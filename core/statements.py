"""Statements as DataFrames: trade book, P&L over a period, contract-note charges, family table.

Pure: no I/O. Built on the FIFO matching of :mod:`core.portfolio`, so a statement's totals
agree with the book.

Conventions
-----------
- Column names carry their unit: ``"Price [₹]"``; quantities are shares.
- Money cells are :class:`~decimal.Decimal` rounded to the paisa (half up), so a downloaded
  CSV adds up without binary noise. A totals row is the rounded *exact* total, so it may differ
  from the sum of the rounded cells above it by a few paise (as on a contract note).
- Times are IST wall-clock strings ``"2026-11-20 09:15:00"`` in a ``"Time [IST]"`` column;
  dates are ISO strings, so the totals row can say ``"Total"`` in the same column.
- Statement ranges are inclusive IST trading dates and refused when reversed or longer than
  :data:`MAX_RANGE_DAYS`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

from core.clock import to_ist
from core.errors import ValidationError
from core.portfolio import FamilySummary, Lot, replay
from core.trading import ZERO, Charges, Trade

PAISA = Decimal("0.01")
#: Longest statement range, in days (ten years and change).
MAX_RANGE_DAYS = 3660
#: Label of the totals row.
TOTAL = "Total"
#: Statement periods :func:`period_bounds` knows.
PERIODS = ("day", "month", "fy")

CHARGE_COLUMNS = {
    "brokerage": "Brokerage [₹]", "stt": "STT [₹]", "exchange_txn": "Exchange txn [₹]",
    "ipft": "IPFT [₹]", "sebi_fee": "SEBI fee [₹]", "stamp_duty": "Stamp duty [₹]",
    "gst": "GST [₹]", "dp_charge": "DP [₹]",
}
TRADE_BOOK_COLUMNS = ("Time [IST]", "Account", "Symbol", "Side", "Product", "Qty",
                      "Price [₹]", "Value [₹]", "Charges [₹]", "Trade id")
PNL_COLUMNS = ("Symbol", "Product", "Qty closed", "Avg buy [₹]", "Avg sell [₹]", "Realized [₹]",
               "Charges [₹]", "Net [₹]")
PNL_OPEN_COLUMNS = ("Open qty", "Unrealized [₹]")
CHARGES_COLUMNS = ("Date", "Trades", "Turnover [₹]", *CHARGE_COLUMNS.values(), "Total [₹]")
FAMILY_COLUMNS = ("Account", "Deposits [₹]", "Realized [₹]", "Unrealized [₹]", "Charges [₹]",
                  "Net P&L [₹]", "Day P&L [₹]", "Market value [₹]")


def paise(amount: Decimal | None) -> Decimal | None:
    """Return ``amount`` rounded half up to the paisa (None stays None)."""
    return None if amount is None else amount.quantize(PAISA, rounding=ROUND_HALF_UP)


def check_range(start: date, end: date) -> None:
    """Refuse a statement range that is not two dates, is reversed, or is too long.

    Raises
    ------
    ValidationError
        Stating the rule and both dates.
    """
    for what, day in (("Start date", start), ("End date", end)):
        if isinstance(day, datetime) or not isinstance(day, date):
            raise ValidationError(f"{what} must be a calendar date; got {day!r}")
    if start > end:
        raise ValidationError(f"Start date {start.isoformat()} is after end date "
                              f"{end.isoformat()}; pick a start on or before the end")
    days = (end - start).days + 1
    if days > MAX_RANGE_DAYS:
        raise ValidationError(f"A statement covers at most {MAX_RANGE_DAYS} days; "
                              f"{start.isoformat()} to {end.isoformat()} is {days} days")


def period_bounds(kind: str, anchor: date) -> tuple[date, date]:
    """Return the first and last day of the period of ``kind`` that holds ``anchor``.

    ``"day"`` is the anchor itself, ``"month"`` its calendar month, ``"fy"`` the Indian
    financial year (1 April to 31 March).

    Raises
    ------
    ValidationError
        On an unknown kind (the message lists the known ones) or a non-date anchor.
    """
    check_range(anchor, anchor)
    if kind == "day":
        return anchor, anchor
    if kind == "month":
        following = (anchor.replace(day=28) + timedelta(days=4)).replace(day=1)
        return anchor.replace(day=1), following - timedelta(days=1)
    if kind == "fy":
        first = anchor.year if anchor.month >= 4 else anchor.year - 1
        return date(first, 4, 1), date(first + 1, 3, 31)
    raise ValidationError(f"Unknown statement period {kind!r}; choose one of {', '.join(PERIODS)}")


def trade_book_frame(trades: Iterable[Trade], labels: Mapping[int, str] | None = None
                     ) -> pd.DataFrame:
    """Return one row per fill, in execution order (ties in input order).

    ``labels`` names the accounts in the ``Account`` column (default ``"Account <id>"``).
    """
    names = labels or {}
    rows = [(to_ist(t.executed_at).strftime("%Y-%m-%d %H:%M:%S"),
             names.get(t.account_id, f"Account {t.account_id}"), t.symbol, t.side.value,
             t.product.value, t.quantity, paise(t.price), paise(t.value), paise(t.charges.total),
             t.broker_trade_id)
            for t in sorted(trades, key=lambda t: t.executed_at)]
    return pd.DataFrame(rows, columns=list(TRADE_BOOK_COLUMNS))


@dataclass(slots=True)
class _PnlLine:
    """Running totals of one (symbol, product) row of the P&L statement."""

    closed: int = 0
    buy_value: Decimal = ZERO
    sell_value: Decimal = ZERO
    charges: Decimal = ZERO
    open_quantity: int = 0
    unrealized: Decimal | None = ZERO

    @property
    def realized(self) -> Decimal:
        return self.sell_value - self.buy_value

    def cells(self) -> list[object]:
        avg_buy = self.buy_value / self.closed if self.closed else None
        avg_sell = self.sell_value / self.closed if self.closed else None
        return [self.closed, paise(avg_buy), paise(avg_sell), paise(self.realized),
                paise(self.charges), paise(self.realized - self.charges)]


def pnl_statement(
    trades: Sequence[Trade],
    start: date,
    end: date,
    ltp: Mapping[str, Decimal] | None = None,
) -> pd.DataFrame:
    """Return realized P&L per symbol and product for closes by trades dated ``start``-``end``.

    Closing trades are matched FIFO against every earlier trade (pass all trades, not just the
    range's); trades after ``end`` are ignored. Accounts are matched apart and their rows
    added. ``Charges [₹]`` are of the trades dated in the range; ``Net [₹]`` is realized −
    charges. The last row is the total (``Symbol`` = ``"Total"``).

    Parameters
    ----------
    trades : Sequence[Trade]
        Every fill of the accounts.
    start, end : date
        The inclusive range of trade dates.
    ltp : Mapping[str, Decimal] | None
        If given, add ``Open qty`` (left open after ``end``) and ``Unrealized [₹]`` (at these
        prices; None for a row with an unpriced lot, which the total then leaves out).

    Raises
    ------
    ValidationError
        On a bad range (see :func:`check_range`) or a bad trade.
    """
    check_range(start, end)
    ledger = replay(t for t in trades if t.trade_date <= end)
    lines: dict[tuple[str, str], _PnlLine] = defaultdict(_PnlLine)
    for close in ledger.closes:
        if close.trade.trade_date >= start:
            line = lines[(close.trade.symbol, close.trade.product.value)]
            line.closed += close.quantity
            line.buy_value += close.buy_price * close.quantity
            line.sell_value += close.sell_price * close.quantity
    for trade in ledger.trades:
        if trade.trade_date >= start:
            lines[(trade.symbol, trade.product.value)].charges += trade.charges.total
    if ltp is not None:
        _mark_open(ledger.lots.values(), ltp, lines)
    total = _PnlLine(
        closed=sum(x.closed for x in lines.values()),
        buy_value=sum((x.buy_value for x in lines.values()), ZERO),
        sell_value=sum((x.sell_value for x in lines.values()), ZERO),
        charges=sum((x.charges for x in lines.values()), ZERO),
        open_quantity=sum(x.open_quantity for x in lines.values()),
        unrealized=sum((x.unrealized for x in lines.values() if x.unrealized is not None), ZERO))
    rows = [[symbol, product, *line.cells()] for (symbol, product), line in sorted(lines.items())]
    rows.append([TOTAL, "", *total.cells()])
    rows[-1][3:5] = [None, None]  # an average over different symbols means nothing
    if ltp is None:
        return pd.DataFrame(rows, columns=list(PNL_COLUMNS))
    opens = [[line.open_quantity, paise(line.unrealized)] for _, line in sorted(lines.items())]
    opens.append([total.open_quantity, paise(total.unrealized)])
    return pd.DataFrame([row + extra for row, extra in zip(rows, opens, strict=True)],
                        columns=[*PNL_COLUMNS, *PNL_OPEN_COLUMNS])


def _mark_open(lot_groups: Iterable[Sequence[Lot]], ltp: Mapping[str, Decimal],
               lines: dict[tuple[str, str], _PnlLine]) -> None:
    """Add open quantity and unrealized P&L at ``ltp`` (None without a price) to the lines."""
    for lots in lot_groups:
        for lot in lots:
            line = lines[(lot.symbol, lot.product.value)]
            line.open_quantity += lot.quantity
            price = ltp.get(lot.symbol)
            if price is None or line.unrealized is None:
                line.unrealized = None
            else:
                line.unrealized += price * lot.quantity - lot.cost


def charges_statement(trades: Iterable[Trade], start: date, end: date) -> pd.DataFrame:
    """Return charges per trade date in ``start``-``end``, contract-note style, with a total.

    Columns: date, number of trades, turnover (Σ price × quantity), each charge of
    :class:`~core.trading.Charges`, and their total. The last row is the total (``Date`` =
    ``"Total"``). A row's total is its exact charges rounded once to the paisa (as the cash was
    charged); its parts are rounded so that they add up to it
    (:meth:`~core.trading.Charges.shown_parts`), each within a paisa of its exact value.

    Raises
    ------
    ValidationError
        On a bad range (see :func:`check_range`).
    """
    check_range(start, end)
    days: dict[date, tuple[int, Decimal, Charges]] = {}
    for trade in trades:
        if start <= trade.trade_date <= end:
            count, turnover, charges = days.get(trade.trade_date, (0, ZERO, Charges()))
            days[trade.trade_date] = (count + 1, turnover + trade.value, charges + trade.charges)
    rows = [_charges_row(day.isoformat(), *days[day]) for day in sorted(days)]
    totals = (sum(c for c, _, _ in days.values()), sum((t for _, t, _ in days.values()), ZERO),
              sum((ch for _, _, ch in days.values()), Charges()))
    rows.append(_charges_row(TOTAL, *totals))
    return pd.DataFrame(rows, columns=list(CHARGES_COLUMNS))


def _charges_row(label: str, count: int, turnover: Decimal, charges: Charges) -> list[object]:
    # The total is the exact sum to the paisa (what the cash was charged); the parts are
    # rounded so that they add up to it (each within a paisa of its exact value).
    return [label, count, paise(turnover), *charges.shown_parts(), paise(charges.total)]


def family_frame(summary: FamilySummary, labels: Mapping[int, str] | None = None
                 ) -> pd.DataFrame:
    """Return one row per account and a last row for the family (``"Family"``).

    ``labels`` names the accounts (default ``"Account <id>"``). Deposits are None when unknown.
    """
    names = labels or {}
    rows = []
    for row in (*summary.accounts, summary.total):
        name = ("Family" if row.account_id is None
                else names.get(row.account_id, f"Account {row.account_id}"))
        rows.append([name, paise(row.deposits), paise(row.realized_pnl),
                     paise(row.unrealized_pnl), paise(row.charges), paise(row.net_pnl),
                     paise(row.day_pnl), paise(row.market_value)])
    return pd.DataFrame(rows, columns=list(FAMILY_COLUMNS))

