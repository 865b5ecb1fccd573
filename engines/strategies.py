"""The rule-based strategy ensemble: VWAP, RSI and Momentum vote BUY, SELL or HOLD.

Pure functions (no I/O) over a daily bar frame (tz-aware ``DatetimeIndex`` oldest first, float
columns ``open, high, low, close, volume``). Every value on bar ``t`` uses bars ``<= t`` only,
and TA-Lib's indicators are causal, so the vote on bar ``t`` is the same whether or not later
bars exist. :func:`ensemble_frame` applies the rule to every bar at once; :func:`ensemble` reads
the last bar of the same computation and adds each vote's reason in plain words.

The strategies (defaults in :class:`EnsembleConfig`)
----------------------------------------------------
========  ===============================================================================
VWAP      Price against a rolling 20-bar volume-weighted average of the typical price and
          its volume-weighted standard-deviation bands. ``z = (close - VWAP) / sd``;
          ``z <= -2`` votes BUY (stretched below value), ``z >= +2`` votes SELL; confidence
          ``0.5`` at the band rising linearly to ``1`` at ``1.5`` band widths.
RSI       Wilder's RSI(14). Below 30 votes BUY (oversold), above 70 SELL (overbought);
          confidence ``0.5`` at the line rising to ``1`` at 15 / 85. Otherwise divergence:
          a close at a new 20-bar low while the RSI stands at least 5 points above its
          20-bar low votes BUY (bullish divergence), the mirror image SELL; confidence
          ``gap / 20`` capped at 1.
Momentum  MACD(12, 26, 9) histogram and the 10-bar rate of change agree: both positive
          votes BUY, both negative SELL. Confidence ``0.4`` plus ``0.2`` each for a fresh
          MACD crossover (within 3 bars), volume confirmation (volume at least 1.5 times
          the previous 20 bars' mean) and the rate of change's size (full at 5%).
========  ===============================================================================

A HOLD vote abstains: its confidence is 0. A strategy whose indicators are still warming up
votes HOLD and says how many bars it needs.

The weighted vote
-----------------
``buy = sum(weight * confidence)`` over the BUY votes, ``sell`` likewise. With
``net = buy - sell``: BUY when ``net >= min_score`` (0.20), SELL when ``net <= -min_score``,
otherwise HOLD. Confidence is ``|net|`` for BUY or SELL (at most 1, since weights sum to 1) and
``1 - |net|`` for HOLD (how balanced the votes are). Agreement counts the strategies that voted
the ensemble's action, out of the strategies in the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import talib

from core.errors import ValidationError
from engines.signal_types import Action, EnsembleVote, Vote

VWAP, RSI, MOMENTUM = "VWAP", "RSI", "Momentum"
#: The strategies the ensemble knows, in voting order.
STRATEGIES: tuple[str, ...] = (VWAP, RSI, MOMENTUM)
_DEFAULT_WEIGHTS = {VWAP: 0.35, RSI: 0.30, MOMENTUM: 0.35}
_ACTIONS = np.array([Action.SELL.value, Action.HOLD.value, Action.BUY.value], dtype=object)
_REQUIRED = ("open", "high", "low", "close", "volume")


def _default_weights() -> dict[str, float]:
    return dict(_DEFAULT_WEIGHTS)


@dataclass(frozen=True)
class EnsembleConfig:
    """Weights and thresholds of the strategy ensemble (see the module docstring).

    ``weights`` maps strategy names from :data:`STRATEGIES` to non-negative weights summing to
    1; a strategy left out does not vote. Raises :class:`~core.errors.ValidationError` naming
    the rule and the values when that does not hold.
    """

    weights: Mapping[str, float] = field(default_factory=_default_weights)
    min_score: float = 0.20  # |net weighted score| needed for BUY or SELL
    vwap_window: int = 20  # bars in the rolling VWAP and its bands
    vwap_band: float = 2.0  # band half-width in volume-weighted standard deviations
    rsi_period: int = 14
    rsi_oversold: float = 30.0
    rsi_overbought: float = 70.0
    divergence_lookback: int = 20  # bars a new low/high and the RSI's low/high are taken over
    divergence_gap: float = 5.0  # RSI points above its prior low (below its high) for divergence
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    cross_bars: int = 3  # a MACD crossover this many bars old or newer counts as fresh
    roc_period: int = 10
    roc_full: float = 5.0  # rate of change (percent) that earns the full size bonus
    volume_window: int = 20  # previous bars the volume is compared with
    volume_confirm: float = 1.5  # volume / its previous mean that confirms a move

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(STRATEGIES))
        if unknown:
            raise ValidationError(
                f"ensemble weights name unknown strategies {unknown}; known: {list(STRATEGIES)}"
            )
        negative = {name: w for name, w in self.weights.items() if not w >= 0}
        if negative:
            raise ValidationError(f"ensemble weights must be non-negative; got {negative}")
        total = float(sum(self.weights.values()))
        if abs(total - 1.0) > 1e-9:
            raise ValidationError(
                f"ensemble weights must sum to 1; got {dict(self.weights)} (sum {total:.6g})"
            )
        if not 0 < self.min_score <= 1:
            raise ValidationError(f"ensemble min_score must be in (0, 1]; got {self.min_score}")
        if not 0 <= self.rsi_oversold < self.rsi_overbought <= 100:
            raise ValidationError(
                f"RSI levels must satisfy 0 <= oversold < overbought <= 100; got "
                f"{self.rsi_oversold} and {self.rsi_overbought}"
            )
        if self.macd_slow <= self.macd_fast:
            raise ValidationError(
                f"MACD slow period ({self.macd_slow}) must exceed the fast ({self.macd_fast})"
            )
        periods = {
            "vwap_window": self.vwap_window,
            "rsi_period": self.rsi_period,
            "divergence_lookback": self.divergence_lookback,
            "macd_fast": self.macd_fast,
            "macd_signal": self.macd_signal,
            "roc_period": self.roc_period,
            "volume_window": self.volume_window,
        }
        short = {name: n for name, n in periods.items() if n < 2}
        if short or self.cross_bars < 1:
            raise ValidationError(
                f"ensemble periods must be at least 2 and cross_bars at least 1; got "
                f"{short or {'cross_bars': self.cross_bars}}"
            )
        if self.vwap_band <= 0 or self.roc_full <= 0 or self.volume_confirm <= 0:
            raise ValidationError(
                f"vwap_band, roc_full and volume_confirm must be positive; got "
                f"{self.vwap_band}, {self.roc_full}, {self.volume_confirm}"
            )

    def __hash__(self) -> int:
        # The generated hash would fail on the weights dict; hash its items instead, so a
        # config can key a cache (two configs with equal fields hash alike, as equality needs).
        fields = tuple(
            tuple(sorted(self.weights.items())) if name == "weights" else getattr(self, name)
            for name in self.__dataclass_fields__
        )
        return hash(fields)

    def weight(self, strategy: str) -> float:
        """Return the weight of ``strategy`` (0 when it is left out)."""
        return float(self.weights.get(strategy, 0.0))

    @property
    def voters(self) -> tuple[str, ...]:
        """Return the strategies that vote, in :data:`STRATEGIES` order."""
        return tuple(name for name in STRATEGIES if name in self.weights)


class _Votes(NamedTuple):
    """Per-bar votes of one strategy: code (+1 BUY, -1 SELL, 0 HOLD), confidence, numbers."""

    code: np.ndarray
    confidence: np.ndarray
    numbers: dict[str, np.ndarray]


def _arr(bars: pd.DataFrame, column: str) -> np.ndarray:
    return np.ascontiguousarray(bars[column].to_numpy(dtype=np.float64))


def check_bars(bars: pd.DataFrame) -> None:
    """Raise :class:`~core.errors.ValidationError` unless ``bars`` is a usable bar frame.

    The rule: at least one bar, a tz-aware ``DatetimeIndex`` sorted oldest first, and the
    columns ``open, high, low, close, volume``.
    """
    if len(bars) == 0:
        raise ValidationError("bars are empty; a vote needs at least one daily bar")
    index = bars.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise ValidationError(
            "bars need a tz-aware DatetimeIndex of bar starts; got "
            f"{type(index).__name__} with tz={getattr(index, 'tz', None)}"
        )
    if not index.is_monotonic_increasing:
        raise ValidationError("bars must be sorted oldest first")
    missing = [c for c in _REQUIRED if c not in bars.columns]
    if missing:
        raise ValidationError(f"bars lack columns {missing}; they need {list(_REQUIRED)}")


def _clip(values: np.ndarray, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    return np.clip(np.nan_to_num(values, nan=0.0), low, high)


def _vwap_votes(bars: pd.DataFrame, cfg: EnsembleConfig) -> _Votes:
    high, low, close, volume = (_arr(bars, c) for c in ("high", "low", "close", "volume"))
    typical = (high + low + close) / 3.0
    n = cfg.vwap_window
    sum_v = talib.SUM(volume, timeperiod=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = talib.SUM(typical * volume, timeperiod=n) / sum_v
        second = talib.SUM(typical * typical * volume, timeperiod=n) / sum_v
        sd = np.sqrt(np.maximum(second - vwap * vwap, 0.0))
        z = np.where(sd > 0, (close - vwap) / np.where(sd > 0, sd, 1.0), np.nan)
    band = cfg.vwap_band
    code = np.where(z <= -band, 1, np.where(z >= band, -1, 0))
    confidence = np.where(code != 0, _clip((np.abs(z) - band) / band + 0.5, 0.5, 1.0), 0.0)
    return _Votes(code, confidence, {"vwap": vwap, "sd": sd, "z": z, "close": close})


def _prior(values: np.ndarray) -> np.ndarray:
    """Return ``values`` one bar later: row ``t`` holds the value of bar ``t - 1``."""
    return np.r_[np.nan, values[:-1]] if len(values) else values


def _rsi_votes(bars: pd.DataFrame, cfg: EnsembleConfig) -> _Votes:
    close = _arr(bars, "close")
    rsi = talib.RSI(close, timeperiod=cfg.rsi_period)
    lookback = cfg.divergence_lookback
    prior_low = _prior(talib.MIN(close, timeperiod=lookback))
    prior_high = _prior(talib.MAX(close, timeperiod=lookback))
    rsi_low = _prior(talib.MIN(rsi, timeperiod=lookback))
    rsi_high = _prior(talib.MAX(rsi, timeperiod=lookback))
    with np.errstate(invalid="ignore"):
        oversold = rsi < cfg.rsi_oversold
        overbought = rsi > cfg.rsi_overbought
        bull_gap = np.where(close <= prior_low, rsi - rsi_low, np.nan)
        bear_gap = np.where(close >= prior_high, rsi_high - rsi, np.nan)
        bullish = ~oversold & ~overbought & (bull_gap >= cfg.divergence_gap)
        bearish = ~oversold & ~overbought & ~bullish & (bear_gap >= cfg.divergence_gap)
    span = cfg.rsi_oversold / 2.0 or 1.0
    extreme = np.where(
        oversold,
        _clip(0.5 + (cfg.rsi_oversold - rsi) / span, 0.5, 1.0),
        _clip(0.5 + (rsi - cfg.rsi_overbought) / ((100.0 - cfg.rsi_overbought) / 2.0 or 1.0),
              0.5, 1.0),
    )
    divergence = np.where(bullish, _clip(bull_gap / 20.0), _clip(bear_gap / 20.0))
    code = np.where(oversold | bullish, 1, np.where(overbought | bearish, -1, 0))
    confidence = np.where(oversold | overbought, extreme, np.where(code != 0, divergence, 0.0))
    numbers = {
        "rsi": rsi,
        "bull_gap": np.where(bullish, bull_gap, np.nan),
        "bear_gap": np.where(bearish, bear_gap, np.nan),
        "rsi_low": rsi_low,
        "rsi_high": rsi_high,
    }
    return _Votes(code, confidence, numbers)


def _bars_since_cross(hist: np.ndarray) -> np.ndarray:
    """Return, per bar, how many bars ago the MACD histogram last changed sign (NaN: never)."""
    sign = np.sign(np.nan_to_num(hist, nan=0.0))
    crossed = np.zeros(len(hist), dtype=bool)
    crossed[1:] = (sign[1:] != 0) & (sign[1:] != sign[:-1]) & (sign[:-1] != 0)
    index = np.arange(len(hist))
    last = np.maximum.accumulate(np.where(crossed, index, -1)) if len(hist) else index
    return np.where(last >= 0, index - last, np.nan).astype(np.float64)


def _momentum_votes(bars: pd.DataFrame, cfg: EnsembleConfig) -> _Votes:
    close, volume = _arr(bars, "close"), _arr(bars, "volume")
    _, _, hist = talib.MACD(
        close, fastperiod=cfg.macd_fast, slowperiod=cfg.macd_slow, signalperiod=cfg.macd_signal
    )
    roc = talib.ROC(close, timeperiod=cfg.roc_period)
    mean_volume = _prior(talib.SMA(volume, timeperiod=cfg.volume_window))
    with np.errstate(invalid="ignore", divide="ignore"):
        volume_ratio = np.where(mean_volume > 0, volume / mean_volume, np.nan)
        code = np.where((hist > 0) & (roc > 0), 1, np.where((hist < 0) & (roc < 0), -1, 0))
        since = _bars_since_cross(hist)
        fresh = since < cfg.cross_bars
        confirmed = volume_ratio >= cfg.volume_confirm
    size = _clip(np.abs(roc) / cfg.roc_full)
    confidence = np.where(code != 0, 0.4 + 0.2 * fresh + 0.2 * confirmed + 0.2 * size, 0.0)
    numbers = {"hist": hist, "roc": roc, "volume_ratio": volume_ratio, "since": since}
    return _Votes(code, confidence, numbers)


_VOTERS = {VWAP: _vwap_votes, RSI: _rsi_votes, MOMENTUM: _momentum_votes}


def _all_votes(bars: pd.DataFrame, cfg: EnsembleConfig) -> dict[str, _Votes]:
    check_bars(bars)
    return {name: _VOTERS[name](bars, cfg) for name in cfg.voters}


def _combine(votes: Mapping[str, _Votes], cfg: EnsembleConfig) -> tuple[np.ndarray, ...]:
    """Return per-bar ensemble code, confidence and agreement from the strategies' votes."""
    length = len(next(iter(votes.values())).code) if votes else 0
    buy, sell = np.zeros(length), np.zeros(length)
    for name, vote in votes.items():
        weighted = cfg.weight(name) * vote.confidence
        buy += np.where(vote.code == 1, weighted, 0.0)
        sell += np.where(vote.code == -1, weighted, 0.0)
    net = buy - sell
    # A hair of tolerance so a net score equal to min_score in exact arithmetic still acts.
    threshold = cfg.min_score - 1e-12
    code = np.where(net >= threshold, 1, np.where(net <= -threshold, -1, 0))
    confidence = np.where(code != 0, np.abs(net), 1.0 - np.abs(net)).clip(0.0, 1.0)
    agreement = np.zeros(length, dtype=np.int64)
    for vote in votes.values():
        agreement += vote.code == code
    return code, confidence, agreement


