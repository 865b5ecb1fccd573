"""The worker lease (one worker per database) and its heartbeat, read by the app's sidebar."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from core.clock import format_ist, now_ist
from core.domain import WorkerStatus
from core.errors import WorkerLockHeld
from core.services.base import ServiceBase
from db.models import WorkerLockRow

LOCK_NAME = "worker"


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
