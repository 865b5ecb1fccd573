"""The Risk page and the gate's decision on the order form, through AppTest.

The ``desk`` fixture is a demo SQLite desk with FEED_MODE=off (market closed) that the app under
test reads through DATABASE_URL; the service calls here go to the same database.
"""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from core.clock import now_ist
from core.domain import Role
from core.errors import PermissionDenied
from core.services import Services
from core.trading import OrderRequest, OrderStatus, OrderType, Product, Side
from db.engine import Database
from db.models import OrderRow, RiskStateRow
from engines.risk_types import LIMIT_FIELDS, RiskLimits, Scope, StateKind, StatePhase
from engines.signal_types import Action, Direction, Regime, Signal
from pages.common import DISCLAIMER
from pages.nav import pages_for
from pages.risk_parts import (
    LABELS,
    field_text,
    limit_changes,
    limits_frame,
    sector_frame,
    usage_bars,
)
from pages.signals_parts import signal_request
from tests.conftest import make_settings
from tests.support.apptest import app_as, open_tab_index, page, texts
from tests.support.market import open_market, tick
from tests.test_trading_pages import account, fill_ticket, stock_instruments, table_of, who

PAGE = "pages/risk.py"
USERS = {"ops": Role.SUPER_ADMIN, "rahul": Role.ADMIN, "priya": Role.TRADER,
         "kamla": Role.FAMILY_MEMBER, "aarav": Role.VIEWER}


def on_risk(desk, username: str, show: str | None = None) -> AppTest:
    """Open the Risk page as ``username``; pick the account labelled ``show`` if given."""
    at = app_as(desk, username)
    at.switch_page(page(PAGE)).run()
    assert not at.exception, at.exception
    if show is not None:
        svc, logins = desk
        me = who(svc, logins, username)
        at.selectbox(key="risk_account").set_value(account(svc, me, show).id).run()
        assert not at.exception, at.exception
    return at


def errors(at: AppTest) -> str:
    """Return the errors shown, less the banner of an account whose trading is stopped."""
    return " ".join(e.value for e in at.error
                    if not e.value.startswith(("Trading is stopped", "Orders of strategy")))


def keys(at: AppTest) -> set[str]:
    """Return the keys of every button and text input shown (forms' submit buttons too)."""
    return {w.key for w in (*at.button, *at.text_input, *at.checkbox) if w.key}


def state_rows(svc: Services) -> list[RiskStateRow]:
    with svc.db.transaction() as session:
        rows = list(session.scalars(select(RiskStateRow).order_by(RiskStateRow.id)))
        session.expunge_all()
        return rows


@pytest.fixture
def holding(desk, monkeypatch):
    """The desk with the market open and Priya long 10 INFY intraday (bought at ₹1,500.75)."""
    svc, logins = desk
    monkeypatch.setenv("FEED_MODE", "replay")  # the app under test sees the market open too
    monkeypatch.setenv("FEED_STALL_SECONDS", "3600")
    opened = Services(Database(svc.db.url), make_settings(svc.db.url))
    open_market(opened.db, {"INFY": "1500.00", "TCS": "3000.00"})
    priya = who(opened, logins, "priya")
    order = opened.orders.place(priya, OrderRequest(
        account(opened, priya, "Priya · Trading").id, "INFY", Side.BUY, 10, OrderType.MARKET,
        Product.MIS))
    tick(opened.db, "INFY", "1500.00")
    opened.orders.step()
    assert opened.orders.order_book(priya)[0].status is OrderStatus.FILLED, order
    yield opened, logins
    opened.db.dispose()


@pytest.fixture
def stocked(desk):
    """The demo desk with the sample instruments and a few quotes (market still closed)."""
    stock_instruments(desk[0])
    return desk


# ----------------------------------------------------------------------------------------------
# Pure pieces
# ----------------------------------------------------------------------------------------------


def test_every_limit_has_a_form_label_and_the_form_shows_values_as_typed() -> None:
    assert set(LABELS) == set(LIMIT_FIELDS)
    limits = RiskLimits()
    assert [field_text(getattr(limits, n)) for n in ("risk_per_trade_pct",
                                                     "correlation_threshold",
                                                     "portfolio_mtm_target",
                                                     "mis_square_off_at",
                                                     "correlation_reduce")] == [
        "1", "0.80", "", "15:15", "off"]