def ensemble_frame(bars: pd.DataFrame, cfg: EnsembleConfig | None = None) -> pd.DataFrame:
    """Return the ensemble's vote on every bar (the rule of :func:`ensemble`, vectorised).

    Parameters
    ----------
    bars
        Daily bars: tz-aware ``DatetimeIndex`` oldest first; float columns ``open, high, low,
        close, volume``.
    cfg
        Weights and thresholds; the defaults of :class:`EnsembleConfig` when omitted.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``bars``: ``action`` ("BUY"/"SELL"/"HOLD"), ``confidence`` in [0, 1],
        ``agreement`` (strategies that voted the action) and ``voters``. Warm-up bars vote
        HOLD.
    """
    cfg = cfg or EnsembleConfig()
    code, confidence, agreement = _combine(_all_votes(bars, cfg), cfg)
    return pd.DataFrame(
        {
            "action": _ACTIONS[code + 1],
            "confidence": confidence,
            "agreement": agreement,
            "voters": np.full(len(code), len(cfg.voters), dtype=np.int64),
        },
        index=bars.index,
    )


def ensemble(bars: pd.DataFrame, cfg: EnsembleConfig | None = None) -> EnsembleVote:
    """Return the ensemble's vote on the last bar, with each strategy's vote and reason.

    The same rule as :func:`ensemble_frame` (see the module docstring); each
    :class:`~engines.signal_types.Vote` carries a plain-words reason with the numbers, e.g.
    ``"RSI 27.4 < 30: oversold"``. Raises :class:`~core.errors.ValidationError` when ``bars``
    is empty, lacks a column or has no tz-aware index.
    """
    cfg = cfg or EnsembleConfig()
    votes = _all_votes(bars, cfg)
    code, confidence, agreement = _combine(votes, cfg)
    reasons = {VWAP: _vwap_reason, RSI: _rsi_reason, MOMENTUM: _momentum_reason}
    out = []
    for name, vote in votes.items():
        action = Action(_ACTIONS[int(vote.code[-1]) + 1])
        last = {key: float(values[-1]) for key, values in vote.numbers.items()}
        out.append(
            Vote(
                strategy=name,
                action=action,
                confidence=float(vote.confidence[-1]),
                weight=cfg.weight(name),
                reason=reasons[name](action, last, cfg, len(bars)),
            )
        )
    return EnsembleVote(
        action=Action(_ACTIONS[int(code[-1]) + 1]),
        confidence=float(confidence[-1]),
        agreement=int(agreement[-1]),
        voters=len(votes),
        votes=tuple(out),
    )


