"""The worker process: ``python -m jobs.worker``.

APScheduler runs each job as a thin wrapper over a service call. One worker per database: the
lease in ``worker_lock`` is taken at start (a second worker exits with a clear message), renewed
by the heartbeat and released on a clean stop (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import logging
import signal
import sys
from datetime import time
from types import FrameType

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from core.clock import IST, now_ist
from core.errors import ConfigError, ValidationError, WorkerLockHeld
from core.services import Services, build_services
from core.services.worker import new_holder_id

log = logging.getLogger("sher.worker")
WORKER = "worker"  # the operator name signal-model jobs are audited as
PNL_SNAPSHOT_AT = time(15, 45)  # IST: after the close (15:30), once the last quotes are in
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


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

    def heartbeat(self) -> None:
        """Renew the lease; stop if another worker took it over."""
        if not self.services.worker.beat(self.holder):
            log.error("worker lease lost to another worker; stopping")
            self.scheduler.shutdown(wait=False)

    def expire_sessions(self) -> None:
        """End sessions past the daily expiry time."""
        count = self.services.auth.expire_due_sessions()
        if count:
            log.info("ended %d session(s) at the daily expiry", count)

    def feed_step(self) -> None:
        """Advance the market feed; a failure is logged and the next second tries again."""
        try:
            self.services.feed.step()
        except Exception:
            log.exception("market feed step failed; retrying on the next run")

    def trading_step(self) -> None:
        """Match paper orders, mirror broker state, fire GTTs, then run the risk watch.

        The watch (stop-losses, targets, trailing stops, MTM and loss limits, drawdown, the
        end-of-day MIS square-off) runs right after each step, on the prices that step saw.
        Failures of either wait for the next run.
        """
        try:
            self.services.orders.step()
        except Exception:
            log.exception("trading step failed; retrying on the next run")
        self.risk_watch()

    def risk_watch(self) -> None:
        """Evaluate post-trade controls and limits; act through the order path."""
        try:
            report = self.services.risk_watch.run()
        except Exception:
            log.exception("risk watch failed; retrying on the next run")
            return
        for failure in report.failures:
            log.warning("risk watch: %s", failure)
        if report.square_offs or report.engaged:
            log.info("risk watch: %d exit(s), engaged %s", len(report.square_offs),
                     ", ".join(report.engaged) or "nothing")

    def resume_risk_procedures(self) -> None:
        """Finish panic / kill-switch procedures a stopped worker or app left half done."""
        try:
            for report in self.services.risk.resume_engaging():
                log.warning("resumed an interrupted risk procedure: %s", report.summary())
        except Exception:
            log.exception("resuming interrupted risk procedures failed; the states still hold")

    def pnl_snapshot(self) -> None:
        """Write today's end-of-day P&L snapshot; a failure waits for the next run.

        Taking it again the same day writes nothing new; on a holiday it writes nothing.
        """
        try:
            report = self.services.pnl_snapshots.take()
        except Exception:
            log.exception("P&L snapshot failed; retrying on the next run")
        else:
            log.info("%s", report.summary())

    def catch_up_pnl_snapshot(self) -> None:
        """At start: take today's snapshot if its time has passed (a worker down at 15:45).

        The scheduler only fires jobs it was running for, so a worker started later the same
        evening takes the day's snapshot here; one already taken writes nothing.
        """
        if now_ist().time() >= PNL_SNAPSHOT_AT:
            self.pnl_snapshot()

    def mark_signal_outcomes(self) -> None:
        """Decide journaled signals from the day's bars; a failure waits for the next day."""
        try:
            self.services.signals.mark_outcomes(now_ist())
        except Exception:
            log.exception("marking signal outcomes failed; retrying on the next run")

    def train_first_signal_model(self) -> None:
        """Train and activate the first signal model if none is active (a fresh desk)."""
        if self.services.models.has_usable_state():
            return
        try:
            version = self.services.models.train_as(WORKER, progress=log.info, activate=True)
        except ValidationError as exc:  # no daily bars yet: nothing to learn from
            log.info("no first signal model trained: %s", exc)
        except Exception:
            log.exception("training the first signal model failed; the next start retries")
        else:
            log.info("trained and activated the first signal model %s", version.version)

    def retrain_signal_model(self) -> None:
        """Monthly: train a new model on all daily bars and activate it (previous one kept)."""
        try:
            version = self.services.models.train_as(WORKER, progress=log.info, activate=True)
        except Exception:
            log.exception("monthly signal model re-fit failed; the next scheduled run retries")
        else:
            log.info("monthly re-fit: %s is the active signal model", version.version)

    def refit_signal_calibrator(self) -> None:
        """Weekly: re-fit the active model's calibrator on the recent window and activate it."""
        try:
            version = self.services.models.scheduled_calibrator_refit(WORKER, progress=log.info)
        except Exception:
            log.exception("weekly calibrator re-fit failed; the next scheduled run retries")
        else:
            if version is None:
                log.info("weekly calibrator re-fit: nothing to re-fit (no active model, or it "
                         "was made today)")
            else:
                log.info("weekly re-fit: %s is the active signal model", version.version)

    def _schedule_signals(self) -> None:
        """Outcomes after each weekday's close; model and calibrator on ModelConfig's schedule."""
        settings = self.services.settings
        cfg = self.services.models.cfg
        outcome = settings.signal_outcome_time
        self.scheduler.add_job(
            self.mark_signal_outcomes,
            CronTrigger(day_of_week="mon-fri", hour=outcome.hour, minute=outcome.minute,
                        timezone=IST),
            id="signal_outcomes", coalesce=True, misfire_grace_time=6 * 3600)
        self.scheduler.add_job(
            self.retrain_signal_model, refit_trigger(cfg.refit_model_every, hour=5, minute=30),
            id="signal_model_refit", coalesce=True, misfire_grace_time=12 * 3600)
        self.scheduler.add_job(
            self.refit_signal_calibrator, refit_trigger(cfg.refit_calibrator_every, hour=6),
            id="signal_calibrator_refit", coalesce=True, misfire_grace_time=12 * 3600)
        if settings.signal_train_on_start:
            self.scheduler.add_job(self.train_first_signal_model, id="signal_first_model",
                                   max_instances=1)

    def schedule(self) -> None:
        """Register the jobs."""
        settings = self.services.settings
        self._schedule_signals()
        if settings.feed_mode != "off":
            self.scheduler.add_job(
                self.feed_step, "interval", id="feed", seconds=1, max_instances=1, coalesce=True
            )
        self.scheduler.add_job(
            self.trading_step, "interval", id="trading", seconds=1, max_instances=1,
            coalesce=True
        )
        self.scheduler.add_job(
            self.heartbeat,
            "interval",
            id="heartbeat",
            seconds=settings.worker_heartbeat_seconds,
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.add_job(  # after the 15:30 close; a worker started late still takes it
            self.pnl_snapshot,
            CronTrigger(day_of_week="mon-fri", hour=PNL_SNAPSHOT_AT.hour,
                        minute=PNL_SNAPSHOT_AT.minute, timezone=IST),
            id="pnl_snapshot", coalesce=True, misfire_grace_time=6 * 3600)
        expiry = settings.session_expiry_time
        self.scheduler.add_job(
            self.expire_sessions,
            CronTrigger(hour=expiry.hour, minute=expiry.minute, second=1, timezone=IST),
            id="session_expiry",
            coalesce=True,
            misfire_grace_time=3600,
        )

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