def test_limit_changes_name_each_changed_field_with_old_and_new_values() -> None:
    before = RiskLimits()
    after = RiskLimits(risk_per_trade_pct=Decimal("0.5"), portfolio_mtm_stop_loss=Decimal("900"))
    assert limit_changes(before, after) == [
        "Risk per trade [% of capital] 1 → 0.5",
        "Account MTM stop-loss [₹] (empty: none) none → 900"]
    assert limit_changes(before, before) == []


def _usage(**changes: object) -> SimpleNamespace:
    values: dict[str, object] = dict(
        day_pnl=Decimal("-10000"), daily_limit=Decimal("20000"), week_pnl=Decimal("5000"),
        weekly_limit=Decimal("50000"), open_positions=10, max_open_positions=10,
        orders_last_second=0, max_orders_per_second=10, peak_equity=Decimal("1000000"),
        drawdown_pct=Decimal("10"), drawdown_reduce_pct=Decimal("10"),
        drawdown_kill_pct=Decimal("15"))
    values.update(changes)
    return SimpleNamespace(**values)


@pytest.mark.parametrize(("changes", "label", "fraction", "words"), [
    ({}, "Loss today", 0.5, "Loss today ₹10,000.00 of the daily limit ₹20,000.00"),
    ({}, "Loss this week", 0.0, "Loss this week ₹0.00 of the weekly limit ₹50,000.00"),
    ({}, "Open positions", 1.0, "10 of at most 10 open positions"),
    ({"orders_last_second": 12}, "Orders per second", 1.0, "12 order(s) in the last second"),
    ({}, "Drawdown from peak", 10 / 15, "sizes are being reduced"),
    ({"drawdown_pct": Decimal("9.99")}, "Drawdown from peak", 9.99 / 15, "full size"),
    ({"drawdown_pct": Decimal("15")}, "Drawdown from peak", 1.0, "kill switch zone"),
    ({"daily_limit": Decimal("0")}, "Loss today", 1.0, "daily limit ₹0.00"),
])
def test_usage_bars_fill_in_proportion_to_the_limit_with_the_zone_in_words(
        changes, label, fraction, words) -> None:
    bar = next(b for b in usage_bars(_usage(**changes)) if b.label == label)
    assert bar.fraction == pytest.approx(fraction)
    assert words in bar.text


def test_the_sector_table_shows_the_room_to_the_limit_and_flags_an_excess() -> None:
    sectors = [SimpleNamespace(sector="IT", value=Decimal("300000"), pct=Decimal("30"),
                               limit_pct=Decimal("30")),
               SimpleNamespace(sector="Banks", value=Decimal("310000"), pct=Decimal("31"),
                               limit_pct=Decimal("30"))]
    frame = sector_frame(sectors)
    assert list(frame["Sector"]) == ["Banks", "IT"]
    assert list(frame["Status"]) == ["over the limit", "within"]  # exactly 30% is within
    assert list(frame["Room [%]"]) == [-1.0, 0.0]


def test_the_sector_table_shows_rupees_with_indian_grouping() -> None:
    sectors = [SimpleNamespace(sector="IT", value=Decimal("155920.40"), pct=Decimal("15.6"),
                               limit_pct=Decimal("30"))]
    assert list(sector_frame(sectors)["Value [₹]"]) == ["1,55,920.40"]


# ----------------------------------------------------------------------------------------------
# Every role
# ----------------------------------------------------------------------------------------------


def test_risk_is_in_the_menu_of_every_role() -> None:
    for role in Role:
        assert "pages/risk.py" in {s.path for s in pages_for(role)}


@pytest.mark.parametrize("username", list(USERS))
def test_the_page_renders_for_each_role_on_the_family_view_and_every_account(
        desk, username) -> None:
    at = on_risk(desk, username)
    assert at.title[0].value == "Risk" and DISCLAIMER in texts(at)
    assert not errors(at), errors(at)
    for option in at.selectbox(key="risk_account").options[1:]:
        at.selectbox(key="risk_account").select(option).run()
        assert not at.exception, f"{username} on {option}: {at.exception}"
        assert not at.error, f"{username} on {option}: {errors(at)}"
        assert any(p.value >= 0 for p in at.get("progress")), "no usage bars"


