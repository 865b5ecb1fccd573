"""Risk service on SQLite and PostgreSQL: limits and rights, panic, states that survive restarts.

The paper desk runs for real (order manager, paper broker, its exchange step); the market is
driven by writing what the feed would (tests/support/market.py). Exits of the procedures go
through ``orders.manager.submit(source="panic")``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from core.clock import IST
from core.config import PROJECT_ROOT
from core.domain import Actor
from core.errors import PermissionDenied, RiskRejected, ValidationError
from core.seed import DemoLogin
from core.services import Services
from core.services import risk as risk_service
from core.services.risk import PanicStep, RiskService
from core.trading import OrderRequest, OrderStatus, OrderType, Product, Side
from db.engine import Database
from db.models import AlertOutboxRow, AuditRow, OrderRow, RiskLimitsRow, RiskStateRow
from engines.risk_types import LIMIT_FIELDS, RiskLimits, Scope, StateKind, StatePhase
from tests.conftest import TEST_CLIENT, make_settings
from tests.support.market import open_market, tick

pytestmark = pytest.mark.usefixtures("backend")
PRICES = {"INFY": "1500.00", "TCS": "3000.00", "SBIN": "800.00"}


def _risk(services: Services, clock: Callable[[], datetime] | None = None) -> RiskService:
    if clock is None:
        return RiskService(services.db, services.settings, services.household, services.orders)
    return RiskService(services.db, services.settings, services.household, services.orders,
                       clock=clock)


@pytest.fixture
def risk(services: Services) -> RiskService:
    open_market(services.db, PRICES)
    return _risk(services)


@pytest.fixture
def labels(services: Services, login) -> dict[str, int]:
    """Account label -> id (as the admin sees them)."""
    return {a.label: a.id for a in services.household.list_accounts(login("rahul"))}


def _order(account: int, symbol: str, side: Side, quantity: int, price: str | None = None,
           product: Product = Product.MIS, strategy: str | None = None) -> OrderRequest:
    return OrderRequest(account, symbol, side, quantity,
                        OrderType.LIMIT if price else OrderType.MARKET, product,
                        price=Decimal(price) if price else None, strategy=strategy)


def _fill(services: Services, **prices: str) -> None:
    for symbol, price in prices.items():
        tick(services.db, symbol, price)
    services.orders.step()


def _orders(services: Services, account: int) -> list[OrderRow]:
    with services.db.transaction() as session:
        return list(session.scalars(select(OrderRow).where(OrderRow.account_id == account)
                                    .order_by(OrderRow.id)))


def _positions(services: Services, account: int) -> dict[str, int]:
    return {p.symbol: p.quantity for p in services.orders.broker_for(account).positions()
            if p.quantity}


RISK_ALERTS = AlertOutboxRow.kind.like("risk.%")  # the exits' order alerts are order.*


def _count(services: Services, model: type, *where: object) -> int:
    with services.db.transaction() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def _audit_actions(services: Services, state_id: int) -> list[str]:
    with services.db.transaction() as session:
        return list(session.scalars(select(AuditRow.action).where(
            AuditRow.resource == f"risk_state:{state_id}").order_by(AuditRow.id)))


@pytest.fixture
def two_desks(services: Services, risk: RiskService, login, labels: dict[str, int]):
    """Rahul's intraday and Priya's trading account, each with a position and a resting order."""
    rahul, priya = login("rahul"), login("priya")
    mine, hers = labels["Rahul · Intraday"], labels["Priya · Trading"]
    services.orders.place(rahul, _order(mine, "INFY", Side.BUY, 10))
    services.orders.place(rahul, _order(mine, "TCS", Side.BUY, 5, "2900.00"))
    services.orders.place(priya, _order(hers, "SBIN", Side.BUY, 20))
    services.orders.place(priya, _order(hers, "INFY", Side.BUY, 10, "1400.00"))
    _fill(services, INFY="1501.00", SBIN="801.00")
    assert _positions(services, mine) == {"INFY": 10}
    assert _positions(services, hers) == {"SBIN": 20}
    return rahul, priya, mine, hers


# ----------------------------------------------------------------------------------------------
# Limits
# ----------------------------------------------------------------------------------------------


def test_an_account_without_limits_of_its_own_shows_the_documented_defaults_explained(
    risk: RiskService, login, labels: dict[str, int],
) -> None:
    view = risk.limits(login("priya"), labels["Priya · Trading"])
    assert (view.limits, view.source, view.household_defaults) == (RiskLimits(), "default",
                                                                   RiskLimits())
    assert set(view.explanations) == set(LIMIT_FIELDS)
    assert "[1%]" in view.explanations["risk_per_trade_pct"]


def test_an_admin_sets_household_defaults_from_form_strings_and_accounts_inherit_them(
    services: Services, risk: RiskService, login, labels: dict[str, int],
) -> None:
    rahul = login("rahul")
    saved = risk.set_limits(rahul, None, {
        "daily_loss_pct": "1.5", "max_open_positions": " 8 ", "correlation_reduce": "yes",
        "mis_square_off_at": "15:00", "max_order_value": "2,50,000",
        "portfolio_mtm_stop_loss": ""})
    assert (saved.daily_loss_pct, saved.max_open_positions, saved.correlation_reduce,
            saved.mis_square_off_at.strftime("%H:%M"), saved.max_order_value) == (
        Decimal("1.5"), 8, True, "15:00", Decimal("250000"))
    view = risk.limits(login("priya"), labels["Priya · Trading"])
    assert (view.limits, view.source) == (saved, "household")
    with services.db.transaction() as session:
        details = session.scalar(select(AuditRow.details).where(
            AuditRow.action == "risk.limits.set"))
    assert details is not None and '"daily_loss_pct":["2","1.5"]' in details


@pytest.mark.parametrize(("field", "typed", "value"), [
    ("max_order_value", "5,00,000", Decimal("500000")),
    ("max_order_value", "500,000", Decimal("500000")),
    ("max_order_value", "₹4,00,000.50", Decimal("400000.50")),
    ("portfolio_mtm_stop_loss", "1,00,00,000", Decimal("10000000")),
    ("max_order_quantity", "5,000", 5000),
    ("risk_per_trade_pct", "0.5", Decimal("0.5")),
])
def test_digit_grouping_of_whole_rupees_or_shares_is_read_as_the_number_it_groups(
    risk: RiskService, login, field: str, typed: str, value: object,
) -> None:
    assert getattr(risk.set_limits(login("rahul"), None, {field: typed}), field) == value


RISK_PCT, SQUARE_OFF = "'Risk per trade [% of capital]'", "'MIS square-off at [HH:MM IST]'"
BAD_VALUES = [
    pytest.param("risk_per_trade_pct", "abc", f"{RISK_PCT} must be a number (e.g. 1 or 0.5); "
                 "got 'abc'", id="not-a-number"),
    pytest.param("risk_per_trade_pct", "NaN", f"{RISK_PCT} must be a finite number", id="nan"),
    pytest.param("max_order_value", True, "'Order value at most [₹]' must be a number; got True",
                 id="bool-for-amount"),
    pytest.param("max_open_positions", "2.5", "'Open positions at most' must be a whole number; "
                 "got '2.5'", id="fraction-for-count"),
    pytest.param("correlation_reduce", "maybe", "'Halve the size of a correlated new position' "
                 "must be yes or no", id="not-yes-or-no"),
    pytest.param("mis_square_off_at", "25:00", f"{SQUARE_OFF} must be a time HH:MM (IST); "
                 "got '25:00'", id="bad-time"),
    pytest.param("mis_square_off_at", "16:00", f"{SQUARE_OFF} must be within market hours "
                 "09:15-15:29 IST; got 16:00", id="after-close"),
    pytest.param("mis_square_off_at", "15:25", f"{SQUARE_OFF} must be at most 15:19 IST, before "
                 "the brokers' own MIS auto square-off at 15:20 (Zerodha, Dhan: ₹50 + GST an "
                 "order, and no fresh MIS after it); got 15:25", id="after-the-brokers"),
    pytest.param("risk_per_trade_pct", "11", f"{RISK_PCT} must be between 0.01 and 10; got 11",
                 id="above-range"),
    pytest.param("weekly_loss_pct", "0.5", "'Weekly loss limit [% of capital]' (0.5) must be at "
                 "least 'Daily loss limit [% of capital]' (1)", id="week-below-day"),
    pytest.param("drawdown_kill_pct", "10", "'Kill switch at a drawdown of [%]' (10) must be "
                 "above 'Sizes shrink from a drawdown of [%]' (10)", id="kill-at-reduce"),
    pytest.param("max_orders_per_second", "11", "'Orders per second at most' must be between 1 "
                 "and 10 (SEBI's threshold", id="above-sebi"),
    pytest.param("portfolio_mtm_stop_loss", "-5", "'Account MTM stop-loss [₹] (empty: none)' "
                 "must be a positive amount in rupees (or empty); got -5", id="negative-mtm"),
    pytest.param("no_such_limit", "1", "Unknown risk limit no_such_limit", id="unknown"),
    pytest.param("risk_per_trade_pct", "0,5", f"{RISK_PCT} must be a number (e.g. 1 or 0.5); "
                 "got '0,5': this limit takes no digit grouping, and a comma is no decimal "
                 "point", id="decimal-comma-in-a-percentage"),
    pytest.param("daily_loss_pct", "1,000", "'Daily loss limit [% of capital]' must be a number "
                 "(e.g. 1 or 0.5); got '1,000'", id="grouping-in-a-percentage"),
    pytest.param("max_order_value", "1,5", "'Order value at most [₹]' must be a number (e.g. 1 "
                 "or 0.5); got '1,5': a comma may only group the digits of a whole amount "
                 "(5,00,000 or 500,000)", id="decimal-comma-in-rupees"),
    pytest.param("max_order_value", "5,00,000.5,0", "'Order value at most [₹]' must be a number",
                 id="comma-in-the-paise"),
    pytest.param("max_order_quantity", "50,00", "'Order quantity at most [shares]' must be a "
                 "number (e.g. 1 or 0.5); got '50,00'", id="misgrouped-shares"),
    pytest.param("max_order_value", "400000.123", "'Order value at most [₹]' must be in rupees "
                 "with at most 2 decimals (paise); got '400000.123'", id="rupees-below-a-paisa"),
    pytest.param("portfolio_mtm_target", Decimal("1500.005"), "'Account MTM target [₹] (empty: "
                 "none)' must be in rupees with at most 2 decimals (paise)",
                 id="mtm-below-a-paisa"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES)
def test_a_bad_limit_value_is_refused_with_the_field_and_value_and_nothing_is_written(
    services: Services, risk: RiskService, login, labels: dict[str, int], field: str,
    value: object, message: str,
) -> None:
    rahul = login("rahul")
    with pytest.raises(ValidationError) as refused:
        risk.set_limits(rahul, labels["Priya · Trading"], {"daily_loss_pct": "1", field: value})
    assert message in str(refused.value)
    assert _count(services, RiskLimitsRow) == 0
    assert _count(services, AuditRow, AuditRow.action == "risk.limits.set") == 0


def test_every_bad_limit_of_one_save_is_named_at_once_by_its_label_and_nothing_is_written(
    services: Services, risk: RiskService, login, labels: dict[str, int],
) -> None:
    rahul = login("rahul")
    with pytest.raises(ValidationError) as refused:
        risk.set_limits(rahul, labels["Priya · Trading"], {
            "risk_per_trade_pct": "abc", "max_open_positions": "0", "daily_loss_pct": "60",
            "weekly_loss_pct": "5", "mis_square_off_at": "16:00"})
    assert str(refused.value) == (
        "Invalid risk limits (5 problems): 'Risk per trade [% of capital]' must be a number "
        "(e.g. 1 or 0.5); got 'abc'; 'Daily loss limit [% of capital]' must be between 0.1 and "
        "50; got 60; 'Weekly loss limit [% of capital]' (5) must be at least 'Daily loss limit "
        "[% of capital]' (60); 'MIS square-off at [HH:MM IST]' must be within market hours "
        "09:15-15:29 IST; got 16:00; 'Open positions at most' must be between 1 and 500; got 0. "
        "Nothing was saved.")
    assert _count(services, RiskLimitsRow) == 0
    assert _count(services, AuditRow, AuditRow.action == "risk.limits.set") == 0


def test_a_trader_may_tighten_her_account_but_never_loosen_it(
    services: Services, risk: RiskService, login, labels: dict[str, int],
) -> None:
    priya, account = login("priya"), labels["Priya · Trading"]
    tightened = risk.set_limits(priya, account, {"daily_loss_pct": "1", "correlation_reduce":
                                                 "on", "duplicate_window_s": "30"})
    assert (tightened.daily_loss_pct, tightened.correlation_reduce,
            tightened.duplicate_window_s) == (Decimal("1"), True, 30)
    looser = [
        ({"daily_loss_pct": "3"}, "'Daily loss limit [% of capital]' 3 is looser than the "
                                  "account's current 1 (lower is stricter)"),
        ({"daily_loss_pct": "2"}, "'Daily loss limit [% of capital]' 2 is looser than the "
                                  "account's current 1 (lower is stricter)"),  # the default
        ({"duplicate_window_s": "5"}, "'Duplicate-order window [s]' 5 is looser than the "
                                      "account's current 30 (higher is stricter)"),
        ({"mis_square_off_at": "15:18"}, "'MIS square-off at [HH:MM IST]' 15:18 is looser than "
                                         "the household's 15:15"),
    ]
    for values, message in looser:
        with pytest.raises(PermissionDenied) as refused:
            risk.set_limits(priya, account, values)
        assert message in str(refused.value)
    with pytest.raises(PermissionDenied, match=r"Going back to the household defaults would "
                       r"loosen the limits of account Priya · Trading; only an admin may: .*"
                       r"'Daily loss limit \[% of capital\]' 2 is looser than the account's "
                       r"current 1"):
        risk.reset_limits(priya, account)
    assert risk.limits(priya, account).limits == tightened
    assert _count(services, AuditRow, AuditRow.action.in_(["risk.limits.set", "risk.limits.reset"]),
                  AuditRow.outcome == "denied") == 5
    assert risk.reset_limits(login("rahul"), account) == RiskLimits()  # an admin may


def test_a_trader_may_not_undo_an_admins_stricter_limit_on_her_account(
    risk: RiskService, login, labels: dict[str, int],
) -> None:
    rahul, priya, account = login("rahul"), login("priya"), labels["Priya · Trading"]
    risk.set_limits(rahul, account, {"daily_loss_pct": "1"})
    with pytest.raises(PermissionDenied, match=r"2 is looser than the account's current 1"):
        risk.set_limits(priya, account, {"daily_loss_pct": "2"})  # the household's default
    with pytest.raises(PermissionDenied, match="only an admin may"):
        risk.reset_limits(priya, account)
    assert risk.limits(priya, account).limits.daily_loss_pct == Decimal("1")


def test_only_an_admin_changes_household_defaults_and_a_viewer_changes_no_limits(
    services: Services, risk: RiskService, login, labels: dict[str, int],
) -> None:
    with pytest.raises(PermissionDenied, match="'trader' may not change the household's"):
        risk.set_limits(login("priya"), None, {"daily_loss_pct": "1"})
    with pytest.raises(PermissionDenied, match="may not trade account"):
        risk.set_limits(login("aarav"), labels["Rahul · Long-term"], {"daily_loss_pct": "1"})
    with pytest.raises(PermissionDenied):
        risk.set_limits(login("priya"), labels["Rahul · Intraday"], {"daily_loss_pct": "1"})
    assert _count(services, RiskLimitsRow) == 0


def test_an_admin_may_loosen_an_account_and_a_reset_returns_it_to_the_household_defaults(
    risk: RiskService, login, labels: dict[str, int],
) -> None:
    rahul, priya, account = login("rahul"), login("priya"), labels["Priya · Trading"]
    risk.set_limits(rahul, None, {"daily_loss_pct": "1.5"})
    assert risk.set_limits(rahul, account, {"daily_loss_pct": "3"}).daily_loss_pct == 3
    assert risk.limits(priya, account).source == "account"
    # a member may change another field while the admin's looser value stays
    assert risk.set_limits(priya, account, {"max_open_positions": "5"}).daily_loss_pct == 3
    assert risk.reset_limits(rahul, account) == RiskLimits(daily_loss_pct=Decimal("1.5"))
    assert risk.limits(priya, account).source == "household"


def test_an_account_follows_the_household_in_every_limit_it_did_not_set_itself(
    services: Services, risk: RiskService, login, labels: dict[str, int],
) -> None:
    rahul, priya, account = login("rahul"), login("priya"), labels["Priya · Trading"]
    risk.set_limits(priya, account, {"max_open_positions": "5"})  # tightens one limit
    risk.set_limits(rahul, None, {"daily_loss_pct": "1.5", "max_order_value": "2,00,000"})
    view = risk.limits(priya, account)
    assert (view.source, view.own) == ("account", frozenset({"max_open_positions"}))
    assert view.limits == RiskLimits(max_open_positions=5, daily_loss_pct=Decimal("1.5"),
                                     max_order_value=Decimal("200000"))
    with services.db.transaction() as session:  # what the gate and the risk watch read
        household = session.scalar(select(RiskLimitsRow.household_id))
        assert risk_service.risk_store.effective_limits(session, household, account)[0] == (
            view.limits)
        assert risk_service.risk_store.account_limits(session, household, [account]) == {
            account: view.limits}
    # a member's next save keeps her own limit and still follows in the rest
    risk.set_limits(priya, account, {"risk_per_trade_pct": "0.5"})
    risk.set_limits(rahul, None, {"daily_loss_pct": "1"})
    view = risk.limits(priya, account)
    assert view.own == frozenset({"max_open_positions", "risk_per_trade_pct"})
    assert (view.limits.daily_loss_pct, view.limits.max_open_positions,
            view.limits.risk_per_trade_pct) == (Decimal("1"), 5, Decimal("0.5"))
    # the reset still goes back to the household's (an admin's call: it loosens two limits)
    with pytest.raises(PermissionDenied, match="would loosen"):
        risk.reset_limits(priya, account)
    assert risk.reset_limits(rahul, account) == risk.limits(rahul, None).limits
    assert (risk.limits(priya, account).source, risk.limits(priya, account).own) == (
        "household", frozenset())


def test_an_account_set_back_to_the_household_values_follows_them_again(
    services: Services, risk: RiskService, login, labels: dict[str, int],
) -> None:
    rahul, account = login("rahul"), labels["Priya · Trading"]
    risk.set_limits(rahul, account, {"daily_loss_pct": "1"})
    risk.set_limits(rahul, account, {"daily_loss_pct": "2"})  # the household's value
    assert _count(services, RiskLimitsRow) == 0
    risk.set_limits(rahul, None, {"daily_loss_pct": "1.5"})
    assert risk.limits(rahul, account).limits.daily_loss_pct == Decimal("1.5")


def test_household_defaults_that_would_break_an_accounts_own_limits_are_refused(
    services: Services, risk: RiskService, login, labels: dict[str, int],
) -> None:
    rahul, account = login("rahul"), labels["Priya · Trading"]
    risk.set_limits(rahul, account, {"daily_loss_pct": "4"})
    with pytest.raises(ValidationError, match=(
            r"with the own limits of the account Priya · Trading "
            r"\('Daily loss limit \[% of capital\]' 4\): "
            r"'Weekly loss limit \[% of capital\]' \(3\) must be at least 'Daily loss limit "
            r"\[% of capital\]' \(4\); change or reset that account's limits first")):
        risk.set_limits(rahul, None, {"weekly_loss_pct": "3", "daily_loss_pct": "1"})
    assert risk.limits(rahul, None).limits == RiskLimits()
    assert risk.limits(rahul, account).limits.weekly_loss_pct == Decimal("5")


# ----------------------------------------------------------------------------------------------
# Panic
# ----------------------------------------------------------------------------------------------


def test_an_account_panic_cancels_and_closes_that_account_only_with_audit_and_alerts(
    services: Services, risk: RiskService, two_desks,
) -> None:
    _rahul, priya, mine, hers = two_desks
    report = risk.panic(priya, Scope.ACCOUNT, account_id=hers)
    assert (report.kind, report.scope, report.key, report.phase, report.created) == (
        StateKind.PANIC, Scope.ACCOUNT, str(hers), StatePhase.ACTIVE, True)
    assert [(s.step, s.account_id, s.ok) for s in report.steps] == [
        ("cancel", hers, True), ("close", hers, True), ("disable", hers, True)]
    assert report.ok and report.summary().startswith("Panic account")
    resting, exit_order = _orders(services, hers)[1], _orders(services, hers)[-1]
    assert resting.status is OrderStatus.CANCELLED
    assert (exit_order.source, exit_order.order_type, exit_order.side, exit_order.quantity,
            exit_order.symbol) == ("panic", OrderType.MARKET, Side.SELL, 20, "SBIN")
    assert exit_order.client_order_id.startswith(f"rk{report.state_id}-{hers}-")
    _fill(services, SBIN="802.00")
    assert _positions(services, hers) == {}
    assert _positions(services, mine) == {"INFY": 10}  # untouched
    assert [o.status for o in _orders(services, mine)] == [OrderStatus.FILLED, OrderStatus.OPEN]
    assert _audit_actions(services, report.state_id) == [
        "risk.engage", "risk.cancel", "risk.close", "risk.disable", "risk.active"]
    with services.db.transaction() as session:
        outbox = session.execute(select(AlertOutboxRow.kind, AlertOutboxRow.account_id,
                                        AlertOutboxRow.severity)
                                 .where(AlertOutboxRow.kind.like("risk.%"))).all()
    assert outbox == [("risk.panic", hers, "critical")] * 2


def test_a_household_panic_closes_every_account_and_reports_each_step(
    services: Services, risk: RiskService, two_desks,
) -> None:
    rahul, _priya, mine, hers = two_desks
    report = risk.panic(rahul, Scope.HOUSEHOLD)
    acted = {(s.step, s.account_id) for s in report.steps if s.step != "disable"}
    assert acted == {("cancel", mine), ("close", mine), ("cancel", hers), ("close", hers)}
    assert report.ok
    _fill(services, INFY="1502.00", SBIN="802.00")
    assert _positions(services, mine) == _positions(services, hers) == {}
    assert all(o.status in (OrderStatus.FILLED, OrderStatus.CANCELLED)
               for o in _orders(services, mine) + _orders(services, hers))


def test_a_household_panic_tells_each_member_only_the_steps_of_the_accounts_they_may_view(
    services: Services, risk: RiskService, two_desks,
) -> None:
    rahul, priya, mine, hers = two_desks
    risk.panic(rahul, Scope.HOUSEHOLD)
    hers_seen = [a for a in risk.alerts(priya) if a.kind == "risk.panic"]
    titles = sorted(a.title for a in hers_seen)
    assert titles == [
        "Panic active: the whole household, Priya · Trading; 2 of 2 steps done",
        "Panic active: the whole household; 1 of 1 steps done",
        "Panic: the whole household"]
    text = "\n".join(f"{a.title}\n{a.body}" for a in hers_seen)
    assert "cancel order" in text and "close SBIN MIS +20" in text
    assert "Rahul · Intraday" not in text and "TCS" not in text  # rahul's account and order
    his = {a.title: a.body for a in risk.alerts(rahul) if a.kind == "risk.panic"}
    assert "TCS" in his["Panic active: the whole household, Rahul · Intraday; 2 of 2 steps done"]
    # The Risk page's report of the state: the same rule.
    state = next(s for s in risk.states(priya) if s.scope is Scope.HOUSEHOLD)
    assert {s.account_id for s in state.steps} == {hers, None}
    assert {s.account_id for s in next(
        s for s in risk.states(rahul) if s.scope is Scope.HOUSEHOLD).steps} == {mine, hers, None}
    # And a cancelled order says who cancelled it, not "the user".
    with services.db.transaction() as session:
        reasons = set(session.scalars(select(OrderRow.rejection_reason).where(
            OrderRow.status == OrderStatus.CANCELLED)))
    assert reasons == {"Cancelled by panic on the whole household (0 of 10 filled)",
                       "Cancelled by panic on the whole household (0 of 5 filled)"}


def test_a_step_that_fails_is_reported_and_the_state_still_becomes_active(
    services: Services, risk: RiskService, two_desks, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _rahul, priya, _mine, hers = two_desks
    monkeypatch.setattr(services.orders.manager, "submit", _refuse_market_closed)
    report = risk.panic(priya, Scope.ACCOUNT, account_id=hers)
    assert report.phase is StatePhase.ACTIVE and not report.ok
    failed = [s for s in report.steps if not s.ok]
    assert failed == [PanicStep("close", hers, "SBIN MIS +20", False,
                                "Market is closed (test): tick AMO")]
    assert "failed: close SBIN MIS +20" in report.summary()
    assert _count(services, AuditRow, AuditRow.action == "risk.close",
                  AuditRow.outcome == "failed") == 1


def _refuse_market_closed(request: OrderRequest, **_kwargs: object) -> None:
    raise ValidationError("Market is closed (test): tick AMO")


def _three_positions_at_two_orders_a_second(services: Services, login,
                                            labels: dict[str, int]) -> tuple[Actor, int]:
    """Rahul's intraday account allowed 2 orders a second (SEBI allows 10), with 3 positions."""
    rahul, mine = login("rahul"), labels["Rahul · Intraday"]
    services.risk.set_limits(rahul, mine, {"max_orders_per_second": "2"})
    services.risk_gate.forget_limits()
    for n, symbol in enumerate(PRICES):
        if n == 2:
            time.sleep(1.1)  # the third opening order in the next second
        services.orders.place(rahul, _order(mine, symbol, Side.BUY, 1))
    _fill(services, **PRICES)
    assert _positions(services, mine) == {"INFY": 1, "TCS": 1, "SBIN": 1}
    time.sleep(1.1)  # the exits start with a fresh second
    return rahul, mine