def _warming(name: str, needed: int, have: int) -> str:
    return f"{name} is warming up: needs about {needed} bars, has {have}; no vote"


def _vwap_reason(action: Action, n: dict[str, float], cfg: EnsembleConfig, have: int) -> str:
    window, band = cfg.vwap_window, cfg.vwap_band
    if np.isnan(n["z"]):
        return _warming(f"the {window}-bar VWAP band", window, have)
    where = "below" if n["z"] < 0 else "above"
    text = (
        f"close {n['close']:.2f} is {abs(n['z']):.1f}σ {where} the {window}-bar VWAP "
        f"{n['vwap']:.2f} (bands ±{band:g}σ: {n['vwap'] - band * n['sd']:.2f} to "
        f"{n['vwap'] + band * n['sd']:.2f})"
    )
    if action is Action.BUY:
        return f"{text}: stretched below value"
    if action is Action.SELL:
        return f"{text}: stretched above value"
    return f"{text}: inside the bands"


def _rsi_reason(action: Action, n: dict[str, float], cfg: EnsembleConfig, have: int) -> str:
    rsi, lookback = n["rsi"], cfg.divergence_lookback
    if np.isnan(rsi):
        return _warming(f"RSI({cfg.rsi_period})", cfg.rsi_period + 1, have)
    if rsi < cfg.rsi_oversold:
        return f"RSI {rsi:.1f} < {cfg.rsi_oversold:g}: oversold"
    if rsi > cfg.rsi_overbought:
        return f"RSI {rsi:.1f} > {cfg.rsi_overbought:g}: overbought"
    if action is Action.BUY:
        return (
            f"close at a new {lookback}-bar low but RSI {rsi:.1f} is {n['bull_gap']:.1f} above "
            f"its {lookback}-bar low {n['rsi_low']:.1f}: bullish divergence"
        )
    if action is Action.SELL:
        return (
            f"close at a new {lookback}-bar high but RSI {rsi:.1f} is {n['bear_gap']:.1f} below "
            f"its {lookback}-bar high {n['rsi_high']:.1f}: bearish divergence"
        )
    return (
        f"RSI {rsi:.1f} between {cfg.rsi_oversold:g} and {cfg.rsi_overbought:g}, "
        "no divergence"
    )