def test_a_viewer_sees_no_panic_or_limit_controls_and_the_service_refuses_them_anyway(
        desk) -> None:
    svc, logins = desk
    family = keys(on_risk(desk, "aarav"))
    assert not [k for k in family if k.startswith(("risk_panic", "risk_limit", "risk_reenable"))]
    at = on_risk(desk, "aarav", show="Rahul · Long-term")  # he may view it, not trade it
    shown = keys(at)
    assert not [k for k in shown if k.startswith(("risk_panic", "risk_limit", "risk_control"))]
    assert "Changing limits is for household admins and the account's traders." in texts(at)
    assert "risk_per_trade_pct" in list(table_of(at, "Field")["Field"])

    aarav = who(svc, logins, "aarav")
    long_term = account(svc, aarav, "Rahul · Long-term").id
    with pytest.raises(PermissionDenied):
        svc.risk.panic(aarav, Scope.ACCOUNT, account_id=long_term)
    with pytest.raises(PermissionDenied):
        svc.risk.panic(aarav, Scope.HOUSEHOLD)
    with pytest.raises(PermissionDenied):
        svc.risk.set_limits(aarav, long_term, {"risk_per_trade_pct": "0.5"})
    assert state_rows(svc) == []
    assert svc.risk.limits(aarav, long_term).limits == RiskLimits()


# ----------------------------------------------------------------------------------------------
# Limits
# ----------------------------------------------------------------------------------------------


def test_a_trader_makes_her_limits_stricter_and_sees_what_changed(desk) -> None:
    svc, logins = desk
    at = on_risk(desk, "priya", show="Priya · Trading")
    priya = who(svc, logins, "priya")
    mine = account(svc, priya, "Priya · Trading").id
    stem = f"risk_limit_{mine}"
    assert at.text_input(key=f"{stem}_risk_per_trade_pct").value == "1"
    at.text_input(key=f"{stem}_risk_per_trade_pct").input("0.5")
    at.text_input(key=f"{stem}_max_open_positions").input("8")
    at.button(key="risk_limits_save").click().run()
    assert not at.exception and not errors(at), errors(at)
    assert ("Saved the limits of Priya · Trading: Risk per trade [% of capital] 1 → 0.5; "
            "Open positions at most 10 → 8") in texts(at)
    view = svc.risk.limits(priya, mine)
    assert (view.source, view.limits.risk_per_trade_pct, view.limits.max_open_positions) == (
        "account", Decimal("0.5"), 8)

    at.button(key="risk_limits_reset").click().run()  # it would loosen them: an admin's call
    assert "Going back to the household defaults would loosen the limits" in errors(at)
    assert svc.risk.limits(priya, mine).limits.risk_per_trade_pct == Decimal("0.5")
    admin = on_risk(desk, "rahul", show="Priya · Trading")
    admin.button(key="risk_limits_reset").click().run()
    assert "The limits of Priya · Trading are the household defaults again." in texts(admin)
    assert admin.text_input(key=f"{stem}_risk_per_trade_pct").value == "1"
    assert svc.risk.limits(priya, mine).limits == RiskLimits()


def test_saving_limits_keeps_the_page_on_the_limits_tab(desk) -> None:
    svc, logins = desk
    at = on_risk(desk, "priya", show="Priya · Trading")
    at.session_state["risk_tab"] = "Limits"  # she opened the Limits tab
    at.run()
    mine = account(svc, who(svc, logins, "priya"), "Priya · Trading").id
    at.text_input(key=f"risk_limit_{mine}_max_open_positions").input("8")
    at.button(key="risk_limits_save").click().run()
    assert not at.exception and not errors(at), errors(at)
    assert "Saved the limits of Priya · Trading" in texts(at)
    assert at.session_state["risk_tab"] == "Limits" and open_tab_index(at) == 1


