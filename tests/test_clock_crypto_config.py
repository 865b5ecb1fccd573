"""IST time and the NSE calendar, secrets at rest, settings."""

from __future__ import annotations

import stat
from datetime import date, datetime, time

import pytest

from core import clock
from core import config as config_module
from core.clock import (
    IST,
    MarketStatus,
    format_ist,
    is_trading_day,
    market_state,
    next_expiry_after,
)
from core.config import Settings
from core.crypto import SecretBox
from core.errors import ConfigError


@pytest.mark.parametrize(("moment", "expected"), [
    (datetime(2026, 11, 21, 2, 59, tzinfo=IST), datetime(2026, 11, 21, 3, 0, tzinfo=IST)),
    (datetime(2026, 11, 21, 3, 0, tzinfo=IST), datetime(2026, 11, 22, 3, 0, tzinfo=IST)),
    (datetime(2026, 11, 21, 22, 0, tzinfo=IST), datetime(2026, 11, 22, 3, 0, tzinfo=IST)),
])
def test_the_daily_expiry_is_the_next_0300_ist_strictly_after_a_moment(moment, expected) -> None:
    assert next_expiry_after(moment, time(3, 0)) == expected


@pytest.mark.parametrize(("moment", "status"), [
    (datetime(2026, 11, 23, 9, 5, tzinfo=IST), MarketStatus.PRE_OPEN),
    (datetime(2026, 11, 23, 9, 15, tzinfo=IST), MarketStatus.OPEN),
    (datetime(2026, 11, 23, 15, 29, tzinfo=IST), MarketStatus.OPEN),
    (datetime(2026, 11, 23, 15, 45, tzinfo=IST), MarketStatus.POST_CLOSE),
    (datetime(2026, 11, 23, 18, 0, tzinfo=IST), MarketStatus.CLOSED),
    (datetime(2026, 11, 24, 11, 0, tzinfo=IST), MarketStatus.HOLIDAY),  # NSE holiday 2026
    (datetime(2026, 11, 22, 11, 0, tzinfo=IST), MarketStatus.CLOSED),  # Sunday
])
def test_market_status_follows_nse_hours_and_the_xbom_calendar(moment, status) -> None:
    assert market_state(moment).status is status


def test_a_year_beyond_the_calendar_fails_loudly_instead_of_guessing() -> None:
    with pytest.raises(ConfigError, match=r"outside it\. Enter NSE's official 2027 holiday list"):
        is_trading_day(date(2027, 1, 26))


def test_a_year_beyond_the_calendar_trades_on_weekdays_its_entered_holiday_list_leaves(
        monkeypatch: pytest.MonkeyPatch) -> None:
    holidays = frozenset({date(2027, 1, 26)})  # an illustration, not NSE's 2027 list
    monkeypatch.setitem(clock.HOLIDAYS_BEYOND_CALENDAR, 2027, holidays)
    assert is_trading_day(date(2027, 1, 25)) is True  # Monday
    assert is_trading_day(date(2027, 1, 26)) is False  # listed
    assert is_trading_day(date(2027, 1, 30)) is False  # Saturday
    assert market_state(datetime(2027, 1, 26, 11, 0, tzinfo=IST)).status is MarketStatus.HOLIDAY
    assert market_state(datetime(2027, 1, 27, 11, 0, tzinfo=IST)).status is MarketStatus.OPEN
    with pytest.raises(ConfigError, match=r"outside it\. Enter NSE's official 2028"):
        is_trading_day(date(2028, 1, 3))  # a year not entered still fails loudly


def test_the_desk_warns_45_days_before_the_calendar_ends_and_an_entered_year_extends_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert clock.calendar_last_day() == date(2026, 12, 31)
    assert clock.calendar_warning(date(2026, 11, 15)) is None  # 46 days left
    warning = clock.calendar_warning(date(2026, 11, 21))
    assert warning == (
        "The trading calendar ends on 2026-12-31 (40 days from 2026-11-21). From 2027-01-01 the "
        "desk cannot tell trading days and its calendar jobs stop until NSE's official 2027 "
        "holiday list is entered in HOLIDAYS_BEYOND_CALENDAR in core/clock.py (or "
        "exchange_calendars is upgraded).")
    assert "(0 days from 2027-01-05)" in (clock.calendar_warning(date(2027, 1, 5)) or "")
    monkeypatch.setitem(clock.HOLIDAYS_BEYOND_CALENDAR, 2027, frozenset())
    assert clock.calendar_last_day() == date(2027, 12, 31)
    assert clock.calendar_warning(date(2026, 11, 21)) is None


def test_people_see_ist_and_naive_times_are_refused() -> None:
    assert format_ist(datetime(2026, 11, 21, 0, 0, tzinfo=IST)) == "2026-11-21 00:00:00 IST"
    with pytest.raises(ValueError, match="naive"):
        format_ist(datetime(2026, 11, 21))  # noqa: DTZ001


def test_secrets_round_trip_and_refuse_another_record_or_key() -> None:
    box = SecretBox("k" * 40, "totp")
    token = box.encrypt("JBSWY3DPEHPK3PXP", "user:1")
    assert "JBSWY3DPEHPK3PXP" not in token
    assert box.decrypt(token, "user:1") == "JBSWY3DPEHPK3PXP"
    with pytest.raises(ConfigError, match="does not decrypt"):
        box.decrypt(token, "user:2")
    with pytest.raises(ConfigError, match="does not decrypt"):
        SecretBox("z" * 40, "totp").decrypt(token, "user:1")


def test_a_missing_secret_key_is_generated_once_with_owner_only_permissions(tmp_path) -> None:
    path = tmp_path / "var" / "secret_key"
    first = config_module._load_or_create_secret_key(path)
    assert config_module._load_or_create_secret_key(path) == first
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_settings_state_the_rule_for_bad_values() -> None:
    assert Settings(database_url="postgresql://u@h/db").database_url.startswith(
        "postgresql+psycopg://")
    with pytest.raises(ValueError, match="must start with sqlite:// or postgresql://"):
        Settings(database_url="mysql://u@h/db")
    with pytest.raises(ConfigError, match="at least 32 characters; got 5"):
        Settings(secret_key="short").resolved_secret_key()


def test_a_new_sqlite_database_file_is_readable_by_its_owner_only(tmp_path) -> None:
    from db.engine import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'sher.db'}")
    with engine.connect():
        pass
    engine.dispose()
    assert stat.S_IMODE((tmp_path / "var" / "sher.db").stat().st_mode) == 0o600
