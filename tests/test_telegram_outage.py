"""The Telegram bot process rides out a PostgreSQL restart: no alert lost or doubled.

The real :class:`jobs.telegram_bot.TelegramBotProcess` (python-telegram-bot polling the fake
Bot API on 127.0.0.1, the outbox dispatcher on, ``ALERT_CHANNEL=telegram``) runs over a private
PostgreSQL server that is stopped as an operator would stop it (``pg_ctl stop -m fast``) while
alerts are on their way, and started again on the same port. A second test takes the path that
restart cannot aim at (the database gone between an alert's claim and its planning) with the
dispatcher's database calls failing on SQLite.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from time import sleep
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from core import alerts
from core.clock import now_ist
from core.domain import Actor
from core.seed import DemoLogin, seed_demo
from core.services import Services
from core.services.outbox import CLAIM_LEASE
from db.engine import Database
from db.migrate import upgrade
from db.models import AlertDeliveryRow, AlertOutboxRow
from jobs import telegram_dispatch
from jobs.telegram_bot import TelegramBotProcess
from jobs.telegram_commands import DATABASE_AWAY, SOMETHING_WRONG
from jobs.telegram_dispatch import TelegramDispatcher
from tests.conftest import TEST_CLIENT, make_settings
from tests.support.fake_bot_api import DEFAULT_TOKEN, FakeBotApi
from tests.support.pg import PostgresServer, require_postgres_or_skip
from tests.support.telegram_links import link_code
from tests.test_telegram_bot import RunningBot
from tests.test_telegram_dispatch import CHATS as DISPATCH_CHATS
from tests.test_telegram_dispatch import _dispatch, _link, _row
from tests.test_telegram_dispatch import _enqueue as _enqueue_one
from tests.test_worker_durability import _restart_on_the_same_port

TOKEN = DEFAULT_TOKEN
CHATS = {"rahul": 7001, "kamla": 7002}
#: How long the database stays down.
DOWN_S = 5.0
#: A first send of the held alerts gets a 429 asking to wait this long (seconds): the
#: messages go out while the database is down.
HOLD_S = 2


def _text(message: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", message))


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server: this test stops and restarts it."""
    with PostgresServer(require_postgres_or_skip()) as pg:
        yield pg


@pytest.fixture
def desk(server: PostgresServer) -> Iterator[tuple[Services, dict[str, DemoLogin]]]:
    """The demo household on the private server; the test's own services (not the bot's)."""
    server.create_database("desk")
    url = server.url("desk")
    upgrade(url)
    services = Services(Database(url), make_settings(url))
    logins = {login.username: login for login in seed_demo(services)}
    yield services, logins
    services.db.dispose()


def _enqueue(services: Services, household_id: int, *bodies: str,
             due_in_s: float = 0.0) -> None:
    """Add one household alert per ``body`` in one transaction (keyed by its symbol)."""
    with services.db.transaction() as session:
        for body in bodies:
            assert alerts.enqueue(session, kind="order.filled", household_id=household_id,
                                  account_id=None, severity="info", title="Order filled",
                                  body=body, dedupe_key=body.split()[2],
                                  at=now_ist() + timedelta(seconds=due_in_s))


def _ask(fake: FakeBotApi, chat: int, text: str, timeout: float = 15.0) -> str:
    before = len(fake.messages_to(chat))
    fake.push_message(chat, text, username=f"user{chat}")
    fake.wait_for(lambda: len(fake.messages_to(chat)) > before, timeout=timeout)
    return _text(fake.messages_to(chat)[before].text)


