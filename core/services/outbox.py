"""Deliver the alert outbox: claim due alerts, send them through a channel, record the outcome.

:func:`core.alerts.enqueue` writes an alert (``pending``, due at once) in the transaction of
the change that caused it; :meth:`OutboxService.dispatch` (the worker runs it every few
seconds) delivers it through the configured :class:`Channel` (``ALERT_CHANNEL``; ``log`` by
default). With ``ALERT_CHANNEL=telegram`` the Telegram bot process delivers instead
(:mod:`jobs.telegram_dispatch`): it takes alerts with :meth:`OutboxService.claim`, sends them
itself under Telegram's rate limits and settles each with :meth:`OutboxService.record`.

Claiming, so two dispatchers never send one alert twice: in one short transaction the due
ids are read (on PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED``, so concurrent dispatchers
take disjoint rows) and ``UPDATE ... WHERE id IN (...) AND <still due> RETURNING`` moves their
``next_attempt_at`` a lease ahead (:data:`CLAIM_LEASE`) and counts the attempt. A row another
dispatcher claimed after the read fails the re-checked condition (it is no longer due); on
SQLite the UPDATE runs under the single write lock, so it sees any earlier claim.
The rows stay ``pending`` while claimed and no transaction is open while sending; the
outcome is recorded only if the row still carries this claim (same attempt count, still
pending). A dispatcher that dies after claiming leaves the rows due again once the lease ends
(the attempt counted): delivery is at least once when a process is killed mid-send, and
exactly once otherwise. A batch that is still sending when the lease nears its end gives the
rest of its rows back.

Outcomes (:class:`Delivery`): ``sent`` and ``skipped`` (the channel chose not to deliver,
e.g. the member turned the alert type off) settle the row; a temporary failure retries with
exponential backoff (or after the channel's ``retry_after``) until ``ALERT_MAX_ATTEMPTS``, then
``failed``; a permanent failure is ``failed`` at once; a deferral (flow control: the channel
asks to wait, nothing was wrong with the alert) is retried after ``retry_after`` without
counting an attempt. ``last_error`` keeps the first line of the last failure, with anything
that looks like a token or password removed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.alerts import Alert, to_alert
from core.clock import now_ist
from core.config import Settings
from core.errors import ConfigError, ValidationError
from core.services.base import ServiceBase
from db.engine import Database
from db.models import AlertDeliveryRow, AlertOutboxRow

log = logging.getLogger("sher.outbox")
alerts_log = logging.getLogger("sher.alerts")

#: How long a claimed alert is reserved for the dispatcher that claimed it.
CLAIM_LEASE = timedelta(seconds=120)
#: A batch stops sending (and gives its remaining rows back) this close to the lease's end.
LEASE_MARGIN_S = 20.0
#: Backoff after the n-th failed attempt: RETRY_BASE * 2 ** (n - 1), at most RETRY_CAP.
RETRY_BASE = timedelta(seconds=10)
RETRY_CAP = timedelta(minutes=30)
ERROR_CHARS = 300
CHANNEL_CHARS = 20
#: Dispatch at most this many alerts per call.
MAX_LIMIT = 1000
#: Picks tried per claim when other dispatchers took every picked alert first.
CLAIM_TRIES = 3

_SECRETS = (
    # A Telegram bot token (``123456:ABC-...``), also inside a Bot API URL.
    (re.compile(r"\d{5,}:[A-Za-z0-9_-]{30,}"), "<token>"),
    # user:password@ in a URL.
    (re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@"), "<credentials>@"),
    # key=value pairs whose name says secret.
    (re.compile(r"(?i)\b(token|key|secret|password|passwd|pwd|auth|signature)"
                r"(\s*[=:]\s*)[^\s&,;]+"), r"\1\2<redacted>"),
    (re.compile(r"(?i)\bbearer\s+[^\s,;]+"), "Bearer <redacted>"),
)


class DeliveryOutcome(StrEnum):
    """What a channel did with one alert."""

    SENT = "sent"
    SKIPPED = "skipped"  # deliberately not delivered (alert type off, no recipient linked)
    RETRY = "retry"  # temporary failure: try again later, counts as an attempt
    DEFER = "defer"  # flow control: try again after retry_after, not counted as an attempt
    FAILED = "failed"  # permanent failure: never retried


@dataclass(frozen=True, slots=True)
class Delivery:
    """A channel's answer for one alert; build it with the class methods."""

    outcome: DeliveryOutcome
    error: str | None = None
    retry_after: float | None = None  # seconds

    @classmethod
    def sent(cls) -> Delivery:
        """Return a delivered alert."""
        return cls(DeliveryOutcome.SENT)

    @classmethod
    def skipped(cls, reason: str) -> Delivery:
        """Return an alert the channel chose not to deliver, and why."""
        return cls(DeliveryOutcome.SKIPPED, reason)

    @classmethod
    def retry(cls, error: str, retry_after: float | None = None) -> Delivery:
        """Return a temporary failure; ``retry_after`` seconds overrides the backoff."""
        return cls(DeliveryOutcome.RETRY, error, retry_after)

    @classmethod
    def defer(cls, retry_after: float, reason: str) -> Delivery:
        """Return "not now" (rate limit): retry after ``retry_after`` s, no attempt counted."""
        return cls(DeliveryOutcome.DEFER, reason, retry_after)

    @classmethod
    def failed(cls, error: str) -> Delivery:
        """Return a permanent failure (the alert can never be delivered)."""
        return cls(DeliveryOutcome.FAILED, error)


