"""The end-of-day P&L snapshot: figures as core.portfolio derives them, once per day, readable
only by who may view the accounts, and the worker's job."""

from __future__ import annotations

import logging
from datetime import date, datetime
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import func, select

from core import portfolio
from core.clock import IST
from core.domain import Actor
from core.errors import PermissionDenied, ValidationError
from core.services import Services
from core.services.pnl_snapshots import HISTORY_COLUMNS, PnlSnapshotService, SnapshotReport
from core.services.trade_book import load_trades
from core.trading import ZERO, OrderRequest, OrderStatus, OrderType, Product, Side
from db.models import PnlSnapshotRow
from jobs.worker import Worker
from tests.support.market import open_market, tick

THURSDAY = datetime(2026, 11, 19, 11, 0, tzinfo=IST)  # an NSE trading day
DAY = THURSDAY.date()
SATURDAY = date(2026, 11, 21)
FIGURES = ("realized_today", "unrealized", "charges_today", "day_pnl", "equity", "deposits",
           "open_positions", "trades_today")


def _account(services: Services, actor: Actor, label: str) -> int:
    return next(a.id for a in services.household.list_accounts(actor) if a.label == label)


def _fill(services: Services, actor: Actor, account: int, symbol: str, side: Side,
          quantity: int, price: str) -> None:
    order = services.orders.place(actor, OrderRequest(account, symbol, side, quantity,
                                                      OrderType.MARKET, Product.MIS))
    tick(services.db, symbol, price)
    services.orders.step()
    filled = next(o for o in services.orders.order_book(actor, account) if o.id == order.id)
    assert filled.status is OrderStatus.FILLED, filled


@pytest.fixture
def traded(services: Services, login) -> dict[str, Actor]:
    """Thursday: Priya buys 10 SBIN and sells 4 of them higher; Rahul buys 5 TCS."""
    with time_machine.travel(THURSDAY, tick=True):
        open_market(services.db, {"SBIN": "800.00", "TCS": "3000.00"})
        priya, rahul = login("priya"), login("rahul")
        mine = _account(services, priya, "Priya · Trading")
        _fill(services, priya, mine, "SBIN", Side.BUY, 10, "800.00")
        _fill(services, priya, mine, "SBIN", Side.SELL, 4, "812.50")
        _fill(services, rahul, _account(services, rahul, "Rahul · Intraday"), "TCS", Side.BUY,
              5, "3000.00")
        tick(services.db, "SBIN", "806.00")
        tick(services.db, "TCS", "2990.00")
    return {"priya": priya, "rahul": rahul, "aarav": login("aarav")}


def _rows(services: Services) -> list[PnlSnapshotRow]:
    with services.db.transaction() as session:
        return list(session.scalars(select(PnlSnapshotRow).order_by(PnlSnapshotRow.id)))


def _values(row: PnlSnapshotRow) -> tuple[object, ...]:
    return tuple(getattr(row, name) for name in FIGURES)


def _expected(services: Services, admin: Actor, account_id: int) -> tuple[object, ...]:
    """One account's figures straight from core.portfolio (not through the service)."""
    trades = load_trades(services.db, [account_id], None, DAY)
    book = portfolio.build_book(trades, services.portfolio.prices([t.symbol for t in trades]),
                                DAY)
    deposits = services.portfolio.funds(admin, account_id).deposits
    positions_unrealized = sum((p.unrealized_pnl for p in book.positions), ZERO)
    return (book.realized_today, positions_unrealized, book.charges_today,
            book.realized_today + positions_unrealized - book.charges_today,
            deposits + book.cash_flow + book.market_value, deposits,
            sum(1 for p in book.positions if p.quantity),
            sum(1 for t in trades if t.trade_date == DAY))


