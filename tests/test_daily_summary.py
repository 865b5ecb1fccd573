"""The daily P&L summary: linked members only, after their time, once a day, trading days only.

Runs on SQLite and PostgreSQL: real orders filled by the paper broker on a Thursday, the real
15:45 snapshot, and the worker's job.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import select

from core import portfolio
from core.clock import IST
from core.domain import Actor
from core.money import inr
from core.services import Services
from core.services.daily_summary import (
    DEFAULT_TIME,
    NOTHING,
    DailySummaryService,
    DayFigures,
    HeldShares,
    summary_text,
)
from core.services.trade_book import load_trades
from core.trading import ZERO, OrderRequest, OrderType, Product, Side
from db.models import (
    AlertOutboxRow,
    AlertPreferenceRow,
    NotificationSettingsRow,
    TelegramLinkRow,
    UserRow,
)
from jobs.worker import Worker
from tests.support.market import open_market, tick
from tests.support.outbox import alert_rows

pytestmark = pytest.mark.usefixtures("backend")
THURSDAY = datetime(2026, 11, 19, 11, 0, tzinfo=IST)  # an NSE trading day
DAY = THURSDAY.date()


def at(hour: int, minute: int) -> datetime:
    return THURSDAY.replace(hour=hour, minute=minute)


def _account(services: Services, actor: Actor, label: str) -> int:
    return next(a.id for a in services.household.list_accounts(actor) if a.label == label)


def _fill(services: Services, actor: Actor, account: int, side: Side, quantity: int,
          price: str) -> None:
    services.orders.place(actor, OrderRequest(account, "SBIN", side, quantity, OrderType.MARKET,
                                              Product.MIS))
    tick(services.db, "SBIN", price)
    services.orders.step()


def _link(services: Services, username: str, summary_at: time | str | None = "default") -> int:
    """Link ``username``'s chat; give them a summary time (None: no summary) unless default."""
    with services.db.transaction() as session:
        user_id = session.scalar(select(UserRow.id).where(UserRow.username == username))
        assert user_id is not None
        session.add(TelegramLinkRow(user_id=user_id, chat_id=1000 + user_id,
                                    telegram_username=username))
        if summary_at != "default":
            session.add(NotificationSettingsRow(user_id=user_id, daily_summary_time=summary_at,
                                                signal_min_probability=Decimal("0.700")))
    return user_id


@pytest.fixture
def desk(services: Services, login) -> Services:
    """Thursday: Priya buys 10 SBIN at 800 and sells 4 at 812.50; SBIN ends at 806."""
    with time_machine.travel(THURSDAY, tick=True):
        open_market(services.db, {"SBIN": "800.00"})
        priya = login("priya")
        mine = _account(services, priya, "Priya · Trading")
        _fill(services, priya, mine, Side.BUY, 10, "800.00")
        _fill(services, priya, mine, Side.SELL, 4, "812.50")
        tick(services.db, "SBIN", "806.00")
    return services


def _summaries(services: Services) -> list[AlertOutboxRow]:
    return alert_rows(services, AlertOutboxRow.kind == "summary.daily")


def _summary_service(services: Services) -> DailySummaryService:
    return DailySummaryService(services.pnl_snapshots)


def test_the_summary_text_lists_each_account_then_the_total_on_short_lines() -> None:
    one = DayFigures(Decimal("50.00"), Decimal("36.00"), Decimal("12.34"), Decimal("73.66"), 1)
    two = DayFigures(ZERO, Decimal("-100.00"), ZERO, Decimal("-100.00"), 2)
    title, body = summary_text(DAY, [("Priya · Trading", one), ("Rahul · Intraday", two)],
                               "15:45 snapshot")
    assert title == "Day P&L 19 Nov: -₹26.34 net"
    assert body.splitlines() == [
        "Thu 19 Nov 2026 · after the close",
        "Priya · Trading: +₹73.66", "  realized ₹50.00", "  unrealized ₹36.00",
        "  charges ₹12.34",
        "Rahul · Intraday: -₹100.00", "  realized ₹0.00", "  unrealized -₹100.00",
        "  charges ₹0.00",
        "Total (2 accounts): -₹26.34", "  realized ₹50.00", "  unrealized -₹64.00",
        "  charges ₹12.34", "Open positions: 3", "Figures: 15:45 snapshot"]
    assert max(len(line) for line in body.splitlines()) <= 40


def test_a_linked_member_gets_one_summary_after_their_time_with_the_days_figures(
        desk: Services, login) -> None:
    priya_id = _link(desk, "priya", time(15, 40))
    summaries = _summary_service(desk)
    assert summaries.run(at(15, 30)).skipped == "summaries start at 15:35 IST"
    assert summaries.run(at(15, 39)).written == []  # her time has not come
    assert summaries.run(at(15, 41)).written == ["priya"]
    assert summaries.run(at(15, 42)).written == []  # once a day
    (alert,) = _summaries(desk)
    assert (alert.user_id, alert.account_id, alert.household_id, alert.severity) == (
        priya_id, None, login("priya").household_id, "info")
    assert alert.dedupe_key == f"summary:{priya_id}:{DAY.isoformat()}"
    account = _account(desk, login("priya"), "Priya · Trading")
    trades = load_trades(desk.db, [account], None, DAY)
    book = portfolio.build_book(trades, desk.portfolio.prices(["SBIN"]), DAY)
    unrealized = sum((p.unrealized_pnl for p in book.positions), ZERO)
    assert book.realized_today > 0 and unrealized > 0 and book.charges_today > 0
    lines = alert.body.splitlines()
    mine = lines.index(f"Priya · Trading: +{inr(book.day_pnl)}")
    assert lines[mine:mine + 4] == [f"Priya · Trading: +{inr(book.day_pnl)}",
                          f"  realized {inr(book.realized_today)}",
                          f"  unrealized {inr(unrealized)}",
                          f"  charges {inr(book.charges_today)}"]
    assert "Open positions: 1" in lines
    assert lines[-1] == "Figures: latest prices at 15:41 IST"
    assert alert.title == f"Day P&L 19 Nov: +{inr(book.day_pnl)} net"


