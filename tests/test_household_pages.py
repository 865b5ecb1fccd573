"""The Users and Household & Accounts pages through AppTest: members, logins, tabs and flashes."""

from __future__ import annotations

from core.domain import Actor
from tests.conftest import TEST_CLIENT
from tests.support.apptest import app_as, page, texts

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
        "Ramesh Sharma (parent): existing member, no login")
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
    assert link.options == ["Ramesh Sharma (parent)"]
    next(b for b in at.button if b.label == "Link login").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Linked the login ramesh to Ramesh Sharma (parent)." in texts(at)
    assert next(m for m in svc.household.list_members(rahul)
                if m.id == ramesh.id).username == "ramesh"
    assert not [s for s in at.selectbox if s.key.startswith("users_link_member_")]
