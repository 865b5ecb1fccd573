"""The worker: one per database, a heartbeat the app shows, clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import select

from core.clock import now_ist
from core.errors import WorkerLockHeld
from core.trading import OrderRequest, OrderStatus, OrderType, Side
from db.models import WorkerLockRow
from jobs.worker import Worker
from tests.conftest import TEST_SECRET
from tests.support.market import open_market, tick

ROOT = Path(__file__).resolve().parent.parent


def test_the_first_worker_takes_the_lease_and_the_sidebar_sees_it_beat(services) -> None:
    assert services.worker.status().describe() == "worker not running (no heartbeat recorded)"
    services.worker.acquire("host:1:a")
    status = services.worker.status()
    assert status.is_up and status.describe().startswith("worker up, last beat")


def test_a_second_worker_is_refused_with_a_clear_message(services) -> None:
    services.worker.acquire("host:1:a")
    with pytest.raises(WorkerLockHeld, match=r"Another worker \(host:1:a\) holds the lock"):
        services.worker.acquire("host:2:b")


def test_a_dead_workers_stale_lease_is_taken_over_and_the_old_one_stops(services) -> None:
    services.worker.acquire("host:1:a")
    later = now_ist() + timedelta(seconds=services.settings.worker_stale_seconds + 1)
    with time_machine.travel(later, tick=False):
        assert not services.worker.status().is_up
        assert services.worker.status().describe().startswith("worker down: last beat")
        services.worker.acquire("host:2:b")
        assert services.worker.beat("host:2:b")
        assert not services.worker.beat("host:1:a")  # the old worker learns it lost the lease


def test_a_released_lease_can_be_taken_at_once(services) -> None:
    services.worker.acquire("host:1:a")
    services.worker.release("host:1:a")
    services.worker.acquire("host:2:b")
    with services.db.transaction() as session:
        assert session.scalar(select(WorkerLockRow.holder)) == "host:2:b"


def _env(url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": url, "SECRET_KEY": TEST_SECRET,
            "WORKER_HEARTBEAT_SECONDS": "1"}


def _wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_worker_processes_hold_one_lease_and_release_it_on_sigterm(services, demo_url) -> None:
    first = subprocess.Popen([sys.executable, "-m", "jobs.worker"], cwd=ROOT,
                             env=_env(demo_url), stderr=subprocess.DEVNULL)
    try:
        assert _wait_until(lambda: services.worker.status().is_up), "worker never beat"
        second = subprocess.run([sys.executable, "-m", "jobs.worker"], cwd=ROOT,
                                env=_env(demo_url), capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert "Another worker" in second.stderr and "holds the lock" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=20)
    assert first.returncode == 0
    with services.db.transaction() as session:
        assert session.scalar(select(WorkerLockRow.holder)) is None


def test_the_worker_schedules_the_trading_step_and_it_fills_an_open_order(services, login
                                                                           ) -> None:
    worker = Worker(services)
    worker.schedule()
    assert {job.id for job in worker.scheduler.get_jobs()} >= {"trading", "heartbeat"}
    open_market(services.db, {"SBIN": "800.00"})
    priya = login("priya")
    account = next(a.id for a in services.household.list_accounts(priya)
                   if a.label == "Priya · Trading")
    order = services.orders.place(priya, OrderRequest(account, "SBIN", Side.BUY, 3,
                                                      OrderType.MARKET))
    tick(services.db, "SBIN", "801.00")
    worker.trading_step()
    filled = services.orders.order_book(priya, account)[0]
    assert filled.id == order.id and filled.status is OrderStatus.FILLED


# ----------------------------------------------------------------------------------------------
# Signal jobs: outcomes after the close, model and calibrator re-fits, the first model
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def signal_services(demo_url, tmp_path):
    """Services over a demo desk with two symbols' daily bars and its own model folder."""
    from core.services import Services
    from db.engine import Database
    from engines.model import ModelConfig
    from tests.conftest import make_settings
    from tests.support.market import load_instruments
    from tests.test_signal_service import import_daily

    svc = Services(Database(demo_url), make_settings(demo_url, model_dir=tmp_path / "models"))
    svc.models.cfg = ModelConfig(n_rounds=10)
    load_instruments(svc.db)
    for symbol in ("INFY", "TCS"):
        import_daily(svc, tmp_path, symbol)
    yield svc
    svc.db.dispose()


def test_the_worker_schedules_signal_outcomes_and_refits_on_the_model_configs_schedule(
        signal_services) -> None:
    from datetime import datetime

    from core.clock import IST

    worker = Worker(signal_services)
    worker.schedule()
    jobs = {job.id: job for job in worker.scheduler.get_jobs()}
    assert {"signal_outcomes", "signal_model_refit", "signal_calibrator_refit",
            "signal_first_model"} <= set(jobs)
    friday = datetime(2026, 11, 20, 17, 0, tzinfo=IST)
    assert jobs["signal_outcomes"].trigger.get_next_fire_time(None, friday) == datetime(
        2026, 11, 23, 16, 15, tzinfo=IST)  # weekdays after the close: Monday next
    assert jobs["signal_model_refit"].trigger.get_next_fire_time(None, friday) == datetime(
        2026, 12, 1, 5, 30, tzinfo=IST)  # ModelConfig.refit_model_every = "MS"
    assert jobs["signal_calibrator_refit"].trigger.get_next_fire_time(None, friday) == datetime(
        2026, 11, 23, 6, 0, tzinfo=IST)  # ModelConfig.refit_calibrator_every = "W-MON"