def test_a_trader_who_tightens_one_limit_keeps_following_the_household_in_the_others(
        desk) -> None:
    svc, logins = desk
    at = on_risk(desk, "priya", show="Priya · Trading")
    priya, rahul = who(svc, logins, "priya"), who(svc, logins, "rahul")
    mine = account(svc, priya, "Priya · Trading").id
    at.text_input(key=f"risk_limit_{mine}_max_open_positions").input("5")
    at.button(key="risk_limits_save").click().run()
    assert not errors(at), errors(at)
    svc.risk.set_limits(rahul, None, {"daily_loss_pct": "1.5"})  # the admin, later

    assert svc.risk.limits(priya, mine).limits.daily_loss_pct == Decimal("1.5")
    at = on_risk(desk, "priya", show="Priya · Trading")
    assert at.text_input(key=f"risk_limit_{mine}_daily_loss_pct").value == "1.5"
    shown = texts(at)
    assert "In force: this account's own limits in 1 of 20" in shown
    assert "This account's own (household default 10)." in shown
    assert "Follows the household default (1.5)." in shown
    at.button(key="risk_limits_save").click().run()  # saving again changes nothing
    assert "Saved the limits of Priya · Trading: nothing changed" in texts(at)
    assert svc.risk.limits(priya, mine).own == frozenset({"max_open_positions"})
    view = svc.risk.limits(priya, mine)  # the read-only table of those who may not edit
    frame = limits_frame(view.limits, view.household_defaults, view.own).set_index("Field")
    assert frame.loc[["max_open_positions", "daily_loss_pct"], "Set by"].tolist() == [
        "this account", "the household"]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("risk_per_trade_pct", "0",
     "'Risk per trade [% of capital]' must be between 0.01 and 10; got 0"),
    ("max_orders_per_second", "20", "'Orders per second at most' must be between 1 and 10"),
    ("daily_loss_pct", "lots", "'Daily loss limit [% of capital]' must be a number"),
    ("mis_square_off_at", "16:00", "'MIS square-off at [HH:MM IST]' must be within market hours"),
    ("mis_square_off_at", "15:25", "'MIS square-off at [HH:MM IST]' must be at most 15:19 IST"),
    ("risk_per_trade_pct", "0,5", "'Risk per trade [% of capital]' must be a number (e.g. 1 or "
     "0.5); got '0,5': this limit takes no digit grouping, and a comma is no decimal point"),
    ("max_order_value", "1,5", "'Order value at most [₹]' must be a number (e.g. 1 or 0.5); got "
     "'1,5': a comma may only group the digits of a whole amount (5,00,000 or 500,000)"),
    ("max_order_value", "400000.123", "'Order value at most [₹]' must be in rupees with at most "
     "2 decimals (paise); got '400000.123'"),
])
def test_a_bad_limit_is_refused_with_the_rule_and_the_value_and_nothing_changes(
        desk, field, value, message) -> None:
    svc, logins = desk
    at = on_risk(desk, "rahul", show="Rahul · Intraday")
    rahul = who(svc, logins, "rahul")
    intraday = account(svc, rahul, "Rahul · Intraday").id
    at.text_input(key=f"risk_limit_{intraday}_{field}").input(value)
    at.button(key="risk_limits_save").click().run()
    assert not at.exception
    assert message in errors(at)
    assert value in errors(at)
    assert "Saved" not in texts(at)
    view = svc.risk.limits(rahul, intraday)
    assert (view.source, view.limits) == ("default", RiskLimits())


def test_a_trader_may_not_loosen_her_limits_beyond_the_household_defaults(desk) -> None:
    at = on_risk(desk, "priya", show="Priya · Trading")
    mine = at.selectbox(key="risk_account").value
    at.text_input(key=f"risk_limit_{mine}_daily_loss_pct").input("3")
    at.button(key="risk_limits_save").click().run()
    assert "'Daily loss limit [% of capital]' 3 is looser than the household's 2" in errors(at)


def test_only_an_admin_gets_the_household_defaults_form(desk) -> None:
    at = on_risk(desk, "priya")
    assert "risk_limits_save" not in keys(at)
    at = on_risk(desk, "rahul")
    at.text_input(key="risk_limit_household_weekly_loss_pct").input("4")
    at.button(key="risk_limits_save").click().run()
    assert not errors(at), errors(at)
    assert ("Saved the household defaults: Weekly loss limit [% of capital] 5 → 4"
            in texts(at))


def test_a_decimal_comma_in_a_household_default_is_refused_never_read_ten_times_larger(
        desk) -> None:
    svc, logins = desk
    at = on_risk(desk, "rahul")
    at.text_input(key="risk_limit_household_risk_per_trade_pct").input("0,5")
    at.button(key="risk_limits_save").click().run()
    assert not at.exception
    assert ("'Risk per trade [% of capital]' must be a number (e.g. 1 or 0.5); got '0,5'"
            in errors(at))
    assert "Saved" not in texts(at)
    assert svc.risk.limits(who(svc, logins, "rahul"), None).household_defaults == RiskLimits()


# ----------------------------------------------------------------------------------------------
# Panic
# ----------------------------------------------------------------------------------------------


def _open_amo_order(svc: Services, logins) -> int:
    priya = who(svc, logins, "priya")
    order = svc.orders.place(priya, OrderRequest(
        account(svc, priya, "Priya · Trading").id, "INFY", Side.BUY, 2, OrderType.LIMIT,
        price=Decimal("1400"), amo=True))
    return order.id


