"""The Trade page's forms: the quick order ticket (review, then place) and the GTT form."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pandas as pd
import streamlit as st

from core.clock import format_ist
from core.domain import Account, Actor
from core.orders import OrderEstimate, new_client_order_id
from core.trading import (
    CHARGE_FIELDS,
    GttLeg,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Product,
    Side,
    Validity,
)
from engines.risk_types import Check, PreTradeDecision, RiskLevel
from pages.common import fetch, services
from pages.trading_parts import rupees, to_decimal

PRICED = frozenset({OrderType.LIMIT, OrderType.SL})
TRIGGERED = frozenset({OrderType.SL, OrderType.SL_M})
CLIENT_ID_KEY = "trade_client_order_id"
GTT_KINDS = {"single": "Single trigger", "oco": "OCO: stop-loss + target"}
#: The legs each GTT kind asks for: label prefix and widget key stem (OCO: stop-loss first).
GTT_LEGS = {"single": (("", "trade_gtt_leg"),),
            "oco": (("Stop-loss ", "trade_gtt_stop"), ("Target ", "trade_gtt_target"))}


def ticket_request(values: dict[str, Any], client_order_id: str | None = None) -> OrderRequest:
    """Return the OrderRequest of the ticket's widget values.

    Prices become Decimals as shown (``Decimal(str(x))``); a price or trigger the order type
    does not use is dropped (None), so a leftover number in a hidden-by-type field is never sent.
    The planned stop-loss (optional) only sizes the order at the risk gate.
    """
    order_type = OrderType(values["order_type"])
    return OrderRequest(
        account_id=int(values["account_id"]),
        symbol=values["symbol"],
        side=Side(values["side"]),
        quantity=int(values["quantity"]),
        order_type=order_type,
        product=Product(values["product"]),
        validity=Validity(values["validity"]),
        price=to_decimal(values["price"]) if order_type in PRICED else None,
        trigger_price=to_decimal(values["trigger"]) if order_type in TRIGGERED else None,
        amo=bool(values["amo"]),
        client_order_id=client_order_id,
        stop_loss=to_decimal(values.get("stop_loss")),
    )


def _choice(label: str, enum: type, key: str, column: Any) -> str:
    return column.radio(label, [member.value for member in enum], horizontal=True, key=key)


def _price_input(label: str, key: str, column: Any, help_text: str,
                 lowest: float = 0.0) -> float | None:
    return column.number_input(
        label, min_value=lowest, value=None, step=0.05, format="%.2f", key=key, help=help_text
    )


#: How many unpriced symbols the note under a symbol picker names before "and N more".
_UNPRICED_NAMED = 12


def unpriced_note(prices: Mapping[str, Decimal | None]) -> str | None:
    """Return the note under a symbol picker naming the symbols with no price yet, or None.

    The feed may price only some of the instrument master; an order in an unpriced symbol is
    refused, so the page says so before the user fills the ticket in. The picker's options are
    the bare symbols: Streamlit keys a selectbox's choice by its shown label, and a label with
    the moving price would drop the choice as soon as the price changed (Review shows the LTP).
    """
    missing = [symbol for symbol, price in prices.items() if price is None]
    if not missing:
        return None
    named = ", ".join(missing[:_UNPRICED_NAMED])
    more = f" and {len(missing) - _UNPRICED_NAMED} more" if len(missing) > _UNPRICED_NAMED else ""
    return f"No price yet (orders in them are refused): {named}{more}."


def symbol_picker(symbols: Mapping[str, Decimal | None], key: str, column: Any) -> str | None:
    """Render a symbol picker in ``column`` whose options are the symbols themselves, and the
    unpriced note below the row (full width)."""
    symbol: str | None = column.selectbox("Symbol", list(symbols), index=None,
                                          placeholder="Type to search", key=key)
    note = unpriced_note(symbols)
    if note is not None:
        st.caption(note)
    return symbol


def order_ticket(me: Actor, accounts: Sequence[Account],
                 symbols: Mapping[str, Decimal | None]) -> None:
    """Render the order ticket; "Review" estimates, "Place order" sends."""
    labels = {a.id: a.label for a in accounts}
    with st.form("trade_ticket"):
        top = st.columns([2, 2, 2])
        values: dict[str, Any] = {
            "account_id": top[0].selectbox(
                "Account", list(labels), format_func=labels.get, key="trade_account"),
            "symbol": symbol_picker(symbols, "trade_symbol", top[1]),
            "side": _choice("Side", Side, "trade_side", top[2]),
        }
        mid = st.columns(4)
        values["quantity"] = mid[0].number_input(
            "Quantity", min_value=1, value=1, step=1, key="trade_quantity")
        values["order_type"] = mid[1].selectbox(
            "Order type", [t.value for t in OrderType], key="trade_order_type")
        values["price"] = _price_input("Price [₹]", "trade_price", mid[2], "LIMIT and SL only")
        values["trigger"] = _price_input(
            "Trigger price [₹]", "trade_trigger", mid[3], "SL and SL-M only")
        low = st.columns([3, 2, 3, 3])
        values["product"] = _choice("Product", Product, "trade_product", low[0])
        values["validity"] = _choice("Validity", Validity, "trade_validity", low[1])
        values["stop_loss"] = _price_input(
            "Planned stop-loss [₹]", "trade_stop_loss", low[3],
            "Where you would exit if wrong; the risk gate sizes the order from its distance "
            "(without one: a multiple of ATR, see Risk). Not sent to the broker", lowest=0.01)
        values["amo"] = low[2].checkbox(
            "AMO (after-market order)", key="trade_amo",
            help="Queue the order for the next session's open; needed while the market is closed")
        buttons = st.columns([1, 1, 4])
        review = buttons[0].form_submit_button("Review", key="trade_review",
                                               icon=":material/receipt:")
        place = buttons[1].form_submit_button("Place order", key="trade_place", type="primary")
    if not (review or place):
        return
    if values["symbol"] is None:
        st.error("Choose a symbol to trade.")
        return
    svc = services()
    request = ticket_request(values)
    if review:
        decision = fetch(lambda: svc.risk_gate.preview(me, request, request.stop_loss))
        if decision is None:
            return  # its refusal is shown; the estimate checks the same and would repeat it
        # The figures are those of the order the gate would place (it may cut the size).
        sized = (replace(request, quantity=decision.quantity) if decision.approved
                 and 0 < decision.quantity < request.quantity else request)
        estimate = fetch(lambda: svc.orders.estimate(me, sized))
        if estimate is not None:
            show_estimate(sized, estimate, asked=request.quantity)
        show_decision(decision)
        return
    placing = replace(request, client_order_id=_client_order_id(request))
    order = fetch(lambda: svc.orders.place(me, placing))
    if order is not None:
        show_placed(order, request.quantity)
        st.session_state.pop(CLIENT_ID_KEY, None)  # answered: the next submit is a new order


def _client_order_id(request: OrderRequest) -> str:
    """Return the client order id for ``request``.

    A second click on "Place order" can interrupt the run of the first after the order was
    written but before its answer was shown; the same request then reuses the same id and the
    order manager hands back that order instead of placing another. A changed request gets a
    fresh id.
    """
    last = st.session_state.get(CLIENT_ID_KEY)
    if last is None or last[1] != request:
        last = (new_client_order_id(), request)
        st.session_state[CLIENT_ID_KEY] = last
    return str(last[0])


#: The charges as a contract note names them.
CHARGE_NAMES = {"brokerage": "Brokerage", "stt": "STT", "exchange_txn": "Exchange transaction",
                "ipft": "IPFT", "sebi_fee": "SEBI fee", "stamp_duty": "Stamp duty",
                "gst": "GST", "dp_charge": "DP charge"}


def show_estimate(request: OrderRequest, est: OrderEstimate, asked: int | None = None) -> None:
    """Show what the order would cost before it is placed.

    ``asked`` is the quantity the user asked for when the risk gate would place fewer.
    """
    cut = f" (the risk gate's size; you asked for {asked})" if (
        asked is not None and asked != request.quantity) else ""
    st.markdown(f"**Review: {request.side} {request.quantity} {est.symbol} "
                f"({request.order_type}, {request.product}){cut}**")
    cols = st.columns(5)
    cols[0].metric("LTP", rupees(est.ltp) if est.ltp is not None else "no price")
    cols[1].metric("Estimated price", rupees(est.price))
    cols[2].metric("Value", rupees(est.value))
    cols[3].metric("Charges", rupees(est.charges.total))
    cols[4].metric("Required funds", rupees(est.required_funds),
                   help=f"Available {rupees(est.available_funds)}")
    st.caption(f"Required {rupees(est.required_funds)} of available "
               f"{rupees(est.available_funds)} · market: {est.session.detail}")
    if est.shortfall > 0:
        st.warning(f"Not enough funds: the order needs {rupees(est.required_funds)} and "
                   f"{rupees(est.available_funds)} is available.")
    for warning in est.warnings:
        st.warning(warning)
    with st.expander("Charges breakdown"):
        st.dataframe(
            {"Charge": [CHARGE_NAMES[name] for name in CHARGE_FIELDS],
             "Amount [₹]": [rupees(part) for part in est.charges.shown_parts()]},
            hide_index=True, key="trade_charges")
        st.caption("Each charge to the paisa, rounded so that they add up to the charges above: "
                   "their exact sum, rounded once, which is what the order is charged.")


def show_decision(decision: PreTradeDecision) -> None:
    """Show what the risk gate would decide for the order now: one line, level, every check."""
    text = f"Risk gate ({decision.level} risk): {decision.summary()}"
    if not decision.approved:
        st.error(text, icon=":material/block:")
    elif decision.level is RiskLevel.LOW:
        st.success(text, icon=":material/verified_user:")
    else:
        st.warning(text, icon=":material/shield:")
    with st.expander("Risk checks"):
        st.dataframe(checks_frame(decision.checks), hide_index=True, key="trade_risk_checks")


def checks_frame(checks: Sequence[Check]) -> pd.DataFrame:
    """Return the gate's checks as a table: rule, layer, outcome, detail."""
    return pd.DataFrame([{"Rule": c.rule, "Layer": c.layer, "Outcome": c.outcome,
                          "Detail": c.detail} for c in checks],
                        columns=["Rule", "Layer", "Outcome", "Detail"])


