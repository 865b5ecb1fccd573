"""Domain types shared by the signal engines (features, strategies, regime, model, signal).

Pure values, no I/O. The meaning of a signal's probability is fixed here once:

    probability = P(price reaches target 1 before the stop-loss within ``horizon_bars`` bars),

calibrated on out-of-sample data, for the signal's direction (LONG: target above entry, stop
below; SHORT: the mirror image). Target 1 is the model's triple-barrier target
(``entry ± k·ATR``); the stop is ``entry ∓ m·ATR``; so the risk:reward to target 1 is ``k / m``.
Targets 2 and 3 lie further out on the same R scale (see :class:`BarrierSpec`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from core.errors import ValidationError

DISCLAIMER = (
    "Not investment advice. A probability here is a measured frequency from past data: of past "
    "signals given this probability, about that share reached target 1 before the stop. The "
    "measured edge over the market's base rate is small; size positions accordingly."
)


class Action(StrEnum):
    """What the signal suggests doing now."""

    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"


class Direction(StrEnum):
    """Which way the trade the signal describes would profit."""

    LONG = "LONG"
    SHORT = "SHORT"
    FLAT = "FLAT"


class Regime(StrEnum):
    """Market regime of one symbol on one bar (rules in :mod:`engines.regime`)."""

    TRENDING = "TRENDING"
    MEAN_REVERTING = "MEAN_REVERTING"
    CHOPPY = "CHOPPY"
    PANIC = "PANIC"


@dataclass(frozen=True, slots=True)
class BarrierSpec:
    """Triple-barrier geometry shared by labels, stop/targets and outcome marking.

    Defaults: ATR over 14 bars; target ``k = 2`` ATR, stop ``m = 1`` ATR, horizon ``10`` bars
    (the setup the issue measured an edge for). Targets 2 and 3 are ``target_multiples`` times
    target 1's distance from entry.
    """

    atr_period: int = 14
    k_target: float = 2.0
    m_stop: float = 1.0
    horizon_bars: int = 10
    target_multiples: tuple[float, float, float] = (1.0, 1.5, 2.0)

    def __post_init__(self) -> None:
        if self.atr_period < 2:
            raise ValidationError(f"ATR period must be at least 2; got {self.atr_period}")
        if self.k_target <= 0 or self.m_stop <= 0:
            raise ValidationError(
                f"target and stop ATR multiples must be positive; got k={self.k_target}, "
                f"m={self.m_stop}"
            )
        if self.horizon_bars < 1:
            raise ValidationError(f"horizon must be at least 1 bar; got {self.horizon_bars}")
        multiples = self.target_multiples
        if len(multiples) != 3 or multiples[0] != 1.0 or list(multiples) != sorted(multiples):
            raise ValidationError(
                "target multiples must be three increasing numbers starting at 1.0; "
                f"got {multiples}")

    @property
    def risk_reward(self) -> float:
        """Reward to target 1 per unit of risk to the stop (``k / m``)."""
        return self.k_target / self.m_stop


@dataclass(frozen=True, slots=True)
class Vote:
    """One strategy's vote: action, confidence in [0, 1], its ensemble weight and why."""

    strategy: str
    action: Action
    confidence: float
    weight: float
    reason: str


@dataclass(frozen=True, slots=True)
class EnsembleVote:
    """The weighted vote of the strategies: action, confidence in [0, 1], and agreement.

    ``agreement`` is how many of ``voters`` strategies voted the ensemble's action (e.g. 2 of 3).
    """

    action: Action
    confidence: float
    agreement: int
    voters: int
    votes: tuple[Vote, ...]


@dataclass(frozen=True, slots=True)
class Contribution:
    """One feature's push on the model's raw score (an XGBoost SHAP value, log-odds units)."""

    feature: str
    value: float  # the feature's value on the bar
    push: float  # its contribution to the log-odds; > 0 raises the probability


@dataclass(frozen=True, slots=True)
class Prediction:
    """The model's calibrated probabilities for one symbol on one bar.

    ``p_long``: P(long target 1 before long stop); ``p_short`` likewise for the short setup.
    ``contributions`` are for the direction the signal takes, largest ``|push|`` first.
    """

    p_long: float
    p_short: float
    base_rate_long: float
    base_rate_short: float
    model_version: str
    contributions_long: tuple[Contribution, ...] = ()
    contributions_short: tuple[Contribution, ...] = ()


@dataclass(frozen=True, slots=True)
class Evidence:
    """One piece of evidence behind a signal: its source, a short name and a plain-words detail."""

    source: str  # "strategy", "model", "regime" or "rule"
    name: str
    detail: str
    value: float | None = None


@dataclass(frozen=True, slots=True)
class Signal:
    """A signal for one symbol as of the close of one bar.

    Prices are ``Decimal`` rupees on the 0.05 tick. ``probability`` is the calibrated probability
    for ``direction`` (see the module docstring); for HOLD it is that of the direction with
    the larger edge, whose stop and targets the signal carries for reference.
    """

    symbol: str
    as_of: datetime  # tz-aware start of the bar the signal was computed on
    action: Action
    direction: Direction
    probability: float
    confidence: float
    entry: Decimal
    stop_loss: Decimal
    targets: tuple[Decimal, Decimal, Decimal]
    risk_reward: float
    regime: Regime
    agreement: int
    voters: int
    evidence: tuple[Evidence, ...]
    model_version: str
    trace_id: str
    horizon_bars: int
    disclaimer: str = DISCLAIMER
