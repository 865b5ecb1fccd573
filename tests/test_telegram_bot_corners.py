"""The Telegram bot in the corners a QA pass found: answered panics, refusals, 429s, limits.

The bot is the real python-telegram-bot Application of :mod:`jobs.telegram_bot` against
``tests.support.fake_bot_api.FakeBotApi`` (here one whose negative chat ids are groups, as
Telegram's are); the replies are asked directly where no bot is needed.
"""

# The bot, replies and trading-day fixtures are imported from test_telegram_bot; tests take
# them as arguments of the same name, which ruff reads as redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from core.clock import IST, now_ist
from core.errors import ValidationError
from core.services import Services
from core.services import risk_gate as risk_gate_module
from core.services.telegram_replies import DISABLED, REFUSAL, TelegramReplies
from core.trading import Side
from engines.risk_types import Scope
from jobs.telegram_commands import NOT_PRIVATE
from tests.support.fake_bot_api import FakeBotApi
from tests.support.market import tick
from tests.support.telegram_links import link_code
from tests.test_telegram_bot import (  # noqa: F401 - fixtures used by name
    CHATS,
    OTHER_TOKEN,
    STRANGER,
    TOKEN,
    _order,
    _press,
    _states,
    _text,
    ask,
    bot,
    labels,
    link,
    replies,
    trading_day,
)

pytestmark = pytest.mark.usefixtures("backend")
GROUP = -100_123
SUPERGROUP = -1_001_234_567_890
CHANNEL = -1_009_876_543_210
SHARED = {SUPERGROUP: "supergroup", CHANNEL: "channel"}


class GroupFake(FakeBotApi):
    """The fake Bot API, with chats of negative id shown as groups (as Telegram numbers them).

    :data:`SUPERGROUP` is a supergroup and :data:`CHANNEL` a channel; any other negative id a
    group.
    """

    @staticmethod
    def _chat(chat_id: int, username: str | None) -> dict[str, Any]:
        if chat_id >= 0:
            return FakeBotApi._chat(chat_id, username)
        return {"id": chat_id, "type": SHARED.get(chat_id, "group"), "title": "Family group"}


@pytest.fixture
def fake() -> Iterator[FakeBotApi]:
    with GroupFake(tokens=(TOKEN, OTHER_TOKEN)) as api:
        yield api


def _edits_of(fake: FakeBotApi, message_id: int) -> list[str]:
    return [_text(e["text"]) for e in fake.edits if e.get("message_id") == message_id]


# ----------------------------------------------------------------------------------------------
# /panic: a refused confirm (a second press: tests/test_telegram_bot.py)
# ----------------------------------------------------------------------------------------------


def test_a_confirm_refused_because_the_role_changed_ends_showing_the_refusal(
    services: Services, bot: Services, fake: FakeBotApi, login,
) -> None:
    chat = CHATS["kamla"]
    kamla = login("kamla")
    link(services, fake, kamla, chat)
    (question,) = ask(fake, chat, "/panic")
    services.users.set_role(login("rahul"), kamla.user_id, "viewer")
    before = len(fake.messages_to(chat))
    _press(fake, chat, question, "Confirm panic")
    fake.wait_for(lambda: any("viewer" in t for t in _edits_of(fake, question.message_id)))
    final = _edits_of(fake, question.message_id)[-1]
    assert final.startswith("Panic refused at") and "Your role 'viewer'" in final
    assert "cancelling and closing now" not in final
    time.sleep(0.3)
    assert len(fake.messages_to(chat)) == before  # the refusal is in the question, once
    assert _states(services) == []
    _press(fake, chat, question, "Confirm panic")
    assert fake.callback_answers[-1].get("text", "").startswith("Already refused at")


# ----------------------------------------------------------------------------------------------
# Flood control (429) on a reply
# ----------------------------------------------------------------------------------------------


def _rejected(fake: FakeBotApi, chat: int) -> list[dict[str, Any]]:
    return [r for r in fake.rejected if r.get("chat_id") == chat]


