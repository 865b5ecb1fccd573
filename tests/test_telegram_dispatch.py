"""The Telegram dispatcher delivers the outbox through the real python-telegram-bot.

Every test runs the real library against the fake Bot API server (tests/support/fake_bot_api),
over the demo household on SQLite and PostgreSQL where the database matters.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from datetime import time as clock_time
from typing import TypeVar

import pytest
from sqlalchemy import select
from telegram import Bot
from telegram.request import HTTPXRequest

from core import alerts
from core.alerts import Alert
from core.clock import IST, now_ist
from core.domain import Actor
from core.errors import ValidationError
from core.services import Services
from core.services.jobs import JobResult
from db.models import AlertDeliveryRow, AlertOutboxRow, UserRow
from jobs.alert_jobs import AlertJobs
from jobs.telegram_dispatch import NO_BOT, FloodControl, RateLimits, TelegramDispatcher
from tests.conftest import make_settings
from tests.support.fake_bot_api import DEFAULT_TOKEN, FakeBotApi, SentMessage
from tests.support.telegram_links import link_code

T = TypeVar("T")
Login = Callable[[str], Actor]
CHATS = {"rahul": 1001, "priya": 1002, "kamla": 1003, "aarav": 1004}
NOON = datetime(2026, 3, 10, 12, 0, tzinfo=IST)
DEFAULT_LIMITS = RateLimits()


@pytest.fixture
def fake() -> Iterator[FakeBotApi]:
    with FakeBotApi() as server:
        yield server


def _link(services: Services, login: Login, *names: str) -> dict[str, Actor]:
    actors = {}
    for name in names:
        actor = login(name)
        code = link_code(services, actor)
        services.telegram.link_chat(code.code, CHATS[name], None, None)
        actors[name] = actor
    return actors


def _enqueue(services: Services, key: str, *, kind: str = "order.filled",
             severity: str = "info", title: str = "Order filled",
             body: str = "BUY 10 RELIANCE @ 2,450.05", user_id: int | None = None,
             at: datetime = NOON) -> int:
    with services.db.transaction() as session:
        [household_id] = session.scalars(select(UserRow.household_id).where(
            UserRow.username == "rahul"))
        assert alerts.enqueue(session, kind=kind, household_id=household_id, account_id=None,
                              severity=severity, title=title, body=body, dedupe_key=key,
                              user_id=user_id, at=at)
        return int(session.scalars(select(AlertOutboxRow.id).where(
            AlertOutboxRow.dedupe_key == key)).one())


def _row(services: Services, alert_id: int) -> Alert:
    with services.db.reading() as session:
        row = session.get(AlertOutboxRow, alert_id)
        assert row is not None
        return alerts.to_alert(row)


def _deliveries(services: Services, alert_id: int) -> dict[str, tuple[str, bool, str | None]]:
    with services.db.reading() as session:
        rows = session.execute(
            select(UserRow.username, AlertDeliveryRow.status, AlertDeliveryRow.silent,
                   AlertDeliveryRow.reason)
            .join(UserRow, UserRow.id == AlertDeliveryRow.user_id)
            .where(AlertDeliveryRow.alert_id == alert_id)).all()
    return {name: (status, silent, reason) for name, status, silent, reason in rows}


def _dispatch(services: Services, fake: FakeBotApi,
              steps: Callable[[TelegramDispatcher], Awaitable[T]],
              limits: RateLimits = DEFAULT_LIMITS, with_bot: bool = True) -> T:
    async def main() -> T:
        async with Bot(DEFAULT_TOKEN, base_url=fake.base_url) as bot:
            dispatcher = TelegramDispatcher(services, lambda _: bot if with_bot else None,
                                            limits)
            try:
                return await steps(dispatcher)
            finally:
                await dispatcher.flood.aclose()
    return asyncio.run(main())


def _once(services: Services, fake: FakeBotApi, now: datetime = NOON,
          with_bot: bool = True) -> None:
    _dispatch(services, fake, lambda d: d.dispatch_once(now), with_bot=with_bot)


def _max_in_one_second(messages: list[SentMessage]) -> int:
    times = sorted(m.at for m in messages)
    return max((sum(1 for t in times if start <= t < start + 1.0) for start in times), default=0)


# -- modes, do-not-disturb, who gets it ------------------------------------------------------

def test_each_member_gets_the_alert_as_their_mode_says_on_silent_or_off(
        services: Services, login: Login, fake: FakeBotApi) -> None:
    actors = _link(services, login, "rahul", "priya", "kamla")
    services.telegram.update_prefs(actors["priya"], modes={"order_filled": "silent"})
    services.telegram.update_prefs(actors["kamla"], modes={"order_filled": "off"})
    alert_id = _enqueue(services, "fill-1")

    _once(services, fake)

    [to_rahul] = fake.messages_to(CHATS["rahul"])
    [to_priya] = fake.messages_to(CHATS["priya"])
    assert (to_rahul.disable_notification, to_priya.disable_notification) == (False, True)
    assert to_rahul.parse_mode == "HTML" and "Order filled" in to_rahul.text
    assert fake.messages_to(CHATS["kamla"]) == [] and fake.messages_to(CHATS["aarav"]) == []
    done = _deliveries(services, alert_id)
    assert done["rahul"] == ("sent", False, None) and done["priya"] == ("sent", True, None)
    assert done["kamla"][0] == "skipped" and "off" in (done["kamla"][2] or "")
    assert done["aarav"] == ("skipped", False, "no Telegram chat linked")
    assert _row(services, alert_id).status == "sent"


def test_do_not_disturb_silences_routine_alerts_but_a_kill_switch_rings(
        services: Services, login: Login, fake: FakeBotApi) -> None:
    actors = _link(services, login, "priya")
    services.telegram.update_prefs(actors["priya"], dnd=(clock_time(11, 0), clock_time(13, 0)))
    fill = _enqueue(services, "fill-dnd", user_id=actors["priya"].user_id)
    kill = _enqueue(services, "kill-dnd", kind="risk.kill_switch", severity="critical",
                    title="Kill switch engaged", body="All trading stopped by rahul",
                    user_id=actors["priya"].user_id)

    _once(services, fake)

    sent = {m.text.split("\n")[0]: m.disable_notification
            for m in fake.messages_to(CHATS["priya"])}
    assert [silent for title, silent in sent.items() if "Kill switch" in title] == [False]
    assert [silent for title, silent in sent.items() if "Order filled" in title] == [True]
    assert _row(services, fill).status == _row(services, kill).status == "sent"


def test_the_urgent_alert_of_a_batch_goes_first(
        services: Services, login: Login, fake: FakeBotApi) -> None:
    actors = _link(services, login, "rahul")
    user = actors["rahul"].user_id
    for n in range(3):
        _enqueue(services, f"fill-{n}", body=f"fill number {n}", user_id=user)
    _enqueue(services, "panic", kind="risk.panic", severity="critical", title="Panic run",
             body="Every order cancelled", user_id=user)

    _once(services, fake)

    texts = [m.text for m in fake.messages_to(CHATS["rahul"])]
    assert len(texts) == 4 and "Panic run" in texts[0]


def test_an_alert_nobody_is_due_is_skipped_with_the_reasons_and_sends_nothing(
        services: Services, login: Login, fake: FakeBotApi) -> None:
    alert_id = _enqueue(services, "nobody-linked")

    _once(services, fake)

    assert fake.sent == []
    row = _row(services, alert_id)
    assert (row.status, row.last_error) == ("skipped", "no Telegram chat linked")


def test_a_household_without_a_bot_has_its_alerts_skipped(
        services: Services, login: Login, fake: FakeBotApi) -> None:
    _link(services, login, "rahul")
    alert_id = _enqueue(services, "no-bot")

    _once(services, fake, with_bot=False)

    row = _row(services, alert_id)
    assert (row.status, row.last_error) == ("skipped", NO_BOT) and fake.sent == []


def test_the_same_message_twice_in_one_batch_reaches_a_member_once(
        services: Services, login: Login, fake: FakeBotApi) -> None:
    _link(services, login, "rahul")
    first, second = _enqueue(services, "same-1"), _enqueue(services, "same-2")

    _once(services, fake)

    assert len(fake.messages_to(CHATS["rahul"])) == 1
    reasons = {_deliveries(services, first)["rahul"][2], _deliveries(services, second)["rahul"][2]}
    assert reasons in ({None, f"duplicate of alert {first}"},
                       {None, f"duplicate of alert {second}"})


# -- flood control, failures -------------------------------------------------------------------

def test_a_429_is_waited_out_and_every_message_arrives_exactly_once(
        services: Services, login: Login, fake: FakeBotApi) -> None:
    _link(services, login, "rahul", "priya", "kamla")
    ids = [_enqueue(services, f"flood-{n}", body=f"fill {n}") for n in range(3)]
    fake.fail_next("sendMessage", times=2, retry_after=1)

    started = time.monotonic()
    _once(services, fake)

    assert len(fake.rejected) == 2 and time.monotonic() - started >= 1.0
    for name in ("rahul", "priya", "kamla"):
        texts = sorted(m.text.split("\n")[-1] for m in fake.messages_to(CHATS[name]))
        assert texts == ["fill 0", "fill 1", "fill 2"], name
    assert [_row(services, i).status for i in ids] == ["sent"] * 3


def test_one_chat_gets_at_most_one_message_a_second(
        services: Services, login: Login, fake: FakeBotApi) -> None:
    _link(services, login, "rahul", "priya")
    for n in range(3):
        _enqueue(services, f"rate-{n}", body=f"fill {n}")

    _once(services, fake)

    for name in ("rahul", "priya"):
        times = [m.at for m in fake.messages_to(CHATS[name])]
        assert len(times) == 3
        assert min(b - a for a, b in itertools.pairwise(times)) >= 1.0
    # the two chats are served side by side, not one after the other
    assert abs(fake.messages_to(CHATS["rahul"])[0].at - fake.messages_to(CHATS["priya"])[0].at) \
        < 0.5


def test_a_temporary_failure_retries_only_the_members_not_yet_sent(
        services: Services, login: Login, fake: FakeBotApi) -> None:
    _link(services, login, "rahul", "priya")
    alert_id = _enqueue(services, "retry-me")
    fake.fail_next("sendMessage", chat_id=CHATS["priya"], error_code=502,
                   description="Bad Gateway")

    _once(services, fake)
    row = _row(services, alert_id)
    assert row.status == "pending" and "Bad Gateway" in (row.last_error or "")
    assert len(fake.messages_to(CHATS["rahul"])) == 1 and fake.messages_to(CHATS["priya"]) == []

    _once(services, fake, now=NOON + timedelta(minutes=5))

    assert len(fake.messages_to(CHATS["rahul"])) == 1  # not sent twice
    assert len(fake.messages_to(CHATS["priya"])) == 1
    assert _row(services, alert_id).status == "sent"
    assert {k: v[0] for k, v in _deliveries(services, alert_id).items()
            if k in ("rahul", "priya")} == {"rahul": "sent", "priya": "sent"}


def test_a_member_who_blocked_the_bot_is_recorded_failed_and_the_others_still_get_it(
        services: Services, login: Login, fake: FakeBotApi) -> None:
    _link(services, login, "rahul", "priya")
    fake.block_chat(CHATS["priya"])
    alert_id = _enqueue(services, "blocked")

    _once(services, fake)

    assert len(fake.messages_to(CHATS["rahul"])) == 1
    done = _deliveries(services, alert_id)
    assert done["priya"] == ("failed", False, "Forbidden: bot was blocked by the user")
    assert _row(services, alert_id).status == "sent"


def test_an_alert_every_linked_member_refuses_fails_for_good(
        services: Services, login: Login, fake: FakeBotApi) -> None:
    actors = _link(services, login, "priya")
    fake.block_chat(CHATS["priya"])
    alert_id = _enqueue(services, "refused", user_id=actors["priya"].user_id)

    _once(services, fake)

    row = _row(services, alert_id)
    assert row.status == "failed" and "blocked" in (row.last_error or "")


def test_a_message_that_cannot_go_before_the_lease_ends_is_deferred_not_lost(
        services: Services, login: Login, fake: FakeBotApi) -> None:
    actors = _link(services, login, "rahul")
    ids = [_enqueue(services, f"lease-{n}", body=f"fill {n}", user_id=actors["rahul"].user_id)
           for n in range(3)]
    tight = RateLimits(per_chat_interval_s=1.0, lease_budget_s=1.5)

    _dispatch(services, fake, lambda d: d.dispatch_once(NOON), limits=tight)

    assert len(fake.messages_to(CHATS["rahul"])) == 2
    rows = [_row(services, i) for i in ids]
    assert sorted(r.status for r in rows) == ["pending", "sent", "sent"]
    [waiting] = [r for r in rows if r.status == "pending"]
    assert waiting.attempts == 0 and "rate limits" in (waiting.last_error or "")


def test_the_overall_limit_holds_across_forty_chats() -> None:
    with FakeBotApi() as fake:
        async def main() -> None:
            # generous HTTP timeouts: a loaded test machine may answer slowly, and this test
            # is about the flood limits, not about a timeout's retry (tested elsewhere)
            patient = HTTPXRequest(connect_timeout=30, read_timeout=30, write_timeout=30,
                                   pool_timeout=30)
            async with Bot(DEFAULT_TOKEN, base_url=fake.base_url, request=patient) as bot:
                flood = FloodControl()
                deadline = time.monotonic() + 60
                results = await asyncio.gather(*(
                    flood.send(bot, 5000 + n, f"hello {n}", silent=False, urgent=False,
                               deadline=deadline) for n in range(40)))
                await flood.aclose()
                assert {r.status for r in results} == {"sent"}, [
                    (r.status, r.error) for r in results if r.status != "sent"]
        asyncio.run(main())
        assert len(fake.sent) == 40 and _max_in_one_second(fake.sent) <= 30
        times = sorted(m.at for m in fake.sent)
        assert times[30] - times[0] >= 1.0


def test_429s_from_two_chats_pause_the_whole_bot() -> None:
    with FakeBotApi() as fake:
        fake.fail_next("sendMessage", times=2, retry_after=1)

        async def main() -> None:
            # generous HTTP timeouts: a loaded test machine may answer slowly, and this test
            # is about the flood limits, not about a timeout's retry (tested elsewhere)
            patient = HTTPXRequest(connect_timeout=30, read_timeout=30, write_timeout=30,
                                   pool_timeout=30)
            async with Bot(DEFAULT_TOKEN, base_url=fake.base_url, request=patient) as bot:
                flood = FloodControl()
                deadline = time.monotonic() + 60
                throttled = [asyncio.create_task(flood.send(
                    bot, 7000 + n, "hi", silent=False, urgent=False, deadline=deadline))
                    for n in range(2)]
                await asyncio.to_thread(fake.wait_for, lambda: len(fake.rejected) == 2)
                await asyncio.sleep(0.2)  # the 429 answers reach the lanes
                await flood.send(bot, 7002, "a chat never throttled", silent=False,
                                 urgent=False, deadline=deadline)
                await asyncio.gather(*throttled)
                await flood.aclose()
        asyncio.run(main())
        assert len(fake.sent) == 3
        [fresh] = fake.messages_to(7002)
        assert fresh.at - fake.rejected[-1]["at"] >= 0.95


# -- the run loop and the worker ---------------------------------------------------------------

def test_the_run_loop_delivers_a_new_alert_within_a_second_and_stops_cleanly(
        services: Services, login: Login, fake: FakeBotApi) -> None:
    _link(services, login, "rahul")

    async def steps(dispatcher: TelegramDispatcher) -> float:
        stop = asyncio.Event()
        runner = asyncio.create_task(dispatcher.run(stop))
        await asyncio.sleep(0.3)
        committed = time.monotonic()
        await asyncio.to_thread(_enqueue, services, "urgent", kind="risk.kill_switch",
                                severity="critical", title="Kill switch", body="stopped",
                                at=now_ist())
        await asyncio.to_thread(fake.wait_for, lambda: bool(fake.sent), 5.0)
        stop.set()
        await asyncio.wait_for(runner, 10)
        return fake.sent[0].at - committed

    assert _dispatch(services, fake, steps) < 1.0


def test_the_workers_dispatch_job_leaves_alerts_to_the_bot_when_the_channel_is_telegram(
        services: Services) -> None:
    alert_id = _enqueue(services, "left-for-the-bot", at=now_ist())
    settings = make_settings(services.db.url, alert_channel="telegram")
    jobs = AlertJobs(Services(services.db, settings))

    assert jobs.dispatch_alerts() == JobResult.skipped(
        "alerts are delivered by the Telegram bot process (python -m jobs.telegram_bot)")
    assert _row(services, alert_id).status == "pending"


def test_stopping_the_run_loop_gives_unsent_alerts_back_without_counting_an_attempt(
        services: Services, login: Login, fake: FakeBotApi,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("jobs.telegram_dispatch.STOP_GRACE_S", 0.5)
    actors = _link(services, login, "rahul")
    ids = [_enqueue(services, f"backlog-{n}", body=f"fill {n}", user_id=actors["rahul"].user_id,
                    at=now_ist()) for n in range(6)]

    async def steps(dispatcher: TelegramDispatcher) -> None:
        stop = asyncio.Event()
        runner = asyncio.create_task(dispatcher.run(stop))
        await asyncio.to_thread(fake.wait_for, lambda: len(fake.sent) == 2, 5.0)
        stop.set()
        await asyncio.wait_for(runner, 10)

    _dispatch(services, fake, steps)

    rows = [_row(services, i) for i in ids]
    sent = [r for r in rows if r.status == "sent"]
    assert len(sent) == len(fake.sent) < 6
    assert {(r.status, r.attempts) for r in rows if r not in sent} == {("pending", 0)}


def test_the_outbox_claim_for_a_dispatcher_states_its_rules(services: Services) -> None:
    with pytest.raises(ValidationError, match="time-zone aware"):
        services.outbox.claim(datetime(2026, 3, 10, 12, 0), 10)  # noqa: DTZ001 - the point
    with pytest.raises(ValidationError, match="1-1000 alerts; got 0"):
        services.outbox.claim(NOON, 0)


def test_an_alert_given_back_is_due_again_with_its_attempt_uncounted(
        services: Services) -> None:
    alert_id = _enqueue(services, "give-back")
    [claimed] = services.outbox.claim(NOON, 10)
    assert claimed.id == alert_id and _row(services, alert_id).attempts == 1
    assert services.outbox.claim(NOON, 10) == []  # leased

    assert services.outbox.release([claimed], NOON) == 1

    again = services.outbox.claim(NOON, 10)
    assert [a.id for a in again] == [alert_id] and again[0].attempts == 1
    assert services.outbox.recipient_outcomes(alert_id) == {}
