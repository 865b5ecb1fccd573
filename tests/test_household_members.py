"""Household members and logins: linking a login to an existing member, refusing duplicates."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from sqlalchemy import select

from core.domain import Actor, Member
from core.errors import PermissionDenied, ValidationError
from core.services import Services
from db.models import AuditRow, UserRow
from tests.conftest import TEST_CLIENT

PASSWORD = "Goodpass-456!"


def _actions(services: Services, action: str) -> list[AuditRow]:
    with services.db.transaction() as session:
        rows = session.scalars(select(AuditRow).where(AuditRow.action == action)
                               .order_by(AuditRow.id)).all()
        session.expunge_all()
        return list(rows)


def _as(services: Services, username: str, password: str = PASSWORD) -> Actor:
    result = services.auth.login(username, password, TEST_CLIENT)
    assert result.session_id is not None
    return services.auth.check_session(result.session_id, TEST_CLIENT)


def _ramesh_with_pension(services: Services, rahul: Actor) -> Member:
    """Add Ramesh (parent, no login) with his own account, as the QA pass did."""
    ramesh = services.household.add_member(rahul, "Ramesh Sharma", "parent")
    services.household.create_account(rahul, ramesh.id, "Ramesh · Pension", "Long-term")
    return ramesh


def test_a_new_login_can_belong_to_a_member_who_already_exists(
    services: Services, login: Callable[[str], Actor]
) -> None:
    rahul = login("rahul")
    hh = services.household
    ramesh = _ramesh_with_pension(services, rahul)
    before = len(hh.list_members(rahul))
    user = services.users.create_user(rahul, "ramesh", "Ramesh Sharma", PASSWORD,
                                      "family_member", member_id=ramesh.id)
    assert user.member_id == ramesh.id
    assert len(hh.list_members(rahul)) == before  # no second Ramesh
    linked = next(m for m in hh.list_members(rahul) if m.id == ramesh.id)
    assert linked.username == "ramesh"
    me = _as(services, "ramesh")
    assert me.member_id == ramesh.id
    assert [a.label for a in hh.list_accounts(me)] == ["Ramesh · Pension"]  # he sees his pension
    assert json.loads(_actions(services, "users.create")[-1].details)["member_id"] == ramesh.id


def test_a_login_without_a_member_is_linked_to_a_member_without_a_login_and_audited(
    services: Services, login: Callable[[str], Actor]
) -> None:
    rahul = login("rahul")
    hh = services.household
    ramesh = _ramesh_with_pension(services, rahul)
    user = services.users.create_user(rahul, "ramesh", "Ramesh Sharma", PASSWORD,
                                      "family_member")
    assert user.member_id is None
    assert hh.list_accounts(_as(services, "ramesh")) == []  # the dead end the QA pass met
    member = hh.link_login(rahul, ramesh.id, user.id)
    assert (member.user_id, member.username) == (user.id, "ramesh")
    assert [a.label for a in hh.list_accounts(_as(services, "ramesh"))] == ["Ramesh · Pension"]
    row = _actions(services, "members.link_login")[-1]
    assert (row.actor_username, row.resource, row.outcome) == ("rahul", f"member:{ramesh.id}",
                                                                "ok")
    assert json.loads(row.details) == {"name": "Ramesh Sharma", "user": "ramesh"}


def test_a_member_has_at_most_one_login_and_a_login_at_most_one_member(
    services: Services, login: Callable[[str], Actor]
) -> None:
    rahul = login("rahul")
    hh, users = services.household, services.users
    members = {m.username: m for m in hh.list_members(rahul)}
    ramesh = hh.add_member(rahul, "Ramesh Sharma", "parent")
    loose = users.create_user(rahul, "ramesh", "Ramesh Sharma", PASSWORD, "family_member")
    with pytest.raises(ValidationError, match=r"Priya Sharma already has the login 'priya'; "
                                              r"a member has at most one login"):
        hh.link_login(rahul, members["priya"].id, loose.id)
    with pytest.raises(ValidationError, match=r"The login 'priya' already belongs to the "
                                              r"member Priya Sharma"):
        hh.link_login(rahul, ramesh.id, members["priya"].user_id)
    with pytest.raises(ValidationError, match=r"Priya Sharma already has the login 'priya'"):
        users.create_user(rahul, "priya2", "Priya Sharma", PASSWORD, "family_member",
                          member_id=members["priya"].id)
    with pytest.raises(ValidationError, match="not both"):
        users.create_user(rahul, "ramesh2", "Ramesh Sharma", PASSWORD, "family_member",
                          relationship="parent", member_id=ramesh.id)
    with services.db.transaction() as session:  # a refused create writes no login
        assert session.scalar(select(UserRow.id).where(UserRow.username == "priya2")) is None
    assert next(m for m in hh.list_members(rahul) if m.id == ramesh.id).user_id is None


def test_only_an_admin_of_the_same_household_links_a_login(
    services: Services, login: Callable[[str], Actor]
) -> None:
    rahul, ops = login("rahul"), login("ops")
    hh = services.household
    ramesh = hh.add_member(rahul, "Ramesh Sharma", "parent")
    loose = services.users.create_user(rahul, "ramesh", "Ramesh Sharma", PASSWORD,
                                       "family_member")
    with pytest.raises(PermissionDenied, match="may not manage household members"):
        hh.link_login(login("priya"), ramesh.id, loose.id)
    verma = hh.create_household(ops, "Verma family")
    foreign = services.users.create_user(ops, "anita", "Anita Verma", PASSWORD,
                                         "family_member", household_id=verma.id)
    with pytest.raises(PermissionDenied, match=f"User {foreign.id} is not in your household"):
        hh.link_login(rahul, ramesh.id, foreign.id)
    with pytest.raises(ValidationError, match=f"Member {ramesh.id} is not in your household"):
        services.users.create_user(ops, "anita2", "Anita Verma", PASSWORD, "family_member",
                                   household_id=verma.id, member_id=ramesh.id)
    denied = [r for r in _actions(services, "members.link_login") if r.outcome == "denied"]
    assert [r.actor_username for r in denied] == ["priya", "rahul"]
    assert next(m for m in hh.list_members(rahul) if m.id == ramesh.id).user_id is None


@pytest.mark.parametrize("name", ["Anaya Sharma", "  anaya   SHARMA "])
def test_a_second_member_with_the_same_name_and_relationship_is_refused(
    services: Services, login: Callable[[str], Actor], name: str
) -> None:
    rahul = login("rahul")
    hh = services.household
    first = hh.add_member(rahul, "Anaya Sharma", "child")
    before = len(hh.list_members(rahul))
    with pytest.raises(ValidationError, match=re.escape(
            "The household already has the member Anaya Sharma (child, no login); a second "
            "member with the same name and relationship is refused")):
        hh.add_member(rahul, name, "child")
    with pytest.raises(ValidationError, match=re.escape(
            "already has the member Anaya Sharma (child, no login)")):
        services.users.create_user(rahul, "anaya", name, PASSWORD, "viewer",
                                   relationship="child")
    assert len(hh.list_members(rahul)) == before
    other = hh.add_member(rahul, "Anaya Sharma", "parent")  # another person of that name
    assert other.id != first.id
    with pytest.raises(ValidationError, match=re.escape("Priya Sharma (spouse, login priya)")):
        hh.add_member(rahul, "priya sharma", "spouse")
