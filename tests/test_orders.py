"""The order path through the services: bad input, idempotency, fills, audit, risk gate, GTT.

Runs on SQLite and PostgreSQL with the real paper broker, its exchange step and the order
manager; the market is driven by writing what the feed would write (tests/support/market.py).
"""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update

from core import audit
from core.domain import Actor
from core.errors import (
    InsufficientFunds,
    NotFound,
    OrderRejected,
    PermissionDenied,
    RiskRejected,
    ValidationError,
)
from core.money import inr
from core.orders import RiskContext, RiskDecision
from core.services import Services
from core.services.audit_log import AuditFilter
from core.trading import (
    GttLeg,
    GttStatus,
    OrderRequest,
    OrderStatus,
    OrderType,
    Product,
    Side,
    Validity,
)
from db.models import (
    AuditRow,
    GttRow,
    InstrumentRow,
    OrderRow,
    PaperOrderRow,
    TradeRow,
)
from engines import costs
from engines.risk_types import Scope
from tests.support.market import open_market, set_feed, tick
from tests.support.orders import review_and_place_refusals

pytestmark = pytest.mark.usefixtures("backend")


def _account(services: Services, actor: Actor, label: str) -> int:
    return next(a.id for a in services.household.list_accounts(actor) if a.label == label)


def _counts(services: Services) -> tuple[int, int, int]:
    with services.db.transaction() as session:
        return (session.scalar(select(func.count()).select_from(OrderRow)) or 0,
                session.scalar(select(func.count()).select_from(PaperOrderRow)) or 0,
                session.scalar(select(func.count()).select_from(GttRow)) or 0)


@pytest.fixture
def priya(services: Services, login) -> Actor:
    open_market(services.db, {"INFY": "1500.00", "TCS": "3000.00", "SBIN": "800.00"})
    return login("priya")


@pytest.fixture
def priya_account(services: Services, priya: Actor) -> int:
    return _account(services, priya, "Priya · Trading")


def _buy(account: int, **changes: object) -> OrderRequest:
    values: dict[str, object] = {"account_id": account, "symbol": "INFY", "side": Side.BUY,
                                 "quantity": 10, "order_type": OrderType.LIMIT,
                                 "product": Product.CNC, "price": Decimal("1500.00")}
    values.update(changes)
    return OrderRequest(**values)  # type: ignore[arg-type]


