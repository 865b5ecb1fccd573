"""The Telegram bot: its replies over the real services, then the real bot against a fake API.

The first part asks :class:`core.services.telegram_replies.TelegramReplies` directly (what each
command answers for each role, on SQLite and PostgreSQL); the second runs the real
python-telegram-bot Application of :mod:`jobs.telegram_bot` against
``tests.support.fake_bot_api.FakeBotApi`` on 127.0.0.1, through ``TELEGRAM_BASE_URL``.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select, update

from core.alert_types import AlertType, Mode
from core.clock import now_ist
from core.config import PROJECT_ROOT
from core.domain import Actor
from core.errors import PermissionDenied, ValidationError
from core.services import Services
from core.services.telegram_replies import REFUSAL, PanicPlan, TelegramReplies
from core.services.worker import WorkerWatch
from core.trading import OrderRequest, OrderStatus, OrderType, Product, Side
from db.engine import Database
from db.models import (
    AlertOutboxRow,
    HouseholdRow,
    OrderRow,
    RiskStateRow,
    SignalRow,
    WorkerLockRow,
)
from engines.model import ModelConfig
from engines.risk_types import Scope, StateKind, StatePhase
from engines.signal_types import Action, Direction, Regime
from jobs import telegram_commands
from jobs.telegram_bot import RedactTokens, TelegramBotProcess
from tests.conftest import TEST_SECRET, make_settings
from tests.support.fake_bot_api import DEFAULT_TOKEN, FakeBotApi, SentMessage
from tests.support.market import load_instruments, open_market, tick
from tests.support.telegram_links import link_code

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


def test_positions_say_their_mtm_is_before_charges_unlike_pnl(
    replies: TelegramReplies, login, trading_day,
) -> None:
    text = _text(replies.positions(login("priya")))
    assert "MTM: realized + unrealized P&L before charges" in text
    assert "/pnl nets the charges" in text


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
    rahul_orders = _text(replies.orders(login("rahul")))
    intraday = rahul_orders[rahul_orders.index("Rahul · Intraday"):]
    assert intraday.index("B TCS") < intraday.index("B INFY")  # open orders first
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


def test_signals_from_a_real_scan_carry_the_model_s_measured_figures_and_edge(
    demo_url: str, tmp_path: Path, login,
) -> None:
    svc = Services(Database(demo_url), make_settings(demo_url, model_dir=tmp_path / "models"))
    svc.models.cfg = ModelConfig(n_rounds=12)
    load_instruments(svc.db)
    for symbol in ("INFY", "TCS", "SBIN", "HDFCBANK"):
        frame = pd.read_csv(PROJECT_ROOT / "data" / "sample" / "nse_daily" / f"{symbol}.csv")
        path = tmp_path / f"{symbol}.csv"
        frame[frame["timestamp"].str[:10] <= "2025-06-30"].to_csv(path, index=False)
        svc.marketdata.import_file(path, symbol=symbol, interval="1d")
    svc.models.train_as("test", activate=True)
    aarav = login("aarav")
    svc.signals.scan(aarav)
    reply = svc.telegram_replies.signals(aarav)
    svc.db.dispose()
    text = _text(reply)
    assert text.startswith("Signals · bar of 2025-06-30")
    assert "Long setups: AUC" in text and "The edge is small" in text
    assert max(_pre_widths(reply), default=0) <= 36


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
    assert "ok · disable" in text
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
    assert "Signals from probability: 0.00" in text and "Do not disturb: off" in text
    changed = _text(replies.change_setting(kamla, "SIGNAL", "Silent"))
    line = next(x for x in changed.splitlines() if x.startswith("New high"))
    assert line.split()[-1] == "silent"
    assert max(_pre_widths(replies.settings_text(kamla))) <= 36


def test_settings_show_the_signal_threshold_with_every_decimal_it_is_stored_with(
    services: Services, replies: TelegramReplies, login,
) -> None:
    kamla = login("kamla")
    services.telegram.update_prefs(kamla, signal_min_probability=Decimal("0.755"))
    assert "Signals from probability: 0.755" in _text(replies.settings_text(kamla))
    services.telegram.update_prefs(kamla, signal_min_probability=Decimal("0.5"))
    assert "Signals from probability: 0.50" in _text(replies.settings_text(kamla))


def test_an_unknown_alert_type_or_mode_is_refused_naming_the_choices(
    replies: TelegramReplies, login,
) -> None:
    with pytest.raises(ValidationError, match="Unknown alert type 'orders'"):
        replies.change_setting(login("aarav"), "orders", "off")
    with pytest.raises(ValidationError, match="Unknown mode 'loud'; choose one of on, silent"):
        replies.change_setting(login("aarav"), "signal", "loud")


# ----------------------------------------------------------------------------------------------
# The real bot against the fake Bot API
# ----------------------------------------------------------------------------------------------

TOKEN = DEFAULT_TOKEN
OTHER_TOKEN = "987654321:BBF-another-fake-token-for-tests-11111"
ALLOWED_TAGS = frozenset({"b", "i", "code", "pre"})
CHATS = {"rahul": 5001, "priya": 5002, "kamla": 5003, "aarav": 5004}
STRANGER = 6666


class _TagCheck(HTMLParser):
    """Checks Telegram HTML: only the tags the bot uses, each closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in ALLOWED_TAGS, tag
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open.pop() == tag, tag


