"""The Alerts page through AppTest: connecting Telegram, my alert settings, the bot's token,
recent alerts with each recipient's delivery.

The ``desk`` fixture is a demo SQLite desk the app under test reads through DATABASE_URL; the
service calls here (linking a chat as the bot would) go to the same database.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time
from decimal import Decimal

import pytest
from streamlit.testing.v1 import AppTest

from core import alerts
from core.alert_types import AlertType, Mode
from core.clock import IST
from core.domain import Role
from core.services.telegram import BotInfo, DeliveryView, LinkCode, LinkStatus
from core.services.telegram_prefs import THRESHOLD_RULE
from pages.alerts_parts import (
    CODE,
    NO_BOT,
    NO_NAME,
    bot_rows,
    delivery_text,
    expiry_text,
    link_text,
    recent_frame,
    start_command,
)
from pages.nav import pages_for
from tests.support.apptest import app_as, open_tab_index, page, texts
from tests.support.telegram_links import link_code
from tests.test_trading_pages import table_of, who

PAGE = "pages/alerts.py"
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"  # shaped like a token, not a real one
WHEN = datetime(2026, 11, 21, 19, 32, 5, tzinfo=IST)


def on_alerts(desk, username: str) -> AppTest:
    """Open the Alerts page as ``username``."""
    at = app_as(desk, username)
    at.switch_page(page(PAGE)).run()
    assert not at.exception, at.exception
    return at


def keys(at: AppTest) -> set[str]:
    """Return the keys of every button, text input, radio and number input shown."""
    return {w.key for w in (*at.button, *at.text_input, *at.radio, *at.number_input) if w.key}


def shown_code(at: AppTest) -> str:
    """Return the one-time link code the page shows large."""
    codes = [m.value for m in at.markdown if re.fullmatch(r"# `[A-Z0-9]{8}`", m.value)]
    assert len(codes) == 1, texts(at)
    return codes[0][3:-1]


def _alert(**changes: object) -> alerts.Alert:
    values: dict[str, object] = dict(
        id=7, created_at=WHEN, household_id=1, account_id=3, kind="order.filled",
        severity="info", title="BUY 2 INFY filled", body="at ₹1,500.00", status="sent",
        delivered_at=WHEN)
    values.update(changes)
    return alerts.Alert(**values)  # type: ignore[arg-type]


def _view(status: str, silent: bool = False, reason: str | None = None,
          name: str = "Priya Sharma") -> DeliveryView:
    return DeliveryView("priya", name, status, silent, reason, WHEN)


# ----------------------------------------------------------------------------------------------
# Pure pieces
# ----------------------------------------------------------------------------------------------


def test_every_role_finds_alerts_in_the_desk_group() -> None:
    for role in Role:
        [spec] = [s for s in pages_for(role) if s.path == PAGE]
        assert (spec.title, spec.group) == ("Alerts", "Desk")


def test_the_link_code_instruction_names_the_bot_and_the_expiry_is_in_ist() -> None:
    assert start_command("ABCD2345", "sher_family_bot") == (
        "Send `/start ABCD2345` to @sher_family_bot on Telegram.")
    assert "household's Telegram bot" in start_command("ABCD2345", None)
    in_utc = datetime(2026, 11, 21, 8, 32, tzinfo=UTC)
    assert expiry_text(in_utc) == "14:02 IST (2026-11-21)"


def test_the_link_status_reads_as_a_sentence() -> None:
    linked = LinkStatus(True, "priya_s", WHEN, "bot")
    assert link_text(linked) == "Linked to @priya_s since 2026-11-21 19:32:05 IST."
    anonymous = LinkStatus(True, None, WHEN, None)
    assert link_text(anonymous).startswith("Linked to your Telegram chat since")
    assert link_text(LinkStatus(False, None, None, "bot")).startswith("Telegram is not linked")


@pytest.mark.parametrize(("view", "text"), [
    (_view("sent"), "Priya Sharma: sent"),
    (_view("sent", True, "Do not disturb 22:00-07:00 IST"),
     "Priya Sharma: sent silently (Do not disturb 22:00-07:00 IST)"),
    (_view("skipped", reason="no Telegram chat linked"),
     "Priya Sharma: skipped (no Telegram chat linked)"),
    (_view("failed", reason="Forbidden: bot was blocked by the user"),
     "Priya Sharma: failed (Forbidden: bot was blocked by the user)"),
])
def test_each_recipients_delivery_says_how_and_why(view, text) -> None:
    assert delivery_text(view) == text


def test_recent_alerts_table_has_one_row_per_alert_with_type_account_and_deliveries() -> None:
    items = [
        (_alert(channel="telegram"),
         [_view("sent"), _view("skipped", reason="Order filled alerts are off", name="")]),
        (_alert(id=8, account_id=None, kind="feed_stalled", severity="warning",
                title="Feed stalled", status="pending", last_error="Timed out"), []),
        (_alert(id=9, account_id=99, kind="risk.daily_loss", severity="critical",
                channel="log"), []),
    ]
    frame = recent_frame(items, {3: "Priya · Trading"})
    assert list(frame["Type"]) == ["Order filled", "System (worker, feed, jobs)",
                                   "Risk limit breach"]
    assert list(frame["Account"]) == ["Priya · Trading", "Household", "#99"]
    assert list(frame["Outbox"]) == ["sent via telegram", "pending: Timed out", "sent via log"]
    assert frame["Delivery"][0] == ("Priya Sharma: sent; priya: skipped (Order filled alerts "
                                    "are off)")
    assert list(frame["Delivery"][1:]) == ["waiting for delivery", "no Telegram delivery"]
    assert frame.iloc[0]["Time (IST)"] == "2026-11-21 19:32:05 IST"
    assert recent_frame([], {}).empty


def test_the_bot_facts_name_the_source_and_who_set_it() -> None:
    assert bot_rows(BotInfo(False, None, None, None, None))[0][1].startswith("no")
    stored = dict(bot_rows(BotInfo(True, "household", "sher_bot", WHEN, "rahul")))
    assert stored["Bot"] == "@sher_bot"
    assert stored["Set by"] == "rahul at 2026-11-21 19:32:05 IST"
    env = dict(bot_rows(BotInfo(True, "environment", None, None, None)))
    assert env["Token from"] == "TELEGRAM_BOT_TOKEN"
    assert env["Bot"].startswith("not yet known")


# ----------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------


def test_an_admin_sees_the_bot_form_and_the_log_channel_notice(desk) -> None:
    at = on_alerts(desk, "rahul")
    assert {"alerts_connect", "alerts_bot_token", "alerts_bot_save",
            "alerts_settings_save"} <= keys(at)
    shown = texts(at)
    assert "Alerts are written to the log (ALERT_CHANNEL=log)" in shown
    assert "**Configured:** no: enter a token below or set TELEGRAM_BOT_TOKEN" in shown
    assert not at.error


def test_a_viewer_has_no_bot_form_but_may_link_and_choose_settings(desk) -> None:
    at = on_alerts(desk, "aarav")
    shown = keys(at)
    assert "alerts_bot_token" not in shown and "alerts_bot_save" not in shown
    assert {"alerts_connect", "alerts_settings_save", "alerts_signal_threshold"} <= shown
    assert {f"alerts_mode_{t.value}" for t in AlertType} <= shown
    assert [t.label for t in at.tabs] == ["Connect Telegram", "My alert settings",
                                          "Recent alerts"]


def test_without_a_bot_connect_is_off_and_says_an_admin_must_set_one_up(desk) -> None:
    at = on_alerts(desk, "aarav")
    assert "Telegram is not linked" in texts(at)
    connect = at.button(key="alerts_connect")
    assert connect.disabled and connect.help == NO_BOT
    assert NO_BOT in texts(at)  # no token yet: the member is told an admin must set it up
    assert CODE not in at.session_state


def test_connect_shows_a_code_that_links_the_chat_and_unlink_undoes_it(
        desk, monkeypatch) -> None:
    svc, logins = desk
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)  # the desk runs with a bot
    at = on_alerts(desk, "aarav")
    assert "Telegram is not linked" in texts(at)
    at.button(key="alerts_connect").click().run()
    code = shown_code(at)
    shown = texts(at)
    assert f"Send `/start {code}` to the household's Telegram bot." in shown
    assert "expires at" in shown and " IST (" in shown
    assert NO_NAME in shown and NO_BOT not in shown  # the bot has not started yet

    linked = svc.telegram.link_chat(code, 424242, "aarav_t", None)  # as the bot would
    assert linked.username == "aarav"
    at.run()
    assert "Linked to @aarav_t since" in texts(at)
    assert "alerts_connect" not in keys(at)

    at.button(key="alerts_unlink").click().run()
    assert not at.exception, at.exception
    assert "Telegram unlinked" in texts(at)
    assert "Telegram is not linked" in texts(at)
    assert svc.telegram.link_status(who(svc, logins, "aarav")).linked is False


def test_a_code_left_past_its_expiry_is_withdrawn_with_its_time(desk) -> None:
    at = on_alerts(desk, "priya")
    at.session_state[CODE] = LinkCode("ABCD2345", datetime(2026, 1, 5, 9, 40, tzinfo=IST))
    at.run()
    assert "The code ABCD2345 expired at 09:40 IST (2026-01-05)" in texts(at)
    assert not [m for m in at.markdown if "ABCD2345`" in m.value]
    assert CODE not in at.session_state


def test_saving_settings_stores_modes_dnd_summary_and_threshold(desk) -> None:
    svc, logins = desk
    at = on_alerts(desk, "kamla")
    at.radio(key="alerts_mode_order_filled").set_value("silent")
    at.radio(key="alerts_mode_signal").set_value("off")
    at.checkbox(key="alerts_dnd_on").check()
    at.time_input(key="alerts_dnd_start").set_value(time(22, 30))
    at.time_input(key="alerts_dnd_end").set_value(time(6, 45))
    at.checkbox(key="alerts_summary_on").uncheck()
    at.text_input(key="alerts_signal_threshold").input("0.85")
    at.button(key="alerts_settings_save").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert "Alert settings saved." in texts(at)
    prefs = svc.telegram.notification_prefs(who(svc, logins, "kamla"))
    assert prefs.mode(AlertType.ORDER_FILLED) is Mode.SILENT
    assert prefs.mode(AlertType.SIGNAL) is Mode.OFF
    assert prefs.mode(AlertType.KILL_SWITCH) is Mode.ON
    assert (prefs.dnd_start, prefs.dnd_end) == (time(22, 30), time(6, 45))
    assert prefs.daily_summary_time is None
    assert prefs.signal_min_probability == Decimal("0.85")
    # the form shows what is stored on the next visit
    again = on_alerts(desk, "kamla")
    assert again.radio(key="alerts_mode_order_filled").value == "silent"
    assert again.checkbox(key="alerts_dnd_on").value is True
    assert again.text_input(key="alerts_signal_threshold").value == "0.85"


def test_a_threshold_outside_the_rule_is_refused_with_the_rule_and_nothing_is_saved(
        desk) -> None:
    svc, logins = desk
    at = on_alerts(desk, "priya")
    at.radio(key="alerts_mode_order_placed").set_value("off")
    at.text_input(key="alerts_signal_threshold").input("0.995")
    at.button(key="alerts_settings_save").click().run()
    assert not at.exception, at.exception
    [error] = at.error
    assert "Signal threshold must be between 0.00 and 0.99" in error.value
    assert "got 0.995" in error.value
    prefs = svc.telegram.notification_prefs(who(svc, logins, "priya"))
    assert prefs.mode(AlertType.ORDER_PLACED) is Mode.ON
    assert prefs.signal_min_probability == Decimal("0.00")


@pytest.mark.parametrize("typed", ["-1", "1.5", "75%"])
def test_a_threshold_the_field_would_not_take_is_refused_as_typed_and_the_old_one_kept(
        desk, typed: str) -> None:
    # The QA pass: at 0.50, typing -1 (or 1.5) and saving said "saved" and kept 0.50.
    svc, logins = desk
    priya = who(svc, logins, "priya")
    svc.telegram.update_prefs(priya, signal_min_probability=Decimal("0.50"))
    at = on_alerts(desk, "priya")
    field = at.text_input(key="alerts_signal_threshold")
    assert field.value == "0.50"
    assert "(0.00-0.99, at most 3 decimals;" in field.label  # as the rule: no 1.00
    assert field.help == f"{THRESHOLD_RULE}."
    at.radio(key="alerts_mode_order_placed").set_value("off")
    field.input(typed)
    at.button(key="alerts_settings_save").click().run()
    assert not at.exception, at.exception
    [error] = at.error
    assert error.value == f"{THRESHOLD_RULE}; got {typed}"
    assert "Alert settings saved." not in texts(at)
    assert at.text_input(key="alerts_signal_threshold").value == typed  # left to correct
    prefs = svc.telegram.notification_prefs(priya)
    assert prefs.signal_min_probability == Decimal("0.50")
    assert prefs.mode(AlertType.ORDER_PLACED) is Mode.ON


def test_the_threshold_field_shows_every_stored_decimal_and_saving_keeps_them(desk) -> None:
    svc, logins = desk
    priya = who(svc, logins, "priya")
    svc.telegram.update_prefs(priya, signal_min_probability=Decimal("0.755"))
    at = on_alerts(desk, "priya")
    assert at.text_input(key="alerts_signal_threshold").value == "0.755"
    at.radio(key="alerts_mode_order_placed").set_value("off")  # save something else
    at.button(key="alerts_settings_save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert svc.telegram.notification_prefs(priya).signal_min_probability == Decimal("0.755")


def test_a_dnd_window_that_starts_when_it_ends_is_refused_with_the_times(desk) -> None:
    at = on_alerts(desk, "priya")
    at.checkbox(key="alerts_dnd_on").check()
    at.time_input(key="alerts_dnd_start").set_value(time(23, 0))
    at.time_input(key="alerts_dnd_end").set_value(time(23, 0))
    at.button(key="alerts_settings_save").click().run()
    [error] = at.error
    assert "Do-not-disturb must start and end at different times; got 23:00-23:00" in error.value


def _rendered(at: AppTest) -> str:
    """Return every value the last run rendered (texts, inputs, tables), for leak checks."""
    values = [texts(at), *(str(w.value) for w in at.text_input)]
    values += [str(e.proto) for e in at.main]
    return "\n".join(values)


def test_an_admin_sets_the_bot_token_which_is_never_shown_again(desk) -> None:
    svc, logins = desk
    at = on_alerts(desk, "rahul")
    at.session_state["alerts_tab"] = "Bot"  # he opened the Bot tab
    at.run()
    at.text_input(key="alerts_bot_token").input(TOKEN)
    at.button(key="alerts_bot_save").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert "Bot token saved." in texts(at)
    assert open_tab_index(at) == 3  # still on the Bot tab, below the message
    assert at.text_input(key="alerts_bot_token").value == ""
    secret = TOKEN.partition(":")[2]
    rendered = _rendered(at)
    assert "Token from" in rendered  # the scan reaches into the Bot tab
    assert secret not in rendered
    assert "**Token from:** this household (set here)" in texts(at)
    assert "**Set by:** rahul at" in texts(at)
    info = svc.telegram.bot_info(who(svc, logins, "rahul"))
    assert (info.configured, info.source, info.set_by) == (True, "household", "rahul")

    at.button(key="alerts_bot_clear").click().run()
    assert "Bot token removed." in texts(at)
    assert svc.telegram.bot_info(who(svc, logins, "rahul")).configured is False


@pytest.mark.parametrize("bad", [
    "12345:short-secret-value",
    # the QA pass: the bot's id in Devanagari digits was saved and audited
    "\u0967\u0968\u0969\u096a\u096b\u096c\u096d\u096e\u096f:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
])
def test_a_malformed_token_is_refused_by_the_rule_without_echoing_it(desk, bad: str) -> None:
    svc, logins = desk
    at = on_alerts(desk, "rahul")
    at.text_input(key="alerts_bot_token").input(bad)
    at.button(key="alerts_bot_save").click().run()
    [error] = at.error
    assert "A Telegram bot token is the bot's id (5-12 digits)" in error.value
    assert bad.partition(":")[2] not in _rendered(at)
    assert svc.telegram.bot_info(who(svc, logins, "rahul")).configured is False


def test_recent_alerts_show_the_outbox_status_and_each_recipients_delivery(desk) -> None:
    svc, logins = desk
    priya = who(svc, logins, "priya")
    code = link_code(svc, priya).code
    svc.telegram.link_chat(code, 515151, "priya_s", None)
    with svc.db.transaction() as session:
        alerts.enqueue(session, kind="feed_stalled", household_id=priya.household_id,
                       account_id=None, severity="warning", title="The feed has stalled",
                       body="No tick for 60 s", dedupe_key="test:feed:1")
        [alert] = alerts.recent(session, priya.household_id, None, limit=1)
    # what the bot's dispatcher does: plan the recipients, record each one's outcome
    for planned in svc.telegram.plan(alert, WHEN):
        if planned.skip_reason is None:
            svc.telegram.record_delivery(planned, "sent", message_id=11)
        else:
            svc.telegram.record_delivery(planned, "skipped", reason=planned.skip_reason)

    at = on_alerts(desk, "rahul")
    frame = table_of(at, "Delivery")
    row = frame[frame["Title"] == "The feed has stalled"].iloc[0]
    assert row["Type"] == "System (worker, feed, jobs)"
    assert row["Account"] == "Household"
    assert row["Outbox"] == "pending"
    assert "Priya Sharma: sent" in row["Delivery"]
    assert "skipped (no Telegram chat linked)" in row["Delivery"]  # the others have no chat
    assert at.get("download_button")  # the table can be downloaded as CSV

    viewer = table_of(on_alerts(desk, "aarav"), "Delivery")  # a viewer sees only their own
    assert viewer[viewer["Title"] == "The feed has stalled"].iloc[0]["Delivery"] == (
        "Aarav Sharma: skipped (no Telegram chat linked)")


def test_with_the_telegram_channel_and_an_environment_bot_the_page_says_so(
        desk, monkeypatch) -> None:
    monkeypatch.setenv("ALERT_CHANNEL", "telegram")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    at = on_alerts(desk, "rahul")
    shown = texts(at)
    assert "Alerts are written to the log" not in shown
    assert "**Token from:** TELEGRAM_BOT_TOKEN" in shown
    assert "**Set by:** the server's environment" in shown
    assert "alerts_bot_clear" not in keys(at)  # nothing stored here to remove
    at.button(key="alerts_connect").click().run()
    assert NO_NAME in texts(at) and NO_BOT not in texts(at)
    assert TOKEN.partition(":")[2] not in _rendered(at)


def test_the_signal_threshold_says_when_no_signal_alert_can_come(desk) -> None:
    at = on_alerts(desk, "priya")  # the demo desk has no model yet
    assert at.text_input(key="alerts_signal_threshold").value == "0.00"
    assert any(w.value.startswith("No model is in use, so no signal alert comes now")
               for w in at.warning)
