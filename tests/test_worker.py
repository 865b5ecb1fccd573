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
