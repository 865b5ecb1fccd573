"""Signal assembly: the action rule (scalar and vectorised), confidence, levels, build_signal."""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from core.errors import ValidationError
from engines.features import MIN_BARS
from engines.features import atr as average_true_range
from engines.regime import classify, explain
from engines.signal_types import (
    Action,
    BarrierSpec,
    Contribution,
    Direction,
    Prediction,
    Regime,
)
from engines.signals import (
    SignalConfig,
    build_signal,
    confidence,
    decide,
    decide_frame,
    levels,
    risk_reward,
)
from engines.strategies import ensemble, ensemble_frame
from tests.test_strategies import sample_bars

BUY, SELL, HOLD = Action.BUY, Action.SELL, Action.HOLD
LONG, SHORT, FLAT = Direction.LONG, Direction.SHORT, Direction.FLAT
CALM, PANIC = Regime.TRENDING, Regime.PANIC
BASE_LONG, BASE_SHORT = 0.28, 0.26


@pytest.mark.parametrize(
    ("p_long", "p_short", "vote", "regime", "expected"),
    [
        (0.32, 0.26, HOLD, CALM, (BUY, LONG)),  # long edge 0.04 >= 0.03
        (0.31, 0.26, HOLD, CALM, (BUY, LONG)),  # exactly the minimum edge acts
        (0.30, 0.26, HOLD, CALM, (HOLD, FLAT)),  # edge 0.02 is too small
        (0.28, 0.31, HOLD, CALM, (SELL, SHORT)),  # short edge 0.05
        (0.33, 0.32, HOLD, CALM, (SELL, SHORT)),  # both act; the short edge 0.06 is larger
        (0.32, 0.30, HOLD, CALM, (HOLD, FLAT)),  # equal edges: neither beats the other
        (0.32, 0.26, BUY, CALM, (BUY, LONG)),  # the ensemble agrees
        (0.32, 0.26, SELL, CALM, (HOLD, FLAT)),  # an opposite vote vetoes a LONG
        (0.28, 0.31, BUY, CALM, (HOLD, FLAT)),  # ... and a SHORT
        (0.32, 0.26, HOLD, PANIC, (HOLD, FLAT)),  # no new LONG in a panic
        (0.28, 0.31, HOLD, PANIC, (SELL, SHORT)),  # a SHORT in a panic is allowed
        (math.nan, 0.26, HOLD, CALM, (HOLD, FLAT)),  # no probability, no edge
    ],
)
def test_the_action_rule_acts_on_edge_and_honours_the_vetoes(
    p_long: float, p_short: float, vote: Action, regime: Regime, expected: tuple
) -> None:
    assert decide(p_long, p_short, BASE_LONG, BASE_SHORT, vote, regime) == expected


def test_vetoes_and_the_minimum_edge_are_configurable() -> None:
    lenient = SignalConfig(opposite_vote_vetoes=False, panic_vetoes_long=False)
    assert decide(0.32, 0.26, BASE_LONG, BASE_SHORT, SELL, PANIC, lenient) == (BUY, LONG)
    strict = SignalConfig(min_edge=0.05)
    assert decide(0.32, 0.26, BASE_LONG, BASE_SHORT, HOLD, CALM, strict) == (HOLD, FLAT)
    assert decide(0.33, 0.26, BASE_LONG, BASE_SHORT, HOLD, CALM, strict) == (BUY, LONG)


@pytest.mark.parametrize(
    "cfg",
    [SignalConfig(), SignalConfig(min_edge=0.0, panic_vetoes_long=False)],
    ids=["default", "lenient"],
)
def test_decide_frame_is_the_same_rule_as_decide_over_a_grid(cfg: SignalConfig) -> None:
    probabilities = [0.20, 0.25, 0.28, 0.30, 0.31, 0.34, 0.40, math.nan]
    rows = list(itertools.product(probabilities, probabilities, list(Action), list(Regime)))
    frame = pd.DataFrame(rows, columns=["p_long", "p_short", "ensemble_action", "regime"])
    frame["ensemble_action"] = frame["ensemble_action"].map(str)
    frame["regime"] = frame["regime"].map(str)
    frame["ensemble_confidence"] = np.linspace(0, 1, len(frame))
    out = decide_frame(frame, BASE_LONG, BASE_SHORT, cfg)
    seen = set()
    for (p_long, p_short, vote, regime), row, ens_conf in zip(
        rows, out.itertuples(), frame["ensemble_confidence"], strict=True
    ):
        action, direction = decide(p_long, p_short, BASE_LONG, BASE_SHORT, vote, regime, cfg)
        assert (row.action, row.direction) == (action.value, direction.value)
        edge = p_long - BASE_LONG if direction is LONG else p_short - BASE_SHORT
        assert row.confidence == confidence(action, edge, vote, ens_conf, cfg)
        seen.add((action, row.veto))
    assert (HOLD, "opposite_vote") in seen and (BUY, "") in seen and (SELL, "") in seen


