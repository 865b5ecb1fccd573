"""The desk's risk gate on a real database: sizing, preview, duplicates, rate, fresh states."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import date
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from core.domain import Actor
from core.errors import RiskRejected
from core.services import Services
from core.trading import OrderRequest, OrderStatus, OrderType, Product, Side
from db.engine import Database
from db.models import AuditRow, OrderRow
from engines.risk_types import RiskLevel, Scope, StateKind
from tests.conftest import TEST_CLIENT, fresh_sqlite_desk, make_settings
from tests.support.market import open_market, tick

ROOT = Path(__file__).resolve().parent.parent
DAILY = ROOT / "data" / "sample" / "nse_daily"


def _import_daily(services: Services, tmp_path: Path, symbol: str, last: int = 300) -> None:
    frame = pd.read_csv(DAILY / f"{symbol}.csv").tail(last)
    path = tmp_path / f"{symbol}.csv"
    frame.to_csv(path, index=False)
    services.marketdata.import_file(path, symbol=symbol, interval="1d")


@pytest.fixture
def priya(services: Services, login) -> Actor:
    open_market(services.db, {"INFY": "1500.00", "TCS": "3000.00", "SBIN": "800.00"})
    return login("priya")


@pytest.fixture
def account(services: Services, priya: Actor) -> int:
    return next(a.id for a in services.household.list_accounts(priya)
                if a.label == "Priya · Trading")


def _orders(services: Services) -> int:
    with services.db.transaction() as session:
        return session.scalar(select(func.count()).select_from(OrderRow)) or 0


def _mis(account: int, symbol: str = "INFY", quantity: int = 10, **changes: Any) -> OrderRequest:
    return OrderRequest(account, symbol, changes.pop("side", Side.BUY), quantity,
                        OrderType.MARKET, Product.MIS, **changes)


def test_the_gate_sizes_an_order_from_the_atr_and_the_order_is_placed_at_that_size(
    services: Services, priya: Actor, account: int, tmp_path: Path,
) -> None:
    _import_daily(services, tmp_path, "INFY")
    gate = services.risk_gate
    atr = gate.market.figures("INFY").atr
    assert atr is not None and atr > 0
    capital = gate.snapshot(account).capital
    price = services.orders.estimate(priya, _mis(account, quantity=300)).price
    by_risk = (capital / 100 / (2 * atr)).to_integral_value(rounding=ROUND_FLOOR)
    by_sector = (capital * Decimal("0.30") / price).to_integral_value(rounding=ROUND_FLOOR)
    expected = int(min(by_risk, by_sector))
    assert 0 < expected < 300
    order = services.orders.place(priya, _mis(account, quantity=300))
    assert order.quantity == expected
    with services.db.transaction() as session:
        placed = session.scalar(select(AuditRow.details).where(
            AuditRow.action == "orders.place", AuditRow.resource == f"order:{order.id}"))
    assert placed is not None and f'"quantity":{expected}' in placed
    assert '"requested_quantity":300' in placed and "risk per trade" in placed


def test_a_preview_says_what_the_gate_would_do_and_writes_nothing(
    services: Services, priya: Actor, account: int,
) -> None:
    before = _orders(services)
    decision = services.risk_gate.preview(priya, _mis(account, quantity=10))
    assert decision.approved and decision.quantity == 10
    assert decision.summary().startswith("would be approved at 10 shares")
    assert {c.rule for c in decision.checks} >= {"state", "rate", "position_size", "sector"}
    # without daily bars there is no regime: the decision says so instead of guessing
    assert any("regime" in w for w in decision.warnings)
    assert decision.level in (RiskLevel.MEDIUM, RiskLevel.HIGH)
    big = services.risk_gate.preview(priya, _mis(account, quantity=300),
                                     stop_price=Decimal("1450.00"))
    price = services.orders.estimate(priya, _mis(account, quantity=300)).price
    expected = int((Decimal(10_000) / (price - Decimal("1450.00"))).to_integral_value(
        rounding=ROUND_FLOOR))  # ₹10,000 (1% of ₹10 lakh) at risk over the stop distance
    assert big.approved and big.quantity == expected < 300
    assert f"would be approved at {expected} shares" in big.summary()
    assert _orders(services) == before


def test_a_duplicate_order_within_the_window_is_refused_and_passes_after_it(
    services: Services, priya: Actor, account: int, login,
) -> None:
    # 3 s: the second order is refused even when a loaded machine takes seconds to place it
    services.risk.set_limits(login("rahul"), account, {"duplicate_window_s": "3"})
    services.risk_gate.forget_limits()
    services.orders.place(priya, _mis(account))
    with pytest.raises(RiskRejected, match="duplicate"):
        services.orders.place(priya, _mis(account))
    time.sleep(3.1)
    assert services.orders.place(priya, _mis(account)).status is not OrderStatus.REJECTED


def test_asking_again_for_an_order_the_gate_cut_is_refused_as_a_duplicate(
    services: Services, priya: Actor, account: int, demo_url: str,
) -> None:
    first = services.orders.place(priya, _mis(account, quantity=300))
    assert 0 < first.quantity < 300  # ₹4.5 lakh of INFY: cut to the 30% sector limit
    with pytest.raises(RiskRejected, match=r"the same order \(BUY 300 shares of INFY\)"):
        services.orders.place(priya, _mis(account, quantity=300))
    # Another process (the app beside the worker, a second tab's server) reads the order back
    # from the database, where it stands at the size placed; the size asked counts there too.
    other = Services(Database(demo_url), make_settings(demo_url))
    try:
        with pytest.raises(RiskRejected, match="duplicate"):
            other.orders.place(priya, _mis(account, quantity=300))
    finally:
        other.db.dispose()
    assert _orders(services) == 1


def test_a_refusal_by_the_gate_is_audited_with_who_what_and_why_and_nothing_else_is_written(
    services: Services, priya: Actor, account: int, login,
) -> None:
    services.risk.set_limits(login("rahul"), account, {"max_order_value": "50000"})
    services.risk_gate.forget_limits()
    with pytest.raises(RiskRejected, match="above the limit") as refused:
        services.orders.place(priya, _mis(account, quantity=50))  # ₹75,000 of INFY
    placed = services.orders.place(priya, _mis(account, quantity=20))
    with pytest.raises(RiskRejected, match="above the limit") as modify_refused:
        services.orders.modify(priya, placed.id, quantity=40)
    with services.db.transaction() as session:
        denied = list(session.scalars(select(AuditRow).where(AuditRow.outcome == "denied")
                                      .order_by(AuditRow.id)))
        orders = session.scalar(select(func.count()).select_from(OrderRow))
    assert [(a.action, a.resource, a.actor_username, a.household_id) for a in denied] == [
        ("orders.place", f"account:{account}", "priya", priya.household_id),
        ("orders.modify", f"order:{placed.id}", "priya", priya.household_id)]
    place, modify = (json.loads(a.details) for a in denied)
    assert (place["refused"], place["symbol"], place["side"], place["quantity"],
            place["source"]) == (str(refused.value), "INFY", "BUY", 50, "web")
    assert (modify["refused"], modify["quantity"]) == (str(modify_refused.value), 40)
    assert orders == 1  # the refused order left no row


def test_a_state_engaged_by_another_process_stops_this_processs_next_order(
    services: Services, priya: Actor, account: int, demo_url: str,
) -> None:
    services.orders.place(priya, _mis(account, quantity=3))
    other = Services(Database(demo_url), make_settings(demo_url))
    try:
        other.risk.engage(StateKind.DISABLED, Scope.ACCOUNT, str(account), "other process",
                          (account,))
    finally:
        other.db.dispose()
    with pytest.raises(RiskRejected, match="other process"):
        services.orders.place(priya, _mis(account, quantity=4))


def test_a_refusal_gives_only_its_rule_and_says_when_a_loss_limit_lifts(
    services: Services, priya: Actor, account: int,
) -> None:
    services.risk.engage(StateKind.DAILY_LOSS, Scope.ACCOUNT, str(account), "loss today ₹2",
                         (account,), until=date(2099, 1, 1))
    with pytest.raises(RiskRejected) as refused:
        services.orders.place(priya, _mis(account, quantity=4))
    assert str(refused.value) == (
        "Risk gate refused BUY 4 INFY: trading is stopped: daily loss for this account (loss "
        "today ₹2); no order of any kind passes until its day or week ends or someone allowed "
        "re-enables it")  # no sizing notes or warnings of an order that is not placed


def test_a_strategy_state_stops_only_that_strategys_orders(
    services: Services, priya: Actor, account: int,
) -> None:
    services.risk.engage(StateKind.DISABLED, Scope.STRATEGY, "momo", "momo paused",
                         (account,))
    with pytest.raises(RiskRejected, match="momo"):
        services.orders.place(priya, _mis(account, strategy="momo"))
    assert services.orders.place(priya, _mis(account, strategy="meanrev")).quantity == 10
    assert services.orders.place(priya, _mis(account, quantity=7)).quantity == 7


def test_an_exit_is_not_resized_even_when_a_new_entry_would_be(
    services: Services, priya: Actor, account: int, login,
) -> None:
    services.orders.place(priya, _mis(account, "SBIN", 40))
    tick(services.db, "SBIN", "800.00")
    services.orders.step()
    services.risk.set_limits(login("rahul"), account, {"risk_per_trade_pct": "0.01"})
    services.risk_gate.forget_limits()
    entry = services.risk_gate.preview(priya, _mis(account, "TCS", 40))
    assert entry.approved and entry.quantity == 1  # ₹100 at risk allows one TCS share
    sell = services.orders.place(priya, _mis(account, "SBIN", 40, side=Side.SELL))
    assert sell.quantity == 40 and sell.status is not OrderStatus.REJECTED


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(burst=st.integers(1, 24), limit=st.integers(1, 10))
def test_the_orders_per_second_limit_is_never_exceeded_under_a_burst(
    sqlite_templates: Any, tmp_path_factory: pytest.TempPathFactory, burst: int, limit: int,
) -> None:
    services, logins = fresh_sqlite_desk(sqlite_templates, tmp_path_factory.mktemp("burst"))
    try:
        open_market(services.db, {"SBIN": "800.00"})
        result = services.auth.login("priya", logins["priya"].password, TEST_CLIENT)
        assert result.session_id is not None
        priya = services.auth.check_session(result.session_id, TEST_CLIENT)
        rahul_login = services.auth.login("rahul", logins["rahul"].password, TEST_CLIENT)
        assert rahul_login.session_id is not None
        rahul = services.auth.check_session(rahul_login.session_id, TEST_CLIENT)
        account = next(a.id for a in services.household.list_accounts(priya)
                       if a.label == "Priya · Trading")
        services.risk.set_limits(rahul, account, {"max_orders_per_second": str(limit)})
        services.risk_gate.forget_limits()
        # The gate approves an order at some instant between the call and its return; two
        # approvals are certainly less than 1 s apart when the later call returned within 1 s
        # of the earlier call's start (a slow machine can stretch a call, never shrink it).
        accepted: list[tuple[float, float]] = []
        for quantity in range(1, burst + 1):  # distinct sizes: no duplicate refusals
            called = time.monotonic()
            try:
                services.orders.place(priya, _mis(account, "SBIN", quantity))
                accepted.append((called, time.monotonic()))
            except RiskRejected as refused:
                assert "orders per second" in str(refused) or "SEBI" in str(refused)
        for i, (_called, returned) in enumerate(accepted):
            in_window = [start for start, _end in accepted[: i + 1] if returned - start < 1.0]
            assert len(in_window) <= limit
        assert len(accepted) >= min(burst, limit)
    finally:
        services.db.dispose()


def test_a_resting_order_counts_toward_the_sector_limit_of_the_next(
    services: Services, priya: Actor, account: int, login,
) -> None:
    services.risk.set_limits(login("rahul"), account, {"risk_per_trade_pct": "10"})
    resting = services.orders.place(priya, OrderRequest(
        account, "INFY", Side.BUY, 150, OrderType.LIMIT, Product.MIS, price=Decimal("1400.00")))
    services.orders.step()
    assert services.orders.order_book(priya)[0].status is OrderStatus.OPEN  # below the market
    # Information Technology: ₹2,10,000 would be held once INFY fills; 30% of ₹10 lakh is
    # ₹3,00,000, so about 30 TCS at ₹3,000 fit and 100 do not.
    price = services.orders.estimate(priya, _mis(account, "TCS", 100)).price
    room = int((Decimal(90_000) / price).to_integral_value(rounding=ROUND_FLOOR))
    decision = services.risk_gate.preview(priya, _mis(account, "TCS", 100))
    assert decision.approved and decision.quantity == room == 29, decision.summary()
    assert any("Information Technology holds ₹2,10,000.00" in r for r in decision.reasons)
    modify = services.risk_gate.preview(priya, replace(
        _mis(account, "INFY", 150, client_order_id=resting.client_order_id)))
    assert modify.quantity == 150  # the order being changed is not counted twice
    services.orders.cancel(priya, resting.id)
    alone = int((Decimal(300_000) / price).to_integral_value(rounding=ROUND_FLOOR))
    assert services.risk_gate.preview(priya, _mis(account, "TCS", 100)).quantity == alone == 99


def test_a_resting_order_in_a_new_symbol_counts_as_an_open_position(
    services: Services, priya: Actor, account: int, login,
) -> None:
    services.risk.set_limits(login("rahul"), account, {"max_open_positions": "1"})
    services.orders.place(priya, OrderRequest(
        account, "INFY", Side.BUY, 5, OrderType.LIMIT, Product.MIS, price=Decimal("1400.00")))
    decision = services.risk_gate.preview(priya, _mis(account, "SBIN", 5))
    assert not decision.approved
    assert any("at most 1 open positions; 1 are open and SBIN would be number 2" in r.message
               for r in decision.rejections)


def test_two_orders_placed_at_the_same_moment_share_one_sector_limit(
    services: Services, priya: Actor, account: int, login,
) -> None:
    services.risk.set_limits(login("rahul"), account, {"risk_per_trade_pct": "10"})
    start = threading.Barrier(2)
    placed: list[Any] = []

    def place(symbol: str, quantity: int) -> None:
        start.wait()
        placed.append(services.orders.place(priya, _mis(account, symbol, quantity)))

    threads = [threading.Thread(target=place, args=("INFY", 180)),
               threading.Thread(target=place, args=("TCS", 90))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each alone fits the ₹3,00,000 Information Technology cap (₹2,70,000); together they do
    # not, so the second one decided is cut to what the first left.
    value = sum(o.quantity * services.orders.estimate(priya, _mis(account, o.symbol, 1)).price
                for o in placed)
    assert len(placed) == 2 and value <= Decimal(300_000), [(o.symbol, o.quantity)
                                                            for o in placed]
