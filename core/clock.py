"""Time in India: IST now, session expiry boundaries, trading days and market hours.

Trading days come from ``exchange_calendars`` calendar "XBOM" (NSE and BSE share the holiday
list) plus the overrides below. The calendar only records holidays to the end of its data
(``exchange_calendars`` 4.13.2: 2026). A later year is answered from
:data:`HOLIDAYS_BEYOND_CALENDAR` once NSE's official list for it is entered there; until then,
asking raises :class:`~core.errors.ConfigError` rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

from core.errors import ConfigError

IST = ZoneInfo("Asia/Kolkata")
PRE_OPEN_START = time(9, 0)
MARKET_OPEN = time(9, 15)
MARKET_CLOSE = time(15, 30)
CLOSING_SESSION_END = time(16, 0)

#: Dates the exchange calendar gets wrong for NSE, as (date, is_trading_day, why).
CALENDAR_OVERRIDES: tuple[tuple[date, bool, str], ...] = ()

#: NSE's official holiday list for each year the exchange calendar does not cover yet: in such a
#: year every weekday not listed is a trading day. Enter a year only from NSE's own circular
#: (published each December); a guessed list would open the desk on a holiday.
HOLIDAYS_BEYOND_CALENDAR: dict[int, frozenset[date]] = {}

#: Sessions NSE held outside its regular calendar, with real bars in the shipped daily sample:
#: Diwali Muhurat trading (an evening hour) and special Saturday live sessions. Their bars are
#: kept on import; market status and session expiry ignore them (no regular session that day).
SPECIAL_SESSIONS: dict[date, str] = {
    date(2020, 11, 14): "Diwali Muhurat trading",
    date(2021, 11, 4): "Diwali Muhurat trading",
    date(2022, 10, 24): "Diwali Muhurat trading",
    date(2023, 11, 12): "Diwali Muhurat trading (Sunday)",
    date(2024, 3, 2): "special Saturday live session (DR site switch-over)",
    date(2024, 5, 18): "special Saturday live session (DR site switch-over)",
    date(2024, 11, 1): "Diwali Muhurat trading",
}


class MarketStatus(StrEnum):
    """Where the NSE cash market stands at a moment."""

    PRE_OPEN = "pre-open"
    OPEN = "open"
    POST_CLOSE = "post-close"
    CLOSED = "closed"
    HOLIDAY = "holiday"


@dataclass(frozen=True, slots=True)
class MarketState:
    """Market status at ``at`` (IST) with the reason shown to users."""

    at: datetime
    status: MarketStatus
    detail: str


def now_ist() -> datetime:
    """Return the current time as an aware IST datetime."""
    return datetime.now(IST)


def to_ist(moment: datetime) -> datetime:
    """Convert an aware datetime to IST; refuse naive ones (their zone is unknowable)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()} has no time zone; pass an aware one")
    return moment.astimezone(IST)


def format_ist(moment: datetime | None) -> str:
    """Format an aware datetime for people: ``2026-11-21 09:15:00 IST``."""
    if moment is None:
        return "—"
    return to_ist(moment).strftime("%Y-%m-%d %H:%M:%S IST")


def next_expiry_after(moment: datetime, expiry: time) -> datetime:
    """Return the first instant at wall-clock ``expiry`` IST strictly after ``moment``."""
    local = to_ist(moment)
    boundary = datetime.combine(local.date(), expiry, tzinfo=IST)
    if boundary <= local:
        boundary += timedelta(days=1)
    return boundary


@lru_cache(maxsize=1)
def _calendar() -> xcals.ExchangeCalendar:
    return xcals.get_calendar("XBOM")


def is_trading_day(day: date) -> bool:
    """Return whether NSE equities trade on ``day`` (calendar plus overrides)."""
    for override_day, trades, _why in CALENDAR_OVERRIDES:
        if override_day == day:
            return trades
    cal = _calendar()
    stamp = pd.Timestamp(day)
    if stamp > cal.last_session and day.year in HOLIDAYS_BEYOND_CALENDAR:
        return day.weekday() < 5 and day not in HOLIDAYS_BEYOND_CALENDAR[day.year]
    if stamp > cal.last_session or stamp < cal.first_session:
        raise ConfigError(
            f"the trading calendar covers {cal.first_session.date()} to "
            f"{cal.last_session.date()}; {day} is outside it. Enter NSE's official {day.year} "
            "holiday list in HOLIDAYS_BEYOND_CALENDAR in core/clock.py or upgrade "
            "exchange_calendars"
        )
    return bool(cal.is_session(stamp))


#: Days before the last day the calendar knows from which the desk warns that it will stop.
CALENDAR_WARN_DAYS = 45


def calendar_first_day() -> date:
    """Return the first day whose trading status is known (the calendar's first session)."""
    first: date = _calendar().first_session.date()
    return first


def calendar_last_day() -> date:
    """Return the last day whose trading status is known (the calendar, then entered years)."""
    last: date = _calendar().last_session.date()
    while last.year + 1 in HOLIDAYS_BEYOND_CALENDAR:
        last = date(last.year + 1, 12, 31)
    return last


def calendar_warning(today: date) -> str | None:
    """Return a warning when the calendar ends within :data:`CALENDAR_WARN_DAYS` of ``today``."""
    last = calendar_last_day()
    left = (last - today).days
    if left > CALENDAR_WARN_DAYS:
        return None
    stop = last + timedelta(days=1)
    return (f"The trading calendar ends on {last} ({max(left, 0)} days from {today}). From {stop} "
            f"the desk cannot tell trading days and its calendar jobs stop until NSE's official "
            f"{stop.year} holiday list is entered in HOLIDAYS_BEYOND_CALENDAR in core/clock.py "
            "(or exchange_calendars is upgraded).")


def is_bar_day(day: date) -> bool:
    """Return whether a daily bar may exist for ``day``: a trading day or a special session."""
    return day in SPECIAL_SESSIONS or is_trading_day(day)


def market_state(at: datetime | None = None) -> MarketState:
    """Return the NSE cash-market status at ``at`` (default: now)."""
    moment = to_ist(at) if at is not None else now_ist()
    if not is_trading_day(moment.date()):
        if moment.weekday() >= 5:
            return MarketState(moment, MarketStatus.CLOSED, "No trading today (weekend)")
        return MarketState(moment, MarketStatus.HOLIDAY, "No trading today (exchange holiday)")
    clock = moment.time()
    if PRE_OPEN_START <= clock < MARKET_OPEN:
        return MarketState(moment, MarketStatus.PRE_OPEN, "Pre-open 09:00-09:15 IST")
    if MARKET_OPEN <= clock < MARKET_CLOSE:
        return MarketState(moment, MarketStatus.OPEN, "Normal market 09:15-15:30 IST")
    if MARKET_CLOSE <= clock < CLOSING_SESSION_END:
        return MarketState(moment, MarketStatus.POST_CLOSE, "Closing session until 16:00 IST")
    return MarketState(moment, MarketStatus.CLOSED, "Market opens 09:15 IST on trading days")
