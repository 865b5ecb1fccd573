"""The worker process: ``python -m jobs.worker``.

APScheduler runs each job as a thin wrapper over a service call. One worker per database: the
lease in ``worker_lock`` is taken at start (a second worker exits with a clear message), renewed
by the heartbeat and released on a clean stop (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from core.clock import IST
from core.errors import ConfigError, WorkerLockHeld
from core.services import Services, build_services
from core.services.worker import new_holder_id

log = logging.getLogger("sher.worker")


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
        """Match paper orders, mirror broker state, fire GTTs; failures wait for the next run."""
        try:
            self.services.orders.step()
        except Exception:
            log.exception("trading step failed; retrying on the next run")

    def schedule(self) -> None:
        """Register the jobs."""
        settings = self.services.settings
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
