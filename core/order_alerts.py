"""Order events as alerts: placed, filled, partially filled, rejected, cancelled.

Every change of an order's state is recorded by :meth:`core.orders.OrderManager._apply`, on
every path (the ticket, GTT triggers, AMO release, IOC cancels, the square-off, risk exits and
panic); it calls :func:`enqueue_order_event` there, so the alert is written in the transaction
of the change: a rolled-back order writes none. The dedupe key names the order, its new state
and its filled quantity (``order:<id>:<status>:<filled>``), so a replayed broker push or a
retried step writes no second alert.

==============================  ======================  =========  =========================
change                          kind                    severity   title (lock screen)
==============================  ======================  =========  =========================
PENDING -> OPEN                 ``order.placed``        info       Order placed: BUY 10 INFY
more filled, not all            ``order.partially_...`` info       Part filled: BUY 4/10 INFY
all filled                      ``order.filled``        info       Filled: BUY 10 INFY @ ₹..
-> REJECTED                     ``order.rejected``      warning    Order rejected: BUY 10 INFY
-> CANCELLED                    ``order.cancelled``     info       Order cancelled: BUY 10 ..
==============================  ======================  =========  =========================

When the risk gate cut the size, the placed, rejected and cancelled titles say so after the
quantity: "Order placed: BUY 1 SBIN (asked 2; risk gate: market regime CHOPPY: size × 0.5 → 1
share)", and a fill's message after its "Filled 1 of 1": on every path, the order manager's
broker sync too (it reads the note from the order's ``orders.place`` audit row).

Building the text costs a few string formats and no read: the alert shows the account's label
through its ``account_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.orm import Session

from core import alerts
from core.money import inr
from core.trading import OrderStatus, OrderType
from db.models import OrderRow

PLACED = "order.placed"
FILLED = "order.filled"
PARTIALLY_FILLED = "order.partially_filled"
REJECTED = "order.rejected"
CANCELLED = "order.cancelled"
#: Every kind this module writes.
ORDER_KINDS = (PLACED, FILLED, PARTIALLY_FILLED, REJECTED, CANCELLED)

#: What the order's ``source`` means, for the message.
SOURCES = {
    "web": "order ticket", "gtt": "GTT trigger", "risk": "risk exit", "panic": "panic exit",
    "square_off": "MIS square-off", "telegram": "Telegram", "api": "API",
}


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One order event's alert, ready for :func:`core.alerts.enqueue`."""

    kind: str
    severity: str
    title: str
    body: str
    dedupe_key: str


def event_kind(old: OrderStatus, new: OrderStatus, old_filled: int, filled: int,
               quantity: int) -> str | None:
    """Return the alert kind of a change from ``old`` to ``new``, or None (no alert).

    A fill that leaves part of the order open is ``order.partially_filled`` whatever state the
    broker names (some report OPEN with a filled quantity); a PENDING order the broker
    accepted is ``order.placed``.
    """
    if new is OrderStatus.REJECTED:
        return REJECTED
    if new is OrderStatus.CANCELLED:
        return CANCELLED
    if new is OrderStatus.FILLED or (filled >= quantity > 0 and filled > old_filled):
        return FILLED
    if filled > old_filled:
        return PARTIALLY_FILLED
    if old is OrderStatus.PENDING and new is OrderStatus.OPEN:
        return PLACED
    return None


def _price_text(row: OrderRow) -> str:
    if row.order_type is OrderType.MARKET:
        return "at market"
    if row.order_type is OrderType.SL_M:
        return f"trigger {inr(row.trigger_price)}, then at market"
    if row.order_type is OrderType.SL:
        return f"trigger {inr(row.trigger_price)}, limit {inr(row.price)}"
    return f"at {inr(row.price)} or better"


def _fill_text(row: OrderRow, filled: int, average: Decimal | None) -> str:
    if not filled:
        return "Nothing filled"
    value = f" = {inr(average * filled)}" if average is not None else ""
    return f"Filled {filled} of {row.quantity} at avg {inr(average)}{value}"


def _resized_text(row: OrderRow, risk_note: Mapping[str, object] | None) -> str:
    """Return " (asked N; risk gate: why)" when the gate cut the order's size, else ""."""
    if not risk_note or "requested_quantity" not in risk_note:
        return ""
    asked = risk_note["requested_quantity"]
    if asked == row.quantity:
        return ""
    why = str(risk_note.get("risk_gate") or "").strip()
    return f" (asked {asked}; risk gate: {why})" if why else f" (asked {asked}; risk gate)"


