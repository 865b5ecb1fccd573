"""User management: admins manage their household's logins; super admins manage all."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import authz
from core.clock import now_ist
from core.domain import Actor, Relationship, Role, User, parse_choice
from core.errors import ValidationError
from core.passwords import check_policy, hash_password
from core.services.auth import END_DEACTIVATED, END_FORCED, END_ROLE, AuthService
from core.services.base import ServiceBase
from core.services.household import attach_login, check_new_member
from core.text import clean_email, clean_name
from db.models import MemberRow, UserRow

USERNAME_RULE = "a username is 3-32 characters: lowercase letters, digits, '.', '_' or '-'"
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{2,31}$")


def to_user(row: UserRow, member_id: int | None) -> User:
    """Map a row to the domain type (never exposes the hash or TOTP secret)."""
    return User(
        id=row.id,
        household_id=row.household_id,
        username=row.username,
        display_name=row.display_name,
        email=row.email,
        role=row.role,
        is_active=row.is_active,
        totp_enabled=row.totp_enabled_at is not None,
        created_at=row.created_at,
        member_id=member_id,
    )


def _article(role: Role) -> str:
    return "an" if role.value[0] in "aeiou" else "a"


def _keep_an_admin(session: Session, row: UserRow, change: str) -> None:
    """Refuse a change that would leave ``row``'s household without an active admin.

    Only an admin manages a household's logins and members day to day (a super admin runs the
    desk), so the last one may be neither demoted nor disabled.
    """
    if row.role is not Role.ADMIN or not row.is_active:
        return
    # Lock the household's active admins (PostgreSQL): two admins demoting each other at once
    # are decided one after the other, so the second sees the first's change and is refused.
    admins = session.scalars(select(UserRow.id).where(
        UserRow.household_id == row.household_id, UserRow.role == Role.ADMIN,
        UserRow.is_active.is_(True)).order_by(UserRow.id).with_for_update()).all()
    if not set(admins) - {row.id}:
        raise ValidationError(
            f"You cannot {change}: they are the household's last active admin, and a household "
            "keeps at least one; make another login an admin first")


class UserService(ServiceBase):
    """Create, list, change and log out users."""

    def __init__(self, auth: AuthService) -> None:
        """Share the database and settings of ``auth``."""
        super().__init__(auth.db, auth.settings)
        self._auth = auth

    def _require_manager(
        self, session: Session, actor: Actor, household_id: int, action: str
    ) -> Role:
        role = self._fresh_role(session, actor)
        if not authz.may_manage_users(role, household_id == actor.household_id):
            self._deny(
                actor,
                action,
                f"household:{household_id}",
                f"Your role {role.value!r} may not manage users of household {household_id}",
            )
        return role

    def list_users(self, actor: Actor, household_id: int | None = None) -> list[User]:
        """Return the household's users (admins) or every user (super admin, household None)."""
        target = household_id if household_id is not None else actor.household_id
        with self.db.transaction() as session:
            role = self._require_manager(session, actor, target, "users.list")
            query = select(UserRow, MemberRow.id).outerjoin(
                MemberRow, MemberRow.user_id == UserRow.id
            )
            if not (role is Role.SUPER_ADMIN and household_id is None):
                query = query.where(UserRow.household_id == target)
            rows = session.execute(query.order_by(UserRow.username)).all()
            return [to_user(row, member_id) for row, member_id in rows]

    def create_user(
        self,
        actor: Actor,
        username: str,
        display_name: str,
        password: str,
        role: str,
        relationship: str | None = None,
        email: str | None = None,
        household_id: int | None = None,
        member_id: int | None = None,
    ) -> User:
        """Create a login: with ``relationship``, for a new household member it belongs to.

        With ``member_id`` instead, the login belongs to that existing member of the household,
        who must have no login yet.
        """
        name = username.strip().lower()
        target = household_id if household_id is not None else actor.household_id
        parsed_role = parse_choice(Role, role, "role")
        parsed_rel = None
        if relationship:
            parsed_rel = parse_choice(Relationship, relationship, "relationship")
        if parsed_rel is not None and member_id is not None:
            raise ValidationError(
                "Choose either a relationship (a new member) or an existing member for the "
                "login, not both")
        if not USERNAME_PATTERN.match(name):
            raise ValidationError(f"Invalid username {username!r}: {USERNAME_RULE}")
        display_name = clean_name(display_name, "Display name")
        email = clean_email(email)
        check_policy(password, name)
        with self.db.transaction() as session:
            self._require_manager(session, actor, target, "users.create")
            self._require_assignable(session, actor, parsed_role, "users.create", f"user:{name}")
            if session.scalar(select(UserRow.id).where(UserRow.username == name)) is not None:
                raise ValidationError(f"Username {name!r} is already taken; choose another")
            if parsed_rel is not None:
                check_new_member(session, target, parsed_rel, display_name)
            row = UserRow(
                household_id=target,
                username=name,
                display_name=display_name,
                email=email,
                password_hash=hash_password(password, self.settings.bcrypt_rounds),
                role=parsed_role,
                password_changed_at=now_ist(),
            )
            session.add(row)
            session.flush()
            if member_id is not None:
                attach_login(session, target, member_id, row)
            elif parsed_rel is not None:
                member = MemberRow(
                    household_id=target,
                    full_name=row.display_name,
                    relationship=parsed_rel,
                    user_id=row.id,
                )
                session.add(member)
                session.flush()
                member_id = member.id
            self._audit(
                session,
                actor,
                "users.create",
                f"user:{name}",
                {"role": parsed_role.value, "relationship": parsed_rel and parsed_rel.value}
                | ({"member_id": member_id} if member_id is not None else {}),
                household_id=target,
            )
            return to_user(row, member_id)

    def _require_assignable(
        self, session: Session, actor: Actor, role: Role, action: str, resource: str
    ) -> None:
        """Refuse (audited) giving ``role`` unless the actor may: see authz.may_assign_role."""
        mine = self._fresh_role(session, actor)
        if not authz.may_assign_role(mine, role):
            self._deny(actor, action, resource,
                       f"Your role {mine.value!r} may not give the {role.value!r} role: "
                       f"{authz.ASSIGN_RULE}")

    def _target(self, session: Session, actor: Actor, user_id: int, action: str) -> UserRow:
        row = session.get(UserRow, user_id)
        if row is None:
            # Same refusal as a foreign user: ids reveal nothing.
            self._fresh_role(session, actor)
            self._deny(actor, action, f"user:{user_id}", f"User {user_id} is not in your household")
        role = self._require_manager(session, actor, row.household_id, action)
        # A manager may not change a login of their own rank or above: one admin could
        # otherwise reset another's password (or demote them) and take the household over.
        if row.role in (Role.SUPER_ADMIN, Role.ADMIN) and role is not Role.SUPER_ADMIN and (
                row.id != actor.user_id):
            self._deny(
                actor,
                action,
                f"user:{row.username}",
                f"Only a super admin may change the {row.role.value!r} login "
                f"{row.username!r}",
            )
        return row

    def set_role(self, actor: Actor, user_id: int, role: str) -> None:
        """Change a user's role; their sessions end so the new role applies at once."""
        parsed = parse_choice(Role, role, "role")
        with self.db.transaction() as session:
            row = self._target(session, actor, user_id, "users.set_role")
            if parsed is row.role:
                raise ValidationError(
                    f"{row.username!r} is already {_article(parsed)} {parsed.value}; "
                    "nothing was changed")
            if row.id == actor.user_id:
                raise ValidationError("You cannot change your own role; ask another admin")
            self._require_assignable(session, actor, parsed, "users.set_role",
                                     f"user:{row.username}")
            if parsed not in authz.USER_MANAGERS:
                _keep_an_admin(session, row, f"demote {row.username!r}")
            old = row.role
            row.role = parsed
            self._auth.end_sessions(session, [row.id], END_ROLE, None)
            self._audit(
                session,
                actor,
                "users.set_role",
                f"user:{row.username}",
                {"from": old.value, "to": parsed.value},
                household_id=row.household_id,
            )

    def set_active(self, actor: Actor, user_id: int, active: bool) -> None:
        """Enable or disable a login; disabling ends its sessions."""
        with self.db.transaction() as session:
            row = self._target(session, actor, user_id, "users.set_active")
            if row.id == actor.user_id and not active:
                raise ValidationError("You cannot deactivate your own login")
            if not active:
                _keep_an_admin(session, row, f"disable {row.username!r}")
            row.is_active = active
            if not active:
                self._auth.end_sessions(session, [row.id], END_DEACTIVATED, None)
            self._audit(
                session,
                actor,
                "users.set_active",
                f"user:{row.username}",
                {"active": active},
                household_id=row.household_id,
            )

    def reset_password(self, actor: Actor, user_id: int, new_password: str) -> None:
        """Set a new password for another user; their sessions end."""
        with self.db.transaction() as session:
            row = self._target(session, actor, user_id, "users.reset_password")
            if row.id == actor.user_id:
                raise ValidationError(
                    "You cannot reset your own password here; change it on Profile → Change "
                    "password, which asks for the current one")
            check_policy(new_password, row.username)
            row.password_hash = hash_password(new_password, self.settings.bcrypt_rounds)
            row.password_changed_at = now_ist()
            self._auth.end_sessions(session, [row.id], END_FORCED, None)
            self._audit(
                session,
                actor,
                "users.reset_password",
                f"user:{row.username}",
                household_id=row.household_id,
            )

    def force_logout_all(self, actor: Actor, household_id: int | None = None) -> int:
        """End every active session of the household (super admin with None: of the desk)."""
        target = household_id if household_id is not None else actor.household_id
        with self.db.transaction() as session:
            role = self._require_manager(session, actor, target, "users.force_logout_all")
            everyone = household_id is None and role is Role.SUPER_ADMIN
            count = self._auth.end_sessions(session, None, END_FORCED, None if everyone else target)
            self._audit(
                session,
                actor,
                "users.force_logout_all",
                "desk" if everyone else f"household:{target}",
                {"sessions_ended": count},
            )
            return count

    def count_users(self) -> int:
        """Return how many users exist (seeding uses this; no actor needed)."""
        with self.db.transaction() as session:
            return int(session.scalar(select(func.count()).select_from(UserRow)) or 0)
