"""Order events reach the alert outbox in the transaction that records them.

Runs on SQLite and PostgreSQL with the real paper broker, its exchange step and the order
manager; the market is driven as the feed would drive it (tests/support/market.py).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core.domain import Actor
from core.errors import OrderRejected
from core.order_alerts import (
    CANCELLED,
    FILLED,
    PARTIALLY_FILLED,
    PLACED,
    REJECTED,
    event_kind,
)
from core.orders import RiskContext, RiskDecision
from core.services import Services
from core.trading import GttLeg, OrderRequest, OrderStatus, OrderType, Product, Side, Validity
from db.models import AlertOutboxRow, OrderRow
from tests.support.market import open_market, set_feed, tick
from tests.support.outbox import alert_rows
from tests.test_orders import _buy  # a 10 INFY CNC LIMIT buy at ₹1,500.00

pytestmark = pytest.mark.usefixtures("backend")
S = OrderStatus


@pytest.fixture
def priya(services: Services, login) -> Actor:
    open_market(services.db, {"INFY": "1500.00", "TCS": "3000.00"})
    return login("priya")


@pytest.fixture
def account(services: Services, priya: Actor) -> int:
    return next(a.id for a in services.household.list_accounts(priya)
                if a.label == "Priya · Trading")


def _order_alerts(services: Services) -> list[AlertOutboxRow]:
    return alert_rows(services, AlertOutboxRow.kind.like("order.%"))


def _kinds(services: Services) -> list[str]:
    return [row.kind for row in _order_alerts(services)]


@pytest.mark.parametrize(("old", "new", "old_filled", "filled", "kind"), [
    (S.PENDING, S.OPEN, 0, 0, PLACED),
    (S.OPEN, S.PARTIALLY_FILLED, 0, 4, PARTIALLY_FILLED),
    (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, 4, 7, PARTIALLY_FILLED),
    (S.OPEN, S.OPEN, 0, 3, PARTIALLY_FILLED),  # a broker that reports OPEN with a fill
    (S.OPEN, S.FILLED, 0, 10, FILLED),
    (S.PARTIALLY_FILLED, S.FILLED, 4, 10, FILLED),
    (S.PENDING, S.REJECTED, 0, 0, REJECTED),
    (S.OPEN, S.REJECTED, 0, 0, REJECTED),
    (S.OPEN, S.CANCELLED, 0, 0, CANCELLED),
    (S.PARTIALLY_FILLED, S.CANCELLED, 4, 4, CANCELLED),
])
def test_each_state_change_maps_to_its_alert_kind(
        old: OrderStatus, new: OrderStatus, old_filled: int, filled: int, kind: str) -> None:
    assert event_kind(old, new, old_filled, filled, 10) == kind


def test_a_placed_then_filled_order_writes_one_alert_each_with_the_account_and_numbers(
        services: Services, priya: Actor, account: int) -> None:
    order = services.orders.place(priya, _buy(account, order_type=OrderType.MARKET, price=None))
    tick(services.db, "INFY", "1510.00")
    services.orders.step()
    services.orders.step()  # a second step finds nothing new
    placed, filled = _order_alerts(services)
    assert (placed.kind, placed.severity, placed.account_id) == (PLACED, "info", account)
    assert placed.title == "Order placed: BUY 10 INFY"
    assert placed.body == f"MARKET at market · CNC\nOrder {order.id} (order ticket), by priya"
    assert placed.dedupe_key == f"order:{order.id}:OPEN:0"
    assert (filled.kind, filled.account_id, filled.user_id) == (FILLED, account, None)
    assert filled.title == "Filled: BUY 10 INFY @ ₹1,510.80"
    assert filled.body == (f"Filled 10 of 10 at avg ₹1,510.80 = ₹15,108.00\n"
                           f"CNC · Order {order.id} (order ticket)")
    assert placed.status == filled.status == "pending"


def test_a_replayed_venue_push_writes_no_second_alert(
        services: Services, priya: Actor, account: int) -> None:
    from brokers.paper import FeedMarketView, PaperConfig, PaperExchange

    services.orders.place(priya, _buy(account, order_type=OrderType.MARKET, price=None,
                                      product=Product.MIS))
    tick(services.db, "INFY", "1500.50")
    stepped = PaperExchange(services.db, PaperConfig.from_settings(services.settings),
                            FeedMarketView(services.db, services.settings)).step()
    manager = services.orders.manager
    assert manager.apply_updates(stepped.updates) == 1
    assert manager.apply_updates(stepped.updates) == 0
    assert _kinds(services) == [PLACED, FILLED]


def test_a_partial_fill_then_the_rest_write_a_partial_and_a_filled_alert(
        services: Services, priya: Actor, account: int) -> None:
    order = services.orders.place(priya, _buy(account, price=Decimal("1505.00")))
    tick(services.db, "INFY", "1500.00", volume_add=16)  # 25 % participation: 4 shares
    services.orders.step()
    tick(services.db, "INFY", "1500.00")
    services.orders.step()
    placed, partial, filled = _order_alerts(services)
    assert partial.kind == PARTIALLY_FILLED
    assert partial.title == "Part filled: BUY 4/10 INFY"
    assert partial.body.startswith("Filled 4 of 10 at avg ₹1,500.75 = ₹6,003.00\n6 still open")
    assert partial.dedupe_key == f"order:{order.id}:PARTIALLY_FILLED:4"
    assert (placed.kind, filled.kind) == (PLACED, FILLED)


def test_an_ioc_order_cancelled_after_a_partial_fill_says_how_much_was_cancelled(
        services: Services, priya: Actor, account: int) -> None:
    services.orders.place(priya, _buy(account, price=Decimal("1505.00"),
                                      validity=Validity.IOC))
    tick(services.db, "INFY", "1500.00", volume_add=16)
    services.orders.step()
    cancelled = _order_alerts(services)[-1]
    assert cancelled.kind == CANCELLED and cancelled.severity == "info"
    assert cancelled.body.startswith("Filled 4 of 10 at avg ₹1,500.75 = ₹6,003.00; the other 6 "
                                     "cancelled")


def test_a_cancelled_order_alerts_once(services: Services, priya: Actor, account: int) -> None:
    order = services.orders.place(priya, _buy(account, price=Decimal("1400.00")))
    services.orders.cancel(priya, order.id)
    services.orders.step()
    assert _kinds(services) == [PLACED, CANCELLED]
    cancelled = _order_alerts(services)[-1]
    assert cancelled.title == "Order cancelled: BUY 10 INFY"
    assert cancelled.body.startswith("Nothing filled; all 10 cancelled")


def test_a_broker_refusal_is_a_warning_with_the_reason(
        services: Services, priya: Actor, account: int, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = services.orders.broker_for(account)

    def refuse(session: object, request: OrderRequest, pre: object = None) -> str:
        raise OrderRejected("the exchange halted INFY")

    monkeypatch.setattr(broker, "place_in", refuse)
    order = services.orders.place(priya, _buy(account))
    (rejected,) = _order_alerts(services)
    assert (rejected.kind, rejected.severity, rejected.account_id) == (REJECTED, "warning",
                                                                       account)
    assert rejected.title == "Order rejected: BUY 10 INFY"
    assert rejected.body == ("Reason: the exchange halted INFY\nLIMIT at ₹1,500.00 or better · "
                             f"CNC\nOrder {order.id} (order ticket)")


def test_an_order_whose_transaction_rolls_back_writes_no_alert(
        services: Services, priya: Actor, account: int) -> None:
    def crash(session: object, order: object) -> None:
        raise RuntimeError("crash after the order was recorded")

    request, _ = services.orders.manager.normalise(_buy(account))
    with pytest.raises(RuntimeError, match="crash after"):
        services.orders.manager.submit(request, placed_by=priya, on_recorded=crash)
    with services.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(OrderRow)) == 0
    assert _order_alerts(services) == []


class RefuseEverything:
    """A risk gate that refuses every order."""

    def check(self, request: OrderRequest, context: RiskContext) -> RiskDecision:
        return RiskDecision(False, ("test gate: daily loss limit reached",))


def test_a_gtt_whose_order_is_refused_before_it_exists_alerts_a_rejection(
        services: Services, priya: Actor, account: int) -> None:
    gtt = services.orders.create_gtt(priya, account, "INFY", Product.CNC,
                                     [GttLeg(Decimal("1450.00"), Side.BUY, 5, Decimal("1452.00"))])
    services.orders.manager.risk_gate = RefuseEverything()
    tick(services.db, "INFY", "1449.00")
    services.orders.step()
    services.orders.step()
    (rejected,) = _order_alerts(services)
    assert (rejected.kind, rejected.severity, rejected.account_id) == (REJECTED, "warning",
                                                                       account)
    assert rejected.title == "GTT order rejected: BUY 5 INFY"
    assert "daily loss limit reached" in rejected.body
    assert rejected.dedupe_key == f"gtt:{gtt.id}:rejected"


def test_a_gtt_order_placed_by_its_trigger_says_so(
        services: Services, priya: Actor, account: int) -> None:
    services.orders.create_gtt(priya, account, "INFY", Product.CNC,
                               [GttLeg(Decimal("1450.00"), Side.BUY, 5, Decimal("1452.00"))])
    tick(services.db, "INFY", "1449.00")
    services.orders.step()
    placed = _order_alerts(services)[0]
    assert placed.kind == PLACED and "(GTT trigger), by priya" in placed.body
    assert placed.body.startswith("LIMIT at ₹1,452.00 or better · CNC")


def test_an_after_market_order_says_it_is_queued_and_alerts_its_fill_at_the_open(
        services: Services, priya: Actor, account: int) -> None:
    set_feed(services.db, running=False)
    services.orders.place(priya, _buy(account, order_type=OrderType.MARKET, price=None,
                                      amo=True))
    services.orders.step()  # still closed: nothing new
    placed = _order_alerts(services)[0]
    assert placed.body.startswith("MARKET at market · CNC — AMO, queued for the next open\n")
    set_feed(services.db, running=True)
    tick(services.db, "INFY", "1501.00")
    services.orders.step()  # the open releases and fills it
    assert _kinds(services) == [PLACED, FILLED]


def test_the_intraday_square_off_alerts_its_cancels_and_exits(
        services: Services, priya: Actor, account: int) -> None:
    services.orders.place(priya, _buy(account, product=Product.MIS, order_type=OrderType.MARKET,
                                      price=None))
    tick(services.db, "INFY", "1500.00")
    services.orders.step()
    resting = services.orders.place(priya, _buy(account, product=Product.MIS, quantity=3,
                                                price=Decimal("1400.00")))
    (exit_order,) = services.orders.square_off_intraday(priya, account)
    rows = _order_alerts(services)
    assert [r.kind for r in rows] == [PLACED, FILLED, PLACED, CANCELLED, PLACED]
    assert rows[3].dedupe_key == f"order:{resting.id}:CANCELLED:0"
    assert rows[3].body.startswith("Nothing filled; all 3 cancelled")
    assert rows[4].title == "Order placed: SELL 10 INFY"
    assert f"Order {exit_order.id} (MIS square-off), by priya" in rows[4].body


class HalveEverything:
    """A risk gate that approves half of every order, as a CHOPPY market regime does."""

    def check(self, request: OrderRequest, context: RiskContext) -> RiskDecision:
        half = request.quantity // 2
        return RiskDecision(True, (f"market regime CHOPPY: size × 0.5 → {half} shares",),
                            quantity=half)


def test_an_order_the_gate_cut_says_what_was_asked_and_why_when_placed_or_rejected(
        services: Services, priya: Actor, account: int, monkeypatch: pytest.MonkeyPatch) -> None:
    services.orders.manager.risk_gate = HalveEverything()
    placed = services.orders.place(priya, _buy(account))
    assert placed.quantity == 5
    (alert,) = _order_alerts(services)
    assert alert.kind == PLACED
    assert alert.title == ("Order placed: BUY 5 INFY (asked 10; risk gate: market regime "
                           "CHOPPY: size × 0.5 → 5 shares)")
    broker = services.orders.broker_for(account)

    def refuse(session: object, request: OrderRequest, pre: object = None) -> str:
        raise OrderRejected("the exchange halted INFY")

    monkeypatch.setattr(broker, "place_in", refuse)
    services.orders.place(priya, OrderRequest(account, "INFY", Side.BUY, 6, OrderType.LIMIT,
                                              Product.CNC, price=Decimal("1500.00")))
    rejected = _order_alerts(services)[-1]
    assert rejected.kind == REJECTED
    assert rejected.title == ("Order rejected: BUY 3 INFY (asked 6; risk gate: market regime "
                              "CHOPPY: size × 0.5 → 3 shares)")


def test_an_order_the_gate_cut_says_what_was_asked_when_the_broker_sync_brings_its_changes(
        services: Services, priya: Actor, account: int) -> None:
    services.orders.manager.risk_gate = HalveEverything()
    asked = "(asked 10; risk gate: market regime CHOPPY: size × 0.5 → 5 shares)"
    market = services.orders.place(priya, _buy(account, order_type=OrderType.MARKET, price=None))
    tick(services.db, "INFY", "1510.00")
    services.orders.step()  # the fill reaches the book through the mirrored broker update
    filled = _order_alerts(services)[-1]
    assert filled.kind == FILLED
    assert filled.body.startswith(f"Filled 5 of 5 at avg ₹1,510.80 = ₹7,554.00 {asked}\n")
    resting = services.orders.place(priya, _buy(account, price=Decimal("1400.00")))
    services.orders.cancel(priya, resting.id)  # mirrored through OrderManager.sync
    cancelled = _order_alerts(services)[-1]
    assert (cancelled.kind, cancelled.title) == (CANCELLED, f"Order cancelled: BUY 5 INFY {asked}")
    assert market.quantity == 5