def show_placed(order: Order, requested: int | None = None) -> None:
    """Say what became of a placed order; a broker rejection is an error with its reason.

    When the risk gate placed fewer shares than ``requested``, say so (Review shows why).
    """
    what = f"{order.side} {order.quantity} {order.symbol} ({order.order_type}, {order.product})"
    if order.status is OrderStatus.REJECTED:
        st.error(f"Order #{order.id} {what} was rejected: {order.rejection_reason}")
        return
    amo = " as an AMO for the next session's open" if order.amo else ""
    text = (f"Order #{order.id} {what} placed{amo}: status {order.status}. "
            "Follow it on the Orders page.")
    if requested is not None and order.quantity < requested:
        st.warning(f"{text} The risk gate reduced it from the {requested} shares requested; "
                   "Review shows each rule and its figures.", icon=":material/shield:")
    else:
        st.success(text)


@st.fragment(run_every=10)
def session_panel(me: Actor, account_id: int) -> None:
    """Show whether the account's market is open now, so the user knows when AMO is needed."""
    state = fetch(lambda: services().orders.market_session(me, account_id))
    if state is None:
        return
    text = (f"Market {'open' if state.is_open else 'closed'} · {state.detail} · trading day "
            f"{state.trading_day:%d %b %Y} · {format_ist(state.at)}")
    if state.is_open:
        st.success(text, icon=":material/radio_button_checked:")
    else:
        st.info(f"{text}. Orders placed now must be AMO (after-market orders).",
                icon=":material/schedule:")