def _valid_html(text: str) -> None:
    check = _TagCheck()
    check.feed(text)
    check.close()
    assert not check.open, text


class RunningBot:
    """``TelegramBotProcess`` on its own thread and event loop, stopped on exit."""

    def __init__(self, process: TelegramBotProcess) -> None:
        self.process = process
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.thread = threading.Thread(target=self._run, name="test-telegram-bot")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.process.run(self.stop))
        self.loop.close()

    def __enter__(self) -> RunningBot:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "the bot process did not stop"


def _bot_services(url: str, base_url: str, token: str | None = TOKEN,
                  **settings: object) -> Services:
    return Services(Database(url), make_settings(url, telegram_bot_token=token,
                                                 telegram_base_url=base_url, **settings))


@pytest.fixture
def fake() -> Iterator[FakeBotApi]:
    with FakeBotApi(tokens=(TOKEN, OTHER_TOKEN)) as api:
        yield api


@pytest.fixture
def bot(services: Services, demo_url: str, fake: FakeBotApi) -> Iterator[Services]:
    """The bot process running over the demo desk (the env token), polling the fake."""
    bot_services = _bot_services(demo_url, fake.base_url)
    process = TelegramBotProcess(bot_services, recheck_s=0.3, watch_s=3600, poll_timeout=1,
                                 dispatcher_factory=lambda _process: None)
    with RunningBot(process):
        fake.wait_for(lambda: (TOKEN, "getUpdates") in fake.calls)
        yield bot_services
    bot_services.db.dispose()


def ask(fake: FakeBotApi, chat: int, text: str, replies: int = 1,
        from_id: int | None = None) -> list[SentMessage]:
    """Send ``text`` in ``chat``; return the bot's next ``replies`` messages to it.

    ``from_id``: who writes (default the chat's own user, as in a private chat).
    """
    before = len(fake.messages_to(chat))
    fake.push_message(chat, text, username=f"user{chat}", from_id=from_id)
    fake.wait_for(lambda: len(fake.messages_to(chat)) >= before + replies)
    new = fake.messages_to(chat)[before:]
    for message in new:
        assert message.parse_mode == "HTML"
        _valid_html(message.text)
    return new


def link(services: Services, fake: FakeBotApi, actor: Actor, chat: int) -> str:
    code = link_code(services, actor).code
    return _text(ask(fake, chat, f"/start {code}")[0].text)