def _momentum_reason(
    action: Action, n: dict[str, float], cfg: EnsembleConfig, have: int
) -> str:
    hist, roc = n["hist"], n["roc"]
    if np.isnan(hist) or np.isnan(roc):
        needed = max(cfg.macd_slow + cfg.macd_signal - 1, cfg.roc_period + 1)
        return _warming("MACD and rate of change", needed, have)
    text = f"MACD histogram {hist:+.2f}, ROC({cfg.roc_period}) {roc:+.1f}%"
    if action is Action.HOLD:
        return f"{text}: they disagree (or are flat), no momentum"
    since = n["since"]
    side = "up" if action is Action.BUY else "down"
    parts = [text]
    if not np.isnan(since) and since < cfg.cross_bars:
        ago = "on this bar" if since == 0 else f"{since:.0f} bar{'s' if since > 1 else ''} ago"
        parts.append(f"MACD crossed {side} {ago}")
    ratio = n["volume_ratio"]
    if not np.isnan(ratio):
        verdict = "confirms" if ratio >= cfg.volume_confirm else "does not confirm"
        parts.append(
            f"volume {ratio:.1f}× its {cfg.volume_window}-bar mean {verdict} "
            f"(needs {cfg.volume_confirm:g}×)"
        )
    return "; ".join(parts) + f": momentum {side}"