def test_a_trading_day_snapshot_holds_each_accounts_book_and_a_family_row_of_their_sum(
        services: Services, traded: dict[str, Actor]) -> None:
    report = services.pnl_snapshots.take(DAY)

    rahul = traded["rahul"]
    accounts = services.household.list_accounts(rahul)
    assert report.taken and report.rows_written == len(accounts) + 1
    rows = _rows(services)
    by_key = {row.scope_key: row for row in rows}
    for account in accounts:
        row = by_key[f"account:{account.id}"]
        assert row.trade_date == DAY and row.account_id == account.id
        assert _values(row) == _expected(services, rahul, account.id), account.label
    priya = _account(services, rahul, "Priya · Trading")
    bought, sold = load_trades(services.db, [priya])  # market orders fill with slippage
    assert (bought.side, sold.side, sold.quantity) == (Side.BUY, Side.SELL, 4)
    priya_row = by_key[f"account:{priya}"]
    assert priya_row.realized_today == 4 * (sold.price - bought.price)
    assert priya_row.unrealized == 6 * (Decimal("806.00") - bought.price)
    assert priya_row.charges_today == bought.charges.total + sold.charges.total > 0
    assert priya_row.trades_today == 2
    assert priya_row.open_positions == 1
    family = by_key[f"household:{rahul.household_id}"]
    assert family.account_id is None and family.household_id == rahul.household_id
    account_rows = [r for r in rows if r.account_id is not None]
    for name in FIGURES:
        assert getattr(family, name) == sum(getattr(r, name) for r in account_rows), name


def test_taking_the_snapshot_twice_writes_nothing_new(
        services: Services, traded: dict[str, Actor]) -> None:
    first = services.pnl_snapshots.take(DAY)
    before = [(r.id, r.scope_key, _values(r)) for r in _rows(services)]
    tick(services.db, "SBIN", "820.00")  # prices moved: the day's rows still stand as taken
    again = services.pnl_snapshots.take(DAY)

    assert first.households_written == again.households_already_taken
    assert again.rows_written == 0 and again.households_written == ()
    assert [(r.id, r.scope_key, _values(r)) for r in _rows(services)] == before
    assert "0 row(s) written" in again.summary() and "1 already taken" in again.summary()


def test_a_day_without_trading_writes_nothing_and_the_report_says_why(
        services: Services, traded: dict[str, Actor]) -> None:
    report = services.pnl_snapshots.take(SATURDAY)
    weekend = PnlSnapshotService(services.db, services.settings, services.household,
                                 services.portfolio,
                                 clock=lambda: datetime(2026, 11, 22, 15, 45, tzinfo=IST))

    assert report == SnapshotReport(SATURDAY, taken=False,
                                    reason="Saturday 21 Nov 2026 is not an NSE trading day")
    assert weekend.take().reason == "Sunday 22 Nov 2026 is not an NSE trading day"
    assert "no P&L snapshot for 2026-11-21" in report.summary()
    assert _rows(services) == []


def test_the_clock_decides_the_day_when_none_is_given(
        services: Services, traded: dict[str, Actor]) -> None:
    at_close = PnlSnapshotService(services.db, services.settings, services.household,
                                  services.portfolio,
                                  clock=lambda: THURSDAY.replace(hour=15, minute=45))
    assert at_close.take().day == DAY
    assert {r.trade_date for r in _rows(services)} == {DAY}


def test_a_viewer_reads_only_the_accounts_they_may_view(
        services: Services, traded: dict[str, Actor]) -> None:
    services.pnl_snapshots.take(DAY)
    aarav, rahul = traded["aarav"], traded["rahul"]
    granted = _account(services, rahul, "Rahul · Long-term")

    frame = services.pnl_snapshots.history(aarav, granted, DAY, DAY)
    assert list(frame.columns) == list(HISTORY_COLUMNS)
    assert frame["Account"].tolist() == ["Rahul · Long-term"]
    assert frame["Trade date"].tolist() == [DAY]
    with pytest.raises(PermissionDenied, match="is not available to you for view"):
        services.pnl_snapshots.history(aarav, _account(services, rahul, "Priya · Trading"),
                                       DAY, DAY)
    with pytest.raises(PermissionDenied, match="adds up accounts you may not view"):
        services.pnl_snapshots.history(aarav, None, DAY, DAY)


def test_an_admin_reads_the_family_rows_in_plain_words(
        services: Services, traded: dict[str, Actor]) -> None:
    services.pnl_snapshots.take(DAY)
    frame = services.pnl_snapshots.history(traded["rahul"], None, date(2026, 11, 16), SATURDAY)

    assert frame["Account"].tolist() == ["Family (all accounts)"]
    family = next(r for r in _rows(services) if r.account_id is None)
    assert frame.loc[0, "Day P&L (₹)"] == family.day_pnl
    assert frame.loc[0, "Trades today"] == 3