def test_decide_frame_names_missing_columns() -> None:
    with pytest.raises(ValidationError, match=r"missing \['regime'\]"):
        decide_frame(pd.DataFrame({"p_long": [0.3], "p_short": [0.3], "ensemble_action": ["BUY"]}),
                     BASE_LONG, BASE_SHORT)


@pytest.mark.parametrize(
    ("action", "edge", "vote", "vote_confidence", "expected"),
    [
        (BUY, 0.075, BUY, 0.4, 0.5 * 0.5 + 0.5 * 0.4),  # half the full edge, ensemble agrees
        (BUY, 0.075, HOLD, 0.9, 0.5 * 0.5),  # an abstaining ensemble adds nothing
        (SELL, 0.30, SELL, 1.0, 1.0),  # edge beyond full_edge is capped at 1
        (SELL, 0.04, SELL, 0.0, 0.5 * 0.04 / 0.15),
        (HOLD, math.nan, HOLD, 1.0, 0.0),  # no trade, no confidence
    ],
)
def test_confidence_blends_the_model_edge_and_the_ensemble(
    action: Action, edge: float, vote: Action, vote_confidence: float, expected: float
) -> None:
    value = confidence(action, edge, vote, vote_confidence)
    assert value == pytest.approx(expected)
    assert 0.0 <= value <= 1.0


@pytest.mark.parametrize(
    ("direction", "stop", "targets", "rr"),
    [
        # ATR 1.23: stop 1.23 away, targets 2.46 / 3.69 / 4.92 away, rounded to 0.05.
        (LONG, "98.75", ("102.45", "103.65", "104.90"), 2.45 / 1.25),
        (SHORT, "101.25", ("97.55", "96.35", "95.10"), 2.45 / 1.25),
    ],
)
def test_levels_round_the_stop_away_and_the_targets_toward_the_entry(
    direction: Direction, stop: str, targets: tuple[str, str, str], rr: float
) -> None:
    got_stop, got_targets = levels(Decimal("100.00"), 1.23, direction, BarrierSpec())
    assert got_stop == Decimal(stop)
    assert got_targets == tuple(Decimal(t) for t in targets)
    assert risk_reward(Decimal("100.00"), got_stop, got_targets[0]) == pytest.approx(rr)


def test_levels_never_understate_risk_nor_overstate_reward() -> None:
    rng = random.Random(11)  # noqa: S311 - a reproducible sample of prices, not a secret
    spec = BarrierSpec(k_target=1.5, m_stop=0.8)
    tick = Decimal("0.05")
    for _ in range(500):
        entry = Decimal(rng.randint(200, 400_000)) * tick
        atr = rng.uniform(0.3, 0.05 * float(entry))
        for direction, sign in ((LONG, 1), (SHORT, -1)):
            try:
                stop, targets = levels(entry, atr, direction, spec)
            except ValidationError:
                continue  # a SHORT target below zero
            assert all(p % tick == 0 for p in (stop, *targets))
            assert sign * (entry - stop) >= Decimal(repr(spec.m_stop * atr))
            for target, multiple in zip(targets, spec.target_multiples, strict=True):
                assert sign * (target - entry) <= Decimal(repr(spec.k_target * atr * multiple))
            assert risk_reward(entry, stop, targets[0]) <= spec.risk_reward


def test_a_tiny_atr_keeps_target_one_a_tick_beyond_the_entry() -> None:
    stop, targets = levels(Decimal("100.00"), np.float64(0.01), LONG)
    assert stop == Decimal("99.95")
    assert targets == (Decimal("100.05"), Decimal("100.05"), Decimal("100.05"))


