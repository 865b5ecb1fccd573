"""The authorization matrix: every role against every kind of account, user and audit action.

The expected tables below are the policy of ``core.authz`` written out cell by cell; each
refusal must raise PermissionDenied naming the resource and leave a 'denied' audit row.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from sqlalchemy import func, select

from core.domain import Actor, Permission, Role
from core.errors import PermissionDenied, SessionInvalid, ValidationError
from core.services import AuditFilter, Services
from core.services import users as users_service
from db.models import AuditRow, SessionRow, UserRow
from tests.conftest import TEST_CLIENT

VIKRAM_PASSWORD = "Verma-Desk-2024!"
NEW_PASSWORD = "Fresh-Start-77#"
MISSING_ID = 999_999

ALLOW, DENY, NA = "allowed", "refused", "n/a"
TARGETS = ("own", "granted-view", "granted-trade", "household-other", "foreign")

# Which account each actor meets as each kind of target (the fixture creates what the demo
# lacks). aarav's trade grant was given while he was a family_member; he is a viewer again.
ACCOUNT_OF: dict[str, dict[str, str]] = {
    "ops": {"household-other": "Rahul · Long-term", "foreign": "Vikram · Main"},
    "rahul": {"own": "Rahul · Long-term", "granted-view": "Priya · Trading",
              "granted-trade": "Kamla · Pension", "household-other": "Aarav · Savings",
              "foreign": "Vikram · Main"},
    "priya": {"own": "Priya · Trading", "granted-view": "Rahul · Long-term",
              "granted-trade": "Kamla · Pension", "household-other": "Rahul · Intraday",
              "foreign": "Vikram · Main"},
    "kamla": {"own": "Kamla · Pension", "granted-view": "Rahul · Long-term",
              "granted-trade": "Priya · Trading", "household-other": "Rahul · Intraday",
              "foreign": "Vikram · Main"},
    "aarav": {"own": "Aarav · Savings", "granted-view": "Rahul · Long-term",
              "granted-trade": "Rahul · Intraday", "household-other": "Priya · Trading",
              "foreign": "Vikram · Main"},
}

# fmt: off
#  (actor, action)          own    granted-view granted-trade household-other foreign
ACCOUNT_MATRIX: dict[tuple[str, str], tuple[str, str, str, str, str]] = {
    ("ops",   "view"):      (NA,    NA,    NA,    ALLOW, ALLOW),  # super_admin
    ("ops",   "trade"):     (NA,    NA,    NA,    DENY,  DENY),
    ("ops",   "manage"):    (NA,    NA,    NA,    ALLOW, ALLOW),
    ("rahul", "view"):      (ALLOW, ALLOW, ALLOW, ALLOW, DENY),   # admin
    ("rahul", "trade"):     (ALLOW, DENY,  ALLOW, DENY,  DENY),
    ("rahul", "manage"):    (ALLOW, ALLOW, ALLOW, ALLOW, DENY),
    ("priya", "view"):      (ALLOW, ALLOW, ALLOW, DENY,  DENY),   # trader
    ("priya", "trade"):     (ALLOW, DENY,  ALLOW, DENY,  DENY),
    ("priya", "manage"):    (ALLOW, DENY,  DENY,  DENY,  DENY),
    ("kamla", "view"):      (ALLOW, ALLOW, ALLOW, DENY,  DENY),   # family_member
    ("kamla", "trade"):     (ALLOW, DENY,  ALLOW, DENY,  DENY),
    ("kamla", "manage"):    (DENY,  DENY,  DENY,  DENY,  DENY),
    ("aarav", "view"):      (ALLOW, ALLOW, ALLOW, DENY,  DENY),   # viewer
    ("aarav", "trade"):     (DENY,  DENY,  DENY,  DENY,  DENY),
    ("aarav", "manage"):    (DENY,  DENY,  DENY,  DENY,  DENY),
}

# Accounts each actor's list_accounts returns (ops: everything, but only to view).
VISIBLE_ACCOUNTS: dict[str, set[str]] = {
    "ops": {"Rahul · Long-term", "Rahul · Intraday", "Priya · Trading", "Kamla · Pension",
            "Aarav · Savings", "Vikram · Main"},
    "rahul": {"Rahul · Long-term", "Rahul · Intraday", "Priya · Trading", "Kamla · Pension",
              "Aarav · Savings"},
    "priya": {"Priya · Trading", "Rahul · Long-term", "Kamla · Pension"},
    "kamla": {"Kamla · Pension", "Rahul · Long-term", "Priya · Trading"},
    "aarav": {"Aarav · Savings", "Rahul · Long-term", "Rahul · Intraday"},
    "vikram": {"Vikram · Main"},
}

#  actor      own household (Sharma)  foreign household (Verma)
USER_MANAGEMENT: dict[str, tuple[str, str]] = {
    "ops":   (ALLOW, ALLOW),
    "rahul": (ALLOW, DENY),
    "priya": (DENY,  DENY),
    "kamla": (DENY,  DENY),
    "aarav": (DENY,  DENY),
}

#  actor     owner of the new account   expected
ACCOUNT_OPENING: list[tuple[str, str, str]] = [
    ("ops",   "vikram", ALLOW),
    ("rahul", "kamla",  ALLOW),
    ("rahul", "vikram", DENY),
    ("priya", "priya",  ALLOW),
    ("priya", "kamla",  DENY),
    ("kamla", "kamla",  DENY),
    ("aarav", "aarav",  DENY),
]

#  actor     account                  grantee   expected
GRANTING: list[tuple[str, str, str, str]] = [
    ("ops",   "Kamla · Pension",   "aarav",  ALLOW),
    ("rahul", "Priya · Trading",   "aarav",  ALLOW),
    ("rahul", "Vikram · Main",     "kamla",  DENY),
    ("priya", "Priya · Trading",   "aarav",  ALLOW),
    ("priya", "Rahul · Long-term", "kamla",  DENY),
    ("kamla", "Kamla · Pension",   "aarav",  DENY),
    ("aarav", "Aarav · Savings",   "kamla",  DENY),
]

#  actor     may read the audit log
AUDIT_READING: dict[str, str] = {
    "ops": ALLOW, "rahul": ALLOW, "vikram": ALLOW, "priya": DENY, "kamla": DENY, "aarav": DENY,
}
# fmt: on


@dataclass(frozen=True)
class World:
    """The demo household plus the foreign Verma household and the grants the matrix needs."""

    sharma: int
    verma: int
    accounts: dict[str, int]  # label -> id
    groups: dict[int, str]  # account id -> group
    members: dict[str, int]  # username -> member id
    users: dict[str, int]  # username -> user id
    vikram: Actor


def _last_audit_id(services: Services) -> int:
    with services.db.transaction() as session:
        return int(session.scalar(select(func.max(AuditRow.id))) or 0)


def _audit_since(services: Services, last_id: int) -> list[AuditRow]:
    with services.db.transaction() as session:
        return list(session.scalars(
            select(AuditRow).where(AuditRow.id > last_id).order_by(AuditRow.id)
        ))


def _denied_since(services: Services, last_id: int) -> list[AuditRow]:
    return [row for row in _audit_since(services, last_id) if row.outcome == "denied"]


def _assert_one_denial(services: Services, last_id: int, username: str, resource: str) -> None:
    denied = [(r.actor_username, r.resource) for r in _denied_since(services, last_id)]
    assert denied == [(username, resource)]


@pytest.fixture
def world(services: Services, login: Callable[[str], Actor]) -> World:
    """Add the Verma household (admin vikram, 'Vikram · Main'), Aarav's account and grants."""
    ops, rahul = login("ops"), login("rahul")
    hh = services.household
    verma = hh.create_household(ops, "Verma family")
    vikram_user = services.users.create_user(
        ops, "vikram", "Vikram Verma", VIKRAM_PASSWORD, "admin", relationship="self",
        household_id=verma.id,
    )
    result = services.auth.login("vikram", VIKRAM_PASSWORD, TEST_CLIENT)
    assert result.session_id is not None
    vikram = services.auth.check_session(result.session_id, TEST_CLIENT)
    assert vikram_user.member_id is not None
    hh.create_account(vikram, vikram_user.member_id, "Vikram · Main", "Trading")

    members = {m.username: m.id for m in hh.list_members(rahul) if m.username}
    members["vikram"] = vikram_user.member_id
    hh.create_account(rahul, members["aarav"], "Aarav · Savings", "Savings")
    everything = hh.list_accounts(ops)
    accounts = {a.label: a.id for a in everything}
    users = {u.username: u.id for u in services.users.list_users(ops)}

    hh.grant(rahul, accounts["Priya · Trading"], members["rahul"], "view")
    hh.grant(rahul, accounts["Kamla · Pension"], members["priya"], "trade")
    hh.grant(rahul, accounts["Rahul · Long-term"], members["kamla"], "view")
    hh.grant(rahul, accounts["Priya · Trading"], members["kamla"], "trade")
    # A viewer can never be granted 'trade'; a demotion can leave one behind, though.
    services.users.set_role(rahul, users["aarav"], "family_member")
    hh.grant(rahul, accounts["Rahul · Intraday"], members["aarav"], "trade")
    services.users.set_role(rahul, users["aarav"], "viewer")
    return World(
        sharma=rahul.household_id, verma=verma.id, accounts=accounts,
        groups={a.id: a.group for a in everything}, members=members, users=users, vikram=vikram,
    )