def test_a_member_links_her_chat_with_a_fresh_code_and_the_bot_names_her(
    services: Services, bot: Services, fake: FakeBotApi, login,
) -> None:
    priya = login("priya")
    reply = link(services, fake, priya, CHATS["priya"])
    assert "Telegram linked" in reply and "Priya Sharma" in reply and "/pnl" in reply
    status = bot.telegram.link_status(priya)  # a desk whose TELEGRAM_BOT_TOKEN is the bot's
    assert status.linked and status.telegram_username == f"user{CHATS['priya']}"
    assert status.bot_username == "sher_test_bot"  # what getMe said, for the Alerts page
    assert [c["command"] for c in fake.commands[TOKEN]][:3] == ["pnl", "positions", "orders"]


def test_an_expired_code_and_a_reused_code_are_refused_with_the_rule(
    services: Services, bot: Services, fake: FakeBotApi, login,
) -> None:
    kamla = login("kamla")
    old = link_code(services, kamla, now=now_ist() - timedelta(minutes=11))
    reply = _text(ask(fake, CHATS["kamla"], f"/start {old.code}")[0].text)
    assert f"Link code {old.code} expired at" in reply and "IST" in reply
    assert not services.telegram.link_status(kamla).linked
    code = link_code(services, kamla).code
    assert "Telegram linked" in _text(ask(fake, CHATS["kamla"], f"/start {code}")[0].text)
    again = _text(ask(fake, STRANGER, f"/start {code}")[0].text)
    assert f"Link code {code} was already used" in again
    assert services.telegram.actor_for_chat(STRANGER, None) is None


def test_an_unlinked_chat_gets_only_the_polite_refusal_whatever_it_sends(
    bot: Services, fake: FakeBotApi, trading_day,
) -> None:
    for text in ("/pnl", "/positions", "/panic", "/status", "/settings signal off", "hello"):
        (reply,) = ask(fake, STRANGER, text)
        assert _text(reply.text) == _text(REFUSAL)
        assert reply.reply_markup is None
    fake.wait_for(lambda: True)
    assert len(fake.messages_to(STRANGER)) == 6  # one reply each, nothing more
    welcome = _text(ask(fake, STRANGER, "/start")[0].text)
    assert welcome.startswith("Welcome to SHER. To link this chat") and "/start CODE" in welcome


@pytest.mark.parametrize("username", ROLES)
def test_every_command_answers_each_role_with_what_it_may_see(
    services: Services, bot: Services, fake: FakeBotApi, login, trading_day, username: str,
) -> None:
    chat = CHATS[username]
    link(services, fake, login(username), chat)
    answers = {command: _text(ask(fake, chat, f"/{command}")[0].text)
               for command in ("help", "pnl", "positions", "orders", "signals", "strategies",
                               "status", "settings")}
    assert answers["help"].startswith("SHER for")
    assert "Strategies" in answers["strategies"] and "Status" in answers["status"]
    assert "Alert settings" in answers["settings"]
    sees_priya = username in ("rahul", "priya")
    assert ("SBIN" in answers["positions"]) is sees_priya
    assert ("Priya · Trading" in answers["pnl"]) is sees_priya
    assert ("TCS" in answers["orders"]) is (username == "rahul")
    assert "Something went wrong" not in "".join(answers.values())


def test_settings_change_one_type_through_the_bot(
    services: Services, bot: Services, fake: FakeBotApi, login,
) -> None:
    aarav = login("aarav")
    link(services, fake, aarav, CHATS["aarav"])
    reply = _text(ask(fake, CHATS["aarav"], "/settings order_filled silent")[0].text)
    assert "Alert settings" in reply
    prefs = services.telegram.notification_prefs(aarav)
    assert prefs.mode(AlertType.ORDER_FILLED) is Mode.SILENT
    wrong = _text(ask(fake, CHATS["aarav"], "/settings order_filled")[0].text)
    assert "takes no words or two" in wrong


def test_unlink_stops_the_chat_from_answering(
    services: Services, bot: Services, fake: FakeBotApi, login,
) -> None:
    kamla = login("kamla")
    link(services, fake, kamla, CHATS["kamla"])
    assert "Telegram unlinked" in _text(ask(fake, CHATS["kamla"], "/unlink")[0].text)
    assert not services.telegram.link_status(kamla).linked
    assert _text(ask(fake, CHATS["kamla"], "/pnl")[0].text) == _text(REFUSAL)


