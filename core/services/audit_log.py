"""Reading the audit trail: admins see their household's, super admins everything."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import pandas as pd
from sqlalchemy import or_, select

from core import audit, authz
from core.clock import IST, format_ist
from core.domain import Actor, Role
from core.errors import ValidationError
from core.services.base import ServiceBase
from db.models import AuditRow

MAX_ROWS = 5000


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What to show: IST date range, action prefix, username, outcome."""

    start: date | None = None
    end: date | None = None
    action_prefix: str = ""
    username: str = ""
    outcome: str = ""


def readable_details(stored: str) -> str:
    """Return a row's stored details for people: the same JSON with every script as typed.

    The stored text, which the hash chain covers, escapes each non-ASCII character
    ('\\u0938\\u0941…' for 'सु…'); it stays as it is, only the table and the CSV show it decoded.
    Decoding and re-encoding keeps the keys, their order and every value (numbers round-trip).
    """
    try:
        value = json.loads(stored)
    except ValueError:
        return stored
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class AuditLogService(ServiceBase):
    """Filter, export and verify the audit trail."""

    def entries(self, actor: Actor, filt: AuditFilter) -> pd.DataFrame:
        """Return matching entries (newest first, IST times) as a DataFrame."""
        if filt.start and filt.end and filt.start > filt.end:
            raise ValidationError(f"Start date {filt.start} is after end date {filt.end}")
        with self.db.transaction() as session:
            role = self._fresh_role(session, actor)
            if role not in authz.USER_MANAGERS:
                self._deny(
                    actor,
                    "audit.read",
                    "audit_log",
                    f"Your role {role.value!r} may not read the audit log",
                )
            query = select(AuditRow).order_by(AuditRow.id.desc()).limit(MAX_ROWS)
            if role is not Role.SUPER_ADMIN:
                query = query.where(AuditRow.household_id == actor.household_id)
            if filt.start:
                query = query.where(
                    AuditRow.created_at >= datetime.combine(filt.start, time(), IST)
                )
            if filt.end:
                end = datetime.combine(filt.end + timedelta(days=1), time(), IST)
                query = query.where(AuditRow.created_at < end)
            if filt.action_prefix.strip():
                query = query.where(AuditRow.action.startswith(filt.action_prefix.strip()))
            if filt.username.strip():
                name = filt.username.strip().lower()
                query = query.where(
                    or_(AuditRow.actor_username == name, AuditRow.resource == f"user:{name}")
                )
            if filt.outcome:
                query = query.where(AuditRow.outcome == filt.outcome)
            rows = session.scalars(query).all()
        return pd.DataFrame(
            [
                {
                    "id": r.id,
                    "time (IST)": format_ist(r.created_at),
                    "actor": r.actor_username or "system",
                    "action": r.action,
                    "resource": r.resource,
                    "outcome": r.outcome,
                    "details": readable_details(r.details),
                    "client": r.client,
                }
                for r in rows
            ],
            columns=[
                "id",
                "time (IST)",
                "actor",
                "action",
                "resource",
                "outcome",
                "details",
                "client",
            ],
        )

    def my_activity(self, actor: Actor, limit: int = 10) -> pd.DataFrame:
        """Return the actor's own latest audit entries (every role may read its own)."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            rows = session.scalars(
                select(AuditRow)
                .where(AuditRow.actor_user_id == actor.user_id)
                .order_by(AuditRow.id.desc())
                .limit(limit)
            ).all()
        return pd.DataFrame(
            [
                {
                    "time (IST)": format_ist(r.created_at),
                    "action": r.action,
                    "resource": r.resource,
                    "outcome": r.outcome,
                }
                for r in rows
            ],
            columns=["time (IST)", "action", "resource", "outcome"],
        )

    def verify(self, actor: Actor) -> audit.VerifyResult:
        """Check the whole hash chain (admins and super admins)."""
        with self.db.transaction() as session:
            role = self._fresh_role(session, actor)
        if role not in authz.USER_MANAGERS:
            self._deny(
                actor,
                "audit.verify",
                "audit_log",
                f"Your role {role.value!r} may not verify the audit log",
            )
        return audit.verify(self.db)