BAD_ORDERS = [
    pytest.param({"quantity": 0}, "Quantity must be greater than 0; got 0", id="zero-quantity"),
    pytest.param({"quantity": -5}, "Quantity must be greater than 0; got -5", id="negative"),
    pytest.param({"price": Decimal("1500.03")}, "not on the tick size ₹0.05", id="off-tick"),
    pytest.param({"price": None}, "A LIMIT order needs a price", id="limit-without-price"),
    pytest.param({"order_type": OrderType.SL, "price": Decimal("1490"),
                  "trigger_price": Decimal("1510")},
                 "An SL BUY triggers at or below its limit price", id="sl-trigger-wrong-side"),
    pytest.param({"symbol": "NOSUCH"}, "Unknown symbol 'NOSUCH' on NSE", id="unknown-symbol"),
    pytest.param({"product": Product.NRML}, "NRML is for futures and options", id="nrml-equity"),
    pytest.param({"quantity": 10_000}, "needs ₹", id="insufficient-funds"),
    pytest.param({"product": Product.CNC, "side": Side.SELL}, "You can sell at most 0 INFY",
                 id="cnc-sell-without-shares"),
    pytest.param({"amo": True}, "AMO is only for orders placed while it is closed",
                 id="amo-while-open"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_ORDERS)
def test_a_bad_order_is_refused_with_the_rule_and_nothing_is_written(
    services: Services, priya: Actor, priya_account: int, changes: dict[str, object],
    message: str,
) -> None:
    before = _counts(services)
    with pytest.raises((ValidationError, InsufficientFunds, NotFound)) as refused:
        services.orders.place(priya, _buy(priya_account, **changes))
    assert message in str(refused.value)
    assert _counts(services) == before


@pytest.mark.parametrize(("stop", "shown"), [(Decimal("0.0"), "₹0"), (Decimal("-5.25"), "-₹5.25")])
def test_a_planned_stop_loss_that_is_no_price_is_refused_in_rupees_on_review_and_place(
    services: Services, priya: Actor, priya_account: int, stop: Decimal, shown: str,
) -> None:
    request = _buy(priya_account, stop_loss=stop)
    message = f"Stop-loss must be a positive price in rupees; got {shown}"
    assert review_and_place_refusals(services, priya, request) == [message] * 3
    assert _counts(services) == (0, 0, 0)


def test_insufficient_funds_says_how_much_is_needed_and_available(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    with pytest.raises(InsufficientFunds) as refused:
        services.orders.place(priya, _buy(priya_account, quantity=1000))
    trading_day = services.orders.market_session(priya, priya_account).trading_day
    charges = costs.leg_charges("equity_delivery", "buy", "1500.00", 1000, trading_day, "paper")
    needed = Decimal("1500000") + charges.total
    assert str(refused.value) == (
        f"Insufficient funds for BUY 1000 INFY (CNC): needs {inr(needed)}, "
        "available ₹10,00,000.00")


def test_a_quantity_that_is_not_a_lot_multiple_is_refused(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    with services.db.transaction() as session:
        session.execute(update(InstrumentRow).where(InstrumentRow.symbol == "INFY")
                        .values(lot_size=25))
    before = _counts(services)
    with pytest.raises(ValidationError, match="not a multiple of its lot size 25"):
        services.orders.place(priya, _buy(priya_account, quantity=30))
    assert _counts(services) == before


def test_a_market_order_while_the_market_is_closed_needs_amo(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    set_feed(services.db, running=False)
    before = _counts(services)
    with pytest.raises(ValidationError, match=r"Market is closed .*tick AMO"):
        services.orders.place(priya, _buy(priya_account, order_type=OrderType.MARKET,
                                          price=None))
    assert _counts(services) == before
    order = services.orders.place(priya, _buy(priya_account, order_type=OrderType.MARKET,
                                              price=None, amo=True))
    assert order.status is OrderStatus.OPEN and order.amo
    services.orders.step()
    assert services.orders.order_book(priya, priya_account)[0].status is OrderStatus.OPEN
    set_feed(services.db, running=True)
    tick(services.db, "INFY", "1501.00")
    services.orders.step()
    filled = services.orders.order_book(priya, priya_account)[0]
    assert filled.status is OrderStatus.FILLED


def test_an_account_the_user_may_not_trade_is_refused_and_the_refusal_audited(
    services: Services, login, priya: Actor,
) -> None:
    aarav = login("aarav")  # viewer with view access to Rahul · Long-term
    account = _account(services, aarav, "Rahul · Long-term")
    before = _counts(services)
    with pytest.raises(PermissionDenied, match="may not trade account"):
        services.orders.place(aarav, _buy(account))
    with pytest.raises(PermissionDenied):
        services.orders.place(priya, _buy(_account(services, login("rahul"), "Kamla · Pension")))
    assert _counts(services) == before
    with services.db.transaction() as session:
        denied = session.scalar(select(func.count()).select_from(AuditRow).where(
            AuditRow.action == "accounts.trade", AuditRow.outcome == "denied"))
    assert denied == 2


def test_the_same_client_order_id_twice_yields_one_order(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    request = _buy(priya_account, client_order_id="my-order-1")
    first = services.orders.place(priya, request)
    second = services.orders.place(priya, request)
    assert first.id == second.id
    assert _counts(services)[:2] == (1, 1)
    with pytest.raises(ValidationError, match="already used for order"):
        services.orders.place(priya, _buy(priya_account, client_order_id="my-order-1",
                                          quantity=11))


def test_a_market_order_fills_at_the_next_price_with_real_charges_and_audited_transitions(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    order = services.orders.place(priya, _buy(priya_account, order_type=OrderType.MARKET,
                                              price=None))
    assert order.status is OrderStatus.OPEN and order.broker_order_id
    services.orders.step()  # no new price since placement: nothing fills
    assert services.orders.order_book(priya, priya_account)[0].status is OrderStatus.OPEN
    tick(services.db, "INFY", "1510.00")
    services.orders.step()
    filled = services.orders.order_book(priya, priya_account)[0]
    assert filled.status is OrderStatus.FILLED and filled.filled_quantity == 10
    assert filled.average_price == Decimal("1510.80")  # 5 bps slippage, rounded up to the tick
    with services.db.transaction() as session:
        trade = session.scalars(select(TradeRow)).one()
        actions = [(a.action, a.details) for a in session.scalars(
            select(AuditRow).where(AuditRow.resource == f"order:{order.id}")
            .order_by(AuditRow.id))]
    expected = costs.leg_charges("equity_delivery", "buy", Decimal("1510.80"), 10,
                                 trade.trade_date, "paper")
    assert trade.charges_total == pytest.approx(expected.total, abs=Decimal("0.000001"))
    assert [a for a, _ in actions] == ["orders.place", "orders.status", "orders.status"]
    assert '"to":"OPEN"' in actions[1][1] and '"to":"FILLED"' in actions[2][1]
    positions = services.portfolio.positions(priya, priya_account)
    assert [(p.symbol, p.quantity) for p in positions] == [("INFY", 10)]
    funds = services.portfolio.funds(priya, priya_account)
    assert funds.available == Decimal("1000000") - Decimal("15108.00") - trade.charges_total


def test_modify_and_cancel_work_on_open_orders_only(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    order = services.orders.place(priya, _buy(priya_account, price=Decimal("1400.00")))
    changed = services.orders.modify(priya, order.id, price=Decimal("1405.00"))
    assert changed.price == Decimal("1405.00") and changed.status is OrderStatus.OPEN
    cancelled = services.orders.cancel(priya, order.id)
    assert cancelled.status is OrderStatus.CANCELLED
    with pytest.raises(ValidationError, match="is CANCELLED; only open orders"):
        services.orders.cancel(priya, order.id)
    with pytest.raises(ValidationError, match="is CANCELLED; only open orders"):
        services.orders.modify(priya, order.id, price=Decimal("1410.00"))
    filled = services.orders.place(priya, _buy(priya_account, price=Decimal("1500.00")))
    tick(services.db, "INFY", "1499.00")
    services.orders.step()
    with pytest.raises(ValidationError, match="is FILLED; only open orders"):
        services.orders.cancel(priya, filled.id)


def test_an_order_the_gate_cut_can_change_its_price_and_size_up_to_what_the_gate_allows(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    services.risk.set_limits(priya, priya_account, {"risk_per_trade_pct": "0.5"})
    services.risk_gate.forget_limits()
    # ₹5,000 at risk (0.5% of ₹10 lakh); no ATR, so the stop is 2% of the price: ₹28 → 178
    order = services.orders.place(priya, _buy(priya_account, quantity=200,
                                              price=Decimal("1400.00")))
    assert order.quantity == 178
    # A new order of 178 at ₹1,410 (stop ₹28.20) would be cut to 177; the order keeps its 178
    moved = services.orders.modify(priya, order.id, price=Decimal("1410.00"))
    assert (moved.quantity, moved.price) == (178, Decimal("1410.00"))
    assert services.orders.modify(priya, order.id, quantity=150).quantity == 150
    assert services.orders.modify(priya, order.id, quantity=177).quantity == 177
    with pytest.raises(RiskRejected, match=(
            r"Risk gate allows at most 177 INFY for this order, not 190: a new order of 190 "
            r"would be cut to 177 \(size reduced from 190 to 177 shares: risk per trade .*\); "
            r"modify to 177 or fewer")):
        services.orders.modify(priya, order.id, quantity=190)
    assert services.orders.order_book(priya, priya_account)[0].quantity == 177


class RefuseEverything:
    """A risk gate that refuses every order and remembers what it saw."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def check(self, request: OrderRequest, context: RiskContext) -> RiskDecision:
        self.seen.append(context.action)
        return RiskDecision(False, ("test gate: daily loss limit reached",))


def test_modifying_an_order_to_match_another_is_no_duplicate_but_a_new_repeat_still_is(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    first = services.orders.place(priya, _buy(priya_account, quantity=5,
                                              price=Decimal("1400.00")))
    services.orders.place(priya, _buy(priya_account, quantity=1, price=Decimal("1390.00")))
    changed = services.orders.modify(priya, first.id, quantity=1)  # now as the second one
    assert (changed.quantity, changed.status) == (1, OrderStatus.OPEN)
    with pytest.raises(RiskRejected, match=r"the same order \(BUY 1 share of INFY\) was sent "):
        services.orders.place(priya, _buy(priya_account, quantity=1, price=Decimal("1395.00")))


def test_every_order_path_calls_the_risk_gate(
    services: Services, priya: Actor, priya_account: int, login,
) -> None:
    resting = services.orders.place(priya, _buy(priya_account, price=Decimal("1400.00")))
    mis = services.orders.place(priya, _buy(priya_account, product=Product.MIS, quantity=5,
                                            order_type=OrderType.MARKET, price=None))
    tick(services.db, "INFY", "1500.00")
    services.orders.step()
    services.orders.create_gtt(priya, priya_account, "INFY", Product.CNC,
                               [GttLeg(Decimal("1550.00"), Side.BUY, 1, Decimal("1551.00"))])
    gate = RefuseEverything()
    services.orders.manager.risk_gate = gate
    before = _counts(services)
    with pytest.raises(RiskRejected, match="daily loss limit"):
        services.orders.place(priya, _buy(priya_account))
    with pytest.raises(RiskRejected):
        services.orders.modify(priya, resting.id, price=Decimal("1401.00"))
    assert _counts(services) == before
    tick(services.db, "INFY", "1560.00")
    services.orders.step()  # the GTT fires but its order is refused by the gate
    gtt = services.orders.gtts(priya, priya_account)[0]
    assert gtt.status is GttStatus.REJECTED and "daily loss limit" in (gtt.message or "")
    with services.db.transaction() as session:  # audited as failed, in the household's log
        assert session.execute(select(AuditRow.outcome, AuditRow.household_id).where(
            AuditRow.action == "gtt.rejected")).one() == (audit.FAILED, priya.household_id)
    shown = services.audit.entries(login("rahul"), AuditFilter(action_prefix="gtt.rejected"))
    assert list(shown["actor"]) == ["system"] and list(shown["outcome"]) == [audit.FAILED]
    with pytest.raises(RiskRejected):
        services.orders.square_off_intraday(priya, priya_account)  # the open MIS position
    assert mis.status is OrderStatus.OPEN
    assert {"place", "modify", "gtt", "square_off"} <= set(gate.seen)


def test_a_single_gtt_fires_once_when_the_price_crosses_its_trigger(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    gtt = services.orders.create_gtt(priya, priya_account, "INFY", Product.CNC,
                                     [GttLeg(Decimal("1450.00"), Side.BUY, 5, Decimal("1452.00"))])
    assert gtt.status is GttStatus.ACTIVE
    tick(services.db, "INFY", "1460.00")
    services.orders.step()
    assert services.orders.gtts(priya, priya_account)[0].status is GttStatus.ACTIVE
    tick(services.db, "INFY", "1449.00")
    services.orders.step()
    services.orders.step()
    fired = services.orders.gtts(priya, priya_account)[0]
    assert fired.status is GttStatus.TRIGGERED and fired.order_id is not None
    orders = services.orders.order_book(priya, priya_account)
    assert len(orders) == 1 and orders[0].source == "gtt"
    assert orders[0].order_type is OrderType.LIMIT and orders[0].price == Decimal("1452.00")


def test_a_gtt_s_trigger_is_audited_in_its_account_s_household(
    services: Services, priya: Actor, priya_account: int, login,
) -> None:
    gtt = services.orders.create_gtt(priya, priya_account, "INFY", Product.CNC,
                                     [GttLeg(Decimal("1450.00"), Side.BUY, 5, Decimal("1452.00"))])
    tick(services.db, "INFY", "1449.00")
    services.orders.step()
    with services.db.transaction() as session:
        assert session.execute(select(AuditRow.resource, AuditRow.household_id).where(
            AuditRow.action == "gtt.trigger")).one() == (f"gtt:{gtt.id}", priya.household_id)
    shown = services.audit.entries(login("rahul"), AuditFilter(action_prefix="gtt.trigger"))
    assert list(shown["actor"]) == ["system"]


@pytest.mark.parametrize("scope", [Scope.ACCOUNT, Scope.HOUSEHOLD])
def test_no_gtt_is_created_or_reviewed_while_trading_is_stopped_and_one_is_after_re_enabling(
    services: Services, priya: Actor, priya_account: int, login, scope: Scope,
) -> None:
    rahul = login("rahul")
    report = (services.risk.panic(priya, Scope.ACCOUNT, account_id=priya_account)
              if scope is Scope.ACCOUNT else services.risk.panic(rahul, Scope.HOUSEHOLD))
    where = "this account" if scope is Scope.ACCOUNT else "the household"
    legs = [GttLeg(Decimal("1450.00"), Side.BUY, 5, Decimal("1452.00"))]
    for call in (services.orders.create_gtt, services.orders.review_gtt):
        with pytest.raises(RiskRejected, match=(
                rf"No GTT while trading is stopped on {where}: panic \(active\) — Panic "
                rf"pressed by {'priya' if scope is Scope.ACCOUNT else 'rahul'}\. Create it once "
                r"the stop is lifted")):
            call(priya, priya_account, "INFY", Product.CNC, legs)
    assert _counts(services)[2] == 0
    services.risk.reenable(rahul, report.state_id, "checked")
    assert services.orders.create_gtt(priya, priya_account, "INFY", Product.CNC,
                                      legs).status is GttStatus.ACTIVE


def test_a_panic_pressed_while_a_gtt_is_being_created_never_leaves_it_active(
    services: Services, priya: Actor, priya_account: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked = services.orders._checked_gtt

    def checked_then_panic(*args: Any, **kwargs: Any) -> Any:
        found = checked(*args, **kwargs)  # the checks pass; then another tab presses panic
        services.risk.panic(priya, Scope.ACCOUNT, account_id=priya_account)
        return found

    monkeypatch.setattr(services.orders, "_checked_gtt", checked_then_panic)
    with pytest.raises(RiskRejected, match=r"No GTT while trading is stopped on this account: "
                                           r"panic \(active\)"):
        services.orders.create_gtt(priya, priya_account, "INFY", Product.CNC,
                                   [GttLeg(Decimal("1450.00"), Side.BUY, 5, Decimal("1452.00"))])
    assert _counts(services)[2] == 0


def test_a_gtt_whose_order_is_above_the_account_s_per_order_limits_is_refused_at_once(
    services: Services, priya: Actor, priya_account: int, login,
) -> None:
    huge = [GttLeg(Decimal("1200.00"), Side.BUY, 100_000, Decimal("1200.00"))]
    for call in (services.orders.create_gtt, services.orders.review_gtt):
        with pytest.raises(RiskRejected) as refused:
            call(priya, priya_account, "INFY", Product.CNC, huge)
        assert str(refused.value) == (
            "This GTT's order would be refused by the risk gate when it fires: leg 1 (BUY "
            "100000 INFY at ₹1,200.00): order value ₹12,00,00,000.00 is above the limit "
            "₹5,00,000.00 per order and quantity 100000 is above the limit of 5000 shares per "
            "order. Lower the quantity, or ask for higher per-order limits of this account "
            "(Risk page)")
    assert _counts(services)[2] == 0
    # the limits in force for the account: an admin's stricter quantity limit counts
    services.risk.set_limits(login("rahul"), priya_account, {"max_order_quantity": "20"})
    oco = [GttLeg(Decimal("1400.00"), Side.BUY, 20, Decimal("1400.00")),
           GttLeg(Decimal("1600.00"), Side.BUY, 25, Decimal("1601.00"))]
    with pytest.raises(RiskRejected, match=r"leg 2 \(BUY 25 INFY at ₹1,601.00\): quantity 25 "
                                           r"is above the limit of 20 shares per order\. "):
        services.orders.create_gtt(priya, priya_account, "INFY", Product.CNC, oco)
    assert _counts(services)[2] == 0
    # within the limits it is created (funds and price band are checked when it fires)
    assert services.orders.create_gtt(priya, priya_account, "INFY", Product.CNC, [GttLeg(
        Decimal("1400.00"), Side.BUY, 20, Decimal("1400.00"))]).status is GttStatus.ACTIVE


def test_a_strategys_panic_leaves_gtts_alone_as_they_carry_no_strategy(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    services.risk.panic(priya, Scope.STRATEGY, strategy="ema_cross")
    gtt = services.orders.create_gtt(priya, priya_account, "INFY", Product.CNC,
                                     [GttLeg(Decimal("1450.00"), Side.BUY, 5, Decimal("1452.00"))])
    assert gtt.status is GttStatus.ACTIVE


def test_an_oco_gtt_fires_the_leg_crossed_first_and_drops_the_other(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    services.orders.place(priya, _buy(priya_account, quantity=10))
    tick(services.db, "INFY", "1500.00")
    services.orders.step()
    legs = [GttLeg(Decimal("1400.00"), Side.SELL, 10, Decimal("1399.00")),
            GttLeg(Decimal("1600.00"), Side.SELL, 10, Decimal("1599.00"))]
    with pytest.raises(ValidationError, match="stop-loss trigger below and its target"):
        services.orders.create_gtt(priya, priya_account, "INFY", Product.CNC, legs[::-1])
    services.orders.create_gtt(priya, priya_account, "INFY", Product.CNC, legs)
    tick(services.db, "INFY", "1605.00")
    services.orders.step()
    gtt = services.orders.gtts(priya, priya_account)[0]
    assert gtt.status is GttStatus.TRIGGERED and gtt.triggered_leg == 2
    tick(services.db, "INFY", "1300.00")
    services.orders.step()
    sells = [o for o in services.orders.order_book(priya, priya_account) if o.side is Side.SELL]
    assert len(sells) == 1 and sells[0].price == Decimal("1599.00")


def test_a_delivery_sell_gtt_needs_the_shares_when_it_is_created(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    stop = GttLeg(Decimal("1400.00"), Side.SELL, 10, Decimal("1399.00"))
    target = GttLeg(Decimal("1600.00"), Side.SELL, 12, Decimal("1599.00"))
    for call in (services.orders.create_gtt, services.orders.review_gtt):
        with pytest.raises(ValidationError, match=(
                r"You can sell at most 0 INFY from delivery \(holdings 0, bought today 0, "
                r"pending sells 0\)")):
            call(priya, priya_account, "INFY", Product.CNC, [stop])
    assert _counts(services)[2] == 0
    services.orders.place(priya, _buy(priya_account, quantity=10))
    tick(services.db, "INFY", "1500.00")
    services.orders.step()
    with pytest.raises(ValidationError, match=r"You can sell at most 10 INFY from delivery "
                                              r"\(holdings 0, bought today 10, pending sells 0\)"):
        services.orders.create_gtt(priya, priya_account, "INFY", Product.CNC, [stop, target])
    assert _counts(services)[2] == 0
    assert services.orders.create_gtt(priya, priya_account, "INFY", Product.CNC,
                                      [stop]).status is GttStatus.ACTIVE
    # an intraday sell GTT is a short, which MIS allows
    assert services.orders.create_gtt(priya, priya_account, "TCS", Product.MIS, [GttLeg(
        Decimal("3100.00"), Side.SELL, 5, Decimal("3099.00"))]).status is GttStatus.ACTIVE


def test_review_refuses_a_delivery_sell_beyond_the_sellable_shares_as_place_does(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    services.orders.place(priya, _buy(priya_account, quantity=5))  # today's CNC buy
    tick(services.db, "INFY", "1500.00")
    services.orders.step()
    sell = _buy(priya_account, side=Side.SELL, quantity=50, price=Decimal("1400.00"))
    assert review_and_place_refusals(services, priya, sell) == [
        "You can sell at most 5 INFY from delivery (holdings 0, bought today 5, pending sells "
        "0); use MIS to short intraday"] * 3
    services.orders.place(priya, _buy(priya_account, side=Side.SELL, quantity=3,
                                      price=Decimal("1600.00")))  # rests: pending
    assert review_and_place_refusals(services, priya, replace(sell, quantity=3)) == [
        "You can sell at most 2 INFY from delivery (holdings 0, bought today 5, pending sells "
        "3); use MIS to short intraday"] * 3
    decision = services.risk_gate.preview(priya, replace(sell, quantity=2))
    assert decision.approved and decision.quantity == 2


def test_square_off_closes_every_intraday_position_at_market(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    services.orders.place(priya, _buy(priya_account, product=Product.MIS, quantity=20))
    services.orders.place(priya, OrderRequest(priya_account, "SBIN", Side.SELL, 50,
                                              OrderType.MARKET, Product.MIS, Validity.DAY))
    tick(services.db, "INFY", "1499.00")
    tick(services.db, "SBIN", "801.00")
    services.orders.step()
    placed = services.orders.square_off_intraday(priya, priya_account)
    assert sorted((o.symbol, o.side, o.quantity) for o in placed) == [
        ("INFY", Side.SELL, 20), ("SBIN", Side.BUY, 50)]
    tick(services.db, "INFY", "1498.00")
    tick(services.db, "SBIN", "802.00")
    services.orders.step()
    positions = services.portfolio.positions(priya, priya_account)
    assert all(p.quantity == 0 for p in positions)
    assert all(o.source == "square_off" for o in placed)


def _intraday_long(services: Services, actor: Actor, account: int, quantity: int) -> None:
    """Buy ``quantity`` INFY intraday (MIS) and fill it at ₹1,499."""
    services.orders.place(actor, _buy(account, product=Product.MIS, quantity=quantity))
    tick(services.db, "INFY", "1499.00")
    services.orders.step()


def test_a_second_square_off_while_the_first_ones_exits_are_open_sends_nothing_more(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    _intraday_long(services, priya, priya_account, 20)
    [first] = services.orders.square_off_intraday(priya, priya_account)
    assert services.orders.square_off_intraday(priya, priya_account) == []  # a double click
    services.orders.place(priya, _buy(priya_account, product=Product.MIS, quantity=5,
                                      order_type=OrderType.MARKET, price=None))
    tick(services.db, "INFY", "1498.00")
    services.orders.step()  # the first exit fills, and so does the new buy of 5
    [again] = services.orders.square_off_intraday(priya, priya_account)
    assert (again.side, again.quantity) == (Side.SELL, 5)
    book = {o.id: o for o in services.orders.order_book(priya, priya_account)}
    assert book[first.id].status is OrderStatus.FILLED and book[first.id].quantity == 20
    assert not [o for o in book.values() if o.status is OrderStatus.CANCELLED]


def test_the_statements_download_as_csv_with_the_day_s_trades_and_charges(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    _intraday_long(services, priya, priya_account, 4)
    services.orders.place(priya, OrderRequest(priya_account, "INFY", Side.SELL, 4,
                                              OrderType.MARKET, Product.MIS))
    tick(services.db, "INFY", "1520.00")
    services.orders.step()
    day = services.orders.market_session(priya, priya_account).trading_day
    start, end = services.portfolio.period_bounds("day", day)
    trades = services.portfolio.trade_book_csv(priya, priya_account, start, end).decode()
    pnl = services.portfolio.pnl_statement_csv(priya, priya_account, start, end).decode()
    charges = services.portfolio.charges_statement_csv(priya, priya_account, start, end).decode()
    assert trades.count("INFY") == 2 and "Priya · Trading" in trades
    assert "INFY" in pnl and "Total" in pnl
    assert day.isoformat() in charges and "Total" in charges
    with pytest.raises(ValidationError, match="after"):
        services.portfolio.pnl_statement_csv(priya, priya_account, end, start.replace(year=2000))
    with pytest.raises(PermissionDenied):
        services.portfolio.trade_book_csv(priya, _account(services, priya, "Priya · Trading") + 100,
                                          start, end)


def _exchange(services: Services):
    from brokers.paper import FeedMarketView, PaperConfig, PaperExchange

    return PaperExchange(services.db, PaperConfig.from_settings(services.settings),
                         FeedMarketView(services.db, services.settings))


def _trades_of(services: Services, order_id: int) -> list[str]:
    with services.db.transaction() as session:
        return list(session.scalars(select(TradeRow.broker_trade_id)
                                    .where(TradeRow.order_id == order_id)))


def _filled_without_mirroring(services: Services, priya: Actor, account: int):
    """Place a MARKET MIS buy and fill it at the venue; the order book is not told yet."""
    order = services.orders.place(priya, _buy(account, order_type=OrderType.MARKET,
                                              price=None, product=Product.MIS))
    tick(services.db, "INFY", "1500.50")
    return order, _exchange(services).step()


def test_the_step_mirrors_the_fills_the_venue_pushes_and_a_repeated_push_changes_nothing(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    order, stepped = _filled_without_mirroring(services, priya, priya_account)
    assert [u.order.status for u in stepped.updates] == [OrderStatus.FILLED]
    manager = services.orders.manager
    assert manager.apply_updates(stepped.updates) == 1
    assert manager.apply_updates(stepped.updates) == 0  # the same push again
    mirrored = services.orders.order_book(priya, priya_account)[0]
    assert (mirrored.id, mirrored.status, mirrored.filled_quantity) == (
        order.id, OrderStatus.FILLED, 10)
    assert _trades_of(services, order.id) == [stepped.updates[0].trades[0].broker_trade_id]


def test_a_push_whose_fills_do_not_add_up_is_completed_from_the_broker(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    order, stepped = _filled_without_mirroring(services, priya, priya_account)
    lost = stepped.updates[0]
    without_fills = type(lost)(lost.order, ())  # the push that carried the fill was lost
    assert services.orders.manager.apply_updates([without_fills]) == 1
    assert services.orders.order_book(priya, priya_account)[0].status is OrderStatus.FILLED
    assert _trades_of(services, order.id) == [lost.trades[0].broker_trade_id]


def test_a_broker_refusal_after_the_checks_is_recorded_as_rejected_with_both_audit_entries(
    services: Services, priya: Actor, priya_account: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = services.orders.broker_for(priya_account)

    def refuse(session: object, request: OrderRequest, pre: object = None) -> str:
        raise OrderRejected("Market is closed (the exchange halted INFY)")

    monkeypatch.setattr(broker, "place_in", refuse)
    order = services.orders.place(priya, _buy(priya_account))
    assert order.status is OrderStatus.REJECTED and order.broker_order_id is None
    assert "Market is closed" in (order.rejection_reason or "")
    with services.db.transaction() as session:
        actions = [(row.action, row.details) for row in session.scalars(
            select(AuditRow).where(AuditRow.resource == f"order:{order.id}")
            .order_by(AuditRow.id))]
        paper = session.scalar(select(func.count()).select_from(PaperOrderRow))
    assert [action for action, _ in actions] == ["orders.place", "orders.status"]
    assert '"to":"REJECTED"' in actions[1][1].replace(" ", "")
    assert paper == 0
    assert audit.verify(services.db).ok  # two entries under one head lock still chain


def test_a_broker_without_the_optional_read_and_shared_transaction_places_the_same_way(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    from brokers.base import Capability

    broker = services.orders.broker_for(priya_account)
    broker.capabilities = broker.capabilities - {Capability.PRE_TRADE,  # type: ignore[misc]
                                                 Capability.DESK_DATABASE}
    estimate = services.orders.estimate(priya, _buy(priya_account))
    assert estimate.available_funds == broker.funds().available
    order = services.orders.place(priya, _buy(priya_account))
    assert order.status is OrderStatus.OPEN and order.broker_order_id is not None
    with services.db.transaction() as session:
        actions = list(session.scalars(select(AuditRow.action).where(
            AuditRow.resource == f"order:{order.id}").order_by(AuditRow.id)))
    assert actions == ["orders.place", "orders.status"]  # PENDING committed, then OPEN
    tick(services.db, "INFY", "1499.00")
    services.orders.step()
    assert services.orders.order_book(priya, priya_account)[0].status is OrderStatus.FILLED


def test_the_step_asks_desk_brokers_for_every_open_order_only_every_few_seconds(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    from core.services.orders import DESK_SYNC_SECONDS

    order = services.orders.place(priya, _buy(priya_account, price=Decimal("1400.00")))
    services.orders.step()  # the first step asks every broker
    assert order.broker_order_id is not None
    services.orders.broker_for(priya_account).cancel_order(order.broker_order_id)  # behind
    services.orders.step()  # the book's back: the venue step and the manager did not see it
    assert _status(services, priya, order.id) is OrderStatus.OPEN
    services.orders._desk_synced_at -= DESK_SYNC_SECONDS  # the safety net is due
    services.orders.step()
    assert _status(services, priya, order.id) is OrderStatus.CANCELLED


def _status(services: Services, actor: Actor, order_id: int) -> OrderStatus:
    return next(o.status for o in services.orders.order_book(actor) if o.id == order_id)


def test_an_account_with_open_orders_gtts_or_shares_cannot_be_closed(
    services: Services, priya: Actor, priya_account: int, login,
) -> None:
    rahul = login("rahul")  # an admin manages every account

    def close() -> None:
        services.household.update_account(rahul, priya_account, "Priya · Trading", "Trading",
                                          False)

    resting = services.orders.place(priya, _buy(priya_account, price=Decimal("1450.00")))
    gtt = services.orders.create_gtt(priya, priya_account, "INFY", Product.CNC,
                                     [GttLeg(Decimal("1400.00"), Side.BUY, 1, Decimal("1401.00"))])
    with pytest.raises(ValidationError, match=r"still has 1 open order\(s\), 1 active GTT\(s\) "
                                              r"and 0 open position\(s\)"):
        close()
    services.orders.cancel(priya, resting.id)
    services.orders.cancel_gtt(priya, gtt.id)
    services.orders.place(priya, _buy(priya_account, quantity=5))
    tick(services.db, "INFY", "1499.00")
    services.orders.step()  # 5 INFY bought (CNC)
    with pytest.raises(ValidationError, match=r"0 open order\(s\), 0 active GTT\(s\) and 1 "
                                              r"open position\(s\) or holding\(s\) \(INFY CNC\)"):
        close()
    assert services.household.authorize_trade(priya, priya_account)  # still open
    services.orders.place(priya, OrderRequest(priya_account, "INFY", Side.SELL, 5,
                                              OrderType.MARKET, Product.CNC))
    tick(services.db, "INFY", "1500.00")
    services.orders.step()
    close()  # flat: it closes
    assert not next(a for a in services.household.list_accounts(rahul, include_closed=True)
                    if a.id == priya_account).is_active


def test_a_second_delivery_sell_of_a_scrip_today_is_estimated_without_the_dp_charge(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    def sell(quantity: int) -> OrderRequest:
        return _buy(priya_account, side=Side.SELL, quantity=quantity,
                    order_type=OrderType.MARKET, price=None)

    services.orders.place(priya, _buy(priya_account, order_type=OrderType.MARKET, price=None))
    tick(services.db, "INFY", "1500.00")
    services.orders.step()  # 10 INFY bought for delivery today
    first = services.orders.estimate(priya, sell(4))
    assert first.charges.dp_charge == Decimal("13.5")  # the day's first delivery sell pays DP
    services.orders.place(priya, sell(4))
    tick(services.db, "INFY", "1501.00")
    services.orders.step()
    second = services.orders.estimate(priya, sell(3))
    assert second.charges.dp_charge == 0  # once per scrip per day: already paid
    order = services.orders.place(priya, sell(3))
    tick(services.db, "INFY", "1502.00")
    services.orders.step()
    with services.db.transaction() as session:
        [trade] = session.scalars(select(TradeRow).where(TradeRow.order_id == order.id))
        assert (trade.quantity, trade.dp_charge) == (3, 0)  # the fill agrees with the Review


def test_a_modify_is_audited_with_what_the_order_was_and_what_it_is_now(
    services: Services, priya: Actor, priya_account: int,
) -> None:
    order = services.orders.place(priya, _buy(priya_account, price=Decimal("1400.00")))
    services.orders.modify(priya, order.id, quantity=12, price=Decimal("1405.00"))
    with services.db.transaction() as session:
        [details] = session.scalars(select(AuditRow.details).where(
            AuditRow.action == "orders.modify", AuditRow.resource == f"order:{order.id}"))
    recorded = json.loads(details)
    assert (recorded["quantity"], Decimal(recorded["price"])) == (12, Decimal("1405"))
    before = recorded["before"]
    assert (before["quantity"], Decimal(before["price"]), before["trigger_price"]) == (
        10, Decimal("1400"), None)
