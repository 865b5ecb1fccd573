"""SHER: the Streamlit entry point. Config, login gate, role-filtered navigation, footer."""

import streamlit as st

from pages.auth_gate import current_actor, render_login
from pages.nav import navigation_for
from pages.sidebar import render_sidebar

st.set_page_config(page_title="SHER", page_icon=":lion:", layout="wide")

actor = current_actor()
if actor is None:
    page = st.navigation([st.Page(render_login, title="Log in", icon=":material/login:")])
else:
    render_sidebar(actor)
    page = st.navigation(navigation_for(actor.role), expanded=True)  # every page in view
page.run()
