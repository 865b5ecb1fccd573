"""The worker process: ``python -m jobs.worker``.

APScheduler runs each job as a thin wrapper over a service call. One worker per database: the
lease in ``worker_lock`` is taken at start (a second worker exits with a clear message), renewed
by the heartbeat and released on a clean stop (Ctrl-C or SIGTERM).

Every scheduled job runs through :meth:`Worker._tracked`, which records its start and end
(``ok``, ``failed`` with the error's first line, or ``skipped``) in ``job_runs`` through
:class:`core.services.jobs.JobService`; admins see the table on the audit-log page. A failing
job is logged and waits for its next run (the scheduler thread never sees the exception), and a
failure to record never stops a job. Write policy: a job's row is written when its outcome
changes and otherwise at most every 30 s (``THROTTLE_SECONDS``), so each 1-second job (feed,
trading) writes three short transactions (start, end, next run) per 30 s, not two a second;
runs in between are counted and added on the next write, or when the worker stops. The next
run of every job is written once at start (a one-shot job) and after each written run of it.

Job state in the desk's database
--------------------------------
The calendar (cron) jobs are kept by APScheduler's SQLAlchemy job store (:class:`DeskJobStore`)
in table ``apscheduler_jobs`` of the desk's own database, on the engine of ``services.db``.
The job store creates that table itself (``CREATE TABLE IF NOT EXISTS`` at the worker's first
start): its layout (id, next run as a UTC timestamp, the pickled job) is APScheduler's and
changes with APScheduler, not with the desk's models, so it is not an Alembic table.
Stored jobs name their function by reference: :func:`run_job` (``jobs.worker:run_job``) with
the job's name as argument, which runs that job of the running :class:`Worker`. Every start
re-registers each job with ``replace_existing=True`` (one row per job, never a duplicate) but
keeps a stored next run that is already past: that run was missed while the worker was down,
and the job's misfire policy below decides whether it runs at once or is recorded as skipped
("missed its run at ..."). Stored jobs this worker no longer schedules are deleted. The
1-second jobs and the heartbeat stay in memory: a missed second is simply skipped, and storing
them would rewrite their rows every second.

Misfire and coalescing, per job (times IST; grace = how late a run may still start; every job
coalesces: however many runs were missed, at most one runs):

=======================  ===============================  ======  ==========  ==================
job                      when                             store   grace       missed run
=======================  ===============================  ======  ==========  ==================
feed, trading            every 1 s                        memory  1 s         skipped silently
heartbeat                every WORKER_HEARTBEAT_SECONDS   memory  1 s         skipped silently
alert_dispatch           every 2 s                        memory  2 s         skipped silently
session_warning          daily at expiry - 15 min         desk    15 min      runs at once
session_logout_alerts    daily at expiry + 1 min          desk    1 h         runs at once
session_expiry           daily at SESSION_EXPIRY_TIME     desk    24 h        runs at once
pre_open                 weekdays 09:00 (trading days)    desk    15 min      runs before 09:15
market_open              weekdays 09:15 (trading days)    desk    6 h 15 min  runs in session
eod_square_off           weekdays at each MIS square-off  desk    to 15:30    runs in session
                         time (default 15:15)
market_close             weekdays 15:30 (trading days)    desk    30 min      runs by 16:00
pnl_snapshot             weekdays 15:45                   desk    6 h         runs at once
daily_summary            weekdays every minute 15:35-     memory  1 min       skipped silently
                         23:59 (trading days)                                 (the next minute
                                                                              sends what is due)
signal_alerts            weekdays SIGNAL_SCAN_TIME        desk    6 h         runs at once
                         (15:50; trading days)
signal_outcomes          weekdays SIGNAL_OUTCOME_TIME     desk    6 h         runs at once
signal_model_refit       ModelConfig, 05:30               desk    12 h        runs at once
signal_calibrator_refit  ModelConfig, 06:00               desk    12 h        runs at once
signal_first_model       once at start                    memory  --          --
=======================  ===============================  ======  ==========  ==================

At start, before the scheduler runs, the worker also catches up by itself: it ends sessions
past the expiry, squares off MIS positions once the day's first square-off time has passed
(a worker that comes up after 15:15 squares off at once, even on a fresh desk with no stored
run; the watch sends exits only where the account's market is open) and takes the day's P&L
snapshot if 15:45 has passed. Each of these runs is tracked like a scheduled one. Running
twice is harmless: exits carry deterministic client order ids (``orders.client_order_id`` is
unique), alerts a unique dedupe key, snapshots a unique day key.

The square-off times are the default MIS square-off time of the risk limits (15:15) and every
time set on the Risk page, read at start (a changed time takes effect on the next start; the
risk watch in every trading step applies the current limits regardless). The job runs the risk
watch, which squares off the accounts that are due.

Calendar jobs run on weekdays and skip (recorded) days NSE does not trade: ``pre_open`` lifts
loss limits whose day is over; ``market_open`` runs the trading step that releases queued
after-market orders (the paper exchange releases an AMO on the first open tick; this makes the
release explicit and recorded); ``market_close`` runs the last trading step and watch on the
closing prices; ``daily_summary`` writes each linked member's P&L summary once their summary
time has passed (:mod:`core.services.daily_summary`); ``signal_alerts`` scans the universe and
alerts new BUY/SELL signals at probability 0.50 or more (:mod:`core.services.signal_alerts`;
skipped while no model is active). T+1 settlement of CNC trades has no job: holdings are
derived from trades on read (:func:`core.portfolio.build_book`,
:func:`core.portfolio.next_settlement_day`).

Errors
------
A job's temporary error (anything but a configuration error) fails that run, is logged, and
the next run tries again. A :class:`~core.errors.ConfigError` (a bad setting; the trading
calendar's last year passed) cannot heal by retrying: the job stops (its later runs are
recorded as skipped with the reason), every household gets one critical alert a day, and every
other job keeps running; fix the setting and restart the worker.

A database that goes away
-------------------------
A job that hits a database error fails, is logged in one line and runs again on its next
turn. The job store's read of due jobs failing makes the scheduler retry after
``JOBSTORE_RETRY_SECONDS``; its writes (a job's next run) and its next-run read log and carry
on (a run not written is run again when the database is back); a pass of the scheduler that
fails anyway is logged and retried (:class:`DeskScheduler`). Pooled connections killed by a
server restart are detected and replaced by SQLAlchemy. The lease is kept through an outage: a
failed heartbeat is a failed run, and the worker stops only when another worker holds the
lease.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time as time_module
from collections.abc import Callable, Collection
from datetime import datetime, time, timedelta
from types import FrameType
from typing import Any

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.util import utc_timestamp_to_datetime
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from core.clock import (
    CLOSING_SESSION_END,
    IST,
    MARKET_CLOSE,
    MARKET_OPEN,
    PRE_OPEN_START,
    format_ist,
    is_trading_day,
    market_state,
    now_ist,
)
from core.errors import ConfigError, ValidationError, WorkerLockHeld
from core.services import Services, build_services
from core.services.daily_summary import EARLIEST as SUMMARY_EARLIEST
from core.services.jobs import JobResult, database_down, error_message, log_failure
from core.services.risk_watch import WatchReport
from core.services.worker import new_holder_id
from db.models import JobOutcome
from jobs.alert_jobs import AlertJobs

log = logging.getLogger("sher.worker")
WORKER = "worker"  # the operator name signal-model jobs are audited as
PNL_SNAPSHOT_AT = time(15, 45)  # IST: after the close (15:30), once the last quotes are in
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RECORD_SCHEDULE = "record_schedule"  # the one-shot job writing every job's next run at start
JOB_FUNC = "jobs.worker:run_job"  # what every job calls (stored jobs keep this reference)
DESK_STORE = "desk"  # the job store in the desk's database
MEMORY_STORE = "default"  # 1-second jobs, the heartbeat and one-shot jobs
JOBS_TABLE = "apscheduler_jobs"
JOBSTORE_RETRY_SECONDS = 2.0  # after a failed read of due jobs, the scheduler tries again
START_RETRY_SECONDS = 5.0  # a worker whose database is not up yet tries again this often
# A missed run of these is not recorded: the next one comes within seconds (the daily summary:
# within a minute, and it sends whatever is due then).
SECOND_JOBS = frozenset({"feed", "trading", "heartbeat", "alert_dispatch", "daily_summary"})
HOUR = 3600

_running: dict[str, Worker] = {}  # "worker": the worker whose jobs run_job runs


def run_job(name: str) -> None:
    """Run job ``name`` of the running worker, tracked; every scheduled job calls this.

    Stored jobs must reference a module-level function (a bound method does not survive
    pickling into the job store), so each job is this function with its name as argument.
    """
    worker = _running.get("worker")
    job = worker.job(name) if worker is not None else None
    if job is None:
        log.error("job %r is not scheduled by this worker; run skipped", name)
        return
    job()


def _watch_failure(label: str, report: WatchReport) -> JobResult | None:
    """Log each failed action of a risk-watch run; return the first as the run's failure."""
    for failure in report.failures:
        log.warning("%s: %s", label, failure)
    return JobResult.failed(f"{label}: {report.failures[0]}") if report.failures else None