def gtt_form(me: Actor, accounts: Sequence[Account],
             symbols: Mapping[str, Decimal | None]) -> None:
    """Render the GTT form: a single trigger, or OCO (stop-loss below, target above the LTP)."""
    labels = {a.id: a.label for a in accounts}
    kind = st.radio("GTT type", list(GTT_KINDS), format_func=GTT_KINDS.get, horizontal=True,
                    key="trade_gtt_kind")
    with st.form("trade_gtt"):
        top = st.columns(5)
        account_id = top[0].selectbox(
            "Account", list(labels), format_func=labels.get, key="trade_gtt_account")
        symbol = symbol_picker(symbols, "trade_gtt_symbol", top[1])
        product = top[2].radio("Product", [Product.CNC.value, Product.MIS.value],
                               horizontal=True, key="trade_gtt_product")
        side = _choice("Side", Side, "trade_gtt_side", top[3])
        quantity = top[4].number_input("Quantity", min_value=1, value=1, step=1,
                                       key="trade_gtt_quantity")
        prices = []
        for prefix, stem in GTT_LEGS[kind]:
            cols = st.columns(2)
            prices.append((
                _price_input(f"{prefix}trigger [₹]".capitalize(), f"{stem}_trigger", cols[0],
                             "The last price crossing this places the LIMIT order"),
                _price_input(f"{prefix}limit price [₹]".capitalize(), f"{stem}_price", cols[1],
                             "The price of the LIMIT order it places"),
            ))
        buttons = st.columns([1, 1, 4])
        review = buttons[0].form_submit_button("Review", key="trade_gtt_review",
                                               icon=":material/receipt:")
        submitted = buttons[1].form_submit_button("Create GTT", key="trade_gtt_create",
                                                  type="primary")
    if not (review or submitted):
        return
    if symbol is None or any(v is None for pair in prices for v in pair):
        st.error("Choose a symbol and give every trigger and limit price.")
        return
    legs = [GttLeg(trigger_price=to_decimal(t), side=Side(side), quantity=int(quantity),
                   price=to_decimal(p)) for t, p in prices]  # type: ignore[arg-type]
    if review:
        estimates = fetch(lambda: services().orders.review_gtt(
            me, account_id, symbol, Product(product), legs))
        if estimates is not None:
            show_gtt_review(kind, legs, estimates)
        return
    gtt = fetch(lambda: services().orders.create_gtt(me, account_id, symbol, Product(product),
                                                     legs))
    if gtt is not None:
        st.success(f"GTT #{gtt.id} on {gtt.symbol} is {gtt.status} ({gtt.kind}); it waits up to "
                   f"a year, until {format_ist(gtt.expires_at)}.")


