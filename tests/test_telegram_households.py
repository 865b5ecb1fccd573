"""Two households, two bots, one bot process: nothing crosses from one household to the other.

The Sharma household (the demo) and the Verma household each store their own bot token through
the service a household admin uses (encrypted). One :class:`jobs.telegram_bot.TelegramBotProcess`
serves both bots, python-telegram-bot polling one fake Bot API server that answers each token
as its own bot (tests/support/fake_bot_api).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from sqlalchemy import select

from core import alerts
from core.alert_types import DEFAULT_PREFS, AlertType
from core.domain import Actor
from core.services import Services
from core.services.telegram_replies import REFUSAL
from core.trading import OrderRequest, OrderStatus, OrderType, Product, Side
from db.engine import Database
from db.models import AlertDeliveryRow, AlertOutboxRow, OrderRow, RiskStateRow, TelegramBotRow
from jobs.telegram_bot import TelegramBotProcess
from tests.conftest import TEST_CLIENT, make_settings
from tests.support.fake_bot_api import DEFAULT_TOKEN, FakeBotApi, SentMessage
from tests.support.market import open_market, tick
from tests.test_telegram_bot import RunningBot

TOKENS = {"sharma": DEFAULT_TOKEN, "verma": "987654321:BBF-another-fake-token-for-tests-11111"}
NAMES = {TOKENS["sharma"]: "sharma_family_bot", TOKENS["verma"]: "verma_family_bot"}
CHATS = {"rahul": 8001, "priya": 8002, "vikram": 8101}
VIKRAM_PASSWORD = "Verma-household-2026!"
PRICES = {"INFY": "1500.00", "TCS": "3000.00", "SBIN": "800.00"}


def _text(message: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", message))


@dataclass(frozen=True)
class Desk:
    """Both households' people (actors) and the Verma account."""

    actors: dict[str, Actor]
    sharma: int
    verma: int
    vikram_account: int


@pytest.fixture
def desk(services: Services, login: Callable[[str], Actor]) -> Desk:
    """The demo household plus the Verma household (admin Vikram, 'Vikram · Main'), each with
    its own bot token stored by its admin."""
    ops, rahul = login("ops"), login("rahul")
    verma = services.household.create_household(ops, "Verma family")
    user = services.users.create_user(ops, "vikram", "Vikram Verma", VIKRAM_PASSWORD, "admin",
                                      relationship="self", household_id=verma.id)
    session = services.auth.login("vikram", VIKRAM_PASSWORD, TEST_CLIENT).session_id
    assert session is not None and user.member_id is not None
    vikram = services.auth.check_session(session, TEST_CLIENT)
    account = services.household.create_account(vikram, user.member_id, "Vikram · Main",
                                                 "Trading")
    services.portfolio.add_funds(vikram, account.id, Decimal("500000"), "Paper capital")
    services.telegram.set_bot_token(rahul, TOKENS["sharma"])
    services.telegram.set_bot_token(vikram, TOKENS["verma"])
    return Desk({"rahul": rahul, "priya": login("priya"), "vikram": vikram},
                rahul.household_id, verma.id, account.id)


@pytest.fixture
def fake() -> Iterator[FakeBotApi]:
    with FakeBotApi(tokens=tuple(TOKENS.values()), bot_username=NAMES) as api:
        yield api


def _run_bots(services: Services, url: str, fake: FakeBotApi,
              alert_channel: str) -> Iterator[Services]:
    """Run one bot process (no TELEGRAM_BOT_TOKEN) until both bots poll; yield its services."""
    bot_services = Services(Database(url), make_settings(
        url, telegram_bot_token=None, telegram_base_url=fake.base_url,
        alert_channel=alert_channel))
    process = TelegramBotProcess(bot_services, recheck_s=0.3, watch_s=3600, poll_timeout=1)
    try:
        with RunningBot(process):
            for token in TOKENS.values():
                fake.wait_for(lambda token=token: (token, "getUpdates") in fake.calls,
                              timeout=20)
            yield bot_services
    finally:
        bot_services.db.dispose()


@pytest.fixture
def bots(services: Services, demo_url: str, fake: FakeBotApi, desk: Desk) -> Iterator[Services]:
    """Both bots answering commands (alerts stay in the log channel)."""
    yield from _run_bots(services, demo_url, fake, "log")


@pytest.fixture
def delivering(services: Services, demo_url: str, fake: FakeBotApi,
               desk: Desk) -> Iterator[Services]:
    """Both bots, and the outbox delivered to Telegram by the same process."""
    yield from _run_bots(services, demo_url, fake, "telegram")


def ask(fake: FakeBotApi, household: str, chat: int, text: str) -> SentMessage:
    """Send ``text`` from ``chat`` to ``household``'s bot; return that bot's next reply."""
    token = TOKENS[household]
    before = len(fake.messages_to(chat))
    fake.push_message(chat, text, username=f"user{chat}", token=token)
    fake.wait_for(lambda: len(fake.messages_to(chat)) > before)
    reply = fake.messages_to(chat)[before]
    assert reply.token == token  # answered by the bot it was sent to
    return reply


