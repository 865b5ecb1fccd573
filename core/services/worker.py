"""The worker lease (one worker per database), its heartbeat (read by the app's sidebar), and
the watch that alerts the households when the worker is down."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from core import alerts
from core.clock import format_ist, now_ist
from core.domain import WorkerStatus
from core.errors import WorkerLockHeld
from core.services.base import ServiceBase
from db.models import HouseholdRow, WorkerLockRow

LOCK_NAME = "worker"
#: A worker silent this many seconds is reported down (its heartbeat is every few seconds).
WORKER_DOWN_S = 60.0

log = logging.getLogger("sher.worker.watch")


def new_holder_id() -> str:
    """Return an id naming this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class WorkerService(ServiceBase):
    """Acquire, renew and release the worker lease; report the heartbeat."""

    def acquire(self, holder: str) -> None:
        """Take the lease, or raise WorkerLockHeld if a live worker holds it."""
        now = now_ist()
        stale = timedelta(seconds=self.settings.worker_stale_seconds)
        with self.db.transaction() as session:
            row = session.get(WorkerLockRow, LOCK_NAME)
            if row is None:
                try:
                    with session.begin_nested():
                        session.add(
                            WorkerLockRow(
                                name=LOCK_NAME, holder=holder, started_at=now, heartbeat_at=now
                            )
                        )
                    return
                except IntegrityError:
                    row = session.get(WorkerLockRow, LOCK_NAME)
                    assert row is not None  # noqa: S101
            if row.holder and row.heartbeat_at and now - row.heartbeat_at < stale:
                raise WorkerLockHeld(
                    f"Another worker ({row.holder}) holds the lock; its last beat was at "
                    f"{format_ist(row.heartbeat_at)}, less than "
                    f"{self.settings.worker_stale_seconds} s ago. Stop it first, or wait "
                    "that long after it died."
                )
            same_holder = (
                WorkerLockRow.holder.is_(None)
                if row.holder is None
                else WorkerLockRow.holder == row.holder
            )
            taken = session.execute(
                update(WorkerLockRow)
                .where(WorkerLockRow.name == LOCK_NAME, same_holder)
                .values(holder=holder, started_at=now, heartbeat_at=now)
                .returning(WorkerLockRow.name)
            ).first()
            if taken is None:
                raise WorkerLockHeld("Another worker took the lock at the same moment")

    def beat(self, holder: str) -> bool:
        """Renew the heartbeat; return False if the lease was lost to another worker."""
        with self.db.transaction() as session:
            return bool(
                session.execute(
                    update(WorkerLockRow)
                    .where(WorkerLockRow.name == LOCK_NAME, WorkerLockRow.holder == holder)
                    .values(heartbeat_at=now_ist())
                    .returning(WorkerLockRow.name)
                ).first()
            )

    def release(self, holder: str) -> None:
        """Give the lease up on a clean shutdown."""
        with self.db.transaction() as session:
            session.execute(
                update(WorkerLockRow)
                .where(WorkerLockRow.name == LOCK_NAME, WorkerLockRow.holder == holder)
                .values(holder=None)
            )

    def status(self) -> WorkerStatus:
        """Return the last heartbeat and whether the worker counts as up."""
        with self.db.transaction() as session:
            row = session.scalar(select(WorkerLockRow).where(WorkerLockRow.name == LOCK_NAME))
        if row is None or row.heartbeat_at is None:
            return WorkerStatus(None, None, None, None, False)
        age = (now_ist() - row.heartbeat_at).total_seconds()
        up = row.holder is not None and age < 3 * self.settings.worker_heartbeat_seconds
        return WorkerStatus(row.holder, row.started_at, row.heartbeat_at, max(age, 0.0), up)


class WorkerWatch:
    """Alert every household once when the worker is down, and once when it is back.

    Run by the Telegram bot process, beside the worker (a stopped worker cannot report itself).
    Each down episode is named by the worker's last heartbeat, so a restarted watcher writes
    nothing new for the same episode (the alerts' dedupe keys).
    """

    def __init__(self, worker: WorkerService, down_after_s: float = WORKER_DOWN_S) -> None:
        """Watch ``worker``'s heartbeat; down means none for ``down_after_s`` seconds."""
        self.worker = worker
        self.down_after_s = down_after_s
        self.episode: datetime | None = None  # the last beat before the current down episode

    def check(self) -> str | None:
        """Look at the heartbeat once; return "down"/"up" when alerts were written.

        A worker that never beat (a fresh desk) is not reported: there is no episode to name.
        """
        status = self.worker.status()
        if status.last_beat_at is None:
            return None
        age = status.seconds_since_beat or 0.0
        if not status.is_up and age > self.down_after_s:
            if self.episode == status.last_beat_at:
                return None
            self.episode = status.last_beat_at
            self._write("worker.down", "warning", "Worker down: stops and orders not watched",
                        f"The desk's worker has not beaten since {format_ist(status.last_beat_at)}"
                        f" ({age:.0f} s). Stop-losses, targets, GTTs, the square-off and the "
                        "feed do not run until it is back: restart it (make run, or python -m "
                        "jobs.worker).", status.last_beat_at)
            return "down"
        if status.is_up and self.episode is not None:
            episode, self.episode = self.episode, None
            self._write("worker.up", "info", "Worker back",
                        f"The worker beats again (last beat {format_ist(status.last_beat_at)}); "
                        f"it was silent from {format_ist(episode)}.", episode)
            return "up"
        return None

    def _write(self, kind: str, severity: str, title: str, body: str,
               episode: datetime) -> None:
        stamp = int(episode.timestamp())
        with self.worker.db.transaction() as session:
            households = list(session.scalars(select(HouseholdRow.id)))
            for household_id in households:
                alerts.enqueue(session, kind=kind, household_id=household_id, account_id=None,
                               severity=severity, title=title, body=body,
                               dedupe_key=f"{kind}:{household_id}:{stamp}")
        log.info("%s alert written for %d household(s)", kind, len(households))