def test_a_reply_refused_with_429_is_sent_once_after_retry_after(
    services: Services, bot: Services, fake: FakeBotApi, login,
) -> None:
    chat = CHATS["priya"]
    link(services, fake, login("priya"), chat)
    fake.fail_next("sendMessage", times=1, retry_after=1, chat_id=chat)
    (reply,) = ask(fake, chat, "/help")
    assert _text(reply.text).startswith("SHER for Priya")
    (refused,) = _rejected(fake, chat)
    assert reply.at - refused["at"] >= 0.9  # waited retry_after before sending again
    time.sleep(0.3)
    assert [m.text for m in fake.messages_to(chat)].count(reply.text) == 1


def test_a_reply_refused_twice_is_dropped_after_one_retry_with_one_log_line(
    services: Services, bot: Services, fake: FakeBotApi, login,
    caplog: pytest.LogCaptureFixture,
) -> None:
    chat = CHATS["priya"]
    link(services, fake, login("priya"), chat)
    sent = len(fake.messages_to(chat))
    fake.fail_next("sendMessage", times=5, retry_after=1, chat_id=chat)
    with caplog.at_level(logging.WARNING):
        fake.push_message(chat, "/help")
        fake.wait_for(lambda: any("update failed: RetryAfter" in r.getMessage()
                                  for r in caplog.records))
        time.sleep(1.5)
    assert len(_rejected(fake, chat)) == 2  # the reply and its one retry, never a third
    assert len(fake.messages_to(chat)) == sent


# ----------------------------------------------------------------------------------------------
# A disabled member; /start in a group
# ----------------------------------------------------------------------------------------------


def test_a_disabled_member_is_told_so_with_no_data_and_may_still_unlink(
    services: Services, bot: Services, fake: FakeBotApi, login, trading_day,
) -> None:
    chat = CHATS["priya"]
    priya = login("priya")
    link(services, fake, priya, chat)
    services.users.set_active(login("rahul"), priya.user_id, False)
    for command in ("/pnl", "/positions", "/panic", "/start", "hello"):
        (reply,) = ask(fake, chat, command)
        assert _text(reply.text) == DISABLED, command
        assert reply.reply_markup is None
    (unlinked,) = ask(fake, chat, "/unlink")
    assert "Telegram unlinked" in _text(unlinked.text)
    assert services.telegram.chat_link(chat, None).actor is None
    assert _text(ask(fake, chat, "/pnl")[0].text) == _text(REFUSAL)


def test_start_without_a_code_in_a_linked_chat_says_it_is_already_linked_and_since_when(
    services: Services, bot: Services, fake: FakeBotApi, login,
) -> None:
    chat = CHATS["priya"]
    priya = login("priya")
    yesterday = now_ist() - timedelta(days=1)
    code = link_code(services, priya, now=yesterday).code
    services.telegram.link_chat(code, chat, "priya_phone", None, now=yesterday)
    (reply,) = ask(fake, chat, "/start")
    text = _text(reply.text)
    assert text.startswith("Telegram already linked\n\nThis chat is already linked to "
                           f"Priya Sharma (priya, trader; since {yesterday:%d %b %H:%M} IST).")
    assert "now belongs" not in text and "Telegram linked" not in text
    assert "/pnl" in text and "/settings" in text  # the same help as when it linked
    assert services.telegram.link_status(priya).linked_at == yesterday  # /start changed nothing


def test_a_link_code_typed_with_spaces_or_hyphens_links_and_a_wrong_one_gets_the_rule(
    services: Services, bot: Services, fake: FakeBotApi, login,
) -> None:
    for who, typed in (("priya", "{a} {b}"), ("kamla", "{a}-{b}"), ("rahul", " {a} - {b} "),
                       ("aarav", "{a}\u2013{b}")):
        code = link_code(services, login(who)).code
        lower = typed.format(a=code[:4], b=code[4:]).lower()
        (reply,) = ask(fake, CHATS[who], f"/start {lower}")
        assert _text(reply.text).startswith("Telegram linked"), (who, lower)
        assert services.telegram.chat_link(CHATS[who], None).actor.username == who
    for typed, got in (("DGTB RHN6X", 9), ("DGTB-RHN", 7), ("DGTB_RHN6", 9), ("DGTB RHN0", 8)):
        (reply,) = ask(fake, STRANGER, f"/start {typed}")
        assert _text(reply.text) == (
            "A link code is 8 characters from ABCDEFGHJKMNPQRSTUVWXYZ23456789; got "
            f"{got} characters that do not match. Copy it from the Alerts page"), typed
    assert services.telegram.chat_link(STRANGER, None).actor is None


