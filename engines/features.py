"""Model features from daily OHLCV bars: trend, momentum, volatility and volume, scale-free.

Pure functions (no I/O). Every feature on bar ``t`` uses bars ``<= t`` only (no look-ahead; the
tests recompute each feature on truncated histories and compare). Features are ratios, z-scores
or bounded oscillators, never rupee levels, so one model serves stocks priced at 100 or 10,000.

Warm-up. Rows before a feature has enough history are NaN. The longest look-back is the 52-week
(252-bar) high/low, so a symbol needs :data:`MIN_BARS` daily bars before its last bar has every
feature (and so a signal). The smoothed TA-Lib indicators (EMA, Wilder's ATR/ADX/RSI) start at
the simple mean of their first window, so a value depends on where the history begins; the
difference decays geometrically and is negligible (< 1e-6 relative) after 200 bars, which
:data:`MIN_BARS` exceeds.

Feature glossary (``FEATURES`` order)
-------------------------------------
=================  ========================================================================
rsi_14             Wilder's RSI over 14 bars, 0-100
macd_hist_atr      MACD(12, 26, 9) histogram in ATR units
adx_14             Wilder's ADX over 14 bars (trend strength, 0-100)
di_diff            +DI minus -DI over 14 bars (trend direction)
atr_pct            ATR(14) as a fraction of the close
atr_ratio          ATR(14) / ATR(60): volatility now against the last quarter
bb_width           Bollinger(20, 2) band width / middle band
bb_pos             close's position in the Bollinger band (0 = lower, 1 = upper)
vwap_dist_atr      (close - 20-bar rolling VWAP) in ATR units
roc_5, roc_20,     rate of change over 5, 20, 60 bars, percent
roc_60
ret_1_atr          last bar's close-to-close change in ATR units
gap_atr            today's open minus yesterday's close, in yesterday's ATR units
close_loc          close's position in the bar's range (0 = low, 1 = high)
ema20_dist         close / EMA(20) - 1
ema20_50           EMA(20) / EMA(50) - 1
sma200_dist        close / SMA(200) - 1
volume_z           z-score of log volume against the previous 20 bars
dist_52w_high      close / highest high of 252 bars - 1 (<= 0)
dist_52w_low       close / lowest low of 252 bars - 1 (>= 0)
=================  ========================================================================
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

from core.errors import ValidationError

FEATURES: tuple[str, ...] = (
    "rsi_14",
    "macd_hist_atr",
    "adx_14",
    "di_diff",
    "atr_pct",
    "atr_ratio",
    "bb_width",
    "bb_pos",
    "vwap_dist_atr",
    "roc_5",
    "roc_20",
    "roc_60",
    "ret_1_atr",
    "gap_atr",
    "close_loc",
    "ema20_dist",
    "ema20_50",
    "sma200_dist",
    "volume_z",
    "dist_52w_high",
    "dist_52w_low",
)
#: Bars of history the longest feature needs (52 weeks of daily bars).
YEAR_BARS = 252
#: Daily bars a symbol needs for every feature (and so a signal) on its last bar.
MIN_BARS = YEAR_BARS
_REQUIRED = ("open", "high", "low", "close", "volume")


def _arr(frame: pd.DataFrame, column: str) -> np.ndarray:
    return np.ascontiguousarray(frame[column].to_numpy(dtype=np.float64))


def _check_frame(bars: pd.DataFrame) -> None:
    missing = [c for c in _REQUIRED if c not in bars.columns]
    if missing:
        raise ValidationError(f"bars lack columns {missing}; features need {list(_REQUIRED)}")
    index = bars.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise ValidationError("bars need a tz-aware DatetimeIndex of bar starts")
    if not index.is_monotonic_increasing:
        raise ValidationError("bars must be sorted oldest first")


def atr(bars: pd.DataFrame, period: int = 14) -> pd.Series:
    """Return Wilder's average true range over ``period`` bars (TA-Lib ATR), in rupees.

    NaN for the first ``period`` bars (the first true range needs a previous close).
    """
    if period < 2:
        raise ValueError(f"ATR period must be at least 2; got {period}")
    values = talib.ATR(_arr(bars, "high"), _arr(bars, "low"), _arr(bars, "close"), period)
    return pd.Series(values, index=bars.index, name=f"atr_{period}")


def check_history(bars: pd.DataFrame, symbol: str) -> None:
    """Raise ValidationError unless ``bars`` has the :data:`MIN_BARS` a signal needs."""
    if len(bars) < MIN_BARS:
        raise ValidationError(
            f"{symbol} has {len(bars)} daily bars; a signal needs at least {MIN_BARS} "
            f"(the 52-week high/low looks back {YEAR_BARS} bars)"
        )


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    out[~np.isfinite(out)] = np.nan
    return out


def _rolling(values: np.ndarray, window: int) -> pd.core.window.Rolling:
    return pd.Series(values).rolling(window, min_periods=window)


def compute_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Return the model's features for every bar of one symbol.

    Parameters
    ----------
    bars
        Daily bars of one symbol: tz-aware DatetimeIndex oldest first, float columns
        ``open, high, low, close, volume``.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``bars``, columns :data:`FEATURES`; NaN during each feature's warm-up.
        Row ``t`` depends on bars ``<= t`` only.
    """
    _check_frame(bars)
    o, h, lo = _arr(bars, "open"), _arr(bars, "high"), _arr(bars, "low")
    c, v = _arr(bars, "close"), _arr(bars, "volume")
    atr14 = talib.ATR(h, lo, c, 14)
    atr60 = talib.ATR(h, lo, c, 60)
    _, _, hist = talib.MACD(c, 12, 26, 9)
    upper, mid, lower = talib.BBANDS(c, 20, 2.0, 2.0, talib.MA_Type.SMA)
    typical = (h + lo + c) / 3.0
    vwap20 = _divide(
        _rolling(typical * v, 20).sum().to_numpy(), _rolling(v, 20).sum().to_numpy()
    )
    prev_close = np.r_[np.nan, c[:-1]]
    prev_atr = np.r_[np.nan, atr14[:-1]]
    ema20, ema50 = talib.EMA(c, 20), talib.EMA(c, 50)
    log_v = np.log1p(np.maximum(v, 0.0))
    prev_log_v = pd.Series(np.r_[np.nan, log_v[:-1]]).rolling(20, min_periods=20)
    out = {
        "rsi_14": talib.RSI(c, 14),
        "macd_hist_atr": _divide(hist, atr14),
        "adx_14": talib.ADX(h, lo, c, 14),
        "di_diff": talib.PLUS_DI(h, lo, c, 14) - talib.MINUS_DI(h, lo, c, 14),
        "atr_pct": _divide(atr14, c),
        "atr_ratio": _divide(atr14, atr60),
        "bb_width": _divide(upper - lower, mid),
        "bb_pos": _divide(c - lower, upper - lower),
        "vwap_dist_atr": _divide(c - vwap20, atr14),
        "roc_5": talib.ROC(c, 5),
        "roc_20": talib.ROC(c, 20),
        "roc_60": talib.ROC(c, 60),
        "ret_1_atr": _divide(c - prev_close, atr14),
        "gap_atr": _divide(o - prev_close, prev_atr),
        "close_loc": _divide(c - lo, h - lo),
        "ema20_dist": _divide(c, ema20) - 1.0,
        "ema20_50": _divide(ema20, ema50) - 1.0,
        "sma200_dist": _divide(c, talib.SMA(c, 200)) - 1.0,
        "volume_z": _divide(
            log_v - prev_log_v.mean().to_numpy(), prev_log_v.std(ddof=0).to_numpy()
        ),
        "dist_52w_high": _divide(c, _rolling(h, YEAR_BARS).max().to_numpy()) - 1.0,
        "dist_52w_low": _divide(c, _rolling(lo, YEAR_BARS).min().to_numpy()) - 1.0,
    }
    frame = pd.DataFrame(out, index=bars.index, columns=list(FEATURES))
    # A flat bar (high == low) has no close location; call it the middle rather than lose the row.
    flat = (h == lo) & np.isfinite(c)
    frame.loc[flat, "close_loc"] = 0.5
    return frame
