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
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from datetime import time
from types import FrameType

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from core.clock import IST, format_ist, now_ist
from core.errors import ConfigError, ValidationError, WorkerLockHeld
from core.services import Services, build_services
from core.services.jobs import JobResult
from core.services.worker import new_holder_id
from db.models import JobOutcome

log = logging.getLogger("sher.worker")
WORKER = "worker"  # the operator name signal-model jobs are audited as
PNL_SNAPSHOT_AT = time(15, 45)  # IST: after the close (15:30), once the last quotes are in
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RECORD_SCHEDULE = "record_schedule"  # the one-shot job writing every job's next run at start


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
        self.scheduler = BlockingScheduler(timezone=IST)

    def _tracked(self, name: str, job: Callable[[], JobResult | None]) -> Callable[[], None]:
        """Return ``job`` wrapped to record its start and end under ``name``.

        The wrapper never raises: an exception from the job is logged and recorded as failed,
        and a failure to record is logged and the job runs (or its end passes) regardless.
        """

        def run() -> None:
            jobs = self.services.jobs
            try:
                jobs.record_start(name, now_ist())
            except Exception:
                log.exception("could not record the start of job %s; running it anyway", name)
            try:
                result = job() or JobResult.ok()
            except Exception as exc:
                log.exception("job %s failed; retrying on the next run", name)
                result = JobResult.failed(exc)
            try:
                if jobs.record_end(name, now_ist(), result.outcome, result.message):
                    self._record_next_run(name)
            except Exception:
                log.exception("could not record the end of job %s", name)

        run.__name__ = name
        return run

    def _record_next_run(self, name: str) -> None:
        job = self.scheduler.get_job(name)
        if job is not None:
            self.services.jobs.record_schedule({name: job.next_run_time})

    def record_schedule(self) -> None:
        """Write every scheduled job's next run time (once, right after the scheduler starts)."""
        try:
            self.services.jobs.record_schedule(
                {job.id: job.next_run_time for job in self.scheduler.get_jobs()
                 if job.id != RECORD_SCHEDULE}
            )
        except Exception:
            log.exception("could not record the jobs' next run times")

    def _on_missed(self, event: JobExecutionEvent) -> None:
        """Record a run the scheduler skipped (past its grace time: worker down or busy)."""
        try:
            at = event.scheduled_run_time
            self.services.jobs.record_end(event.job_id, now_ist(), JobOutcome.SKIPPED,
                                          f"missed its run at {format_ist(at)}")
            self._record_next_run(event.job_id)
        except Exception:
            log.exception("could not record the missed run of job %s", event.job_id)

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
        try:
            self.services.feed.step()
        except Exception as exc:
            log.exception("market feed step failed; retrying on the next run")
            return JobResult.failed(exc)
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
            log.exception("trading step failed; retrying on the next run")
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
            log.exception("risk watch failed; retrying on the next run")
            return JobResult.failed(f"risk watch: {exc}")
        for failure in report.failures:
            log.warning("risk watch: %s", failure)
        if report.square_offs or report.engaged:
            log.info("risk watch: %d exit(s), engaged %s", len(report.square_offs),
                     ", ".join(report.engaged) or "nothing")
        if report.failures:
            return JobResult.failed(f"risk watch: {report.failures[0]}")
        return None

    def resume_risk_procedures(self) -> None:
        """Finish panic / kill-switch procedures a stopped worker or app left half done."""
        try:
            for report in self.services.risk.resume_engaging():
                log.warning("resumed an interrupted risk procedure: %s", report.summary())
        except Exception:
            log.exception("resuming interrupted risk procedures failed; the states still hold")

    def pnl_snapshot(self) -> JobResult:
        """Write today's end-of-day P&L snapshot; a failure waits for the next run.

        Taking it again the same day writes nothing new; on a holiday it writes nothing.
        """
        try:
            report = self.services.pnl_snapshots.take()
        except Exception as exc:
            log.exception("P&L snapshot failed; retrying on the next run")
            return JobResult.failed(exc)
        log.info("%s", report.summary())
        return JobResult.ok(report.summary())

    def catch_up_pnl_snapshot(self) -> None:
        """At start: take today's snapshot if its time has passed (a worker down at 15:45).

        The scheduler only fires jobs it was running for, so a worker started later the same
        evening takes the day's snapshot here; one already taken writes nothing.
        """
        if now_ist().time() >= PNL_SNAPSHOT_AT:
            self.pnl_snapshot()

    def mark_signal_outcomes(self) -> JobResult | None:
        """Decide journaled signals from the day's bars; a failure waits for the next day."""
        try:
            self.services.signals.mark_outcomes(now_ist())
        except Exception as exc:
            log.exception("marking signal outcomes failed; retrying on the next run")
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
            log.exception("monthly signal model re-fit failed; the next scheduled run retries")
            return JobResult.failed(exc)
        log.info("monthly re-fit: %s is the active signal model", version.version)
        return JobResult.ok(f"{version.version} is the active signal model")

    def refit_signal_calibrator(self) -> JobResult:
        """Weekly: re-fit the active model's calibrator on the recent window and activate it."""
        try:
            version = self.services.models.scheduled_calibrator_refit(WORKER, progress=log.info)
        except Exception as exc:
            log.exception("weekly calibrator re-fit failed; the next scheduled run retries")
            return JobResult.failed(exc)
        if version is None:
            log.info("weekly calibrator re-fit: nothing to re-fit (no active model, or it "
                     "was made today)")
            return JobResult.skipped("nothing to re-fit (no active model, or it was made today)")
        log.info("weekly re-fit: %s is the active signal model", version.version)
        return JobResult.ok(f"{version.version} is the active signal model")

    def _add(self, job: Callable[[], JobResult | None], trigger: object = None, *, id: str,
             **options: object) -> None:
        """Register ``job`` as scheduler job ``id`` (the scheduler's keyword), tracked."""
        self.scheduler.add_job(self._tracked(id, job), trigger, id=id, **options)

    def _schedule_signals(self) -> None:
        """Outcomes after each weekday's close; model and calibrator on ModelConfig's schedule."""
        settings = self.services.settings
        cfg = self.services.models.cfg
        outcome = settings.signal_outcome_time
        self._add(
            self.mark_signal_outcomes,
            CronTrigger(day_of_week="mon-fri", hour=outcome.hour, minute=outcome.minute,
                        timezone=IST),
            id="signal_outcomes", coalesce=True, misfire_grace_time=6 * 3600)
        self._add(
            self.retrain_signal_model, refit_trigger(cfg.refit_model_every, hour=5, minute=30),
            id="signal_model_refit", coalesce=True, misfire_grace_time=12 * 3600)
        self._add(
            self.refit_signal_calibrator, refit_trigger(cfg.refit_calibrator_every, hour=6),
            id="signal_calibrator_refit", coalesce=True, misfire_grace_time=12 * 3600)
        if settings.signal_train_on_start:
            self._add(self.train_first_signal_model, id="signal_first_model", max_instances=1)

    def schedule(self) -> None:
        """Register the jobs."""
        settings = self.services.settings
        self._schedule_signals()
        if settings.feed_mode != "off":
            self._add(
                self.feed_step, "interval", id="feed", seconds=1, max_instances=1, coalesce=True
            )
        self._add(
            self.trading_step, "interval", id="trading", seconds=1, max_instances=1,
            coalesce=True
        )
        self._add(
            self.heartbeat,
            "interval",
            id="heartbeat",
            seconds=settings.worker_heartbeat_seconds,
            max_instances=1,
            coalesce=True,
        )
        self._add(  # after the 15:30 close; a worker started late still takes it
            self.pnl_snapshot,
            CronTrigger(day_of_week="mon-fri", hour=PNL_SNAPSHOT_AT.hour,
                        minute=PNL_SNAPSHOT_AT.minute, timezone=IST),
            id="pnl_snapshot", coalesce=True, misfire_grace_time=6 * 3600)
        expiry = settings.session_expiry_time
        self._add(
            self.expire_sessions,
            CronTrigger(hour=expiry.hour, minute=expiry.minute, second=1, timezone=IST),
            id="session_expiry",
            coalesce=True,
            misfire_grace_time=3600,
        )
        # BlockingScheduler.start() blocks: a one-shot job writes the next runs once it runs.
        self.scheduler.add_job(self.record_schedule, id=RECORD_SCHEDULE)
        self.scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received signal %d; stopping", signum)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def run(self) -> int:
        """Take the lease, run until stopped, release the lease. Return the exit code."""
        try:
            self.services.worker.acquire(self.holder)
        except WorkerLockHeld as exc:
            print(f"sher worker: {exc}", file=sys.stderr)
            return 2
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)
        log.info("worker %s holds the lease", self.holder)
        try:
            self.expire_sessions()  # catch up if the worker was down at the expiry time
            self.services.models.fail_stale_training(WORKER)  # a stopped worker's training
            self.resume_risk_procedures()
            self.catch_up_pnl_snapshot()
            self.schedule()
            self.scheduler.start()
        finally:
            try:
                self.services.jobs.flush(now_ist())  # the runs the 30 s throttle held back
            except Exception:
                log.exception("could not write the jobs' last runs")
            if self.services.settings.feed_mode != "off":
                self.services.feed.stop()
            self.services.worker.release(self.holder)
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
    sys.exit(main())
