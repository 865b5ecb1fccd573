"""Planning Telegram deliveries of outbox alerts: recipients, their choices, dedupe, records.

For one alert, :meth:`TelegramDeliveries.plan` names every recipient and what to do for each:

* recipients: the alert's one user (``user_id``); for an account alert the household's active
  users who may view the account (``core.authz``: owner, grantees, household admins); for a
  household alert every active user of the household;
* a recipient already in ``alert_deliveries`` for the alert is left out (a retried alert never
  reaches anyone twice);
* a recipient without a linked chat is skipped ("no Telegram chat linked");
* the recipient's preferences decide (:func:`core.alert_types.decide`): off, below the signal
  threshold, silent, do-not-disturb;
* the same message (account, title and body) sent to the same user within
  :data:`DEDUPE_WINDOW` is skipped as a duplicate.

The dispatcher sends what is to be sent and calls :meth:`TelegramDeliveries.record_delivery`
for every planned delivery.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core import alerts, authz
from core.alert_types import (
    DEFAULT_PREFS,
    AlertType,
    Mode,
    NotificationPrefs,
    account_line,
    alert_text,
    decide,
)
from core.alerts import Alert
from core.clock import to_ist
from core.domain import Actor
from core.errors import ValidationError
from core.services.base import ServiceBase
from core.services.household import HouseholdService
from db.base import utcnow
from db.models import (
    AccountRow,
    AlertDeliveryRow,
    AlertPreferenceRow,
    MemberRow,
    NotificationSettingsRow,
    TelegramLinkRow,
    UserRow,
)

#: The same message to the same user within this window is sent once.
DEDUPE_WINDOW = timedelta(seconds=60)
#: What a per-recipient delivery ends as.
DELIVERY_STATUSES = ("sent", "skipped", "failed")
NOT_LINKED = "no Telegram chat linked"
REASON_CHARS = 300
_TYPES = frozenset(t.value for t in AlertType)
_MODES = frozenset(m.value for m in Mode)


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    """One recipient of one alert: the chat, the message and whether (and how) to send it.

    ``skip_reason`` None: send ``text`` to ``chat_id`` (without sound if ``silent``).
    """

    alert_id: int
    user_id: int
    chat_id: int | None
    text: str
    silent: bool
    skip_reason: str | None
    content_hash: str


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """How one alert reached one person, for the Alerts page."""

    username: str
    display_name: str
    status: str  # sent | skipped | failed
    silent: bool
    reason: str | None
    at: datetime


def load_prefs(session: Session, user_id: int) -> NotificationPrefs:
    """Return a user's stored preferences, the defaults filling what they never chose."""
    modes = dict(DEFAULT_PREFS.modes)
    for alert_type, mode in session.execute(
            select(AlertPreferenceRow.alert_type, AlertPreferenceRow.mode)
            .where(AlertPreferenceRow.user_id == user_id)):
        if alert_type in _TYPES and mode in _MODES:
            modes[AlertType(alert_type)] = Mode(mode)
    row = session.get(NotificationSettingsRow, user_id)
    if row is None:
        return NotificationPrefs(MappingProxyType(modes), DEFAULT_PREFS.dnd_start,
                                 DEFAULT_PREFS.dnd_end, DEFAULT_PREFS.daily_summary_time,
                                 DEFAULT_PREFS.signal_min_probability)
    return NotificationPrefs(MappingProxyType(modes), row.dnd_start, row.dnd_end,
                             row.daily_summary_time, row.signal_min_probability)


def message_hash(account_label: str | None, alert: Alert) -> str:
    """Return the SHA-256 of a message's content (account, title, body; not its time)."""
    content = "\n".join((account_line(alert, account_label), alert.title, alert.body))
    return hashlib.sha256(content.encode()).hexdigest()