@pytest.mark.parametrize(
    ("entry", "atr", "direction", "words"),
    [
        (Decimal("100"), 1.0, FLAT, "LONG or SHORT direction; got FLAT"),
        (Decimal("100"), math.nan, LONG, "positive ATR; got nan"),
        (Decimal("100"), 0.0, LONG, "positive ATR; got 0.0"),
        (Decimal("0"), 1.0, LONG, "entry price must be positive"),
        (Decimal("10"), 3.0, SHORT, "at or below zero"),
    ],
)
def test_impossible_levels_are_refused_with_the_values(
    entry: Decimal, atr: float, direction: Direction, words: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(words)):
        levels(entry, atr, direction)


def _prediction(p_long: float, p_short: float) -> Prediction:
    pushes = (
        Contribution("roc_20", -0.08, 0.12),
        Contribution("rsi_14", 41.5, -0.30),
        Contribution("adx_14", 22.0, 0.05),
        Contribution("atr_pct", 0.02, 0.01),
        Contribution("bb_pos", 0.4, -0.02),
        Contribution("gap_atr", 0.1, 0.002),
    )
    return Prediction(
        p_long=p_long,
        p_short=p_short,
        base_rate_long=BASE_LONG,
        base_rate_short=BASE_SHORT,
        model_version="test-1",
        contributions_long=pushes,
        contributions_short=pushes[::-1],
    )


def _cut(symbol: str, vote: Action, regime: Regime | None = None) -> pd.DataFrame:
    """Return the sample bars of ``symbol`` up to its last bar with this vote (and regime)."""
    bars = sample_bars(symbol)
    frame = ensemble_frame(bars).assign(regime=classify(bars)).iloc[MIN_BARS:]
    hits = frame[(frame["action"] == vote.value) & (
        frame["regime"] != PANIC.value if regime is None else frame["regime"] == regime.value
    )]
    return bars.loc[: hits.index[-1]]


def test_a_long_edge_the_ensemble_backs_gives_a_buy_with_every_field() -> None:
    bars = _cut("ADANIENT", BUY)
    signal = build_signal("ADANIENT", bars, _prediction(0.36, 0.25), trace_id="t-1")
    vote = ensemble(bars)
    assert (signal.action, signal.direction) == (BUY, LONG)
    assert signal.symbol == "ADANIENT" and signal.as_of == bars.index[-1].to_pydatetime()
    assert signal.as_of.tzinfo is not None
    assert signal.entry % Decimal("0.05") == 0
    assert abs(float(signal.entry) - bars["close"].iloc[-1]) <= 0.025
    atr = float(average_true_range(bars).iloc[-1])
    assert (signal.stop_loss, signal.targets) == levels(signal.entry, atr, LONG)
    assert signal.risk_reward == risk_reward(signal.entry, signal.stop_loss, signal.targets[0])
    assert signal.probability == 0.36
    assert signal.confidence == pytest.approx(0.5 * 0.08 / 0.15 + 0.5 * vote.confidence)
    assert (signal.agreement, signal.voters) == (vote.agreement, 3)
    assert signal.regime is explain(bars)[0]
    assert signal.model_version == "test-1" and signal.trace_id == "t-1"
    assert signal.horizon_bars == 10 and "Not investment advice" in signal.disclaimer
    sources = [e.source for e in signal.evidence]
    assert sources == ["strategy"] * 3 + ["model", "regime"] + ["model"] * 5
    pushes = [e.value for e in signal.evidence[5:]]
    assert pushes == [-0.30, 0.12, 0.05, -0.02, 0.01]  # largest |push| first, top 5
    assert signal.evidence[6].detail.startswith("roc_20 = -0.08 pushed the probability up")
    assert ("0.360 against the expected hit rate now of 0.280 (edge +0.080)"
            in signal.evidence[3].detail)


def test_a_hold_s_probability_is_that_of_the_direction_whose_levels_and_evidence_it_shows(
        ) -> None:
    bars = _cut("RELIANCE", HOLD)
    # LONG has the higher probability (0.275) but the lower edge (-0.005 against 0.0 short).
    signal = build_signal("RELIANCE", bars, _prediction(0.275, 0.26))
    assert (signal.action, signal.direction) == (HOLD, FLAT)
    assert signal.targets[0] < signal.entry < signal.stop_loss  # the SHORT levels
    model = next(e for e in signal.evidence if e.source == "model")
    assert (model.name, model.value, signal.probability) == ("P(short)", 0.26, 0.26)
    leaning_long = build_signal("RELIANCE", bars, _prediction(0.30, 0.24))
    assert leaning_long.probability == 0.30 and leaning_long.stop_loss < leaning_long.entry