def order_event(row: OrderRow, old: OrderStatus, old_filled: int,
                placed_by: str | None = None,
                risk_note: Mapping[str, object] | None = None) -> OrderEvent | None:
    """Return the alert of ``row``'s change from ``old`` (``old_filled`` filled), or None.

    ``row`` holds the new state (status, filled quantity, average price, rejection reason);
    ``placed_by`` is the username of who placed it, for a placed order's message;
    ``risk_note`` is the gate's note when it cut the size (``requested_quantity`` and
    ``risk_gate``, as audited), so the order's alerts say what was asked.
    """
    kind = event_kind(old, row.status, old_filled, row.filled_quantity, row.quantity)
    if kind is None:
        return None
    resized = _resized_text(row, risk_note)
    what = f"{row.side.value} {row.quantity} {row.symbol}"
    if kind in (PLACED, REJECTED, CANCELLED):
        what += resized
    terms = f"{row.order_type.value} {_price_text(row)} · {row.product.value}"
    source = SOURCES.get(row.source, row.source)
    order = f"Order {row.id} ({source})"
    filled, average = row.filled_quantity, row.average_price
    if kind == PLACED:
        queued = " — AMO, queued for the next open" if row.is_amo else ""
        who = f", by {placed_by}" if placed_by else ""
        title = f"Order placed: {what}"
        body = f"{terms}{queued}\n{order}{who}"
    elif kind == FILLED:
        title = f"Filled: {what} @ {inr(average)}"
        body = f"{_fill_text(row, filled, average)}{resized}\n{row.product.value} · {order}"
    elif kind == PARTIALLY_FILLED:
        title = f"Part filled: {row.side.value} {filled}/{row.quantity} {row.symbol}"
        body = (f"{_fill_text(row, filled, average)}{resized}\n{row.quantity - filled} still "
                f"open, {terms}\n{order}")
    elif kind == REJECTED:
        title = f"Order rejected: {what}"
        body = (f"Reason: {row.rejection_reason or 'not given by the broker'}\n{terms}\n"
                f"{order}")
    else:
        title = f"Order cancelled: {what}"
        rest = row.quantity - filled
        done = (f"{_fill_text(row, filled, average)}; the other {rest} cancelled" if filled
                else f"Nothing filled; all {rest} cancelled")
        reason = f"\nReason: {row.rejection_reason}" if row.rejection_reason else ""
        body = f"{done}{reason}\n{terms}\n{order}"
    return OrderEvent(kind=kind, severity="warning" if kind == REJECTED else "info",
                      title=title, body=body,
                      dedupe_key=f"order:{row.id}:{row.status.value}:{filled}")


def enqueue_order_event(session: Session, row: OrderRow, old: OrderStatus, old_filled: int,
                        household_id: int, placed_by: str | None = None,
                        risk_note: Mapping[str, object] | None = None) -> bool:
    """Write ``row``'s change as an alert in ``session`` (the change's transaction).

    Return True when an alert was added; False when the change is no alert's event or its
    alert exists already (a replayed push, a retried step). ``risk_note``: see
    :func:`order_event`.
    """
    event = order_event(row, old, old_filled, placed_by, risk_note)
    if event is None:
        return False
    return alerts.enqueue(session, kind=event.kind, household_id=household_id,
                          account_id=row.account_id, severity=event.severity, title=event.title,
                          body=event.body, dedupe_key=event.dedupe_key)


def gtt_refused_event(gtt_id: int, symbol: str, side: str, quantity: int, reason: str
                      ) -> OrderEvent:
    """Return the alert of a GTT that triggered but whose order was refused before it existed.

    No order row is written then (a check or the risk gate refused it), so the event is named
    by the GTT: ``gtt:<id>:rejected``.
    """
    return OrderEvent(kind=REJECTED, severity="warning",
                      title=f"GTT order rejected: {side} {quantity} {symbol}",
                      body=f"Reason: {reason}\nGTT {gtt_id} triggered; no order was placed",
                      dedupe_key=f"gtt:{gtt_id}:rejected")