class TelegramDeliveries(ServiceBase):
    """Delivery planning and records; part of :class:`core.services.telegram.TelegramService`."""

    household: HouseholdService

    def _recipients(self, session: Session, alert: Alert,
                    account: AccountRow | None) -> list[UserRow]:
        """Return the active users an alert is for (see the module docstring)."""
        query = select(UserRow).where(UserRow.household_id == alert.household_id,
                                      UserRow.is_active.is_(True)).order_by(UserRow.id)
        if alert.user_id is not None:
            query = query.where(UserRow.id == alert.user_id)
        users = list(session.scalars(query))
        if account is None or alert.user_id is not None:
            return users
        members = dict(session.execute(select(MemberRow.user_id, MemberRow.id).where(
            MemberRow.household_id == alert.household_id, MemberRow.user_id.is_not(None))).all())
        viewers = []
        for user in users:
            actor = Actor(user_id=user.id, username=user.username, display_name=user.display_name,
                          role=user.role, household_id=user.household_id,
                          member_id=members.get(user.id))
            facts = self.household._facts(session, actor, account, user.role)
            if authz.account_permission(facts) is not None:
                viewers.append(user)
        return viewers

    def plan(self, alert: Alert, now: datetime) -> list[PlannedDelivery]:
        """Return each recipient of ``alert`` with what to send them (system call).

        Parameters
        ----------
        alert : Alert
            The outbox alert to deliver.
        now : datetime
            When the messages go out (aware): the DND window and the dedupe window use it.

        Returns
        -------
        list[PlannedDelivery]
            One per recipient not yet recorded for this alert, ordered by user id.
        """
        with self.db.reading() as session:
            account = session.get(AccountRow, alert.account_id) if alert.account_id else None
            label = account.label if account is not None else None
            text = alert_text(alert, label)
            digest = message_hash(label, alert)
            done = set(session.scalars(select(AlertDeliveryRow.user_id)
                                       .where(AlertDeliveryRow.alert_id == alert.id)))
            users = [u for u in self._recipients(session, alert, account) if u.id not in done]
            chats = dict(session.execute(select(TelegramLinkRow.user_id, TelegramLinkRow.chat_id)
                                         .where(TelegramLinkRow.user_id.in_([u.id for u in users])))
                         .all())
            planned = []
            for user in users:
                chat_id = chats.get(user.id)
                skip, silent = (NOT_LINKED, False) if chat_id is None else (None, False)
                if chat_id is not None:
                    decision = decide(alert, load_prefs(session, user.id), now)
                    skip = None if decision.send else decision.reason
                    silent = decision.silent
                    if skip is None:
                        skip = _duplicate(session, alert.id, user.id, digest, now)
                planned.append(PlannedDelivery(alert.id, user.id, chat_id, text, silent, skip,
                                               digest))
            return planned

    def record_delivery(self, planned: PlannedDelivery, status: str,
                        message_id: int | None = None, reason: str | None = None) -> None:
        """Record how one planned delivery ended (once: a second record is ignored).

        ``reason`` defaults to the plan's ``skip_reason``.

        Raises
        ------
        ValidationError
            For a status other than sent, skipped or failed.
        """
        if status not in DELIVERY_STATUSES:
            raise ValidationError(f"Delivery status must be one of {', '.join(DELIVERY_STATUSES)}"
                                  f"; got {status!r}")
        why = reason if reason is not None else planned.skip_reason
        with self.db.transaction() as session:
            insert = pg_insert if session.get_bind().dialect.name == "postgresql" \
                else sqlite_insert
            session.execute(insert(AlertDeliveryRow).values(
                alert_id=planned.alert_id, user_id=planned.user_id, chat_id=planned.chat_id,
                status=status, silent=planned.silent and status == "sent",
                reason=why[:REASON_CHARS] if why else None, content_hash=planned.content_hash,
                message_id=message_id, created_at=utcnow(),
            ).on_conflict_do_nothing(index_elements=[AlertDeliveryRow.alert_id,
                                                     AlertDeliveryRow.user_id]))

    def recent_alerts(self, actor: Actor,
                      limit: int = 50) -> list[tuple[Alert, list[DeliveryView]]]:
        """Return the newest alerts the actor may see, each with its per-recipient delivery.

        The alerts are those of the household and of the accounts the actor may view (and the
        actor's own); household admins see every recipient's delivery, others only their own.
        """
        account_ids = [a.id for a in self.household.list_accounts(actor, include_closed=True)]
        with self.db.transaction() as session:
            role = self._fresh_role(session, actor)
            found = alerts.recent(session, actor.household_id, account_ids, limit,
                                  user_id=actor.user_id)
            query = (select(AlertDeliveryRow, UserRow.username, UserRow.display_name)
                     .join(UserRow, UserRow.id == AlertDeliveryRow.user_id)
                     .where(AlertDeliveryRow.alert_id.in_([a.id for a in found]))
                     .order_by(AlertDeliveryRow.id))
            if role not in authz.HOUSEHOLD_MANAGERS:
                query = query.where(AlertDeliveryRow.user_id == actor.user_id)
            views: dict[int, list[DeliveryView]] = {}
            for row, username, name in session.execute(query):
                views.setdefault(row.alert_id, []).append(DeliveryView(
                    username, name, row.status, row.silent, row.reason, to_ist(row.created_at)))
            return [(alert, views.get(alert.id, [])) for alert in found]


def _duplicate(session: Session, alert_id: int, user_id: int, digest: str,
               now: datetime) -> str | None:
    """Return "duplicate of alert N" if the same message reached the user within the window."""
    earlier = session.scalar(
        select(AlertDeliveryRow.alert_id).where(
            AlertDeliveryRow.user_id == user_id, AlertDeliveryRow.content_hash == digest,
            AlertDeliveryRow.status == "sent", AlertDeliveryRow.alert_id != alert_id,
            AlertDeliveryRow.created_at > now - DEDUPE_WINDOW)
        .order_by(AlertDeliveryRow.created_at.desc()).limit(1))
    return None if earlier is None else f"duplicate of alert {earlier}"
