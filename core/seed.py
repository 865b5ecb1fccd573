"""Seed the demo household on first start: ``python -m core.seed``.

Passwords are generated fresh on every seeding and printed once to the terminal that ran it;
nothing fixed lives in the repository and nothing is logged.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from decimal import Decimal

from core import audit
from core.clock import now_ist
from core.domain import Actor, ClientInfo, Role
from core.passwords import generate_password, hash_password
from core.services import Services, build_services
from db.models import HouseholdRow, UserRow

SEED_CLIENT = ClientInfo(channel="seed")


@dataclass(frozen=True, slots=True)
class DemoLogin:
    """A demo username, its role and its one-time-shown password."""

    username: str
    role: Role
    password: str
    who: str


# username, display name, role, relationship (None: no household member)
DEMO_PEOPLE: tuple[tuple[str, str, Role, str | None], ...] = (
    ("rahul", "Rahul Sharma", Role.ADMIN, "self"),
    ("priya", "Priya Sharma", Role.TRADER, "spouse"),
    ("kamla", "Kamla Sharma", Role.FAMILY_MEMBER, "parent"),
    ("aarav", "Aarav Sharma", Role.VIEWER, "child"),
)


def _actor(
    user_id: int, username: str, role: Role, household_id: int, member_id: int | None
) -> Actor:
    return Actor(
        user_id=user_id,
        username=username,
        display_name=username,
        role=role,
        household_id=household_id,
        member_id=member_id,
        client=SEED_CLIENT,
    )


def seed_demo(services: Services) -> list[DemoLogin]:
    """Create the demo household if the desk has no users; return the logins (else [])."""
    if services.users.count_users():
        return []
    logins: list[DemoLogin] = []
    ops_password = generate_password()
    with services.db.transaction() as session:
        household = HouseholdRow(name="Sharma family")
        session.add(household)
        session.flush()
        ops = UserRow(
            household_id=household.id,
            username="ops",
            display_name="Desk operator",
            password_hash=hash_password(ops_password, services.settings.bcrypt_rounds),
            role=Role.SUPER_ADMIN,
            password_changed_at=now_ist(),
        )
        session.add(ops)
        session.flush()
        audit.append(
            session,
            audit.AuditEvent(
                action="seed.demo",
                resource=f"household:{household.id}",
                household_id=household.id,
                details={"name": household.name},
                client=SEED_CLIENT,
            ),
        )
        ops_actor = _actor(ops.id, ops.username, Role.SUPER_ADMIN, household.id, None)
    logins.append(DemoLogin("ops", Role.SUPER_ADMIN, ops_password, "desk operator"))

    members: dict[str, tuple[int, int | None]] = {}
    for username, name, role, relationship in DEMO_PEOPLE:
        password = generate_password()
        user = services.users.create_user(
            ops_actor, username, name, password, role.value, relationship=relationship
        )
        members[username] = (user.id, user.member_id)
        logins.append(DemoLogin(username, role, password, f"{name} ({relationship})"))

    hid = ops_actor.household_id
    rahul = _actor(members["rahul"][0], "rahul", Role.ADMIN, hid, members["rahul"][1])
    hh = services.household
    for username in ("priya", "kamla", "aarav"):
        member_id = members[username][1]
        assert member_id is not None  # noqa: S101
        hh.record_consent(rahul, member_id, "Consent form signed at home (demo)")
        hh.set_verification(rahul, member_id, "verified")
    accounts = {}
    for owner, label, group in (
        ("rahul", "Rahul · Long-term", "Long-term"),
        ("rahul", "Rahul · Intraday", "Trading"),
        ("priya", "Priya · Trading", "Trading"),
        ("kamla", "Kamla · Pension", "Long-term"),
    ):
        owner_member = members[owner][1]
        assert owner_member is not None  # noqa: S101
        accounts[label] = hh.create_account(rahul, owner_member, label, group).id
    hh.grant(rahul, accounts["Kamla · Pension"], _member(members, "rahul"), "trade")
    hh.grant(rahul, accounts["Rahul · Long-term"], _member(members, "aarav"), "view")
    hh.grant(rahul, accounts["Rahul · Long-term"], _member(members, "priya"), "view")
    capital = Decimal(services.settings.paper_initial_capital)
    if capital > 0:
        for account_id in accounts.values():
            services.portfolio.add_funds(rahul, account_id, capital, "Demo paper capital")
    return logins


def _member(members: dict[str, tuple[int, int | None]], username: str) -> int:
    member_id = members[username][1]
    assert member_id is not None  # noqa: S101
    return member_id


def main() -> int:
    """Seed if empty and print the demo logins once."""
    services = build_services()
    logins = seed_demo(services)
    services.db.dispose()
    if not logins:
        print("Demo household already seeded; logins unchanged.")
        return 0
    print("\nDemo household 'Sharma family' created. Logins (shown once; change them in Profile):")
    for login in logins:
        print(f"  {login.username:<6} {login.role.value:<14} {login.password}   {login.who}")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
