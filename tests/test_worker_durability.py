"""The worker's durability: jobs stored in the desk's database, market-day jobs, the EOD
square-off once however often it runs, a crash in the middle of it, a database restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from time import monotonic, sleep

import pytest
import time_machine
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select

from core.clock import IST, now_ist
from core.domain import Actor
from core.marketdata import store as bar_store
from core.services import Services
from core.services.jobs import JobResult
from core.trading import OrderRequest, OrderStatus, OrderType, Product, Side
from db.engine import Database
from db.models import (
    AlertOutboxRow,
    JobOutcome,
    JobRunRow,
    OrderRow,
    WorkerLockRow,
)
from jobs.worker import DESK_STORE, JOBS_TABLE, RECORD_SCHEDULE, DeskJobStore, Worker
from tests.conftest import TEST_SECRET, make_settings
from tests.support.market import load_instruments, open_market, set_feed, tick
from tests.support.pg import _SERVER_OPTIONS as SERVER_OPTIONS
from tests.support.pg import PostgresServer, require_postgres_or_skip

ROOT = Path(__file__).resolve().parent.parent
FRIDAY = datetime(2026, 11, 20, tzinfo=IST)  # an NSE trading day
SATURDAY = datetime(2026, 11, 21, tzinfo=IST)
DESK_JOBS = {"pre_open", "market_open", "eod_square_off", "market_close", "pnl_snapshot",
             "session_expiry", "signal_outcomes", "signal_alerts", "signal_model_refit",
             "signal_calibrator_refit", "session_warning", "session_logout_alerts"}


def at(moment: datetime, hour: int, minute: int, second: int = 0) -> datetime:
    return moment.replace(hour=hour, minute=minute, second=second)


def _row(services: Services, name: str) -> JobRunRow:
    with services.db.transaction() as session:
        row = session.get(JobRunRow, name)
        assert row is not None, name
        session.expunge(row)
        return row


def _runs(services: Services, name: str) -> int:
    with services.db.transaction() as session:
        return session.scalar(select(JobRunRow.run_count).where(JobRunRow.name == name)) or 0


def _stored(services: Services) -> dict[str, datetime | None]:
    return DeskJobStore(services.db.engine).stored_next_runs()


def _exits(services: Services) -> list[OrderRow]:
    with services.db.transaction() as session:
        return list(session.scalars(select(OrderRow).where(OrderRow.source == "risk")
                                    .order_by(OrderRow.id)))


def _count(services: Services, model: type, *where: object) -> int:
    with services.db.transaction() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


@pytest.fixture
def priya(services: Services, login) -> Actor:
    return login("priya")


@pytest.fixture
def account(services: Services, priya: Actor) -> int:
    return next(a.id for a in services.household.list_accounts(priya)
                if a.label == "Priya · Trading")


def _hold_mis(services: Services, actor: Actor, account_id: int, symbol: str = "SBIN",
              quantity: int = 10) -> None:
    services.orders.place(actor, OrderRequest(account_id, symbol, Side.BUY, quantity,
                                              OrderType.MARKET, Product.MIS))
    tick(services.db, symbol, "800.00")
    services.orders.step()


# ----------------------------------------------------------------------------------------------
# Jobs in the desk's database
# ----------------------------------------------------------------------------------------------


def _start_paused(worker: Worker) -> None:
    worker.scheduler = BackgroundScheduler(timezone=IST)  # start() returns; paused: nothing runs
    worker.schedule()
    worker.scheduler.start(paused=True)


def test_calendar_jobs_are_stored_in_the_desks_database_once_however_often_it_starts(
        services: Services) -> None:
    for _start in range(2):
        worker = Worker(services)
        _start_paused(worker)
        worker.scheduler.shutdown(wait=False)
    stored = _stored(services)
    assert set(stored) == DESK_JOBS  # one row each; 1-second jobs stay in memory
    with services.db.transaction() as session:
        table = DeskJobStore(services.db.engine).jobs_t
        assert session.execute(select(func.count()).select_from(table)).scalar() == len(DESK_JOBS)
    assert JOBS_TABLE == "apscheduler_jobs"
    worker = Worker(services)
    _start_paused(worker)
    try:
        jobs = {job.id: job for job in worker.scheduler.get_jobs(jobstore=DESK_STORE)}
    finally:
        worker.scheduler.shutdown(wait=False)
    assert set(jobs) == DESK_JOBS
    assert all(job.func_ref == "jobs.worker:run_job" and job.args == (job.id,)
               for job in jobs.values())


def test_a_run_missed_while_the_worker_was_down_is_kept_for_the_misfire_policy(
        services: Services) -> None:
    with time_machine.travel(at(FRIDAY, 15, 0), tick=False):
        worker = Worker(services)
        _start_paused(worker)
        worker.scheduler.shutdown(wait=False)
    assert _stored(services)["eod_square_off"] == at(FRIDAY, 15, 15)
    with time_machine.travel(at(FRIDAY, 15, 20), tick=False):  # down over 15:15
        worker = Worker(services)
        _start_paused(worker)
        try:
            eod = worker.scheduler.get_job("eod_square_off")
            expiry = worker.scheduler.get_job("session_expiry")
        finally:
            worker.scheduler.shutdown(wait=False)
    assert eod.next_run_time == at(FRIDAY, 15, 15)  # due: 5 min late, within its grace
    assert eod.coalesce and eod.misfire_grace_time == 15 * 60  # until the 15:30 close
    assert expiry.next_run_time == at(FRIDAY + timedelta(days=1), 3, 0, 1)  # not missed
    assert expiry.misfire_grace_time == 24 * 3600


@pytest.mark.parametrize(("restart", "outcome", "message"), [
    ((15, 20), JobOutcome.SKIPPED, "outside"),  # run by the scheduler at once: in session ...
    ((15, 40), JobOutcome.SKIPPED, "missed its run at 2026-11-20 15:15:00 IST"),  # ... or not
], ids=["within-grace", "after-the-close"])
def test_the_scheduler_runs_or_records_a_square_off_missed_while_the_worker_was_down(
        services: Services, restart: tuple[int, int], outcome: JobOutcome,
        message: str) -> None:
    with time_machine.travel(at(FRIDAY, 15, 0), tick=False):
        worker = Worker(services)
        _start_paused(worker)  # stores the next run: 15:15
        worker.scheduler.shutdown(wait=False)
    with time_machine.travel(at(FRIDAY, *restart), tick=True):
        worker = Worker(services)
        worker.scheduler = BackgroundScheduler(timezone=IST)
        worker.eod_square_off = lambda: JobResult.skipped("outside")  # type: ignore[method-assign]
        worker.schedule()
        worker.scheduler.start()
        try:
            assert _wait_until(lambda: _runs(services, "eod_square_off") > 0, 15)
        finally:  # one-shot jobs done first: APScheduler's shutdown races their removal
            _wait_until(lambda: not {RECORD_SCHEDULE, "signal_first_model"} & {
                job.id for job in worker.scheduler.get_jobs()}, 15)
            worker.scheduler.shutdown(wait=True)
    row = _row(services, "eod_square_off")
    assert (row.last_outcome, row.last_message, row.run_count) == (outcome, message, 1)
    assert _stored(services)["eod_square_off"] == at(FRIDAY + timedelta(days=3), 15, 15)


def test_a_stored_job_the_worker_no_longer_schedules_is_removed(services: Services) -> None:
    worker = Worker(services)
    _start_paused(worker)
    worker.scheduler.add_job("jobs.worker:run_job", "interval", args=["retired"], id="retired",
                             jobstore=DESK_STORE, hours=1)
    worker.scheduler.shutdown(wait=False)
    assert "retired" in _stored(services)
    Worker(services).schedule()
    assert set(_stored(services)) == DESK_JOBS


def test_the_eod_square_off_runs_at_every_configured_time_on_weekdays(
        services: Services, login) -> None:
    services.risk.set_limits(login("rahul"), None, {"mis_square_off_at": time(15, 5)})
    worker = Worker(services)
    worker.schedule()
    job = worker.scheduler.get_job("eod_square_off")
    assert [t.strftime("%H:%M") for t in worker.eod_times] == ["15:05", "15:15"]
    assert job.trigger.get_next_fire_time(None, at(FRIDAY, 15, 0)) == at(FRIDAY, 15, 5)
    assert job.trigger.get_next_fire_time(None, at(FRIDAY, 15, 6)) == at(FRIDAY, 15, 15)
    assert job.trigger.get_next_fire_time(None, at(FRIDAY, 15, 16)) == at(
        FRIDAY + timedelta(days=3), 15, 5)  # Monday
    assert job.misfire_grace_time == 25 * 60


# ----------------------------------------------------------------------------------------------
# Market-day jobs, with time travel
# ----------------------------------------------------------------------------------------------


def test_the_eod_square_off_closes_mis_positions_once_and_only_in_its_window(
        services: Services, priya: Actor, account: int) -> None:
    open_market(services.db, {"SBIN": "800.00"})
    _hold_mis(services, priya, account)
    worker = Worker(services)
    worker.schedule()
    eod = worker.job("eod_square_off")
    assert eod is not None
    with time_machine.travel(at(FRIDAY, 15, 10), tick=False):
        set_feed(services.db)
        eod()
    assert _exits(services) == []
    assert _row(services, "eod_square_off").last_outcome is JobOutcome.SKIPPED
    assert "before the first MIS square-off time (15:15 IST)" in _row(
        services, "eod_square_off").last_message
    for minute in (16, 17):
        with time_machine.travel(at(FRIDAY, 15, minute), tick=False):
            set_feed(services.db)
            eod()
    exits = _exits(services)
    assert [(e.side, e.quantity, e.product) for e in exits] == [(Side.SELL, 10, Product.MIS)]
    row = _row(services, "eod_square_off")
    assert (row.last_outcome, row.run_count) == (JobOutcome.OK, 3)
    assert row.last_message.startswith("1 exit order(s) placed or found")
    assert _count(services, AlertOutboxRow, AlertOutboxRow.kind == "risk.eod") == 1


def test_a_worker_starting_inside_the_square_off_window_squares_off_at_once(
        services: Services, priya: Actor, account: int) -> None:
    open_market(services.db, {"SBIN": "800.00"})
    _hold_mis(services, priya, account)
    fed: list[datetime] = []

    def feed_step(now: datetime | None = None) -> None:  # the test's market as the feed
        fed.append(now_ist())
        set_feed(services.db)

    services.feed.step = feed_step  # type: ignore[method-assign,assignment]
    # Saturday: the paper market (the demo's) runs on weekends too, and MIS is never carried
    for moment, expected in ((at(FRIDAY, 15, 10), 0), (at(SATURDAY, 15, 20), 1)):
        with time_machine.travel(moment, tick=False):
            worker = Worker(services)
            worker.schedule()
            worker.catch_up()
        assert len(_exits(services)) == expected, moment
    assert fed == [at(SATURDAY, 15, 20)]  # a fresh feed before squaring off, in the window
    assert _row(services, "eod_square_off").last_outcome is JobOutcome.OK
    assert _row(services, "session_expiry").last_outcome is JobOutcome.OK


def test_the_market_open_job_releases_a_queued_amo_and_records_it(
        services: Services, priya: Actor, account: int) -> None:
    load_instruments(services.db)
    with time_machine.travel(at(FRIDAY, 8, 0), tick=False):
        tick(services.db, "SBIN", "800.00")
        set_feed(services.db, running=False)
        amo = services.orders.place(priya, OrderRequest(account, "SBIN", Side.BUY, 5,
                                                        OrderType.MARKET, amo=True))
    assert amo.status is OrderStatus.OPEN
    worker = Worker(services)
    worker.schedule()
    with time_machine.travel(at(FRIDAY, 9, 15), tick=False):
        set_feed(services.db)
        tick(services.db, "SBIN", "801.00")
        worker.job("market_open")()
    filled = services.orders.order_book(priya, account)[0]
    assert filled.id == amo.id and filled.status is OrderStatus.FILLED
    row = _row(services, "market_open")
    assert row.last_outcome is JobOutcome.OK
    assert row.last_message.startswith("session open (Normal market 09:15-15:30 IST): 1 venue")


@pytest.mark.parametrize("name", ["pre_open", "market_open", "market_close"])
def test_a_calendar_job_skips_a_day_nse_does_not_trade(services: Services, name: str) -> None:
    worker = Worker(services)
    worker.schedule()
    holiday = datetime(2026, 11, 24, 9, 15, tzinfo=IST)  # a Tuesday NSE does not trade
    with time_machine.travel(holiday, tick=False):
        worker.job(name)()
    row = _row(services, name)
    assert (row.last_outcome, row.last_message) == (
        JobOutcome.SKIPPED, "2026-11-24 is not an NSE trading day")


def test_the_pnl_snapshot_job_records_a_day_nse_does_not_trade_as_skipped(
        services: Services) -> None:
    worker = Worker(services)
    worker.schedule()
    with time_machine.travel(datetime(2026, 11, 24, 15, 45, tzinfo=IST), tick=False):
        worker.job("pnl_snapshot")()
    row = _row(services, "pnl_snapshot")
    assert (row.last_outcome, row.last_message) == (
        JobOutcome.SKIPPED,
        "no P&L snapshot for 2026-11-24: Tuesday 24 Nov 2026 is not an NSE trading day")


def test_the_pre_open_and_close_jobs_run_on_a_trading_day(services: Services) -> None:
    worker = Worker(services)
    worker.schedule()
    with time_machine.travel(at(FRIDAY, 9, 0), tick=False):
        worker.job("pre_open")()
    row = _row(services, "pre_open")
    assert (row.last_outcome, row.last_message) == (
        JobOutcome.OK, "pre-open: 0 lapsed loss limit(s) lifted; Pre-open 09:00-09:15 IST")
    with time_machine.travel(at(FRIDAY, 15, 30), tick=False):
        worker.job("market_close")()
    assert _row(services, "market_close").last_outcome is JobOutcome.OK
    jobs = {job.id: job for job in worker.scheduler.get_jobs()}
    assert jobs["pre_open"].trigger.get_next_fire_time(None, at(FRIDAY, 10, 0)) == at(
        FRIDAY + timedelta(days=3), 9, 0)
    assert jobs["market_close"].trigger.get_next_fire_time(None, at(FRIDAY, 10, 0)) == at(
        FRIDAY, 15, 30)


# ----------------------------------------------------------------------------------------------
# Real worker processes: a crash in the middle of the square-off, a database restart
# ----------------------------------------------------------------------------------------------

#: Starts the worker at TEST_START_AT if set (time_machine, ticking on: APScheduler, the clock
#: and the services all see it); with CRASH_MARKER set, the square-off stops for good once
#: CRASH_AFTER exits exist, at CRASH_POINT (between two exits, or right after an exit order is
#: written, before the watch's own bookkeeping), and writes the marker, so the test can
#: ``kill -9`` it there.
LAUNCH = """
import os, pathlib, runpy, sys, threading, time
from datetime import datetime
import time_machine
if os.environ.get("TEST_START_AT"):
    start_at = datetime.fromisoformat(os.environ["TEST_START_AT"])
    time_machine.travel(start_at, tick=True).start()