def gtt_review_frame(kind: str, legs: Sequence[GttLeg],
                     estimates: Sequence[OrderEstimate]) -> pd.DataFrame:
    """Return one row per GTT leg: its trigger, the order it places and what that would cost."""
    names = [prefix.strip() or "Trigger" for prefix, _stem in GTT_LEGS[kind]]
    return pd.DataFrame({
        "Leg": names,
        "When the last price crosses": [rupees(leg.trigger_price) for leg in legs],
        "Places": [f"LIMIT {leg.side} {leg.quantity} at {rupees(leg.price)}" for leg in legs],
        "Value": [rupees(e.value) for e in estimates],
        "Charges": [rupees(e.charges.total) for e in estimates],
        "Funds needed": [rupees(e.required_funds) for e in estimates],
    })


def show_gtt_review(kind: str, legs: Sequence[GttLeg],
                    estimates: Sequence[OrderEstimate]) -> None:
    """Show what each leg's order would cost when its trigger places it."""
    first = estimates[0]
    st.markdown(f"**Review: GTT on {first.symbol}** (last price "
                f"{rupees(first.ltp) if first.ltp is not None else 'none'})")
    st.dataframe(gtt_review_frame(kind, legs, estimates), hide_index=True,
                 key="trade_gtt_review_table")
    one = " Only one leg of an OCO fires; the other is cancelled." if len(legs) > 1 else ""
    st.caption(f"Each order is priced at its limit price with today's charges. Available now "
               f"{rupees(first.available_funds)}; the funds and the risk gate are checked again "
               f"when the trigger places the order.{one}")
    for leg, est in zip(legs, estimates, strict=True):
        if est.shortfall > 0:
            st.warning(f"Not enough funds today for the order at {rupees(leg.price)}: it needs "
                       f"{rupees(est.required_funds)} and {rupees(est.available_funds)} is "
                       "available.")