def test_with_refits_off_as_in_the_demo_the_worker_schedules_no_model_refit(
        signal_services) -> None:
    signal_services.settings = signal_services.settings.model_copy(
        update={"signal_refit": False})  # what `make run` sets for the demo
    worker = Worker(signal_services)
    worker.schedule()
    jobs = {job.id for job in worker.scheduler.get_jobs()}
    assert "signal_outcomes" in jobs
    assert not {"signal_model_refit", "signal_calibrator_refit"} & jobs


def test_the_worker_sends_summaries_every_minute_after_the_close_and_scans_for_signal_alerts(
        services) -> None:
    from datetime import datetime, time

    from core.clock import IST
    from jobs.worker import SECOND_JOBS

    services.settings = services.settings.model_copy(
        update={"signal_scan_time": time(16, 5)})  # SIGNAL_SCAN_TIME
    worker = Worker(services)
    worker.schedule()
    jobs = {job.id: job for job in worker.scheduler.get_jobs()}
    friday = datetime(2026, 11, 20, 15, 0, tzinfo=IST)
    summary = jobs["daily_summary"]
    assert "daily_summary" not in worker._desk_ids and "daily_summary" in SECOND_JOBS  # memory
    assert summary.trigger.get_next_fire_time(None, friday) == friday.replace(minute=35)
    assert summary.trigger.get_next_fire_time(None, friday.replace(hour=16, second=1)) == (
        friday.replace(hour=16, minute=1))
    assert summary.trigger.get_next_fire_time(None, friday.replace(hour=23, minute=59,
                                                                   second=1)) == datetime(
        2026, 11, 23, 15, 35, tzinfo=IST)  # Monday: none overnight or at the weekend
    scan = jobs["signal_alerts"]
    assert "signal_alerts" in worker._desk_ids and scan.misfire_grace_time == 6 * 3600
    assert scan.trigger.get_next_fire_time(None, friday) == friday.replace(hour=16, minute=5)


def test_a_refit_frequency_the_worker_cannot_schedule_is_a_config_error() -> None:
    from core.errors import ConfigError
    from jobs.worker import refit_trigger

    with pytest.raises(ConfigError, match="Re-fit frequency 'QS' has no worker schedule"):
        refit_trigger("QS", hour=5)


def test_a_fresh_worker_trains_and_activates_the_first_model_and_later_jobs_refit_it(
        signal_services) -> None:
    worker = Worker(signal_services)
    worker.train_first_signal_model()
    first = signal_services.models.in_use().version
    assert first.created_by == "worker" and first.is_active
    worker.train_first_signal_model()  # an active model exists: nothing to do
    assert len(signal_services.models.all_versions()) == 1
    worker.refit_signal_calibrator()  # the active version was made today: skipped
    assert len(signal_services.models.all_versions()) == 1
    later = now_ist() + timedelta(days=7)
    with time_machine.travel(later, tick=False):
        worker.refit_signal_calibrator()
    refit = signal_services.models.in_use().version
    assert refit.base_version == first.version and refit.created_by == "worker"
    worker.retrain_signal_model()
    assert signal_services.models.in_use().version.base_version is None
    assert len(signal_services.models.all_versions()) == 3


def test_a_worker_without_daily_bars_trains_no_model_and_says_why(services, caplog) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="sher.worker"):
        Worker(services).train_first_signal_model()
    assert "no first signal model trained" in caplog.text
    assert services.models.all_versions() == []


def test_the_outcome_job_marks_journaled_signals_and_a_failure_waits_for_the_next_run(
        signal_services, caplog, monkeypatch) -> None:
    import logging

    worker = Worker(signal_services)
    worker.train_first_signal_model()
    calls: list[object] = []
    monkeypatch.setattr(signal_services.signals, "mark_outcomes", calls.append)
    worker.mark_signal_outcomes()
    assert len(calls) == 1

    def broken(_now: object) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(signal_services.signals, "mark_outcomes", broken)
    with caplog.at_level(logging.ERROR, logger="sher.worker"):
        worker.mark_signal_outcomes()
    assert "marking signal outcomes failed; retrying on the next run" in caplog.text


def test_a_worker_whose_database_is_not_up_yet_waits_for_it_and_then_starts(
        services, caplog) -> None:
    import logging

    from sqlalchemy.exc import OperationalError

    worker = Worker(services)
    acquire = services.worker.acquire
    attempts: list[int] = []
    slept: list[float] = []

    def flaky(holder: str) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
        acquire(holder)
        worker._stop_requested = True  # stop right after the start-up catch-up

    worker.services.worker.acquire = flaky  # type: ignore[method-assign]
    worker._sleep = slept.append
    with caplog.at_level(logging.WARNING, logger="sher.worker"):
        assert worker.run() == 0
    assert len(attempts) == 3 and slept == [5.0, 5.0]
    waits = [r.getMessage() for r in caplog.records
             if "database unavailable at start" in r.getMessage()]
    assert len(waits) == 2 and "connection refused" in waits[0]
    assert services.worker.status().holder is None  # released on the way out
