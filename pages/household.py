"""Household & Accounts: members (consent, verification), accounts, per-account grants."""

import streamlit as st

from core import authz
from core.domain import Permission, Relationship, VerificationStatus
from core.services.views import accounts_table, grants_table, member_labels, members_table
from pages.common import actor, attempt, fetch, footer, services
from pages.trading_parts import flash, show_flash

# One message key per tab: an action's message shows in the tab it was taken in.
FLASH_MEMBERS, FLASH_ACCOUNTS, FLASH_GRANTS = (
    "household_flash_members", "household_flash_accounts", "household_flash_grants")

me = actor()
svc = services()
hh = svc.household
manager = me.role in authz.HOUSEHOLD_MANAGERS
st.title("Household & Accounts")
members = fetch(lambda: hh.list_members(me)) or []
accounts = fetch(lambda: hh.list_accounts(me, include_closed=True)) or []
member_names = member_labels(members)
# Keyed and tracked: after an action the page reruns on the tab it was taken in (untracked
# tabs went back to Members whenever a message above them moved them down the page).
tab_members, tab_accounts, tab_grants = st.tabs(
    ["Members", "Accounts", "Grants"], key="household_tab", on_change="rerun")

with tab_members:
    show_flash(FLASH_MEMBERS)  # after a change, the page reruns: every table and picker shows it
    st.dataframe(members_table(members), hide_index=True, key="household_members")
    if manager:
        with st.form("household_add_member", clear_on_submit=True):
            st.markdown("**Add a member** (a person; give them a login on the Users page)")
            name = st.text_input("Full name", key="household_member_name")
            # "self" is the household head's relationship: last, not the default.
            kinds = [r.value for r in Relationship if r is not Relationship.SELF] + ["self"]
            rel = st.selectbox("Relationship (to the household head)", kinds,
                               key="household_member_rel")
            if st.form_submit_button("Add member") and attempt(
                    lambda: hh.add_member(me, name, rel)):
                flash(FLASH_MEMBERS, f"Added {name}.")
        with st.form("household_consent", clear_on_submit=True):
            st.markdown("**Record consent or verification**")
            target = st.selectbox(
                "Member",
                list(member_names),
                format_func=member_names.get,
                key="household_consent_member",
            )
            note = st.text_input("How consent was given", key="household_consent_note")
            status = st.selectbox(
                "Verification", [v.value for v in VerificationStatus], key="household_verify_status"
            )
            c1, c2 = st.columns(2)
            if c1.form_submit_button("Record consent") and attempt(
                    lambda: hh.record_consent(me, target, note)):
                flash(FLASH_MEMBERS, "Consent recorded.")
            if c2.form_submit_button("Set verification") and attempt(
                    lambda: hh.set_verification(me, target, status)):
                flash(FLASH_MEMBERS, "Verification set.")

with tab_accounts:
    show_flash(FLASH_ACCOUNTS)
    if accounts:
        st.dataframe(accounts_table(accounts), hide_index=True, key="household_accounts")
    else:
        st.info("No accounts visible to you yet.")
    owners = member_labels(hh.account_owner_options(me))
    if owners:
        with st.form("household_new_account", clear_on_submit=True):
            st.markdown("**Open a paper account**")
            owner = st.selectbox(
                "Owner", list(owners), format_func=owners.get, key="household_account_owner"
            )
            label = st.text_input("Label", key="household_account_label")
            group = st.text_input("Group", value="Trading", key="household_account_group")
            if st.form_submit_button("Open account") and attempt(
                    lambda: hh.create_account(me, owner, label, group)):
                flash(FLASH_ACCOUNTS, f"Opened {label}.")
    managed = [a for a in accounts if a.can_manage]
    if managed:
        labels = {a.id: a.label for a in managed}
        st.markdown("**Rename, regroup, close or reopen an account**")
        # Outside the form, so picking another account reruns and the fields below show its
        # values (keyed by account); inside, they kept the first account's, and Save wrote
        # them onto the one picked.
        acc_id = st.selectbox(
            "Account", list(labels), format_func=labels.get, key="household_edit_account"
        )
        acc = next(a for a in managed if a.id == acc_id)
        with st.form("household_edit_account_form"):
            new_label = st.text_input("Label", value=acc.label,
                                      key=f"household_edit_label_{acc_id}")
            new_group = st.text_input("Group", value=acc.group,
                                      key=f"household_edit_group_{acc_id}")
            active = st.checkbox("Open", value=acc.is_active,
                                 key=f"household_edit_active_{acc_id}")
            if st.form_submit_button("Save") and attempt(
                    lambda: hh.update_account(me, acc_id, new_label, new_group, active)):
                flash(FLASH_ACCOUNTS, "Account saved.")

with tab_grants:
    show_flash(FLASH_GRANTS)
    grants = fetch(lambda: hh.list_grants(me)) or []
    if grants:
        st.dataframe(grants_table(grants), hide_index=True, key="household_grants")
    else:
        st.info("No grants you can see. Owners and admins grant view or trade access here.")
    if managed:
        labels = {a.id: a.label for a in managed}
        with st.form("household_grant"):
            st.markdown("**Grant or revoke access to an account**")
            acc_id = st.selectbox(
                "Account", list(labels), format_func=labels.get, key="household_grant_account"
            )
            member = st.selectbox(
                "Member",
                list(member_names),
                format_func=member_names.get,
                key="household_grant_member",
            )
            perm = st.radio(
                "Access", [p.value for p in Permission], horizontal=True, key="household_grant_perm"
            )
            c1, c2 = st.columns(2)
            if c1.form_submit_button("Grant") and attempt(
                    lambda: hh.grant(me, acc_id, member, perm)):
                flash(FLASH_GRANTS, "Access granted.")
            if c2.form_submit_button("Revoke") and attempt(
                    lambda: hh.revoke(me, acc_id, member)):
                flash(FLASH_GRANTS, "Access revoked.")

footer()
