"""The post-trade risk watch on a real desk: exits once, trailing stops, EOD square-off, limits."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import func, select

from core.clock import IST, now_ist
from core.domain import Actor
from core.errors import OrderRejected, RiskRejected, ValidationError
from core.services import Services
from core.trading import OrderRequest, OrderStatus, OrderType, Product, Side
from db.models import AlertOutboxRow, AuditRow, EquityPeakRow, OrderRow, RiskStateRow
from engines.risk_types import Scope, StateKind, StatePhase
from tests.support.market import open_market, set_feed, tick

THURSDAY = datetime(2026, 11, 19, tzinfo=IST)  # an NSE trading day


@pytest.fixture(autouse=True)
def _morning() -> Iterator[None]:
    """Run each test on a trading morning: from 15:15 to 15:30 IST MIS positions are squared off."""
    with time_machine.travel(THURSDAY.replace(hour=10), tick=True):
        yield


@pytest.fixture
def priya(services: Services, login) -> Actor:
    open_market(services.db, {"SBIN": "800.00", "TCS": "3000.00"})
    return login("priya")


@pytest.fixture
def account(services: Services, priya: Actor) -> int:
    return next(a.id for a in services.household.list_accounts(priya)
                if a.label == "Priya · Trading")


def _hold(services: Services, priya: Actor, account: int, quantity: int = 20,
          product: Product = Product.MIS) -> None:
    services.orders.place(priya, OrderRequest(account, "SBIN", Side.BUY, quantity,
                                              OrderType.MARKET, product))
    tick(services.db, "SBIN", "800.00")
    services.orders.step()


def _exits(services: Services) -> list[OrderRow]:
    with services.db.transaction() as session:
        return list(session.scalars(select(OrderRow).where(OrderRow.source.in_(
            ["risk", "panic"])).order_by(OrderRow.id)))


def _count(services: Services, model: type, *where: object) -> int:
    with services.db.transaction() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_a_stop_loss_exits_once_however_often_the_watch_runs(
    services: Services, priya: Actor, account: int,
) -> None:
    _hold(services, priya, account)
    control = services.risk.set_control(priya, account, "SBIN", Product.MIS,
                                        stop_loss=Decimal("790.00"))
    services.risk_watch.run()
    assert _exits(services) == []  # 800 is above the stop
    tick(services.db, "SBIN", "789.00")
    first = services.risk_watch.run()
    second = services.risk_watch.run()
    exits = _exits(services)
    assert len(exits) == 1 and (exits[0].side, exits[0].quantity) == (Side.SELL, 20)
    assert len(first.square_offs) == 1 and second.square_offs == []
    assert services.risk.controls(priya, account) == []  # retired with its exit order
    assert _count(services, AlertOutboxRow, AlertOutboxRow.kind == "risk.stop_loss") == 1
    assert _count(services, AuditRow, AuditRow.action == "risk.stop_loss") == 1
    tick(services.db, "SBIN", "788.00")
    services.orders.step()
    assert _exits(services)[0].status is OrderStatus.FILLED
    assert control.control_id > 0


def test_a_trailing_stop_follows_the_best_price_and_exits_on_the_pullback(
    services: Services, priya: Actor, account: int,
) -> None:
    _hold(services, priya, account)
    services.risk.set_control(priya, account, "SBIN", Product.MIS,
                              trail_points=Decimal("10"))
    tick(services.db, "SBIN", "830.00")
    services.risk_watch.run()
    assert services.risk.controls(priya, account)[0].extreme == Decimal("830.00")
    tick(services.db, "SBIN", "821.00")  # above the trailed stop 820
    services.risk_watch.run()
    assert _exits(services) == []
    tick(services.db, "SBIN", "819.50")
    report = services.risk_watch.run()
    assert len(report.square_offs) == 1 and len(_exits(services)) == 1


def test_mis_positions_are_squared_off_at_the_configured_time_once(
    services: Services, priya: Actor, account: int,
) -> None:
    _hold(services, priya, account, 15)
    _hold(services, priya, account, 5, Product.CNC)
    services.risk_watch.run(THURSDAY.replace(hour=15, minute=10))
    assert _exits(services) == []
    services.risk_watch.run(THURSDAY.replace(hour=15, minute=16))
    services.risk_watch.run(THURSDAY.replace(hour=15, minute=17))
    exits = _exits(services)
    assert [(e.product, e.side, e.quantity) for e in exits] == [(Product.MIS, Side.SELL, 15)]
    assert _count(services, AlertOutboxRow, AlertOutboxRow.kind == "risk.eod") == 1


def test_the_daily_loss_limit_disables_the_account_closes_it_and_alerts_once(
    services: Services, priya: Actor, account: int,
) -> None:
    _hold(services, priya, account, 100)
    tick(services.db, "SBIN", "590.00")  # −₹21,000: beyond 2% of ₹10 lakh
    services.risk_watch.run()
    services.risk_watch.run()
    with services.db.transaction() as session:
        states = session.scalars(select(RiskStateRow)).all()
        assert [(s.kind, s.phase, s.account_id) for s in states] == [
            (StateKind.DAILY_LOSS, StatePhase.ACTIVE, account)]
        assert states[0].until is not None
    exits = _exits(services)
    assert [(e.side, e.quantity, e.product) for e in exits] == [(Side.SELL, 100, Product.MIS)]
    assert _count(services, AlertOutboxRow, AlertOutboxRow.kind == "risk.daily_loss") >= 1
    with pytest.raises(RiskRejected, match=r"(?i)daily loss"):
        services.orders.place(priya, OrderRequest(account, "TCS", Side.BUY, 1,
                                                  OrderType.MARKET, Product.MIS))


def test_the_watch_records_each_accounts_equity_peak(
    services: Services, priya: Actor, account: int,
) -> None:
    services.risk_watch.run()
    with services.db.transaction() as session:
        peak = session.get(EquityPeakRow, account)
    assert peak is not None and peak.peak_equity == Decimal("1000000")
    usage = services.risk_gate.usage(priya, account)
    assert usage.peak_equity == Decimal("1000000") and usage.drawdown_pct == 0
    assert usage.open_positions == 0 and usage.max_open_positions == 10


def test_the_workers_trading_step_fills_and_then_runs_the_watch(
    services: Services, priya: Actor, account: int,
) -> None:
    from jobs.worker import Worker

    _hold(services, priya, account)
    services.risk.set_control(priya, account, "SBIN", Product.MIS, target=Decimal("820.00"))
    tick(services.db, "SBIN", "821.00")
    worker = Worker(services)
    worker.trading_step()  # the watch places the target exit
    tick(services.db, "SBIN", "822.00")
    worker.trading_step()  # the next step fills it at the next price
    exits = _exits(services)
    assert [(e.side, e.quantity, e.status) for e in exits] == [
        (Side.SELL, 20, OrderStatus.FILLED)]


def test_a_strategys_mtm_target_closes_only_that_strategys_shares(
    services: Services, priya: Actor, account: int, login,
) -> None:
    services.risk.set_mtm_limit(login("rahul"), Scope.STRATEGY, "momo", stop_loss=None,
                                target=Decimal("100"))
    services.orders.place(priya, OrderRequest(account, "SBIN", Side.BUY, 20, OrderType.MARKET,
                                              Product.MIS, strategy="momo"))
    services.orders.place(priya, OrderRequest(account, "SBIN", Side.BUY, 5, OrderType.MARKET,
                                              Product.MIS))
    tick(services.db, "SBIN", "800.00")
    services.orders.step()
    services.risk_watch.run()
    assert _exits(services) == []  # no profit yet
    tick(services.db, "SBIN", "815.00")  # the strategy's 20 shares gain about ₹290
    services.risk_watch.run()
    services.risk_watch.run()
    exits = _exits(services)
    assert [(e.side, e.quantity, e.product) for e in exits] == [(Side.SELL, 20, Product.MIS)]


def test_a_loss_between_fills_is_seen_at_the_next_price_without_a_new_book(
    services: Services, priya: Actor, account: int,
) -> None:
    _hold(services, priya, account, 100)
    services.risk_watch.run()  # the book is taken at 800, and kept: no new fills follow
    tick(services.db, "SBIN", "590.00")  # −₹21,000 at the next price: beyond 2% of ₹10 lakh
    report = services.risk_watch.run()
    assert report.engaged == [f"account:{account}:daily_loss"]
    assert [(e.side, e.quantity) for e in _exits(services)] == [(Side.SELL, 100)]


def test_the_watch_asks_the_gate_for_a_book_only_on_new_fills_or_once_it_is_old(
    services: Services, priya: Actor, account: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import core.services.risk_watch as watch_module

    taken: list[int] = []
    snapshot = services.risk_gate.snapshot

    def counting(account_id: int, fills: tuple[int, int] | None = None):
        taken.append(account_id)
        return snapshot(account_id, fills)

    def books_taken_by_a_run() -> list[int]:
        monkeypatch.setattr(services.risk_gate, "snapshot", counting)
        taken.clear()
        services.risk_watch.run()
        monkeypatch.setattr(services.risk_gate, "snapshot", snapshot)
        return list(taken)

    accounts = len(books_taken_by_a_run())
    assert accounts >= 3 and account in taken
    assert books_taken_by_a_run() == []  # nothing new: every book is re-marked, none rebuilt
    _hold(services, priya, account)
    assert books_taken_by_a_run() == [account]  # only the account with a new fill
    clock = [1e9]
    monkeypatch.setattr(watch_module, "_monotonic", lambda: clock[0])
    books_taken_by_a_run()
    clock[0] += watch_module.BOOK_REFRESH_SECONDS
    assert len(books_taken_by_a_run()) == watch_module.REFRESHES_PER_RUN  # the oldest, a few


def test_re_marking_a_book_moves_positions_and_holdings_by_quantity_times_the_price_change(
) -> None:
    from core.services.risk_gate import AccountSnapshot
    from core.services.risk_watch import _remark
    from core.trading import Position
    from engines.risk_types import Exposure

    positions = (Position(1, "SBIN", Product.MIS, 10, Decimal(800), Decimal(805), Decimal(0),
                          Decimal(50)),
                 Position(1, "TCS", Product.MIS, -5, Decimal(3000), None, Decimal(0),
                          Decimal(0)))  # unpriced when built: marked at its average
    exposures = (Exposure("INFY", None, 4, Decimal(6000)),  # a holding at 1,500
                 Exposure("SBIN", None, 30, Decimal(10 * 805 + 20 * 790)),  # + 20 held at 790
                 Exposure("TCS", None, -5, Decimal(15000)))
    snapshot = AccountSnapshot(1, 1, Decimal(1_000_000), Decimal(-100), Decimal(-200),
                               exposures, {"INFY": 4, "SBIN": 30, "TCS": -5},
                               (3, 3, Decimal(1_000_000)), 0.0, positions)
    figures = _remark(snapshot, {"SBIN": Decimal(810), "TCS": Decimal(2990),
                                 "INFY": Decimal(1510)})
    # positions: 10 x 5 + (-5) x (-10) = 100; holdings: 20 x 20 + 4 x 10 = 440
    assert figures.capital == Decimal(1_000_540)
    assert (figures.day_pnl, figures.week_pnl) == (Decimal(0), Decimal(-100))
    assert _remark(snapshot, {}).capital == snapshot.capital  # no prices: nothing moves


def test_an_exit_order_and_its_alert_commit_together_or_not_at_all(
    services: Services, priya: Actor, account: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import core.alerts

    _hold(services, priya, account)
    services.risk.set_control(priya, account, "SBIN", Product.MIS, stop_loss=Decimal("790.00"))
    tick(services.db, "SBIN", "789.00")
    real_enqueue = core.alerts.enqueue

    def crash(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("the process died while queueing the alert")

    monkeypatch.setattr(core.alerts, "enqueue", crash)
    with pytest.raises(RuntimeError, match="died while queueing"):
        services.risk_watch.run()
    assert _exits(services) == []  # no exit order without its alert
    assert _count(services, AlertOutboxRow, AlertOutboxRow.kind == "risk.stop_loss") == 0
    monkeypatch.setattr(core.alerts, "enqueue", real_enqueue)
    services.risk_watch.run()
    tick(services.db, "SBIN", "788.00")
    services.orders.step()  # the exit fills before the watch runs again
    services.risk_watch.run()
    assert [e.status for e in _exits(services)] == [OrderStatus.FILLED]
    assert _count(services, AlertOutboxRow, AlertOutboxRow.kind == "risk.stop_loss") == 1


def _trade(services: Services, priya: Actor, account: int, *orders: tuple[Side, int],
           price: str = "800.00") -> None:
    """Place MARKET MIS orders in SBIN and fill them all in one trading step at ``price``."""
    for side, quantity in orders:
        services.orders.place(priya, OrderRequest(account, "SBIN", side, quantity,
                                                  OrderType.MARKET, Product.MIS))
    tick(services.db, "SBIN", price)
    services.orders.step()


def _guarded(services: Services, priya: Actor, account: int, side: Side, quantity: int,
             **control: Decimal) -> int:
    """Open a SBIN MIS position, set its control, let the watch see it; return the control."""
    _trade(services, priya, account, (side, quantity))
    made = services.risk.set_control(priya, account, "SBIN", Product.MIS, **control)
    services.risk_watch.run()
    return made.control_id


def _retire_audits(services: Services) -> list[dict[str, object]]:
    with services.db.transaction() as session:
        rows = session.scalars(select(AuditRow).where(
            AuditRow.action == "risk.control.retire").order_by(AuditRow.id)).all()
        return [json.loads(row.details) for row in rows]


def test_a_control_ends_when_its_position_is_closed_by_hand_and_never_guards_the_next_one(
    services: Services, priya: Actor, account: int,
) -> None:
    control = _guarded(services, priya, account, Side.SELL, 2, target=Decimal("790.00"))
    _trade(services, priya, account, (Side.BUY, 2))  # the short closed by hand
    report = services.risk_watch.run()
    assert report.retired == [control]
    assert services.risk.controls(priya, account) == []
    _trade(services, priya, account, (Side.BUY, 3), price="801.00")  # a long, above 790
    services.risk_watch.run()
    assert _exits(services) == []  # the short's target does not close the long
    assert [(a["symbol"], a["why"]) for a in _retire_audits(services)] == [
        ("SBIN", "the SBIN MIS position it was set on is closed")]


def test_a_short_turned_long_between_two_runs_loses_the_shorts_control(
    services: Services, priya: Actor, account: int,
) -> None:
    control = _guarded(services, priya, account, Side.SELL, 2, target=Decimal("790.00"))
    # closed and a long opened in one step: the watch never sees the position flat
    _trade(services, priya, account, (Side.BUY, 2), (Side.BUY, 3), price="801.00")
    report = services.risk_watch.run()
    assert _exits(services) == [] and report.square_offs == []
    assert report.retired == [control]
    why = _retire_audits(services)[0]["why"]
    assert isinstance(why, str) and why.startswith(
        "the SBIN MIS position it was set on was closed and another one opened")


def test_a_restarted_watch_retires_a_control_set_before_its_position_was_reopened(
    services: Services, priya: Actor, account: int,
) -> None:
    from core.services.risk_watch import RiskWatch
    from db.models import PositionControlRow

    _trade(services, priya, account, (Side.SELL, 2))
    control = services.risk.set_control(priya, account, "SBIN", Product.MIS,
                                        target=Decimal("790.00"))
    _trade(services, priya, account, (Side.BUY, 2), (Side.BUY, 3), price="801.00")
    with services.db.transaction() as session:  # the control was set five minutes ago
        row = session.get(PositionControlRow, control.control_id)
        assert row is not None
        row.created_at = now_ist() - timedelta(minutes=5)
    restarted = RiskWatch(services.db, services.risk_gate, services.risk)  # saw nothing yet
    report = restarted.run()
    assert _exits(services) == [] and report.retired == [control.control_id]


def test_a_position_control_lives_while_its_position_is_added_to_or_cut(
    services: Services, priya: Actor, account: int,
) -> None:
    control = _guarded(services, priya, account, Side.BUY, 5, stop_loss=Decimal("790.00"))
    _trade(services, priya, account, (Side.BUY, 3))
    services.risk_watch.run()
    _trade(services, priya, account, (Side.SELL, 6), price="801.00")
    assert services.risk_watch.run().retired == []
    assert [c.control_id for c in services.risk.controls(priya, account)] == [control]
    tick(services.db, "SBIN", "789.00")
    services.risk_watch.run()
    assert [(e.side, e.quantity) for e in _exits(services)] == [(Side.SELL, 2)]


def test_a_mis_position_reopened_after_its_square_off_is_squared_off_again(
    services: Services, priya: Actor, account: int,
) -> None:
    _hold(services, priya, account, 15)
    services.risk_watch.run(THURSDAY.replace(hour=15, minute=16))
    services.risk_watch.run(THURSDAY.replace(hour=15, minute=16, second=30))  # found, not doubled
    _trade(services, priya, account, price="801.00")  # the square-off fills
    _hold(services, priya, account, 10)  # opened again after the square-off time
    services.risk_watch.run(THURSDAY.replace(hour=15, minute=17))
    services.risk_watch.run(THURSDAY.replace(hour=15, minute=17, second=30))
    exits = _exits(services)
    assert [(e.side, e.quantity) for e in exits] == [(Side.SELL, 15), (Side.SELL, 10)]
    assert len({e.client_order_id for e in exits}) == 2
    assert _count(services, AlertOutboxRow, AlertOutboxRow.kind == "risk.eod") == 2


def test_an_account_mtm_target_books_the_profit_of_each_position_it_sees(
    services: Services, priya: Actor, account: int, login,
) -> None:
    services.risk.set_limits(login("rahul"), account, {"portfolio_mtm_target": "40"})
    for bought in (5, 6):  # the second position opens after the first one's exit filled
        _hold(services, priya, account, bought)
        tick(services.db, "SBIN", "810.00")  # about +₹50 on the position
        services.risk_watch.run()
        services.risk_watch.run()
        _trade(services, priya, account, price="800.00")  # the exit fills: the day's MTM
    assert [(e.side, e.quantity, e.status) for e in _exits(services)] == [
        (Side.SELL, 5, OrderStatus.FILLED), (Side.SELL, 6, OrderStatus.FILLED)]


def test_a_trailing_stop_set_on_a_losing_position_trails_from_the_price_then_not_the_average(
    services: Services, priya: Actor, account: int,
) -> None:
    _hold(services, priya, account)  # 20 at 800
    tick(services.db, "SBIN", "790.00")
    control = services.risk.set_control(priya, account, "SBIN", Product.MIS,
                                        trail_pct=Decimal("0.1"))
    assert control.extreme == Decimal("790.00")
    services.risk_watch.run()  # the stop is 789.20: 790 is above it
    assert _exits(services) == []
    tick(services.db, "SBIN", "789.00")
    assert len(services.risk_watch.run().square_offs) == 1
    assert "trailing stop ₹789.20" in _exits_alert_bodies(services)[0]


def _exits_alert_bodies(services: Services) -> list[str]:
    with services.db.transaction() as session:
        return list(session.scalars(select(AlertOutboxRow.body).where(
            AlertOutboxRow.kind.like("risk.%")).order_by(AlertOutboxRow.id)))


@pytest.mark.parametrize(("values", "message"), [
    pytest.param({"stop_loss": Decimal("800.00")}, "A short position's stop-loss must be above "
                 "the LTP: stop ₹800.00, LTP ₹800.00 (SBIN)", id="stop-at-ltp"),
    pytest.param({"target": Decimal("805.00")}, "A short position's target must be below the "
                 "LTP: target ₹805.00, LTP ₹800.00 (SBIN)", id="target-above-ltp"),
])
def test_a_shorts_stop_or_target_already_crossed_is_refused_with_the_values(
    services: Services, priya: Actor, account: int, values: dict[str, Decimal], message: str,
) -> None:
    _trade(services, priya, account, (Side.SELL, 2))
    with pytest.raises(ValidationError) as refused:
        services.risk.set_control(priya, account, "SBIN", Product.MIS, **values)
    assert message in str(refused.value)
    assert services.risk.controls(priya, account) == []


def test_re_enabling_a_drawdown_kill_switch_restarts_the_drawdown_so_it_holds(
    services: Services, priya: Actor, account: int, login,
) -> None:
    rahul = login("rahul")
    services.risk.set_limits(rahul, account, {"drawdown_reduce_pct": "0.1",
                                              "drawdown_kill_pct": "0.11"})
    services.risk_watch.run()  # the peak: ₹10,00,000
    _hold(services, priya, account, 100)
    tick(services.db, "SBIN", "788.00")  # −₹1,200 and charges: beyond 0.11 % of the peak
    report = services.risk_watch.run()
    assert report.engaged == [f"account:{account}:kill_switch"]
    _trade(services, priya, account, price="788.00")  # the kill switch's exit fills
    kill = next(s for s in services.risk.states(rahul) if s.kind is StateKind.KILL_SWITCH)
    services.risk.reenable(rahul, kill.id, "checked the book")
    equity = services.risk_gate.snapshot(account).capital.quantize(Decimal("0.01"))
    with services.db.transaction() as session:
        peak = session.get(EquityPeakRow, account)
        assert peak is not None and peak.peak_equity == equity < Decimal(998_800)
        details = json.loads(session.scalars(select(AuditRow.details).where(
            AuditRow.action == "risk.reenable")).one())
    assert (Decimal(details["peak_equity_before"]), Decimal(details["peak_equity_now"])) == (
        Decimal(1_000_000), equity)
    assert services.risk_watch.run().engaged == []
    services.risk_watch.run()
    assert _count(services, RiskStateRow, RiskStateRow.kind == StateKind.KILL_SWITCH) == 1
    assert services.orders.place(priya, OrderRequest(account, "TCS", Side.BUY, 1,
                                                     OrderType.MARKET, Product.MIS)).id


def test_a_loss_limit_and_a_panic_name_the_account_by_its_label(
    services: Services, priya: Actor, account: int,
) -> None:
    _hold(services, priya, account, 100)
    tick(services.db, "SBIN", "590.00")  # beyond the daily loss limit
    services.risk_watch.run()
    with services.db.transaction() as session:
        reason = session.scalars(select(RiskStateRow.reason)).one()
    assert reason.startswith("the account Priya · Trading: loss today ₹21,")
    summary = services.risk.panic(priya, Scope.ACCOUNT, account_id=account).summary()
    assert summary.startswith("Panic account Priya · Trading: ")
    assert " steps done" in summary and f"account {account}:" not in summary


def test_refusals_about_an_accounts_limits_and_controls_name_it_by_its_label(
    services: Services, priya: Actor, account: int,
) -> None:
    from core.errors import PermissionDenied

    with pytest.raises(PermissionDenied) as looser:
        services.risk.set_limits(priya, account, {"daily_loss_pct": "3"})
    assert "may only tighten the limits of account Priya · Trading" in str(looser.value)
    with pytest.raises(ValidationError) as flat:
        services.risk.set_control(priya, account, "TCS", Product.MIS, stop_loss=Decimal("1"))
    assert str(flat.value).startswith(
        "No open MIS position in TCS on the account Priya · Trading; controls protect")


# -- rejected exits are sent again ------------------------------------------------------------
class RejectingSells:
    """The paper broker behind an RMS that rejects the next ``times`` sell orders."""

    def __init__(self, inner: object, times: int) -> None:
        self.inner = inner
        self.left = times

    def __getattr__(self, name: str) -> object:
        attr = getattr(self.inner, name)
        if name not in ("place_in", "place_order"):
            return attr

        def place(*args: object, **kwargs: object) -> object:
            request = args[1] if name == "place_in" else args[0]
            if getattr(request, "side", None) is Side.SELL and self.left > 0:
                self.left -= 1
                raise OrderRejected("RMS: margin check failed (test)")
            return attr(*args, **kwargs)  # type: ignore[operator]

        return place


@pytest.fixture
def rms(services: Services, account: int) -> Callable[[int], RejectingSells]:
    def install(times: int) -> RejectingSells:
        wrapper = RejectingSells(services.orders.broker_for(account), times)
        services.orders._brokers[account] = wrapper  # the wrapper is the broker's RMS
        return wrapper
    return install


@pytest.fixture
def seconds(services: Services) -> list[float]:
    """The retry's clock, moved by hand."""
    clock = [0.0]
    services.risk_watch.exit_retry.monotonic = lambda: clock[0]
    return clock


