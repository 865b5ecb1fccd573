"""Signal assembly: the action rule, ATR stop and targets, confidence and evidence.

Pure functions (no I/O). The model (:mod:`engines.model`) gives calibrated probabilities that
a LONG or a SHORT setup reaches target 1 before its stop; the strategy ensemble
(:mod:`engines.strategies`) and the regime (:mod:`engines.regime`) can only veto. This module
turns them into a :class:`~engines.signal_types.Signal`.

The action rule (:func:`decide`, vectorised as :func:`decide_frame`)
--------------------------------------------------------------------
1. Edge of a direction = its calibrated probability minus that direction's base rate (the
   share of past setups that reached target 1 first): ``edge_long = p_long - base_long``,
   ``edge_short = p_short - base_short``.
2. A direction is a candidate when its edge is at least ``min_edge`` (default 0.03) and larger
   than the other direction's edge. No candidate: HOLD.
3. Vetoes (each can be switched off in :class:`SignalConfig`):
   - the ensemble voting the opposite action (SELL against a LONG, BUY against a SHORT) turns
     the candidate into HOLD: the rules and the model disagree;
   - a PANIC regime vetoes a LONG: no new longs into a crash (its ATR stop is too tight for
     the volatility and the base rate measured in calmer days does not hold). SHORTs stay
     allowed.
4. LONG gives BUY, SHORT gives SELL, no trade gives HOLD with direction FLAT.

Confidence (:func:`confidence`)
-------------------------------
``confidence = model_weight * min(1, edge / full_edge) + (1 - model_weight) * ensemble``, where
``edge`` is the taken direction's edge, ``full_edge`` (default 0.15) the edge that counts as
full conviction, and ``ensemble`` the ensemble's confidence when it voted the same action (0
when it voted HOLD). ``model_weight`` defaults to 0.5. A HOLD has confidence 0. The result is
in [0, 1]. It ranks signals; it is *not* a probability (the probability is the model's).

Levels (:func:`levels`)
-----------------------
``stop = entry ∓ m·ATR`` and ``target_i = entry ± k·ATR·multiple_i``
(:class:`~engines.signal_types.BarrierSpec`), on the 0.05 rupee tick, rounded so risk is never
understated: the stop away from the entry, the targets toward it (but target 1 at least one
tick beyond the entry). ``risk:reward = (T1 - entry) / (entry - stop)`` from the rounded prices.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import NamedTuple

import numpy as np
import pandas as pd

from core.errors import ValidationError
from engines.features import atr as average_true_range
from engines.features import check_history
from engines.regime import RegimeConfig, explain
from engines.signal_types import (
    Action,
    BarrierSpec,
    Contribution,
    Direction,
    EnsembleVote,
    Evidence,
    Prediction,
    Regime,
    Signal,
)
from engines.strategies import EnsembleConfig, check_bars, ensemble

#: NSE equity price tick in rupees.
TICK = Decimal("0.05")
_NO_VETO, _OPPOSITE_VOTE, _PANIC_LONG = 0, 1, 2
_ACTION_OF = {1: Action.BUY, -1: Action.SELL, 0: Action.HOLD}
_DIRECTION_OF = {1: Direction.LONG, -1: Direction.SHORT, 0: Direction.FLAT}
# Slack so an edge equal to min_edge in decimal arithmetic is not lost to binary rounding.
_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class SignalConfig:
    """The action rule's thresholds and vetoes and the confidence blend (module docstring)."""

    min_edge: float = 0.03  # probability above the direction's base rate needed to act
    opposite_vote_vetoes: bool = True  # the ensemble voting the other way forces HOLD
    panic_vetoes_long: bool = True  # no new LONG in a PANIC regime
    model_weight: float = 0.5  # share of the confidence that comes from the model's edge
    full_edge: float = 0.15  # edge counted as full model conviction in the confidence
    top_contributions: int = 5  # model contributions shown as evidence

    def __post_init__(self) -> None:
        if not 0 <= self.min_edge < 1:
            raise ValidationError(f"min_edge must be in [0, 1); got {self.min_edge}")
        if not 0 <= self.model_weight <= 1:
            raise ValidationError(f"model_weight must be in [0, 1]; got {self.model_weight}")
        if not 0 < self.full_edge <= 1:
            raise ValidationError(f"full_edge must be in (0, 1]; got {self.full_edge}")
        if self.top_contributions < 0:
            raise ValidationError(
                f"top_contributions must be 0 or more; got {self.top_contributions}"
            )


