"""The worker's jobs as the app sees them: last start, end, outcome and message, next run.

The worker records every run here; admins read the table on the audit-log page.

Write policy (the 1-second jobs must not write a row every second): a job's row is written
when its outcome changes, and otherwise at most once every :data:`THROTTLE_SECONDS` (measured
on the times the worker passes in). Runs and failures between two writes are counted in memory
and added on the next write (or by :meth:`JobService.flush` when the worker stops), so the
counts stay exact. A start is written with the same rule; when a start was written its end is
written too, so the row never shows a finished job as still running. Jobs that run less often
than the throttle write every start and end.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta

import pandas as pd
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import Session

from core import alerts, authz
from core.clock import format_ist, to_ist
from core.config import Settings
from core.domain import Actor
from core.errors import ConfigError
from core.services.base import ServiceBase
from db.engine import Database
from db.models import HouseholdRow, JobOutcome, JobRunRow, RiskLimitsRow
from engines.risk_types import RiskLimits

THROTTLE_SECONDS = 30
MESSAGE_CHARS = 500
NAME_CHARS = 60


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a job reports back to the worker's tracking: its outcome and a one-line message."""

    outcome: JobOutcome
    message: str | None = None
    #: The job failed on a configuration error: retrying cannot help (see the worker).
    config_error: bool = False

    @classmethod
    def ok(cls, message: str | None = None) -> JobResult:
        """Return a success, with an optional summary."""
        return cls(JobOutcome.OK, message)

    @classmethod
    def failed(cls, error: BaseException | str) -> JobResult:
        """Return a failure carrying the error's message (see :func:`error_message`)."""
        return cls(JobOutcome.FAILED, error_message(error), isinstance(error, ConfigError))

    @classmethod
    def skipped(cls, reason: str) -> JobResult:
        """Return a run that had nothing to do, and why."""
        return cls(JobOutcome.SKIPPED, reason)


def error_message(error: BaseException | str) -> str:
    """Return the first line of an error's text, at most 500 characters.

    Only the first line: a database error's later lines carry the SQL and its parameters, which
    may hold secrets; a traceback is never part of ``str(exc)``.
    """
    text = error if isinstance(error, str) else (str(error) or type(error).__name__)
    first = text.strip().splitlines()[0] if text.strip() else "failed"
    return first[:MESSAGE_CHARS]


@dataclass(slots=True)
class _Pending:
    """What one job did since its row was last written."""

    written_at: datetime | None = None
    written_outcome: JobOutcome | None = None
    started_at: datetime | None = None
    start_written: bool = False
    runs: int = 0
    failures: int = 0
    ended_at: datetime | None = None
    outcome: JobOutcome | None = None
    message: str | None = None


