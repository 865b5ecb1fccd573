"""OHLCV bar reshaping: weekly bars from daily, daily bars from 5-minute, the normal market.

Pure functions over pandas frames (no I/O). A bar frame has a tz-aware ``DatetimeIndex`` of bar
*starts*, sorted oldest first without duplicates, and the float columns ``open, high, low, close``
plus an integer ``volume`` (the shape ``core.marketdata.store.load_bars`` returns). Calendar
arithmetic happens in India time (IST, UTC+05:30), whatever zone the index carries.

Aggregation rules (both resamples)
----------------------------------
- open = the first bar's open, high = the highest high, low = the lowest low,
  close = the last bar's close, volume = the sum of volumes.
- Only bars that exist are aggregated: a period with no bars produces no row (no empty weeks, no
  holidays filled with NaN or a repeated close).
"""

from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

#: India Standard Time; NSE sessions and their dates are defined in it.
IST = ZoneInfo("Asia/Kolkata")
#: The normal market: 5-minute bars starting in [09:15, 15:30) IST (75 bars a full session).
NORMAL_MARKET = (time(9, 15), time(15, 30))
BAR_COLUMNS = ["open", "high", "low", "close", "volume"]
RULES = ("1w", "1d")
_NS_PER_MINUTE = 60 * 10**9
_NS_PER_DAY = 24 * 60 * _NS_PER_MINUTE


def ist_wall_clock(index: pd.DatetimeIndex) -> np.ndarray:
    """Return IST wall-clock times of a tz-aware index as int64 nanoseconds since 1970-01-01.

    ``// (86400 * 10**9)`` gives the IST day number; ``%`` the time of day. (Converting to naive
    local time is ~20 times faster than ``DatetimeIndex.normalize`` on a zoned index.)
    """
    if index.tz is None:
        raise ValueError("bar timestamps must be tz-aware; naive times have no known zone")
    return np.asarray(index.tz_convert(IST).tz_localize(None).asi8)


def _day_labels(day_numbers: np.ndarray) -> pd.DatetimeIndex:
    """Return IST midnights for IST day numbers."""
    stamps = (day_numbers.astype(np.int64) * _NS_PER_DAY).astype("datetime64[ns]")
    return pd.DatetimeIndex(stamps).tz_localize(IST)


def _check(frame: pd.DataFrame) -> np.ndarray:
    """Return the frame's IST wall clock (see :func:`ist_wall_clock`) after checking it."""
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise ValueError("bar frame needs a tz-aware DatetimeIndex of bar starts")
    if not index.is_monotonic_increasing or not index.is_unique:
        raise ValueError("bar frame index must be sorted oldest first without duplicate times")
    missing = [c for c in BAR_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"bar frame lacks columns {missing}; it needs {BAR_COLUMNS}")
    return ist_wall_clock(index)


def _aggregate(frame: pd.DataFrame, keys: np.ndarray, days: np.ndarray) -> pd.DataFrame:
    """Aggregate runs of equal ``keys`` (the frame is sorted, so runs are groups).

    Each group is labelled by the IST day number in ``days`` of its first bar.
    """
    if len(frame) == 0:
        empty = frame[BAR_COLUMNS].copy()
        empty.index = pd.DatetimeIndex([], tz=IST, name=frame.index.name)
        return empty
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)] - 1
    high = frame["high"].to_numpy()
    low = frame["low"].to_numpy()
    out = pd.DataFrame(
        {
            "open": frame["open"].to_numpy()[starts],
            "high": np.maximum.reduceat(high, starts),
            "low": np.minimum.reduceat(low, starts),
            "close": frame["close"].to_numpy()[ends],
            "volume": np.add.reduceat(frame["volume"].to_numpy(), starts),
        },
        index=_day_labels(days[starts]),
    )
    out.index.name = frame.index.name
    return out


def resample_ohlcv(frame: pd.DataFrame, rule: str) -> pd.DataFrame:
    """Return ``frame``'s bars aggregated to weeks (``"1w"``) or sessions (``"1d"``).

    Parameters
    ----------
    frame
        A bar frame (see the module docstring): daily bars for ``"1w"``, 5-minute bars for
        ``"1d"`` (any finer bars work for either rule).
    rule
        ``"1w"`` (``Interval.W1``) or ``"1d"`` (``Interval.D1``).

    Returns
    -------
    pandas.DataFrame
        The OHLCV columns, indexed in IST, one row per period that has at least one bar.

        - ``"1w"``: weeks run Monday to Sunday in IST (ISO weeks), so a weekend special session
          (Muhurat trading on Sunday 12 Nov 2023, the Budget-day Saturday 1 Feb 2025) joins the
          Monday–Friday week it ends. Each week is labelled by the date of its first bar
          present, at 00:00 IST: a week whose Monday was a holiday is labelled Tuesday.
        - ``"1d"``: one row per IST calendar date (the session date), labelled that date at
          00:00 IST, as daily bars are stored. Every bar of the date counts, including pre-open
          and closing-session bars if the frame holds them (see :func:`normal_market`).

    Raises
    ------
    ValueError
        If ``rule`` is neither, or the frame breaks the bar-frame contract.
    """
    if rule not in RULES:
        raise ValueError(f"rule {rule!r} is not one of {', '.join(RULES)}")
    days = _check(frame) // _NS_PER_DAY
    if rule == "1d":
        return _aggregate(frame, days, days)
    # 1970-01-01 was a Thursday: shifting by 3 days makes integer division by 7 split on Mondays.
    return _aggregate(frame, (days + 3) // 7, days)


def normal_market(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the intraday bars that start in the normal market, 09:15 to 15:30 IST.

    Drops pre-open (09:00-09:15) and closing-session (15:30-16:00) bars and special sessions
    held outside those hours (Muhurat trading in the evening). The frame is not copied when
    nothing is dropped.
    """
    minutes = _check(frame) % _NS_PER_DAY // _NS_PER_MINUTE
    first = NORMAL_MARKET[0].hour * 60 + NORMAL_MARKET[0].minute
    last = NORMAL_MARKET[1].hour * 60 + NORMAL_MARKET[1].minute
    keep = (minutes >= first) & (minutes < last)
    return frame if keep.all() else frame.loc[keep]