def _actor(who: str, login: Callable[[str], Actor], world: World) -> Actor:
    return world.vikram if who == "vikram" else login(who)


def _account_action(services: Services, world: World, actor: Actor, action: str,
                    account_id: int) -> Any:
    hh = services.household
    if action == "view":
        return hh.get_account(actor, account_id)
    if action == "trade":
        return hh.authorize_trade(actor, account_id)
    label = next((k for k, v in world.accounts.items() if v == account_id), "Unused label")
    return hh.update_account(actor, account_id, label, world.groups.get(account_id, "G"), True)


def _names_account(services: Services, world: World, actor: Actor, account_id: int) -> str:
    """How a refusal names the account: by label if the actor sees it, else by id alone."""
    seen = {a.id for a in services.household.list_accounts(actor, include_closed=True)}
    if account_id in seen:
        label = next(k for k, v in world.accounts.items() if v == account_id)
        return rf"(?i)\baccount {re.escape(repr(label))}"
    return rf"(?i)\baccount {account_id}\b"


MATRIX_CELLS = [
    pytest.param(who, action, target, expected, id=f"{who}-{action}-{target}-{expected}")
    for (who, action), row in ACCOUNT_MATRIX.items()
    for target, expected in zip(TARGETS, row, strict=True)
    if expected != NA
]


