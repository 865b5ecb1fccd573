"""Portfolio: the whole family's P&L by account, then positions and holdings per account."""

import streamlit as st

from core.domain import Actor, Permission
from pages.common import actor, fetch, footer, services
from pages.trading_parts import (
    WHOLE_FAMILY,
    flash,
    pick_account,
    show_flash,
    table,
    viewable_accounts,
)

FLASH = "portfolio_flash"
me = actor()
st.title("Portfolio")
show_flash(FLASH)
accounts = viewable_accounts(me, include_closed=True)  # as the family table
account_id = pick_account(accounts, "portfolio_account", label="Show",
                          help_text="Pick an account to drill down into its positions and holdings")


@st.fragment(run_every=5)
def portfolio(me: Actor, account_id: int | None) -> None:
    """P&L, positions and holdings at the latest prices, refreshed every 5 seconds."""
    pf = services().portfolio
    if account_id is None:
        st.subheader(WHOLE_FAMILY)
        family = fetch(lambda: pf.family_frame(me))
        table(family, "portfolio_family", "family_pnl", "No accounts to sum up.")
        st.caption("Pick an account under Show to drill down into its positions and holdings.")
    st.subheader("Positions")
    positions = fetch(lambda: pf.positions_frame(me, account_id))
    table(positions, "portfolio_positions", "positions", "No positions: nothing traded today "
          "and no open intraday or unsettled delivery quantity.")
    st.subheader("Holdings")
    holdings = fetch(lambda: pf.holdings_frame(me, account_id))
    table(holdings, "portfolio_holdings", "holdings", "No holdings: delivery (CNC) buys "
          "settle into holdings on T+1.")
    unpriced = fetch(lambda: pf.unpriced(me, account_id))
    if unpriced:
        st.warning(f"No price for {', '.join(unpriced)}: neither the feed nor a stored daily "
                   "close prices it, so its rows show no LTP or unrealized P&L and its open "
                   "value counts at cost.")
    st.caption("Price as of (IST): when each LTP was quoted today; a price from an older quote "
               "or from a stored daily close is named as such, with its date.")


portfolio(me, account_id)

tradable = {a.id for a in accounts if a.my_permission is Permission.TRADE and a.is_active}
if account_id in tradable:
    with st.form("portfolio_square_off"):
        st.caption("Intraday (MIS) positions must be closed by the end of the day. This cancels "
                   "the account's open MIS orders and closes every MIS position at market.")
        if st.form_submit_button("Square off intraday positions", key="portfolio_square_off_go"):
            placed = fetch(lambda: services().orders.square_off_intraday(me, account_id))
            if placed is not None:
                flash(FLASH, f"Square-off sent {len(placed)} order(s): "
                      + (", ".join(f"{o.side.value} {o.quantity} {o.symbol}" for o in placed)
                         or "no open intraday positions"))
footer()