def link(services: Services, fake: FakeBotApi, desk: Desk, who: str, household: str) -> str:
    code = services.telegram.create_link_code(desk.actors[who]).code
    return _text(ask(fake, household, CHATS[who], f"/start {code}").text)


def _order(account: int, symbol: str, quantity: int, price: str | None = None) -> OrderRequest:
    return OrderRequest(account, symbol, Side.BUY, quantity,
                        OrderType.LIMIT if price else OrderType.MARKET, Product.MIS,
                        price=Decimal(price) if price else None)


@pytest.fixture
def trading(services: Services, desk: Desk) -> None:
    """Sharma: Priya holds SBIN and rests an INFY order; Verma: Vikram holds TCS, rests one."""
    open_market(services.db, PRICES)
    accounts = {a.label: a.id for a in services.household.list_accounts(desk.actors["rahul"])}
    priya, vikram = desk.actors["priya"], desk.actors["vikram"]
    services.orders.place(priya, _order(accounts["Priya · Trading"], "SBIN", 20))
    services.orders.place(priya, _order(accounts["Priya · Trading"], "INFY", 10, "1400.00"))
    services.orders.place(vikram, _order(desk.vikram_account, "TCS", 5))
    services.orders.place(vikram, _order(desk.vikram_account, "TCS", 3, "2900.00"))
    tick(services.db, "SBIN", "801.00")
    tick(services.db, "TCS", "3001.00")
    services.orders.step()


def _open_orders(services: Services, account_id: int) -> int:
    with services.db.reading() as session:
        return len(session.scalars(select(OrderRow.id).where(
            OrderRow.account_id == account_id, OrderRow.status == OrderStatus.OPEN)).all())


# ----------------------------------------------------------------------------------------------


def test_each_household_s_token_is_stored_encrypted_and_its_bot_is_named_on_its_page(
    services: Services, bots: Services, desk: Desk,
) -> None:
    with services.db.reading() as session:
        sealed = list(session.scalars(select(TelegramBotRow.token_enc)))
    assert len(sealed) == 2
    assert not any(token in seal or token.partition(":")[2] in seal
                   for token in TOKENS.values() for seal in sealed)
    sharma = services.telegram.bot_info(desk.actors["priya"])
    verma = services.telegram.bot_info(desk.actors["vikram"])
    assert (sharma.source, sharma.bot_username) == ("household", "sharma_family_bot")
    assert (verma.source, verma.bot_username) == ("household", "verma_family_bot")


def test_a_code_made_in_one_household_is_refused_by_the_other_s_bot_and_links_nothing(
    services: Services, bots: Services, fake: FakeBotApi, desk: Desk,
) -> None:
    priya = desk.actors["priya"]
    code = services.telegram.create_link_code(priya).code
    refused = _text(ask(fake, "verma", CHATS["priya"], f"/start {code}").text)
    assert "This bot does not serve 'priya''s household" in refused
    assert "send the code to your household's bot" in refused
    assert not services.telegram.link_status(priya).linked
    assert services.telegram.actor_for_chat(CHATS["priya"], None) is None
    assert _text(ask(fake, "verma", CHATS["priya"], "/pnl").text) == _text(REFUSAL)
    # the refused code was not used up: Priya's own bot takes it
    linked = _text(ask(fake, "sharma", CHATS["priya"], f"/start {code}").text)
    assert "Telegram linked" in linked and "Priya Sharma" in linked
    vikram_code = services.telegram.create_link_code(desk.actors["vikram"]).code
    assert "does not serve 'vikram''s household" in _text(
        ask(fake, "sharma", CHATS["vikram"], f"/start {vikram_code}").text)
    assert not services.telegram.link_status(desk.actors["vikram"]).linked


def test_a_member_linked_in_one_household_gets_only_the_refusal_from_the_other_s_bot(
    services: Services, bots: Services, fake: FakeBotApi, desk: Desk,
) -> None:
    assert "Telegram linked" in link(services, fake, desk, "vikram", "verma")
    for command in ("/pnl", "/positions", "/orders", "/status", "/panic", "/settings",
                    "/settings signal off", "/unlink"):
        reply = ask(fake, "sharma", CHATS["vikram"], command)
        assert _text(reply.text) == _text(REFUSAL) and reply.reply_markup is None
    vikram = desk.actors["vikram"]
    assert services.telegram.link_status(vikram).linked  # /unlink there unlinked nothing
    prefs = services.telegram.notification_prefs(vikram)  # /settings there changed nothing
    assert prefs.mode(AlertType.SIGNAL) is DEFAULT_PREFS.modes[AlertType.SIGNAL]


