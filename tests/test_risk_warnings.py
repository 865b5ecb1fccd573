"""A loss limit warns at 80 % used, once per scope and day, before it stops trading.

The rule (:func:`core.risk_warnings.near_limits`) is tested on tables; the risk watch writing
the alerts runs on SQLite and PostgreSQL with the real paper broker and order path.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from core.clock import now_ist
from core.domain import Actor
from core.risk_warnings import AccountLoss, LimitWarning, near_limits, warning_alert
from core.services import Services
from core.services.risk_watch import RiskWatch
from core.trading import OrderRequest, OrderType, Product, Side
from db.models import AlertOutboxRow
from engines.risk_types import MtmLimit, RiskLimits, Scope, StateKind
from tests.support.market import open_market, tick
from tests.support.outbox import alert_rows

LAKH = Decimal(100_000)
LIMITS = RiskLimits()  # daily 2 %, weekly 5 % of capital


def _account(day: str, week: str = "0") -> AccountLoss:
    """An account that started the week (and so the day) with ₹10 lakh, and lost since."""
    capital = 10 * LAKH + min(Decimal(day), Decimal(week))
    return AccountLoss(7, capital, Decimal(day), Decimal(week), LIMITS)


@pytest.mark.parametrize(("day", "week", "kinds"), [
    ("-15999", "0", []),  # 79.99 % of the ₹20,000 day limit
    ("-16000", "-16000", ["daily_loss"]),  # exactly 80 %
    ("-19999", "-19999", ["daily_loss"]),
    ("-20000", "-20000", []),  # the limit itself: the engine stops trading instead
    ("-16000", "-40000", ["daily_loss", "weekly_loss"]),  # 80 % of the ₹50,000 week limit
    ("500", "-45000", ["weekly_loss"]),
])
def test_an_accounts_loss_warns_from_80_percent_of_a_limit_until_it_breaches(
        day: str, week: str, kinds: list[str]) -> None:
    found = near_limits([_account(day, week)], [], frozenset())
    assert [w.kind for w in found] == kinds
    assert all(w.scope is Scope.ACCOUNT and w.account_id == 7 for w in found)


def test_a_scope_already_stopped_by_its_limit_is_not_warned() -> None:
    engaged = frozenset({(Scope.ACCOUNT, "7", StateKind.DAILY_LOSS),
                         (Scope.HOUSEHOLD, "1", StateKind.DAILY_LOSS)})
    family = MtmLimit(Scope.HOUSEHOLD, "1", Decimal("10000"), None, Decimal("-9000"), (7,))
    assert near_limits([_account("-17000")], [family], engaged) == []


def test_an_mtm_stop_loss_warns_for_its_scope_and_an_account_without_capital_is_skipped(
        ) -> None:
    family = MtmLimit(Scope.HOUSEHOLD, "1", Decimal("10000"), None, Decimal("-8500"), (7,))
    strategy = MtmLimit(Scope.STRATEGY, "momo", Decimal("1000"), None, Decimal("-700"), (7,))
    target_only = MtmLimit(Scope.ACCOUNT, "7", None, Decimal("500"), Decimal("-9999"), (7,))
    broke = AccountLoss(8, Decimal(0), Decimal("-100"), Decimal("-100"), LIMITS)
    found = near_limits([broke], [family, strategy, target_only], frozenset())
    assert [(w.kind, w.scope, w.key, w.account_id, w.used_pct) for w in found] == [
        ("mtm_loss", Scope.HOUSEHOLD, "1", None, Decimal("85.0"))]


def test_a_warning_alert_states_the_loss_the_limit_and_what_happens_at_the_limit() -> None:
    warning = LimitWarning("daily_loss", Scope.ACCOUNT, "7", 7, Decimal("17040.50"),
                           Decimal("20000"), "2% of capital ₹10,00,000.00")
    alert = warning_alert(1, warning, date(2026, 11, 19))
    assert alert.kind == "risk.warning.daily_loss" and alert.account_id == 7
    assert alert.title == "Day loss at 85.2% of its limit"
    assert alert.body == (
        "Loss today: ₹17,040.50 of the ₹20,000.00 limit (2% of capital ₹10,00,000.00) for this "
        "account.\nAt ₹20,000.00 trading stops for the day: open orders are cancelled and "
        "positions closed.")
    assert alert.dedupe_key == "risk-warning:1:account:7:daily_loss:2026-11-19"
    family = warning_alert(1, LimitWarning("mtm_loss", Scope.HOUSEHOLD, "1", None,
                                           Decimal("8500"), Decimal("10000"), "MTM stop-loss"),
                           date(2026, 11, 19))
    assert family.title == "MTM loss at 85.0% of its limit (the family)"
    long_name = LimitWarning("mtm_loss", Scope.STRATEGY, "s" * 200, None, Decimal("8"),
                             Decimal("10"), "MTM stop-loss")
    assert len(warning_alert(1, long_name, date(2026, 11, 19)).dedupe_key) <= 120


# ----------------------------------------------------------------------------------------------
# The watch writes them (SQLite and PostgreSQL)
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def priya(services: Services, login) -> Actor:
    open_market(services.db, {"SBIN": "800.00"})
    return login("priya")


def _hold_100_sbin(services: Services, priya: Actor) -> int:
    account = next(a.id for a in services.household.list_accounts(priya)
                   if a.label == "Priya · Trading")
    services.orders.place(priya, OrderRequest(account, "SBIN", Side.BUY, 100, OrderType.MARKET,
                                              Product.MIS))
    tick(services.db, "SBIN", "800.00")
    services.orders.step()
    return account


def _warnings(services: Services) -> list[AlertOutboxRow]:
    return alert_rows(services, AlertOutboxRow.kind.like("risk.warning.%"))


@pytest.mark.usefixtures("backend")
def test_the_watch_warns_once_a_day_at_80_percent_of_the_day_limit_then_breaches(
        services: Services, priya: Actor) -> None:
    account = _hold_100_sbin(services, priya)
    services.risk_watch.run()
    assert _warnings(services) == []  # no loss yet
    tick(services.db, "SBIN", "630.00")  # about −₹17,100: 85 % of 2 % of ₹10 lakh
    first = services.risk_watch.run()
    services.risk_watch.run()
    (warning,) = _warnings(services)
    assert first.limit_warnings == 1
    assert (warning.kind, warning.severity, warning.account_id) == (
        "risk.warning.daily_loss", "warning", account)
    assert warning.title.startswith("Day loss at 8")
    assert warning.body.startswith("Loss today: ₹17,")
    assert " limit (2% of capital ₹10,00,000.00 at the start of the day)" in warning.body
    assert warning.dedupe_key.endswith(f":{now_ist().date().isoformat()}")
    restarted = RiskWatch(services.db, services.risk_gate, services.risk)  # a new worker
    assert restarted.run().limit_warnings == 1  # it tries; the outbox keeps one
    assert len(_warnings(services)) == 1
    tomorrow = services.risk_watch.run(now_ist() + timedelta(days=1))
    assert tomorrow.limit_warnings == 1 and len(_warnings(services)) == 2
    tick(services.db, "SBIN", "590.00")  # the limit itself: engaged, not warned again
    report = services.risk_watch.run()
    assert report.engaged == [f"account:{account}:daily_loss"]
    assert len(_warnings(services)) == 2


@pytest.mark.usefixtures("backend")
def test_the_familys_mtm_stop_loss_warns_as_a_household_alert(
        services: Services, priya: Actor, login) -> None:
    services.risk.set_mtm_limit(login("rahul"), Scope.HOUSEHOLD, "", stop_loss=Decimal("2000"),
                                target=None)
    _hold_100_sbin(services, priya)
    tick(services.db, "SBIN", "782.00")  # about −₹1,840 with charges: 92 % of ₹2,000
    services.risk_watch.run()
    (warning,) = _warnings(services)
    assert (warning.kind, warning.account_id) == ("risk.warning.mtm_loss", None)
    assert warning.title.endswith("of its limit (the family)")