def _alert_bodies(services: Services, kind: str) -> list[tuple[str, str]]:
    with services.db.transaction() as session:
        return [(a.severity, a.body) for a in session.scalars(
            select(AlertOutboxRow).where(AlertOutboxRow.kind == kind)
            .order_by(AlertOutboxRow.id))]


def _stop_rejected_once(services: Services, priya: Actor, account: int,
                        rms: Callable[[int], RejectingSells]) -> None:
    """Hold 20 SBIN with a stop at 790 that fires, and whose exit the RMS rejects."""
    _hold(services, priya, account)
    services.risk.set_control(priya, account, "SBIN", Product.MIS, stop_loss=Decimal("790.00"))
    rms(1)
    tick(services.db, "SBIN", "789.00")
    services.risk_watch.run()


def test_a_rejected_stop_loss_exit_is_sent_again_after_thirty_seconds(
    services: Services, priya: Actor, account: int, rms: Callable[[int], RejectingSells],
    seconds: list[float],
) -> None:
    _stop_rejected_once(services, priya, account, rms)
    [first] = _exits(services)
    assert first.status is OrderStatus.REJECTED
    [(severity, body)] = _alert_bodies(services, "risk.stop_loss")
    assert severity == "critical" and "REJECTED (RMS: margin check failed (test))." in body
    assert "The desk sends it again in 30 s (attempt 1 of 3)" in body
    services.risk_watch.run()  # the desk sees it rejected now ...
    seconds[0] = 29.0
    assert services.risk_watch.run().exit_retries == [] and len(_exits(services)) == 1
    seconds[0] = 30.0  # ... and sends it again 30 s later
    report = services.risk_watch.run()
    first, second = _exits(services)
    assert report.exit_retries == [second.client_order_id] == [f"{first.client_order_id}:r2"]
    assert (second.side, second.quantity, second.product, second.source, second.status) == (
        Side.SELL, 20, Product.MIS, "risk", OrderStatus.OPEN)
    [(severity, body)] = _alert_bodies(services, "risk.exit_retry")
    assert severity == "warning" and body.startswith(
        f"Exit order {first.id} (SELL 20 SBIN MIS) was rejected: RMS: margin check failed "
        f"(test). Sent again as exit order {second.id} (attempt 2 of 3): SELL 20 SBIN MIS at "
        "market — OPEN.")
    assert _count(services, AuditRow, AuditRow.action == "risk.exit_retry") == 1
    seconds[0] = 100.0
    services.risk_watch.run()
    assert len(_exits(services)) == 2  # one retry per rejected exit
    tick(services.db, "SBIN", "788.00")
    services.orders.step()
    assert _exits(services)[1].status is OrderStatus.FILLED
    assert not [p for p in services.orders.broker_for(account).positions() if p.quantity]


