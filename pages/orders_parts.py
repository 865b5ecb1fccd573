"""The Orders page's forms: modify or cancel an open order, cancel an active GTT."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Literal

import streamlit as st

from core.trading import Gtt, Order
from pages.common import keep_pick
from pages.trading_parts import rupees, to_decimal

Change = tuple[Literal["modify", "cancel"], int, dict[str, int | Decimal | None]]


def describe_order(order: Order) -> str:
    """Return one line naming an open order: id, account, side, quantity, symbol, prices."""
    prices = []
    if order.price is not None:
        prices.append(f"@ {rupees(order.price)}")
    if order.trigger_price is not None:
        prices.append(f"trigger {rupees(order.trigger_price)}")
    filled = f", {order.filled_quantity} filled" if order.filled_quantity else ""
    return (f"#{order.id} · {order.account_label} · {order.side} {order.quantity} {order.symbol} "
            f"{order.order_type} {' '.join(prices)} ({order.status}{filled})").replace("  ", " ")


def describe_gtt(gtt: Gtt) -> str:
    """Return one line naming a GTT: id, account, symbol, kind and its triggers."""
    triggers = " / ".join(f"{leg.side} {leg.quantity} at {rupees(leg.trigger_price)}"
                          for leg in gtt.legs)
    return f"#{gtt.id} · {gtt.account_label} · {gtt.symbol} {gtt.kind}: {triggers}"


def change_order_form(orders: Sequence[Order]) -> Change | None:
    """Render the modify/cancel form over ``orders``; return what was asked, or None."""
    labels = keep_pick("orders_open_order", {o.id: describe_order(o) for o in orders},
                       lambda ident: f"#{ident} · no longer open: see the order book")
    with st.form("orders_change"):
        st.markdown("**Modify or cancel an open order** (empty fields keep their value)")
        order_id = st.selectbox("Open order", list(labels), format_func=labels.get,
                                key="orders_open_order")
        cols = st.columns(3)
        quantity = cols[0].number_input("New quantity", min_value=1, value=None, step=1,
                                        key="orders_new_quantity")
        price = cols[1].number_input("New price [₹]", min_value=0.0, value=None, step=0.05,
                                     format="%.2f", key="orders_new_price")
        trigger = cols[2].number_input("New trigger price [₹]", min_value=0.0, value=None,
                                       step=0.05, format="%.2f", key="orders_new_trigger")
        buttons = st.columns([1, 1, 4])
        modify = buttons[0].form_submit_button("Modify", key="orders_modify")
        cancel = buttons[1].form_submit_button("Cancel order", key="orders_cancel")
    if cancel:
        return "cancel", order_id, {}
    if modify:
        values = {"quantity": None if quantity is None else int(quantity),
                  "price": to_decimal(price), "trigger_price": to_decimal(trigger)}
        return "modify", order_id, values
    return None


def cancel_gtt_form(gtts: Sequence[Gtt]) -> int | None:
    """Render the cancel form over active GTTs the user may trade; return the id to cancel."""
    if not gtts:
        return None
    labels = keep_pick("orders_gtt", {g.id: describe_gtt(g) for g in gtts},
                       lambda ident: f"#{ident} · no longer active: see the GTT table")
    with st.form("orders_gtt_cancel"):
        gtt_id = st.selectbox("Active GTT", list(labels), format_func=labels.get,
                              key="orders_gtt")
        if st.form_submit_button("Cancel GTT", key="orders_gtt_cancel_button"):
            return gtt_id
    return None