@pytest.mark.parametrize("text", ["/start", "/start ABCDEFGH"])
def test_start_in_a_group_says_only_to_link_in_a_private_chat(
    bot: Services, fake: FakeBotApi, text: str,
) -> None:
    (reply,) = ask(fake, GROUP, text)
    assert _text(reply.text).startswith("Link SHER in a private chat with the bot")
    assert "/start CODE" not in _text(reply.text)


def _quiet(fake: FakeBotApi, chat: int, push: Callable[[], object]) -> None:
    """Assert ``push()`` gets no reply in ``chat``: a /help pushed after it gets the only one."""
    before = len(fake.messages_to(chat))
    push()
    if chat == CHANNEL:
        fake.push_channel_post(chat, "/help")
    else:
        fake.push_message(chat, "/help", from_id=CHATS["priya"])
    fake.wait_for(lambda: len(fake.messages_to(chat)) > before)
    time.sleep(0.3)
    (only,) = fake.messages_to(chat)[before:]
    assert _text(only.text) == NOT_PRIVATE.format(bot="sher_test_bot")


def test_a_linked_member_s_command_in_a_group_is_pointed_once_to_a_private_chat(
    services: Services, bot: Services, fake: FakeBotApi, login, trading_day,
) -> None:
    link(services, fake, login("priya"), CHATS["priya"])
    link(services, fake, login("rahul"), CHATS["rahul"])
    expected = "I answer only in a private chat with me: open a chat with @sher_test_bot and " \
               "send /start CODE there."
    for chat, who in ((GROUP, "priya"), (SUPERGROUP, "rahul")):
        for command in ("/pnl", "/help", "/positions", "/panic", "/settings", "/unlink",
                        "/foo", "/pnl@sher_test_bot"):
            (reply,) = ask(fake, chat, command, from_id=CHATS[who])
            assert _text(reply.text) == expected, (chat, command)
            assert reply.reply_markup is None
        time.sleep(0.3)
        assert len(fake.messages_to(chat)) == 8, chat  # once each, no refusal after it
    assert services.telegram.chat_link(CHATS["priya"], None).actor is not None  # still linked
    fake.push_channel_post(CHANNEL, "/pnl")  # a command posted in a channel: the same, once
    fake.wait_for(lambda: len(fake.messages_to(CHANNEL)) == 1)
    time.sleep(0.3)
    assert [_text(m.text) for m in fake.messages_to(CHANNEL)] == [expected]


def test_plain_messages_and_channel_posts_in_a_group_get_no_answer(
    services: Services, bot: Services, fake: FakeBotApi, login,
) -> None:
    link(services, fake, login("priya"), CHATS["priya"])
    for chat in (GROUP, SUPERGROUP):
        for text in ("hello", "who bought INFY?", "/pnl@another_bot"):
            _quiet(fake, chat, lambda c=chat, t=text: fake.push_message(
                c, t, from_id=CHATS["priya"]))
    for text in ("market opens at 9:15", "hello"):
        _quiet(fake, CHANNEL, lambda t=text: fake.push_channel_post(CHANNEL, t))


def test_editing_a_sent_command_or_message_gets_no_answer_and_asks_no_panic(
    services: Services, bot: Services, fake: FakeBotApi, login, trading_day,
) -> None:
    chat = CHATS["rahul"]
    link(services, fake, login("rahul"), chat)
    before = len(fake.messages_to(chat))
    sent = {text: fake.push_message(chat, text) for text in ("/pnl", "/panic", "hello")}
    fake.wait_for(lambda: len(fake.messages_to(chat)) == before + 3)
    for text, message_id in sent.items():  # each edited, to itself and to another command
        for edited in (text, "/panic", "/pnl", "/foo", "/start ABCDEFGH", "hi there"):
            fake.push_edit(chat, message_id, edited)
    channel_post = fake.push_channel_post(CHANNEL, "hello")
    fake.push_edit(CHANNEL, channel_post, "/pnl", channel=True)
    fake.push_edit(GROUP, fake.push_message(GROUP, "hi", from_id=chat), "/pnl", from_id=chat)
    (reply,) = ask(fake, chat, "/help")  # answered after the edits: they got nothing
    assert _text(reply.text).startswith("SHER for Rahul")
    time.sleep(0.5)
    assert len(fake.messages_to(chat)) == before + 4
    assert [m.reply_markup is not None for m in fake.messages_to(chat)[before:]] == [
        False, True, False, False]  # the one panic question is the first /panic's
    assert fake.messages_to(CHANNEL) == [] and fake.messages_to(GROUP) == []
    _quiet(fake, CHANNEL, lambda: None)  # a new command there still gets its one answer
    _quiet(fake, GROUP, lambda: None)