class JobStoreUnavailable(RuntimeError):
    """The job store's database cannot be read now; the scheduler retries on its own."""


class DeskJobStore(SQLAlchemyJobStore):
    """APScheduler's SQLAlchemy job store on the desk's engine, riding out a database outage.

    A failed read of due jobs raises (the scheduler logs it and retries after its
    ``jobstore_retry_interval``); a failed write of a job's next run and a failed read of the
    earliest next run are logged and passed over, so the scheduler's loop never dies of them.
    """

    def __init__(self, engine: Engine) -> None:
        """Keep jobs in :data:`JOBS_TABLE` through ``engine`` (the desk's)."""
        super().__init__(engine=engine, tablename=JOBS_TABLE)

    def stored_next_runs(self) -> dict[str, datetime | None]:
        """Create the table if missing; return each stored job's next run (None: paused)."""
        self.jobs_t.create(self.engine, checkfirst=True)
        with self.engine.begin() as connection:
            rows = connection.execute(
                select(self.jobs_t.c.id, self.jobs_t.c.next_run_time)).all()
        return {ident: utc_timestamp_to_datetime(stamp) for ident, stamp in rows}

    def remove_other_jobs(self, keep: Collection[str]) -> list[str]:
        """Delete stored jobs whose ids are not in ``keep``; return the ids deleted."""
        table = self.jobs_t
        with self.engine.begin() as connection:
            gone = list(connection.scalars(select(table.c.id).where(table.c.id.not_in(keep))))
            if gone:
                connection.execute(table.delete().where(table.c.id.in_(gone)))
        return gone

    def get_due_jobs(self, now: datetime) -> list[Any]:
        """Return the jobs due at ``now``; a database error is raised as one line.

        The scheduler logs the error and asks again after ``jobstore_retry_interval``; the
        driver's text after its first line (the SQL and its parameters) is left out.
        """
        try:
            return super().get_due_jobs(now)
        except SQLAlchemyError as exc:
            raise JobStoreUnavailable(error_message(exc)) from None

    def get_next_run_time(self) -> datetime | None:
        """Return the earliest next run; on a database error, a retry time soon."""
        try:
            return super().get_next_run_time()
        except SQLAlchemyError as exc:
            log.warning("job store: cannot read the next run (%s); retrying in %.0f s",
                        error_message(exc), JOBSTORE_RETRY_SECONDS)
            return datetime.now(IST) + timedelta(seconds=JOBSTORE_RETRY_SECONDS)

    def update_job(self, job: Any) -> None:
        """Store ``job``'s new next run; on a database error keep the old one (it runs again)."""
        try:
            super().update_job(job)
        except SQLAlchemyError as exc:
            log.warning("job store: cannot store the next run of %s (%s); it is due again "
                        "when the database is back", job.id, error_message(exc))

    def remove_job(self, job_id: str) -> None:
        """Delete a stored job; a database error is logged (the next start prunes it)."""
        try:
            super().remove_job(job_id)
        except SQLAlchemyError as exc:
            log.warning("job store: cannot remove job %s (%s)", job_id, error_message(exc))

    def shutdown(self) -> None:
        """Leave the engine alone: it is the desk's, disposed by whoever built it."""


