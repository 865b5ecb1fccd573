"""Position, holding and family tables for pages: display-ready DataFrames (money to the paisa)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import NamedTuple

import pandas as pd

from core.clock import to_ist
from core.money import inr
from core.portfolio import FamilySummary
from core.statements import family_figures
from core.trading import Funds, Holding, Position

#: Where an LTP comes from and when (IST); see :func:`price_as_of`.
PRICE_AS_OF = "Price as of (IST)"
POSITION_COLUMNS = ["Account", "Symbol", "Product", "Net qty", "Avg price [₹]", "LTP [₹]",
                    "Unrealized [₹]", "Realized [₹]", "MTM [₹]", "Bought today", "Sold today",
                    PRICE_AS_OF]
HOLDING_COLUMNS = ["Account", "Symbol", "Qty", "Avg price [₹]", "LTP [₹]", "Value [₹]",
                   "Unrealized [₹]", PRICE_AS_OF]
QUOTE = "quote"
#: A quote the replay feed wrote: its time is the replay's simulated time, not the wall clock.
REPLAY = "replay"
DAILY_CLOSE = "daily close"
NO_PRICE = "no price (counted at cost)"


class PriceMark(NamedTuple):
    """A symbol's LTP and where it comes from: the feed's ``quote`` (a ``replay`` one if the
    replay feed wrote it) or the last ``daily close``. ``written`` is when (wall clock) the
    quote was written, if known."""

    price: Decimal
    as_of: datetime
    source: str
    written: datetime | None = None


def price_as_of(mark: PriceMark | None, today: date) -> str:
    """Return where a price comes from and when: ``today 14:05``, ``replay 2021-03-19 13:31``
    (a replay quote written today, at the replay's simulated time), ``2026-11-16 15:29 (old
    quote)``, ``2026-11-16 (daily close)``, or :data:`NO_PRICE`."""
    if mark is None:
        return NO_PRICE
    moment = to_ist(mark.as_of)
    if mark.source not in (QUOTE, REPLAY):
        return f"{moment:%Y-%m-%d} ({mark.source})"
    if moment.date() == today:
        return f"today {moment:%H:%M}"
    if mark.source == REPLAY:
        live = mark.written is not None and to_ist(mark.written).date() == today
        return f"replay {moment:%Y-%m-%d %H:%M}" + ("" if live else " (old quote)")
    return f"{moment:%Y-%m-%d %H:%M} (old quote)"


def _as_of(symbol: str, ltp: Decimal | None, marks: Mapping[str, PriceMark] | None,
           today: date | None) -> str:
    if ltp is None:
        return NO_PRICE
    mark = (marks or {}).get(symbol)
    return "" if mark is None or today is None else price_as_of(mark, today)
FAMILY_COLUMNS = ["Account", "Deposits [₹]", "Realized [₹]", "Unrealized [₹]",
                  "Charges [₹]", "Net P&L [₹]", "Day P&L [₹]", "Open value [₹]"]


def money(value: Decimal | None) -> str:
    """Return rupees to the paisa with Indian digit grouping (no ₹: the header says it)."""
    return inr(value, symbol=False)


def positions_frame(positions: list[Position], labels: Mapping[int, str],
                    marks: Mapping[str, PriceMark] | None = None,
                    today: date | None = None) -> pd.DataFrame:
    """Return positions as the Portfolio page shows them.

    ``marks`` (with ``today``) fill the price's source and time; a row without an LTP shows
    no unrealized P&L and :data:`NO_PRICE`.
    """
    return pd.DataFrame(
        [{
            "Account": labels.get(p.account_id, str(p.account_id)), "Symbol": p.symbol,
            "Product": p.product.value, "Net qty": p.quantity,
            # A flat position has no average price (its FIFO queue is empty): "—", not 0.00.
            "Avg price [₹]": money(p.average_price if p.quantity else None),
            "LTP [₹]": money(p.ltp),
            "Unrealized [₹]": money(None if p.ltp is None else p.unrealized_pnl),
            "Realized [₹]": money(p.realized_pnl),
            "MTM [₹]": money(p.mtm), "Bought today": p.buy_quantity,
            "Sold today": p.sell_quantity, PRICE_AS_OF: _as_of(p.symbol, p.ltp, marks, today),
        } for p in positions],
        columns=POSITION_COLUMNS,
    )


def holdings_frame(holdings: list[Holding], labels: Mapping[int, str],
                   marks: Mapping[str, PriceMark] | None = None,
                   today: date | None = None) -> pd.DataFrame:
    """Return settled holdings as the Portfolio page shows them (``marks`` as for positions)."""
    return pd.DataFrame(
        [{
            "Account": labels.get(h.account_id, str(h.account_id)), "Symbol": h.symbol,
            "Qty": h.quantity, "Avg price [₹]": money(h.average_price), "LTP [₹]": money(h.ltp),
            "Value [₹]": money(h.value),
            "Unrealized [₹]": money(None if h.ltp is None else h.unrealized_pnl),
            PRICE_AS_OF: _as_of(h.symbol, h.ltp, marks, today),
        } for h in holdings],
        columns=HOLDING_COLUMNS,
    )


#: Family table column -> the :class:`AccountSummary` figure it shows.
_FAMILY_FIELDS = {"Deposits [₹]": "deposits", "Realized [₹]": "realized_pnl",
                  "Unrealized [₹]": "unrealized_pnl", "Charges [₹]": "charges",
                  "Net P&L [₹]": "net_pnl", "Day P&L [₹]": "day_pnl",
                  "Open value [₹]": "market_value"}


def family_frame(summary: FamilySummary, labels: Mapping[int, str]) -> pd.DataFrame:
    """Return one row per account and the family last: the sum of the rows shown above it."""
    names = list(_FAMILY_FIELDS.values())
    rows = [[labels.get(r.account_id or 0, str(r.account_id)),
             *(money(getattr(r, name)) for name in names)] for r in summary.accounts]
    rows.append(["Whole family", *map(money, family_figures(summary.accounts, names))])
    return pd.DataFrame(rows, columns=FAMILY_COLUMNS)


FUNDS_COLUMNS = ["Account", "Owner", "Available [₹]", "Used margin [₹]", "Cash [₹]",
                 "Deposits [₹]", "Charges today [₹]", "Realized P&L [₹]"]
_FUND_FIELDS = ("available", "used_margin", "cash", "deposits", "charges_today", "realized_pnl")


def funds_frame(rows: list[tuple[str, str, Funds]]) -> pd.DataFrame:
    """Return (label, owner, funds) rows as a table with the family last: the sum of the rows
    shown above it (:func:`family_figures`)."""
    table = [[label, owner, *(money(getattr(f, name)) for name in _FUND_FIELDS)]
             for label, owner, f in rows]
    totals = family_figures([f for _, _, f in rows], _FUND_FIELDS)
    table.append(["Whole family", "", *(money(t) for t in totals)])
    return pd.DataFrame(table, columns=FUNDS_COLUMNS)
