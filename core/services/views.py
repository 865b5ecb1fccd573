"""Tables for pages: domain objects reshaped into DataFrames, so pages stay free of pandas work."""

from __future__ import annotations

import pandas as pd

from core.clock import format_ist
from core.domain import Account, Grant, Member, User


def accounts_table(accounts: list[Account]) -> pd.DataFrame:
    """Return accounts as shown on the Dashboard and Household pages."""
    return pd.DataFrame(
        [
            {
                "id": a.id,
                "label": a.label,
                "owner": a.owner_name,
                "scope": a.scope,
                "group": a.group,
                "broker": a.broker.value,
                "your access": a.my_permission.value if a.my_permission else "—",
                "status": "open" if a.is_active else "closed",
            }
            for a in accounts
        ],
        columns=["id", "label", "owner", "scope", "group", "broker", "your access", "status"],
    )


def member_labels(members: list[Member]) -> dict[int, str]:
    """Return each member's name for pickers, told apart by relationship and login.

    'Anaya Sharma (child, login anaya)', 'Ramesh Sharma (parent, no login)'; members who would
    still read the same (added before duplicates were refused) get their id as well.
    """
    labels = {m.id: f"{m.full_name} ({m.relationship.value}, "
                    f"{f'login {m.username}' if m.username else 'no login'})" for m in members}
    seen = list(labels.values())
    return {ident: label if seen.count(label) == 1 else f"{label} · member {ident}"
            for ident, label in labels.items()}


def members_table(members: list[Member]) -> pd.DataFrame:
    """Return household members with consent and verification in IST."""
    return pd.DataFrame(
        [
            {
                "id": m.id,
                "name": m.full_name,
                "relationship": m.relationship.value,
                "login": m.username or "—",
                "consent (IST)": format_ist(m.consent_given_at),
                "consent by": m.consent_given_by or "—",
                "verification": m.verification_status.value,
                "verified (IST)": format_ist(m.verified_at),
            }
            for m in members
        ],
        columns=[
            "id",
            "name",
            "relationship",
            "login",
            "consent (IST)",
            "consent by",
            "verification",
            "verified (IST)",
        ],
    )


def grants_table(grants: list[Grant]) -> pd.DataFrame:
    """Return account grants."""
    return pd.DataFrame(
        [
            {
                "account": g.account_label,
                "member": g.member_name,
                "access": g.permission.value,
                "granted by": g.granted_by,
                "since (IST)": format_ist(g.granted_at),
            }
            for g in grants
        ],
        columns=["account", "member", "access", "granted by", "since (IST)"],
    )


def users_table(users: list[User]) -> pd.DataFrame:
    """Return logins for the Users page (never hashes or secrets)."""
    return pd.DataFrame(
        [
            {
                "id": u.id,
                "username": u.username,
                "name": u.display_name,
                "role": u.role.value,
                "active": u.is_active,
                "2FA": u.totp_enabled,
                "member": u.member_id is not None,
                "created (IST)": format_ist(u.created_at),
            }
            for u in users
        ],
        columns=["id", "username", "name", "role", "active", "2FA", "member", "created (IST)"],
    )
