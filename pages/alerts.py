"""Alerts: connect Telegram (one-time code, unlink), my alert settings (per type on/silent/off,
do not disturb, daily summary, signal threshold), recent alerts with each recipient's delivery,
and the household's bot (admins).

Every member sees their own parts. The Telegram service checks every right again; hiding the
bot's form from other roles is only a courtesy.
"""

import streamlit as st

from core import authz
from pages.alerts_parts import (
    FLASH,
    bot_section,
    channel_notice,
    connect_section,
    recent_section,
    settings_section,
)
from pages.common import actor, fetch, footer, services
from pages.trading_parts import show_flash

me = actor()
st.title("Alerts")
show_flash(FLASH)
channel_notice()
accounts = fetch(lambda: services().household.list_accounts(me, include_closed=True)) or []
labels = {a.id: a.label for a in accounts}
admin = me.role in authz.HOUSEHOLD_MANAGERS

names = ["Connect Telegram", "My alert settings", "Recent alerts"]
tabs = st.tabs([*names, "Bot"] if admin else names, key="alerts_tab", on_change="rerun")
with tabs[0]:
    connect_section(me)
with tabs[1]:
    settings_section(me)
with tabs[2]:
    recent_section(me, labels)
if admin:
    with tabs[3]:
        bot_section(me)
footer()