@pytest.mark.parametrize(("who", "action", "target", "expected"), MATRIX_CELLS)
def test_each_role_reaches_an_account_only_as_the_rules_table_allows(
    services: Services, login: Callable[[str], Actor], world: World,
    who: str, action: str, target: str, expected: str,
) -> None:
    actor = login(who)
    account_id = world.accounts[ACCOUNT_OF[who][target]]
    before = _last_audit_id(services)
    if expected == ALLOW:
        result = _account_action(services, world, actor, action, account_id)
        if action != "manage":
            assert result.id == account_id
        assert _denied_since(services, before) == []
        return
    with pytest.raises(PermissionDenied) as refused:
        _account_action(services, world, actor, action, account_id)
    assert re.search(_names_account(services, world, actor, account_id), str(refused.value),
                     re.IGNORECASE)
    _assert_one_denial(services, before, who, f"account:{account_id}")


@pytest.mark.parametrize("action", ["view", "trade", "manage"])
@pytest.mark.parametrize("who", ["rahul", "priya", "kamla", "aarav"])
def test_a_foreign_account_id_is_refused_exactly_like_an_id_that_does_not_exist(
    services: Services, login: Callable[[str], Actor], world: World, who: str, action: str,
) -> None:
    actor = login(who)
    foreign = world.accounts["Vikram · Main"]
    messages = []
    for account_id in (foreign, MISSING_ID):
        before = _last_audit_id(services)
        with pytest.raises(PermissionDenied) as refused:
            _account_action(services, world, actor, action, account_id)
        _assert_one_denial(services, before, who, f"account:{account_id}")
        messages.append(str(refused.value).replace(str(account_id), "<id>"))
    assert messages[0] == messages[1]
    assert "<id>" in messages[0]


@pytest.mark.parametrize("who", sorted(VISIBLE_ACCOUNTS))
def test_list_accounts_returns_exactly_what_the_actor_may_view_and_nothing_foreign(
    services: Services, login: Callable[[str], Actor], world: World, who: str,
) -> None:
    actor = _actor(who, login, world)
    listed = services.household.list_accounts(actor)
    assert {a.label for a in listed} == VISIBLE_ACCOUNTS[who]
    if who == "ops":
        assert {a.my_permission for a in listed} == {Permission.VIEW}
    else:
        assert {a.household_id for a in listed} == {actor.household_id}


