"""The fake Bot API server answers the real python-telegram-bot as Telegram does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import TypeVar

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import (
    BadRequest,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)

from tests.support.fake_bot_api import DEFAULT_TOKEN, FakeBotApi

T = TypeVar("T")


@pytest.fixture
def fake() -> Iterator[FakeBotApi]:
    with FakeBotApi() as server:
        yield server


def _run(fake: FakeBotApi, steps: Callable[[Bot], Awaitable[T]], token: str = DEFAULT_TOKEN) -> T:
    """Run ``steps`` with a real Bot pointed at the fake (initialised, then shut down)."""
    async def main() -> T:
        async with Bot(token, base_url=fake.base_url) as bot:
            return await steps(bot)
    return asyncio.run(main())


def test_get_me_names_the_bot_from_the_token_and_the_configured_username(
        fake: FakeBotApi) -> None:
    async def steps(bot: Bot) -> None:
        me = await bot.get_me()
        assert (me.id, me.username, me.is_bot) == (123456789, "sher_test_bot", True)
    _run(fake, steps)


def test_send_message_is_recorded_with_html_silence_and_keyboard(fake: FakeBotApi) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Confirm", callback_data="ok"),
                                      InlineKeyboardButton("Cancel", callback_data="no")]])

    async def steps(bot: Bot) -> int:
        message = await bot.send_message(42, "<b>Filled</b> 5 & 6", parse_mode="HTML",
                                         disable_notification=True, reply_markup=keyboard)
        return message.message_id

    message_id = _run(fake, steps)
    [sent] = fake.messages_to(42)
    assert (sent.text, sent.parse_mode, sent.disable_notification) == (
        "<b>Filled</b> 5 & 6", "HTML", True)
    assert sent.message_id == message_id and sent.token == DEFAULT_TOKEN
    assert [b["callback_data"] for b in sent.reply_markup["inline_keyboard"][0]] == ["ok", "no"]


def test_a_message_sent_without_options_rings_and_has_no_keyboard(fake: FakeBotApi) -> None:
    async def steps(bot: Bot) -> None:
        await bot.send_message(7, "plain text 123")
    _run(fake, steps)
    [sent] = fake.sent
    assert (sent.text, sent.parse_mode, sent.disable_notification, sent.reply_markup) == (
        "plain text 123", None, False, None)


def test_fail_next_answers_429_with_retry_after_then_serves_again(fake: FakeBotApi) -> None:
    fake.fail_next("sendMessage", times=2, retry_after=3)

    async def steps(bot: Bot) -> list[timedelta]:
        waits = []
        for _ in range(2):
            with pytest.raises(RetryAfter) as caught:
                await bot.send_message(1, "x")
            waits.append(caught.value.retry_after)
        await bot.send_message(1, "x")
        return waits

    assert _run(fake, steps) == [timedelta(seconds=3), timedelta(seconds=3)]
    assert len(fake.sent) == 1 and len(fake.rejected) == 2


def test_a_failure_for_one_chat_leaves_other_chats_served(fake: FakeBotApi) -> None:
    fake.fail_next("sendMessage", chat_id=2, error_code=500)

    async def steps(bot: Bot) -> None:
        await bot.send_message(1, "one")
        with pytest.raises(NetworkError):
            await bot.send_message(2, "two")
        await bot.send_message(2, "two")
    _run(fake, steps)
    assert [m.chat_id for m in fake.sent] == [1, 2]


def test_a_blocked_chat_answers_forbidden_every_time(fake: FakeBotApi) -> None:
    fake.block_chat(9)

    async def steps(bot: Bot) -> None:
        for _ in range(2):
            with pytest.raises(Forbidden, match="blocked"):
                await bot.send_message(9, "hello")
    _run(fake, steps)
    assert fake.sent == [] and len(fake.rejected) == 2


def test_an_unknown_token_is_unauthorized(fake: FakeBotApi) -> None:
    async def steps(bot: Bot) -> None:
        await bot.get_me()
    with pytest.raises(InvalidToken):
        _run(fake, steps, token="999:other-token-nobody-configured-000000")


def test_an_unknown_method_is_not_found_and_a_bad_send_is_a_bad_request(
        fake: FakeBotApi) -> None:
    async def steps(bot: Bot) -> None:
        with pytest.raises(EndPointNotFound, match="noSuchMethod"):
            await bot.do_api_request("noSuchMethod")
        with pytest.raises(BadRequest):
            await bot.send_message(5, "")
    _run(fake, steps)


def test_pushed_command_arrives_through_get_updates_with_its_entity(fake: FakeBotApi) -> None:
    fake.push_message(42, "/start ABCD2345", username="priya_t")

    async def steps(bot: Bot) -> tuple[str, str, int, str | None]:
        [update] = await bot.get_updates(timeout=1)
        msg = update.message
        assert msg is not None and msg.from_user is not None
        # confirming the update (offset past it) removes it
        assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == ()
        return msg.text or "", msg.entities[0].type, msg.chat.id, msg.from_user.username

    assert _run(fake, steps) == ("/start ABCD2345", "bot_command", 42, "priya_t")


def test_long_polling_answers_as_soon_as_an_update_is_queued(fake: FakeBotApi) -> None:
    async def steps(bot: Bot) -> float:
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, fake.push_message, 5, "hi")
        started = time.monotonic()
        updates = await bot.get_updates(timeout=10)
        assert [u.message.text for u in updates if u.message] == ["hi"]
        return time.monotonic() - started

    assert _run(fake, steps) < 3


def test_an_idle_long_poll_waits_its_timeout_and_returns_nothing(fake: FakeBotApi) -> None:
    async def steps(bot: Bot) -> float:
        started = time.monotonic()
        assert await bot.get_updates(timeout=1) == ()
        return time.monotonic() - started

    assert 0.9 <= _run(fake, steps) < 5


def test_a_button_press_is_answered_and_its_message_edited(fake: FakeBotApi) -> None:
    async def steps(bot: Bot) -> None:
        sent = await bot.send_message(42, "Panic?", reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("Yes", callback_data="panic:yes")]]))
        update_id = fake.push_callback(42, sent.message_id, "panic:yes")
        [update] = await bot.get_updates(timeout=1)
        query = update.callback_query
        assert update.update_id == update_id and query is not None
        assert query.data == "panic:yes" and query.message is not None
        assert query.message.chat.id == 42 and query.message.message_id == sent.message_id
        await bot.answer_callback_query(query.id, text="Working")
        await bot.edit_message_text("Panic done", chat_id=42, message_id=sent.message_id)
        await bot.edit_message_reply_markup(chat_id=42, message_id=sent.message_id)

    _run(fake, steps)
    assert [a["text"] for a in fake.callback_answers] == ["Working"]
    assert [e["method"] for e in fake.edits] == ["editmessagetext", "editmessagereplymarkup"]
    assert fake.edits[0]["text"] == "Panic done"


def test_commands_set_are_read_back(fake: FakeBotApi) -> None:
    async def steps(bot: Bot) -> list[str]:
        await bot.set_my_commands([("pnl", "Today's P&L"), ("help", "What I can do")])
        return [c.command for c in await bot.get_my_commands()]
    assert _run(fake, steps) == ["pnl", "help"]


def test_updates_for_two_bots_stay_apart() -> None:
    other = "987654321:BBE-fake-token-for-tests-1111111111"
    with FakeBotApi(tokens=(DEFAULT_TOKEN, other)) as fake:
        fake.push_message(1, "to the first")
        fake.push_message(2, "to the second", token=other)

        async def steps(bot: Bot) -> list[str]:
            return [u.message.text or "" for u in await bot.get_updates(timeout=0)
                    if u.message]
        assert _run(fake, steps) == ["to the first"]
        assert _run(fake, steps, token=other) == ["to the second"]


def test_wait_for_raises_an_assertion_error_on_timeout(fake: FakeBotApi) -> None:
    with pytest.raises(AssertionError, match=r"within 0\.1 s"):
        fake.wait_for(lambda: bool(fake.sent), timeout=0.1)