def test_panic_needs_the_confirm_step_then_reports_each_step_and_trading_stays_off(
        stocked) -> None:
    svc, logins = stocked
    order_id = _open_amo_order(svc, logins)
    at = on_risk(stocked, "priya", show="Priya · Trading")
    at.button(key="risk_panic_account").click().run()
    assert not at.exception
    assert "Are you sure?" in " ".join(w.value for w in at.warning)
    assert state_rows(svc) == []  # nothing happens before the confirmation

    at.button(key="risk_panic_confirm").click().run()
    assert not at.exception and not errors(at), errors(at)
    assert "Panic for the account Priya · Trading" in texts(at)
    steps = table_of(at, "Step")
    assert set(steps["Step"]) >= {"cancel", "disable"}
    cancel = steps[steps["Step"] == "cancel"]
    assert set(steps["Account"]) == {"Priya · Trading"}
    assert str(order_id) in " ".join(cancel["Target"]) and set(cancel["Result"]) == {"ok"}
    [row] = state_rows(svc)
    assert (row.kind, row.scope, row.phase) == (StateKind.PANIC, Scope.ACCOUNT,
                                                StatePhase.ACTIVE)
    with svc.db.transaction() as session:
        assert session.get(OrderRow, order_id).status.value == "CANCELLED"
    assert list(table_of(at, "Kind")["Kind"]) == ["Panic"]
    assert "Trading is stopped: Panic (account, active) — Panic pressed by priya" in " ".join(
        e.value for e in at.error)

    alerts = table_of(at, "Severity")
    assert "risk.panic" in set(alerts["Kind"])

    at.text_input(key="risk_reenable_note").input("checked the book")
    at.button(key="risk_reenable_go").click().run()
    assert not at.exception and not errors(at), errors(at)
    assert "is cleared" in texts(at)
    [row] = state_rows(svc)
    assert row.phase is StatePhase.CLEARED and row.clear_note == "checked the book"


def test_a_states_report_names_each_account_by_its_label_after_a_reload(stocked) -> None:
    svc, logins = stocked
    order_id = _open_amo_order(svc, logins)
    priya = who(svc, logins, "priya")
    svc.risk.panic(priya, Scope.ACCOUNT, account_id=account(svc, priya, "Priya · Trading").id)
    at = on_risk(stocked, "priya", show="Priya · Trading")  # the re-enable picker is shown too
    assert at.selectbox(key="risk_reenable_state").options == ["#1 Panic · Priya · Trading"]
    steps = table_of(at, "Step")  # the "Report of …" expander
    assert set(steps["Account"]) == {"Priya · Trading"}
    assert str(order_id) in " ".join(steps["Target"])


def test_a_strategy_panic_says_only_that_strategys_orders_are_stopped(desk) -> None:
    svc, logins = desk
    priya = who(svc, logins, "priya")
    svc.risk.panic(priya, Scope.STRATEGY, strategy="ema_cross")
    at = on_risk(desk, "priya", show="Priya · Trading")
    banners = [e.value for e in at.error]
    assert any(b.startswith("Orders of strategy ema_cross are stopped: Panic (strategy, active)")
               for b in banners), banners
    assert not any(b.startswith("Trading is stopped") for b in banners), banners


def test_cancelling_the_confirmation_engages_nothing(desk) -> None:
    at = on_risk(desk, "rahul")
    at.button(key="risk_panic_household").click().run()
    assert "the whole household" in " ".join(w.value for w in at.warning)
    at.button(key="risk_panic_cancel").click().run()
    assert not at.exception
    assert "risk_panic_confirm" not in keys(at) and "risk_panic_household" in keys(at)
    assert state_rows(desk[0]) == []


def test_an_admin_panics_the_household_and_a_trader_cannot_re_enable_it(desk) -> None:
    svc, logins = desk
    at = on_risk(desk, "rahul")
    at.button(key="risk_panic_household").click().run()
    at.button(key="risk_panic_confirm").click().run()
    assert not at.exception and not errors(at), errors(at)
    [row] = state_rows(svc)
    assert (row.scope, row.phase) == (Scope.HOUSEHOLD, StatePhase.ACTIVE)
    steps = table_of(at, "Step")  # nothing was open: nothing to cancel or close
    assert (list(steps["Step"]), list(steps["Result"])) == (["disable"], ["ok"])

    trader = on_risk(desk, "priya")
    assert "risk_reenable_go" not in keys(trader)
    # ... and is told who can, instead of finding no button
    assert (f"#{row.id} Panic · whole household: only an admin may re-enable trading."
            in [c.value for c in trader.caption])
    with pytest.raises(PermissionDenied):
        svc.risk.reenable(who(svc, logins, "priya"), row.id)