def _user_action(services: Services, actor: Actor, op: str, household_id: int,
                 user_id: int) -> Any:
    users = services.users
    if op == "create_user":
        return users.create_user(actor, "newcomer", "New Comer", NEW_PASSWORD, "viewer",
                                 relationship="child", household_id=household_id)
    if op == "set_role":
        return users.set_role(actor, user_id, "trader")
    if op == "set_active":
        return users.set_active(actor, user_id, False)
    if op == "reset_password":
        return users.reset_password(actor, user_id, NEW_PASSWORD)
    if op == "force_logout_all":
        return users.force_logout_all(actor, household_id)
    return users.list_users(actor, household_id)


USER_OPS = ("create_user", "set_role", "set_active", "reset_password", "force_logout_all",
            "list_users")
USER_CELLS = [
    pytest.param(who, op, where, expected, id=f"{who}-{op}-{where}-{expected}")
    for who, row in USER_MANAGEMENT.items()
    for where, expected in zip(("own-household", "foreign-household"), row, strict=True)
    for op in USER_OPS
]


@pytest.mark.parametrize(("who", "op", "where", "expected"), USER_CELLS)
def test_only_admins_of_the_household_and_super_admins_manage_its_users(
    services: Services, login: Callable[[str], Actor], world: World,
    who: str, op: str, where: str, expected: str,
) -> None:
    actor = login(who)
    household_id = world.sharma if where == "own-household" else world.verma
    target = world.users["kamla"]
    if where == "foreign-household":  # not vikram, whom the last-admin rule protects
        target = services.users.create_user(login("ops"), "anita", "Anita Verma", NEW_PASSWORD,
                                            "family_member", household_id=world.verma).id
    before = _last_audit_id(services)
    if expected == ALLOW:
        result = _user_action(services, actor, op, household_id, target)
        if op == "list_users":
            assert {u.household_id for u in result} == {household_id}
        assert _denied_since(services, before) == []
        return
    with pytest.raises(PermissionDenied, match=rf"household {household_id}\b"):
        _user_action(services, actor, op, household_id, target)
    _assert_one_denial(services, before, who, f"household:{household_id}")


@pytest.mark.parametrize(
    "attempt",
    [
        pytest.param(lambda s, a, w: s.users.create_user(
            a, "boss", "Big Boss", NEW_PASSWORD, "super_admin"), id="create"),
        pytest.param(lambda s, a, w: s.users.set_role(a, w.users["priya"], "super_admin"),
                     id="promote"),
        pytest.param(lambda s, a, w: s.users.set_role(a, w.users["ops"], "admin"),
                     id="demote-ops"),
        pytest.param(lambda s, a, w: s.users.set_active(a, w.users["ops"], False),
                     id="deactivate-ops"),
        pytest.param(lambda s, a, w: s.users.reset_password(a, w.users["ops"], NEW_PASSWORD),
                     id="reset-ops-password"),
    ],
)
def test_an_admin_may_neither_create_a_super_admin_nor_touch_one(
    services: Services, login: Callable[[str], Actor], world: World, attempt: Callable,
) -> None:
    rahul = login("rahul")
    before = _last_audit_id(services)
    with pytest.raises(PermissionDenied, match="super admin"):
        attempt(services, rahul, world)
    denied = _denied_since(services, before)
    assert [r.actor_username for r in denied] == ["rahul"]
    with services.db.transaction() as session:
        ops = session.get(UserRow, world.users["ops"])
        assert ops is not None and ops.is_active and ops.role.value == "super_admin"
    login("ops")  # the password still works


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda s, a, u: s.users.reset_password(a, u, NEW_PASSWORD), id="password"),
        pytest.param(lambda s, a, u: s.users.set_role(a, u, "viewer"), id="demote"),
        pytest.param(lambda s, a, u: s.users.set_active(a, u, False), id="deactivate"),
    ],
)
def test_an_admin_may_not_take_over_another_admin_but_a_super_admin_may_change_them(
    services: Services, login: Callable[[str], Actor], world: World, change: Callable,
) -> None:
    rahul, ops = login("rahul"), login("ops")
    second = services.users.create_user(ops, "meera", "Meera Sharma", NEW_PASSWORD, "admin",
                                        household_id=world.sharma).id
    before = _last_audit_id(services)
    with pytest.raises(PermissionDenied, match="Only a super admin may change the 'admin' "
                                               "login 'meera'"):
        change(services, rahul, second)
    assert [r.actor_username for r in _denied_since(services, before)] == ["rahul"]
    with services.db.transaction() as session:
        meera = session.get(UserRow, second)
        assert meera is not None and meera.is_active and meera.role.value == "admin"
    change(services, ops, second)  # the super admin may