def test_a_member_s_pnl_positions_and_orders_never_show_the_other_household_s_accounts(
    services: Services, bots: Services, fake: FakeBotApi, desk: Desk, trading: None,
) -> None:
    link(services, fake, desk, "vikram", "verma")
    link(services, fake, desk, "rahul", "sharma")
    vikram = {c: _text(ask(fake, "verma", CHATS["vikram"], f"/{c}").text)
              for c in ("pnl", "positions", "orders")}
    assert "Vikram · Main" in vikram["pnl"] and "TCS" in vikram["positions"]
    assert "B TCS" in vikram["orders"] and "1 open" in vikram["orders"]
    rahul = {c: _text(ask(fake, "sharma", CHATS["rahul"], f"/{c}").text)
             for c in ("pnl", "positions", "orders")}
    assert "Priya · Trading" in rahul["pnl"] and "SBIN" in rahul["positions"]
    assert "B INFY" in rahul["orders"]
    for word in ("Rahul", "Priya", "Kamla", "SBIN", "INFY"):
        assert not any(word in text for text in vikram.values()), word
    for word in ("Vikram", "TCS"):
        assert not any(word in text for text in rahul.values()), word


def test_a_panic_pressed_in_one_household_cannot_touch_the_other(
    services: Services, bots: Services, fake: FakeBotApi, desk: Desk, trading: None,
) -> None:
    link(services, fake, desk, "rahul", "sharma")
    assert _open_orders(services, desk.vikram_account) == 1
    question = ask(fake, "sharma", CHATS["rahul"], "/panic")
    assert "whole household" in _text(question.text)
    buttons = {b["text"]: b["callback_data"]
               for row in question.reply_markup["inline_keyboard"] for b in row}
    # the question's Confirm button pressed through the other household's bot does nothing
    fake.push_callback(CHATS["rahul"], question.message_id, buttons["Confirm panic"],
                       token=TOKENS["verma"])
    fake.wait_for(lambda: bool(fake.edits))
    (edit,) = fake.edits
    assert edit["token"] == TOKENS["verma"] and "no longer open" in edit["text"]
    with services.db.reading() as session:
        assert session.scalars(select(RiskStateRow)).all() == []
    # confirmed through its own bot it stops the Sharma household, and only it
    before = len(fake.messages_to(CHATS["rahul"]))
    fake.push_callback(CHATS["rahul"], question.message_id, buttons["Confirm panic"],
                       token=TOKENS["sharma"])
    fake.wait_for(lambda: len(fake.messages_to(CHATS["rahul"])) > before, timeout=30)
    report = _text(fake.messages_to(CHATS["rahul"])[-1].text)
    assert report.startswith("Panic done") and "SBIN" in report
    assert "TCS" not in report and "Vikram" not in report
    with services.db.reading() as session:
        states = session.execute(select(RiskStateRow.household_id, RiskStateRow.account_id)).all()
    assert [tuple(s) for s in states] == [(desk.sharma, None)]
    assert _open_orders(services, desk.vikram_account) == 1
    positions = services.portfolio.positions(desk.actors["vikram"])
    assert [(p.symbol, p.quantity) for p in positions] == [("TCS", 5)]
    assert services.household.authorize_trade(desk.actors["vikram"], desk.vikram_account)


def test_each_household_s_alerts_reach_only_its_own_members_through_its_own_bot(
    services: Services, delivering: Services, fake: FakeBotApi, desk: Desk,
) -> None:
    for who, household in (("rahul", "sharma"), ("priya", "sharma"), ("vikram", "verma")):
        assert "Telegram linked" in link(services, fake, desk, who, household)
    bodies = {"sharma": "Sharma household news", "verma": "Verma household news",
              "vikram": "Vikram · Main news"}
    with services.db.transaction() as session:
        for key, household_id, account_id in (("sharma", desk.sharma, None),
                                              ("verma", desk.verma, None),
                                              ("vikram", desk.verma, desk.vikram_account)):
            assert alerts.enqueue(session, kind="risk.daily_loss", household_id=household_id,
                                  account_id=account_id, severity="warning", title="Heads up",
                                  body=bodies[key], dedupe_key=f"two-households:{key}")

    def alerts_to(who: str) -> list[SentMessage]:
        return [m for m in fake.messages_to(CHATS[who]) if "news" in m.text]

    fake.wait_for(lambda: len(alerts_to("rahul")) + len(alerts_to("priya")) == 2
                  and len(alerts_to("vikram")) == 2, timeout=20)
    for who in ("rahul", "priya"):
        (message,) = alerts_to(who)
        assert bodies["sharma"] in _text(message.text) and message.token == TOKENS["sharma"]
    assert sorted(_text(m.text).count("news") for m in alerts_to("vikram")) == [1, 1]
    assert {m.token for m in alerts_to("vikram")} == {TOKENS["verma"]}
    assert not any(bodies["sharma"] in _text(m.text) for m in alerts_to("vikram"))
    with services.db.reading() as session:
        rows = session.execute(
            select(AlertOutboxRow.dedupe_key, AlertDeliveryRow.user_id, AlertDeliveryRow.status)
            .join(AlertDeliveryRow, AlertDeliveryRow.alert_id == AlertOutboxRow.id)
            .where(AlertOutboxRow.dedupe_key.like("two-households:%"))).all()
    vikram_id = desk.actors["vikram"].user_id
    for key, user_id, _status in rows:  # nobody is even considered across households
        assert (user_id == vikram_id) is (key != "two-households:sharma"), (key, user_id)