# ----------------------------------------------------------------------------------------------
# Telegram's 4,096 characters
# ----------------------------------------------------------------------------------------------


def test_a_huge_word_in_settings_is_echoed_cut_and_the_reply_fits_one_message(
    services: Services, bot: Services, fake: FakeBotApi, login,
) -> None:
    chat = CHATS["aarav"]
    link(services, fake, login("aarav"), chat)
    (reply,) = ask(fake, chat, "/settings " + "a" * 4000 + " on")
    text = _text(reply.text)
    assert len(reply.text) <= 4096
    assert text.startswith("Unknown alert type 'aaa") and "…'" in text
    assert max(len(run) for run in re.findall("a+", text)) < 40


def test_a_reply_longer_than_telegram_allows_is_clipped_to_valid_html(
    services: Services, bot: Services, fake: FakeBotApi, login, monkeypatch: pytest.MonkeyPatch,
) -> None:
    link(services, fake, login("priya"), CHATS["priya"])

    def wordy(_actor: object) -> str:
        raise ValidationError("too long " * 700)

    monkeypatch.setattr(bot.telegram_replies, "pnl", wordy)
    (reply,) = ask(fake, CHATS["priya"], "/pnl")  # ask() checks the HTML is valid
    assert len(reply.text) <= 4096 and reply.text.startswith("too long")
    assert "(cut: too long for one message)" in reply.text


# ----------------------------------------------------------------------------------------------
# /pnl and /status
# ----------------------------------------------------------------------------------------------


def _pnl_rows(reply: str) -> dict[str, tuple[Decimal, Decimal]]:
    """Return {account label (as shown): (today, week)} of a /pnl reply's table."""
    block = html.unescape(re.search(r"<pre>(.*?)</pre>", reply, flags=re.DOTALL)[1])
    rows = {}
    for line in block.split("\n")[2:]:
        *label, today, week = line.split()
        rows[" ".join(label)] = tuple(Decimal(v.replace(",", "").lstrip("+"))
                                      for v in (today, week))
    return rows


