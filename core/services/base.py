"""What every service shares: the database, settings, actor re-checks and audited refusals."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.config import Settings
from core.domain import Actor, Role
from core.errors import PermissionDenied, SessionInvalid
from db.engine import Database
from db.models import SessionRow, UserRow


class ServiceBase:
    """Base of the service classes; holds the database and settings."""

    def __init__(self, db: Database, settings: Settings) -> None:
        """Bind the service to a database and settings."""
        self.db = db
        self.settings = settings

    def _fresh_role(self, session: Session, actor: Actor) -> Role:
        """Re-read the actor's role (and session) so stale state cannot act.

        A demoted or disabled user, or one whose session ended (logout, force-logout, password
        change, daily expiry), is refused even if a caller still holds the old Actor.
        """
        row = session.get(UserRow, actor.user_id)
        if row is None or not row.is_active:
            raise SessionInvalid(f"user {actor.username!r} is no longer active; log in again")
        if actor.session_id is not None:
            ended = session.scalar(
                select(SessionRow.ended_at).where(SessionRow.id == actor.session_id)
            )
            if ended is not None:
                raise SessionInvalid("Your session has ended; log in again")
        return row.role

    def _audit(
        self,
        session: Session,
        actor: Actor | None,
        action: str,
        resource: str,
        details: Mapping[str, Any] | None = None,
        outcome: str = audit.OK,
        household_id: int | None = None,
    ) -> None:
        audit.append(
            session,
            audit.AuditEvent(
                action=action,
                resource=resource,
                actor_user_id=actor.user_id if actor else None,
                actor_username=actor.username if actor else None,
                household_id=household_id
                if household_id is not None
                else (actor.household_id if actor else None),
                outcome=outcome,
                details=details,
                client=actor.client if actor else None,
            ),
        )

    def _deny(self, actor: Actor, action: str, resource: str, reason: str) -> NoReturn:
        """Audit a refusal in its own transaction, then raise PermissionDenied(reason)."""
        audit.append_now(
            self.db,
            audit.AuditEvent(
                action=action,
                resource=resource,
                actor_user_id=actor.user_id,
                actor_username=actor.username,
                household_id=actor.household_id,
                outcome=audit.DENIED,
                details={"reason": reason, "role": str(actor.role)},
                client=actor.client,
            ),
        )
        raise PermissionDenied(reason)