class _Rule(NamedTuple):
    """The rule's result per row: taken side (+1/-1/0), candidate side before vetoes, veto."""

    side: np.ndarray
    candidate: np.ndarray
    veto: np.ndarray


def _codes(values: np.ndarray | pd.Series | list[str], names: dict[str, int]) -> np.ndarray:
    text = np.asarray(values, dtype=object).astype(str)
    out = np.zeros(len(text), dtype=np.int64)
    for name, code in names.items():
        out[text == name] = code
    return out


def _rule(
    p_long: np.ndarray,
    p_short: np.ndarray,
    base_long: float,
    base_short: float,
    ensemble_code: np.ndarray,
    panic: np.ndarray,
    cfg: SignalConfig,
) -> _Rule:
    """Apply the action rule to arrays (the one implementation behind decide and decide_frame)."""
    with np.errstate(invalid="ignore"):
        edge_long = p_long - base_long
        edge_short = p_short - base_short
        floor = cfg.min_edge - _EPS
        long_ok = (edge_long >= floor) & (edge_long > edge_short)
        short_ok = (edge_short >= floor) & (edge_short > edge_long)
    candidate = np.where(long_ok, 1, np.where(short_ok, -1, 0))
    veto = np.full(len(candidate), _NO_VETO)
    if cfg.opposite_vote_vetoes:
        veto = np.where((candidate != 0) & (ensemble_code == -candidate), _OPPOSITE_VOTE, veto)
    if cfg.panic_vetoes_long:
        veto = np.where((veto == _NO_VETO) & (candidate == 1) & panic, _PANIC_LONG, veto)
    side = np.where(veto == _NO_VETO, candidate, 0)
    return _Rule(side, candidate, veto)


def _one(
    probabilities: tuple[float, float, float, float], vote: Action, regime: Regime,
    cfg: SignalConfig,
) -> tuple[int, int, int]:
    """Apply the rule to one bar: ``(p_long, p_short, base_long, base_short)``, vote, regime."""
    p_long, p_short, base_long, base_short = probabilities
    codes = _codes([Action(vote).value], {"BUY": 1, "SELL": -1})
    panic = np.array([Regime(regime) is Regime.PANIC])
    rule = _rule(np.array([p_long], float), np.array([p_short], float), base_long, base_short,
                 codes, panic, cfg)
    return int(rule.side[0]), int(rule.candidate[0]), int(rule.veto[0])


def decide(
    p_long: float,
    p_short: float,
    base_long: float,
    base_short: float,
    ensemble_action: Action,
    regime: Regime,
    cfg: SignalConfig | None = None,
) -> tuple[Action, Direction]:
    """Return the action and direction the rule of the module docstring gives.

    Parameters
    ----------
    p_long, p_short
        Calibrated probabilities that the LONG (SHORT) setup reaches target 1 before its stop.
        NaN counts as no edge.
    base_long, base_short
        The base rates of those outcomes (the model's training-window hit rates).
    ensemble_action
        The strategy ensemble's vote on the bar; the opposite vote vetoes.
    regime
        The bar's regime; PANIC vetoes a LONG.
    cfg
        Thresholds and vetoes; the defaults of :class:`SignalConfig` when omitted.

    Returns
    -------
    tuple
        ``(BUY, LONG)``, ``(SELL, SHORT)`` or ``(HOLD, FLAT)``.
    """
    probabilities = (p_long, p_short, base_long, base_short)
    side, _, _ = _one(probabilities, ensemble_action, regime, cfg or SignalConfig())
    return _ACTION_OF[side], _DIRECTION_OF[side]