@runtime_checkable
class Channel(Protocol):
    """Where alerts go (a log, Telegram...).

    ``send`` delivers one alert (to its user, or to the people of its household or account)
    and returns a :class:`Delivery`. It may also raise: :class:`~core.errors.ConfigError`
    stops the dispatch (the alert stays due, no attempt counted), :class:`~core.errors.
    ValidationError` fails the alert for good, any other exception is a temporary failure.
    A send must finish well within :data:`CLAIM_LEASE`; error texts must not carry secrets
    (the dispatcher also strips anything token-like before storing them).
    """

    name: str

    def send(self, alert: Alert) -> Delivery:
        """Deliver ``alert``; return what happened."""
        ...


class LogChannel:
    """The demo's channel: write each alert to the ``sher.alerts`` logger; always sent."""

    name = "log"

    def send(self, alert: Alert) -> Delivery:
        """Log one line: severity, kind, whose, title and body (alerts hold no secrets)."""
        whose = (f"user {alert.user_id}" if alert.user_id is not None
                 else f"account {alert.account_id}" if alert.account_id is not None
                 else f"household {alert.household_id}")
        level = {"critical": logging.ERROR, "warning": logging.WARNING}.get(alert.severity,
                                                                           logging.INFO)
        alerts_log.log(level, "[%s] %s for %s: %s — %s", alert.severity, alert.kind, whose,
                       alert.title, " ".join(alert.body.split()))
        return Delivery.sent()


@dataclass(slots=True)
class DispatchReport:
    """What one :meth:`OutboxService.dispatch` call did (counts of alerts)."""

    channel: str
    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    retried: int = 0  # failed temporarily, due again later
    deferred: int = 0
    failed: int = 0  # failed for good
    released: int = 0  # claimed but given back unsent (lease running out, config error)
    lost: int = 0  # outcome not recorded: another dispatcher re-claimed after the lease
    errors: list[str] = field(default_factory=list)  # the first few, for the job's message

    def summary(self) -> str:
        """Return one line for the worker's log and job table."""
        parts = [f"{self.sent} sent"]
        for label, count in (("skipped", self.skipped), ("to retry", self.retried),
                             ("deferred", self.deferred), ("failed", self.failed),
                             ("given back", self.released), ("lost claim", self.lost)):
            if count:
                parts.append(f"{count} {label}")
        text = f"{self.claimed} alert(s) via {self.channel}: " + ", ".join(parts)
        return text + (f"; last error: {self.errors[-1]}" if self.errors else "")


def safe_error(error: BaseException | str) -> str:
    """Return the first line of an error, secrets replaced, at most 300 characters."""
    text = error if isinstance(error, str) else (str(error) or type(error).__name__)
    line = text.strip().splitlines()[0] if text.strip() else "failed"
    for pattern, replacement in _SECRETS:
        line = pattern.sub(replacement, line)
    return line[:ERROR_CHARS]