class DeskScheduler(BlockingScheduler):
    """APScheduler's blocking scheduler whose loop survives any error of one pass.

    APScheduler 3 guards the read of due jobs but not every other job-store call of a pass; an
    error there would end :meth:`start` and with it the worker. Here it is logged and the pass
    is tried again after ``jobstore_retry_interval`` seconds.
    """

    def _process_jobs(self) -> float | None:
        try:
            return super()._process_jobs()
        except Exception as exc:
            log_failure(log, exc, "scheduler pass failed; trying again in %.0f s",
                         self.jobstore_retry_interval)
            return float(self.jobstore_retry_interval)


def weekday_cron(at: time, second: int = 0) -> CronTrigger:
    """Return a cron trigger (IST) firing Monday to Friday at ``at``."""
    return CronTrigger(day_of_week="mon-fri", hour=at.hour, minute=at.minute, second=second,
                       timezone=IST)


def summary_trigger() -> OrTrigger:
    """Return the daily summary's trigger: every minute from 15:35 to 23:59 IST, weekdays."""
    first = SUMMARY_EARLIEST
    return OrTrigger([
        CronTrigger(day_of_week="mon-fri", hour=first.hour, minute=f"{first.minute}-59",
                    timezone=IST),
        CronTrigger(day_of_week="mon-fri", hour=f"{first.hour + 1}-23", minute="*",
                    timezone=IST)])


def _seconds_between(start: time, end: time) -> int:
    return (end.hour - start.hour) * HOUR + (end.minute - start.minute) * 60


