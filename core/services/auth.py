"""Login, server-side sessions, lockouts, password change and TOTP two-factor login.

The browser's re-login cookie (streamlit-authenticator's signed JWT) is only honoured while the
server-side session it was issued with is active: logout, password change, force-logout and the
daily expiry end the session here, and the cookie dies with it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from core import alerts, audit
from core.clock import format_ist, next_expiry_after, now_ist, to_ist
from core.crypto import SecretBox
from core.domain import Actor, ClientInfo, SessionInfo
from core.errors import AuthenticationError, SessionInvalid, ValidationError
from core.passwords import check_policy, hash_password, verify_password
from core.services.base import ServiceBase
from db.models import AuditRow, MemberRow, SessionRow, UserRow

# ASCII digits: \d would take any script's (१२३४५६), and such a code could only be "wrong".
TOTP_PATTERN = re.compile(r"^[0-9]{6}$")
TOTP_ISSUER = "SHER"
END_LOGOUT = "logout"
END_PASSWORD = "password changed"  # noqa: S105 - a reason label, not a secret
END_FORCED = "forced logout"
END_EXPIRED = "daily expiry"
END_DEACTIVATED = "user deactivated"
END_ROLE = "role changed"
#: What a deactivated user is told: on their live session's next use, and at login once the
#: password they typed is right (a wrong one gets the generic refusal, revealing nothing).
DEACTIVATED = "Your login was deactivated; ask a household admin"
#: Logged-in users are warned this long before the daily session expiry.
WARN_BEFORE_EXPIRY = timedelta(minutes=15)
#: Users logged out by the daily expiry this recently get a logout alert.
LOGOUT_ALERT_WINDOW = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class LoginResult:
    """Either a session id, or a request for the TOTP code."""

    session_id: str | None
    needs_totp: bool = False
    username: str = ""


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    """A fresh TOTP secret to show once (QR and text) before the user confirms a code."""

    secret: str
    uri: str


class AuthService(ServiceBase):
    """Credentials and sessions. UI code never touches hashes or session rows directly."""

    # -- credentials for the login widget ---------------------------------------------------
    def credentials(self) -> dict[str, dict[str, dict[str, object]]]:
        """Return active users in streamlit-authenticator's credentials shape (from the DB)."""
        since = now_ist() - timedelta(minutes=self.settings.login_lockout_minutes)
        with self.db.transaction() as session:
            users = session.scalars(select(UserRow).where(UserRow.is_active.is_(True))).all()
            failures = dict(
                session.execute(
                    select(AuditRow.resource, func.count())
                    .where(AuditRow.action == "auth.login_failed", AuditRow.created_at >= since)
                    .group_by(AuditRow.resource)
                ).all()
            )
        return {
            "usernames": {
                u.username: {
                    "name": u.display_name,
                    "email": u.email or "",
                    "password": u.password_hash,
                    "roles": [str(u.role)],
                    "failed_login_attempts": failures.get(f"user:{u.username}", 0),
                }
                for u in users
            }
        }

    # -- lockout ---------------------------------------------------------------------------
    def _lockout_end(self, condition: ColumnElement[bool], limit: int) -> datetime | None:
        """Return when a lockout over failures matching ``condition`` ends, or None."""
        window = timedelta(minutes=self.settings.login_lockout_minutes)
        with self.db.transaction() as session:
            times = session.scalars(
                select(AuditRow.created_at)
                .where(
                    AuditRow.action == "auth.login_failed",
                    condition,
                    AuditRow.created_at >= now_ist() - window,
                )
                .order_by(AuditRow.created_at.desc())
                .limit(limit)
            ).all()
        return times[0] + window if len(times) >= limit else None

    def locked_until(self, username: str) -> datetime | None:
        """Return when the username's lockout ends, or None if it may try now."""
        return self._lockout_end(
            AuditRow.resource == f"user:{username.lower()}", self.settings.login_max_failures
        )

    def client_locked_until(self, client: ClientInfo) -> datetime | None:
        """Return when the client address's lockout ends (many usernames tried), or None."""
        if not client.ip:
            return None
        return self._lockout_end(
            AuditRow.client_ip == client.ip, self.settings.login_max_failures_per_ip
        )

    def refuse_if_locked(self, username: str | None, client: ClientInfo) -> None:
        """Raise AuthenticationError stating the rule if the client or the username is locked."""
        minutes = self.settings.login_lockout_minutes
        until = self.client_locked_until(client)
        if until is not None:
            raise AuthenticationError(
                f"Login locked for address {client.ip}: "
                f"{self.settings.login_max_failures_per_ip} failed attempts within {minutes} "
                f"minutes; try again after {format_ist(until)}"
            )
        until = self.locked_until(username) if username else None
        if until is not None:
            raise AuthenticationError(
                f"Login locked for {username!r}: {self.settings.login_max_failures} failed "
                f"attempts within {minutes} minutes; try again after {format_ist(until)}"
            )

    def record_failure(self, username: str | None, client: ClientInfo, reason: str) -> None:
        """Audit a failed login (counts toward the lockout)."""
        name = (username or "").strip().lower()
        with self.db.transaction() as session:
            row = session.scalar(select(UserRow).where(UserRow.username == name)) if name else None
            audit.append(
                session,
                audit.AuditEvent(
                    action="auth.login_failed",
                    resource=f"user:{name or '?'}",
                    actor_user_id=row.id if row else None,
                    actor_username=name[:32] or None,
                    household_id=row.household_id if row else None,
                    outcome=audit.FAILED,
                    details={"reason": reason},
                    client=client,
                ),
            )

    # -- login -----------------------------------------------------------------------------
    def login(
        self, username: str, password: str, client: ClientInfo, totp_code: str | None = None
    ) -> LoginResult:
        """Check password (and TOTP when enabled) and open a session; audit either outcome."""
        name = username.strip().lower()
        self.refuse_if_locked(name, client)
        self.refuse_deactivated(name, password, client)
        with self.db.transaction() as session:
            row = session.scalar(select(UserRow).where(UserRow.username == name))
            ok = row is not None and row.is_active and verify_password(password, row.password_hash)
        if not ok:
            self.record_failure(name, client, "wrong username or password")
            raise AuthenticationError("Username or password is incorrect")
        return self.password_verified(name, client, totp_code)

    def refuse_deactivated(self, username: str, password: str, client: ClientInfo) -> None:
        """Raise AuthenticationError(DEACTIVATED) if this is a deactivated user's right password.

        The refusal is audited as ``auth.login_refused``, not as a failed login: it does not
        count toward a lockout. Anything else returns quietly, for the generic refusal.
        """
        name = username.strip().lower()
        with self.db.transaction() as session:
            row = session.scalar(select(UserRow).where(UserRow.username == name))
            if row is None or row.is_active or not verify_password(password, row.password_hash):
                return
            _audit_login(session, row, "auth.login_refused", client,
                         {"reason": END_DEACTIVATED}, audit.DENIED)
        raise AuthenticationError(DEACTIVATED)

    def password_verified(
        self,
        username: str,
        client: ClientInfo,
        totp_code: str | None = None,
        cookie_claims: tuple[str, float] | None = None,
    ) -> LoginResult:
        """Continue a login whose password was verified against the stored bcrypt hash.

        The login widget (streamlit-authenticator) verifies the password against the hash from
        :meth:`credentials`; this step applies the lockout, TOTP and opens the session.
        """
        name = username.strip().lower()
        self.refuse_if_locked(name, client)
        with self.db.transaction() as session:
            row = session.scalar(select(UserRow).where(UserRow.username == name))
            if row is None:
                raise AuthenticationError(f"User {name!r} is not active")
            if not row.is_active:
                raise AuthenticationError(DEACTIVATED)
            if row.totp_enabled_at is not None:
                if not totp_code:
                    return LoginResult(None, needs_totp=True, username=name)
                self._check_totp(row, totp_code, client)
            now = now_ist()
            session_id = secrets.token_hex(32)
            session.add(
                SessionRow(
                    id=session_id,
                    user_id=row.id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=next_expiry_after(now, self.settings.session_expiry_time),
                    cookie_fingerprint=self._fingerprint(*cookie_claims) if cookie_claims else None,
                    client_ip=client.ip,
                    user_agent=(client.user_agent or "")[:300] or None,
                )
            )
            _audit_login(session, row, "auth.login", client,
                         {"two_factor": row.totp_enabled_at is not None})
        return LoginResult(session_id, username=name)

    def _check_totp(self, row: UserRow, code: str, client: ClientInfo) -> None:
        """Verify a TOTP code (one step of drift either way) and refuse replays."""
        code = code.strip().replace(" ", "")
        if not TOTP_PATTERN.match(code):
            raise ValidationError(f"The 2FA code must be exactly 6 digits; got {code!r}")
        secret = self._box().decrypt(row.totp_secret_enc or "", f"user:{row.id}")
        totp = pyotp.TOTP(secret)
        now = now_ist()
        step = None
        for drift in (-1, 0, 1):
            at = now + timedelta(seconds=30 * drift)
            if totp.verify(code, for_time=at, valid_window=0):
                step = totp.timecode(at)
                break
        if step is None or (row.totp_last_step is not None and step <= row.totp_last_step):
            self.record_failure(row.username, client, "wrong or reused 2FA code")
            raise AuthenticationError("The 2FA code is wrong or was already used")
        row.totp_last_step = step

    # -- sessions --------------------------------------------------------------------------
    def _fingerprint(self, username: str, exp_date: float) -> str:
        key = self.settings.resolved_secret_key()
        return hashlib.sha256(f"{key}|{username}|{exp_date!r}".encode()).hexdigest()

    def bind_cookie(self, session_id: str, username: str, exp_date: float) -> None:
        """Tie the re-login cookie's signed claims to this server-side session."""
        with self.db.transaction() as session:
            session.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id)
                .values(cookie_fingerprint=self._fingerprint(username, exp_date))
            )

    def session_for_cookie(self, username: str, exp_date: float) -> str | None:
        """Return the active session a cookie belongs to, or None (cookie alone proves nothing)."""
        with self.db.transaction() as session:
            row = session.scalar(
                select(SessionRow).where(
                    SessionRow.cookie_fingerprint == self._fingerprint(username, exp_date),
                    SessionRow.ended_at.is_(None),
                )
            )
            if row is None or now_ist() >= self._expiry(row):
                return None
            return row.id

    def check_session(self, session_id: str, client: ClientInfo | None = None) -> Actor:
        """Return the actor of an active session, or raise SessionInvalid saying why not."""
        now = now_ist()
        refusal: SessionInvalid | None = None
        with self.db.transaction() as session:
            row = session.get(SessionRow, session_id)
            if row is None:
                raise SessionInvalid("Session not found; log in again")
            if row.ended_at is not None:
                raise SessionInvalid(f"Session ended ({row.end_reason}); log in again")
            user = session.get(UserRow, row.user_id)
            # A refusal that ends the session is raised after the transaction commits the end
            # (raising inside it would roll the end back).
            if now >= self._expiry(row):
                self._end([row], END_EXPIRED)
                refusal = SessionInvalid(
                    f"Session expired at {format_ist(self._expiry(row))} "
                    f"(daily expiry {self.settings.session_expiry_time:%H:%M} IST); log in again"
                )
            elif user is None or not user.is_active:
                self._end([row], END_DEACTIVATED)
                refusal = SessionInvalid(DEACTIVATED)
            if refusal is None and user is not None:
                member_id = session.scalar(select(MemberRow.id).where(MemberRow.user_id == user.id))
                row.last_seen_at = now
                return Actor(
                    user_id=user.id,
                    username=user.username,
                    display_name=user.display_name,
                    role=user.role,
                    household_id=user.household_id,
                    member_id=member_id,
                    session_id=row.id,
                    client=client or ClientInfo(ip=row.client_ip, user_agent=row.user_agent),
                )
        raise refusal or SessionInvalid("Session not found; log in again")

    def _expiry(self, row: SessionRow) -> datetime:
        """Return when a session ends: the first daily expiry after it began."""
        boundary = next_expiry_after(row.created_at, self.settings.session_expiry_time)
        return min(boundary, row.expires_at)

    @staticmethod
    def _end(rows: list[SessionRow], reason: str) -> int:
        now = now_ist()
        for row in rows:
            row.ended_at = now
            row.end_reason = reason
        return len(rows)

    def logout(self, actor: Actor) -> None:
        """End the actor's current session server-side."""
        with self.db.transaction() as session:
            row = session.get(SessionRow, actor.session_id) if actor.session_id else None
            if row is not None and row.ended_at is None:
                self._end([row], END_LOGOUT)
            self._audit(session, actor, "auth.logout", f"user:{actor.username}")

    def end_sessions(
        self, session: Session, user_ids: list[int] | None, reason: str, household_id: int | None
    ) -> int:
        """End active sessions of the given users (None = everyone in ``household_id``/all)."""
        query = select(SessionRow).where(SessionRow.ended_at.is_(None))
        if user_ids is not None:
            query = query.where(SessionRow.user_id.in_(user_ids))
        elif household_id is not None:
            members = select(UserRow.id).where(UserRow.household_id == household_id)
            query = query.where(SessionRow.user_id.in_(members))
        return self._end(list(session.scalars(query).all()), reason)

    def expire_due_sessions(self) -> int:
        """End every session past its daily expiry (the worker runs this); return how many."""
        now = now_ist()
        with self.db.transaction() as session:
            rows = [
                r
                for r in session.scalars(select(SessionRow).where(SessionRow.ended_at.is_(None)))
                if now >= self._expiry(r)
            ]
            count = self._end(rows, END_EXPIRED)
            if count:
                audit.append(
                    session,
                    audit.AuditEvent(
                        action="auth.sessions_expired",
                        resource="sessions",
                        details={"count": count},
                    ),
                )
        return count

    def warn_expiring_sessions(self, now: datetime | None = None) -> int:
        """Alert every logged-in user whose session ends at the daily expiry within 15 minutes.

        One ``auth.session_expiry`` alert per user (``user_id`` set), deduplicated by user and
        expiry date, so running this twice (a retry, a restart) warns once; written with one
        audit row per household in the same transaction. Sessions already ended, or of
        deactivated users, get nothing. Return how many users were newly warned.
        """
        now = _aware(now)
        expiry = f"{self.settings.session_expiry_time:%H:%M} IST"
        with self.db.transaction() as session:
            found = _sessions_with_users(
                session, SessionRow.ended_at.is_(None), UserRow.is_active.is_(True))
            ending = [(user, ends) for row, user in found
                      if (ends := self._expiry(row)) - WARN_BEFORE_EXPIRY <= now < ends]
            warned = [
                user for user, ends in ending
                if _session_alert(
                    session, user, ends, now, kind="auth.session_expiry", key="session-expiry",
                    severity="warning",
                    title=f"Your SHER login ends at {to_ist(ends):%H:%M} IST "
                          f"(in {max(round((ends - now).total_seconds() / 60), 1)} min)",
                    body=f"Every session ends at the daily expiry ({expiry}); yours ends at "
                         f"{format_ist(ends)}. Finish what you are doing and log in again "
                         "after it.")
            ]
            _audit_session_alerts(session, "auth.session_expiry_warned", warned)
        return len(warned)

    def alert_expired_logouts(self, now: datetime | None = None) -> int:
        """Alert every user logged out by the daily expiry in the last hour, once per expiry.

        The hour counts from the expiry (03:00 IST), not from when the worker ended the
        session: after a worker outage over the expiry, a logout more than an hour old is not
        alerted at all (the member already met the login page; a late alert would say nothing
        new, ring in the middle of the day and read as a fresh logout).

        The worker runs this after :meth:`expire_due_sessions`; one ``auth.logout`` alert per
        user (``user_id`` set), deduplicated by user and expiry date, with one audit row per
        household. Return how many users were newly alerted.
        """
        now = _aware(now)
        expiry = f"{self.settings.session_expiry_time:%H:%M} IST"
        with self.db.transaction() as session:
            found = _sessions_with_users(
                session, SessionRow.end_reason == END_EXPIRED,
                SessionRow.ended_at >= now - LOGOUT_ALERT_WINDOW, SessionRow.ended_at <= now)
            # The grace counts from the expiry itself, not from when the worker ended the row:
            # a worker back hours after 03:00 must not ring phones with a stale logout.
            alerted = [
                user for row, user in found
                if now - (ends := self._expiry(row)) <= LOGOUT_ALERT_WINDOW and _session_alert(
                    session, user, ends, now, kind="auth.logout",
                    key="session-logout", severity="info",
                    title=f"You were logged out of SHER at {to_ist(ends):%H:%M} IST",
                    body=f"Every session ends at the daily expiry ({expiry}); log in again to "
                         "use the desk. Orders and the worker's jobs are not affected.")
            ]
            _audit_session_alerts(session, "auth.logout_alerted", alerted)
        return len(alerted)

    def my_sessions(self, actor: Actor, limit: int = 20) -> list[SessionInfo]:
        """Return the actor's recent sessions (newest first), without their ids in full."""
        with self.db.transaction() as session:
            rows = session.scalars(
                select(SessionRow)
                .where(SessionRow.user_id == actor.user_id)
                .order_by(SessionRow.created_at.desc())
                .limit(limit)
            ).all()
            return [
                SessionInfo(
                    id_prefix=r.id[:8],
                    username=actor.username,
                    created_at=r.created_at,
                    last_seen_at=r.last_seen_at,
                    expires_at=r.expires_at,
                    ended_at=r.ended_at,
                    end_reason=r.end_reason,
                    client=ClientInfo(ip=r.client_ip, user_agent=r.user_agent).describe(),
                )
                for r in rows
            ]

    # -- password --------------------------------------------------------------------------
    def change_password(self, actor: Actor, current: str, new: str) -> None:
        """Change the actor's password; every session of theirs ends (log in again)."""
        with self.db.transaction() as session:
            row = session.get(UserRow, actor.user_id)
            if row is None or not verify_password(current, row.password_hash):
                raise ValidationError("The current password is incorrect")
            if current == new:
                raise ValidationError("The new password must differ from the current one")
            check_policy(new, row.username)
            row.password_hash = hash_password(new, self.settings.bcrypt_rounds)
            row.password_changed_at = now_ist()
            ended = self.end_sessions(session, [row.id], END_PASSWORD, None)
            self._audit(
                session,
                actor,
                "auth.password_changed",
                f"user:{row.username}",
                {"sessions_ended": ended},
            )

    # -- TOTP ------------------------------------------------------------------------------
    def _box(self) -> SecretBox:
        return SecretBox(self.settings.resolved_secret_key(), "totp")

    def start_totp(self, actor: Actor) -> TotpEnrolment:
        """Return a new secret and provisioning URI; nothing is stored until confirmed."""
        secret = pyotp.random_base32()
        uri = pyotp.TOTP(secret).provisioning_uri(name=actor.username, issuer_name=TOTP_ISSUER)
        return TotpEnrolment(secret=secret, uri=uri)

    def confirm_totp(self, actor: Actor, secret: str, code: str) -> None:
        """Enable TOTP once the user proves their app shows the right code."""
        code = code.strip().replace(" ", "")
        if not TOTP_PATTERN.match(code):
            raise ValidationError(f"The 2FA code must be exactly 6 digits; got {code!r}")
        totp = pyotp.TOTP(secret)
        if not totp.verify(code, for_time=now_ist(), valid_window=1):
            raise ValidationError("That code does not match the new secret; check the app's clock")
        with self.db.transaction() as session:
            row = session.get(UserRow, actor.user_id)
            if row is None:
                raise SessionInvalid("User not found; log in again")
            row.totp_secret_enc = self._box().encrypt(secret, f"user:{row.id}")
            row.totp_enabled_at = now_ist()
            row.totp_last_step = totp.timecode(now_ist())
            self._audit(session, actor, "auth.totp_enabled", f"user:{row.username}")

    def disable_totp(self, actor: Actor, password: str) -> None:
        """Turn TOTP off after re-checking the password."""
        with self.db.transaction() as session:
            row = session.get(UserRow, actor.user_id)
            if row is None or not verify_password(password, row.password_hash):
                raise ValidationError("The password is incorrect")
            row.totp_secret_enc = None
            row.totp_enabled_at = None
            row.totp_last_step = None
            self._audit(session, actor, "auth.totp_disabled", f"user:{row.username}")

    def totp_enabled(self, actor: Actor) -> bool:
        """Return whether the actor logs in with a second factor."""
        with self.db.transaction() as session:
            row = session.get(UserRow, actor.user_id)
            return bool(row and row.totp_enabled_at)


