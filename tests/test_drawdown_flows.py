"""Deposits and withdrawals are no trading gain or loss: the drawdown's peak moves with them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import select

from core.clock import IST
from core.domain import Actor
from core.services import Services
from core.trading import OrderRequest, OrderType, Product, Side
from db.models import OrderRow, RiskStateRow
from engines.risk_types import StateKind
from tests.support.market import open_market, tick

THURSDAY = datetime(2026, 11, 19, 10, tzinfo=IST)  # an NSE trading morning


@pytest.fixture(autouse=True)
def _morning(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A trading morning; the gate and the watch see a deposit or withdrawal at once."""
    monkeypatch.setattr("core.services.risk_gate.LIMITS_CACHE_SECONDS", 0.0)
    monkeypatch.setattr("core.services.risk_watch.BOOK_REFRESH_SECONDS", 0.0)
    with time_machine.travel(THURSDAY, tick=True):
        yield


@pytest.fixture
def priya(services: Services, login) -> Actor:
    open_market(services.db, {"SBIN": "800.00", "TCS": "3000.00"})
    return login("priya")


@pytest.fixture
def account(services: Services, priya: Actor) -> int:
    return next(a.id for a in services.household.list_accounts(priya)
                if a.label == "Priya · Trading")


def _holding_with_a_resting_order(services: Services, priya: Actor, account: int) -> None:
    """SBIN 100 CNC bought at 800 and a LIMIT BUY of TCS far below the market."""
    services.orders.place(priya, OrderRequest(account, "SBIN", Side.BUY, 100, OrderType.MARKET,
                                              Product.CNC))
    tick(services.db, "SBIN", "800.00")
    services.orders.step()
    services.orders.place(priya, OrderRequest(account, "TCS", Side.BUY, 5, OrderType.LIMIT,
                                              Product.CNC, price=Decimal("2800.00")))


def _stopped(services: Services) -> tuple[list[StateKind], list[str]]:
    """Return the live risk states' kinds and the risk watch's exit orders' symbols."""
    with services.db.transaction() as session:
        kinds = list(session.scalars(select(RiskStateRow.kind)))
        exits = list(session.scalars(select(OrderRow.symbol).where(
            OrderRow.source.in_(["risk", "panic"]))))
    return kinds, exits


def test_a_withdrawal_is_no_drawdown_for_the_watch_or_the_gate(
    services: Services, priya: Actor, account: int,
) -> None:
    _holding_with_a_resting_order(services, priya, account)
    services.risk_watch.run()  # the peak: about ₹10,00,000
    services.portfolio.withdraw_funds(priya, account, Decimal("200000"), "school fees")
    report = services.risk_watch.run()
    services.risk_watch.run()
    assert report.engaged == [] and _stopped(services) == ([], [])
    usage = services.risk_gate.usage(priya, account)
    assert usage.capital < Decimal(810_000) and usage.drawdown_pct < Decimal("0.1")
    decision = services.risk_gate.preview(priya, OrderRequest(
        account, "SBIN", Side.BUY, 10, OrderType.MARKET, Product.CNC, stop_loss=Decimal("780")))
    assert decision.approved and decision.quantity == 10, decision.reasons
    drawdown = next(c for c in decision.checks if c.rule == "drawdown")
    assert "reduce zone" not in drawdown.detail and "kill level" not in drawdown.detail


def test_a_deposit_then_a_withdrawal_is_no_drawdown(
    services: Services, priya: Actor, account: int,
) -> None:
    _holding_with_a_resting_order(services, priya, account)
    services.risk_watch.run()
    services.portfolio.add_funds(priya, account, Decimal("300000"), "bonus")
    services.risk_watch.run()  # the deposit is no new peak of trading
    services.portfolio.withdraw_funds(priya, account, Decimal("450000"), "house")
    assert services.risk_watch.run().engaged == [] and _stopped(services) == ([], [])
    assert services.risk_gate.usage(priya, account).drawdown_pct < Decimal("0.1")


def test_a_real_loss_after_a_withdrawal_trips_the_kill_switch_at_its_level(
    services: Services, priya: Actor, account: int, login,
) -> None:
    rahul = login("rahul")
    services.risk.set_limits(rahul, account, {"drawdown_reduce_pct": "0.1",
                                              "drawdown_kill_pct": "0.5"})
    _holding_with_a_resting_order(services, priya, account)
    services.risk_watch.run()
    services.portfolio.withdraw_funds(priya, account, Decimal("200000"), "")
    tick(services.db, "SBIN", "775.00")  # −₹2,500: 0.31 % of the ₹8 lakh left, under 0.5 %
    assert services.risk_watch.run().engaged == []
    tick(services.db, "SBIN", "760.00")  # −₹4,000 and charges: 0.5 % of ₹8 lakh
    report = services.risk_watch.run()
    assert report.engaged == [f"account:{account}:kill_switch"]
    kill = next(s for s in services.risk.states(rahul) if s.kind is StateKind.KILL_SWITCH)
    assert "from peak equity ₹7,99,8" in kill.reason  # ₹10 lakh less the charges and ₹2 lakh
    assert "reached the kill level 0.5%" in kill.reason
