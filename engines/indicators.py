"""Technical indicators for charts: EMA, VWAP, Bollinger bands, RSI and MACD.

Pure functions (no I/O) over pandas Series of floats. Every result is aligned to the input's
index and is NaN during the indicator's warm-up (the bars before it has enough history). The
smoothed indicators are computed with TA-Lib, about 120 times faster than the pure-pandas ``ta``
package that the tests use as the reference.

Seeding. TA-Lib starts an EMA at the simple mean of its first ``n`` values (Wilder's RSI
likewise); ``ta`` and pandas ``ewm(adjust=False)`` start at the first value. The two agree once
the start has decayed away: the difference shrinks by ``(n - 1) / (n + 1)`` a bar (``(n - 1) / n``
for RSI); on the sample RELIANCE closes it is below 1e-6 rupees after ``10 n`` bars (``20 n``
for RSI, ``12 x 26`` for MACD). Callers that show a
window of a longer history should compute on the window plus such a margin, then cut the margin
off (``core.services.charts`` does).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
import talib

from engines.bars import ist_wall_clock


class Bands(NamedTuple):
    """Bollinger bands: the moving average and the bands ``k`` standard deviations around it."""

    mid: pd.Series
    upper: pd.Series
    lower: pd.Series


class Macd(NamedTuple):
    """MACD line (fast EMA - slow EMA), its signal line (EMA of MACD), and their difference."""

    macd: pd.Series
    signal: pd.Series
    hist: pd.Series


def _values(series: pd.Series) -> np.ndarray:
    return np.ascontiguousarray(series.to_numpy(dtype=np.float64))


def _series(values: np.ndarray, like: pd.Series, name: str) -> pd.Series:
    return pd.Series(values, index=like.index, name=name)


def _check_period(name: str, value: int, least: int = 1) -> None:
    if value < least:
        raise ValueError(f"{name} must be at least {least}; got {value}")


def ema(close: pd.Series, n: int) -> pd.Series:
    """Return the exponential moving average of ``close`` over ``n`` bars.

    Smoothing ``2 / (n + 1)``, started at the simple mean of the first ``n`` closes; NaN for the
    first ``n - 1`` bars.
    """
    _check_period("EMA period", n)
    return _series(talib.EMA(_values(close), timeperiod=n), close, f"ema{n}")


def bollinger(close: pd.Series, n: int = 20, k: float = 2.0) -> Bands:
    """Return Bollinger bands: ``n``-bar simple mean ± ``k`` population standard deviations.

    The deviation divides by ``n`` (not ``n - 1``), as Bollinger and ``ta`` define it. NaN for
    the first ``n - 1`` bars.
    """
    _check_period("Bollinger period", n, 2)
    upper, mid, lower = talib.BBANDS(
        _values(close), timeperiod=n, nbdevup=k, nbdevdn=k, matype=talib.MA_Type.SMA
    )
    return Bands(
        _series(mid, close, "bb_mid"),
        _series(upper, close, "bb_upper"),
        _series(lower, close, "bb_lower"),
    )


def rsi(close: pd.Series, n: int = 14) -> pd.Series:
    """Return Wilder's relative strength index (0-100) over ``n`` bars; NaN for the first ``n``."""
    _check_period("RSI period", n, 2)
    return _series(talib.RSI(_values(close), timeperiod=n), close, "rsi")


def macd(close: pd.Series, fast: int = 12, slow: int = 26, signal: int = 9) -> Macd:
    """Return MACD: ``EMA(fast) - EMA(slow)``, its ``signal``-bar EMA, and the histogram.

    NaN until both the slow EMA and the signal line have warmed up (``slow + signal - 2`` bars).
    """
    _check_period("MACD fast period", fast, 2)
    if slow <= fast:
        raise ValueError(f"MACD slow period ({slow}) must exceed the fast period ({fast})")
    _check_period("MACD signal period", signal)
    line, sig, hist = talib.MACD(
        _values(close), fastperiod=fast, slowperiod=slow, signalperiod=signal
    )
    return Macd(
        _series(line, close, "macd"),
        _series(sig, close, "macd_signal"),
        _series(hist, close, "macd_hist"),
    )


def vwap(
    high: pd.Series,
    low: pd.Series,
    close: pd.Series,
    volume: pd.Series,
    anchor: Literal["session", "start"] = "session",
) -> pd.Series:
    """Return the volume-weighted average price of the typical price ``(high + low + close) / 3``.

    Parameters
    ----------
    high, low, close, volume
        Series sharing one tz-aware DatetimeIndex of bar starts, oldest first.
    anchor
        ``"session"`` (intraday bars): the average restarts at each IST calendar date, so every
        session's first bar has VWAP = its typical price. ``"start"`` (daily or weekly bars):
        one running average anchored at the first bar given, so the caller chooses the anchor
        by the window it passes (the chart passes the range it shows).

    Returns
    -------
    pandas.Series
        ``sum(typical * volume) / sum(volume)`` since the anchor; NaN while no volume has
        traded since the anchor (there is no price to weight).
    """
    if anchor not in ("session", "start"):
        raise ValueError(f"VWAP anchor {anchor!r} is not 'session' or 'start'")
    typical = (_values(high) + _values(low) + _values(close)) / 3.0
    vol = _values(volume)
    weighted = typical * vol
    if anchor == "start" or len(close) == 0:
        cum_pv, cum_v = np.cumsum(weighted), np.cumsum(vol)
    else:
        index = close.index
        if not isinstance(index, pd.DatetimeIndex):
            raise ValueError("session VWAP needs a tz-aware DatetimeIndex to find sessions")
        days = ist_wall_clock(index) // (86400 * 10**9)
        starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
        cum_pv, cum_v = _cumsum_reset(weighted, starts), _cumsum_reset(vol, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(cum_v > 0, cum_pv / np.where(cum_v > 0, cum_v, 1.0), np.nan)
    return _series(out, close, "vwap")


def _cumsum_reset(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Return running sums of ``values`` that restart at each index in ``starts``."""
    total = np.cumsum(values)
    before = np.r_[0.0, total[starts[1:] - 1]]  # running total just before each group
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(values)]))
    return total - before[group]
