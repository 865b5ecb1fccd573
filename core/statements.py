"""Statements as DataFrames: trade book, P&L over a period, contract-note charges, family table.

Pure: no I/O. Built on the FIFO matching of :mod:`core.portfolio`, so a statement's totals
agree with the book.

Conventions
-----------
- Column names carry their unit: ``"Price [₹]"``; quantities are shares.
- Money cells are :class:`~decimal.Decimal` rounded to the paisa (half up), so a downloaded
  CSV adds up without binary noise, by the rule of :func:`core.money.accounts_total`: an
  account's total is its exact amount rounded once, its rows (fills, symbols, charge
  components) are rounded to add up to it, and a figure of several accounts is the sum of
  theirs. The charges statement's days are each rounded on their own (as contract notes are),
  so over several days its total row may differ from the sum of the day rows by a paisa.
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
from core.money import accounts_total, paise_adding_up_by
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
    Each fill's charges are the parts of its account's charges over the rows (the account's
    exact charges rounded once, as its "Charges today" and the charges statement show them),
    so an account's rows add up to that figure, each within a paisa of the fill's own
    (:func:`core.money.paise_adding_up_by`).
    """
    names = labels or {}
    ordered = sorted(trades, key=lambda t: t.executed_at)
    charges = paise_adding_up_by([t.charges.total for t in ordered],
                                 [t.account_id for t in ordered])
    rows = [(to_ist(t.executed_at).strftime("%Y-%m-%d %H:%M:%S"),
             names.get(t.account_id, f"Account {t.account_id}"), t.symbol, t.side.value,
             t.product.value, t.quantity, paise(t.price), paise(t.value), shown,
             t.broker_trade_id)
            for t, shown in zip(ordered, charges, strict=True)]
    return pd.DataFrame(rows, columns=list(TRADE_BOOK_COLUMNS))


#: A P&L statement line of one account: (account id, symbol, product).
_LineKey = tuple[int, str, str]


@dataclass(slots=True)
class _PnlLine:
    """Running totals of one account's (symbol, product) line of the P&L statement."""

    closed: int = 0
    buy_value: Decimal = ZERO
    sell_value: Decimal = ZERO
    charges: Decimal = ZERO
    open_quantity: int = 0
    unrealized: Decimal | None = ZERO

    @property
    def realized(self) -> Decimal:
        return self.sell_value - self.buy_value


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
    charges. The last row is the total (``Symbol`` = ``"Total"``). Money follows
    :func:`core.money.accounts_total`: each account's total of a column is its exact amount
    rounded once, its rows are rounded to add up to it, and a row or total of several accounts
    is the sum of theirs; so every money column adds up to its total.

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
    lines: dict[_LineKey, _PnlLine] = defaultdict(_PnlLine)
    for close in ledger.closes:
        if close.trade.trade_date >= start:
            trade = close.trade
            line = lines[(trade.account_id, trade.symbol, trade.product.value)]
            line.closed += close.quantity
            line.buy_value += close.buy_price * close.quantity
            line.sell_value += close.sell_price * close.quantity
    for trade in ledger.trades:
        if trade.trade_date >= start:
            lines[(trade.account_id, trade.symbol, trade.product.value)].charges += (
                trade.charges.total)
    if ltp is not None:
        _mark_open(ledger.lots.values(), ltp, lines)
    shown = {name: _shown_column({key: value(line) for key, line in lines.items()})
             for name, value in _PNL_MONEY.items()}
    rows = []
    for symbol, product in sorted({(s, p) for _, s, p in lines}):
        keys = [k for k in lines if k[1:] == (symbol, product)]
        closed = sum(lines[k].closed for k in keys)
        buy = sum((lines[k].buy_value for k in keys), ZERO)
        sell = sum((lines[k].sell_value for k in keys), ZERO)
        rows.append([symbol, product, closed, paise(buy / closed if closed else None),
                     paise(sell / closed if closed else None),
                     *_row_money(shown, keys), sum(lines[k].open_quantity for k in keys)])
    # an average over different symbols means nothing: the total row has none
    rows.append([TOTAL, "", sum(x.closed for x in lines.values()), None, None,
                 *(sum((v for v in column.values() if v is not None), ZERO)
                   for column in shown.values()),
                 sum(x.open_quantity for x in lines.values())])
    if ltp is None:
        return pd.DataFrame([row[:len(PNL_COLUMNS)] for row in rows], columns=list(PNL_COLUMNS))
    return pd.DataFrame([[*row[:len(PNL_COLUMNS)], row[-1], row[-2]] for row in rows],
                        columns=[*PNL_COLUMNS, *PNL_OPEN_COLUMNS])


#: The P&L statement's money columns (the last, unrealized, only with prices).
_PNL_MONEY = {
    "realized": lambda line: line.realized, "charges": lambda line: line.charges,
    "net": lambda line: line.realized - line.charges, "unrealized": lambda line: line.unrealized,
}


def _shown_column(values: Mapping[_LineKey, Decimal | None]
                  ) -> dict[_LineKey, Decimal | None]:
    """Return one money column's lines to the paisa, adding up per account (None stays None)."""
    known = [(key, value) for key, value in values.items() if value is not None]
    parts = paise_adding_up_by([value for _, value in known], [key[0] for key, _ in known])
    shown: dict[_LineKey, Decimal | None] = dict.fromkeys(values)
    shown.update({key: part for (key, _), part in zip(known, parts, strict=True)})
    return shown