class JobService(ServiceBase):
    """Record the worker's job runs (throttled) and show them to admins."""

    def __init__(self, db: Database, settings: Settings) -> None:
        """Bind to the database; the throttle state lives in this process (the worker)."""
        super().__init__(db, settings)
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}

    def _due(self, state: _Pending, at: datetime) -> bool:
        return state.written_at is None or at - state.written_at >= timedelta(
            seconds=THROTTLE_SECONDS
        )

    def record_start(self, name: str, at: datetime) -> bool:
        """Note that job ``name`` started at ``at``; return whether the row was written."""
        with self._lock:
            state = self._pending.setdefault(_checked(name), _Pending())
            state.started_at = at
            state.start_written = self._due(state, at)
            if not state.start_written:
                return False
            state.written_at = at
        with self.db.transaction() as session:
            _ensure_row(session, name)
            session.execute(
                update(JobRunRow).where(JobRunRow.name == name).values(last_started_at=at)
            )
        return True

    def record_end(
        self, name: str, at: datetime, outcome: JobOutcome, message: str | None = None
    ) -> bool:
        """Note that job ``name`` ended at ``at`` with ``outcome``; return whether written.

        The row is written on a change of outcome, when this run's start was written, or when
        the last write is :data:`THROTTLE_SECONDS` old.
        """
        with self._lock:
            state = self._pending.setdefault(_checked(name), _Pending())
            state.runs += 1
            state.failures += outcome is JobOutcome.FAILED
            state.ended_at, state.outcome, state.message = at, outcome, message
            changed = outcome is not state.written_outcome
            if not (changed or state.start_written or self._due(state, at)):
                return False
            values = _take(state, at)
        with self.db.transaction() as session:
            _ensure_row(session, name)
            session.execute(update(JobRunRow).where(JobRunRow.name == name).values(**values))
        return True

    def alert_stopped(self, name: str, message: str, at: datetime) -> int:
        """Alert every household that job ``name`` stopped on a configuration error.

        One critical alert per household and job per day (the dedupe key), in one
        transaction; returns how many were new.
        """
        day = to_ist(at).date().isoformat()
        written = 0
        with self.db.transaction() as session:
            for household_id in list(session.scalars(select(HouseholdRow.id))):
                written += alerts.enqueue(
                    session, kind="worker.job_stopped", household_id=household_id,
                    account_id=None, severity="critical",
                    title=f"Worker job {name} stopped: configuration error",
                    body=(f"{message}. The job does not run again until the setting is fixed "
                          "and the worker restarted; every other job keeps running."),
                    dedupe_key=f"job-stopped:{name}:{day}", at=at)
        return written

    def flush(self, at: datetime) -> int:
        """Write the runs the throttle held back (a stopping worker); return the jobs written."""
        with self._lock:
            held = {name: _take(state, at) for name, state in self._pending.items()
                    if state.runs}
        with self.db.transaction() as session:
            for name, values in held.items():
                _ensure_row(session, name)
                session.execute(update(JobRunRow).where(JobRunRow.name == name).values(**values))
        return len(held)

    def record_schedule(self, entries: Mapping[str, datetime | None]) -> None:
        """Write each job's next run time (None: it will not run again), in one transaction."""
        with self.db.transaction() as session:
            for name, next_run in entries.items():
                _ensure_row(session, _checked(name))
                session.execute(
                    update(JobRunRow).where(JobRunRow.name == name).values(next_run_at=next_run)
                )

    def mis_square_off_times(self) -> list[time]:
        """Return every MIS square-off time (IST) in force: the default and each stored limit.

        The worker schedules its end-of-day square-off at each of them; which accounts are due
        at a given moment is the risk watch's decision (each account's effective limits).
        """
        with self.db.transaction() as session:
            stored = set(session.scalars(select(RiskLimitsRow.mis_square_off_at).distinct()))
        return sorted(stored | {RiskLimits().mis_square_off_at})

    def jobs(self, actor: Actor) -> pd.DataFrame:
        """Return every job (by name) with its next run, last run and counts; times in IST.

        Admins and super admins only.
        """
        with self.db.transaction() as session:
            role = self._fresh_role(session, actor)
            if role not in authz.USER_MANAGERS:
                self._deny(actor, "jobs.read", "jobs",
                           f"Your role {role.value!r} may not see the worker's jobs; "
                           "admins and super admins may")
            rows = session.scalars(select(JobRunRow).order_by(JobRunRow.name)).all()
            return pd.DataFrame(
                [
                    {
                        "job": r.name,
                        "next run (IST)": format_ist(r.next_run_at),
                        "last start (IST)": format_ist(r.last_started_at),
                        "last end (IST)": format_ist(r.last_finished_at),
                        "outcome": r.last_outcome.value if r.last_outcome else "not run yet",
                        "message": r.last_message or "",
                        "runs": r.run_count,
                        "failures": r.failure_count,
                    }
                    for r in rows
                ],
                columns=["job", "next run (IST)", "last start (IST)", "last end (IST)",
                         "outcome", "message", "runs", "failures"],
            )


def _take(state: _Pending, at: datetime) -> dict[str, object]:
    """Return the column values of ``state``'s held runs and mark them written at ``at``."""
    values: dict[str, object] = {
        "last_finished_at": state.ended_at,
        "last_outcome": state.outcome,
        "last_message": state.message[:MESSAGE_CHARS] if state.message else None,
        "run_count": JobRunRow.run_count + state.runs,
        "failure_count": JobRunRow.failure_count + state.failures,
    }
    if state.started_at is not None:
        values["last_started_at"] = state.started_at
    state.runs = state.failures = 0
    state.written_at, state.written_outcome = at, state.outcome
    state.start_written = False
    return values


def _checked(name: str) -> str:
    if not name or len(name) > NAME_CHARS:
        raise ConfigError(f"A job name must be 1-{NAME_CHARS} characters; got {name!r}")
    return name


def _ensure_row(session: Session, name: str) -> None:
    """Insert the job's row if missing (a concurrent insert of the same name is not an error)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(JobRunRow)
        .values(name=name, run_count=0, failure_count=0)
        .on_conflict_do_nothing(index_elements=[JobRunRow.name])
    )


def database_down(exc: BaseException) -> bool:
    """Return whether ``exc`` says the database cannot be used now (rather than a bug).

    The driver's OperationalError (connection refused or lost, server shutting down, SQLite
    locked) as SQLAlchemy wraps it, a connection SQLAlchemy found dead, or a pooled one that
    failed its ping.
    """
    return isinstance(exc, OperationalError | DisconnectionError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


def log_failure(logger: logging.Logger, exc: BaseException, message: str,
                *args: object) -> None:
    """Log a job's failure: one line if the database is unreachable, else with the traceback."""
    if database_down(exc):
        logger.warning(message + " (database unavailable: %s)", *args, error_message(exc))
    else:
        logger.exception(message, *args)
