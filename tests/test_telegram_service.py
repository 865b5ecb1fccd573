"""The Telegram service: bot tokens, link codes, chat links, preferences and delivery planning."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import time, timedelta
from decimal import Decimal

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from core import alerts
from core.alert_types import AlertType, Mode
from core.alerts import Alert
from core.clock import now_ist
from core.domain import Actor
from core.errors import PermissionDenied, ValidationError
from core.services import Services
from core.services.telegram import (
    CODE_ALPHABET,
    NO_BOT_FOR_LINK,
    BotTarget,
    LinkCode,
    TelegramService,
    code_hash,
)
from core.services.telegram_delivery import NOT_LINKED
from core.services.telegram_prefs import THRESHOLD_RULE
from db.models import (
    AccountRow,
    AlertDeliveryRow,
    AlertOutboxRow,
    AlertPreferenceRow,
    AuditRow,
    NotificationSettingsRow,
    TelegramBotRow,
    TelegramLinkCodeRow,
    TelegramLinkRow,
    UserRow,
)
from tests.support.telegram_links import link_code

Login = Callable[[str], Actor]
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_x"
OTHER_TOKEN = "987654321:BBHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw-y"
CHATS = {"rahul": 1001, "priya": 1002, "kamla": 1003, "aarav": 1004, "ops": 1005}


def _count(services: Services, model: type) -> int:
    with services.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _audits(services: Services, prefix: str) -> list[AuditRow]:
    with services.db.transaction() as session:
        return list(session.scalars(select(AuditRow).where(AuditRow.action.like(f"{prefix}%"))
                                    .order_by(AuditRow.id)))


def _link(services: Services, actor: Actor, chat_id: int) -> Actor:
    code = link_code(services, actor)
    return services.telegram.link_chat(code.code, chat_id, f"@{actor.username}_tg", None)


def _link_all(services: Services, login: Login, *names: str) -> dict[str, Actor]:
    actors = {name: login(name) for name in names}
    for name, actor in actors.items():
        _link(services, actor, CHATS[name])
    return actors


def _account_id(services: Services, label: str) -> int:
    with services.db.transaction() as session:
        ident = session.scalar(select(AccountRow.id).where(AccountRow.label == label))
    assert ident is not None
    return int(ident)


def _enqueue(services: Services, *, key: str, account_id: int | None = None,
             user_id: int | None = None, kind: str = "order.filled", severity: str = "info",
             title: str = "Order filled", body: str = "BUY 10 RELIANCE @ 2,450.05",
             probability: Decimal | None = None) -> Alert:
    with services.db.transaction() as session:
        household_id = session.scalar(select(UserRow.household_id)
                                      .where(UserRow.username == "rahul"))
        assert household_id is not None
        alerts.enqueue(session, kind=kind, household_id=household_id, account_id=account_id,
                       severity=severity, title=title, body=body, dedupe_key=key,
                       user_id=user_id, probability=probability)
        row = session.scalar(select(AlertOutboxRow).where(AlertOutboxRow.dedupe_key == key))
        assert row is not None
        return alerts.to_alert(row)


def _by_user(services: Services, planned: list) -> dict[str, object]:
    with services.db.transaction() as session:
        names = dict(session.execute(select(UserRow.id, UserRow.username)).all())
    return {names[p.user_id]: p for p in planned}


# -- bot token --------------------------------------------------------------------------------
def test_an_admin_stores_the_bot_token_encrypted_and_it_is_never_shown_again(
        services: Services, login: Login, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rahul = login("rahul")
    assert services.telegram.bot_info(rahul).configured is False
    info = services.telegram.set_bot_token(rahul, f"  {TOKEN} ")
    assert (info.configured, info.source, info.set_by) == (True, "household", "rahul")
    assert info.set_at is not None and TOKEN not in repr(info)
    assert services.telegram.bot_info(login("aarav")) == info  # any role may see it is set
    with services.db.transaction() as session:
        stored = session.scalar(select(TelegramBotRow.token_enc))
    assert stored is not None and TOKEN not in stored and TOKEN.split(":")[1] not in stored
    targets = services.telegram.bot_targets()
    assert [(t.token, t.household_ids) for t in targets] == [
        (TOKEN, frozenset({rahul.household_id}))]
    assert TOKEN.split(":")[1] not in repr(targets)
    audit = _audits(services, "telegram.bot")
    assert [a.action for a in audit] == ["telegram.bot.set"]
    assert TOKEN.split(":")[1] not in str(audit[0].details)
    assert TOKEN.split(":")[1] not in caplog.text


def test_clearing_the_token_falls_back_to_the_environment_bot(
        services: Services, login: Login) -> None:
    rahul = login("rahul")
    services.telegram.set_bot_token(rahul, TOKEN)
    services.telegram.settings = services.settings.model_copy(
        update={"telegram_bot_token": SecretStr(OTHER_TOKEN)})
    assert [t.household_ids for t in services.telegram.bot_targets()] == [
        None, frozenset({rahul.household_id})]
    info = services.telegram.clear_bot_token(rahul)
    assert (info.configured, info.source, info.set_at) == (True, "environment", None)
    assert [(t.token, t.household_ids) for t in services.telegram.bot_targets()] == [
        (OTHER_TOKEN, None)]
    services.telegram.set_bot_username(OTHER_TOKEN, "@sher_family_bot")
    assert services.telegram.bot_info(rahul).bot_username == "sher_family_bot"
    # The app is another process: it reads the name the bot process recorded.
    app = TelegramService(services.db, services.telegram.settings, services.household)
    assert app.bot_info(rahul).bot_username == "sher_family_bot"
    assert app.link_status(login("aarav")).bot_username == "sher_family_bot"


def test_getme_username_is_recorded_for_the_households_using_that_token(
        services: Services, login: Login) -> None:
    rahul = login("rahul")
    services.telegram.set_bot_token(rahul, TOKEN)
    services.telegram.set_bot_username(TOKEN, "sharma_desk_bot")
    assert services.telegram.bot_info(rahul).bot_username == "sharma_desk_bot"
    assert services.telegram.link_status(login("kamla")).bot_username == "sharma_desk_bot"


@pytest.mark.parametrize("name", ["priya", "kamla", "aarav"])
def test_only_household_admins_may_set_or_clear_the_bot_token(
        services: Services, login: Login, name: str) -> None:
    actor = login(name)
    with pytest.raises(PermissionDenied, match="may not configure"):
        services.telegram.set_bot_token(actor, TOKEN)
    with pytest.raises(PermissionDenied, match="may not configure"):
        services.telegram.clear_bot_token(actor)
    assert _count(services, TelegramBotRow) == 0
    assert services.telegram.set_bot_token(login("ops"), TOKEN).set_by == "ops"


@pytest.mark.parametrize("bad", [
    "", "123456789", "abc:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_x",
    "1234:AAHdqTcvCH1vGWJxfSeofSAs0K5PAL",
    "123456789:short", "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw x",
    "123456789:" + "A" * 65,
    # the bot's id in other scripts' digits (Devanagari, fullwidth): Telegram never issues them
    "\u0967\u0968\u0969\u096a\u096b\u096c\u096d\u096e\u096f:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_x",
    "\uff11\uff12\uff13\uff14\uff15\uff16:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_x",
])
def test_a_malformed_token_is_refused_with_the_rule_without_echoing_it(
        services: Services, login: Login, bad: str) -> None:
    with pytest.raises(ValidationError, match=r"\(5-12 digits\), a colon and 30-64") as error:
        services.telegram.set_bot_token(login("rahul"), bad)
    if bad:
        assert bad not in str(error.value)
    assert _count(services, TelegramBotRow) == 0
    assert _audits(services, "telegram.") == []


# -- link codes and links ---------------------------------------------------------------------
def test_no_link_code_is_made_while_no_bot_serves_the_household(
        services: Services, login: Login) -> None:
    kamla = login("kamla")
    assert services.telegram.bot_info(kamla).configured is False
    with pytest.raises(ValidationError) as refused:
        services.telegram.create_link_code(kamla)
    assert str(refused.value) == NO_BOT_FOR_LINK
    assert "household admin" in str(refused.value) and "TELEGRAM_BOT_TOKEN" in str(refused.value)
    assert _count(services, TelegramLinkCodeRow) == 0 and _audits(services, "telegram") == []

    services.telegram.set_bot_token(login("rahul"), TOKEN)  # an admin sets the household's bot
    code = services.telegram.create_link_code(kamla)
    assert len(code.code) == 8 and _count(services, TelegramLinkCodeRow) == 1


def test_a_member_links_their_chat_with_a_one_time_code(services: Services, login: Login) -> None:
    kamla = login("kamla")
    code = link_code(services, kamla)
    assert len(code.code) == 8 and set(code.code) <= set(CODE_ALPHABET)
    assert timedelta(minutes=9) < code.expires_at - now_ist() <= timedelta(minutes=10)
    with services.db.transaction() as session:
        stored = list(session.scalars(select(TelegramLinkCodeRow.code_hash)))
    assert stored == [code_hash(code.code)]  # only the hash is stored
    actor = services.telegram.link_chat(code.code.lower(), 555, "@kamla_phone", None)
    assert (actor.user_id, actor.role, actor.client.channel) == (kamla.user_id, kamla.role,
                                                                 "telegram")
    assert actor.member_id == kamla.member_id
    status = services.telegram.link_status(kamla)
    assert (status.linked, status.telegram_username) == (True, "kamla_phone")
    assert services.telegram.actor_for_chat(555, None) == actor
    assert [a.action for a in _audits(services, "telegram.link")] == [
        "telegram.link_code", "telegram.link"]


def test_a_used_code_cannot_link_again(services: Services, login: Login) -> None:
    code = link_code(services, login("priya"))
    services.telegram.link_chat(code.code, 42, None, None)
    with pytest.raises(ValidationError, match=rf"Link code {code.code} was already used at "
                                              r"\d\d:\d\d IST"):
        services.telegram.link_chat(code.code, 43, None, None)
    assert services.telegram.actor_for_chat(43, None) is None


def test_an_expired_code_says_when_it_expired(services: Services, login: Login) -> None:
    start = now_ist().replace(hour=19, minute=22, second=0, microsecond=0)
    code = link_code(services, login("priya"), now=start)
    with pytest.raises(ValidationError, match=r"expired at 19:32 IST"):
        services.telegram.link_chat(code.code, 42, None, None, now=start + timedelta(minutes=10))
    assert _count(services, TelegramLinkRow) == 0
    services.telegram.link_chat(code.code, 42, None, None, now=start + timedelta(minutes=9))


def test_a_new_code_replaces_the_users_unused_ones(services: Services, login: Login) -> None:
    priya = login("priya")
    first = link_code(services, priya)
    second = link_code(services, priya)
    with pytest.raises(ValidationError, match=rf"Link code {first.code} is not known"):
        services.telegram.link_chat(first.code, 42, None, None)
    assert services.telegram.link_chat(second.code, 42, None, None).username == "priya"


@pytest.mark.parametrize(("code", "shown"), [
    ("", "got 0 characters"), ("ABC", "got 3 characters"), ("ABCDEFG0", "got 8 characters"),
    ("ABCDEFGHJ", "got 9 characters"),
])
def test_a_malformed_code_states_the_rule_and_writes_nothing(
        services: Services, code: str, shown: str) -> None:
    before = _count(services, AuditRow)
    with pytest.raises(ValidationError, match=rf"8 characters from {CODE_ALPHABET}; {shown}"):
        services.telegram.link_chat(code, 42, None, None)
    assert _count(services, TelegramLinkRow) == 0 and _count(services, AuditRow) == before


def test_a_chat_linked_to_one_member_cannot_be_taken_by_another(
        services: Services, login: Login) -> None:
    _link(services, login("priya"), 42)
    code = link_code(services, login("kamla"))
    with pytest.raises(ValidationError, match="already linked to 'priya'"):
        services.telegram.link_chat(code.code, 42, None, None)
    # nothing was written: the code still works from the member's own chat
    assert services.telegram.link_chat(code.code, 43, None, None).username == "kamla"


def test_relinking_moves_the_member_to_the_new_chat(services: Services, login: Login) -> None:
    priya = login("priya")
    _link(services, priya, 42)
    _link(services, priya, 77)
    assert services.telegram.actor_for_chat(42, None) is None
    assert services.telegram.actor_for_chat(77, None) is not None
    assert _count(services, TelegramLinkRow) == 1
    assert _audits(services, "telegram.link")[-1].details == (
        '{"chat_id":77,"moved_from_chat_id":42,"telegram_username":"priya_tg"}')


def test_an_inactive_user_can_neither_link_nor_act_from_a_chat(
        services: Services, login: Login) -> None:
    aarav = login("aarav")
    _link(services, aarav, 44)
    code = link_code(services, aarav)
    with services.db.transaction() as session:
        user = session.get(UserRow, aarav.user_id)
        assert user is not None
        user.is_active = False
    assert services.telegram.actor_for_chat(44, None) is None
    with pytest.raises(ValidationError, match="User 'aarav' is not active"):
        services.telegram.link_chat(code.code, 45, None, None)


def test_a_bot_only_serves_its_own_households(services: Services, login: Login) -> None:
    rahul = login("rahul")
    _link(services, rahul, 1001)
    mine = frozenset({rahul.household_id})
    assert services.telegram.actor_for_chat(1001, mine) is not None
    assert services.telegram.actor_for_chat(1001, frozenset({rahul.household_id + 99})) is None
    code = link_code(services, login("priya"))
    with pytest.raises(ValidationError, match="This bot does not serve 'priya'"):
        services.telegram.link_chat(code.code, 1002, None, frozenset({rahul.household_id + 99}))
    # once the household has its own bot, the environment's bot no longer serves it
    services.telegram.set_bot_token(rahul, TOKEN)
    assert services.telegram.actor_for_chat(1001, None) is None
    assert services.telegram.actor_for_chat(1001, mine) is not None


def test_unlinking_from_the_page_or_the_chat_forgets_the_chat(
        services: Services, login: Login) -> None:
    priya, kamla = login("priya"), login("kamla")
    _link(services, priya, 42)
    _link(services, kamla, 43)
    assert services.telegram.unlink(priya) is True
    assert services.telegram.unlink(priya) is False
    assert services.telegram.unlink_chat(43) is True
    assert services.telegram.unlink_chat(43) is False
    assert services.telegram.link_status(kamla).linked is False
    assert [a.actor_username for a in _audits(services, "telegram.unlink")] == ["priya", "kamla"]


def test_the_bot_target_repr_hides_the_token() -> None:
    target = BotTarget(TOKEN, None)
    assert TOKEN.split(":")[1] not in repr(target) and "123456789" in repr(target)
    assert TOKEN not in repr(LinkCode("ABCDEFGH", now_ist()))


# -- preferences ------------------------------------------------------------------------------
def test_preferences_default_then_change_and_read_back(services: Services, login: Login) -> None:
    kamla = login("kamla")
    prefs = services.telegram.notification_prefs(kamla)
    assert prefs.mode(AlertType.ORDER_FILLED) is Mode.ON
    assert prefs.daily_summary_time == time(16, 0) and prefs.dnd_start is None
    updated = services.telegram.update_prefs(
        kamla, modes={"order_filled": "silent", "signal": "off"}, dnd=(time(22), time(7)),
        signal_min_probability=Decimal("0.85"))
    assert updated.mode(AlertType.ORDER_FILLED) is Mode.SILENT
    assert updated.mode(AlertType.SIGNAL) is Mode.OFF
    assert (updated.dnd_start, updated.dnd_end) == (time(22), time(7))
    assert updated.signal_min_probability == Decimal("0.85")
    assert updated.daily_summary_time == time(16, 0)  # unchanged
    again = services.telegram.update_prefs(kamla, modes={"signal": "on"}, dnd=None,
                                           daily_summary_time=None)
    assert again.mode(AlertType.SIGNAL) is Mode.ON and again.mode(AlertType.ORDER_FILLED) is \
        Mode.SILENT
    assert (again.dnd_start, again.daily_summary_time) == (None, None)
    assert again.signal_min_probability == Decimal("0.85")
    assert services.telegram.notification_prefs(kamla) == again
    assert services.telegram.notification_prefs(login("priya")).mode(AlertType.SIGNAL) is Mode.ON
    assert len(_audits(services, "telegram.prefs")) == 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"modes": {"orders": "on"}}, "Unknown alert type 'orders'; choose one of order_placed"),
    ({"modes": {"order_filled": "loud"}}, "Unknown mode 'loud'; choose one of on, silent, off"),
    ({"dnd": (time(22), time(22))}, "must start and end at different times; got 22:00-22:00"),
    ({"daily_summary_time": time(9, 0)}, "after the close, from 15:35 IST: pick a time from "
                                         "15:35 to 23:59; got 09:00"),
    ({"signal_min_probability": Decimal("-0.01")}, "between 0.00 and 0.99 .*; got -0.01"),
    ({"signal_min_probability": Decimal("1")}, "between 0.00 and 0.99 .*; got 1"),
    ({"signal_min_probability": Decimal("0.7001")}, "at most 3 decimals; got 0.7001"),
    ({"signal_min_probability": Decimal("NaN")}, "got NaN"),
])
def test_bad_preferences_state_the_rule_and_write_nothing(
        services: Services, login: Login, kwargs: dict, message: str) -> None:
    kamla, given = login("kamla"), dict(kwargs)
    modes = {"signal": "off"} | given.pop("modes", {})  # a valid change beside the bad one
    with pytest.raises(ValidationError, match=message):
        services.telegram.update_prefs(kamla, modes=modes, **given)
    assert _count(services, AlertPreferenceRow) == 0
    assert _count(services, NotificationSettingsRow) == 0


@pytest.mark.parametrize("typed", ["-1", "1.5", "1", "75%", "0,75", "abc", "0.7555", "1e-1",
                                   "\u0966.\u096b"])  # the last: Devanagari digits 0.5
def test_a_typed_threshold_the_rule_refuses_is_quoted_with_the_rule_and_nothing_is_written(
        services: Services, login: Login, typed: str) -> None:
    kamla = login("kamla")
    services.telegram.update_prefs(kamla, signal_min_probability="0.50")
    before = services.telegram.notification_prefs(kamla)
    with pytest.raises(ValidationError) as refused:
        services.telegram.update_prefs(kamla, modes={"signal": "off"},
                                       signal_min_probability=f" {typed} ")
    assert str(refused.value) == (
        "Signal threshold must be between 0.00 and 0.99 (a probability: 0.75, not 75%) with at "
        f"most 3 decimals; got {typed}")
    assert str(refused.value).startswith(THRESHOLD_RULE)
    assert services.telegram.notification_prefs(kamla) == before
    assert len(_audits(services, "telegram.prefs")) == 1


def test_an_empty_typed_threshold_is_refused_with_the_rule(
        services: Services, login: Login) -> None:
    with pytest.raises(ValidationError, match=r"at most 3 decimals; got nothing \(0.00 lets"):
        services.telegram.update_prefs(login("kamla"), signal_min_probability="  ")
    assert _count(services, NotificationSettingsRow) == 0


@pytest.mark.parametrize(("typed", "stored"), [
    ("0.75", "0.75"), (" .5 ", "0.5"), ("0.755", "0.755"), ("0", "0"), ("0.99", "0.99"),
    ("0.990000", "0.990"),
])
def test_a_typed_threshold_within_the_rule_is_stored_as_typed(
        services: Services, login: Login, typed: str, stored: str) -> None:
    kamla = login("kamla")
    services.telegram.update_prefs(kamla, signal_min_probability=typed)
    assert services.telegram.notification_prefs(kamla).signal_min_probability == Decimal(stored)


# -- delivery planning ------------------------------------------------------------------------
def test_a_household_alert_goes_to_every_active_user_and_unlinked_ones_are_skipped(
        services: Services, login: Login) -> None:
    _link_all(services, login, "rahul", "priya", "kamla")
    alert = _enqueue(services, key="h1", kind="feed_stalled", severity="warning",
                     title="Feed stalled", body="No ticks for 90 s")
    planned = _by_user(services, services.telegram.plan(alert, now_ist()))
    assert sorted(planned) == ["aarav", "kamla", "ops", "priya", "rahul"]
    for name in ("rahul", "priya", "kamla"):
        p = planned[name]
        assert (p.chat_id, p.skip_reason, p.silent) == (CHATS[name], None, False)
        assert "<b>Feed stalled</b>" in p.text and "\nHousehold\n" in p.text
    assert (planned["aarav"].chat_id, planned["aarav"].skip_reason) == (None, NOT_LINKED)


def test_an_account_alert_reaches_exactly_the_people_who_may_view_the_account(
        services: Services, login: Login) -> None:
    _link_all(services, login, *CHATS)
    # Rahul · Long-term: owner rahul, view grants aarav (viewer) and priya; admins rahul, ops
    long_term = _enqueue(services, key="a1", account_id=_account_id(services, "Rahul · Long-term"))
    assert sorted(_by_user(services, services.telegram.plan(long_term, now_ist()))) == [
        "aarav", "ops", "priya", "rahul"]
    # Kamla · Pension: owner kamla, trade grant rahul; kamla's own trader-less family
    pension = _enqueue(services, key="a2", account_id=_account_id(services, "Kamla · Pension"))
    assert sorted(_by_user(services, services.telegram.plan(pension, now_ist()))) == [
        "kamla", "ops", "rahul"]
    # Priya · Trading: aarav has no grant, so the viewer gets nothing
    trading = _enqueue(services, key="a3", account_id=_account_id(services, "Priya · Trading"))
    planned = _by_user(services, services.telegram.plan(trading, now_ist()))
    assert sorted(planned) == ["ops", "priya", "rahul"]
    assert "\nPriya · Trading\n" in planned["priya"].text


def test_a_one_user_alert_goes_to_that_user_only(services: Services, login: Login) -> None:
    actors = _link_all(services, login, "rahul", "priya")
    alert = _enqueue(services, key="u1", user_id=actors["priya"].user_id,
                     kind="auth.session_expiry", severity="warning", title="Session ends soon")
    planned = services.telegram.plan(alert, now_ist())
    assert [(p.user_id, p.chat_id) for p in planned] == [(actors["priya"].user_id, 1002)]


def test_preferences_shape_each_recipients_delivery(services: Services, login: Login) -> None:
    actors = _link_all(services, login, "rahul", "priya", "kamla")
    services.telegram.update_prefs(actors["priya"], modes={"order_filled": "off"})
    services.telegram.update_prefs(actors["kamla"], modes={"order_filled": "silent"})
    alert = _enqueue(services, key="p1")
    planned = _by_user(services, services.telegram.plan(alert, now_ist()))
    assert (planned["rahul"].skip_reason, planned["rahul"].silent) == (None, False)
    assert planned["priya"].skip_reason == "Order filled alerts are off"
    assert (planned["kamla"].skip_reason, planned["kamla"].silent) == (None, True)


def test_a_signal_reaches_only_members_whose_threshold_it_meets(
        services: Services, login: Login) -> None:
    actors = _link_all(services, login, "rahul", "priya")
    services.telegram.update_prefs(actors["priya"], signal_min_probability=Decimal("0.90"))
    alert = _enqueue(services, key="s1", kind="signal.new", title="BUY INFY",
                     probability=Decimal("0.8200"))
    planned = _by_user(services, services.telegram.plan(alert, now_ist()))
    assert planned["rahul"].skip_reason is None
    assert planned["priya"].skip_reason == "Signal probability 0.82 is below your threshold 0.90"


def test_a_signal_just_below_a_threshold_is_skipped_with_numbers_that_differ(
        services: Services, login: Login) -> None:
    # The QA pass read "Signal probability 0.30 is below your threshold 0.30".
    priya = _link_all(services, login, "priya")["priya"]
    services.telegram.update_prefs(priya, signal_min_probability="0.30")
    alert = _enqueue(services, key="s2", kind="signal.new", title="BUY INFY",
                     probability=Decimal("0.2996"))
    planned = _by_user(services, services.telegram.plan(alert, now_ist()))
    assert planned["priya"].skip_reason == ("Signal probability 0.2996 is below your threshold "
                                            "0.30")


def test_a_recorded_recipient_is_never_planned_again(services: Services, login: Login) -> None:
    _link_all(services, login, "rahul", "priya")
    alert = _enqueue(services, key="r1")
    first = _by_user(services, services.telegram.plan(alert, now_ist()))
    services.telegram.record_delivery(first["rahul"], "sent", message_id=9)
    services.telegram.record_delivery(first["rahul"], "failed", reason="late")  # ignored
    again = _by_user(services, services.telegram.plan(alert, now_ist()))
    assert "rahul" not in again and "priya" in again
    with services.db.transaction() as session:
        rows = list(session.scalars(select(AlertDeliveryRow)))
    assert [(r.status, r.message_id, r.chat_id) for r in rows] == [("sent", 9, 1001)]


def test_the_same_message_within_a_minute_is_skipped_as_a_duplicate(
        services: Services, login: Login) -> None:
    _link_all(services, login, "rahul")
    first = _enqueue(services, key="d1")
    second = _enqueue(services, key="d2")  # same account, title and body
    other = _enqueue(services, key="d3", body="BUY 11 RELIANCE @ 2,450.05")
    rahul_first = _by_user(services, services.telegram.plan(first, now_ist()))["rahul"]
    services.telegram.record_delivery(rahul_first, "sent", message_id=1)
    dup = _by_user(services, services.telegram.plan(second, now_ist()))["rahul"]
    assert dup.skip_reason == f"duplicate of alert {first.id}"
    assert _by_user(services, services.telegram.plan(other, now_ist()))["rahul"].skip_reason \
        is None
    later = now_ist() + timedelta(seconds=61)
    assert _by_user(services, services.telegram.plan(second, later))["rahul"].skip_reason is None


def test_a_delivery_status_must_be_sent_skipped_or_failed(
        services: Services, login: Login) -> None:
    _link_all(services, login, "rahul")
    planned = services.telegram.plan(_enqueue(services, key="x1"), now_ist())[0]
    with pytest.raises(ValidationError, match="one of sent, skipped, failed; got 'done'"):
        services.telegram.record_delivery(planned, "done")
    assert _count(services, AlertDeliveryRow) == 0


def test_a_threshold_typed_into_a_float_widget_is_kept_to_three_decimals(
        services: Services, login: Login) -> None:
    prefs = services.telegram.update_prefs(login("kamla"),
                                           signal_min_probability=Decimal("0.7100000000000001"))
    assert prefs.signal_min_probability == Decimal("0.710")


# -- secrecy and refusals ---------------------------------------------------------------------
def test_a_refused_token_change_is_audited_without_the_token(
        services: Services, login: Login) -> None:
    with pytest.raises(PermissionDenied):
        services.telegram.set_bot_token(login("priya"), TOKEN)
    denied = _audits(services, "telegram.bot.set")
    assert [(a.outcome, a.actor_username) for a in denied] == [("denied", "priya")]
    assert TOKEN.split(":")[1] not in str(denied[0].details)


def test_a_token_sealed_under_another_secret_key_is_skipped_and_named_without_the_token(
        services: Services, login: Login, caplog: pytest.LogCaptureFixture) -> None:
    rahul = login("rahul")
    services.telegram.set_bot_token(rahul, TOKEN)
    services.telegram.settings = services.settings.model_copy(
        update={"secret_key": "another-secret-key-" + "y" * 40})
    caplog.set_level(logging.WARNING, logger="sher.telegram")
    assert services.telegram.bot_targets() == []
    assert f"Household {rahul.household_id}'s Telegram bot token does not decrypt" in caplog.text
    assert TOKEN.split(":")[1] not in caplog.text


def test_a_code_used_by_two_chats_at_once_links_only_one(
        services: Services, login: Login) -> None:
    code = link_code(services, login("priya")).code
    results: list[object] = []

    def use(chat_id: int) -> None:
        try:
            results.append(services.telegram.link_chat(code, chat_id, None, None).username)
        except ValidationError as error:
            results.append(error)

    threads = [threading.Thread(target=use, args=(chat,)) for chat in (61, 62)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("priya") == 1
    assert any(isinstance(r, ValidationError) and "already used" in str(r) for r in results)
    assert _count(services, TelegramLinkRow) == 1


# -- the Alerts page's history ----------------------------------------------------------------
def _deliver(services: Services, alert: Alert) -> None:
    for planned in services.telegram.plan(alert, now_ist()):
        status = "sent" if planned.skip_reason is None else "skipped"
        services.telegram.record_delivery(planned, status, message_id=1 if status == "sent"
                                          else None)


def test_recent_alerts_show_admins_every_recipient_and_others_only_themselves(
        services: Services, login: Login) -> None:
    actors = _link_all(services, login, "rahul", "priya", "kamla", "aarav")
    household = _enqueue(services, key="v1", kind="feed_stalled", title="Feed stalled")
    long_term = _enqueue(services, key="v2", title="Long-term filled",
                         account_id=_account_id(services, "Rahul · Long-term"))
    trading = _enqueue(services, key="v3", title="Priya filled",
                       account_id=_account_id(services, "Priya · Trading"))
    priya_only = _enqueue(services, key="v4", user_id=actors["priya"].user_id,
                          kind="auth.session_expiry", title="Session ends soon")
    for alert in (household, long_term, trading, priya_only):
        _deliver(services, alert)

    def seen(name: str) -> dict[str, list[tuple[str, str]]]:
        return {a.title: [(v.username, v.status) for v in views]
                for a, views in services.telegram.recent_alerts(actors[name])}

    rahul = seen("rahul")
    assert set(rahul) == {"Feed stalled", "Long-term filled", "Priya filled"}
    assert sorted(rahul["Feed stalled"]) == [("aarav", "sent"), ("kamla", "sent"),
                                             ("ops", "skipped"), ("priya", "sent"),
                                             ("rahul", "sent")]
    assert sorted(rahul["Priya filled"]) == [("ops", "skipped"), ("priya", "sent"),
                                             ("rahul", "sent")]
    aarav = seen("aarav")  # a viewer granted view on Rahul · Long-term, not on Priya · Trading
    assert aarav == {"Feed stalled": [("aarav", "sent")],
                     "Long-term filled": [("aarav", "sent")]}
    assert seen("priya") == {"Feed stalled": [("priya", "sent")],
                             "Long-term filled": [("priya", "sent")],
                             "Priya filled": [("priya", "sent")],
                             "Session ends soon": [("priya", "sent")]}
    views = services.telegram.recent_alerts(actors["kamla"], limit=1)
    assert [(a.title, [(v.display_name, v.silent) for v in vs]) for a, vs in views] == [
        ("Feed stalled", [("Kamla Sharma", False)])]


def test_an_alert_for_an_inactive_user_has_no_recipient(services: Services, login: Login) -> None:
    aarav = _link_all(services, login, "aarav")["aarav"]
    alert = _enqueue(services, key="i1", user_id=aarav.user_id, kind="auth.logout",
                     title="Logged out")
    with services.db.transaction() as session:
        user = session.get(UserRow, aarav.user_id)
        assert user is not None
        user.is_active = False
    assert services.telegram.plan(alert, now_ist()) == []
