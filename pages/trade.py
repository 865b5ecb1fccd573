"""Trade: a quick order ticket (review the charges and funds, then place) and a GTT form."""

import streamlit as st

from core import authz
from pages.common import actor, fetch, footer, services
from pages.trade_parts import gtt_form, order_ticket, session_panel

me = actor()
svc = services()
st.title("Trade")
if me.role not in authz.ACTING_ROLES:
    # The navigation hides this page from viewers; this is for a direct link. The service
    # refuses their orders anyway.
    st.error(f"Your role ({me.role.value}) may view accounts but not trade. A household admin "
             "can change your role on the Users page.")
    footer()
    st.stop()

accounts = fetch(lambda: svc.orders.tradable_accounts(me))
symbols = fetch(lambda: svc.orders.symbols(me)) or {}
if not accounts:
    if accounts is not None:
        st.info("You have no account you may trade: trade on your own open accounts or on "
                "accounts whose owner granted you trade access (Household & Accounts).")
    footer()
    st.stop()
if not symbols:
    st.info("No instruments are stored yet. A household admin can import them on Import data.")
    footer()
    st.stop()

session_panel(me, st.session_state.get("trade_account") or accounts[0].id)
tab_order, tab_gtt = st.tabs(["Order", "GTT"], key="trade_tab", on_change="rerun")
with tab_order:
    order_ticket(me, accounts, symbols)
with tab_gtt:
    st.caption("A GTT waits up to a year for the last price to cross its trigger, then places "
               "a LIMIT order. OCO: a stop-loss trigger below and a target above the last "
               "price; the first to fire cancels the other.")
    gtt_form(me, accounts, symbols)
footer()