def test_a_strategy_stop_offers_re_enable_only_to_those_who_trade_every_account(desk) -> None:
    svc, logins = desk
    stop = svc.risk.panic(who(svc, logins, "rahul"), Scope.STRATEGY, strategy="ema_cross")
    for member in ("kamla", "priya"):  # each trades one account; the stop covers every one
        assert "risk_reenable_go" not in keys(on_risk(desk, member)), member
    admin = on_risk(desk, "rahul")
    assert admin.selectbox(key="risk_reenable_state").value == stop.state_id
    admin.button(key="risk_reenable_go").click().run()
    assert not admin.exception and not errors(admin), errors(admin)
    assert [row.phase for row in state_rows(svc)] == [StatePhase.CLEARED]


def test_a_strategy_panic_names_the_strategy(desk) -> None:
    at = on_risk(desk, "priya")
    at.text_input(key="risk_panic_strategy_name").input("ema_cross")
    at.button(key="risk_panic_strategy").click().run()
    assert "the strategy ema_cross" in " ".join(w.value for w in at.warning)
    at.button(key="risk_panic_confirm").click().run()
    assert not at.exception and not errors(at), errors(at)
    [row] = state_rows(desk[0])
    assert (row.scope, row.strategy) == (Scope.STRATEGY, "ema_cross")


# ----------------------------------------------------------------------------------------------
# The decision on the order form
# ----------------------------------------------------------------------------------------------


def test_the_order_form_shows_the_gate_s_decision_and_its_checks_before_submission(
        stocked) -> None:
    svc, _ = stocked
    at = app_as(stocked, "priya")
    at.switch_page(page("pages/trade.py")).run()
    fill_ticket(at, svc, quantity=10, price=1490.5, amo=True)
    at.number_input(key="trade_stop_loss").set_value(1480.0)
    at.button(key="trade_review").click().run()
    assert not at.exception, at.exception
    shown = texts(at)
    assert "Risk gate (" in shown and "would be approved at 10 shares" in shown, shown
    checks = table_of(at, "Rule")
    assert {"state", "market_hours", "position_size"} <= set(checks["Rule"])
    with svc.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(OrderRow)) == 0


def test_the_order_form_shows_a_refusal_with_the_rule_before_submission(stocked) -> None:
    svc, logins = stocked
    rahul = who(svc, logins, "rahul")
    priya_account = account(svc, rahul, "Priya · Trading").id
    svc.risk.panic(rahul, Scope.ACCOUNT, account_id=priya_account)
    at = app_as(stocked, "priya")
    at.switch_page(page("pages/trade.py")).run()
    fill_ticket(at, svc, quantity=10, price=1490.5, amo=True)
    at.button(key="trade_review").click().run()
    assert not at.exception, at.exception
    assert "would be refused" in errors(at)
    assert "reject" in set(table_of(at, "Rule")["Outcome"])


# ----------------------------------------------------------------------------------------------
# Usage and position controls on an open position
# ----------------------------------------------------------------------------------------------


def test_usage_counts_the_open_position_and_its_sector(holding) -> None:
    at = on_risk(holding, "priya", show="Priya · Trading")
    bars = [p.text for p in at.get("progress")]
    assert any("1 of at most 10 open positions" in text for text in bars), bars
    sectors = table_of(at, "Sector")
    assert len(sectors) == 1 and sectors["Limit [%]"][0] == 30.0
    assert 1.0 < sectors["Share of capital [%]"][0] < 2.0  # ₹15,000 of about ₹10 lakh