def decide_frame(
    frame: pd.DataFrame, base_long: float, base_short: float, cfg: SignalConfig | None = None
) -> pd.DataFrame:
    """Apply :func:`decide` to every row of ``frame`` at once (the same rule, vectorised).

    Parameters
    ----------
    frame
        Columns ``p_long``, ``p_short`` (floats), ``ensemble_action`` ("BUY"/"SELL"/"HOLD")
        and ``regime`` (:class:`~engines.signal_types.Regime` values). With an optional
        ``ensemble_confidence`` column the result also has ``confidence``.
    base_long, base_short
        Base rates, as for :func:`decide`.
    cfg
        Thresholds and vetoes; the defaults of :class:`SignalConfig` when omitted.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``frame``: ``action`` and ``direction`` (value strings), ``edge`` (the
        taken direction's edge, NaN for HOLD), ``veto`` ("", "opposite_vote" or "panic_long")
        and, given ``ensemble_confidence``, ``confidence`` as :func:`confidence` computes it.
    """
    cfg = cfg or SignalConfig()
    missing = [c for c in ("p_long", "p_short", "ensemble_action", "regime") if c not in frame]
    if missing:
        raise ValidationError(
            f"decide_frame needs columns p_long, p_short, ensemble_action, regime; "
            f"missing {missing}"
        )
    p_long = frame["p_long"].to_numpy(dtype=float)
    p_short = frame["p_short"].to_numpy(dtype=float)
    ensemble_code = _codes(frame["ensemble_action"], {"BUY": 1, "SELL": -1})
    panic = _codes(frame["regime"], {Regime.PANIC.value: 1}) == 1
    rule = _rule(p_long, p_short, base_long, base_short, ensemble_code, panic, cfg)
    edge = np.where(
        rule.side == 1, p_long - base_long, np.where(rule.side == -1, p_short - base_short, np.nan)
    )
    out = pd.DataFrame(
        {
            "action": np.array(["HOLD", "BUY", "SELL"], dtype=object)[rule.side % 3],
            "direction": np.array(["FLAT", "LONG", "SHORT"], dtype=object)[rule.side % 3],
            "edge": edge,
            "veto": np.array(["", "opposite_vote", "panic_long"], dtype=object)[rule.veto],
        },
        index=frame.index,
    )
    if "ensemble_confidence" in frame:
        out["confidence"] = _confidence(
            rule.side, edge, ensemble_code, frame["ensemble_confidence"].to_numpy(float), cfg
        )
    return out


def _confidence(
    side: np.ndarray,
    edge: np.ndarray,
    ensemble_code: np.ndarray,
    ensemble_confidence: np.ndarray,
    cfg: SignalConfig,
) -> np.ndarray:
    model = np.clip(np.nan_to_num(edge / cfg.full_edge, nan=0.0), 0.0, 1.0)
    rules = np.where(ensemble_code == side, np.clip(ensemble_confidence, 0.0, 1.0), 0.0)
    blended = cfg.model_weight * model + (1.0 - cfg.model_weight) * rules
    return np.where(side != 0, blended, 0.0)


def confidence(
    action: Action,
    edge: float,
    ensemble_action: Action,
    ensemble_confidence: float,
    cfg: SignalConfig | None = None,
) -> float:
    """Return the signal's confidence in [0, 1] (the blend of the module docstring).

    ``edge`` is the taken direction's probability minus its base rate; a HOLD gets 0.
    """
    cfg = cfg or SignalConfig()
    side = {Action.BUY: 1, Action.SELL: -1, Action.HOLD: 0}[Action(action)]
    ens = {Action.BUY: 1, Action.SELL: -1, Action.HOLD: 0}[Action(ensemble_action)]
    value = _confidence(
        np.array([side]), np.array([edge], float), np.array([ens]),
        np.array([ensemble_confidence], float), cfg,
    )
    return float(value[0])


def to_tick(price: Decimal, rounding: str = ROUND_HALF_UP, tick: Decimal = TICK) -> Decimal:
    """Return ``price`` on the ``tick`` grid (``rounding``: a :mod:`decimal` rounding mode)."""
    return (price / tick).to_integral_value(rounding=rounding) * tick


