"""The shared fixtures give each test a migrated demo database on both backends."""

from core.audit import verify
from core.domain import Role


def test_demo_household_is_seeded_and_its_audit_chain_verifies(services, login) -> None:
    rahul = login("rahul")
    assert rahul.role is Role.ADMIN
    assert len(services.household.list_members(rahul)) == 4
    assert verify(services.db).ok
