"""Orders: the live order book with modify and cancel, the trade book, GTTs with cancel."""

import streamlit as st

from core.domain import Actor
from pages.common import actor, attempt, fetch, footer, services
from pages.orders_parts import cancel_gtt_form, change_order_form
from pages.trading_parts import flash, pick_account, show_flash, table

FLASH = "orders_flash"

me = actor()
svc = services()
st.title("Orders")
show_flash(FLASH)
accounts = fetch(lambda: svc.portfolio.accounts(me)) or []  # closed ones too: their history
account_id = pick_account(accounts, "orders_account", label="Accounts")
tradable = {a.id for a in fetch(lambda: svc.orders.tradable_accounts(me)) or []}


@st.fragment(run_every=2)
def order_book(me: Actor, account_id: int | None) -> None:
    """The order book, refreshed every 2 seconds (fills arrive from the worker)."""
    open_only = st.toggle("Open orders only", key="orders_open_only")
    frame = fetch(lambda: services().orders.order_book_frame(me, account_id, open_only))
    table(frame, "orders_book", "order_book", "No orders yet. Place one on the Trade page.")


tab_orders, tab_trades, tab_gtts = st.tabs(["Order book", "Trade book", "GTT"], key="orders_tab",
                                           on_change="rerun")
with tab_orders:
    order_book(me, account_id)
    open_orders = fetch(lambda: svc.orders.order_book(me, account_id, open_only=True)) or []
    mine = [o for o in open_orders if o.account_id in tradable]
    if mine:
        change = change_order_form(mine)
        if change is not None:
            action, order_id, values = change
            if action == "cancel" and attempt(lambda: svc.orders.cancel(me, order_id)):
                flash(FLASH, f"Order #{order_id} cancelled.")
            if action == "modify" and attempt(lambda: svc.orders.modify(me, order_id, **values)):
                flash(FLASH, f"Order #{order_id} modified.")
    elif open_orders:
        st.caption("Open orders here belong to accounts you may view but not trade.")

with tab_trades:
    cols = st.columns(2)
    start = cols[0].date_input("From", value=None, key="orders_trades_from",
                               help="Empty: from the first trade")
    end = cols[1].date_input("To", value=None, key="orders_trades_to",
                             help="Empty: up to today")
    trades = fetch(lambda: svc.orders.trade_book_frame(me, account_id, start, end))
    table(trades, "orders_trades", "trade_book", "No trades in this range.")

with tab_gtts:
    gtts = fetch(lambda: svc.orders.gtt_frame(me, account_id))
    table(gtts, "orders_gtts", "gtt", "No GTTs. Create one on the Trade page.")
    active = fetch(lambda: svc.orders.gtts(me, account_id, active_only=True)) or []
    gtt_id = cancel_gtt_form([g for g in active if g.account_id in tradable])
    if gtt_id is not None and attempt(lambda: svc.orders.cancel_gtt(me, gtt_id)):
        flash(FLASH, f"GTT #{gtt_id} cancelled.")
footer()