def test_pnl_reads_today_and_week_from_one_book_of_each_account(
    services: Services, replies: TelegramReplies, login, trading_day,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(risk_gate_module, "BOOK_CACHE_SECONDS", 3600.0)
    for account_id in services.orders.viewable_ids(login("rahul"), None):
        services.risk_gate.snapshot(account_id)  # the gate's book, as an order check leaves it
    tick(services.db, "SBIN", "823.35")  # the feed moves on; no new fill
    tick(services.db, "INFY", "1497.15")
    rows = _pnl_rows(replies.pnl(login("rahul")))
    rows.pop("Total")
    for label, (today, week) in rows.items():
        assert today == week, label  # every trade is today's: the two columns must agree


def test_pnl_total_is_the_sum_of_the_rows_as_shown_to_the_paisa(
    services: Services, replies: TelegramReplies, login, labels, trading_day,
) -> None:
    for who, account in (("kamla", "Kamla · Pension"), ("rahul", "Rahul · Long-term")):
        services.orders.place(login(who), _order(labels[account], "TCS", Side.BUY, 1))
    tick(services.db, "TCS", "3000.00")
    services.orders.step()  # four rows whose unrounded sum rounds a paisa below their sum
    rows = _pnl_rows(replies.pnl(login("rahul")))
    total = rows.pop("Total")
    assert total == (sum(r[0] for r in rows.values()), sum(r[1] for r in rows.values()))
    assert total[0] == Decimal("164.40")


def test_status_shows_the_paper_desk_s_market_and_the_calendar_when_they_differ(
    services: Services, replies: TelegramReplies, login,
) -> None:
    saturday = datetime(2026, 11, 21, 11, 0, tzinfo=IST)
    weekend = TelegramReplies(services, clock=lambda: saturday)
    text = _text(weekend.status(login("priya")))
    assert "Market: open · market feed running (test feed, replay) · trading day" in text
    assert "NSE calendar: closed — " in text and "weekend" in text
    assert "Market: closed" not in text


# ----------------------------------------------------------------------------------------------
# /orders, an unknown command, /panic while a panic holds
# ----------------------------------------------------------------------------------------------


def test_orders_are_grouped_under_their_account_and_name_the_id_a_rejection_refers_to(
    services: Services, replies: TelegramReplies, login, trading_day,
) -> None:
    rahul = login("rahul")
    book = {o.symbol + o.side.value: o for o in services.orders.order_book(rahul)}
    reply = replies.orders(rahul)
    text = _text(reply)
    tcs, sbin = book["TCSBUY"], book["SBINBUY"]
    assert f"#{tcs.id} B TCS" in text and f"#{sbin.id} B SBIN" in text
    blocks = {block.split("\n")[0]: block for block in text.split("\n\n")}
    assert f"#{tcs.id} B TCS" in blocks["Rahul · Intraday"]
    assert f"#{sbin.id} B SBIN" in blocks["Priya · Trading"]
    assert "TCS" not in blocks["Priya · Trading"]
    widths = [len(line) for block in re.findall(r"<pre>(.*?)</pre>", reply, flags=re.DOTALL)
              for line in html.unescape(block).split("\n")]
    assert max(widths) <= 36


def test_an_unknown_command_is_named_unknown_with_a_pointer_to_help(
    services: Services, bot: Services, fake: FakeBotApi, login,
) -> None:
    link(services, fake, login("kamla"), CHATS["kamla"])
    text = _text(ask(fake, CHATS["kamla"], "/foo bar")[0].text)
    assert text.startswith("Unknown command /foo: send /help for the list")
    assert "/pnl" in text
    assert _text(ask(fake, CHATS["kamla"], "hello")[0].text).startswith("I answer commands only")


def test_panic_while_a_household_panic_holds_says_so_and_asks_nothing(
    services: Services, bot: Services, fake: FakeBotApi, login,
) -> None:
    rahul = login("rahul")
    link(services, fake, rahul, CHATS["rahul"])
    link(services, fake, login("priya"), CHATS["priya"])
    services.risk.panic(rahul, Scope.HOUSEHOLD)
    for who in ("rahul", "priya"):
        (reply,) = ask(fake, CHATS[who], "/panic")
        text = _text(reply.text)
        assert text.startswith("Panic already active") and "A household panic" in text, who
        assert reply.reply_markup is None
    assert len(_states(services)) == 1


def test_confirming_an_older_panic_question_after_a_panic_ran_says_it_is_active_and_runs_nothing(
    services: Services, bot: Services, fake: FakeBotApi, login,
) -> None:
    chat = CHATS["rahul"]
    link(services, fake, login("rahul"), chat)
    # asked twice, then the first confirmed
    first, second = (ask(fake, chat, "/panic")[0] for _ in range(2))
    before = len(fake.messages_to(chat))
    _press(fake, chat, first, "Confirm panic")
    fake.wait_for(lambda: len(fake.messages_to(chat)) > before, timeout=30)
    assert _text(fake.messages_to(chat)[before].text).startswith("Panic done")
    _press(fake, chat, second, "Confirm panic")
    fake.wait_for(lambda: bool(_edits_of(fake, second.message_id)))
    time.sleep(0.5)
    (edit,) = _edits_of(fake, second.message_id)  # one answer, never "cancelling and closing"
    assert edit.startswith("Panic already active") and "A household panic is already" in edit
    assert "nothing more for /panic to do" in edit
    assert len(fake.messages_to(chat)) == before + 1  # the first's report only, not re-sent
    assert len(_states(services)) == 1
    assert _text(ask(fake, chat, "/panic")[0].text) == edit  # what /panic says now
    _press(fake, chat, second, "Confirm panic")
    assert re.fullmatch(r"Already answered at \d\d:\d\d IST: a panic was already active",
                        fake.callback_answers[-1].get("text", ""))
