"""Calendar facts: NSE holidays of 2025 and 2026, weekends, and the 09:15/15:30 IST boundaries."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from core.clock import IST, MarketStatus, is_trading_day, market_state

# MARKET_FACTS §4: the 15 NSE equity holidays of 2026 as NSE published them.
NSE_HOLIDAYS_2026 = [
    date(2026, 1, 26), date(2026, 3, 3), date(2026, 3, 26), date(2026, 3, 31),
    date(2026, 4, 3), date(2026, 4, 14), date(2026, 5, 1), date(2026, 5, 28),
    date(2026, 6, 26), date(2026, 9, 14), date(2026, 10, 2), date(2026, 10, 20),
    date(2026, 11, 10), date(2026, 11, 24), date(2026, 12, 25),
]
# Known 2025 NSE holidays, each checked against exchange_calendars "XBOM" 4.13.2.
NSE_HOLIDAYS_2025 = [
    date(2025, 2, 26),  # Mahashivratri
    date(2025, 3, 14),  # Holi
    date(2025, 3, 31),  # Id-ul-Fitr
    date(2025, 4, 10),  # Mahavir Jayanti
    date(2025, 4, 14),  # Ambedkar Jayanti
    date(2025, 4, 18),  # Good Friday
    date(2025, 5, 1),  # Maharashtra Day
    date(2025, 8, 15),  # Independence Day
    date(2025, 8, 27),  # Ganesh Chaturthi
    date(2025, 10, 2),  # Gandhi Jayanti / Dussehra
    date(2025, 10, 21),  # Diwali Laxmi Pujan: closed; the evening Muhurat session is not modelled
    date(2025, 10, 22),  # Balipratipada
    date(2025, 11, 5),  # Guru Nanak Jayanti
    date(2025, 12, 25),  # Christmas
]


def _weekday_holidays(year: int) -> list[date]:
    day, result = date(year, 1, 1), []
    while day.year == year:
        if day.weekday() < 5 and not is_trading_day(day):
            result.append(day)
        day += timedelta(days=1)
    return result


def _at(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=IST)


@pytest.mark.parametrize("day", NSE_HOLIDAYS_2026, ids=str)
def test_each_published_2026_nse_holiday_is_not_a_trading_day(day: date) -> None:
    assert day.weekday() < 5
    assert not is_trading_day(day)


def test_the_2026_calendar_adds_only_the_15_january_holiday_to_the_published_list() -> None:
    # NSE closed on 15 Jan 2026 (Maharashtra municipal elections), declared after the annual list.
    assert _weekday_holidays(2026) == sorted([date(2026, 1, 15), *NSE_HOLIDAYS_2026])


@pytest.mark.parametrize("day", NSE_HOLIDAYS_2025, ids=str)
def test_each_known_2025_nse_holiday_is_not_a_trading_day(day: date) -> None:
    assert not is_trading_day(day)


def test_the_2025_weekday_holidays_are_exactly_the_known_fourteen() -> None:
    assert _weekday_holidays(2025) == NSE_HOLIDAYS_2025


def test_a_diwali_holiday_reads_as_a_holiday_all_day() -> None:
    assert market_state(_at(date(2025, 10, 21), 18, 0)).status is MarketStatus.HOLIDAY


@pytest.mark.parametrize("day", [date(2025, 3, 15), date(2025, 3, 16), date(2026, 11, 21),
                                 date(2026, 11, 22)], ids=str)
def test_weekends_are_closed_and_say_so(day: date) -> None:
    assert not is_trading_day(day)
    state = market_state(_at(day, 11, 0))
    assert state.status is MarketStatus.CLOSED
    assert "weekend" in state.detail


def test_the_budget_day_saturday_of_2025_was_a_special_trading_session() -> None:
    assert is_trading_day(date(2025, 2, 1))
    assert market_state(_at(date(2025, 2, 1), 10, 0)).status is MarketStatus.OPEN


def test_ordinary_weekdays_are_trading_days() -> None:
    assert is_trading_day(date(2025, 3, 13)) and is_trading_day(date(2026, 11, 20))


@pytest.mark.parametrize(
    ("hh", "mm", "ss", "status"),
    [
        (8, 59, 59, MarketStatus.CLOSED),
        (9, 0, 0, MarketStatus.PRE_OPEN),
        (9, 14, 59, MarketStatus.PRE_OPEN),
        (9, 15, 0, MarketStatus.OPEN),
        (15, 29, 59, MarketStatus.OPEN),
        (15, 30, 0, MarketStatus.POST_CLOSE),
        (15, 59, 59, MarketStatus.POST_CLOSE),
        (16, 0, 0, MarketStatus.CLOSED),
    ],
)
def test_market_state_changes_exactly_at_the_ist_boundaries(hh, mm, ss, status) -> None:
    assert market_state(_at(date(2026, 11, 20), hh, mm, ss)).status is status


def test_boundaries_are_in_ist_whatever_zone_the_moment_is_given_in() -> None:
    # 03:45 UTC is 09:15 IST; 10:00 UTC is 15:30 IST.
    assert market_state(datetime(2026, 11, 20, 3, 45, tzinfo=UTC)).status is MarketStatus.OPEN
    assert market_state(datetime(2026, 11, 20, 3, 44, 59, tzinfo=UTC)).status is (
        MarketStatus.PRE_OPEN
    )
    assert market_state(datetime(2026, 11, 20, 10, 0, tzinfo=UTC)).status is (
        MarketStatus.POST_CLOSE
    )


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        market_state(datetime(2026, 11, 20, 10, 0))  # noqa: DTZ001