def test_an_exit_rejected_three_times_says_to_close_the_position_by_hand(
    services: Services, priya: Actor, account: int, rms: Callable[[int], RejectingSells],
    seconds: list[float],
) -> None:
    _hold(services, priya, account, 15)
    rms(10)
    services.risk_watch.run(THURSDAY.replace(hour=15, minute=16))  # the MIS square-off
    for moment in (1.0, 40.0, 41.0, 80.0, 200.0, 400.0):
        seconds[0] = moment
        services.risk_watch.run(THURSDAY.replace(hour=15, minute=17))
    exits = _exits(services)
    assert [e.status for e in exits] == [OrderStatus.REJECTED] * 3
    assert [e.client_order_id[-3:] for e in exits[1:]] == [":r2", ":r3"]
    (s2, b2), (s3, b3) = _alert_bodies(services, "risk.exit_retry")
    assert s2 == s3 == "critical"
    assert "The desk sends it again in 30 s (attempt 2 of 3)" in b2
    assert b3.endswith("The desk has stopped trying after 3 exit orders: the position stays "
                       "open; close it by hand.")


def test_a_rejected_exit_is_not_sent_again_once_the_member_closed_or_reopened_the_position(
    services: Services, priya: Actor, account: int, rms: Callable[[int], RejectingSells],
    seconds: list[float],
) -> None:
    _stop_rejected_once(services, priya, account, rms)
    services.risk_watch.run()
    services.orders.place(priya, OrderRequest(account, "SBIN", Side.SELL, 20, OrderType.MARKET,
                                              Product.MIS))  # closed by hand
    tick(services.db, "SBIN", "789.00")
    services.orders.step()
    _hold(services, priya, account, 5)  # and opened again, on the same side
    seconds[0] = 60.0
    assert services.risk_watch.run().exit_retries == []
    assert len(_exits(services)) == 1
    assert _count(services, AuditRow, AuditRow.action == "risk.exit_retry") == 0