@pytest.mark.parametrize("who", ["ops", "rahul"])
@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(lambda s, a: s.users.set_role(a, a.user_id, "viewer"), "own role",
                     id="own-role"),
        pytest.param(lambda s, a: s.users.set_active(a, a.user_id, False), "deactivate your own",
                     id="deactivate-self"),
    ],
)
def test_nobody_may_change_their_own_role_or_deactivate_themselves(
    services: Services, login: Callable[[str], Actor], who: str, change: Callable, message: str,
) -> None:
    actor = login(who)
    with pytest.raises(ValidationError, match=message):
        change(services, actor)
    with services.db.transaction() as session:
        row = session.get(UserRow, actor.user_id)
        assert row is not None and row.is_active and row.role is actor.role


@pytest.mark.parametrize(("who", "owner", "expected"), ACCOUNT_OPENING)
def test_only_managers_and_traders_for_themselves_open_accounts(
    services: Services, login: Callable[[str], Actor], world: World,
    who: str, owner: str, expected: str,
) -> None:
    actor = login(who)
    member_id = world.members[owner]
    before = _last_audit_id(services)
    if expected == ALLOW:
        account = services.household.create_account(actor, member_id, "Fresh account", "New")
        assert account.owner_member_id == member_id
        return
    names = {m.id: m.full_name for m in services.household.list_members(actor)}
    named = re.escape(names[member_id]) if member_id in names else rf"member {member_id}\b"
    with pytest.raises(PermissionDenied, match=f"may not open an account for {named}$"):
        services.household.create_account(actor, member_id, "Fresh account", "New")
    _assert_one_denial(services, before, who, f"member:{member_id}")


@pytest.mark.parametrize(("who", "label", "grantee", "expected"), GRANTING)
def test_only_those_who_manage_an_account_grant_access_to_it(
    services: Services, login: Callable[[str], Actor], world: World,
    who: str, label: str, grantee: str, expected: str,
) -> None:
    actor = login(who)
    account_id = world.accounts[label]
    before = _last_audit_id(services)
    if expected == ALLOW:
        services.household.grant(actor, account_id, world.members[grantee], "view")
        services.household.revoke(actor, account_id, world.members[grantee])
        return
    with pytest.raises(PermissionDenied,
                       match=_names_account(services, world, actor, account_id)):
        services.household.grant(actor, account_id, world.members[grantee], "view")
    _assert_one_denial(services, before, who, f"account:{account_id}")


def _audit_ids_of(services: Services, household_id: int) -> set[int]:
    with services.db.transaction() as session:
        return set(session.scalars(
            select(AuditRow.id).where(AuditRow.household_id == household_id)
        ))


@pytest.mark.parametrize(("who", "expected"), sorted(AUDIT_READING.items()))
def test_only_admins_read_the_audit_log_and_only_their_households_part(
    services: Services, login: Callable[[str], Actor], world: World, who: str, expected: str,
) -> None:
    actor = _actor(who, login, world)
    before = _last_audit_id(services)
    if expected == DENY:
        with pytest.raises(PermissionDenied, match="audit log"):
            services.audit.entries(actor, AuditFilter())
        _assert_one_denial(services, before, who, "audit_log")
        return
    seen = set(services.audit.entries(actor, AuditFilter())["id"])
    sharma, verma = _audit_ids_of(services, world.sharma), _audit_ids_of(services, world.verma)
    assert sharma and verma
    if who == "ops":
        assert sharma | verma <= seen
    else:
        own, other = (sharma, verma) if actor.household_id == world.sharma else (verma, sharma)
        assert seen == own
        assert not seen & other