def _paced(exits: list[OrderRow]) -> None:
    """Assert the three exits went two in one second and the third at least a second later."""
    assert len(exits) == 3
    assert (exits[2].created_at - exits[0].created_at).total_seconds() >= 1.0


def test_a_panic_closes_more_positions_than_the_orders_a_second_limit_by_pacing_its_exits(
    services: Services, risk: RiskService, login, labels: dict[str, int],
) -> None:
    rahul, mine = _three_positions_at_two_orders_a_second(services, login, labels)
    report = risk.panic(rahul, Scope.ACCOUNT, account_id=mine)
    closes = [s for s in report.steps if s.step == "close"]
    assert len(closes) == 3 and all(s.ok for s in closes), closes
    _paced([o for o in _orders(services, mine) if o.source == "panic"])
    _fill(services, **PRICES)
    assert _positions(services, mine) == {}


def test_a_square_off_closes_more_positions_than_the_orders_a_second_limit_by_pacing(
    services: Services, risk: RiskService, login, labels: dict[str, int],
) -> None:
    rahul, mine = _three_positions_at_two_orders_a_second(services, login, labels)
    placed = services.orders.square_off_intraday(rahul, mine)
    assert [o.status for o in placed] == [OrderStatus.OPEN] * 3
    _paced([o for o in _orders(services, mine) if o.source == "square_off"])