def levels(
    entry: Decimal,
    atr: float,
    direction: Direction,
    spec: BarrierSpec | None = None,
    tick: Decimal = TICK,
) -> tuple[Decimal, tuple[Decimal, Decimal, Decimal]]:
    """Return the stop-loss and three targets for a trade entered at ``entry``.

    ``stop = entry ∓ m·ATR``, ``target_i = entry ± k·ATR·multiple_i`` (LONG: stop below, targets
    above; SHORT the mirror image), on the ``tick`` grid: the stop rounded away from the entry
    and the targets toward it, so risk is never understated; target 1 stays at least one tick
    beyond the entry. Raises :class:`~core.errors.ValidationError` for a FLAT direction, an
    ATR that is not a positive number, or levels at or below zero.
    """
    spec = spec or BarrierSpec()
    direction = Direction(direction)
    if direction is Direction.FLAT:
        raise ValidationError("stop and targets need a LONG or SHORT direction; got FLAT")
    if not (math.isfinite(float(atr)) and atr > 0):
        raise ValidationError(f"stop and targets need a positive ATR; got {atr}")
    if entry <= 0:
        raise ValidationError(f"entry price must be positive; got {entry}")
    sign = 1 if direction is Direction.LONG else -1
    # LONG: the stop below rounds down (away), the targets above round down (toward); SHORT:
    # the stop above rounds up (away), the targets below round up (toward). One mode each way.
    mode = ROUND_FLOOR if sign == 1 else ROUND_CEILING
    stop = to_tick(entry - sign * Decimal(repr(float(spec.m_stop * atr))), mode, tick)
    targets: list[Decimal] = []
    for multiple in spec.target_multiples:
        distance = Decimal(repr(float(spec.k_target * atr * multiple)))
        target = to_tick(entry + sign * distance, mode, tick)
        floor = targets[-1] if targets else entry + sign * tick
        targets.append(max(target, floor) if sign == 1 else min(target, floor))
    if stop <= 0 or targets[-1] <= 0:
        raise ValidationError(
            f"levels for {direction.value} at {entry} with ATR {atr:.4g} fall at or below zero "
            f"(stop {stop}, targets {[str(t) for t in targets]}); the ATR is too large"
        )
    return stop, (targets[0], targets[1], targets[2])


def risk_reward(entry: Decimal, stop: Decimal, target1: Decimal) -> float:
    """Return ``(target1 - entry) / (entry - stop)`` (the same for a SHORT: both negative)."""
    return float((target1 - entry) / (entry - stop))


def build_signal(
    symbol: str,
    bars: pd.DataFrame,
    prediction: Prediction,
    spec: BarrierSpec | None = None,
    ensemble_cfg: EnsembleConfig | None = None,
    regime_cfg: RegimeConfig | None = None,
    cfg: SignalConfig | None = None,
    trace_id: str | None = None,
) -> Signal:
    """Return the signal for ``symbol`` as of the close of the last bar in ``bars``.

    Parameters
    ----------
    symbol
        The symbol, for messages and the signal.
    bars
        Daily bars up to and including the signal's bar (tz-aware index, oldest first, float
        ``open, high, low, close, volume``); at least
        :data:`engines.features.MIN_BARS` of them.
    prediction
        The model's calibrated probabilities and contributions on the last bar.
    spec, ensemble_cfg, regime_cfg, cfg
        Barrier geometry, strategy, regime and rule settings (defaults when omitted).
    trace_id
        An id to follow the signal through logs; a fresh uuid4 hex when omitted.

    Returns
    -------
    Signal
        Action and direction by :func:`decide`; entry at the last close on the tick; stop and
        targets by :func:`levels` (for a HOLD, those of the direction with the larger edge, for
        reference); probability of the taken direction (for a HOLD, of that direction);
        :func:`confidence`; evidence: each strategy vote, the model's probability against its
        base rate, the regime with its reason, the top model contributions, and the rule that
        made a HOLD. Raises :class:`~core.errors.ValidationError` for malformed bars or too
        little history (naming the bars needed).
    """
    spec, cfg = spec or BarrierSpec(), cfg or SignalConfig()
    check_bars(bars)
    check_history(bars, symbol)
    vote = ensemble(bars, ensemble_cfg)
    regime, regime_reason = explain(bars, regime_cfg)
    atr = float(average_true_range(bars, spec.atr_period).iloc[-1])
    if not math.isfinite(atr) or atr <= 0:
        raise ValidationError(
            f"{symbol}: ATR({spec.atr_period}) on the last bar is {atr}; stop and targets need "
            "a positive ATR (are the bars' high and low set?)"
        )
    p = prediction
    probabilities = (p.p_long, p.p_short, p.base_rate_long, p.base_rate_short)
    side, candidate, veto = _one(probabilities, vote.action, regime, cfg)
    action, direction = _ACTION_OF[side], _DIRECTION_OF[side]
    edge_long, edge_short = p.p_long - p.base_rate_long, p.p_short - p.base_rate_short
    leaning = side or candidate or (1 if not edge_short > edge_long else -1)
    shown = _DIRECTION_OF[leaning]
    entry = to_tick(Decimal(repr(float(bars["close"].iloc[-1]))))
    stop, targets = levels(entry, atr, shown, spec)
    edge = edge_long if side == 1 else edge_short if side == -1 else math.nan
    # A HOLD shows the levels, the evidence and so the probability of the direction it leans to.
    probability = p.p_long if leaning == 1 else p.p_short
    as_of = pd.Timestamp(bars.index[-1]).to_pydatetime()
    evidence = (
        *_vote_evidence(vote),
        _model_evidence(p, shown),
        Evidence("regime", regime.value, regime_reason),
        *_contribution_evidence(p, shown, cfg.top_contributions),
        *_rule_evidence(side, candidate, veto, edge_long, edge_short, vote, regime, cfg),
    )
    return Signal(
        symbol=symbol,
        as_of=as_of,
        action=action,
        direction=direction,
        probability=float(probability),
        confidence=confidence(action, edge, vote.action, vote.confidence, cfg),
        entry=entry,
        stop_loss=stop,
        targets=targets,
        risk_reward=risk_reward(entry, stop, targets[0]),
        regime=regime,
        agreement=vote.agreement,
        voters=vote.voters,
        evidence=evidence,
        model_version=p.model_version,
        trace_id=trace_id or uuid.uuid4().hex,
        horizon_bars=spec.horizon_bars,
    )


