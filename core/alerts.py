"""The alert outbox: alerts written with the change that caused them, delivered later.

A risk state, a triggered stop or a breached loss limit enqueues an alert **in the same
transaction** as the change, so an alert exists exactly when its cause was committed. The
worker (and, later, the Telegram bot) delivers pending rows and marks them delivered.

Each alert carries a ``dedupe_key`` (unique in the table): enqueueing the same event twice
writes one row. :func:`enqueue` inserts with ``ON CONFLICT (dedupe_key) DO NOTHING`` (SQLite
and PostgreSQL alike), so a duplicate — even one a concurrent writer commits at the same
moment — is skipped by the database without an error that would break the caller's
transaction. (A SAVEPOINT would not do: with Python's sqlite3 driver a SAVEPOINT that is the
transaction's first write opens its own transaction, and releasing it commits the alert
before its cause.)

An alert is for the household's (or its account's) people, or for one user (``user_id``: a
session-expiry warning). Delivery (status ``pending`` -> ``sent`` / ``skipped`` / ``failed``,
attempts, the next attempt) is :class:`core.services.outbox.OutboxService`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import Table, bindparam, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from core.clock import now_ist, to_ist
from core.errors import ValidationError
from db.models import AlertOutboxRow

#: How loud an alert is: ``critical`` stops trading (kill switch, panic, loss limit).
SEVERITIES = ("info", "warning", "critical")
#: Where an alert's delivery stands: due (``pending``) or settled for good (the other three).
STATUSES = ("pending", "sent", "skipped", "failed")
TITLE_CHARS = 200
KIND_CHARS = 40
DEDUPE_CHARS = 120


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert of the outbox, times in IST."""

    id: int
    created_at: datetime
    household_id: int
    account_id: int | None
    kind: str  # "risk.panic", "risk.daily_loss", "risk.stop_loss", "auth.session_expiry", ...
    severity: str
    title: str
    body: str
    status: str  # one of STATUSES
    delivered_at: datetime | None
    user_id: int | None = None  # the one user it is for; None: the household's/account's people
    urgent: bool = False
    attempts: int = 0
    last_error: str | None = None
    channel: str | None = None
    probability: Decimal | None = None  # a signal alert's probability (members' thresholds)


def enqueue(session: Session, *, kind: str, household_id: int, account_id: int | None,
            severity: str, title: str, body: str, dedupe_key: str, user_id: int | None = None,
            urgent: bool | None = None, at: datetime | None = None,
            probability: Decimal | None = None) -> bool:
    """Add an alert to the outbox inside the caller's transaction.

    Parameters
    ----------
    session : Session
        The caller's unit of work; the alert commits (or rolls back) with it.
    kind, severity, title, body : str
        What happened; ``severity`` is one of :data:`SEVERITIES`. A title past 200
        characters is cut.
    household_id, account_id : int, int | None
        Whose alert it is (``account_id`` None: the whole household).
    dedupe_key : str
        Names the event (e.g. ``"risk-state:12:engaged"``); at most 120 characters.
    user_id : int | None
        The one user the alert is for (None: the household's, or the account's, people).
    urgent : bool | None
        Deliver before other due alerts; None (default) makes ``critical`` alerts urgent.
    at : datetime | None
        When the event happened (default now): the alert's time, and when it is first due.
    probability : Decimal | None
        A signal alert's calibrated probability (0-1): each member's own threshold filters it.

    Returns
    -------
    bool
        True when the alert was added, False when one with ``dedupe_key`` already exists.

    Raises
    ------
    ValidationError
        For an unknown severity, an empty or too long kind or dedupe key, or a probability
        outside 0-1.
    """
    if severity not in SEVERITIES:
        raise ValidationError(f"Alert severity must be one of {', '.join(SEVERITIES)}; "
                              f"got {severity!r}")
    if not kind or len(kind) > KIND_CHARS:
        raise ValidationError(f"Alert kind must be 1-{KIND_CHARS} characters; got {kind!r}")
    if not dedupe_key or len(dedupe_key) > DEDUPE_CHARS:
        raise ValidationError(f"Alert dedupe key must be 1-{DEDUPE_CHARS} characters; got "
                              f"{len(dedupe_key)}")
    if probability is not None and not Decimal(0) <= probability <= Decimal(1):
        raise ValidationError(f"Alert probability must be between 0 and 1; got {probability}")
    when = at or now_ist()
    session.flush()  # what the caller added first is written first (as autoflush would)
    return session.connection().execute(_enqueue_statement(session.get_bind().dialect.name), {
        "created_at": when, "household_id": household_id, "account_id": account_id,
        "user_id": user_id, "kind": kind, "severity": severity,
        "urgent": severity == "critical" if urgent is None else urgent,
        "title": title[:TITLE_CHARS], "body": body, "dedupe_key": dedupe_key,
        "status": "pending", "attempts": 0, "next_attempt_at": when, "probability": probability,
    }).scalar() is not None


@functools.cache
def _enqueue_statement(dialect: str) -> ReturningInsert[tuple[int]]:
    """Return the outbox insert for ``dialect``, built once (bound at execution).

    A repeated dedupe key inserts nothing and returns no row.
    """
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    columns = ("created_at", "household_id", "account_id", "user_id", "kind", "severity",
               "urgent", "title", "body", "dedupe_key", "status", "attempts", "next_attempt_at",
               "probability")
    table = cast(Table, AlertOutboxRow.__table__)  # a Core insert: no ORM bulk-insert path
    return (insert(table)
            .values({column: bindparam(column) for column in columns})
            .on_conflict_do_nothing(index_elements=[table.c.dedupe_key])
            .returning(table.c.id))


def recent(session: Session, household_id: int, account_ids: Collection[int] | None,
           limit: int = 50, user_id: int | None = None) -> list[Alert]:
    """Return the newest alerts of a household, newest first.

    ``account_ids`` limits account alerts to those accounts (household-wide alerts are always
    included); None returns every alert of the household. Alerts for one user (a session
    warning) are included only for ``user_id``; None leaves them all out.
    """
    query = select(AlertOutboxRow).where(AlertOutboxRow.household_id == household_id)
    if account_ids is not None:
        query = query.where(or_(AlertOutboxRow.account_id.is_(None),
                                AlertOutboxRow.account_id.in_(list(account_ids))))
    mine = AlertOutboxRow.user_id.is_(None)
    query = query.where(mine if user_id is None else or_(mine, AlertOutboxRow.user_id == user_id))
    rows = session.scalars(
        query.order_by(AlertOutboxRow.created_at.desc(), AlertOutboxRow.id.desc())
        .limit(max(limit, 0)))
    return [to_alert(row) for row in rows]


def to_alert(row: AlertOutboxRow) -> Alert:
    """Return the domain alert of an outbox row (times in IST)."""
    return Alert(id=row.id, created_at=to_ist(row.created_at), household_id=row.household_id,
                 account_id=row.account_id, kind=row.kind, severity=row.severity,
                 title=row.title, body=row.body, status=row.status,
                 delivered_at=to_ist(row.delivered_at) if row.delivered_at else None,
                 user_id=row.user_id, urgent=row.urgent, attempts=row.attempts,
                 last_error=row.last_error, channel=row.channel,
                 probability=row.probability)
