"""Users (admins): create logins, change roles, enable/disable, reset passwords, force logout."""

import streamlit as st

from core import authz
from core.domain import Relationship, Role
from core.services.views import member_labels, users_table
from pages.common import actor, attempt, fetch, footer, services
from pages.trading_parts import flash, show_flash

FLASH = "users_flash"

me = actor()
svc = services()
st.title("Users")
show_flash(FLASH)  # after a change, the page reruns: the table and the picker show it
users = fetch(lambda: svc.users.list_users(me)) or []
# Members without a login: a new login (or one without a member) may be linked to one of them.
loose = member_labels([m for m in fetch(lambda: svc.household.list_members(me)) or []
                       if m.user_id is None])
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
    # One picker: no member, an existing member without a login, or a new member.
    whose: dict[str, str] = {"": "(no member)"}
    whose |= {f"member:{i}": f"Existing member: {label}" for i, label in loose.items()}
    whose |= {f"new:{r.value}": f"New member: {r.value}" for r in Relationship}
    pick = c2.selectbox("Household member", list(whose), format_func=whose.get,
                        key="users_new_rel")
    kind, _, value = pick.partition(":")
    if st.form_submit_button("Create login") and attempt(
        lambda: svc.users.create_user(
            me,
            username,
            name,
            password,
            role,
            relationship=value if kind == "new" else None,
            email=email,
            member_id=int(value) if kind == "member" else None,
        )
    ):
        flash(FLASH, f"Created {username}.")

if users:
    names = {u.id: f"{u.username} ({u.role.value})" for u in users}
    st.markdown("**Change a login** (its sessions end, so changes apply at once)")
    target = st.selectbox("User", list(names), format_func=names.get, key="users_target")
    chosen = next(u for u in users if u.id == target)
    current = chosen.role.value
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
    if loose and chosen.member_id is None:
        with st.form("users_link"):
            member = st.selectbox("Link this login to a member without one", list(loose),
                                  format_func=loose.get, key=f"users_link_member_{target}")
            if st.form_submit_button("Link login") and attempt(
                    lambda: svc.household.link_login(me, member, target)):
                done = f"Linked the login {chosen.username} to {loose[member]}."
    if done is not None:
        st.session_state.pop("users_target_pw", None)  # a typed password does not linger
        flash(FLASH, done)

st.markdown("**Force log-out**")
st.caption("Ends every active session in the household, including yours.")
if st.button("Log everyone out now", key="users_force_logout", type="primary"):
    attempt(lambda: svc.users.force_logout_all(me), "Everyone was logged out.")
    st.rerun()

footer()