SUNDAY = datetime(2026, 11, 22, tzinfo=IST)  # NSE closed; the demo's paper market runs


def _mis_exits(services: Services) -> list[tuple[Side, int, Product]]:
    return [(e.side, e.quantity, e.product) for e in _exits(services)]


def test_an_mis_position_opened_on_a_sunday_in_the_demo_is_squared_off_that_afternoon(
    services: Services, priya: Actor, account: int,
) -> None:
    with time_machine.travel(SUNDAY.replace(hour=15, minute=12), tick=True):
        set_feed(services.db)
        _hold(services, priya, account, 5)
    with time_machine.travel(SUNDAY.replace(hour=15, minute=16), tick=True):
        set_feed(services.db)
        tick(services.db, "SBIN", "799.00")
        services.risk_watch.run()
    assert _mis_exits(services) == [(Side.SELL, 5, Product.MIS)]
    assert _count(services, AlertOutboxRow, AlertOutboxRow.kind == "risk.eod") == 1


def test_an_mis_position_from_an_earlier_day_closes_at_once_when_its_market_is_open_not_before(
    services: Services, priya: Actor, account: int,
) -> None:
    with time_machine.travel(SUNDAY.replace(hour=11), tick=True):
        set_feed(services.db)
        _hold(services, priya, account, 5)
        set_feed(services.db, running=False)  # the feed stopped before the square-off time
    monday = SUNDAY + timedelta(days=1)
    with time_machine.travel(monday.replace(hour=9, minute=20), tick=True):
        for _ in range(3):  # a closed market is sent no exit its gate would refuse
            report = services.risk_watch.run()
            assert report.square_offs == [] and report.failures == []
        assert _exits(services) == []
        set_feed(services.db)
        tick(services.db, "SBIN", "801.00")
        report = services.risk_watch.run()
    assert _mis_exits(services) == [(Side.SELL, 5, Product.MIS)]
    (body,) = _exits_alert_bodies(services)
    assert "opened on an earlier day and is never carried overnight" in body


def test_an_mis_trade_after_the_close_in_the_demo_is_not_squared_off_on_its_fill_but_next_day(
    services: Services, priya: Actor, account: int,
) -> None:
    with time_machine.travel(SUNDAY.replace(hour=17), tick=True):  # the paper market runs on
        set_feed(services.db)
        _hold(services, priya, account, 5)
        assert services.risk_watch.run().square_offs == []
        assert _exits(services) == []
    with time_machine.travel((SUNDAY + timedelta(days=1)).replace(hour=0, minute=5), tick=True):
        set_feed(services.db)
        tick(services.db, "SBIN", "801.00")
        services.risk_watch.run()
    assert _mis_exits(services) == [(Side.SELL, 5, Product.MIS)]
