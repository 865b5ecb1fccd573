"""Risk: today's usage of the limits, the limits form, position controls, states and re-enable,
panic buttons (each with a confirmation step), recent risk alerts.

"Whole family" shows the household: its default limits, every state, household and strategy
panic. The risk service checks every right again; hiding a control here is only a courtesy.
"""

import streamlit as st

from core import authz
from core.domain import Permission
from pages.common import actor, footer
from pages.risk_mtm import mtm_section
from pages.risk_parts import (
    FLASH,
    alerts_section,
    controls_section,
    limits_section,
    panic_section,
    states_section,
    usage_panel,
)
from pages.trading_parts import pick_account, show_flash, viewable_accounts

me = actor()
st.title("Risk")
show_flash(FLASH)
accounts = viewable_accounts(me)
account_id = pick_account(accounts, "risk_account", label="Show",
                          help_text="Whole family: household defaults, every state, household "
                                    "and strategy panic. An account: its usage and limits.")
account = next((a for a in accounts if a.id == account_id), None)
labels = {a.id: a.label for a in accounts}
admin = me.role in authz.USER_MANAGERS
tradable = {a.id for a in accounts if a.my_permission is Permission.TRADE}
may_trade = account_id in tradable

if account is None:
    st.caption("Pick an account under Show to see today's usage of its limits.")
else:
    usage_panel(me, account.id)

tab_states, tab_limits, tab_controls, tab_mtm, tab_alerts = st.tabs(
    ["States & panic", "Limits", "Position controls", "MTM limits", "Alerts"], key="risk_tab",
    on_change="rerun")
with tab_states:
    if admin or tradable:
        panic_section(me, account, labels, admin=admin, may_trade=may_trade,
                      strategy_ok=admin or bool(tradable))
    states_section(me, account_id, labels)
with tab_limits:
    limits_section(me, account, may_edit=admin or may_trade)
with tab_controls:
    if account is None:
        st.caption("Pick an account under Show to see and set its position controls.")
    else:
        controls_section(me, account, may_trade)
with tab_mtm:
    mtm_section(me, admin=admin, may_trade=bool(tradable), flash_key=FLASH)
with tab_alerts:
    alerts_section(me)
footer()