def test_a_strategy_panic_touches_only_that_strategy_s_orders_and_its_share_of_a_position(
    services: Services, risk: RiskService, login, labels: dict[str, int],
) -> None:
    priya, account = login("priya"), labels["Priya · Trading"]
    services.orders.place(priya, _order(account, "INFY", Side.BUY, 10))
    services.orders.place(priya, _order(account, "INFY", Side.BUY, 5, strategy="momo"))
    services.orders.place(priya, _order(account, "SBIN", Side.BUY, 10, "750.00",
                                        strategy="momo"))
    services.orders.place(priya, _order(account, "TCS", Side.BUY, 1, "2800.00"))
    _fill(services, INFY="1501.00")
    report = risk.panic(priya, Scope.STRATEGY, strategy="momo")
    assert [(s.step, s.target.split(" (")[0]) for s in report.steps] == [
        ("cancel", f"order {_orders(services, account)[2].id}"), ("close", "INFY MIS +5"),
        ("disable", "strategy momo")]
    rows = _orders(services, account)
    assert [r.status for r in rows[2:4]] == [OrderStatus.CANCELLED, OrderStatus.OPEN]
    exit_order = rows[-1]
    assert (exit_order.side, exit_order.quantity, exit_order.strategy, exit_order.source) == (
        Side.SELL, 5, "momo", "panic")
    _fill(services, INFY="1502.00")
    assert _positions(services, account) == {"INFY": 10}


