"""Position, holding and family tables for pages: display-ready DataFrames (money to the paisa)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import pandas as pd

from core.money import inr
from core.portfolio import AccountSummary, FamilySummary
from core.trading import Funds, Holding, Position

POSITION_COLUMNS = ["Account", "Symbol", "Product", "Net qty", "Avg price [₹]", "LTP [₹]",
                    "Unrealized [₹]", "Realized [₹]", "MTM [₹]", "Bought today", "Sold today"]
HOLDING_COLUMNS = ["Account", "Symbol", "Qty", "Avg price [₹]", "LTP [₹]", "Value [₹]",
                   "Unrealized [₹]"]
FAMILY_COLUMNS = ["Account", "Deposits [₹]", "Realized [₹]", "Unrealized [₹]",
                  "Charges [₹]", "Net P&L [₹]", "Day P&L [₹]", "Open value [₹]"]


def money(value: Decimal | None) -> str:
    """Return rupees to the paisa with Indian digit grouping (no ₹: the header says it)."""
    return inr(value, symbol=False)


def positions_frame(positions: list[Position], labels: Mapping[int, str]) -> pd.DataFrame:
    """Return positions as the Portfolio page shows them."""
    return pd.DataFrame(
        [{
            "Account": labels.get(p.account_id, str(p.account_id)), "Symbol": p.symbol,
            "Product": p.product.value, "Net qty": p.quantity,
            # A flat position has no average price (its FIFO queue is empty): "—", not 0.00.
            "Avg price [₹]": money(p.average_price if p.quantity else None),
            "LTP [₹]": money(p.ltp),
            "Unrealized [₹]": money(p.unrealized_pnl), "Realized [₹]": money(p.realized_pnl),
            "MTM [₹]": money(p.mtm), "Bought today": p.buy_quantity,
            "Sold today": p.sell_quantity,
        } for p in positions],
        columns=POSITION_COLUMNS,
    )


def holdings_frame(holdings: list[Holding], labels: Mapping[int, str]) -> pd.DataFrame:
    """Return settled holdings as the Portfolio page shows them."""
    return pd.DataFrame(
        [{
            "Account": labels.get(h.account_id, str(h.account_id)), "Symbol": h.symbol,
            "Qty": h.quantity, "Avg price [₹]": money(h.average_price), "LTP [₹]": money(h.ltp),
            "Value [₹]": money(h.value), "Unrealized [₹]": money(h.unrealized_pnl),
        } for h in holdings],
        columns=HOLDING_COLUMNS,
    )


def _family_row(row: AccountSummary, label: str) -> dict[str, object]:
    return {
        "Account": label, "Deposits [₹]": money(row.deposits),
        "Realized [₹]": money(row.realized_pnl), "Unrealized [₹]": money(row.unrealized_pnl),
        "Charges [₹]": money(row.charges), "Net P&L [₹]": money(row.net_pnl),
        "Day P&L [₹]": money(row.day_pnl), "Open value [₹]": money(row.market_value),
    }


def family_frame(summary: FamilySummary, labels: Mapping[int, str]) -> pd.DataFrame:
    """Return one row per account and the family total last."""
    rows = [_family_row(r, labels.get(r.account_id or 0, str(r.account_id)))
            for r in summary.accounts]
    rows.append(_family_row(summary.total, "Whole family"))
    return pd.DataFrame(rows, columns=FAMILY_COLUMNS)


FUNDS_COLUMNS = ["Account", "Owner", "Available [₹]", "Used margin [₹]", "Cash [₹]",
                 "Deposits [₹]", "Charges today [₹]", "Realized P&L [₹]"]
_FUND_FIELDS = ("available", "used_margin", "cash", "deposits", "charges_today", "realized_pnl")


def funds_frame(rows: list[tuple[str, str, Funds]]) -> pd.DataFrame:
    """Return (label, owner, funds) rows as a table with a family total last."""
    table = [[label, owner, *(money(getattr(f, name)) for name in _FUND_FIELDS)]
             for label, owner, f in rows]
    totals = [sum((getattr(f, name) for _, _, f in rows), Decimal(0)) for name in _FUND_FIELDS]
    table.append(["Whole family", "", *(money(t) for t in totals)])
    return pd.DataFrame(table, columns=FUNDS_COLUMNS)
