"""Market regime of a symbol on each daily bar: TRENDING, MEAN_REVERTING, CHOPPY or PANIC.

Pure functions (no I/O) over a daily bar frame (tz-aware ``DatetimeIndex`` oldest first, float
columns ``open, high, low, close, volume``). The regime on bar ``t`` uses bars ``<= t`` only
(TA-Lib's indicators and the trailing windows are causal), so it is the same whether or not
later bars exist.

Measures (defaults in :class:`RegimeConfig`)
--------------------------------------------
==================  ==========================================================================
ADX                 Wilder's ADX(14): trend strength, 0-100, whatever the direction.
efficiency ratio    ``|close_t - close_{t-20}| / sum |close_i - close_{i-1}|`` over 20 bars:
                    1 for a straight line, near 0 when the moves cancel out.
swing               ``(highest high - lowest low) / ATR(14)`` over 20 bars: how wide the
                    range is in typical daily moves.
drawdown speed      ``(highest high of the last 5 bars - close) / ATR(14) of 5 bars ago``:
                    the fall from the recent high, in ATRs measured before the fall.
expansion           ``ATR(14) / ATR(14) of 5 bars ago``: volatility growing (a crash's wide
                    bars) rather than steady (a regular swing's falls).
volatility pct      where today's ``ATR(14) / close`` stands in its own trailing 252 bars
                    (0-1; needs 60 bars, NaN before).
==================  ==========================================================================

Rules, first match wins
-----------------------
==================  ==========================================================================
1. PANIC            drawdown speed >= 4 ATR, or >= 3 ATR while the volatility percentile is
                    >= 0.95 (a fall inside a volatility spike); either only while the
                    expansion is >= 1.2, so the regular falls of a wide range are not panics.
2. TRENDING         ADX >= 25 and efficiency ratio >= 0.30 (strong and going somewhere).
3. MEAN_REVERTING   efficiency ratio < 0.30 and swing >= 4 ATR (wide swings that cancel out:
                    a range worth trading back and forth).
4. CHOPPY           everything else: no direction and swings too small to trade.
==================  ==========================================================================

Warm-up: until ADX, the efficiency ratio, the swing and the lagged ATR all exist (about 28 bars
with the defaults) the regime is CHOPPY, the regime that suggests doing least. PANIC comes
first because a crash also looks like a strong trend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import talib

from core.errors import ValidationError
from engines.signal_types import Regime
from engines.strategies import check_bars

_REGIMES = np.array(
    [Regime.CHOPPY.value, Regime.MEAN_REVERTING.value, Regime.TRENDING.value, Regime.PANIC.value],
    dtype=object,
)
_CHOPPY, _MEAN_REVERTING, _TRENDING, _PANIC = range(4)


@dataclass(frozen=True, slots=True)
class RegimeConfig:
    """Windows and thresholds of the regime rules (see the module docstring's tables)."""

    adx_period: int = 14
    atr_period: int = 14
    trend_adx: float = 25.0  # ADX at or above which a move counts as a trend
    er_window: int = 20  # bars of the efficiency ratio and of the swing
    trend_er: float = 0.30  # efficiency ratio at or above which price is going somewhere
    swing_atr: float = 4.0  # range in ATRs at or above which swings are worth trading
    drawdown_bars: int = 5  # bars back the recent high is taken over
    panic_atr: float = 4.0  # fall from the recent high, in ATRs, that is a panic by itself
    spike_atr: float = 3.0  # smaller fall that is a panic during a volatility spike
    spike_pct: float = 0.95  # volatility percentile of a spike
    panic_expansion: float = 1.2  # ATR growth over drawdown_bars that a panic needs
    vol_window: int = 252  # trailing bars of the volatility percentile (one year)
    vol_min_bars: int = 60  # bars the volatility percentile needs

    def __post_init__(self) -> None:
        periods = {
            "adx_period": self.adx_period,
            "atr_period": self.atr_period,
            "er_window": self.er_window,
            "drawdown_bars": self.drawdown_bars,
            "vol_min_bars": self.vol_min_bars,
        }
        short = {name: n for name, n in periods.items() if n < 2}
        if short:
            raise ValidationError(f"regime windows must be at least 2 bars; got {short}")
        if not 2 <= self.vol_min_bars <= self.vol_window:
            raise ValidationError(
                f"vol_min_bars ({self.vol_min_bars}) must be between 2 and vol_window "
                f"({self.vol_window})"
            )
        if not 0 < self.trend_er < 1 or not 0 < self.spike_pct <= 1:
            raise ValidationError(
                f"trend_er must be in (0, 1) and spike_pct in (0, 1]; got {self.trend_er} and "
                f"{self.spike_pct}"
            )
        thresholds = (self.trend_adx, self.swing_atr, self.panic_atr, self.spike_atr,
                      self.panic_expansion)
        if min(thresholds) <= 0:
            raise ValidationError(
                "trend_adx, swing_atr, panic_atr, spike_atr and panic_expansion must be "
                f"positive; got {thresholds}"
            )

    @property
    def warmup_bars(self) -> int:
        """Return how many bars the rules need before the first regime other than CHOPPY."""
        return max(2 * self.adx_period, self.er_window + 1, self.atr_period + self.drawdown_bars)


class _Measures(NamedTuple):
    adx: np.ndarray
    er: np.ndarray
    swing: np.ndarray
    drawdown: np.ndarray
    expansion: np.ndarray
    vol_pct: np.ndarray
    recent_high: np.ndarray
    close: np.ndarray


def _measures(bars: pd.DataFrame, cfg: RegimeConfig) -> _Measures:
    check_bars(bars)
    high, low, close = (
        np.ascontiguousarray(bars[c].to_numpy(dtype=np.float64)) for c in ("high", "low", "close")
    )
    n = len(close)
    atr = talib.ATR(high, low, close, timeperiod=cfg.atr_period)
    adx = talib.ADX(high, low, close, timeperiod=cfg.adx_period)
    window = cfg.er_window
    moved = np.full(n, np.nan)
    moved[window:] = np.abs(close[window:] - close[:-window])
    path = talib.SUM(np.r_[np.nan, np.abs(np.diff(close))], timeperiod=window)
    lag = cfg.drawdown_bars
    atr_before = np.full(n, np.nan)  # the ATR before the fall
    if n > lag:
        atr_before[lag:] = atr[: n - lag]
    recent_high = talib.MAX(high, timeperiod=lag)
    with np.errstate(invalid="ignore", divide="ignore"):
        er = np.where(path > 0, moved / np.where(path > 0, path, 1.0), 0.0)
        er = np.where(np.isnan(moved) | np.isnan(path), np.nan, er)
        swing = (talib.MAX(high, timeperiod=window) - talib.MIN(low, timeperiod=window)) / atr
        drawdown = (recent_high - close) / atr_before
        expansion = atr / atr_before
        atr_pct = atr / close
    vol_pct = (
        pd.Series(atr_pct).rolling(cfg.vol_window, min_periods=cfg.vol_min_bars).rank(pct=True)
    ).to_numpy()
    return _Measures(adx, er, swing, drawdown, expansion, vol_pct, recent_high, close)


def _codes(m: _Measures, cfg: RegimeConfig) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        fall = (m.drawdown >= cfg.panic_atr) | (
            (m.drawdown >= cfg.spike_atr) & (m.vol_pct >= cfg.spike_pct)
        )
        panic = fall & (m.expansion >= cfg.panic_expansion)
        trending = (m.adx >= cfg.trend_adx) & (m.er >= cfg.trend_er)
        reverting = (m.er < cfg.trend_er) & (m.swing >= cfg.swing_atr)
    ready = ~(np.isnan(m.adx) | np.isnan(m.er) | np.isnan(m.swing) | np.isnan(m.drawdown))
    code = np.select(
        [panic, trending, reverting], [_PANIC, _TRENDING, _MEAN_REVERTING], default=_CHOPPY
    )
    return np.where(ready, code, _CHOPPY)


def classify(bars: pd.DataFrame, cfg: RegimeConfig | None = None) -> pd.Series:
    """Return the regime of every bar as :class:`~engines.signal_types.Regime` value strings.

    ``bars`` is a daily bar frame as the module docstring describes; ``cfg`` defaults to
    :class:`RegimeConfig`. The result is indexed like ``bars`` and named ``regime``; warm-up
    bars are ``"CHOPPY"``. Raises :class:`~core.errors.ValidationError` for an empty or
    malformed frame.
    """
    cfg = cfg or RegimeConfig()
    codes = _codes(_measures(bars, cfg), cfg)
    return pd.Series(_REGIMES[codes], index=bars.index, name="regime")


def explain(bars: pd.DataFrame, cfg: RegimeConfig | None = None) -> tuple[Regime, str]:
    """Return the regime of the last bar and the reason in plain words with the numbers.

    The same rules as :func:`classify`, e.g. ``"PANIC: close 812.40 is 5.1 ATR below the
    5-bar high 901.00 (panic at 4 ATR)"``.
    """
    cfg = cfg or RegimeConfig()
    m = _measures(bars, cfg)
    regime = Regime(_REGIMES[_codes(m, cfg)[-1]])
    last = {name: float(values[-1]) for name, values in m._asdict().items()}
    return regime, _reason(regime, last, cfg, len(bars))


def _reason(regime: Regime, v: dict[str, float], cfg: RegimeConfig, have: int) -> str:
    if any(np.isnan(v[k]) for k in ("adx", "er", "swing", "drawdown")):
        return (
            f"CHOPPY (warming up): the regime rules need about {cfg.warmup_bars} bars, "
            f"have {have}"
        )
    trend = f"ADX {v['adx']:.1f}, efficiency ratio {v['er']:.2f}"
    if regime is Regime.PANIC:
        text = (
            f"PANIC: close {v['close']:.2f} is {v['drawdown']:.1f} ATR below the "
            f"{cfg.drawdown_bars}-bar high {v['recent_high']:.2f}"
        )
        growing = f"and ATR grew {v['expansion']:.2f}× in {cfg.drawdown_bars} bars"
        if v["drawdown"] >= cfg.panic_atr:
            return (
                f"{text} {growing} (panic at {cfg.panic_atr:g} ATR with "
                f"{cfg.panic_expansion:g}× growth)"
            )
        return (
            f"{text} {growing}, with volatility at its {v['vol_pct']:.0%} percentile of a year "
            f"(panic at {cfg.spike_atr:g} ATR in a spike above {cfg.spike_pct:.0%})"
        )
    if regime is Regime.TRENDING:
        return (
            f"TRENDING: {trend} (trend needs ADX >= {cfg.trend_adx:g} and ratio >= "
            f"{cfg.trend_er:g})"
        )
    swing = f"the {cfg.er_window}-bar range spans {v['swing']:.1f} ATR"
    if regime is Regime.MEAN_REVERTING:
        return (
            f"MEAN_REVERTING: {trend}, and {swing} (ratio < {cfg.trend_er:g} with a range of "
            f">= {cfg.swing_atr:g} ATR)"
        )
    return (
        f"CHOPPY: {trend}, and {swing}: neither a trend (ADX >= {cfg.trend_adx:g} and ratio "
        f">= {cfg.trend_er:g}) nor a range worth trading (ratio < {cfg.trend_er:g} and "
        f">= {cfg.swing_atr:g} ATR)"
    )