def test_a_demoted_trader_acting_with_a_stale_actor_is_judged_by_the_database(
    services: Services, login: Callable[[str], Actor], world: World,
) -> None:
    priya, rahul = login("priya"), login("rahul")
    own = world.accounts["Priya · Trading"]
    services.household.authorize_trade(priya, own)
    services.users.set_role(rahul, priya.user_id, "viewer")
    # Her sessions ended with the role change, so the stale Actor is refused outright ...
    with pytest.raises(SessionInvalid, match="session has ended"):
        services.household.authorize_trade(priya, own)
    # ... and a session-less caller (a job, the bot) with her old Actor meets the fresh role.
    stale = replace(priya, session_id=None)
    before = _last_audit_id(services)
    with pytest.raises(PermissionDenied, match="'viewer'"):
        services.household.authorize_trade(stale, own)
    _assert_one_denial(services, before, "priya", f"account:{own}")
    assert priya.session_id is not None
    with pytest.raises(SessionInvalid, match="role changed"):
        services.auth.check_session(priya.session_id, TEST_CLIENT)


def _active_sessions(services: Services, user_id: int) -> int:
    with services.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(SessionRow).where(
            SessionRow.user_id == user_id, SessionRow.ended_at.is_(None)
        )) or 0)


def test_a_demoted_super_admin_with_a_stale_actor_keeps_no_desk_wide_power(
    services: Services, login: Callable[[str], Actor], world: World,
) -> None:
    ops = login("ops")
    services.users.create_user(ops, "deputy", "Deputy Operator", NEW_PASSWORD, "super_admin")
    result = services.auth.login("deputy", NEW_PASSWORD, TEST_CLIENT)
    assert result.session_id is not None
    deputy = services.auth.check_session(result.session_id, TEST_CLIENT)
    services.users.set_role(ops, deputy.user_id, "admin")
    with pytest.raises(SessionInvalid, match="session has ended"):
        services.users.list_users(deputy)
    deputy = replace(deputy, session_id=None)  # a session-less caller holding the old Actor

    listed = services.users.list_users(deputy)
    assert {u.household_id for u in listed} == {world.sharma}
    services.users.force_logout_all(deputy)
    assert _active_sessions(services, world.vikram.user_id) == 1
    with pytest.raises(PermissionDenied):
        services.users.set_role(deputy, ops.user_id, "admin")
    with pytest.raises(PermissionDenied):
        services.household.get_account(deputy, world.accounts["Vikram · Main"])


def test_authorize_trade_reads_once_and_hands_every_refusal_to_the_general_path(
    services: Services, login: Callable[[str], Actor], world: World,
) -> None:
    from sqlalchemy import event

    priya, rahul = login("priya"), login("rahul")
    own = world.accounts["Priya · Trading"]
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(services.db.engine, "before_cursor_execute", count)
    try:
        account = services.household.authorize_trade(priya, own)
    finally:
        event.remove(services.db.engine, "before_cursor_execute", count)
    assert (account.id, account.my_permission, len(statements)) == (own, Permission.TRADE, 1)
    # A closed account: the rule and the label, as before.
    services.household.update_account(rahul, own, account.label, account.group, False)
    with pytest.raises(ValidationError, match=r"Account 'Priya · Trading' is closed"):
        services.household.authorize_trade(priya, own)
    services.household.update_account(rahul, own, account.label, account.group, True)
    services.household.authorize_trade(priya, own)
    # A disabled user acting with a session-less Actor (a job, the bot) is refused outright.
    services.users.set_active(rahul, priya.user_id, False)
    with pytest.raises(SessionInvalid, match="no longer active"):
        services.household.authorize_trade(replace(priya, session_id=None), own)


@pytest.mark.parametrize("role", ["admin", "super_admin"])
@pytest.mark.parametrize(
    "attempt",
    [
        pytest.param(lambda s, a, w, r: s.users.create_user(a, "meera", "Meera Sharma",
                                                            NEW_PASSWORD, r), id="create"),
        pytest.param(lambda s, a, w, r: s.users.set_role(a, w.users["aarav"], r), id="promote"),
    ],
)
def test_only_a_super_admin_gives_the_admin_role_on_create_and_on_change(
    services: Services, login: Callable[[str], Actor], world: World, attempt: Callable,
    role: str,
) -> None:
    rahul = login("rahul")
    before = _last_audit_id(services)
    with pytest.raises(PermissionDenied, match=f"Your role 'admin' may not give the '{role}' "
                                               "role: only a super admin may give the 'admin' "
                                               "or 'super_admin' role"):
        attempt(services, rahul, world, role)
    assert [r.actor_username for r in _denied_since(services, before)] == ["rahul"]
    assert {u.username: u.role.value for u in services.users.list_users(rahul)}.get(
        "meera") is None
    with services.db.transaction() as session:
        aarav = session.get(UserRow, world.users["aarav"])
        assert aarav is not None and aarav.role.value == "viewer"
    attempt(services, login("ops"), world, role)  # the super admin may


