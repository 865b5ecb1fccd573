"""Funds & statements: money per account and for the family, statement CSVs, paper top-ups
and withdrawals."""

import streamlit as st

from core.money import parse_rupees
from pages.common import actor, attempt, fetch, footer, services
from pages.funds_parts import (
    add_funds_form,
    family_funds,
    funds_metrics,
    statement_period,
    statements,
    withdraw_funds_form,
)
from pages.trading_parts import flash, pick_account, rupees, show_flash, viewable_accounts

FLASH = "funds_flash"

me = actor()
svc = services()
pf = svc.portfolio
st.title("Funds & statements")
show_flash(FLASH)
accounts = viewable_accounts(me, include_closed=True)  # closed: statements
account_id = pick_account(accounts, "funds_account")

if account_id is None:
    family_funds(me)
else:
    funds = fetch(lambda: pf.funds(me, account_id))
    if funds is not None:
        funds_metrics(funds)
        st.caption(f"Cash {rupees(funds.cash)} = deposits + realized P&L − charges − cost of "
                   "open delivery shares; available = cash − used margin. All charges to date: "
                   f"{rupees(funds.charges_total)}.")

st.subheader("Statements")
st.caption("Dates are trading days in India (IST). Whole family: every account you may view, "
           "closed ones included (their trades were real money).")
period = statement_period()
if period is not None:
    statements(me, account_id, *period)

managed = [a for a in accounts if a.can_manage and a.is_active]
if managed:
    st.subheader("Paper funds")
    labels = {a.id: a.label for a in managed}
    tab_add, tab_withdraw = st.tabs(["Add funds", "Withdraw funds"], key="funds_tab",
                                     on_change="rerun")
    with tab_add:  # a refusal shows in its tab, beside the form
        added = add_funds_form(managed)
        if added is not None:
            target, amount, note = added
            if attempt(lambda: pf.add_funds(me, target, amount, note)):
                flash(FLASH, f"Added {rupees(parse_rupees(amount))} of paper funds to "
                      f"{labels[target]}.")
    with tab_withdraw:
        taken = withdraw_funds_form(managed)
        if taken is not None:
            source, out, why = taken
            if attempt(lambda: pf.withdraw_funds(me, source, out, why)):
                flash(FLASH, f"Withdrew {rupees(parse_rupees(out))} of paper funds from "
                      f"{labels[source]}.")
footer()