marker = os.environ.get("CRASH_MARKER")
if marker:
    from core.orders import OrderManager
    from core.services.risk_watch import RiskWatch
    limit, lock, done = int(os.environ["CRASH_AFTER"]), threading.Lock(), set()
    def stop_if_done():  # every square-off thread stops here once `limit` exits exist
        if len(done) >= limit:
            pathlib.Path(marker).write_text(str(sorted(done)))
            time.sleep(3600)
    if os.environ["CRASH_POINT"] == "between_exits":  # after an exit and its alert
        square_off = RiskWatch._square_off
        def stopping_square_off(self, household_id, square, now, report):
            with lock:
                stop_if_done()
                before = len(report.square_offs)
                square_off(self, household_id, square, now, report)
                done.update(report.square_offs[before:])
                stop_if_done()
        RiskWatch._square_off = stopping_square_off
    else:  # "after_submit": the exit order is written (with its alert, in one transaction)
        submit = OrderManager.submit
        def stopping_submit(self, request, **kwargs):
            if kwargs.get("source") != "risk":
                return submit(self, request, **kwargs)
            with lock:
                stop_if_done()
                order = submit(self, request, **kwargs)
                done.add(order.id)
                stop_if_done()
                return order
        OrderManager.submit = stopping_submit
sys.argv = ["jobs.worker"]
runpy.run_module("jobs.worker", run_name="__main__")
"""
REPLAY_DAY = date(2021, 4, 12)
SYMBOLS = ("SBIN", "TCS")


def _worker_env(url: str, start_at: datetime | None, **extra: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": url, "SECRET_KEY": TEST_SECRET,
            "WORKER_HEARTBEAT_SECONDS": "1", "WORKER_STALE_SECONDS": "5",
            "SIGNAL_TRAIN_ON_START": "false",
            "TEST_START_AT": start_at.isoformat() if start_at else "", **extra}


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-c", LAUNCH], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def _wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = monotonic() + timeout
    while monotonic() < deadline:
        if predicate():
            return True
        sleep(0.2)
    return False


@pytest.fixture
def stop_workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes a test started; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _mis_desk(services: Services, rahul: Actor) -> dict[tuple[int, str], int]:
    """Open MIS positions on every account rahul trades, in both replayed symbols.

    Positions are entered at the replay session's opening prices (the worker's feed plays that
    session), so the exits' fills move nothing near a loss limit. Return {(account, symbol):
    quantity}.
    """
    from tests.test_feed import sample_bars

    load_instruments(services.db)
    opening = {}
    with services.db.transaction() as session:
        for symbol in SYMBOLS:
            bars = sample_bars(symbol, REPLAY_DAY, REPLAY_DAY)
            instrument_id = bar_store.upsert_instruments(session, [
                {"symbol": symbol, "exchange": "NSE", "segment": "EQ", "name": symbol,
                 "tick_size": Decimal("0.05"), "lot_size": 1, "sector": None,
                 "isin": None}])[symbol]
            from core.domain import Interval
            bar_store.upsert_bars(session, instrument_id, Interval.M5, bars)
            opening[symbol] = str(bars.between_time("09:15", "09:15")["open"].iloc[0])
    held = {}
    with time_machine.travel(at(FRIDAY, 14, 0), tick=True):
        open_market(services.db, opening)
        for account in services.orders.tradable_accounts(rahul):
            for quantity, symbol in enumerate(SYMBOLS, start=3):
                services.orders.place(rahul, OrderRequest(account.id, symbol, Side.BUY,
                                                          quantity, OrderType.MARKET,
                                                          Product.MIS))
                held[(account.id, symbol)] = quantity
        for symbol, price in opening.items():
            tick(services.db, symbol, price)
        services.orders.step()
    with services.db.transaction() as session:
        filled = session.scalar(select(func.count()).select_from(OrderRow).where(
            OrderRow.status == OrderStatus.FILLED))
    assert filled == len(held) >= 6
    return held


@pytest.mark.parametrize("crash_point", ["between_exits", "after_submit"])
def test_a_worker_killed_in_the_middle_of_the_square_off_closes_each_position_once(
        services: Services, login, tmp_path: Path, stop_workers, crash_point: str) -> None:
    held = _mis_desk(services, login("rahul"))
    marker = tmp_path / "crashed"
    log = tmp_path / "worker.log"
    replay = {"FEED_MODE": "replay", "REPLAY_START": REPLAY_DAY.isoformat(),
              "REPLAY_SPEED": "100"}
    first = _start_worker(_worker_env(services.db.url, at(FRIDAY, 15, 14, 57),
                                      CRASH_MARKER=str(marker), CRASH_AFTER="2",
                                      CRASH_POINT=crash_point, **replay),
                          log)
    stop_workers.append(first)
    assert _wait_until(marker.exists, 45), log.read_text()
    first.send_signal(signal.SIGKILL)  # kill -9: no clean-up, the lease stays held
    first.wait(timeout=10)
    placed = _exits(services)
    assert len(placed) == 2 < len(held)  # in the middle: some exits placed, not all
    alerted = _count(services, AlertOutboxRow, AlertOutboxRow.kind == "risk.eod")
    assert alerted == 2  # each exit order committed with its alert: none can be lost
    sleep(5.5)  # the dead worker's lease goes stale (WORKER_STALE_SECONDS=5)
    second = _start_worker(_worker_env(services.db.url, at(FRIDAY, 15, 15, 30), **replay), log)
    stop_workers.append(second)

    def all_closed() -> bool:
        exits = _exits(services)
        return len(exits) >= len(held) and all(e.status is OrderStatus.FILLED for e in exits)

    assert _wait_until(all_closed, 40), log.read_text()[-3000:]
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=20) == 0, log.read_text()[-3000:]
    exits = _exits(services)
    assert sorted((e.account_id, e.symbol, e.side, e.quantity, e.product) for e in exits) == \
        sorted((account, symbol, Side.SELL, quantity, Product.MIS)
               for (account, symbol), quantity in held.items())  # each position, once
    assert {e.id for e in placed} <= {e.id for e in exits}  # the first worker's exits kept
    with services.db.transaction() as session:
        per_key = session.execute(
            select(OrderRow.account_id, OrderRow.symbol, OrderRow.source, func.count())
            .group_by(OrderRow.account_id, OrderRow.symbol, OrderRow.source)).all()
        alerts = session.execute(
            select(AlertOutboxRow.dedupe_key, func.count()).where(
                AlertOutboxRow.kind == "risk.eod").group_by(AlertOutboxRow.dedupe_key)).all()
        every_alert = session.execute(
            select(AlertOutboxRow.dedupe_key, func.count())
            .group_by(AlertOutboxRow.dedupe_key)).all()
    assert {count for *_key, count in per_key} == {1}  # one entry and one exit per position
    assert len(per_key) == 2 * len(held)
    assert sorted(key for key, _ in alerts) == sorted(
        f"risk-exit:{e.client_order_id}" for e in exits)  # one alert per exit
    assert all(count == 1 for _key, count in every_alert)
    with services.db.transaction() as session:
        assert session.scalar(select(WorkerLockRow.holder)) is None  # released on SIGTERM


def _restart_on_the_same_port(server: PostgresServer, down_seconds: float) -> None:
    """Stop the server as an operator would (``pg_ctl stop -m fast``), wait, start it again."""
    assert server.bindir is not None and server.port is not None
    pg_ctl = str(server.bindir / "pg_ctl")
    stopped = server._run([pg_ctl, "stop", "-D", str(server.data_dir), "-m", "fast", "-w"])
    assert stopped.returncode == 0, stopped.stderr
    sleep(down_seconds)
    options = " ".join(("-p", str(server.port), "-k", str(server.socket_dir), *SERVER_OPTIONS))
    started = server._run([pg_ctl, "start", "-w", "-D", str(server.data_dir), "-l",
                           str(server.log_file), "-o", options])
    assert started.returncode == 0, started.stderr


@pytest.mark.postgres
def test_a_running_worker_rides_out_a_postgresql_restart_and_loses_no_job(
        tmp_path: Path, stop_workers) -> None:
    from core.seed import seed_demo
    from db.migrate import upgrade

    bindir = require_postgres_or_skip()
    with PostgresServer(bindir) as server:
        server.create_database("desk")
        url = server.url("desk")
        upgrade(url)
        services = Services(Database(url), make_settings(url))
        try:
            seed_demo(services)
            log = tmp_path / "worker.log"
            worker = _start_worker(_worker_env(url, None, FEED_MODE="off"), log)
            stop_workers.append(worker)

            def beating_since(moment: datetime) -> Callable[[], bool]:
                def check() -> bool:
                    try:
                        status = services.worker.status()
                    except Exception:  # the database is still coming back
                        return False
                    return status.last_beat_at is not None and status.last_beat_at > moment
                return check

            assert _wait_until(beating_since(datetime.now(IST)), 30), log.read_text()
            assert _wait_until(lambda: set(_stored(services)) == DESK_JOBS, 10)
            assert _wait_until(lambda: _runs(services, "trading") > 0, 10)
            stored = _stored(services)
            before = _row(services, "trading")
            _restart_on_the_same_port(server, down_seconds=5)
            services.db.dispose()  # this test's own pooled connections died with the server
            back = datetime.now(IST)
            assert _wait_until(beating_since(back), 20), log.read_text()[-3000:]
            assert worker.poll() is None, log.read_text()[-3000:]  # never stopped
            assert _wait_until(lambda: _runs(services, "trading") > before.run_count,
                               20), log.read_text()[-3000:]
            after = _row(services, "trading")
            assert after.last_finished_at > before.last_finished_at
            assert _stored(services) == stored  # every stored job, same next runs
            text = log.read_text()
            assert "database unavailable" in text and "Traceback" not in text
            assert "[SQL:" not in text  # one line per error, without statements
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=20) == 0, log.read_text()[-3000:]
            with services.db.transaction() as session:
                assert session.scalar(select(WorkerLockRow.holder)) is None
        finally:
            services.db.dispose()


# ----------------------------------------------------------------------------------------------
# Outages, in process
# ----------------------------------------------------------------------------------------------


def test_a_heartbeat_that_cannot_reach_the_database_fails_and_the_worker_keeps_running(
        services: Services, monkeypatch) -> None:
    from sqlalchemy.exc import OperationalError

    worker = Worker(services)
    _start_paused(worker)
    try:
        def unreachable(_holder: str) -> bool:
            raise OperationalError("UPDATE worker_lock", {}, ConnectionRefusedError("refused"))

        monkeypatch.setattr(services.worker, "beat", unreachable)
        worker.job("heartbeat")()
        assert worker.scheduler.running  # a lease we cannot renew is not a lease lost
        row = _row(services, "heartbeat")
        assert row.last_outcome is JobOutcome.FAILED and "refused" in row.last_message
        monkeypatch.setattr(services.worker, "beat", lambda _holder: False)
        worker.job("heartbeat")()  # another worker holds the lease now: stop
        assert not worker.scheduler.running
    finally:
        if worker.scheduler.running:
            worker.scheduler.shutdown(wait=False)
    services.jobs.flush(now_ist())  # what the stopping worker writes
    assert _row(services, "heartbeat").last_message == (
        "worker lease lost to another worker; this worker stopped")


def test_the_job_store_rides_out_an_unreadable_table(tmp_path: Path, caplog) -> None:
    from apscheduler.job import Job
    from apscheduler.triggers.interval import IntervalTrigger

    from jobs.worker import JobStoreUnavailable

    broken = Database(f"sqlite:///{tmp_path / 'no-jobs-table.db'}")
    try:
        store = DeskJobStore(broken.engine)  # its table was never created
        with pytest.raises(JobStoreUnavailable, match=r"^\(sqlite3.OperationalError\) no such "
                                                      r"table: apscheduler_jobs$"):
            store.get_due_jobs(datetime.now(IST))
        soon = store.get_next_run_time()
        assert soon is not None and soon - datetime.now(IST) <= timedelta(seconds=2)
        job = Job(BackgroundScheduler(timezone=IST), id="pnl_snapshot",
                  func="jobs.worker:run_job", args=["pnl_snapshot"], kwargs={},
                  trigger=IntervalTrigger(hours=1), executor="default", name="pnl_snapshot",
                  misfire_grace_time=1, coalesce=True, max_instances=1,
                  next_run_time=datetime.now(IST))
        store.update_job(job)  # logged, not raised: the old next run stays due
        store.remove_job("pnl_snapshot")
    finally:
        broken.dispose()
    assert "cannot store the next run of pnl_snapshot" in caplog.text
    assert "cannot remove job pnl_snapshot" in caplog.text