def test_setting_the_role_a_login_already_has_is_refused_and_writes_nothing(
    services: Services, login: Callable[[str], Actor], world: World,
) -> None:
    rahul = login("rahul")
    before = _last_audit_id(services)
    with pytest.raises(ValidationError, match="'aarav' is already a viewer; nothing was changed"):
        services.users.set_role(rahul, world.users["aarav"], "viewer")
    assert _audit_since(services, before) == []
    login("aarav")  # no session of theirs was ended either


@pytest.mark.parametrize("who", ["ops", "rahul"])
def test_nobody_resets_their_own_password_without_the_current_one(
    services: Services, login: Callable[[str], Actor], who: str,
) -> None:
    actor = login(who)
    before = _last_audit_id(services)
    with pytest.raises(ValidationError, match="You cannot reset your own password here; change "
                                              "it on Profile → Change password, which asks for "
                                              "the current one"):
        services.users.reset_password(actor, actor.user_id, NEW_PASSWORD)
    assert _audit_since(services, before) == []
    services.household.household(actor)  # the session lives on
    login(who)  # and the old password still works


@pytest.mark.parametrize(
    ("change", "what"),
    [
        pytest.param(lambda s, a, u: s.users.set_role(a, u, "trader"), "demote", id="demote"),
        pytest.param(lambda s, a, u: s.users.set_active(a, u, False), "disable", id="disable"),
    ],
)
def test_the_households_last_active_admin_may_be_neither_demoted_nor_disabled(
    services: Services, login: Callable[[str], Actor], world: World, change: Callable,
    what: str,
) -> None:
    ops, rahul = login("ops"), login("rahul")
    before = _last_audit_id(services)
    with pytest.raises(ValidationError, match=f"You cannot {what} 'rahul': they are the "
                                              "household's last active admin, and a household "
                                              "keeps at least one; make another login an admin"):
        change(services, ops, world.users["rahul"])  # not even the super admin
    assert _audit_since(services, before) == []
    services.household.household(rahul)  # still an active admin with a live session
    meera = services.users.create_user(ops, "meera", "Meera Sharma", NEW_PASSWORD, "admin",
                                       household_id=world.sharma)
    change(services, ops, world.users["rahul"])  # with a second admin it may
    with pytest.raises(ValidationError, match="last active admin"):
        change(services, ops, meera.id)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # SQLite: one writer at a time
def test_two_admins_demoted_at_the_same_moment_leave_the_household_one(
    services: Services, login: Callable[[str], Actor], world: World,
) -> None:
    ops = login("ops")
    meera = services.users.create_user(ops, "meera", "Meera Sharma", NEW_PASSWORD, "admin",
                                       household_id=world.sharma)
    checked, release = threading.Event(), threading.Event()

    def demote_rahul_slowly() -> None:
        """Demote rahul and hold the transaction open after the check, as a slow request."""
        with services.db.transaction() as session:
            row = session.get(UserRow, world.users["rahul"])
            assert row is not None
            users_service._keep_an_admin(session, row, "demote 'rahul'")
            row.role = Role.TRADER
            session.flush()
            checked.set()
            release.wait(10)

    outcome: list[str] = []

    def demote_meera() -> None:
        try:
            services.users.set_role(ops, meera.id, "trader")
            outcome.append("demoted")
        except ValidationError as exc:
            outcome.append(str(exc))

    first = threading.Thread(target=demote_rahul_slowly)
    first.start()
    assert checked.wait(10)
    second = threading.Thread(target=demote_meera)
    second.start()
    second.join(1.0)
    assert second.is_alive(), f"the second demotion did not wait for the first: {outcome}"
    release.set()
    first.join(10)
    second.join(10)
    assert len(outcome) == 1 and "last active admin" in outcome[0], outcome