def _row_money(shown: Mapping[str, Mapping[_LineKey, Decimal | None]], keys: Sequence[_LineKey]
               ) -> list[Decimal | None]:
    """Return a row's money cells: the sum of its accounts' shown lines (None if one is)."""
    cells: list[Decimal | None] = []
    for column in shown.values():
        parts = [column[k] for k in keys]
        cells.append(None if any(p is None for p in parts)
                     else sum((p for p in parts if p is not None), ZERO))
    return cells


def _mark_open(lot_groups: Iterable[Sequence[Lot]], ltp: Mapping[str, Decimal],
               lines: dict[_LineKey, _PnlLine]) -> None:
    """Add open quantity and unrealized P&L at ``ltp`` (None without a price) to the lines."""
    for lots in lot_groups:
        for lot in lots:
            line = lines[(lot.account_id, lot.symbol, lot.product.value)]
            line.open_quantity += lot.quantity
            price = ltp.get(lot.symbol)
            if price is None or line.unrealized is None:
                line.unrealized = None
            else:
                line.unrealized += price * lot.quantity - lot.cost


#: One account's trades, turnover and charges (of a day or of the range).
_Day = tuple[int, Decimal, Charges]


def charges_statement(trades: Iterable[Trade], start: date, end: date) -> pd.DataFrame:
    """Return charges per trade date in ``start``-``end``, contract-note style, with a total.

    Columns: date, number of trades, turnover (Σ price × quantity), each charge of
    :class:`~core.trading.Charges`, and their total. The last row is the total (``Date`` =
    ``"Total"``). An account's total of a row is its exact charges rounded once to the paisa
    (as the cash was charged), its parts rounded so that they add up to it
    (:meth:`~core.trading.Charges.shown_parts`), each within a paisa of its exact value; a row
    of several accounts is the sum of theirs (:func:`core.money.accounts_total`), so each
    row's parts add up to its total.

    Raises
    ------
    ValidationError
        On a bad range (see :func:`check_range`).
    """
    check_range(start, end)
    cells: dict[tuple[int, date], _Day] = {}
    for trade in trades:
        if start <= trade.trade_date <= end:
            count, turnover, charges = cells.get((trade.account_id, trade.trade_date),
                                                 (0, ZERO, Charges()))
            cells[(trade.account_id, trade.trade_date)] = (
                count + 1, turnover + trade.value, charges + trade.charges)
    accounts: dict[int, _Day] = {}
    for (account_id, _day), (count, turnover, charges) in cells.items():
        had = accounts.get(account_id, (0, ZERO, Charges()))
        accounts[account_id] = (had[0] + count, had[1] + turnover, had[2] + charges)
    rows = [_charges_row(day.isoformat(), [v for (_, d), v in cells.items() if d == day])
            for day in sorted({day for _, day in cells})]
    rows.append(_charges_row(TOTAL, list(accounts.values())))
    return pd.DataFrame(rows, columns=list(CHARGES_COLUMNS))


def _charges_row(label: str, accounts: Sequence[_Day]) -> list[object]:
    """Return one row of :func:`charges_statement` from its accounts' figures (see there)."""
    shown = [charges.shown_parts() for _, _, charges in accounts] or [Charges().shown_parts()]
    parts = [sum(column, ZERO) for column in zip(*shown, strict=True)]
    return [label, sum(count for count, _, _ in accounts),
            accounts_total(turnover for _, turnover, _ in accounts), *parts,
            accounts_total(charges.total for _, _, charges in accounts)]


def family_figures(accounts: Sequence[object], names: Sequence[str]
                   ) -> list[Decimal | None]:
    """Return the family's figure of each attribute in ``names`` of the ``accounts``' rows.

    Each is the sum of the accounts' figures rounded to the paisa
    (:func:`core.money.accounts_total` states the rule), so it is the sum of the rows shown;
    None when an account's figure is unknown (deposits of a live broker).
    """
    out: list[Decimal | None] = []
    for name in names:
        values = [getattr(a, name) for a in accounts]
        out.append(None if any(v is None for v in values) else accounts_total(values))
    return out


def family_frame(summary: FamilySummary, labels: Mapping[int, str] | None = None
                 ) -> pd.DataFrame:
    """Return one row per account and a last row for the family (``"Family"``).

    ``labels`` names the accounts (default ``"Account <id>"``). Deposits are None when unknown.
    The family row is the sum of the account rows shown (:func:`family_figures`).
    """
    names = labels or {}
    fields = ("deposits", "realized_pnl", "unrealized_pnl", "charges", "net_pnl", "day_pnl",
              "market_value")
    rows: list[list[object]] = [
        [names.get(row.account_id or 0, f"Account {row.account_id}"),
         *(paise(getattr(row, name)) for name in fields)] for row in summary.accounts]
    rows.append(["Family", *family_figures(summary.accounts, fields)])
    return pd.DataFrame(rows, columns=list(FAMILY_COLUMNS))
