"""Dashboard: the household at a glance, from real data, with honest empty states."""

import streamlit as st

from core.clock import format_ist, market_state
from core.errors import ConfigError
from core.services.views import accounts_table
from pages.common import actor, fetch, footer, services

me = actor()
svc = services()
household = svc.household.household(me)
st.title(f"Dashboard · {household.name}")
st.caption(f"Welcome, {me.display_name}.")

accounts = fetch(lambda: svc.household.list_accounts(me)) or []
members = fetch(lambda: svc.household.list_members(me)) or []
tradeable = [a for a in accounts if a.my_permission and a.my_permission.value == "trade"]
cols = st.columns(5)
cols[0].metric("Household members", len(members))
cols[1].metric("Accounts you can see", len(accounts))
cols[2].metric("Accounts you can trade", len(tradeable))
try:
    state = market_state()
    cols[3].metric("NSE market", state.status.value, help=state.detail)
    st.caption(f"{format_ist(state.at)} · NSE: {state.detail}")
except ConfigError as exc:
    cols[3].metric("NSE market", "unknown")
    st.warning(str(exc))
# Where orders go: the paper desk trades the feed's prices, which in the demo replay sample
# days whatever the calendar says; both states are shown so neither looks wrong.
desk = fetch(lambda: svc.orders.market_session(me, accounts[0].id)) if accounts else None
if desk is not None:
    cols[4].metric("Paper desk", "open" if desk.is_open else "closed", help=desk.detail)
    st.caption(f"Paper desk: {desk.detail}")

st.subheader("Your accounts")
if accounts:
    st.dataframe(accounts_table(accounts), hide_index=True, key="dashboard_accounts")
elif me.member_id is None:  # a login of no member: no account can be opened or granted to it
    st.info(
        "No accounts are visible to you yet: your login is not linked to a household member, "
        "and accounts belong to members and are granted to them. A household admin links your "
        "login to a member on the Users page."
    )
else:
    st.info(
        "No accounts are visible to you yet. The account's owner or a household admin "
        "can open one or grant you access on Household & Accounts."
    )

st.subheader("Your recent activity")
activity = svc.audit.my_activity(me)
if activity.empty:
    st.info("No activity recorded for you yet.")
else:
    st.dataframe(activity, hide_index=True, key="dashboard_activity")

footer()