def test_a_trader_sets_a_stop_and_target_on_her_position_then_clears_them(holding) -> None:
    svc, logins = holding
    at = on_risk(holding, "priya", show="Priya · Trading")
    assert at.selectbox(key="risk_control_position").options == ["INFY · MIS"]
    at.number_input(key="risk_control_stop").set_value(1450.0)
    at.number_input(key="risk_control_target").set_value(1600.0)
    at.radio(key="risk_control_trail_kind").set_value("pct")
    at.number_input(key="risk_control_trail").set_value(2.0)
    at.button(key="risk_control_set").click().run()
    assert not at.exception and not errors(at), errors(at)
    assert "Controls set on INFY (MIS)." in texts(at)
    [control] = svc.risk.controls(who(svc, logins, "priya"))
    assert (control.stop_loss, control.target, control.trail_pct, control.trail_points) == (
        Decimal("1450"), Decimal("1600"), Decimal("2"), None)
    shown = table_of(at, "Stop-loss [₹]")
    assert list(shown["Stop-loss [₹]"]) == ["₹1,450.00"] and list(shown["Trail [%]"]) == ["2"]
    # The form is empty again: nothing of these controls would be set on the next position.
    assert (at.number_input(key="risk_control_stop").value,
            at.number_input(key="risk_control_target").value,
            at.radio(key="risk_control_trail_kind").value,
            at.number_input(key="risk_control_trail").value) == (None, None, "none", None)

    at.button(key=f"risk_control_clear_{control.control_id}").click().run()
    assert not errors(at), errors(at)
    assert "Cleared the controls of INFY (MIS)." in texts(at)
    assert svc.risk.controls(who(svc, logins, "priya")) == []


def test_a_stop_above_the_price_of_a_long_is_refused_with_the_values(holding) -> None:
    svc, logins = holding
    at = on_risk(holding, "priya", show="Priya · Trading")
    at.number_input(key="risk_control_stop").set_value(1550.0)
    at.button(key="risk_control_set").click().run()
    assert "stop-loss must be below the LTP: stop ₹1,550.00, LTP ₹1,500.00" in errors(at)
    assert svc.risk.controls(who(svc, logins, "priya")) == []


def test_panic_with_an_open_position_reports_its_close_and_the_order_goes_out(holding) -> None:
    svc, logins = holding
    at = on_risk(holding, "priya", show="Priya · Trading")
    at.button(key="risk_panic_account").click().run()
    at.button(key="risk_panic_confirm").click().run()
    assert not at.exception and not errors(at), errors(at)
    steps = table_of(at, "Step")
    close = steps[steps["Step"] == "close"]
    assert len(close) == 1 and "INFY" in close["Target"].iloc[0], steps
    assert list(close["Result"]) == ["ok"]
    book = svc.orders.order_book(who(svc, logins, "priya"))
    assert [(o.side, o.quantity, o.product) for o in book[:1]] == [(Side.SELL, 10, Product.MIS)]


# ----------------------------------------------------------------------------------------------
# The decision on a signal
# ----------------------------------------------------------------------------------------------


def _signal(action: Action, stop: str) -> Signal:
    """A signal on INFY priced at the stocked quote (₹1,500) with the given stop."""
    return Signal(
        symbol="INFY", as_of=now_ist(), action=action,
        direction=Direction.SHORT if action is Action.SELL else Direction.LONG,
        probability=0.6, confidence=0.5, entry=Decimal("1500.00"), stop_loss=Decimal(stop),
        targets=(Decimal("1560"), Decimal("1590"), Decimal("1620")), risk_reward=1.2,
        regime=Regime.TRENDING, agreement=3, voters=4, evidence=(), model_version="test",
        trace_id="t-risk", horizon_bars=10)


def _signal_panel(me, signal) -> None:  # no annotations: AppTest runs the source alone
    """AppTest script: the Signals page's risk-gate panel for one signal."""
    from pages.signals_parts import risk_check

    risk_check(me, signal, "signals_detail")


def test_a_signal_shows_what_the_gate_would_approve_on_the_chosen_account(stocked) -> None:
    svc, logins = stocked
    priya = who(svc, logins, "priya")
    signal = _signal(Action.BUY, "1450.00")
    at = AppTest.from_function(_signal_panel, args=(priya, signal), default_timeout=30).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="signals_detail_risk_account").options == ["Priya · Trading"]
    wanted = at.number_input(key="signals_detail_risk_quantity").value
    assert wanted == 333  # the household's order value cap, ₹5,00,000 at ₹1,500
    at.checkbox(key="signals_detail_risk_amo").check()  # the market is closed
    at.button(key="signals_detail_risk_check").click().run()
    assert not at.exception, at.exception
    request = signal_request(signal, account(svc, priya, "Priya · Trading").id, wanted, True)
    assert (request.side, request.product, request.stop_loss) == (
        Side.BUY, Product.CNC, Decimal("1450.00"))
    decision = svc.risk_gate.preview(priya, request, signal.stop_loss)
    assert decision.approved and decision.quantity < wanted, decision  # sized to the budget
    shown = " ".join(w.value for w in (*at.success, *at.warning))
    assert "BUY INFY on Priya · Trading (CNC, stop ₹1,450.00" in shown
    assert f"would be approved at {decision.quantity} shares" in shown
    assert decision.summary() in shown
    assert svc.orders.order_book(priya) == []  # a preview writes nothing