def test_a_range_that_ends_before_it_starts_is_refused_naming_both_dates(
        services: Services, traded: dict[str, Actor]) -> None:
    with pytest.raises(ValidationError, match="Start 2026-11-20 is after end 2026-11-19"):
        services.pnl_snapshots.history(traded["rahul"], None, date(2026, 11, 20), DAY)


def test_the_worker_job_takes_the_snapshot_and_a_failure_waits_for_the_next_run(
        services: Services, monkeypatch, caplog) -> None:
    worker = Worker(services)
    calls: list[date | None] = []

    def fake_take(day: date | None = None) -> SnapshotReport:
        calls.append(day)
        return SnapshotReport(DAY, taken=True, rows_written=5, households_written=(1,))

    monkeypatch.setattr(services.pnl_snapshots, "take", fake_take)
    with caplog.at_level(logging.INFO, logger="sher.worker"):
        worker.pnl_snapshot()
    assert calls == [None]
    assert "P&L snapshot of 2026-11-19: 5 row(s) written" in caplog.text

    def broken(day: date | None = None) -> SnapshotReport:
        raise RuntimeError("disk full")

    monkeypatch.setattr(services.pnl_snapshots, "take", broken)
    with caplog.at_level(logging.ERROR, logger="sher.worker"):
        worker.pnl_snapshot()
    assert "P&L snapshot failed; retrying on the next run" in caplog.text


def test_the_worker_schedules_the_snapshot_after_the_close_on_weekdays(services) -> None:
    worker = Worker(services)
    worker.schedule()
    job = worker.scheduler.get_job("pnl_snapshot")

    friday_evening = datetime(2026, 11, 20, 17, 0, tzinfo=IST)
    assert job.trigger.get_next_fire_time(None, friday_evening) == datetime(
        2026, 11, 23, 15, 45, tzinfo=IST)
    assert job.coalesce and job.misfire_grace_time == 6 * 3600


def test_a_worker_started_after_the_snapshot_time_takes_the_days_snapshot(
        services: Services, traded: dict[str, Actor]) -> None:
    with time_machine.travel(THURSDAY.replace(hour=19), tick=False):
        Worker(services).catch_up_pnl_snapshot()
        Worker(services).catch_up_pnl_snapshot()  # a second start: nothing new
    with services.db.transaction() as session:
        counts = session.execute(select(PnlSnapshotRow.trade_date, func.count())
                                 .group_by(PnlSnapshotRow.trade_date)).all()
    accounts = len(services.household.list_accounts(traded["rahul"]))
    assert [tuple(c) for c in counts] == [(DAY, accounts + 1)]


def test_a_worker_started_before_the_snapshot_time_leaves_it_to_the_schedule(
        services: Services, traded: dict[str, Actor]) -> None:
    with time_machine.travel(THURSDAY.replace(hour=15, minute=44), tick=False):
        Worker(services).catch_up_pnl_snapshot()
    assert _rows(services) == []


@pytest.mark.parametrize("seen_before_insert", [True, False], ids=["seen", "race"])
def test_a_household_another_run_claimed_first_gets_no_rows_from_this_run(
        services: Services, traded: dict[str, Actor], monkeypatch,
        seen_before_insert: bool) -> None:
    if not seen_before_insert:  # the claim lands between the check and the insert
        monkeypatch.setattr(PnlSnapshotService, "_exists", staticmethod(lambda *_: False))
    household = traded["rahul"].household_id
    with services.db.transaction() as session:  # what a concurrent run committed first
        session.add(PnlSnapshotRow(
            trade_date=DAY, household_id=household, account_id=None,
            scope_key=f"household:{household}", realized_today=ZERO, unrealized=ZERO,
            charges_today=ZERO, day_pnl=ZERO, equity=None, deposits=None, open_positions=0,
            trades_today=0))
    report = services.pnl_snapshots.take(DAY)

    assert report.households_already_taken == (household,) and report.rows_written == 0
    assert [r.scope_key for r in _rows(services)] == [f"household:{household}"]
