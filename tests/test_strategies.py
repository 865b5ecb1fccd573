"""Strategy ensemble: each strategy on crafted series, the weighted vote, config and speed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import ValidationError
from engines.bars import IST
from engines.signal_types import Action
from engines.strategies import (
    MOMENTUM,
    RSI,
    VWAP,
    EnsembleConfig,
    ensemble,
    ensemble_frame,
)

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "nse_daily"


def sample_bars(symbol: str) -> pd.DataFrame:
    """Return the sample daily bars of ``symbol`` as an engine bar frame."""
    frame = pd.read_csv(SAMPLE / f"{symbol}.csv")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp")), name="ts")
    return frame[["open", "high", "low", "close", "volume"]].astype(float)


def make_bars(
    closes: np.ndarray | list[float],
    spread: float = 0.004,
    volume: np.ndarray | list[float] | None = None,
) -> pd.DataFrame:
    """Return daily bars around ``closes``: open at the previous close, a range of ``spread``."""
    close = np.asarray(closes, dtype=float)
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1 + spread)
    low = np.minimum(open_, close) * (1 - spread)
    vol = np.full(len(close), 1e6) if volume is None else np.asarray(volume, dtype=float)
    index = pd.date_range("2022-01-03", periods=len(close), freq="B", tz=IST, name="ts")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": vol}, index=index
    )


def _vote(bars: pd.DataFrame, strategy: str) -> tuple[Action, float, str]:
    vote = next(v for v in ensemble(bars).votes if v.strategy == strategy)
    return vote.action, vote.confidence, vote.reason


def _flat(n: int, level: float = 100.0) -> np.ndarray:
    """Return ``n`` closes zig-zagging 0.2% around ``level`` (no trend, no momentum)."""
    return level * (1 + 0.002 * np.where(np.arange(n) % 2 == 0, 1.0, -1.0))


def test_default_weights_are_vwap_35_rsi_30_momentum_35() -> None:
    cfg = EnsembleConfig()
    assert (cfg.weight(VWAP), cfg.weight(RSI), cfg.weight(MOMENTUM)) == (0.35, 0.30, 0.35)
    assert cfg.voters == (VWAP, RSI, MOMENTUM)


def test_configs_with_equal_weights_are_equal_and_hash_alike() -> None:
    custom = EnsembleConfig(weights={MOMENTUM: 0.5, VWAP: 0.5})
    same = EnsembleConfig(weights={VWAP: 0.5, MOMENTUM: 0.5})
    assert custom == same and hash(custom) == hash(same)
    assert len({EnsembleConfig(), EnsembleConfig(), custom}) == 2


@pytest.mark.parametrize(
    ("weights", "words"),
    [
        ({VWAP: 0.5, "MACD": 0.5}, ["unknown strategies ['MACD']", "known"]),
        ({VWAP: 1.2, RSI: -0.2}, ["non-negative", "'RSI': -0.2"]),
        ({VWAP: 0.5, RSI: 0.3, MOMENTUM: 0.3}, ["sum to 1", "sum 1.1"]),
    ],
)
def test_bad_weights_are_refused_with_the_rule_and_the_values(
    weights: dict[str, float], words: list[str]
) -> None:
    with pytest.raises(ValidationError) as caught:
        EnsembleConfig(weights=weights)
    for word in words:
        assert word in str(caught.value)


def test_a_falling_series_makes_rsi_vote_buy_as_oversold() -> None:
    bars = make_bars(np.r_[_flat(60), 100 * 0.985 ** np.arange(1, 16)])
    action, confidence, reason = _vote(bars, RSI)
    assert action is Action.BUY
    assert 0.5 <= confidence <= 1.0
    assert reason.startswith("RSI ") and "< 30: oversold" in reason
    assert float(reason.split()[1]) < 30


def test_a_rising_series_makes_rsi_vote_sell_as_overbought() -> None:
    bars = make_bars(np.r_[_flat(60), 100 * 1.015 ** np.arange(1, 16)])
    action, _, reason = _vote(bars, RSI)
    assert action is Action.SELL
    assert "> 70: overbought" in reason


def test_a_lower_low_on_a_stronger_rsi_is_a_bullish_divergence() -> None:
    # A fast fall (RSI very low), a bounce, then a slow drift to a slightly lower close.
    fall = 100 - 3.0 * np.arange(1, 9)  # to 76
    bounce = 76 + 0.5 * np.arange(1, 9)  # to 80
    drift = 80 + np.cumsum(np.tile([1.0, -1.7], 6))  # to 75.8, below 76, up-ticks on the way
    bars = make_bars(np.r_[_flat(60), fall, bounce, drift])
    action, confidence, reason = _vote(bars, RSI)
    assert action is Action.BUY, reason
    assert "bullish divergence" in reason
    assert 0.25 <= confidence <= 1.0


def test_a_close_far_below_the_vwap_band_makes_vwap_vote_buy() -> None:
    bars = make_bars(np.r_[_flat(40), 94.0])
    action, confidence, reason = _vote(bars, VWAP)
    assert action is Action.BUY
    assert confidence == 1.0  # far beyond 1.5 band widths
    assert "below the 20-bar VWAP" in reason and "stretched below value" in reason


def test_a_close_inside_the_bands_makes_vwap_hold_without_confidence() -> None:
    closes = 100 + 2 * np.sin(2 * np.pi * np.arange(40) / 10)
    action, confidence, reason = _vote(make_bars(closes), VWAP)
    assert (action, confidence) == (Action.HOLD, 0.0)
    assert "inside the bands" in reason


def test_a_turn_up_on_heavy_volume_makes_momentum_vote_buy_with_every_bonus() -> None:
    decline = 100 * np.exp(-0.0004 * np.arange(40) ** 1.6)  # accelerating: MACD below signal
    closes = np.r_[_flat(40), decline, decline[-1] * 1.03 ** np.arange(1, 4)]
    volume = np.r_[np.full(len(closes) - 1, 1e6), 3e6]
    bars = make_bars(closes, volume=volume)
    action, confidence, reason = _vote(bars, MOMENTUM)
    assert action is Action.BUY
    assert "MACD crossed up" in reason and "volume 3.0×" in reason and "confirms" in reason
    assert confidence == pytest.approx(1.0)


def test_a_steady_decline_on_normal_volume_makes_momentum_vote_sell() -> None:
    bars = make_bars(np.r_[_flat(40), 100 * np.exp(-0.0004 * np.arange(40) ** 1.6)])
    action, confidence, reason = _vote(bars, MOMENTUM)
    assert action is Action.SELL
    assert confidence == pytest.approx(0.6)  # base 0.4 + full size (ROC beyond -5%)
    assert "does not confirm" in reason and "momentum down" in reason


def test_a_short_history_holds_and_says_how_many_bars_are_needed() -> None:
    vote = ensemble(make_bars(_flat(10)))
    assert vote.action is Action.HOLD
    assert [v.action for v in vote.votes] == [Action.HOLD] * 3
    assert all("warming up" in v.reason and "has 10" in v.reason for v in vote.votes)


def test_one_strategy_with_all_the_weight_decides_the_vote() -> None:
    bars = make_bars(np.r_[_flat(60), 100 * 0.985 ** np.arange(1, 16)])
    vote = ensemble(bars, EnsembleConfig(weights={RSI: 1.0}))
    assert vote.voters == 1 and [v.strategy for v in vote.votes] == [RSI]
    assert vote.action is Action.BUY and vote.agreement == 1
    assert vote.confidence == pytest.approx(vote.votes[0].confidence)


def test_the_ensemble_action_and_confidence_follow_the_weighted_votes() -> None:
    bars = sample_bars("TCS")
    cfg = EnsembleConfig()
    seen = set()
    for end in range(60, len(bars), 7):
        vote = ensemble(bars.iloc[:end], cfg)
        net = sum(
            v.weight * v.confidence * {Action.BUY: 1, Action.SELL: -1, Action.HOLD: 0}[v.action]
            for v in vote.votes
        )
        expected = Action.BUY if net >= 0.2 else Action.SELL if net <= -0.2 else Action.HOLD
        assert vote.action is expected
        held = vote.action is Action.HOLD
        assert vote.confidence == pytest.approx(1 - abs(net) if held else abs(net))
        assert vote.agreement == sum(v.action is vote.action for v in vote.votes)
        seen.add(vote.action)
    assert seen == {Action.BUY, Action.SELL, Action.HOLD}


def test_the_frame_agrees_with_the_last_bar_vote_on_every_bar_of_a_sample_file() -> None:
    bars = sample_bars("RELIANCE")
    frame = ensemble_frame(bars)
    for end in range(1, len(bars) + 1):
        vote = ensemble(bars.iloc[:end])
        row = frame.iloc[end - 1]
        assert (vote.action.value, vote.agreement, vote.voters) == (
            row["action"], row["agreement"], row["voters"]
        ), f"bar {end - 1}"
        assert vote.confidence == row["confidence"], f"bar {end - 1}"


def test_the_frame_on_a_five_year_file_takes_milliseconds() -> None:
    bars = sample_bars("INFY")
    ensemble_frame(bars)
    start = time.perf_counter()
    for _ in range(10):
        ensemble_frame(bars)
    per_call = (time.perf_counter() - start) / 10
    assert per_call < 0.02, f"{per_call * 1000:.1f} ms for {len(bars)} bars"


@pytest.mark.parametrize(
    ("bars", "words"),
    [
        (make_bars(_flat(5)).iloc[:0], "empty"),
        (make_bars(_flat(5)).tz_localize(None), "tz-aware"),
        (make_bars(_flat(5)).drop(columns="volume"), "lack columns ['volume']"),
    ],
    ids=["empty", "naive-index", "no-volume"],
)
def test_bad_bars_are_refused_with_the_rule(bars: pd.DataFrame, words: str) -> None:
    with pytest.raises(ValidationError, match=r"(?i)" + words.replace("[", r"\[")):
        ensemble(bars)