def _audit_login(session: Session, row: UserRow, action: str, client: ClientInfo,
                 details: dict[str, object], outcome: str = audit.OK) -> None:
    """Audit a login (or its refusal) of the user ``row``."""
    audit.append(session, audit.AuditEvent(
        action=action, resource=f"user:{row.username}", actor_user_id=row.id,
        actor_username=row.username, household_id=row.household_id, outcome=outcome,
        details=details, client=client))


def _sessions_with_users(session: Session, *where: ColumnElement[bool]
                         ) -> list[tuple[SessionRow, UserRow]]:
    """Return the sessions matching ``where`` with their users, by user."""
    rows = session.execute(
        select(SessionRow, UserRow).join(UserRow, UserRow.id == SessionRow.user_id)
        .where(*where).order_by(SessionRow.user_id, SessionRow.created_at))
    return [(row, user) for row, user in rows]


def _session_alert(session: Session, user: UserRow, ends: datetime, now: datetime, *, kind: str,
                   key: str, severity: str, title: str, body: str) -> bool:
    """Enqueue a session alert for ``user``, once per user and expiry date; return if new."""
    return alerts.enqueue(
        session, kind=kind, household_id=user.household_id, account_id=None, user_id=user.id,
        severity=severity, urgent=severity != "info", title=title, body=body,
        dedupe_key=f"{key}:{user.id}:{to_ist(ends).date().isoformat()}", at=now)


def _audit_session_alerts(session: Session, action: str, users: list[UserRow]) -> None:
    """Record, per household, which users a session alert was written for."""
    names: dict[int, list[str]] = {}
    for user in users:
        names.setdefault(user.household_id, []).append(user.username)
    audit.append_many(session, [
        audit.AuditEvent(action=action, resource="sessions", household_id=household_id,
                         details={"users": usernames})
        for household_id, usernames in names.items()
    ])


def _aware(now: datetime | None) -> datetime:
    """Return ``now`` (default: the current time); refuse a naive time (its zone is unknown)."""
    if now is None:
        return now_ist()
    if now.tzinfo is None:
        raise ValidationError(f"The time must be time-zone aware; got {now.isoformat()}")
    return now
