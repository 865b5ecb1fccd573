"""The worker's jobs in the app: each run recorded (throttled for 1-second jobs), admins only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from core.clock import IST, format_ist, now_ist
from core.errors import PermissionDenied
from core.services.jobs import THROTTLE_SECONDS, JobResult, JobService, error_message
from db.engine import Database
from db.models import AuditRow, JobOutcome, JobRunRow
from jobs.worker import RECORD_SCHEDULE, Worker
from tests.support.apptest import app_as, page, texts

OK, FAILED = JobOutcome.OK, JobOutcome.FAILED


def _row(services, name: str) -> JobRunRow | None:
    with services.db.transaction() as session:
        row = session.get(JobRunRow, name)
        if row is not None:
            session.expunge(row)
        return row


def test_a_run_records_its_start_end_outcome_and_counts(services, login) -> None:
    start = now_ist()
    assert services.jobs.record_start("pnl_snapshot", start)
    assert _row(services, "pnl_snapshot").last_outcome is None  # running: no outcome yet
    end = start + timedelta(seconds=2)
    assert services.jobs.record_end("pnl_snapshot", end, OK, "wrote 4 snapshots")
    row = _row(services, "pnl_snapshot")
    assert (row.last_started_at, row.last_finished_at) == (start, end)
    assert (row.last_outcome, row.last_message) == (OK, "wrote 4 snapshots")
    assert (row.run_count, row.failure_count) == (1, 0)
    table = services.jobs.jobs(login("rahul"))
    assert table.to_dict("records") == [{
        "job": "pnl_snapshot", "next run (IST)": "—", "last start (IST)": format_ist(start),
        "last end (IST)": format_ist(end), "outcome": "ok", "message": "wrote 4 snapshots",
        "runs": 1, "failures": 0}]


def test_a_failure_stores_the_errors_first_line_and_counts_it(services) -> None:
    at = now_ist()
    error = RuntimeError("(psycopg.OperationalError) connection refused\n[SQL: SELECT 1]\n"
                         "[parameters: ('s3cret',)]")
    services.jobs.record_start("signal_outcomes", at)
    services.jobs.record_end("signal_outcomes", at, FAILED, JobResult.failed(error).message)
    row = _row(services, "signal_outcomes")
    assert row.last_outcome is FAILED
    assert row.last_message == "(psycopg.OperationalError) connection refused"
    assert (row.run_count, row.failure_count) == (1, 1)
    assert error_message("x" * 900) == "x" * 500
    assert error_message(KeyError()) == "KeyError"


def test_a_one_second_job_writes_on_a_change_of_outcome_or_every_30_seconds(services) -> None:
    t0 = now_ist()

    def second(n: int, outcome: JobOutcome = OK) -> tuple[bool, bool]:
        at = t0 + timedelta(seconds=n)
        return (services.jobs.record_start("feed", at),
                services.jobs.record_end("feed", at, outcome, None))

    assert second(0) == (True, True)  # the first run is always written
    assert [second(n) for n in range(1, 10)] == [(False, False)] * 9
    assert _row(services, "feed").run_count == 1
    assert second(10, FAILED) == (False, True)  # a change of outcome is written at once
    row = _row(services, "feed")
    assert (row.last_outcome, row.run_count, row.failure_count) == (FAILED, 11, 1)
    assert row.last_started_at == t0 + timedelta(seconds=10)
    assert second(11) == (False, True)  # and so is the recovery
    assert [second(n) for n in range(12, 11 + THROTTLE_SECONDS)] == [(False, False)] * 29
    assert second(11 + THROTTLE_SECONDS) == (True, True)  # 30 s after the last write
    row = _row(services, "feed")
    assert (row.last_outcome, row.run_count, row.failure_count) == (OK, 42, 1)
    assert row.last_finished_at == t0 + timedelta(seconds=41)
    second(42, OK)
    second(43, OK)  # held back by the throttle ...
    assert services.jobs.flush(t0 + timedelta(seconds=44)) == 1  # ... until the worker stops
    row = _row(services, "feed")
    assert (row.run_count, row.last_finished_at) == (44, t0 + timedelta(seconds=43))
    assert services.jobs.flush(t0 + timedelta(seconds=45)) == 0  # nothing held any more


def test_the_schedule_upserts_every_jobs_next_run(services) -> None:
    at = now_ist().replace(microsecond=0) + timedelta(minutes=5)
    services.jobs.record_end("trading", now_ist(), OK)
    services.jobs.record_schedule({"trading": at, "signal_first_model": None})
    services.jobs.record_schedule({"trading": at + timedelta(seconds=1)})
    assert _row(services, "trading").next_run_at == at + timedelta(seconds=1)
    assert _row(services, "trading").run_count == 1  # the run is kept
    first = _row(services, "signal_first_model")
    assert first.next_run_at is None and first.run_count == 0 and first.last_outcome is None


def test_a_trader_is_refused_the_jobs_by_the_service_and_it_is_audited(services, login) -> None:
    with pytest.raises(PermissionDenied, match="may not see the worker's jobs"):
        services.jobs.jobs(login("priya"))
    with services.db.transaction() as session:
        denied = session.scalar(select(AuditRow.outcome).where(AuditRow.action == "jobs.read"))
    assert denied == "denied"
    assert services.jobs.jobs(login("ops")).empty  # a super admin may read


# ----------------------------------------------------------------------------------------------
# The worker's wrapper
# ----------------------------------------------------------------------------------------------


def test_a_tracked_job_that_raises_is_recorded_failed_and_the_wrapper_does_not_raise(
        services) -> None:
    worker = Worker(services)
    results: list[Exception | None] = [ValueError("no quotes for SBIN\nsecond line"), None]

    def job() -> JobResult | None:
        error = results.pop(0)
        if error is not None:
            raise error
        return None

    tracked = worker._tracked("feed", job)
    tracked()  # must not raise
    row = _row(services, "feed")
    assert (row.last_outcome, row.last_message, row.failure_count) == (
        FAILED, "no quotes for SBIN", 1)
    tracked()  # the next run succeeds: a change of outcome, written at once
    row = _row(services, "feed")
    assert (row.last_outcome, row.last_message, row.run_count, row.failure_count) == (
        OK, None, 2, 1)


def test_a_job_that_catches_its_own_failure_reports_it_and_a_skip_is_recorded(services
                                                                               ) -> None:
    worker = Worker(services)
    worker._tracked("pnl_snapshot", lambda: JobResult.failed(ConnectionError("db gone")))()
    worker._tracked("signal_first_model", lambda: JobResult.skipped("a model is active"))()
    assert _row(services, "pnl_snapshot").last_message == "db gone"
    skipped = _row(services, "signal_first_model")
    assert (skipped.last_outcome, skipped.last_message) == (JobOutcome.SKIPPED,
                                                            "a model is active")


def test_a_recording_failure_never_stops_the_job(services, tmp_path) -> None:
    worker = Worker(services)
    broken = Database(f"sqlite:///{tmp_path / 'unmigrated.db'}")  # no job_runs table
    worker.services.jobs = JobService(broken, services.settings)
    ran: list[bool] = []
    try:
        worker._tracked("heartbeat", lambda: ran.append(True) or None)()
    finally:
        broken.dispose()
    assert ran == [True]


def test_a_run_the_scheduler_missed_is_recorded_as_skipped(services) -> None:
    worker = Worker(services)
    due = now_ist().replace(microsecond=0) - timedelta(hours=7)
    worker._on_missed(JobExecutionEvent(EVENT_JOB_MISSED, "pnl_snapshot", "default", due))
    row = _row(services, "pnl_snapshot")
    assert (row.last_outcome, row.last_message) == (JobOutcome.SKIPPED,
                                                    f"missed its run at {format_ist(due)}")


def test_the_worker_records_the_next_run_of_every_scheduled_job(services) -> None:
    worker = Worker(services)
    worker.scheduler = BackgroundScheduler(timezone=IST)  # start() returns; paused: nothing runs
    worker.schedule()
    worker.scheduler.start(paused=True)
    try:
        worker.record_schedule()
        ids = {job.id for job in worker.scheduler.get_jobs()} - {RECORD_SCHEDULE}
        nexts = {job.id: job.next_run_time for job in worker.scheduler.get_jobs()}
    finally:
        worker.scheduler.shutdown(wait=False)
    with services.db.transaction() as session:
        rows = {r.name: r.next_run_at for r in session.scalars(select(JobRunRow))}
    assert set(rows) == ids and {"trading", "heartbeat", "pnl_snapshot"} <= ids
    assert all(rows[name] == nexts[name] for name in ids)


# ----------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------


def test_an_admin_sees_the_jobs_table_and_the_worker_down_note(desk) -> None:
    svc, _ = desk
    at = now_ist()
    svc.jobs.record_start("pnl_snapshot", at)
    svc.jobs.record_end("pnl_snapshot", at, FAILED, "no quotes for SBIN")
    app = app_as(desk, "rahul").switch_page(page("pages/audit_log.py")).run()
    assert not app.exception
    assert "Worker not running (no heartbeat recorded)" in texts(app)
    table = next(d.value for d in app.dataframe if "job" in d.value.columns)
    assert table.to_dict("records")[0] | {"last start (IST)": None} == {
        "job": "pnl_snapshot", "next run (IST)": "—", "last start (IST)": None,
        "last end (IST)": format_ist(at), "outcome": "failed", "message": "no quotes for SBIN",
        "runs": 1, "failures": 1}


def test_a_trader_does_not_get_the_jobs_page(desk) -> None:
    app = app_as(desk, "priya")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        app.switch_page(page("pages/audit_log.py"))


def test_a_configuration_error_stops_that_job_alerts_once_and_leaves_the_others_running(
        services) -> None:
    from core.errors import ConfigError
    from db.models import AlertOutboxRow

    worker = Worker(services)
    calls: list[str] = []

    def calendar_job() -> JobResult:
        calls.append("ran")
        raise ConfigError("The trading calendar ends 2026-12-31; add 2027's NSE holidays")

    stopping = worker._tracked("pnl_snapshot", calendar_job)
    stopping()
    row = _row(services, "pnl_snapshot")
    assert row.last_outcome == FAILED and "job stopped until restart" in row.last_message
    assert "trading calendar ends 2026-12-31" in row.last_message
    stopping()  # not retried into a loop: skipped, saying why and what to do
    stopping()
    assert calls == ["ran"]
    row = _row(services, "pnl_snapshot")
    assert row.last_outcome == JobOutcome.SKIPPED and "restart the worker" in row.last_message
    with services.db.transaction() as session:
        alerts = list(session.scalars(select(AlertOutboxRow).where(
            AlertOutboxRow.kind == "worker.job_stopped")))
    assert len(alerts) == 1 and alerts[0].severity == "critical"  # one household, once
    assert "pnl_snapshot" in alerts[0].title
    worker._tracked("heartbeat", lambda: None)()  # every other job keeps running
    assert _row(services, "heartbeat").last_outcome == OK