def _eventually(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except OperationalError:  # the database is still coming back
            pass
        time.sleep(0.1)
    return False


def _outbox(services: Services) -> dict[str, str]:
    with services.db.reading() as session:
        rows = session.execute(select(AlertOutboxRow.dedupe_key, AlertOutboxRow.status))
        return {key: status for key, status in rows}


def _deliveries(services: Services) -> list[tuple[int, int, str]]:
    with services.db.reading() as session:
        return [tuple(r) for r in session.execute(
            select(AlertDeliveryRow.alert_id, AlertDeliveryRow.user_id, AlertDeliveryRow.status))]


@pytest.mark.postgres
def test_a_postgresql_restart_loses_no_alert_doubles_none_and_commands_answer_again(
    server: PostgresServer, desk: tuple[Services, dict[str, DemoLogin]],
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    services, logins = desk
    caplog.set_level(logging.INFO)
    for noisy in ("httpx", "httpcore", "telegram"):  # as the process sets them
        caplog.set_level(logging.WARNING, logger=noisy)
    monkeypatch.setattr(telegram_dispatch, "ERROR_PAUSE_S", 1.0)  # a shorter outage pause
    actors: dict[str, Actor] = {}
    for name in ("rahul", "kamla"):
        result = services.auth.login(name, logins[name].password, TEST_CLIENT)
        assert result.session_id is not None
        actors[name] = services.auth.check_session(result.session_id, TEST_CLIENT)
    household = actors["rahul"].household_id
    url = server.url("desk")
    with FakeBotApi(tokens=(TOKEN,)) as fake:
        bot_services = Services(Database(url), make_settings(
            url, telegram_bot_token=TOKEN, telegram_base_url=fake.base_url,
            alert_channel="telegram"))
        process = TelegramBotProcess(bot_services, recheck_s=0.5, watch_s=0.5, poll_timeout=1)
        try:
            with RunningBot(process) as running:
                fake.wait_for(lambda: (TOKEN, "getUpdates") in fake.calls, timeout=20)
                for name, chat in CHATS.items():
                    code = link_code(services, actors[name]).code
                    assert "Telegram linked" in _ask(fake, chat, f"/start {code}")
                _enqueue(services, household, "BUY 1 INFY @ 1,500.00")
                for chat in CHATS.values():
                    fake.wait_for(lambda chat=chat: any(
                        "INFY" in m.text for m in fake.messages_to(chat)), timeout=15)

                # Two alerts claimed and planned whose messages Telegram holds back (429) until
                # the database is gone, and one alert falling due while it is gone.
                fake.fail_next("sendMessage", times=len(CHATS), retry_after=HOLD_S)
                _enqueue(services, household, "BUY 2 TCS @ 3,000.00", "BUY 3 SBIN @ 800.00")
                fake.wait_for(lambda: len(fake.rejected) == len(CHATS), timeout=10)
                _enqueue(services, household, "BUY 4 HDFCBANK @ 1,600.00", due_in_s=1.0)
                services.db.dispose()
                stopped_at = len(caplog.records)
                away: list[float] = []  # when the stop began, when the server was back

                def restart_server() -> None:
                    away.append(time.monotonic())
                    _restart_on_the_same_port(server, DOWN_S)
                    away.append(time.monotonic())

                restart = threading.Thread(target=restart_server, daemon=True)
                restart.start()
                sleep(HOLD_S + 0.5)  # the held messages go out while the database is down
                assert _ask(fake, CHATS["kamla"], "/status") == DATABASE_AWAY
                restart.join(timeout=30)
                assert not restart.is_alive()
                assert running.thread.is_alive() and TOKEN in process.runners  # rode it out
                assert _eventually(lambda: set(_outbox(services).values()) == {"sent"}, 30), (
                    _outbox(services))
                after = _ask(fake, CHATS["kamla"], "/status")
                assert "Status" in after
                assert DATABASE_AWAY not in after and SOMETHING_WRONG not in after
                outage_logs = caplog.records[stopped_at:]
        finally:
            bot_services.db.dispose()

    # every alert reached each member exactly once, and is recorded once per member; the held
    # ones went out while the database was away, the one due then only after it was back
    for chat in CHATS.values():
        bodies = [m.text for m in fake.messages_to(chat)]
        for symbol in ("INFY", "TCS", "SBIN", "HDFCBANK"):
            assert sum(f" {symbol} " in _text(b) for b in bodies) == 1, (symbol, bodies)
        at = {symbol: m.at for m in fake.messages_to(chat) for symbol in ("TCS", "SBIN", "HDFCBANK")
              if f" {symbol} " in _text(m.text)}
        assert away[0] < at["TCS"] < away[1] and away[0] < at["SBIN"] < away[1]
        assert at["HDFCBANK"] > away[1]
    records = _deliveries(services)
    assert len(records) == len(set((a, u) for a, u, _ in records))
    users = {actors[name].user_id for name in CHATS}
    sent = [(a, u) for a, u, status in records if status == "sent"]
    assert len(sent) == 4 * len(users) and {u for _, u in sent} == users
    assert set(_outbox(services)) == {"INFY", "TCS", "SBIN", "HDFCBANK"}

    # each loop said it failed, each failure in one line: no traceback, no SQL, no token
    ours = [r.getMessage() for r in outage_logs if r.name.startswith("sher")]
    for loop in ("reading the bot tokens failed", "watching the worker failed",
                 "the outbox is out of reach", "finding the member of chat 7002 failed"):
        assert any(loop in line and "OperationalError" in line for line in ours), loop
    assert any("recording sent failed, held until the database answers" in line
               for line in ours)  # the held messages really went out with the database away
    for record in outage_logs:
        text = record.getMessage()
        assert record.exc_info is None and record.exc_text is None, (record.name, text)
        assert "\n" not in text and "[SQL:" not in text and TOKEN not in text, text


@pytest.fixture
def fake() -> Iterator[FakeBotApi]:
    with FakeBotApi() as api:
        yield api


def _failing(real: Callable[..., Any], error: list[Exception | None]) -> Callable[..., Any]:
    """Wrap a service method: it raises ``error[0]`` while that is set (the database away)."""
    def call(*args: object, **kwargs: object) -> Any:
        if error[0] is not None:
            raise error[0]
        return real(*args, **kwargs)
    return call


AWAY = OperationalError("SELECT ...", {}, ConnectionRefusedError(
    "connection to server at 127.0.0.1 failed: Connection refused"))


def _rahul_s_alert_with_the_database_away(
    services: Services, login: Callable[[str], Actor], monkeypatch: pytest.MonkeyPatch,
    key: str, failing: tuple[str, ...],
) -> tuple[int, list[Exception | None]]:
    """Link Rahul, queue one alert for him and make the ``failing`` service methods (e.g.
    ``"outbox.record"``) raise what the returned list holds (the database away at first)."""
    _link(services, login, "rahul")
    alert_id = _enqueue_one(services, key, at=now_ist(), user_id=login("rahul").user_id)
    error: list[Exception | None] = [AWAY]
    for dotted in failing:
        service = getattr(services, dotted.split(".")[0])
        name = dotted.split(".")[1]
        monkeypatch.setattr(service, name, _failing(getattr(service, name), error))
    return alert_id, error


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_alert_the_database_could_neither_plan_nor_settle_is_given_back_and_sent_once(
    services: Services, login: Callable[[str], Actor], fake: FakeBotApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alert_id, error = _rahul_s_alert_with_the_database_away(
        services, login, monkeypatch, "away-1",
        ("telegram.plan", "outbox.record", "outbox.release"))

    async def steps(dispatcher: TelegramDispatcher) -> tuple[int, int, int]:
        await dispatcher.dispatch_once()
        held = dispatcher.held
        with pytest.raises(OperationalError):
            await dispatcher.write_held()  # still away: kept, still in flight
        assert (dispatcher.held, dispatcher.in_flight) == (1, 1)
        error[0] = None
        await dispatcher.write_held()
        in_flight = dispatcher.in_flight
        report = await dispatcher.dispatch_once()
        return held, in_flight, report.sent

    held, in_flight, sent = _dispatch(services, fake, steps)
    assert (held, in_flight, sent) == (1, 0, 1)  # given back, then sent at once
    assert len(fake.messages_to(DISPATCH_CHATS["rahul"])) == 1
    row = _row(services, alert_id)
    assert (row.status, row.attempts) == ("sent", 1)  # the outage's attempt was not counted


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_held_record_failing_for_another_reason_is_dropped_and_delivery_goes_on(
    services: Services, login: Callable[[str], Actor], fake: FakeBotApi,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    first, error = _rahul_s_alert_with_the_database_away(
        services, login, monkeypatch, "held-then-broken", ("telegram.record_delivery",))

    async def steps(dispatcher: TelegramDispatcher) -> tuple[int, int]:
        await dispatcher.dispatch_once()  # sent; its record held (the outcome is written)
        assert dispatcher.held == 1
        error[0] = ValueError("a bug, not an outage")
        await dispatcher.write_held()  # dropped, not raised: claims go on
        error[0] = None
        _enqueue_one(services, "after", body="SELL 1 TCS @ 3,000.00", at=now_ist())
        report = await dispatcher.dispatch_once()
        return dispatcher.held, report.sent

    assert _dispatch(services, fake, steps) == (0, 1)  # nothing held, the next alert sent
    assert len(fake.messages_to(DISPATCH_CHATS["rahul"])) == 2
    assert _row(services, first).status == "sent"
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and "ValueError: a bug, not an outage" in dropped[0]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_stopping_while_the_database_is_away_keeps_a_sent_alert_claimed_not_given_back(
    services: Services, login: Callable[[str], Actor], fake: FakeBotApi,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    alert_id, _error = _rahul_s_alert_with_the_database_away(  # release is left working: the
        services, login, monkeypatch, "sent-then-stopped",  # stop must not even try it
        ("telegram.record_delivery", "outbox.record"))

    async def steps(dispatcher: TelegramDispatcher) -> int:
        stop = asyncio.Event()
        running = asyncio.create_task(dispatcher.run(stop))
        for _ in range(200):
            if dispatcher.held == 2:  # the delivery record and the alert's outcome
                break
            await asyncio.sleep(0.05)
        stop.set()
        await running
        return dispatcher.held

    assert _dispatch(services, fake, steps) == 2
    assert len(fake.messages_to(DISPATCH_CHATS["rahul"])) == 1
    # not given back (it would go out again at once): still claimed until its lease ends
    assert services.outbox.claim(now_ist(), 10) == []
    later = services.outbox.claim(now_ist() + CLAIM_LEASE + timedelta(seconds=1), 10)
    assert [a.id for a in later] == [alert_id]
    lines = [r.getMessage() for r in caplog.records if "could not be written" in r.getMessage()]
    assert len(lines) == 1 and "2 held record(s)" in lines[0]
