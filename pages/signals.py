"""Signals: generate one, scan the universe, open a signal, past performance, the model."""

import streamlit as st

from core import authz
from core.services.signal_views import versions_frame
from pages.common import actor, fetch, footer, services
from pages.signals_parts import (
    FLASH,
    TRACE,
    admin_section,
    detail,
    model_banner,
    performance_section,
    scan_section,
)
from pages.trading_parts import show_flash, table

me = actor()
svc = services()
st.title("Signals")
show_flash(FLASH)
in_use = model_banner(fetch(lambda: svc.models.state(me)))

tab_signal, tab_scan, tab_perf, tab_model = st.tabs(
    ["Signal", "Scan", "Past performance", "Model"], key="signals_tab", on_change="rerun")
with tab_signal:
    symbols = fetch(lambda: svc.signals.symbols(me)) or []
    with st.form("signals_generate"):
        symbol = st.selectbox("Symbol", symbols, index=None, key="signals_symbol",
                              placeholder="Type to search the desk's symbols")
        generate = st.form_submit_button("Generate signal", key="signals_generate_button")
    if generate and symbol:
        signal = fetch(lambda: svc.signals.generate(me, symbol))
        if signal is not None:
            st.session_state[TRACE] = signal.trace_id
    elif generate:
        st.warning("Pick a symbol first.")
    trace_id = st.session_state.get(TRACE)
    if trace_id:
        detail(me, trace_id, in_use, "signals_detail")
    else:
        st.caption("Generate a signal for one symbol, or open one from the scan.")

with tab_scan:
    scan_section(me, in_use)

with tab_perf:
    performance_section(me, in_use)

with tab_model:
    versions = fetch(lambda: svc.models.versions(me)) or []
    table(versions_frame(versions), "signals_versions", "signal_models",
          "No model is registered yet.")
    if me.role in authz.USER_MANAGERS:
        admin_section(me, versions)
    else:
        st.caption("Training and activating models is for household admins.")
footer()