def refit_trigger(frequency: str, hour: int, minute: int = 0) -> CronTrigger:
    """Return the cron trigger (IST) of a pandas re-fit frequency: ``MS`` or ``W-<DAY>``.

    These are the frequencies :class:`engines.model.ModelConfig` schedules re-fits with (and
    ``engines.evaluate`` simulates), so production re-fits when the evaluation did.
    """
    if frequency == "MS":
        return CronTrigger(day=1, hour=hour, minute=minute, timezone=IST)
    day = frequency.removeprefix("W-").lower()
    if frequency.startswith("W-") and day in WEEKDAYS:
        return CronTrigger(day_of_week=day, hour=hour, minute=minute, timezone=IST)
    raise ConfigError(f"Re-fit frequency {frequency!r} has no worker schedule; use 'MS' "
                      "(monthly) or 'W-MON'..'W-SUN' (weekly)")


class Worker:
    """Owns the scheduler and the lease."""

    def __init__(self, services: Services) -> None:
        """Prepare a worker over ``services``; nothing runs until :meth:`run`."""
        self.services = services
        self.holder = new_holder_id()
        self.scheduler = DeskScheduler(timezone=IST,
                                       jobstore_retry_interval=JOBSTORE_RETRY_SECONDS)
        self.eod_times: list[time] = []  # the MIS square-off times, read by schedule()
        self._jobs: dict[str, Callable[[], None]] = {}  # name -> tracked job
        self._stored_runs: dict[str, datetime | None] = {}
        self._desk_ids: set[str] = set()  # the jobs this worker keeps in the desk's store
        self._triggers: dict[str, Any] = {}  # name -> APScheduler trigger
        self.alert_jobs = AlertJobs(services)
        self._stop_requested = False  # a SIGINT/SIGTERM arrived
        self._stopped_jobs: dict[str, str] = {}  # name -> why (a configuration error)
        self._sleep: Callable[[float], None] = time_module.sleep

    def job(self, name: str) -> Callable[[], None] | None:
        """Return the tracked job ``name`` (as the scheduler runs it), or None if unknown."""
        return self._jobs.get(name)

    def _tracked(self, name: str, job: Callable[[], JobResult | None]) -> Callable[[], None]:
        """Return ``job`` wrapped to record its start and end under ``name``.

        The wrapper never raises: an exception from the job is logged and recorded as failed,
        and a failure to record is logged and the job runs (or its end passes) regardless.
        """

        def run() -> None:
            jobs = self.services.jobs
            try:
                jobs.record_start(name, now_ist())
            except Exception as exc:
                log_failure(log, exc, "could not record the start of job %s; running it anyway",
                             name)
            try:
                result = (JobResult.skipped(self._stopped_jobs[name]) if name in self._stopped_jobs
                          else job() or JobResult.ok())
            except Exception as exc:
                log_failure(log, exc, "job %s failed; retrying on the next run", name)
                result = JobResult.failed(exc)
            if result.config_error:
                result = self._stop_job(name, result.message or "configuration error")
            try:
                if jobs.record_end(name, now_ist(), result.outcome, result.message):
                    self._record_next_run(name)
            except Exception as exc:
                log_failure(log, exc, "could not record the end of job %s", name)

        run.__name__ = name
        return run

    def _stop_job(self, name: str, message: str) -> JobResult:
        """Stop job ``name`` after a configuration error: alert, then skip it until restart.

        A configuration error (a setting, the trading calendar's last year) fails every run
        the same way, so the job is not retried into a loop: its later runs are recorded as
        skipped with the reason, the households get one critical alert, and every other job
        keeps running. Fixing the setting and restarting the worker starts it again.
        """
        log.error("job %s stopped on a configuration error: %s", name, message)
        self._stopped_jobs[name] = (f"stopped on a configuration error: {message}; fix it and "
                                    "restart the worker")
        try:
            self.services.jobs.alert_stopped(name, message, now_ist())
        except Exception as exc:
            log_failure(log, exc, "could not alert that job %s stopped", name)
        return JobResult.failed(f"configuration error (job stopped until restart): {message}")

    def _record_next_run(self, name: str) -> None:
        """Write job ``name``'s next run, computed from its trigger (None: it will not run again).

        Not ``scheduler.get_job``: that takes the scheduler's job-store lock (and reads the
        store), which the scheduler holds while it shuts down and waits for running jobs, so a
        job asking for it then would wait for ever.
        """
        trigger = self._triggers.get(name)
        if trigger is not None:
            now = now_ist()
            self.services.jobs.record_schedule({name: trigger.get_next_fire_time(now, now)})

    def record_schedule(self) -> None:
        """Write every scheduled job's next run time (once, right after the scheduler starts).

        Computed from the jobs' triggers, not read with ``scheduler.get_jobs``, for the reason
        :meth:`_record_next_run` gives.
        """
        now = now_ist()
        try:
            self.services.jobs.record_schedule(
                {name: trigger.get_next_fire_time(None, now)
                 for name, trigger in self._triggers.items() if name != RECORD_SCHEDULE})
        except Exception as exc:
            log_failure(log, exc, "could not record the jobs' next run times")

    def _on_missed(self, event: JobExecutionEvent) -> None:
        """Record a run the scheduler skipped (past its grace time: worker down or busy).

        A missed second of a 1-second job (or a heartbeat) is simply skipped, not recorded.
        """
        if event.job_id in SECOND_JOBS:
            return
        try:
            at = event.scheduled_run_time
            self.services.jobs.record_end(event.job_id, now_ist(), JobOutcome.SKIPPED,
                                          f"missed its run at {format_ist(at)}")
            self._record_next_run(event.job_id)
        except Exception as exc:
            log_failure(log, exc, "could not record the missed run of job %s", event.job_id)

    def heartbeat(self) -> JobResult | None:
        """Renew the lease; stop if another worker took it over."""
        if not self.services.worker.beat(self.holder):
            log.error("worker lease lost to another worker; stopping")
            self.scheduler.shutdown(wait=False)
            return JobResult.failed("worker lease lost to another worker; this worker stopped")
        return None

    def expire_sessions(self) -> JobResult:
        """End sessions past the daily expiry time."""
        count = self.services.auth.expire_due_sessions()
        if count:
            log.info("ended %d session(s) at the daily expiry", count)
        return JobResult.ok(f"ended {count} session(s)")

    def feed_step(self) -> JobResult | None:
        """Advance the market feed; a failure is logged and the next second tries again."""
        state = None
        try:
            state = self.services.feed.step()
        except Exception as exc:
            log_failure(log, exc, "market feed step failed; retrying on the next run")
            return JobResult.failed(exc)
        finally:  # a feed that stopped ticking in market hours alerts once per stall
            self.services.feed.check_stalled(now_ist(), state)
        return None

    def trading_step(self) -> JobResult | None:
        """Match paper orders, mirror broker state, fire GTTs, then run the risk watch.

        The watch (stop-losses, targets, trailing stops, MTM and loss limits, drawdown, the
        end-of-day MIS square-off) runs right after each step, on the prices that step saw.
        Failures of either wait for the next run; the first one is the run's result.
        """
        step: JobResult | None = None
        try:
            self.services.orders.step()
        except Exception as exc:
            log_failure(log, exc, "trading step failed; retrying on the next run")
            step = JobResult.failed(f"order step: {exc}")
        watch = self.risk_watch()
        return step or watch

    def risk_watch(self) -> JobResult | None:
        """Evaluate post-trade controls and limits; act through the order path.

        Return a failure if the watch failed, or if any of its actions did (the first one).
        """
        try:
            report = self.services.risk_watch.run()
        except Exception as exc:
            log_failure(log, exc, "risk watch failed; retrying on the next run")
            return JobResult.failed(f"risk watch: {exc}")
        if report.square_offs or report.engaged:
            log.info("risk watch: %d exit(s), engaged %s", len(report.square_offs),
                     ", ".join(report.engaged) or "nothing")
        return _watch_failure("risk watch", report)

    def resume_risk_procedures(self) -> None:
        """Finish panic / kill-switch procedures a stopped worker or app left half done."""
        try:
            for report in self.services.risk.resume_engaging():
                log.warning("resumed an interrupted risk procedure: %s", report.summary())
        except Exception:
            log.exception("resuming interrupted risk procedures failed; the states still hold")

    def pnl_snapshot(self) -> JobResult:
        """Write today's end-of-day P&L snapshot; a failure waits for the next run.

        Taking it again the same day writes nothing new; a day NSE does not trade is skipped
        (recorded as such, like the other calendar jobs).
        """
        try:
            report = self.services.pnl_snapshots.take()
        except Exception as exc:
            log_failure(log, exc, "P&L snapshot failed; retrying on the next run")
            return JobResult.failed(exc)
        log.info("%s", report.summary())
        if not report.taken:
            return JobResult.skipped(report.summary())
        return JobResult.ok(report.summary())

    def catch_up_pnl_snapshot(self) -> None:
        """At start: take today's snapshot if its time has passed (a worker down at 15:45).

        The scheduler only fires jobs it was running for, so a worker started later the same
        evening takes the day's snapshot here; one already taken writes nothing.
        """
        if now_ist().time() >= PNL_SNAPSHOT_AT:
            self._run_now("pnl_snapshot", self.pnl_snapshot)

    def daily_summaries(self) -> JobResult:
        """Every minute after the close: write the P&L summaries that are due (trading days)."""
        report = self.services.daily_summary.run(now_ist())
        if report.skipped:
            return JobResult.skipped(report.summary())
        if report.written:
            log.info("%s", report.summary())
        return JobResult.ok(report.summary())

    def scan_signal_alerts(self) -> JobResult:
        """After the close on trading days: alert new BUY/SELL signals at probability >= 0.50."""
        report = self.services.signal_alerts.run(now_ist())
        log.info("%s", report.summary())
        if report.skipped:
            return JobResult.skipped(report.summary())
        return JobResult.ok(report.summary())

    # -- the market day ---------------------------------------------------------------------
    @staticmethod
    def _not_trading(now: datetime) -> JobResult | None:
        """Return a skip if ``now``'s IST date is not an NSE trading day, else None."""
        if is_trading_day(now.date()):
            return None
        return JobResult.skipped(f"{now.date().isoformat()} is not an NSE trading day")

    def pre_open(self) -> JobResult:
        """At 09:00 on trading days: lift the loss limits whose day or week is over."""
        now = now_ist()
        if (skip := self._not_trading(now)) is not None:
            return skip
        lifted = self.services.risk.lift_lapsed()
        return JobResult.ok(f"pre-open: {lifted} lapsed loss limit(s) lifted; "
                            f"{market_state(now).detail}")

    def market_open(self) -> JobResult:
        """At 09:15 on trading days: run the trading step that releases queued AMOs.

        The paper exchange releases an after-market order on the first open tick of the
        session inside :meth:`OrderService.step`; this run makes that step explicit and
        recorded (the 1-second trading job runs the same step, so nothing runs twice over).
        """
        now = now_ist()
        if (skip := self._not_trading(now)) is not None:
            return skip
        report = self.services.orders.step(now)
        return JobResult.ok(f"session open ({market_state(now).detail}): "
                            f"{report.venue_events} venue event(s) incl. AMO releases, "
                            f"{report.synced} order update(s), {report.gtts_fired} GTT(s) fired")

    def market_close(self) -> JobResult | None:
        """At 15:30 on trading days: the last trading step and risk watch on closing prices."""
        if (skip := self._not_trading(now_ist())) is not None:
            return skip
        return self.trading_step()

    def in_square_off_window(self, now: datetime) -> bool:
        """Return whether ``now`` is past the first square-off time of its IST day (any day).

        Not only NSE trading days: the demo's paper market is open on weekends and holidays,
        and an intraday position is never carried overnight. The watch squares off only the
        accounts whose broker's market is open now, so a live broker on a holiday (or after
        15:30) is sent nothing.
        """
        first = min(self.eod_times) if self.eod_times else None
        return first is not None and first <= now.time()

    def eod_square_off(self) -> JobResult:
        """Square off intraday (MIS) positions through the risk watch, at most once each.

        The watch squares off every account whose MIS square-off time has come, with exits
        whose client order ids are deterministic (rule, account, symbol, product, day and the
        fill that opened the position): a second run (a retry, a restart, the 1-second watch)
        finds the orders instead of placing more, and a position reopened later gets its own.
        """
        now = now_ist()
        if not self.in_square_off_window(now):
            first = min(self.eod_times).strftime("%H:%M") if self.eod_times else "--"
            return JobResult.skipped(f"before the first MIS square-off time ({first} IST)")
        report = self.services.risk_watch.run(now)
        if (failed := _watch_failure("EOD square-off", report)) is not None:
            return failed
        log.info("EOD square-off: %d exit order(s) placed or found", len(report.square_offs))
        return JobResult.ok(f"{len(report.square_offs)} exit order(s) placed or found over "
                            f"{report.positions} open position(s)")

    def catch_up(self) -> None:
        """At start: run what a worker that was down must not wait a day for (tracked).

        Session expiry always (ending nothing if nothing is due), the MIS square-off inside its
        window, the P&L snapshot after 15:45. Call after :meth:`schedule`. Before squaring
        off, one feed step: the feed's status is as old as the worker's absence, and the paper
        market counts as open only while the feed is fresh.
        """
        self._run_now("session_expiry", self.expire_sessions)
        if self.in_square_off_window(now_ist()):
            if self.services.settings.feed_mode != "off":
                self._run_now("feed", self.feed_step)
            self._run_now("eod_square_off", self.eod_square_off)
        self.catch_up_pnl_snapshot()
        self.alert_jobs.catch_up(self._run_now)  # the session warning and logout alerts

    def _run_now(self, name: str, job: Callable[[], JobResult | None]) -> None:
        """Run job ``name`` now, tracked (``job`` if it was not scheduled)."""
        (self._jobs.get(name) or self._tracked(name, job))()

    def mark_signal_outcomes(self) -> JobResult | None:
        """Decide journaled signals from the day's bars; a failure waits for the next day."""
        try:
            self.services.signals.mark_outcomes(now_ist())
        except Exception as exc:
            log_failure(log, exc, "marking signal outcomes failed; retrying on the next run")
            return JobResult.failed(exc)
        return None

    def train_first_signal_model(self) -> JobResult:
        """Train and activate the first signal model if none is active (a fresh desk)."""
        if self.services.models.has_usable_state():
            return JobResult.skipped("a signal model is already active")
        try:
            version = self.services.models.train_as(WORKER, progress=log.info, activate=True)
        except ValidationError as exc:  # no daily bars yet: nothing to learn from
            log.info("no first signal model trained: %s", exc)
            return JobResult.skipped(f"no first signal model trained: {exc}")
        except Exception as exc:
            log.exception("training the first signal model failed; the next start retries")
            return JobResult.failed(exc)
        log.info("trained and activated the first signal model %s", version.version)
        return JobResult.ok(f"trained and activated {version.version}")

    def retrain_signal_model(self) -> JobResult:
        """Monthly: train a new model on all daily bars and activate it (previous one kept)."""
        try:
            version = self.services.models.train_as(WORKER, progress=log.info, activate=True)
        except Exception as exc:
            log_failure(log, exc,
                        "monthly signal model re-fit failed; the next scheduled run retries")
            return JobResult.failed(exc)
        log.info("monthly re-fit: %s is the active signal model", version.version)
        return JobResult.ok(f"{version.version} is the active signal model")

    def refit_signal_calibrator(self) -> JobResult:
        """Weekly: re-fit the active model's calibrator on the recent window and activate it."""
        try:
            version = self.services.models.scheduled_calibrator_refit(WORKER, progress=log.info)
        except Exception as exc:
            log_failure(log, exc,
                        "weekly calibrator re-fit failed; the next scheduled run retries")
            return JobResult.failed(exc)
        if version is None:
            log.info("weekly calibrator re-fit: nothing to re-fit (no active model, or it "
                     "was made today)")
            return JobResult.skipped("nothing to re-fit (no active model, or it was made today)")
        log.info("weekly re-fit: %s is the active signal model", version.version)
        return JobResult.ok(f"{version.version} is the active signal model")

    def _add(self, job: Callable[[], JobResult | None], trigger: object = None, *, id: str,
             store: str = DESK_STORE, **options: object) -> None:
        """Register ``job`` as scheduler job ``id`` (the scheduler's keyword), tracked.

        The job is :func:`run_job` with ``id`` as argument; in the desk's store, a stored next
        run already past is kept (the missed run meets its misfire policy at once).
        """
        self._jobs[id] = self._tracked(id, job)
        stored = None
        if store == DESK_STORE:
            self._desk_ids.add(id)
            stored = self._stored_runs.get(id)
        if stored is not None and stored <= now_ist():
            options["next_run_time"] = stored
        added = self.scheduler.add_job(JOB_FUNC, trigger, args=[id], id=id, name=id,
                                       jobstore=store, replace_existing=True, **options)
        self._triggers[id] = added.trigger

    def _schedule_signals(self) -> None:
        """Outcomes after each weekday's close; model and calibrator on ModelConfig's schedule."""
        settings = self.services.settings
        cfg = self.services.models.cfg
        self._add(self.mark_signal_outcomes, weekday_cron(settings.signal_outcome_time),
                  id="signal_outcomes", coalesce=True, misfire_grace_time=6 * HOUR)
        self._add(self.scan_signal_alerts, weekday_cron(settings.signal_scan_time),
                  id="signal_alerts", coalesce=True, max_instances=1,
                  misfire_grace_time=6 * HOUR)
        if settings.signal_refit:  # off in the demo (its sample data does not grow)
            self._add(
                self.retrain_signal_model,
                refit_trigger(cfg.refit_model_every, hour=5, minute=30),
                id="signal_model_refit", coalesce=True, misfire_grace_time=12 * HOUR)
            self._add(
                self.refit_signal_calibrator, refit_trigger(cfg.refit_calibrator_every, hour=6),
                id="signal_calibrator_refit", coalesce=True, misfire_grace_time=12 * HOUR)
        if settings.signal_train_on_start:
            self._add(self.train_first_signal_model, id="signal_first_model",
                      store=MEMORY_STORE, max_instances=1, misfire_grace_time=None)

    def _schedule_market_day(self) -> None:
        """Pre-open, open, the EOD square-off(s), close and the P&L snapshot (weekdays)."""
        self.eod_times = self.services.jobs.mis_square_off_times()
        self._add(self.pre_open, weekday_cron(PRE_OPEN_START), id="pre_open", coalesce=True,
                  misfire_grace_time=_seconds_between(PRE_OPEN_START, MARKET_OPEN))
        self._add(self.market_open, weekday_cron(MARKET_OPEN), id="market_open", coalesce=True,
                  misfire_grace_time=_seconds_between(MARKET_OPEN, MARKET_CLOSE))
        self._add(self.eod_square_off,
                  OrTrigger([weekday_cron(at) for at in self.eod_times]),
                  id="eod_square_off", coalesce=True, max_instances=1,
                  misfire_grace_time=_seconds_between(min(self.eod_times), MARKET_CLOSE))
        self._add(self.market_close, weekday_cron(MARKET_CLOSE), id="market_close",
                  coalesce=True,
                  misfire_grace_time=_seconds_between(MARKET_CLOSE, CLOSING_SESSION_END))
        self._add(self.pnl_snapshot, weekday_cron(PNL_SNAPSHOT_AT),  # after the 15:30 close
                  id="pnl_snapshot", coalesce=True, misfire_grace_time=6 * HOUR)
        self._add(self.daily_summaries, summary_trigger(), id="daily_summary",
                  store=MEMORY_STORE, coalesce=True, max_instances=1, misfire_grace_time=60)

    def schedule(self) -> None:
        """Register the jobs (stored ones in the desk's database) and prune stale stored ones."""
        settings = self.services.settings
        _running["worker"] = self
        store = DeskJobStore(self.services.db.engine)
        self._stored_runs = store.stored_next_runs()
        with contextlib.suppress(ValueError):  # a second schedule() keeps the first store
            self.scheduler.add_jobstore(store, DESK_STORE)
        self._schedule_signals()
        self._schedule_market_day()
        expiry = settings.session_expiry_time
        self._add(self.expire_sessions,
                  CronTrigger(hour=expiry.hour, minute=expiry.minute, second=1, timezone=IST),
                  id="session_expiry", coalesce=True, misfire_grace_time=24 * HOUR)
        every_second: dict[str, object] = {"store": MEMORY_STORE, "max_instances": 1,
                                           "coalesce": True, "misfire_grace_time": 1}
        if settings.feed_mode != "off":
            self._add(self.feed_step, "interval", id="feed", seconds=1, **every_second)
        self._add(self.trading_step, "interval", id="trading", seconds=1, **every_second)
        self._add(self.heartbeat, "interval", id="heartbeat",
                  seconds=settings.worker_heartbeat_seconds, **every_second)
        self.alert_jobs.schedule(self._add)  # outbox dispatch, session warning and logout
        stale = store.remove_other_jobs(self._desk_ids)
        if stale:
            log.info("removed stored job(s) no longer scheduled: %s", ", ".join(stale))
        # BlockingScheduler.start() blocks: a one-shot job writes the next runs once it runs.
        # One-shot jobs run however late the start-up catch-up lets the scheduler begin.
        self.scheduler.add_job(self.record_schedule, id=RECORD_SCHEDULE, jobstore=MEMORY_STORE,
                               replace_existing=True, misfire_grace_time=None)
        self.scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received signal %d; stopping", signum)
        self._stop_requested = True  # during the start-up catch-up: the scheduler never starts
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def run(self) -> int:
        """Take the lease, run until stopped, release the lease. Return the exit code.

        A database that cannot be reached at start (a server still starting) is waited for:
        the worker logs one line and tries again every ``START_RETRY_SECONDS`` until it gets
        through or is stopped.
        """
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._run()
        finally:  # the process's own handlers again (a worker run inside tests, say)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> int:
        """Take the lease (waiting for the database), run until stopped, release the lease."""
        while True:
            try:
                self.services.worker.acquire(self.holder)
                break
            except WorkerLockHeld as exc:
                print(f"sher worker: {exc}", file=sys.stderr)
                return 2
            except Exception as exc:
                if not database_down(exc):
                    raise
                if self._stop_requested:
                    return 1
                log.warning("database unavailable at start (%s); trying again in %.0f s",
                            error_message(exc), START_RETRY_SECONDS)
                self._sleep(START_RETRY_SECONDS)
        log.info("worker %s holds the lease", self.holder)
        try:
            self.schedule()
            self.services.models.fail_stale_training(WORKER)  # a stopped worker's training
            self.resume_risk_procedures()
            self.catch_up()  # expiry, square-off, snapshot a worker that was down missed
            if not self._stop_requested:
                self.scheduler.start()
        finally:
            try:
                self.services.jobs.flush(now_ist())  # the runs the 30 s throttle held back
            except Exception:
                log.exception("could not write the jobs' last runs")
            if self.services.settings.feed_mode != "off":
                self.services.feed.stop()
            self.services.worker.release(self.holder)
            _running.pop("worker", None)
            log.info("worker stopped and released the lease")
        return 0


def main() -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        services = build_services()
    except ConfigError as exc:
        print(f"sher worker: {exc}", file=sys.stderr)
        return 1
    try:
        return Worker(services).run()
    finally:
        services.db.dispose()


if __name__ == "__main__":
    # Run the importable module, not this __main__ copy of it: stored jobs call
    # jobs.worker:run_job, which must find the worker this process runs.
    from jobs import worker as _module

    sys.exit(_module.main())