def _vote_evidence(vote: EnsembleVote) -> tuple[Evidence, ...]:
    return tuple(
        Evidence(
            "strategy",
            v.strategy,
            f"{v.action.value} (confidence {v.confidence:.2f}, weight {v.weight:.2f}): {v.reason}",
            v.confidence,
        )
        for v in vote.votes
    )


def _model_evidence(p: Prediction, direction: Direction) -> Evidence:
    if direction is Direction.LONG:
        prob, base = p.p_long, p.base_rate_long
    else:
        prob, base = p.p_short, p.base_rate_short
    return Evidence(
        "model",
        f"P({direction.value.lower()})",
        f"model {p.model_version}: P({direction.value} reaches target 1 before the stop) "
        f"{_edge_words(prob, base)}",
        float(prob),
    )


def _edge_words(prob: float, base: float) -> str:
    """Return ``0.322 against the expected hit rate now of 0.295 (edge +0.027)``.

    The edge has 3 decimals, as the action rule's evidence gives it; the probability and the
    rate have 3 decimals, or 4 where 3 would not visibly subtract to the edge shown.
    """
    edge = f"{prob - base:+.3f}"
    places = 3
    if f"{round(prob, places) - round(base, places):+.3f}" != edge:
        places = 4
    return (f"{prob:.{places}f} against the expected hit rate now of {base:.{places}f} "
            f"(edge {edge})")


def _contribution_evidence(p: Prediction, direction: Direction, top: int) -> list[Evidence]:
    pushes: tuple[Contribution, ...] = (
        p.contributions_long if direction is Direction.LONG else p.contributions_short
    )
    ranked = sorted(pushes, key=lambda c: abs(c.push), reverse=True)[:top]
    return [
        Evidence(
            "model",
            c.feature,
            f"{c.feature} = {c.value:.4g} pushed the probability "
            f"{'up' if c.push > 0 else 'down'} ({c.push:+.3f} log-odds)",
            float(c.push),
        )
        for c in ranked
    ]


def _rule_evidence(
    side: int,
    candidate: int,
    veto: int,
    edge_long: float,
    edge_short: float,
    vote: EnsembleVote,
    regime: Regime,
    cfg: SignalConfig,
) -> list[Evidence]:
    if side != 0:
        return []
    if veto == _NO_VETO:
        return [
            Evidence(
                "rule",
                "edge",
                f"HOLD: no direction beats its expected hit rate by {cfg.min_edge:.2f} and the "
                f"other direction (edge LONG {edge_long:+.3f}, SHORT {edge_short:+.3f})",
            )
        ]
    name = _DIRECTION_OF[candidate].value
    edge = edge_long if candidate == 1 else edge_short
    favoured = f"the model favoured {name} (edge {edge:+.3f} >= {cfg.min_edge:.2f})"
    if veto == _OPPOSITE_VOTE:
        detail = (
            f"HOLD: {favoured} but the strategy ensemble voted {vote.action.value} "
            f"({vote.agreement}/{vote.voters} agree): an opposite vote vetoes the trade"
        )
        return [Evidence("rule", "opposite_vote", detail)]
    detail = f"HOLD: {favoured} but the regime is {regime.value}: no new LONG in a panic"
    return [Evidence("rule", "panic_long", detail)]