def test_only_linked_members_with_a_summary_time_get_one_and_the_snapshot_is_used(
        desk: Services, login) -> None:
    rahul_id = _link(desk, "rahul")  # no settings: the default 16:00
    _link(desk, "kamla", None)  # chose no summary
    summaries = _summary_service(desk)
    assert summaries.run(at(15, 59)).written == []
    with time_machine.travel(at(15, 45)):
        desk.pnl_snapshots.take(DAY)
    assert time(16, 0) == DEFAULT_TIME
    assert summaries.run(at(16, 0)).written == ["rahul"]  # aarav is not linked
    assert summaries.run(at(23, 59)).written == []
    (alert,) = _summaries(desk)
    assert alert.user_id == rahul_id
    rahul = login("rahul")
    labels = [a.label for a in desk.household.list_accounts(rahul)]
    body = alert.body.splitlines()
    assert [line.split(":")[0] for line in body if line.startswith(tuple(labels))] == labels
    history = desk.pnl_snapshots.history(rahul, _account(desk, rahul, "Priya · Trading"), DAY,
                                         DAY)
    assert f"Priya · Trading: +{inr(history.iloc[0]['Day P&L (₹)'])}" in body
    assert f"Total ({len(labels)} accounts): +{inr(history.iloc[0]['Day P&L (₹)'])}" in body
    assert body[-1] == "Figures: 15:45 snapshot"


def test_a_viewer_gets_only_the_accounts_they_may_view(desk: Services, login) -> None:
    _link(desk, "aarav", time(15, 35))  # the demo grants him view of Rahul · Long-term only
    assert [a.label for a in desk.household.list_accounts(login("aarav"))] == [
        "Rahul · Long-term"]
    assert _summary_service(desk).run(at(15, 36)).written == ["aarav"]
    (alert,) = _summaries(desk)
    assert alert.body.splitlines()[1] == "Rahul · Long-term: ₹0.00"
    assert "Total (1 account): ₹0.00" in alert.body and "Priya" not in alert.body


def test_a_member_who_turned_the_daily_summary_off_gets_none(desk: Services) -> None:
    priya_id = _link(desk, "priya", time(15, 35))
    _link(desk, "rahul", time(15, 35))
    with desk.db.transaction() as session:
        session.add(AlertPreferenceRow(user_id=priya_id, alert_type="daily_summary",
                                       mode="off"))
    assert _summary_service(desk).run(at(15, 40)).written == ["rahul"]


def test_no_summary_is_written_on_a_day_nse_does_not_trade(desk: Services) -> None:
    _link(desk, "rahul", time(15, 35))
    saturday = datetime(2026, 11, 21, 17, 0, tzinfo=IST)
    report = _summary_service(desk).run(saturday)
    assert report.skipped == "2026-11-21 is not an NSE trading day"
    with time_machine.travel(saturday):
        result = Worker(desk).daily_summaries()
    assert result.outcome.value == "skipped"
    assert result.message == "no daily summaries: 2026-11-21 is not an NSE trading day"
    assert _summaries(desk) == []


def test_the_workers_job_writes_the_summaries_due(desk: Services) -> None:
    _link(desk, "priya", time(15, 35))
    with time_machine.travel(at(17, 0)):
        result = Worker(desk).daily_summaries()
    assert result.message == "daily summaries of 2026-11-19: 1 written (priya)"
    assert len(_summaries(desk)) == 1


def test_the_summary_text_names_holdings_apart_from_the_days_figures() -> None:
    _, body = summary_text(DAY, [("Kamla · Pension", NOTHING)], "15:45 snapshot",
                           HeldShares(1, Decimal("10478.00"), Decimal("-52.00")))
    assert body.splitlines()[-4:] == [
        "Holdings: 1 (not in the above)", "  value ₹10,478.00",
        "  unrealized -₹52.00 since bought", "Figures: 15:45 snapshot"]
    assert max(len(line) for line in body.splitlines()) <= 40
    assert "Holdings" not in summary_text(DAY, [("Kamla · Pension", NOTHING)], "x",
                                          HeldShares(0, ZERO, ZERO))[1]


def test_an_account_that_only_holds_shares_gets_its_holdings_in_the_summary(
        services: Services, login) -> None:
    wednesday = THURSDAY - timedelta(days=1)
    with time_machine.travel(wednesday, tick=True):
        open_market(services.db, {"SBIN": "800.00"})
        kamla = login("kamla")
        pension = _account(services, kamla, "Kamla · Pension")
        services.orders.place(kamla, OrderRequest(pension, "SBIN", Side.BUY, 5,
                                                  OrderType.MARKET, Product.CNC))
        tick(services.db, "SBIN", "800.00")
        services.orders.step()
    tick(services.db, "SBIN", "806.00")
    _link(services, "kamla", time(15, 40))
    assert _summary_service(services).run(at(15, 41)).written == ["kamla"]
    (alert,) = _summaries(services)
    body = alert.body.splitlines()
    assert "Kamla · Pension: ₹0.00" in body  # the day's figures: no trade today
    assert body[-4:-1] == ["Holdings: 1 (not in the above)", "  value ₹4,030.00",
                           body[-2]] and body[-2].startswith("  unrealized +₹")
