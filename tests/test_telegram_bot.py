"""The Telegram bot: its replies over the real services, then the real bot against a fake API.

The first part asks :class:`core.services.telegram_replies.TelegramReplies` directly (what each
command answers for each role, on SQLite and PostgreSQL); the second runs the real
python-telegram-bot Application of :mod:`jobs.telegram_bot` against
``tests.support.fake_bot_api.FakeBotApi`` on 127.0.0.1, through ``TELEGRAM_BASE_URL``.
"""

from __future__ import annotations

import html
import re
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from core.clock import now_ist
from core.errors import PermissionDenied, ValidationError
from core.services import Services
from core.services.telegram_replies import PanicPlan, TelegramReplies
from core.trading import OrderRequest, OrderStatus, OrderType, Product, Side
from db.models import OrderRow, RiskStateRow, SignalRow
from engines.risk_types import Scope, StateKind, StatePhase
from engines.signal_types import Action, Direction, Regime
from tests.support.market import open_market, tick

pytestmark = pytest.mark.usefixtures("backend")
PRICES = {"INFY": "1500.00", "TCS": "3000.00", "SBIN": "800.00"}
ROLES = ("rahul", "priya", "kamla", "aarav")


def _text(reply: str) -> str:
    """Return a reply as a person reads it (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", reply))


def _pre_widths(reply: str) -> list[int]:
    blocks = re.findall(r"<pre>(.*?)</pre>", reply, flags=re.DOTALL)
    return [len(line) for block in blocks for line in html.unescape(block).split("\n")]


@pytest.fixture
def replies(services: Services) -> TelegramReplies:
    open_market(services.db, PRICES)
    return services.telegram_replies


@pytest.fixture
def labels(services: Services, login) -> dict[str, int]:
    return {a.label: a.id for a in services.household.list_accounts(login("rahul"))}


def _order(account: int, symbol: str, side: Side, quantity: int,
           price: str | None = None) -> OrderRequest:
    return OrderRequest(account, symbol, side, quantity,
                        OrderType.LIMIT if price else OrderType.MARKET, Product.MIS,
                        price=Decimal(price) if price else None)


#: The trading day: (who, account, symbol, side, quantity, limit price or market).
DAY = (("rahul", "Rahul · Intraday", "INFY", Side.BUY, 10, None),
       ("rahul", "Rahul · Intraday", "TCS", Side.BUY, 5, "2900.00"),
       ("priya", "Priya · Trading", "SBIN", Side.BUY, 20, None),
       ("priya", "Priya · Trading", "INFY", Side.BUY, 10, "1400.00"))


@pytest.fixture
def trading_day(services: Services, replies: TelegramReplies, login, labels):
    """Rahul and Priya each hold a position and a resting order; SBIN then rises."""
    actors = {name: login(name) for name in ("rahul", "priya")}
    for who, label, symbol, side, quantity, price in DAY:
        services.orders.place(actors[who], _order(labels[label], symbol, side, quantity, price))
    tick(services.db, "INFY", "1501.00")
    tick(services.db, "SBIN", "801.00")
    services.orders.step()
    tick(services.db, "SBIN", "811.00")
    return labels["Rahul · Intraday"], labels["Priya · Trading"]


# ----------------------------------------------------------------------------------------------
# Replies, per command and role
# ----------------------------------------------------------------------------------------------


def test_every_reply_fits_a_phone_for_every_role(replies: TelegramReplies, login,
                                                  trading_day) -> None:
    for username in ROLES:
        actor = login(username)
        for reply in (replies.help(actor), replies.positions(actor), replies.orders(actor),
                      replies.signals(actor), replies.strategies(actor), replies.status(actor)):
            assert max(_pre_widths(reply), default=0) <= 36, (username, reply)
            assert len(reply) <= 4096


def test_pnl_shows_today_and_the_week_per_viewable_account_and_their_total(
    replies: TelegramReplies, login, trading_day,
) -> None:
    rahul_text = _text(replies.pnl(login("rahul")))
    for label in ("Rahul · Long-term", "Rahul · Intraday", "Priya · Trading", "Kamla · Pension"):
        assert label[:10] in rahul_text
    assert "Total" in rahul_text and "Week: since Monday" in rahul_text
    priya_text = _text(replies.pnl(login("priya")))
    assert "Priya · Trading" in priya_text and "Rahul · Long-term"[:10] in priya_text
    assert "Kamla" not in priya_text and "Intraday" not in priya_text
    # Priya bought 20 SBIN at 801 (plus charges) and it trades at 811: today is up ~₹200
    line = next(x for x in priya_text.splitlines() if x.startswith("Priya"))
    today = Decimal(line.split()[-2].replace(",", "").lstrip("+"))
    assert Decimal("150") < today < Decimal("200")


def test_a_member_without_accounts_is_told_so_by_the_portfolio_service(
    services: Services, replies: TelegramReplies, login,
) -> None:
    kamla = login("kamla")
    assert "Kamla · Pension" in _text(replies.pnl(kamla))  # she owns one
    assert "No positions" in _text(replies.positions(kamla))


def test_positions_and_orders_show_only_what_the_role_may_view(
    replies: TelegramReplies, login, trading_day,
) -> None:
    rahul = _text(replies.positions(login("rahul")))
    assert "INFY" in rahul and "SBIN" in rahul
    priya = _text(replies.positions(login("priya")))
    assert "SBIN" in priya and "+20" in priya and "INFY" not in priya
    assert "No positions" in _text(replies.positions(login("aarav")))
    orders = _text(replies.orders(login("priya")))
    assert "1 open" in orders and "B SBIN" in orders and "B INFY" in orders
    assert "TCS" not in orders
    assert "TCS" in _text(replies.orders(login("rahul")))
    assert "No open orders" in _text(replies.orders(login("aarav")))


def test_a_rejected_order_shows_its_reason(services: Services, replies: TelegramReplies, login,
                                           labels) -> None:
    priya = login("priya")
    order = services.orders.place(priya, _order(labels["Priya · Trading"], "INFY", Side.BUY, 1,
                                                "1500.00"))
    with services.db.transaction() as session:
        row = session.get(OrderRow, order.id)
        assert row is not None
        row.status, row.rejection_reason = OrderStatus.REJECTED, "RMS: margin shortfall"
    text = _text(replies.orders(priya))
    assert "REJECT" in text and "RMS: margin shortfall" in text and "0 open" in text


def _journal(services: Services, symbol: str, action: Action, probability: str,
             days_ago: int = 0) -> None:
    bar = (now_ist() - timedelta(days=days_ago)).replace(hour=0, minute=0, second=0,
                                                         microsecond=0)
    direction = {Action.BUY: Direction.LONG, Action.SELL: Direction.SHORT}.get(action,
                                                                                Direction.FLAT)
    with services.db.transaction() as session:
        session.add(SignalRow(
            trace_id=f"t-{symbol}-{days_ago}", symbol=symbol, bar_time=bar,
            generated_by="test", action=action, direction=direction,
            probability=Decimal(probability), confidence=Decimal("0.5"), entry=Decimal("100.05"),
            stop_loss=Decimal("95"), target1=Decimal("105"), target2=Decimal("110"),
            target3=Decimal("115"), risk_reward=Decimal("1.5"), regime=Regime.TRENDING,
            agreement=2, voters=3, evidence="[]", model_version="v-test", horizon_bars=10))


def test_signals_list_the_newest_bar_s_actionable_ones_by_probability_with_a_caveat(
    services: Services, replies: TelegramReplies, login,
) -> None:
    assert "no signal yet" in _text(replies.signals(login("aarav")))
    _journal(services, "OLD", Action.BUY, "0.99", days_ago=3)
    _journal(services, "INFY", Action.BUY, "0.61")
    _journal(services, "TCS", Action.SELL, "0.72")
    _journal(services, "SBIN", Action.HOLD, "0.90")
    text = _text(replies.signals(login("aarav")))
    assert text.index("TCS") < text.index("INFY")
    assert "OLD" not in text and "SBIN" not in text
    assert "0.72" in text and "100.05" in text
    assert "No signal model is active yet" in text  # the page's caveat: no model, no figures


def test_strategies_say_plainly_that_no_engine_exists_and_list_strategy_stops(
    services: Services, replies: TelegramReplies, login,
) -> None:
    rahul = login("rahul")
    assert "no strategy engine yet" in _text(replies.strategies(rahul))
    services.risk.panic(rahul, Scope.STRATEGY, strategy="momo")
    text = _text(replies.strategies(login("priya")))
    assert "momo: Panic (active)" in text


def test_status_names_worker_feed_market_states_and_each_account_s_loss_limit(
    services: Services, replies: TelegramReplies, login, labels,
) -> None:
    priya = login("priya")
    services.risk.panic(priya, Scope.ACCOUNT, account_id=labels["Priya · Trading"])
    text = _text(replies.status(priya))
    assert "Worker: worker not running" in text
    assert "Feed:" in text and "Market:" in text
    assert "Panic · Priya · Trading · active" in text
    assert "Daily loss limits" in text and "Kamla" not in text
    assert "No risk state stops trading" in _text(replies.status(login("kamla")))


# ----------------------------------------------------------------------------------------------
# Panic through the replies
# ----------------------------------------------------------------------------------------------


def test_an_admin_s_panic_plan_is_the_household_and_a_member_s_her_traded_accounts(
    replies: TelegramReplies, login, labels,
) -> None:
    assert replies.panic_plan(login("rahul")) == PanicPlan(Scope.HOUSEHOLD)
    plan = replies.panic_plan(login("priya"))
    assert plan == PanicPlan(Scope.ACCOUNT, (labels["Priya · Trading"],), ("Priya · Trading",))
    assert "Priya · Trading" in _text(plan.describe())


def test_a_viewer_may_not_press_panic(services: Services, replies: TelegramReplies,
                                      login) -> None:
    with pytest.raises(PermissionDenied, match="'viewer' may not press panic"):
        replies.panic_plan(login("aarav"))
    assert "/panic" not in replies.help(login("aarav"))
    assert "/panic" in replies.help(login("kamla"))


def test_a_confirmed_panic_runs_the_risk_service_and_lists_each_step(
    services: Services, replies: TelegramReplies, login, trading_day,
) -> None:
    _mine, hers = trading_day
    priya = login("priya")
    text = _text(replies.run_panic(priya, replies.panic_plan(priya)))
    assert text.startswith("Panic done")
    assert "ok · cancel order" in text and "ok · close SBIN MIS +20" in text
    assert "ok · disable account" in text
    with services.db.transaction() as session:
        state = session.scalar(select(RiskStateRow))
        assert state is not None
        assert (state.kind, state.scope, state.account_id, state.phase) == (
            StateKind.PANIC, Scope.ACCOUNT, hers, StatePhase.ACTIVE)
        statuses = list(session.scalars(select(OrderRow.status).where(
            OrderRow.account_id == hers, OrderRow.source != "panic")))
    assert OrderStatus.OPEN not in statuses


def test_the_service_refuses_a_confirmed_panic_when_the_role_changed_since_the_plan(
    services: Services, replies: TelegramReplies, login,
) -> None:
    priya = replace(login("priya"), session_id=None)  # as the bot acts: no web session
    plan = replies.panic_plan(priya)
    services.users.set_role(login("rahul"), priya.user_id, "viewer")
    with pytest.raises(PermissionDenied):
        replies.run_panic(priya, plan)
    with services.db.transaction() as session:
        assert session.scalar(select(RiskStateRow)) is None


# ----------------------------------------------------------------------------------------------
# Alert settings through the replies
# ----------------------------------------------------------------------------------------------


def test_settings_show_every_type_s_mode_and_one_changes_by_name(
    replies: TelegramReplies, login,
) -> None:
    kamla = login("kamla")
    text = _text(replies.settings_text(kamla))
    assert "Order filled" in text and "Daily summary: 16:00 IST" in text
    assert "Signals from probability: 0.70" in text and "Do not disturb: off" in text
    changed = _text(replies.change_setting(kamla, "SIGNAL", "Silent"))
    line = next(x for x in changed.splitlines() if x.startswith("New high"))
    assert line.split()[-1] == "silent"
    assert max(_pre_widths(replies.settings_text(kamla))) <= 36


def test_an_unknown_alert_type_or_mode_is_refused_naming_the_choices(
    replies: TelegramReplies, login,
) -> None:
    with pytest.raises(ValidationError, match="Unknown alert type 'orders'"):
        replies.change_setting(login("aarav"), "orders", "off")
    with pytest.raises(ValidationError, match="Unknown mode 'loud'; choose one of on, silent"):
        replies.change_setting(login("aarav"), "signal", "loud")