def test_an_unexpected_error_is_a_plain_apology_and_one_log_line_without_secrets(
    services: Services, bot: Services, fake: FakeBotApi, login,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    link(services, fake, login("priya"), CHATS["priya"])

    def broken(_actor: Actor) -> str:
        raise RuntimeError(f"connection to http://x/bot{TOKEN}/getMe reset\nsecond line")

    monkeypatch.setattr(bot.telegram_replies, "pnl", broken)
    (reply,) = ask(fake, CHATS["priya"], "/pnl")
    assert _text(reply.text) == telegram_commands.SOMETHING_WRONG
    lines = [r.getMessage() for r in caplog.records if r.name == "sher.telegram.commands"]
    assert len(lines) == 1 and "/pnl" in lines[0] and "RuntimeError" in lines[0]
    assert TOKEN not in lines[0] and "second line" not in lines[0]


def _buttons(message: SentMessage) -> dict[str, str]:
    rows = message.reply_markup["inline_keyboard"]
    return {button["text"]: button["callback_data"] for row in rows for button in row}


def _press(fake: FakeBotApi, chat: int, message: SentMessage, label: str,
           from_chat: int | None = None) -> None:
    before = len(fake.callback_answers)
    fake.push_callback(from_chat or chat, message.message_id, _buttons(message)[label])
    fake.wait_for(lambda: len(fake.callback_answers) > before)


def _states(services: Services) -> list[RiskStateRow]:
    with services.db.transaction() as session:
        return list(session.scalars(select(RiskStateRow)))


def test_a_confirmed_panic_stops_the_member_s_account_and_reports_each_step_once(
    services: Services, bot: Services, fake: FakeBotApi, login, trading_day,
) -> None:
    _mine, hers = trading_day
    chat = CHATS["priya"]
    link(services, fake, login("priya"), chat)
    (question,) = ask(fake, chat, "/panic")
    assert "Priya · Trading" in _text(question.text)
    assert set(_buttons(question)) == {"Confirm panic", "Cancel"}
    before = len(fake.messages_to(chat))
    fake.fail_next("sendMessage", times=1, retry_after=1, chat_id=chat)  # the report: a 429
    _press(fake, chat, question, "Confirm panic")
    fake.wait_for(lambda: len(fake.messages_to(chat)) > before, timeout=30)
    (sent,) = fake.messages_to(chat)[before:]  # sent once, after the wait
    assert len([r for r in fake.rejected if r.get("chat_id") == chat]) == 1
    report = _text(sent.text)
    assert report.startswith("Panic done")
    assert "ok · cancel order" in report and "ok · close SBIN MIS +20" in report
    assert any("Panic confirmed by Priya Sharma" in e.get("text", "") for e in fake.edits)
    (state,) = _states(services)
    assert (state.kind, state.account_id, state.phase) == (StateKind.PANIC, hers,
                                                           StatePhase.ACTIVE)
    with services.db.transaction() as session:
        resting = session.scalars(select(OrderRow.status).where(
            OrderRow.account_id == hers, OrderRow.price.is_not(None))).all()
    assert list(resting) == [OrderStatus.CANCELLED]
    edits = len(fake.edits)
    _press(fake, chat, question, "Confirm panic")  # the same button again: a popup, nothing more
    assert re.fullmatch(r"Already confirmed at \d\d:\d\d IST",
                        fake.callback_answers[-1].get("text", ""))
    time.sleep(0.3)
    assert len(fake.edits) == edits
    assert "Panic confirmed by Priya Sharma" in fake.edits[-1]["text"]
    assert len(_states(services)) == 1


def test_a_cancelled_panic_does_nothing_even_when_confirm_is_pressed_later(
    services: Services, bot: Services, fake: FakeBotApi, login, trading_day,
) -> None:
    chat = CHATS["rahul"]
    link(services, fake, login("rahul"), chat)
    (question,) = ask(fake, chat, "/panic")
    assert "whole household" in _text(question.text)
    _press(fake, chat, question, "Cancel")
    fake.wait_for(lambda: any("Panic cancelled" in e.get("text", "") for e in fake.edits))
    edits = len(fake.edits)
    _press(fake, chat, question, "Confirm panic")  # a late tap: a popup, the message stays
    assert re.fullmatch(r"Already cancelled at \d\d:\d\d IST",
                        fake.callback_answers[-1].get("text", ""))
    time.sleep(0.3)
    assert len(fake.edits) == edits
    assert _states(services) == []


def test_a_viewer_s_panic_is_refused_and_no_keyboard_is_offered(
    services: Services, bot: Services, fake: FakeBotApi, login,
) -> None:
    chat = CHATS["aarav"]
    link(services, fake, login("aarav"), chat)
    (reply,) = ask(fake, chat, "/panic")
    assert "'viewer' may not press panic" in _text(reply.text)
    assert reply.reply_markup is None
    assert _states(services) == []


def test_a_panic_button_pressed_from_another_chat_or_too_late_does_nothing(
    services: Services, bot: Services, fake: FakeBotApi, login, trading_day,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chat = CHATS["priya"]
    link(services, fake, login("priya"), chat)
    (question,) = ask(fake, chat, "/panic")
    _press(fake, chat, question, "Confirm panic", from_chat=STRANGER)
    assert "asked to someone else" in fake.callback_answers[-1].get("text", "")
    assert _states(services) == []
    monkeypatch.setattr(telegram_commands, "PANIC_CONFIRM_S", 0.2)
    time.sleep(0.3)
    _press(fake, chat, question, "Confirm panic")
    fake.wait_for(lambda: any("expired" in e.get("text", "") for e in fake.edits))
    assert _states(services) == []


def test_a_refused_token_is_one_log_line_without_the_token_and_other_bots_still_run(
    services: Services, demo_url: str, login, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with FakeBotApi(tokens=(OTHER_TOKEN,)) as api:
        services.telegram.set_bot_token(login("rahul"), OTHER_TOKEN)
        bot_services = _bot_services(demo_url, api.base_url)  # env TOKEN: unknown to the fake
        process = TelegramBotProcess(bot_services, recheck_s=0.2, watch_s=3600,
                                     poll_timeout=1, retry_base_s=60,
                                     dispatcher_factory=lambda _process: None)
        with RunningBot(process):
            api.wait_for(lambda: (OTHER_TOKEN, "getUpdates") in api.calls)
            time.sleep(1.0)  # several re-checks: the refused bot waits out its 60 s
            chat = CHATS["kamla"]
            code = link_code(services, login("kamla")).code
            api.push_message(chat, f"/start {code}")
            api.wait_for(lambda: bool(api.messages_to(chat)))
        bot_services.db.dispose()
    refused = [r for r in caplog.records if "refused the token" in r.getMessage()]
    assert len(refused) == 1
    assert "TELEGRAM_BOT_TOKEN bot" in refused[0].getMessage()
    ours = [r for r in caplog.records if r.name.startswith("sher")]
    assert not any(TOKEN in r.getMessage() or OTHER_TOKEN in r.getMessage() for r in ours)
    assert not any(r.exc_info for r in ours)
    assert "Telegram linked" in _text(api.messages_to(CHATS["kamla"])[0].text)


def test_a_refused_token_is_retried_with_a_doubling_wait(
    services: Services, demo_url: str,
) -> None:
    with FakeBotApi(tokens=(OTHER_TOKEN,)) as api:
        bot_services = _bot_services(demo_url, api.base_url)  # TOKEN: refused by this fake
        process = TelegramBotProcess(bot_services, recheck_s=0.05, watch_s=3600,
                                     poll_timeout=1, retry_base_s=0.2,
                                     dispatcher_factory=lambda _process: None)
        with RunningBot(process):
            time.sleep(2.0)  # waits 0.2, 0.4, 0.8 ... s: about 4 tries, not the 40 re-checks
        bot_services.db.dispose()
    tries, _retry_at = process.failures[TOKEN]
    assert 3 <= tries <= 6, tries


def test_no_network_at_start_is_one_log_line_and_a_later_retry(
    services: Services, demo_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bot_services = _bot_services(demo_url, f"http://127.0.0.1:{port}/bot")
    process = TelegramBotProcess(bot_services, recheck_s=0.1, watch_s=3600, poll_timeout=1,
                                 retry_base_s=60, dispatcher_factory=lambda _process: None)
    with RunningBot(process):
        deadline = time.monotonic() + 10
        while TOKEN not in process.failures and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
    bot_services.db.dispose()
    lines = [r.getMessage() for r in caplog.records if "is not running" in r.getMessage()]
    assert len(lines) == 1 and "NetworkError" in lines[0] and "trying again in 60 s" in lines[0]
    assert TOKEN not in lines[0]


def test_a_token_revoked_while_polling_stops_its_bot_and_is_retried_later(
    services: Services, demo_url: str, fake: FakeBotApi, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    bot_services = _bot_services(demo_url, fake.base_url)
    process = TelegramBotProcess(bot_services, recheck_s=0.2, watch_s=3600, poll_timeout=1,
                                 retry_base_s=60, dispatcher_factory=lambda _process: None)
    with RunningBot(process):
        fake.wait_for(lambda: TOKEN in process.runners)
        fake.fail_next("getMe", times=1000, error_code=401, description="Unauthorized")
        fake.wait_for(lambda: not process.runners)
        time.sleep(0.6)  # more re-checks: the next try waits its 60 s
    bot_services.db.dispose()
    refused = [r.getMessage() for r in caplog.records if "refused the token" in r.getMessage()]
    assert refused == ["the TELEGRAM_BOT_TOKEN bot is not running: Telegram refused the token "
                       "(401 Unauthorized): check it on the Alerts page or TELEGRAM_BOT_TOKEN; "
                       "trying again in 60 s"]
    assert process.failures[TOKEN][0] == 1


def test_a_token_added_changed_and_cleared_starts_and_stops_its_bot_without_a_restart(
    services: Services, demo_url: str, fake: FakeBotApi, login,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    bot_services = _bot_services(demo_url, fake.base_url, token=None)
    process = TelegramBotProcess(bot_services, recheck_s=0.2, watch_s=3600, poll_timeout=1,
                                 dispatcher_factory=lambda _process: None)
    rahul = login("rahul")
    with RunningBot(process):
        time.sleep(0.8)
        assert fake.calls == []
        services.telegram.set_bot_token(rahul, OTHER_TOKEN)
        fake.wait_for(lambda: (OTHER_TOKEN, "getUpdates") in fake.calls)
        assert process.bot_for(rahul.household_id) is not None
        services.telegram.set_bot_token(rahul, TOKEN)  # changed: the old bot stops
        fake.wait_for(lambda: (TOKEN, "getUpdates") in fake.calls)
        fake.wait_for(lambda: list(process.runners) == [TOKEN])
        services.telegram.clear_bot_token(rahul)
        fake.wait_for(lambda: not process.runners)
        assert process.bot_for(rahul.household_id) is None
    bot_services.db.dispose()
    idle = [r for r in caplog.records if "no Telegram bot is configured" in r.getMessage()]
    assert len(idle) == 1


def test_the_process_polls_until_sigterm_then_stops_cleanly_without_logging_the_token(
    demo_url: str, fake: FakeBotApi,
) -> None:
    env = {**os.environ, "DATABASE_URL": demo_url, "SECRET_KEY": TEST_SECRET,
           "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_BASE_URL": fake.base_url,
           "ALERT_CHANNEL": "log"}
    proc = subprocess.Popen([sys.executable, "-m", "jobs.telegram_bot"], cwd=PROJECT_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        fake.wait_for(lambda: (TOKEN, "getUpdates") in fake.calls, timeout=60)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "TELEGRAM_BOT_TOKEN bot (@sher_test_bot) is polling" in out
    assert "telegram bot process stopped" in out
    assert TOKEN not in out and "Traceback" not in out


def test_the_process_log_filter_blanks_tokens_in_messages_and_tracebacks() -> None:
    try:
        raise ValueError(f"The token `{TOKEN}` was rejected by the server.")
    except ValueError:
        record = logging.LogRecord("telegram", logging.ERROR, __file__, 1, "POST %s/getMe",
                                   (f"http://x/bot{TOKEN}",), sys.exc_info())
    assert RedactTokens().filter(record)
    assert record.getMessage() == "POST http://x/bot<token>/getMe"
    assert record.exc_text is not None and TOKEN not in record.exc_text
    assert "The token `<token>` was rejected" in record.exc_text


# ----------------------------------------------------------------------------------------------
# The worker watch
# ----------------------------------------------------------------------------------------------


def _age_heartbeat(services: Services, seconds: float) -> None:
    with services.db.transaction() as session:
        session.execute(update(WorkerLockRow).values(
            heartbeat_at=now_ist() - timedelta(seconds=seconds)))


def _worker_alerts(services: Services) -> list[tuple[str, str]]:
    with services.db.transaction() as session:
        return [tuple(r) for r in session.execute(
            select(AlertOutboxRow.kind, AlertOutboxRow.severity).where(
                AlertOutboxRow.kind.like("worker.%")).order_by(AlertOutboxRow.id))]


def test_a_worker_down_for_a_minute_alerts_each_household_once_and_again_when_back(
    services: Services,
) -> None:
    watch = WorkerWatch(services.worker)
    assert watch.check() is None  # never started: no episode to name
    services.worker.acquire("worker-a")
    assert watch.check() is None
    _age_heartbeat(services, 30)
    assert watch.check() is None  # silent, but not for a minute yet
    _age_heartbeat(services, 90)
    assert watch.check() == "down"
    assert watch.check() is None
    assert WorkerWatch(services.worker).check() == "down"  # a restarted bot: the same episode...
    with services.db.transaction() as session:
        households = len(session.scalars(select(HouseholdRow.id)).all())
    assert _worker_alerts(services) == [("worker.down", "warning")] * households  # ...once
    services.worker.beat("worker-a")
    assert watch.check() == "up"
    assert watch.check() is None
    assert _worker_alerts(services) == ([("worker.down", "warning")] * households
                                        + [("worker.up", "info")] * households)



def test_with_alerts_on_telegram_a_worker_down_alert_reaches_each_linked_member(
    services: Services, demo_url: str, fake: FakeBotApi, login,
) -> None:
    rahul, kamla = login("rahul"), login("kamla")
    bot_services = _bot_services(demo_url, fake.base_url, alert_channel="telegram")
    process = TelegramBotProcess(bot_services, recheck_s=0.3, watch_s=0.2, poll_timeout=1)
    services.worker.acquire("worker-a")
    with RunningBot(process):
        fake.wait_for(lambda: (TOKEN, "getUpdates") in fake.calls)
        link(services, fake, rahul, CHATS["rahul"])
        link(services, fake, kamla, CHATS["kamla"])
        _age_heartbeat(services, 90)
        for chat in (CHATS["rahul"], CHATS["kamla"]):
            fake.wait_for(lambda chat=chat: any(
                "Worker down" in m.text for m in fake.messages_to(chat)), timeout=20)
        services.worker.beat("worker-a")
        fake.wait_for(lambda: any("Worker back" in m.text
                                  for m in fake.messages_to(CHATS["kamla"])), timeout=20)
    bot_services.db.dispose()
    assert sum("Worker down" in m.text for m in fake.messages_to(CHATS["rahul"])) == 1
    with services.db.transaction() as session:
        statuses = set(session.scalars(select(AlertOutboxRow.status).where(
            AlertOutboxRow.kind.like("worker.%"))))
    assert statuses == {"sent"}
