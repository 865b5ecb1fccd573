"""Users (admins): create logins, change roles, enable/disable, reset passwords, force logout."""

import streamlit as st

from core import authz
from core.domain import Relationship, Role
from core.services.views import users_table
from pages.common import actor, attempt, fetch, footer, services
from pages.trading_parts import flash, show_flash

FLASH = "users_flash"

me = actor()
svc = services()
st.title("Users")
show_flash(FLASH)  # after a change, the page reruns: the table and the picker show it
users = fetch(lambda: svc.users.list_users(me)) or []
st.dataframe(users_table(users), hide_index=True, key="users_table")
roles = [r.value for r in Role if authz.may_assign_role(me.role, r)]  # the service decides too

with st.form("users_create", clear_on_submit=True):
    st.markdown("**New login**")
    c1, c2 = st.columns(2)
    username = c1.text_input("Username", key="users_new_username")
    name = c2.text_input("Display name", key="users_new_name")
    password = c1.text_input("Initial password", type="password", key="users_new_password")
    email = c2.text_input("Email (optional)", key="users_new_email")
    role = c1.selectbox(
        "Role", roles, index=roles.index(Role.FAMILY_MEMBER.value), key="users_new_role"
    )
    rel = c2.selectbox(
        "Relationship (creates the household member)",
        ["(no member)"] + [r.value for r in Relationship],
        key="users_new_rel",
    )
    if st.form_submit_button("Create login") and attempt(
        lambda: svc.users.create_user(
            me,
            username,
            name,
            password,
            role,
            relationship=None if rel == "(no member)" else rel,
            email=email,
        )
    ):
        flash(FLASH, f"Created {username}.")

if users:
    names = {u.id: f"{u.username} ({u.role.value})" for u in users}
    st.markdown("**Change a login** (its sessions end, so changes apply at once)")
    target = st.selectbox("User", list(names), format_func=names.get, key="users_target")
    current = next(u.role.value for u in users if u.id == target)
    # The picker starts at the user's role (one per user), so an unchanged click changes nothing.
    options = [r.value for r in Role if r.value in roles or r.value == current]
    with st.form("users_change"):
        new_role = st.selectbox("Role", options, index=options.index(current),
                                key=f"users_target_role_{target}")
        new_password = st.text_input("New password", type="password", key="users_target_pw")
        changes = (
            ("Set role", lambda: svc.users.set_role(me, target, new_role), "Role changed."),
            ("Reset password", lambda: svc.users.reset_password(me, target, new_password),
             "Password reset; their sessions ended."),
            ("Disable", lambda: svc.users.set_active(me, target, False), "Login disabled."),
            ("Enable", lambda: svc.users.set_active(me, target, True), "Login enabled."),
        )
        done = None
        for column, (label, change, message) in zip(st.columns(4), changes, strict=True):
            if column.form_submit_button(label) and attempt(change):
                done = message
    if done is not None:
        st.session_state.pop("users_target_pw", None)  # a typed password does not linger
        flash(FLASH, done)

st.markdown("**Force log-out**")
st.caption("Ends every active session in the household, including yours.")
if st.button("Log everyone out now", key="users_force_logout", type="primary"):
    attempt(lambda: svc.users.force_logout_all(me), "Everyone was logged out.")
    st.rerun()

footer()