def test_an_opposite_ensemble_vote_holds_and_says_why() -> None:
    bars = _cut("RELIANCE", SELL)
    signal = build_signal("RELIANCE", bars, _prediction(0.36, 0.25))
    assert (signal.action, signal.direction, signal.confidence) == (HOLD, FLAT, 0.0)
    assert signal.probability == 0.36  # a HOLD's: that of the direction it leans to
    assert signal.stop_loss < signal.entry < signal.targets[0]  # the LONG levels, for reference
    rule = signal.evidence[-1]
    assert (rule.source, rule.name) == ("rule", "opposite_vote")
    assert "favoured LONG" in rule.detail and "voted SELL" in rule.detail
    assert re.fullmatch(r"[0-9a-f]{32}", signal.trace_id)


def test_the_same_bars_give_a_sell_when_the_short_edge_leads() -> None:
    bars = _cut("RELIANCE", SELL)
    signal = build_signal("RELIANCE", bars, _prediction(0.27, 0.33))
    assert (signal.action, signal.direction, signal.probability) == (SELL, SHORT, 0.33)
    assert signal.targets[2] < signal.targets[1] < signal.targets[0] < signal.entry
    assert signal.entry < signal.stop_loss
    assert not [e for e in signal.evidence if e.source == "rule"]


def test_a_panic_regime_vetoes_a_long() -> None:
    bars = _cut("ADANIENT", HOLD, regime=PANIC)
    signal = build_signal("ADANIENT", bars, _prediction(0.40, 0.25))
    assert signal.regime is PANIC and signal.action is HOLD
    assert signal.evidence[-1].name == "panic_long"
    assert "no new LONG in a panic" in signal.evidence[-1].detail


def test_too_small_an_edge_holds_with_the_edges_in_the_evidence() -> None:
    signal = build_signal("ADANIENT", sample_bars("ADANIENT"), _prediction(0.29, 0.27))
    assert signal.action is HOLD
    assert signal.evidence[-1].detail == (
        "HOLD: no direction beats its expected hit rate by 0.03 and the other direction "
        "(edge LONG +0.010, SHORT +0.010)"
    )


@pytest.mark.parametrize(("p_long", "base_long", "words"), [
    # the QA pass: the model line said 0.32 against 0.29 (edge +0.03), the rule line +0.026
    (0.322, 0.296, "0.322 against the expected hit rate now of 0.296 (edge +0.026)"),
    # 3 decimals would read 0.321 - 0.295 = 0.026 beside an edge of +0.027: 4 are shown
    (0.3214, 0.2946, "0.3214 against the expected hit rate now of 0.2946 (edge +0.027)"),
])
def test_a_hold_s_model_evidence_gives_the_edge_the_rule_line_gives(
        p_long: float, base_long: float, words: str) -> None:
    prediction = replace(_prediction(p_long, 0.27), base_rate_long=base_long)
    signal = build_signal("ADANIENT", sample_bars("ADANIENT"), prediction)
    assert signal.action is HOLD
    model = next(e for e in signal.evidence if e.name == "P(long)")
    assert model.detail.endswith(words)
    edge = re.search(r"\(edge ([+-]0\.\d{3})\)$", model.detail)
    assert edge is not None
    assert f"(edge LONG {edge.group(1)}, SHORT +0.010)" in signal.evidence[-1].detail


def test_too_little_history_names_the_bars_needed() -> None:
    bars = sample_bars("TCS").iloc[:100]
    needed = f"TCS has 100 daily bars; a signal needs at least {MIN_BARS}"
    with pytest.raises(ValidationError, match=needed):
        build_signal("TCS", bars, _prediction(0.4, 0.2))


@pytest.mark.parametrize(
    ("mangle", "words"),
    [
        (lambda b: b.iloc[:0], "empty"),
        (lambda b: b.tz_localize(None), "tz-aware"),
        (lambda b: b.drop(columns="high"), "lack columns ['high']"),
    ],
    ids=["empty", "naive-index", "no-high"],
)
def test_malformed_bars_are_refused_with_the_rule(
    mangle: Callable[[pd.DataFrame], pd.DataFrame], words: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(words)):
        build_signal("TCS", mangle(sample_bars("TCS")), _prediction(0.4, 0.2))