def test_a_viewer_may_not_panic_and_a_trader_may_not_stop_the_whole_household(
    services: Services, risk: RiskService, login, labels: dict[str, int],
) -> None:
    aarav, priya = login("aarav"), login("priya")
    with pytest.raises(PermissionDenied):
        risk.panic(aarav, Scope.ACCOUNT, account_id=labels["Rahul · Long-term"])
    with pytest.raises(PermissionDenied, match="'viewer' may not stop strategy 'momo'"):
        risk.panic(aarav, Scope.STRATEGY, strategy="momo")
    with pytest.raises(PermissionDenied, match="'trader' may not stop trading for the whole"):
        risk.panic(priya, Scope.HOUSEHOLD)
    with pytest.raises(PermissionDenied):
        risk.panic(priya, Scope.ACCOUNT, account_id=labels["Rahul · Intraday"])
    assert _count(services, RiskStateRow) == 0


# ----------------------------------------------------------------------------------------------
# Persistence, re-enabling, idempotency, crash recovery, loss limits
# ----------------------------------------------------------------------------------------------


def _restart(url: str, demo_logins: dict[str, DemoLogin],
             username: str) -> tuple[Services, Actor]:
    services = Services(Database(url), make_settings(url))
    login = services.auth.login(username, demo_logins[username].password, TEST_CLIENT)
    assert login.session_id is not None
    return services, services.auth.check_session(login.session_id, TEST_CLIENT)


