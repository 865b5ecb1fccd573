"""Who may do what: pure rules, no I/O. Services load the facts and call these.

=================  ==============  ===========================  ===================  ======
Role               Manage users    Accounts they may view        Accounts they trade  Manage
=================  ==============  ===========================  ===================  ======
super_admin        every household  every account                own + trade-granted  all
admin              own household    every household account      own + trade-granted  household
trader             no               own + granted                own + trade-granted  own
family_member      no               own + granted                own + trade-granted  none
viewer             no               own + granted                none                 none
=================  ==============  ===========================  ===================  ======

"Manage" is creating, renaming, closing an account and granting or revoking access to it.
A member whose verification was rejected trades nothing (own accounts and grants alike) and
keeps the view access they hold.
Nothing here trusts the UI: every service calls these with facts read from the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.domain import Permission, Role

USER_MANAGERS = frozenset({Role.SUPER_ADMIN, Role.ADMIN})
HOUSEHOLD_MANAGERS = USER_MANAGERS
ACTING_ROLES = frozenset({Role.SUPER_ADMIN, Role.ADMIN, Role.TRADER, Role.FAMILY_MEMBER})
#: An admin may give only these roles: the admin role is given by a super admin, since an admin
#: may not change another admin's login afterwards (a promotion would be one-way for them).
ROLES_AN_ADMIN_MAY_ASSIGN = frozenset({Role.TRADER, Role.FAMILY_MEMBER, Role.VIEWER})
ASSIGN_RULE = "only a super admin may give the 'admin' or 'super_admin' role"


@dataclass(frozen=True, slots=True)
class AccountFacts:
    """What authorization needs to know about one account and one acting user."""

    actor_role: Role
    same_household: bool
    is_owner: bool
    grant: Permission | None
    rejected: bool = False  # the actor's member's verification was rejected


def account_permission(facts: AccountFacts) -> Permission | None:
    """Return the strongest permission the actor holds on the account, or None."""
    if not facts.same_household and facts.actor_role is not Role.SUPER_ADMIN:
        return None
    if facts.is_owner or facts.grant is Permission.TRADE:
        trade_ok = (facts.actor_role in ACTING_ROLES and facts.same_household
                    and not facts.rejected)
        return Permission.TRADE if trade_ok else Permission.VIEW
    if facts.grant is Permission.VIEW or facts.actor_role in HOUSEHOLD_MANAGERS:
        return Permission.VIEW
    return None


def may_manage_account(facts: AccountFacts) -> bool:
    """Return whether the actor may rename, close or grant access to the account."""
    if facts.actor_role is Role.SUPER_ADMIN:
        return True
    if not facts.same_household:
        return False
    if facts.actor_role is Role.ADMIN:
        return True
    return facts.actor_role is Role.TRADER and facts.is_owner


def may_create_account_for(actor_role: Role, same_household: bool, for_self: bool) -> bool:
    """Return whether the actor may open an account owned by the given member."""
    if actor_role is Role.SUPER_ADMIN:
        return True
    if not same_household:
        return False
    return actor_role is Role.ADMIN or (actor_role is Role.TRADER and for_self)


def may_manage_users(actor_role: Role, same_household: bool) -> bool:
    """Return whether the actor may create, change or log out users of that household."""
    if actor_role is Role.SUPER_ADMIN:
        return True
    return actor_role is Role.ADMIN and same_household


def may_assign_role(actor_role: Role, role: Role) -> bool:
    """Return whether the actor may give ``role`` (create or change a login to it).

    Only a super admin may give the admin or super_admin role.
    """
    return actor_role is Role.SUPER_ADMIN or role in ROLES_AN_ADMIN_MAY_ASSIGN
