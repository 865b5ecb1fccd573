"""The worker's alert jobs: deliver the outbox, warn before the session expiry, alert logouts.

Each job is a thin wrapper over a service call returning a :class:`JobResult` for the
worker's job table. Wiring in :mod:`jobs.worker`::

    from jobs.alert_jobs import AlertJobs
    self.alert_jobs = AlertJobs(services)            # Worker.__init__
    self.alert_jobs.schedule(self._add)              # Worker.schedule
    self.alert_jobs.catch_up(self._run_now)          # Worker.catch_up

Schedules (IST), stores and misfire policy:

======================  ==============================  ======  ==========  ===================
job                     when                            store   grace       missed run
======================  ==============================  ======  ==========  ===================
alert_dispatch          every 2 s                       memory  2 s         skipped (the next
                                                                            run delivers)
session_warning         daily at expiry - 15 min        desk    15 min      runs at once (later
                        (02:45 for 03:00)                                   it is pointless)
session_logout_alerts   daily at expiry + 1 min         desk    1 h         runs at once
======================  ==============================  ======  ==========  ===================

Both session jobs also run once at start (:meth:`AlertJobs.catch_up`); running twice writes
nothing new (each alert's dedupe key names the user and the expiry date). The logout job ends
due sessions itself first (idempotent), so it never runs ahead of the expiry job's work. A
dispatch run drains up to :data:`DISPATCH_ROUNDS` batches of :data:`DISPATCH_BATCH` alerts.

Errors: a :class:`~core.errors.ConfigError` (unknown ``ALERT_CHANNEL``, a channel without its
token) stops delivery: the job reports it as failed once, then skips (saying why) and re-checks
every :data:`CONFIG_RECHECK_S` seconds, so a channel reading a fixed setting live needs no
restart. Any other error fails that run and the next run tries again. With
``ALERT_CHANNEL=telegram`` the dispatch job skips every run: the Telegram bot process
(:mod:`jobs.telegram_dispatch`) delivers the outbox under Telegram's rate limits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from core.clock import IST, now_ist
from core.errors import ConfigError
from core.services import Services
from core.services.auth import LOGOUT_ALERT_WINDOW, WARN_BEFORE_EXPIRY
from core.services.jobs import JobResult, error_message, log_failure
from core.services.outbox import DispatchReport

log = logging.getLogger("sher.worker.alerts")

DISPATCH_EVERY_S = 2
DISPATCH_BATCH = 100
#: At most this many batches per dispatch run (a backlog drains over later runs).
DISPATCH_ROUNDS = 10
CONFIG_RECHECK_S = 300.0
LOGOUT_ALERT_DELAY = timedelta(minutes=1)
TELEGRAM_CHANNEL = "telegram"
BOT_DELIVERS = "alerts are delivered by the Telegram bot process (python -m jobs.telegram_bot)"

#: APScheduler's in-memory job store alias (the worker's ``MEMORY_STORE``).
MEMORY_STORE = "default"

AddJob = Callable[..., None]
RunNow = Callable[[str, Callable[[], JobResult | None]], None]


class AlertJobs:
    """The alert jobs of one worker; :meth:`schedule` registers them."""

    def __init__(self, services: Services) -> None:
        """Prepare the jobs over ``services``."""
        self.services = services
        self._stopped: str | None = None
        self._stopped_at = 0.0

    def dispatch_alerts(self) -> JobResult | None:
        """Deliver due alerts in batches; None (ok, nothing written) when none were due.

        With ``ALERT_CHANNEL=telegram`` the run is skipped: the Telegram bot process delivers.
        """
        if self.services.settings.alert_channel == TELEGRAM_CHANNEL:
            return JobResult.skipped(BOT_DELIVERS)
        if self._stopped and time.monotonic() - self._stopped_at < CONFIG_RECHECK_S:
            return JobResult.skipped(self._stopped)
        reports: list[DispatchReport] = []
        try:
            for _ in range(DISPATCH_ROUNDS):
                reports.append(self.services.outbox.dispatch(now_ist(), DISPATCH_BATCH))
                if reports[-1].claimed < DISPATCH_BATCH:
                    break
        except ConfigError as exc:
            self._stopped = (f"alert delivery stopped: {error_message(exc)} (re-checked every "
                             f"{CONFIG_RECHECK_S / 60:.0f} min)")
            self._stopped_at = time.monotonic()
            log.error("%s", self._stopped)
            return JobResult.failed(self._stopped)
        except Exception as exc:
            log_failure(log, exc, "alert dispatch failed; retrying on the next run")
            return JobResult.failed(exc)
        self._stopped = None
        report = _merge(reports)
        if not report.claimed:
            return None
        log.info("alert dispatch: %s", report.summary())
        if report.failed:
            return JobResult.failed(report.summary())
        return JobResult.ok(report.summary())

    def warn_sessions(self) -> JobResult:
        """Warn logged-in users whose session ends at the daily expiry within 15 minutes."""
        try:
            count = self.services.auth.warn_expiring_sessions(now_ist())
        except Exception as exc:
            log_failure(log, exc, "session expiry warnings failed; retrying on the next run")
            return JobResult.failed(exc)
        if not count:
            return JobResult.skipped("no logged-in user to warn (none ends within 15 min, "
                                     "or all were warned)")
        log.info("warned %d user(s) of the session expiry", count)
        return JobResult.ok(f"warned {count} user(s) of the session expiry")

    def alert_logouts(self) -> JobResult:
        """End sessions past the daily expiry (if not yet), then alert each user logged out."""
        try:
            self.services.auth.expire_due_sessions()
            count = self.services.auth.alert_expired_logouts(now_ist())
        except Exception as exc:
            log_failure(log, exc, "logout alerts failed; retrying on the next run")
            return JobResult.failed(exc)
        if not count:
            return JobResult.skipped("no user logged out by the daily expiry to alert")
        log.info("alerted %d user(s) logged out by the daily expiry", count)
        return JobResult.ok(f"alerted {count} user(s) logged out by the daily expiry")

    def schedule(self, add: AddJob) -> None:
        """Register the three jobs through ``add(job, trigger, id=..., store=..., **options)``.

        ``add`` is the worker's tracked ``Worker._add``: ``store`` names the job store (the
        dispatch job stays in memory, :data:`MEMORY_STORE`; the session jobs go to the
        worker's default, the desk's database).
        """
        expiry = self.services.settings.session_expiry_time
        day = date(2000, 1, 3)  # any date: only the wall-clock time of these moments is used
        warn_at = (datetime.combine(day, expiry) - WARN_BEFORE_EXPIRY).time()
        logout_at = (datetime.combine(day, expiry) + LOGOUT_ALERT_DELAY).time()
        add(self.dispatch_alerts, "interval", id="alert_dispatch", seconds=DISPATCH_EVERY_S,
            store=MEMORY_STORE, max_instances=1, coalesce=True,
            misfire_grace_time=DISPATCH_EVERY_S)
        add(self.warn_sessions,
            CronTrigger(hour=warn_at.hour, minute=warn_at.minute, timezone=IST),
            id="session_warning", coalesce=True, max_instances=1,
            misfire_grace_time=int(WARN_BEFORE_EXPIRY.total_seconds()))
        add(self.alert_logouts,
            CronTrigger(hour=logout_at.hour, minute=logout_at.minute, timezone=IST),
            id="session_logout_alerts", coalesce=True, max_instances=1,
            misfire_grace_time=int(LOGOUT_ALERT_WINDOW.total_seconds()))

    def catch_up(self, run_now: RunNow) -> None:
        """At start: run both session jobs once through ``run_now(name, job)`` (tracked).

        ``run_now`` is the worker's ``Worker._run_now``. A worker that was down at 02:45 still
        warns before 03:00, and one down at 03:01 still sends the logout alerts.
        """
        run_now("session_warning", self.warn_sessions)
        run_now("session_logout_alerts", self.alert_logouts)


def _merge(reports: list[DispatchReport]) -> DispatchReport:
    """Add up the batches of one run."""
    total = DispatchReport(channel=reports[0].channel if reports else "")
    for report in reports:
        for name in ("claimed", "sent", "skipped", "retried", "deferred", "failed", "released",
                     "lost"):
            setattr(total, name, getattr(total, name) + getattr(report, name))
        total.errors.extend(report.errors)
    total.errors = total.errors[-5:]
    return total