def _check_dispatch(now: datetime, limit: int) -> None:
    """Raise ValidationError for a limit outside 1-1000 or a naive time."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"Dispatch limit must be 1-{MAX_LIMIT} alerts; got {limit}")
    if now.tzinfo is None:
        raise ValidationError(f"Dispatch time must be time-zone aware; got {now.isoformat()}")


def backoff(attempts: int) -> timedelta:
    """Return the wait after the ``attempts``-th failed attempt (10 s, 20 s, 40 s ... 30 min)."""
    return min(RETRY_BASE * 2 ** max(attempts - 1, 0), RETRY_CAP)


class OutboxService(ServiceBase):
    """Deliver pending alerts through the configured channel, once each."""

    def __init__(self, db: Database, settings: Settings,
                 channels: Iterable[Channel] = ()) -> None:
        """Bind to the database; the log channel is always known, ``channels`` are added."""
        super().__init__(db, settings)
        self._channels: dict[str, Channel] = {}
        for channel in (LogChannel(), *channels):
            self.register(channel)

    def register(self, channel: Channel) -> None:
        """Make ``channel`` selectable by its name in ``ALERT_CHANNEL`` (replaces a namesake)."""
        if not isinstance(channel, Channel):
            raise ConfigError(f"{channel!r} is not an alert channel (it needs a name and send)")
        if not channel.name or len(channel.name) > CHANNEL_CHARS:
            raise ConfigError(f"An alert channel's name must be 1-{CHANNEL_CHARS} characters; "
                              f"got {channel.name!r}")
        self._channels[channel.name] = channel

    def channel(self) -> Channel:
        """Return the channel ``ALERT_CHANNEL`` names.

        Raises
        ------
        ConfigError
            If no channel of that name is registered (the message lists the known ones).
        """
        name = self.settings.alert_channel
        try:
            return self._channels[name]
        except KeyError:
            raise ConfigError(
                f"ALERT_CHANNEL {name!r} is not a known alert channel; use one of "
                f"{', '.join(sorted(self._channels))}") from None

    # -- dispatch ---------------------------------------------------------------------------
    def dispatch(self, now: datetime | None = None, limit: int = 100) -> DispatchReport:
        """Deliver up to ``limit`` due alerts, urgent ones first; return what happened.

        Parameters
        ----------
        now : datetime | None
            The current time (aware; default now): alerts due at or before it are sent.
        limit : int
            At most this many alerts (1-1000) in this call.

        Raises
        ------
        ValidationError
            For a limit outside 1-1000 or a naive ``now``.
        ConfigError
            For an unknown ``ALERT_CHANNEL``, or a channel reporting its configuration broken
            (the alerts stay due; no attempt is counted).
        """
        now = now or now_ist()
        _check_dispatch(now, limit)
        channel = self.channel()
        report = DispatchReport(channel=channel.name)
        started = time.monotonic()
        claimed = self._claim(now, limit)
        report.claimed = len(claimed)
        for index, alert in enumerate(claimed):
            if time.monotonic() - started > CLAIM_LEASE.total_seconds() - LEASE_MARGIN_S:
                report.released += self._release(claimed[index:], now)
                break
            try:
                delivery = channel.send(alert)
            except ConfigError as exc:
                report.released += self._release(claimed[index:], now)
                log.error("alert channel %s is misconfigured: %s", channel.name, safe_error(exc))
                raise
            except ValidationError as exc:
                delivery = Delivery.failed(str(exc) or type(exc).__name__)
            except Exception as exc:
                log.warning("alert %d: channel %s failed: %s", alert.id, channel.name,
                            safe_error(exc))
                delivery = Delivery.retry(str(exc) or type(exc).__name__)
            self._record(alert, delivery, channel.name, now, report)
        return report

    # -- for a dispatcher that sends by itself (the Telegram bot process) -------------------
    def claim(self, now: datetime, limit: int) -> list[Alert]:
        """Claim up to ``limit`` due alerts, urgent first, for a dispatcher sending them itself.

        The same claim as :meth:`dispatch` (attempt counted, leased for :data:`CLAIM_LEASE`);
        the caller settles each alert with :meth:`record` (or gives it back with
        :meth:`release`) before the lease ends. An idle outbox costs one indexed read.

        Raises
        ------
        ValidationError
            For a limit outside 1-1000 or a naive ``now``.
        """
        _check_dispatch(now, limit)
        return self._claim(now, limit)

    def record(self, alert: Alert, delivery: Delivery, channel: str, now: datetime,
               report: DispatchReport) -> None:
        """Settle one claimed alert with ``delivery`` (the rules of :meth:`dispatch`).

        Nothing is written if the alert's claim lapsed (``report.lost`` counts it); the
        outcome is counted in ``report``.
        """
        self._record(alert, delivery, channel, now, report)

    def release(self, alerts: Iterable[Alert], now: datetime) -> int:
        """Give claimed, unsent alerts back (due at ``now``, no attempt counted); return count."""
        return self._release(list(alerts), now)

    def recipient_outcomes(self, alert_id: int) -> dict[str, int]:
        """Return how many recipients of an alert ended sent, skipped or failed (so far)."""
        with self.db.reading() as session:
            rows = session.execute(
                select(AlertDeliveryRow.status, func.count())
                .where(AlertDeliveryRow.alert_id == alert_id)
                .group_by(AlertDeliveryRow.status)).all()
        return {status: count for status, count in rows}

    def _claim(self, now: datetime, limit: int) -> list[Alert]:
        """Claim up to ``limit`` due alerts (count the attempt, lease them); return them.

        A pick that another dispatcher claimed entirely in the meantime is tried again (a
        few times), so a lost race does not leave this run idle while alerts are due.
        """
        for _ in range(CLAIM_TRIES):
            picked, alerts = self._claim_once(now, limit)
            if alerts or not picked:
                return sorted(alerts, key=lambda a: (not a.urgent, a.id))
        return []

    def _claim_once(self, now: datetime, limit: int) -> tuple[int, list[Alert]]:
        """Pick due ids and claim those still due; return (ids picked, alerts claimed)."""
        due = (AlertOutboxRow.status == "pending") & (AlertOutboxRow.next_attempt_at <= now)
        with self.db.transaction() as session:
            # A plain read first: an idle outbox never takes SQLite's write lock.
            if session.scalar(select(AlertOutboxRow.id).where(due).limit(1)) is None:
                return 0, []
            pick = (select(AlertOutboxRow.id).where(due)
                    .order_by(AlertOutboxRow.urgent.desc(), AlertOutboxRow.next_attempt_at,
                              AlertOutboxRow.id)
                    .limit(limit))
            if session.get_bind().dialect.name == "postgresql":
                # Locked until this transaction ends; rows another dispatcher holds are skipped.
                # (Not a subquery of the UPDATE: PostgreSQL may re-run it and pass the limit.)
                pick = pick.with_for_update(skip_locked=True)
            ids = list(session.scalars(pick))
            if not ids:
                return 0, []
            # The re-checked ``due`` drops rows another dispatcher claimed since the read.
            rows = session.scalars(
                update(AlertOutboxRow)
                .where(AlertOutboxRow.id.in_(ids), due)
                .values(attempts=AlertOutboxRow.attempts + 1, next_attempt_at=now + CLAIM_LEASE)
                .returning(AlertOutboxRow)
                .execution_options(synchronize_session=False)
            ).all()
            return len(ids), [to_alert(row) for row in rows]

    @staticmethod
    def _settle(session: Session, alert: Alert, **values: object) -> bool:
        """Write ``values`` to the alert's row if it still carries this claim."""
        result = session.execute(
            update(AlertOutboxRow)
            .where(AlertOutboxRow.id == alert.id, AlertOutboxRow.status == "pending",
                   AlertOutboxRow.attempts == alert.attempts)
            .values(**values)
            .execution_options(synchronize_session=False))
        return bool(getattr(result, "rowcount", 0))

    def _record(self, alert: Alert, delivery: Delivery, channel: str, now: datetime,
                report: DispatchReport) -> None:
        """Record one alert's outcome under its claim."""
        error = safe_error(delivery.error) if delivery.error else None
        wait = (timedelta(seconds=max(delivery.retry_after, 0.0))
                if delivery.retry_after is not None else None)
        outcome = delivery.outcome
        values: dict[str, object] = {"channel": channel, "last_error": error}
        if outcome is DeliveryOutcome.RETRY and alert.attempts >= self.settings.alert_max_attempts:
            outcome = DeliveryOutcome.FAILED
            values["last_error"] = safe_error(
                f"gave up after {alert.attempts} attempts: {error or 'failed'}")
        if outcome in (DeliveryOutcome.SENT, DeliveryOutcome.SKIPPED, DeliveryOutcome.FAILED):
            values.update(status=str(outcome), next_attempt_at=None)
            if outcome is DeliveryOutcome.SENT:
                values.update(delivered_at=now, last_error=None)
        elif outcome is DeliveryOutcome.RETRY:
            delay = wait if wait is not None else backoff(alert.attempts)
            values["next_attempt_at"] = now + delay
        else:  # DEFER: flow control, the attempt does not count
            values.update(next_attempt_at=now + (wait or RETRY_BASE),
                          attempts=AlertOutboxRow.attempts - 1)
        with self.db.transaction() as session:
            recorded = self._settle(session, alert, **values)
        if not recorded:
            report.lost += 1
            log.warning("alert %d: its claim lapsed before the %s outcome was recorded",
                        alert.id, outcome)
            return
        counter = {DeliveryOutcome.SENT: "sent", DeliveryOutcome.SKIPPED: "skipped",
                   DeliveryOutcome.RETRY: "retried", DeliveryOutcome.DEFER: "deferred",
                   DeliveryOutcome.FAILED: "failed"}[outcome]
        setattr(report, counter, getattr(report, counter) + 1)
        if outcome in (DeliveryOutcome.RETRY, DeliveryOutcome.FAILED) and len(report.errors) < 5:
            report.errors.append(f"alert {alert.id}: {values['last_error']}")

    def _release(self, alerts: list[Alert], now: datetime) -> int:
        """Give claimed, unsent alerts back: due at ``now`` again, the attempt not counted."""
        released = 0
        with self.db.transaction() as session:
            for alert in alerts:
                released += self._settle(session, alert, next_attempt_at=now,
                                          attempts=AlertOutboxRow.attempts - 1)
        return released