READ_STATES = (
    "import sys\n"
    "from core.risk_store import covering_states\n"
    "from db.engine import Database\n"
    "db = Database(sys.argv[1])\n"
    "with db.transaction() as session:\n"
    "    for s in covering_states(session, int(sys.argv[2]), int(sys.argv[3])):\n"
    "        print(s.kind.value, s.scope.value, s.phase.value)\n"
)


def test_a_panic_survives_a_restart_and_a_fresh_process_reads_it(
    services: Services, risk: RiskService, two_desks, demo_logins: dict[str, DemoLogin],
) -> None:
    _rahul, priya, _mine, hers = two_desks
    report = risk.panic(priya, Scope.ACCOUNT, account_id=hers)
    url = services.db.url
    services.db.dispose()
    again, priya_again = _restart(url, demo_logins, "priya")
    try:
        (state,) = _risk(again).states(priya_again)
        assert (state.id, state.kind, state.phase, state.account_id, state.engaged_by) == (
            report.state_id, StateKind.PANIC, StatePhase.ACTIVE, hers, "priya")
        assert state.steps == report.steps and state.may_reenable
        assert state.engaged_at.tzinfo == IST
    finally:
        again.db.dispose()
    done = subprocess.run(
        [sys.executable, "-c", READ_STATES, url, str(priya.household_id), str(hers)],
        cwd=PROJECT_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120,
        check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["panic account active"]


def test_only_an_admin_re_enables_a_kill_switch(
    services: Services, risk: RiskService, login, labels: dict[str, int],
) -> None:
    rahul, priya, account = login("rahul"), login("priya"), labels["Priya · Trading"]
    report = risk.engage(StateKind.KILL_SWITCH, Scope.ACCOUNT, str(account),
                         "drawdown 15.2% from the peak", (account,))
    assert [s.may_reenable for s in risk.states(priya)] == [False]
    with pytest.raises(PermissionDenied, match=r"re-enable Kill switch of the account Priya · "
                                               r"Trading: it needs an admin"):
        risk.reenable(priya, report.state_id)
    cleared = risk.reenable(rahul, report.state_id, "reviewed the drawdown")
    assert (cleared.phase, cleared.cleared_by, cleared.clear_note) == (
        StatePhase.CLEARED, "rahul", "reviewed the drawdown")
    assert risk.states(priya) == []
    assert [s.id for s in risk.states(priya, include_cleared=True)] == [report.state_id]
    with pytest.raises(ValidationError, match="was already lifted"):
        risk.reenable(rahul, report.state_id)
    assert _count(services, AlertOutboxRow,
                  AlertOutboxRow.dedupe_key == f"risk-state:{report.state_id}:cleared") == 1


def test_a_trader_re_enables_her_account_s_panic_but_a_viewer_cannot(
    risk: RiskService, login, labels: dict[str, int],
) -> None:
    rahul, priya, aarav = login("rahul"), login("priya"), login("aarav")
    mine = risk.panic(priya, Scope.ACCOUNT, account_id=labels["Priya · Trading"])
    household = risk.panic(rahul, Scope.HOUSEHOLD)
    with pytest.raises(PermissionDenied):
        risk.reenable(aarav, household.state_id)
    with pytest.raises(PermissionDenied, match="needs an admin"):
        risk.reenable(priya, household.state_id)
    assert risk.reenable(priya, mine.state_id).phase is StatePhase.CLEARED
    assert [s.id for s in risk.states(aarav)] == [household.state_id]  # hers is not his to see


def test_a_strategy_stop_is_lifted_only_by_an_admin_or_one_who_trades_every_account(
    services: Services, risk: RiskService, login, labels: dict[str, int],
) -> None:
    rahul, priya, kamla = login("rahul"), login("priya"), login("kamla")
    hers = labels["Priya · Trading"]
    stop = risk.panic(rahul, Scope.STRATEGY, strategy="ema_cross")
    # kamla trades only Kamla · Pension, priya only Priya · Trading: the stop covers them all
    assert [s.may_reenable for s in risk.states(kamla)] == [False]
    assert [s.may_reenable for s in risk.states(priya)] == [False]
    with pytest.raises(PermissionDenied, match=r"'family_member' may not re-enable Panic of "
                       r"strategy ema_cross: it needs an admin or a member who trades every "
                       r"account of the household \(the strategy is stopped on all of them\)"):
        risk.reenable(kamla, stop.state_id)
    with pytest.raises(PermissionDenied, match="'trader' may not re-enable Panic of strategy"):
        risk.reenable(priya, stop.state_id)
    with pytest.raises(RiskRejected):
        services.orders.place(priya, _order(hers, "INFY", Side.BUY, 1, strategy="ema_cross"))
    assert [s.may_reenable for s in risk.states(rahul)] == [True]
    assert risk.reenable(rahul, stop.state_id).phase is StatePhase.CLEARED

    own = risk.panic(priya, Scope.STRATEGY, strategy="momo")  # hers stops rahul's momo too
    assert [s.may_reenable for s in risk.states(priya)] == [False]
    with pytest.raises(PermissionDenied, match="'trader' may not re-enable Panic of strategy"):
        risk.reenable(priya, own.state_id)
    assert risk.reenable(rahul, own.state_id).phase is StatePhase.CLEARED


def test_engaging_twice_gives_one_state_one_exit_and_no_second_alert(
    services: Services, risk: RiskService, two_desks,
) -> None:
    _rahul, _priya, _mine, hers = two_desks
    first = risk.engage(StateKind.DAILY_LOSS, Scope.ACCOUNT, str(hers), "day loss 2.1%",
                        (hers,), until=date(2099, 1, 1))
    alerts_after_first = _count(services, AlertOutboxRow, RISK_ALERTS)
    second = risk.engage(StateKind.DAILY_LOSS, Scope.ACCOUNT, str(hers), "day loss 2.3%",
                         (hers,), until=date(2099, 1, 1))
    assert (first.created, second.created, second.state_id) == (True, False, first.state_id)
    assert second.steps == first.steps
    assert _count(services, RiskStateRow) == 1
    assert _count(services, OrderRow, OrderRow.source == "panic") == 1
    assert _count(services, AlertOutboxRow, RISK_ALERTS) == alerts_after_first == 2


def test_losing_an_engage_race_rolls_back_the_loser_s_state_audit_and_alert(
    services: Services, risk: RiskService, labels: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = labels["Priya · Trading"]
    first = risk.engage(StateKind.KILL_SWITCH, Scope.ACCOUNT, str(account), "drawdown 15%",
                        (account,))
    real_lookup = risk_service._live_state
    misses = iter([True])

    def blind_once(session, active_key):  # the other process has not committed yet ...
        return None if next(misses, False) else real_lookup(session, active_key)

    monkeypatch.setattr(risk_service, "_live_state", blind_once)
    second = risk.engage(StateKind.KILL_SWITCH, Scope.ACCOUNT, str(account), "drawdown 15%",
                         (account,))
    assert (second.created, second.state_id) == (False, first.state_id)
    assert _count(services, RiskStateRow) == 1
    assert _count(services, AuditRow, AuditRow.action == "risk.engage") == 1
    assert _count(services, AlertOutboxRow, RISK_ALERTS) == 2  # engaged + report of the one state


class Crash(BaseException):
    """The process dies (not an error the procedure may catch)."""


@pytest.mark.parametrize("when", ["before-the-exit-is-sent", "after-the-exit-is-sent"])
def test_a_procedure_cut_short_by_a_crash_is_finished_on_resume_without_a_second_exit(
    services: Services, risk: RiskService, two_desks, monkeypatch: pytest.MonkeyPatch,
    when: str,
) -> None:
    _rahul, priya, _mine, hers = two_desks
    real_submit = services.orders.manager.submit

    def crashing(request: OrderRequest, **kwargs: object) -> None:
        if when == "after-the-exit-is-sent":
            real_submit(request, **kwargs)  # type: ignore[arg-type]
        raise Crash

    monkeypatch.setattr(services.orders.manager, "submit", crashing)
    with pytest.raises(Crash):
        risk.panic(priya, Scope.ACCOUNT, account_id=hers)
    monkeypatch.undo()
    (left,) = risk.states(priya)
    assert left.phase is StatePhase.ENGAGING
    assert [s.step for s in left.steps] == ["cancel"]
    (report,) = _risk(services).resume_engaging()
    assert (report.state_id, report.phase) == (left.id, StatePhase.ACTIVE)
    assert [s.step for s in report.steps] == ["cancel", "close", "disable"]
    assert _count(services, OrderRow, OrderRow.source == "panic") == 1
    assert _risk(services).resume_engaging() == []
    _fill(services, SBIN="802.00")
    assert _positions(services, hers) == {}


def test_a_loss_limit_lifts_itself_when_its_day_comes_and_may_engage_again(
    services: Services, login, labels: dict[str, int],
) -> None:
    open_market(services.db, PRICES)
    now = {"at": datetime(2026, 11, 20, 11, 0, tzinfo=IST)}
    risk = _risk(services, clock=lambda: now["at"])
    priya, account = login("priya"), labels["Priya · Trading"]
    first = risk.engage(StateKind.DAILY_LOSS, Scope.ACCOUNT, str(account), "day loss 2%",
                        (account,), until=date(2026, 11, 23))
    now["at"] = datetime(2026, 11, 22, 23, 59, tzinfo=IST)
    assert [s.id for s in risk.states(priya)] == [first.state_id]
    now["at"] = datetime(2026, 11, 23, 9, 0, tzinfo=IST)
    assert risk.states(priya) == []
    (lifted,) = risk.states(priya, include_cleared=True)
    assert (lifted.cleared_by, lifted.clear_note) == (
        None, "Daily loss limit lifted itself: trading resumes on 2026-11-23")
    again = risk.engage(StateKind.DAILY_LOSS, Scope.ACCOUNT, str(account), "day loss 2%",
                        (account,), until=date(2026, 11, 24))
    assert again.created and again.state_id != first.state_id


def test_a_manual_disable_keeps_orders_and_positions_and_is_not_doubled(
    services: Services, risk: RiskService, two_desks,
) -> None:
    _rahul, priya, _mine, hers = two_desks
    with pytest.raises(ValidationError, match="Say why trading is disabled"):
        risk.disable(priya, Scope.ACCOUNT, account_id=hers, reason="  ")
    view = risk.disable(priya, Scope.ACCOUNT, account_id=hers, reason="on holiday")
    assert (view.kind, view.phase, [s.step for s in view.steps]) == (
        StateKind.DISABLED, StatePhase.ACTIVE, ["disable"])
    assert risk.disable(priya, Scope.ACCOUNT, account_id=hers, reason="again").id == view.id
    assert _positions(services, hers) == {"SBIN": 20}
    assert _orders(services, hers)[1].status is OrderStatus.OPEN


# ----------------------------------------------------------------------------------------------
# Position controls, MTM limits, alerts
# ----------------------------------------------------------------------------------------------


BAD_CONTROLS = [
    pytest.param({"stop_loss": Decimal("805.00")}, "A long position's stop-loss must be below "
                 "the LTP: stop ₹805.00, LTP ₹801.00 (SBIN)", id="stop-above-ltp"),
    pytest.param({"target": Decimal("790.00")}, "A long position's target must be above the "
                 "LTP: target ₹790.00, LTP ₹801.00 (SBIN)", id="target-below-ltp"),
    pytest.param({"trail_points": Decimal("5"), "trail_pct": Decimal("1")}, "Trail by points "
                 "or by percent, not both; got trail_points 5 and trail_pct 1", id="both-trails"),
    pytest.param({"stop_loss": Decimal("790.03")}, "stop_loss ₹790.03 of SBIN is not on the "
                 "tick size ₹0.05", id="off-tick"),
    pytest.param({"trail_pct": Decimal("-1")}, "trail_pct must be a positive number",
                 id="negative-trail"),
    pytest.param({}, "Give a stop-loss, a target or a trailing stop", id="nothing"),
]


@pytest.mark.parametrize(("values", "message"), BAD_CONTROLS)
def test_a_control_that_could_never_work_is_refused_with_the_values(
    risk: RiskService, two_desks, values: dict[str, Decimal], message: str,
) -> None:
    _rahul, priya, _mine, hers = two_desks
    with pytest.raises(ValidationError) as refused:
        risk.set_control(priya, hers, "SBIN", Product.MIS, **values)
    assert message in str(refused.value)
    assert risk.controls(priya) == []


def test_a_control_guards_an_open_position_and_setting_it_again_replaces_it(
    services: Services, risk: RiskService, two_desks, login,
) -> None:
    _rahul, priya, _mine, hers = two_desks
    with pytest.raises(ValidationError, match="No open MIS position in TCS"):
        risk.set_control(priya, hers, "TCS", Product.MIS, stop_loss=Decimal("2900"))
    with pytest.raises(PermissionDenied):
        risk.set_control(login("aarav"), hers, "SBIN", Product.MIS, stop_loss=Decimal("790"))
    first = risk.set_control(priya, hers, "sbin", Product.MIS, stop_loss=Decimal("790.00"),
                             target=Decimal("820.00"))
    second = risk.set_control(priya, hers, "SBIN", Product.MIS, trail_pct=Decimal("1.5"))
    assert [c.control_id for c in risk.controls(priya)] == [second.control_id]
    assert (first.stop_loss, second.trail_pct, second.stop_loss) == (
        Decimal("790.00"), Decimal("1.5"), None)
    risk.clear_control(priya, second.control_id)
    assert risk.controls(priya, hers) == []
    with pytest.raises(ValidationError, match="no longer active"):
        risk.clear_control(priya, second.control_id)


def test_mtm_limits_are_set_by_an_admin_for_the_household_and_by_traders_for_strategies(
    risk: RiskService, login,
) -> None:
    rahul, priya, aarav = login("rahul"), login("priya"), login("aarav")
    household = risk.set_mtm_limit(rahul, Scope.HOUSEHOLD, "", stop_loss=Decimal("5000"),
                                   target=None)
    assert household is not None and household.key == str(rahul.household_id)
    with pytest.raises(PermissionDenied):
        risk.set_mtm_limit(priya, Scope.HOUSEHOLD, "", stop_loss=Decimal("1"), target=None)
    with pytest.raises(PermissionDenied):
        risk.set_mtm_limit(aarav, Scope.STRATEGY, "momo", stop_loss=Decimal("1"), target=None)
    with pytest.raises(ValidationError, match="MTM stop_loss must be a positive amount"):
        risk.set_mtm_limit(priya, Scope.STRATEGY, "momo", stop_loss=Decimal("-1"), target=None)
    with pytest.raises(ValidationError, match=r"MTM target must be a positive amount in rupees "
                       r"with at most 2 decimals \(paise\), or empty; got Decimal\('1500.125'\)"):
        risk.set_mtm_limit(priya, Scope.STRATEGY, "momo", stop_loss=None,
                           target=Decimal("1500.125"))
    momo = risk.set_mtm_limit(priya, Scope.STRATEGY, "momo", stop_loss=Decimal("500"),
                              target=Decimal("1500"))
    assert momo is not None and (momo.stop_loss, momo.target, momo.updated_by) == (
        Decimal("500"), Decimal("1500"), "priya")
    assert [(v.scope, v.key) for v in risk.mtm_limits(aarav)] == [
        (Scope.HOUSEHOLD, str(rahul.household_id)), (Scope.STRATEGY, "momo")]
    assert risk.set_mtm_limit(priya, Scope.STRATEGY, "momo", stop_loss=None,
                              target=None) is None
    assert len(risk.mtm_limits(rahul)) == 1


def test_alerts_show_the_household_s_and_the_viewable_accounts_only(
    services: Services, risk: RiskService, login, labels: dict[str, int],
) -> None:
    priya, aarav = login("priya"), login("aarav")
    risk.panic(priya, Scope.ACCOUNT, account_id=labels["Priya · Trading"])
    mine = risk.alerts(priya)
    assert [a.kind for a in mine] == ["risk.panic", "risk.panic"]
    assert mine[0].title.startswith("Panic active: the account Priya · Trading; ")
    assert risk.alerts(aarav) == []
    with services.db.transaction() as session:
        session.execute(update(AlertOutboxRow).values(account_id=None))
    assert len(risk.alerts(aarav, limit=1)) == 1


def test_two_people_saving_limits_at_once_keep_both_changes(
    services: Services, risk: RiskService, login, labels: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rahul, priya = login("rahul"), login("priya")
    account = labels["Priya · Trading"]
    read = risk_service.risk_store.effective_limits

    def slow_read(*args: object, **kwargs: object) -> object:
        found = read(*args, **kwargs)  # type: ignore[arg-type]
        time.sleep(0.3)  # both saves read before either writes, unless they queue
        return found

    monkeypatch.setattr(risk_service.risk_store, "effective_limits", slow_read)
    start = threading.Barrier(2)
    failed: list[BaseException] = []

    def save(actor: Actor, values: dict[str, str]) -> None:
        start.wait()
        try:
            risk.set_limits(actor, account, values)
        except BaseException as exc:  # reported below
            failed.append(exc)

    threads = [threading.Thread(target=save, args=(rahul, {"max_order_value": "100000"})),
               threading.Thread(target=save, args=(priya, {"max_open_positions": "5"}))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failed == []
    monkeypatch.undo()
    limits = risk.limits(rahul, account).limits
    assert (limits.max_order_value, limits.max_open_positions) == (Decimal("100000"), 5)