def test_a_sell_signal_is_checked_as_an_intraday_short_and_a_hold_asks_nothing(stocked) -> None:
    svc, logins = stocked
    priya = who(svc, logins, "priya")
    request = signal_request(_signal(Action.SELL, "1530.00"), 7, 10, False)
    assert (request.side, request.product, request.price) == (
        Side.SELL, Product.MIS, Decimal("1500.00"))
    at = AppTest.from_function(_signal_panel, args=(priya, _signal(Action.HOLD, "1450.00")),
                               default_timeout=30).run()
    assert not at.exception and not at.button


# ----------------------------------------------------------------------------------------------
# Family and strategy MTM limits
# ----------------------------------------------------------------------------------------------


def test_an_admin_sets_the_familys_mtm_limits_and_a_trader_only_a_strategys(desk) -> None:
    svc, logins = desk
    at = on_risk(desk, "rahul")
    assert at.radio(key="risk_mtm_scope").options == ["Whole family", "A strategy"]
    at.radio(key="risk_mtm_scope").set_value("Whole family")
    at.number_input(key="risk_mtm_stop").set_value(25000.0)
    at.button(key="risk_mtm_save").click().run()
    assert not at.exception and not errors(at), errors(at)
    assert "MTM limits of the whole family saved." in texts(at)
    views = svc.risk.mtm_limits(who(svc, logins, "rahul"))
    assert [(v.scope, v.stop_loss, v.target) for v in views] == [
        (Scope.HOUSEHOLD, Decimal("25000.0"), None)]
    trader = on_risk(desk, "priya")
    assert trader.radio(key="risk_mtm_scope").options == ["A strategy"]
    trader.text_input(key="risk_mtm_strategy").set_value("bad tag!")
    trader.number_input(key="risk_mtm_target").set_value(5000.0)
    trader.button(key="risk_mtm_save").click().run()
    assert "bad tag!" in errors(trader)  # the rule and the value, nothing saved
    assert len(svc.risk.mtm_limits(who(svc, logins, "rahul"))) == 1
    viewer = on_risk(desk, "aarav")
    assert "risk_mtm_save" not in keys(viewer)
    with pytest.raises(PermissionDenied):
        svc.risk.set_mtm_limit(who(svc, logins, "aarav"), Scope.STRATEGY, "momo",
                               stop_loss=Decimal(1000), target=None)


def test_re_enable_lifts_the_picked_stop_even_if_it_was_lifted_since_never_another(
        desk) -> None:
    svc, logins = desk
    rahul = who(svc, logins, "rahul")
    first, picked = (svc.risk.panic(rahul, Scope.ACCOUNT, account_id=account(svc, rahul, label).id)
                     for label in ("Priya · Trading", "Rahul · Intraday"))
    at = on_risk(desk, "rahul")
    at.selectbox(key="risk_reenable_state").set_value(picked.state_id)
    svc.risk.reenable(rahul, picked.state_id, "from another tab")

    at.button(key="risk_reenable_go").click().run()

    assert not at.exception
    assert f"Risk state {picked.state_id} was already lifted" in errors(at)
    phases = {row.id: row.phase for row in state_rows(svc)}
    assert phases == {first.state_id: StatePhase.ACTIVE, picked.state_id: StatePhase.CLEARED}


def test_controls_are_refused_on_a_position_that_closed_after_it_was_picked(holding) -> None:
    svc, logins = holding
    priya = who(svc, logins, "priya")
    trading = account(svc, priya, "Priya · Trading").id
    for side in (Side.BUY, Side.SELL):  # long TCS, then (after the pick) flat again
        svc.orders.place(priya, OrderRequest(trading, "TCS", side, 2, OrderType.MARKET,
                                             Product.MIS))
        tick(svc.db, "TCS", "3000.00")
        svc.orders.step()
        if side is Side.BUY:
            at = on_risk(holding, "priya", show="Priya · Trading")
            at.selectbox(key="risk_control_position").set_value("TCS · MIS")
            at.number_input(key="risk_control_stop").set_value(2900.0)

    at.button(key="risk_control_set").click().run()

    assert not at.exception
    assert errors(at) == ("The position TCS · MIS has closed since you picked it: nothing to "
                          "control.")
    assert svc.risk.controls(priya) == []  # not set on the INFY position either
