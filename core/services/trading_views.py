"""Order-book and GTT tables for pages: domain objects reshaped into display-ready DataFrames."""

from __future__ import annotations

import pandas as pd

from core.clock import format_ist
from core.money import inr
from core.services.portfolio_views import money
from core.trading import Gtt, GttLeg, Order
from db.models import GttRow

ORDER_COLUMNS = ["Order", "Time (IST)", "Account", "Symbol", "Side", "Qty", "Filled", "Type",
                 "Product", "Validity", "Price [₹]", "Trigger [₹]", "Avg price [₹]", "Status",
                 "Reason", "AMO", "Source", "Placed by", "Client order id"]
GTT_COLUMNS = ["GTT", "Created (IST)", "Account", "Symbol", "Kind", "Product", "Legs", "Status",
               "LTP at creation [₹]", "Triggered (IST)", "Order", "Message", "Expires (IST)"]


def orders_frame(orders: list[Order]) -> pd.DataFrame:
    """Return orders as the order book shows them (times IST, money to the paisa)."""
    return pd.DataFrame(
        [{
            "Order": o.id, "Time (IST)": format_ist(o.created_at), "Account": o.account_label,
            "Symbol": o.symbol, "Side": o.side.value, "Qty": o.quantity,
            "Filled": o.filled_quantity, "Type": o.order_type.value, "Product": o.product.value,
            "Validity": o.validity.value, "Price [₹]": money(o.price),
            "Trigger [₹]": money(o.trigger_price), "Avg price [₹]": money(o.average_price),
            "Status": o.status.value, "Reason": o.rejection_reason or "",
            "AMO": "yes" if o.amo else "", "Source": o.source, "Placed by": o.placed_by or "—",
            "Client order id": o.client_order_id,
        } for o in orders],
        columns=ORDER_COLUMNS,
    )


def _describe_leg(leg: GttLeg) -> str:
    return (f"{leg.side.value} {leg.quantity} @ {inr(leg.price)} "
            f"when LTP hits {inr(leg.trigger_price)}")


def gtt_frame(gtts: list[Gtt]) -> pd.DataFrame:
    """Return GTTs as the Orders page lists them."""
    return pd.DataFrame(
        [{
            "GTT": g.id, "Created (IST)": format_ist(g.created_at), "Account": g.account_label,
            "Symbol": g.symbol, "Kind": g.kind.value, "Product": g.product.value,
            "Legs": " | ".join(_describe_leg(leg) for leg in g.legs), "Status": g.status.value,
            "LTP at creation [₹]": money(g.reference_price),
            "Triggered (IST)": format_ist(g.triggered_at),
            # Text in both cases: a column mixing numbers and "—" fails Arrow's conversion.
            "Order": "—" if g.order_id is None else str(g.order_id),
            "Message": g.message or "", "Expires (IST)": format_ist(g.expires_at),
        } for g in gtts],
        columns=GTT_COLUMNS,
    )


def gtt_legs(row: GttRow) -> tuple[GttLeg, ...]:
    """Return the legs stored on a GTT row (one or two)."""
    legs = [GttLeg(row.leg1_trigger, row.leg1_side, row.leg1_quantity, row.leg1_price)]
    if (row.leg2_trigger is not None and row.leg2_side is not None
            and row.leg2_quantity is not None and row.leg2_price is not None):
        legs.append(GttLeg(row.leg2_trigger, row.leg2_side, row.leg2_quantity, row.leg2_price))
    return tuple(legs)


def to_gtt(row: GttRow, account_label: str, created_by: str | None) -> Gtt:
    """Return the domain GTT of a row."""
    return Gtt(
        id=row.id, account_id=row.account_id, account_label=account_label, symbol=row.symbol,
        kind=row.kind, product=row.product, legs=gtt_legs(row), status=row.status,
        reference_price=row.reference_price, created_by=created_by, created_at=row.created_at,
        expires_at=row.expires_at, triggered_at=row.triggered_at,
        triggered_leg=row.triggered_leg, order_id=row.order_id, message=row.message)
