"""Alert types, the delivery decision (modes, DND, thresholds) and the phone-sized message text."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, time
from decimal import Decimal
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.alert_types import (
    DEFAULT_PREFS,
    PHONE_LINE_CHARS,
    AlertType,
    Decision,
    Mode,
    NotificationPrefs,
    alert_text,
    alert_type_of,
    decide,
    probability_text,
)
from core.alerts import Alert
from core.clock import IST

AT = datetime(2026, 11, 21, 14, 5, 9, tzinfo=IST)


def _alert(kind: str = "order.filled", severity: str = "info", title: str = "Order filled",
           body: str = "BUY 10 RELIANCE @ 2,450.05", probability: Decimal | None = None) -> Alert:
    return Alert(id=7, created_at=AT, household_id=1, account_id=None, kind=kind,
                 severity=severity, title=title, body=body, status="pending",
                 delivered_at=None, probability=probability)


def _prefs(modes: dict[AlertType, Mode] | None = None, dnd: tuple[time, time] | None = None,
           threshold: str = "0.70") -> NotificationPrefs:
    return replace(DEFAULT_PREFS, modes=MappingProxyType(modes or {}),
                   dnd_start=dnd[0] if dnd else None, dnd_end=dnd[1] if dnd else None,
                   signal_min_probability=Decimal(threshold))


@pytest.mark.parametrize(("kind", "expected"), [
    ("order.placed", AlertType.ORDER_PLACED),
    ("order.filled", AlertType.ORDER_FILLED),
    ("order.partially_filled", AlertType.ORDER_PARTIAL),
    ("order.rejected", AlertType.ORDER_REJECTED),
    ("order.cancelled", AlertType.ORDER_CANCELLED),
    ("risk.stop_loss", AlertType.STOP_LOSS),
    ("risk.target", AlertType.TARGET),
    ("risk.trailing_stop", AlertType.TRAILING_STOP),
    ("risk.warning.daily_loss", AlertType.RISK_WARNING),
    ("risk.daily_loss", AlertType.RISK_BREACH),
    ("risk.weekly_loss", AlertType.RISK_BREACH),
    ("risk.mtm_target", AlertType.RISK_BREACH),
    ("risk.eod", AlertType.RISK_BREACH),
    ("risk.kill_switch", AlertType.KILL_SWITCH),
    ("risk.panic", AlertType.KILL_SWITCH),
    ("risk.disabled", AlertType.KILL_SWITCH),
    ("auth.session_expiry", AlertType.SESSION),
    ("auth.logout", AlertType.SESSION),
    ("feed_stalled", AlertType.SYSTEM),
    ("feed_recovered", AlertType.SYSTEM),
    ("worker.down", AlertType.SYSTEM),
    ("worker.up", AlertType.SYSTEM),
    ("worker.job_stopped", AlertType.SYSTEM),
    ("signal.new", AlertType.SIGNAL),
    ("summary.daily", AlertType.DAILY_SUMMARY),
    ("something.new", AlertType.SYSTEM),
    ("", AlertType.SYSTEM),
])
def test_every_outbox_kind_maps_to_its_alert_type(kind: str, expected: AlertType) -> None:
    assert alert_type_of(kind) is expected


def test_every_alert_type_has_a_label_and_is_on_by_default() -> None:
    assert all(t.label and t.label[0].isupper() for t in AlertType)
    assert {t: DEFAULT_PREFS.mode(t) for t in AlertType} == dict.fromkeys(AlertType, Mode.ON)
    assert DEFAULT_PREFS.daily_summary_time == time(16, 0)
    assert DEFAULT_PREFS.signal_min_probability == Decimal("0.00")  # every BUY and SELL
    assert DEFAULT_PREFS.dnd_start is None and DEFAULT_PREFS.dnd_end is None


NIGHT = (time(22, 0), time(7, 0))
LUNCH = (time(13, 0), time(14, 30))


@pytest.mark.parametrize(("alert", "prefs", "at", "expected"), [
    # on, no DND: rings
    (_alert(), _prefs(), AT, Decision(True, False, None)),
    # off: not sent, whatever the severity
    (_alert(), _prefs({AlertType.ORDER_FILLED: Mode.OFF}), AT,
     Decision(False, False, "Order filled alerts are off")),
    (_alert("risk.panic", "critical"), _prefs({AlertType.KILL_SWITCH: Mode.OFF}), AT,
     Decision(False, False, "Kill switch and panic alerts are off")),
    # silent: sent without sound
    (_alert(), _prefs({AlertType.ORDER_FILLED: Mode.SILENT}), AT,
     Decision(True, True, "Order filled alerts are silent")),
    # DND crossing midnight: 23:30 and 06:59 inside, 07:00 and 21:59 outside
    (_alert(), _prefs(dnd=NIGHT), AT.replace(hour=23, minute=30),
     Decision(True, True, "Do not disturb 22:00-07:00 IST")),
    (_alert(), _prefs(dnd=NIGHT), AT.replace(hour=6, minute=59),
     Decision(True, True, "Do not disturb 22:00-07:00 IST")),
    (_alert(), _prefs(dnd=NIGHT), AT.replace(hour=7, minute=0, second=0),
     Decision(True, False, None)),
    (_alert(), _prefs(dnd=NIGHT), AT.replace(hour=21, minute=59), Decision(True, False, None)),
    # DND within a day
    (_alert(), _prefs(dnd=LUNCH), AT.replace(hour=13, minute=0, second=0),
     Decision(True, True, "Do not disturb 13:00-14:30 IST")),
    (_alert(), _prefs(dnd=LUNCH), AT.replace(hour=14, minute=30, second=0),
     Decision(True, False, None)),
    # critical rings through DND; a warning does not
    (_alert("risk.daily_loss", "critical"), _prefs(dnd=NIGHT), AT.replace(hour=23),
     Decision(True, False, None)),
    (_alert("risk.warning.daily_loss", "warning"), _prefs(dnd=NIGHT), AT.replace(hour=23),
     Decision(True, True, "Do not disturb 22:00-07:00 IST")),
    # silent mode wins over a critical severity (the member chose no sound for the type)
    (_alert("risk.kill_switch", "critical"), _prefs({AlertType.KILL_SWITCH: Mode.SILENT}), AT,
     Decision(True, True, "Kill switch and panic alerts are silent")),
    # signals against the member's threshold
    (_alert("signal.new", probability=Decimal("0.65")), _prefs(threshold="0.70"), AT,
     Decision(False, False, "Signal probability 0.65 is below your threshold 0.70")),
    # both numbers with every stored digit: a probability just below never reads as equal
    (_alert("signal.new", probability=Decimal("0.2996")), _prefs(threshold="0.30"), AT,
     Decision(False, False, "Signal probability 0.2996 is below your threshold 0.30")),
    (_alert("signal.new", probability=Decimal("0.7549")), _prefs(threshold="0.755"), AT,
     Decision(False, False, "Signal probability 0.7549 is below your threshold 0.755")),
    (_alert("signal.new", probability=Decimal("0.70")), _prefs(threshold="0.70"), AT,
     Decision(True, False, None)),
    (_alert("signal.new", probability=Decimal("0.91")), _prefs(threshold="0.90"), AT,
     Decision(True, False, None)),
    (_alert("signal.new", probability=Decimal("0.9")), _prefs({AlertType.SIGNAL: Mode.OFF}), AT,
     Decision(False, False, "New high-probability signal alerts are off")),
])
def test_decide_applies_modes_dnd_and_thresholds(alert: Alert, prefs: NotificationPrefs,
                                                at: datetime, expected: Decision) -> None:
    assert decide(alert, prefs, at) == expected


@pytest.mark.parametrize(("stored", "shown"), [
    ("0.5", "0.50"), ("0.500", "0.50"), ("0.00", "0.00"), ("0", "0.00"), ("0.755", "0.755"),
    ("0.750", "0.75"), ("0.99", "0.99"), ("0.2996", "0.2996"), ("0.3000", "0.30"),
])
def test_a_threshold_or_probability_is_shown_with_every_stored_digit_and_at_least_two(
        stored: str, shown: str) -> None:
    assert probability_text(Decimal(stored)) == shown


def test_the_dnd_window_is_read_in_ist_whatever_the_zone_of_the_time_given() -> None:
    night_utc = datetime.fromisoformat("2026-11-21T17:00:00+00:00")  # 22:30 IST
    noon_utc = datetime.fromisoformat("2026-11-21T08:00:00+00:00")  # 13:30 IST
    assert decide(_alert(), _prefs(dnd=NIGHT), night_utc).silent
    assert decide(_alert(), _prefs(dnd=LUNCH), noon_utc).silent
    assert not decide(_alert(), _prefs(dnd=LUNCH), night_utc).silent


@given(start=st.times(), end=st.times(), moment=st.times())
def test_a_dnd_window_covers_exactly_the_minutes_between_its_ends(start: time, end: time,
                                                                  moment: time) -> None:
    prefs = _prefs(dnd=(start, end))
    at = datetime.combine(AT.date(), moment, tzinfo=IST)
    if start == end:
        expected = False
    elif start < end:
        expected = start <= moment < end
    else:  # crosses midnight: the complement of [end, start)
        expected = not end <= moment < start
    assert prefs.in_dnd(at) is expected
    decision = decide(_alert(), prefs, at)
    assert decision.send and decision.silent is expected
    assert decide(_alert(severity="critical"), prefs, at).silent is False


def test_alert_text_is_escaped_html_with_ist_time_and_account_label() -> None:
    alert = _alert(title="Stop-loss hit: M&M <NSE>", body="Exit order 12: SELL 5 M&M at market")
    text = alert_text(alert, "Rahul · Intraday")
    lines = text.split("\n")
    assert "<b>Stop-loss hit: M&amp;M &lt;NSE&gt;</b>" in lines[0]
    assert lines[1] == "21 Nov 2026 14:05:09 IST"
    assert lines[2] == "Rahul · Intraday"
    assert lines[-1] == "Exit order 12: SELL 5 M&amp;M at market"
    assert "<NSE>" not in text


def test_a_household_alert_says_household_and_long_bodies_wrap_for_a_phone() -> None:
    body = ("ok square-off account 3 RELIANCE: 10 sold at market\n"
            "FAILED cancel order 44 INFY: broker timeout after three attempts")
    text = alert_text(_alert("risk.panic", "critical", title="Panic active", body=body), None)
    lines = text.split("\n")
    assert lines[2] == "Household"
    assert all(len(line) <= PHONE_LINE_CHARS for line in lines[3:])
    assert "FAILED cancel order 44 INFY: broker" in text  # words are kept whole
    assert lines[0].startswith("\U0001f534")  # critical mark


def test_a_word_longer_than_a_line_is_kept_whole_rather_than_broken() -> None:
    url = "https://example.invalid/" + "x" * 60
    text = alert_text(_alert(body=url), "A")
    assert url in text.split("\n")


def test_an_alert_for_one_member_says_it_is_for_them_not_the_household() -> None:
    alert = replace(_alert("auth.logout", title="You were logged out of SHER at 03:00 IST"),
                    user_id=4)
    assert alert_text(alert, None).split("\n")[2] == "For you"
