"""The Users and Household & Accounts pages through AppTest: members, logins, tabs and flashes."""

from __future__ import annotations

from core.domain import Actor
from tests.conftest import TEST_CLIENT
from tests.support.apptest import app_as, open_tab_index, page, texts

PASSWORD = "Goodpass-456!"


def _rahul(desk, at) -> Actor:  # type: ignore[no-untyped-def]
    svc, _ = desk
    return svc.auth.check_session(at.session_state["sher_session_id"], TEST_CLIENT)


def test_a_new_login_is_created_for_a_member_who_exists_without_a_second_member(desk) -> None:
    svc, _ = desk
    at = app_as(desk, "rahul")
    rahul = _rahul(desk, at)
    ramesh = svc.household.add_member(rahul, "Ramesh Sharma", "parent")
    before = len(svc.household.list_members(rahul))
    at.switch_page(page("pages/users.py")).run()
    picker = at.selectbox(key="users_new_rel")
    assert picker.format_func(f"member:{ramesh.id}") == (
        "Existing member: Ramesh Sharma (parent, no login)")
    assert "member:" + str(rahul.member_id) not in picker.options  # rahul has a login
    at.text_input(key="users_new_username").input("ramesh")
    at.text_input(key="users_new_name").input("Ramesh Sharma")
    at.text_input(key="users_new_password").input(PASSWORD)
    picker.set_value(f"member:{ramesh.id}")
    next(b for b in at.button if b.label == "Create login").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Created ramesh." in texts(at)
    members = svc.household.list_members(rahul)
    assert len(members) == before
    assert next(m for m in members if m.id == ramesh.id).username == "ramesh"


def test_an_existing_login_without_a_member_is_linked_on_the_users_page(desk) -> None:
    svc, _ = desk
    at = app_as(desk, "rahul")
    rahul = _rahul(desk, at)
    ramesh = svc.household.add_member(rahul, "Ramesh Sharma", "parent")
    user = svc.users.create_user(rahul, "ramesh", "Ramesh Sharma", PASSWORD, "family_member")
    at.switch_page(page("pages/users.py")).run()
    assert not [s for s in at.selectbox if s.key.startswith("users_link_member_")]
    at.selectbox(key="users_target").set_value(user.id).run()
    link = at.selectbox(key=f"users_link_member_{user.id}")
    assert link.options == ["Ramesh Sharma (parent, no login)"]
    next(b for b in at.button if b.label == "Link login").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Linked the login ramesh to Ramesh Sharma (parent, no login)." in texts(at)
    assert next(m for m in svc.household.list_members(rahul)
                if m.id == ramesh.id).username == "ramesh"
    assert not [s for s in at.selectbox if s.key.startswith("users_link_member_")]


def test_a_member_added_twice_is_refused_and_the_pickers_tell_members_apart(desk) -> None:
    svc, _ = desk
    at = app_as(desk, "rahul")
    rahul = _rahul(desk, at)
    svc.users.create_user(rahul, "anaya", "Anaya Sharma", PASSWORD, "viewer",
                          relationship="child")
    at.switch_page(page("pages/household.py")).run()
    at.text_input(key="household_member_name").input("  anaya   SHARMA ")
    at.selectbox(key="household_member_rel").set_value("child")
    next(b for b in at.button if b.label == "Add member").click().run()
    assert not at.exception
    assert "Added" not in texts(at)
    assert [e.value for e in at.error] == [
        "The household already has the member Anaya Sharma (child, login anaya); a second "
        "member with the same name and relationship is refused. To give them a login, pick "
        "them under 'Household member' on Users"]
    for key in ("household_consent_member", "household_grant_member",
                "household_account_owner"):
        options = at.selectbox(key=key).options
        assert len(options) == len(set(options)), key
        assert "Anaya Sharma (child, login anaya)" in options, key
    assert "Aarav Sharma (child, login aarav)" in at.selectbox(key="household_grant_member").options


def test_an_action_on_the_grants_tab_keeps_the_page_on_that_tab_with_its_message(desk) -> None:
    svc, _ = desk
    at = app_as(desk, "rahul")
    rahul = _rahul(desk, at)
    at.switch_page(page("pages/household.py"))
    at.session_state["household_tab"] = "Grants"  # the admin opened the Grants tab
    at.run()
    ids = {a.label: a.id for a in svc.household.list_accounts(rahul)}
    aarav = next(m.id for m in svc.household.list_members(rahul) if m.username == "aarav")
    at.selectbox(key="household_grant_account").set_value(ids["Rahul · Long-term"])
    at.selectbox(key="household_grant_member").set_value(aarav)
    next(b for b in at.button if b.label == "Revoke").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.session_state["household_tab"] == "Grants"
    assert open_tab_index(at) == 2  # the browser stays there
    members, accounts, grants = at.tabs
    assert [s.value for s in grants.success] == ["Access revoked."]
    assert not members.success and not accounts.success
    assert "Aarav Sharma" not in list(grants.dataframe[0].value["member"])


def test_opening_an_account_keeps_the_page_on_the_accounts_tab_with_its_message(desk) -> None:
    at = app_as(desk, "rahul")
    at.switch_page(page("pages/household.py"))
    at.session_state["household_tab"] = "Accounts"
    at.run()
    at.text_input(key="household_account_label").input("Rahul · Options")
    next(b for b in at.button if b.label == "Open account").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert open_tab_index(at) == 1
    members, accounts, grants = at.tabs
    assert [s.value for s in accounts.success] == ["Opened Rahul · Options."]
    assert not members.success and not grants.success


def test_the_audit_log_page_shows_a_devanagari_name_as_typed(desk) -> None:
    svc, _ = desk
    at = app_as(desk, "rahul")
    svc.household.add_member(_rahul(desk, at), "अनाया शर्मा", "child")
    at.switch_page(page("pages/audit_log.py")).run()
    assert not at.exception
    table = next(f.value for f in at.dataframe if "details" in f.value.columns)
    added = table[table["action"] == "members.add"]["details"]
    assert list(added) == ['{"name":"अनाया शर्मा","relationship":"child"}']
