"""Regime rules on crafted series (ramp, crash, sine, noise), precedence, warm-up, no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import ValidationError
from engines.regime import RegimeConfig, classify, explain
from engines.signal_types import Regime
from engines.strategies import ensemble, ensemble_frame
from tests.test_strategies import make_bars, sample_bars

N = 300
WARM = RegimeConfig().warmup_bars


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _ramp(seed: int) -> pd.DataFrame:
    """A steady climb: +0.4% a bar with 0.6% noise."""
    steps = 0.004 + 0.006 * _rng(seed).standard_normal(N)
    return make_bars(100 * np.exp(np.cumsum(steps)), spread=0.01)


def _crash(seed: int) -> pd.DataFrame:
    """A 1%-a-bar random walk, then four bars falling 5% each."""
    walk = 100 * np.exp(np.cumsum(0.01 * _rng(seed).standard_normal(N)))
    return make_bars(np.r_[walk, walk[-1] * 0.95 ** np.arange(1, 5)], spread=0.01)


def _sine(seed: int) -> pd.DataFrame:
    """Swings of ±8% around 100 every 20 bars, with a little noise."""
    noise = 0.3 * _rng(seed).standard_normal(N)
    return make_bars(100 + 8 * np.sin(2 * np.pi * np.arange(N) / 20) + noise, spread=0.01)


def _noise(seed: int) -> pd.DataFrame:
    """Low-amplitude noise: ±0.1 around a flat 100."""
    return make_bars(100 + 0.1 * _rng(seed).standard_normal(N), spread=0.01)


def _share(regimes: pd.Series, regime: Regime) -> float:
    return float((regimes.iloc[WARM:] == regime.value).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_steady_ramp_is_trending(seed: int) -> None:
    bars = _ramp(seed)
    assert _share(classify(bars), Regime.TRENDING) >= 0.95
    regime, reason = explain(bars)
    assert regime is Regime.TRENDING
    assert reason.startswith("TRENDING: ADX ") and "efficiency ratio" in reason


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_fast_crash_is_panic(seed: int) -> None:
    regime, reason = explain(_crash(seed))
    assert regime is Regime.PANIC
    assert "ATR below the 5-bar high" in reason and "panic at 4 ATR" in reason


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_sine_around_a_flat_mean_is_mean_reverting(seed: int) -> None:
    bars = _sine(seed)
    regimes = classify(bars)
    assert _share(regimes, Regime.MEAN_REVERTING) >= 0.95
    assert Regime.PANIC.value not in set(regimes)  # regular falls are not panics
    regime, reason = explain(bars)
    assert regime is Regime.MEAN_REVERTING
    assert "range spans" in reason


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_low_amplitude_noise_is_choppy(seed: int) -> None:
    bars = _noise(seed)
    assert set(classify(bars)) == {Regime.CHOPPY.value}
    regime, reason = explain(bars)
    assert regime is Regime.CHOPPY
    assert "neither a trend" in reason


def test_panic_takes_precedence_over_the_other_rules() -> None:
    bars = _crash(0)
    never_panic = RegimeConfig(panic_atr=1e9, spike_atr=1e9)
    assert classify(bars).iloc[-1] == Regime.PANIC.value
    assert classify(bars, never_panic).iloc[-1] != Regime.PANIC.value


def test_a_smaller_fall_in_a_volatility_spike_is_panic_by_the_spike_rule() -> None:
    spike_only = RegimeConfig(panic_atr=1e9)
    regime, reason = explain(_crash(0), spike_only)
    assert regime is Regime.PANIC
    assert "percentile of a year" in reason


def test_the_warm_up_is_choppy_and_says_how_many_bars_are_needed() -> None:
    bars = _ramp(0)
    regimes = classify(bars)
    assert set(regimes.iloc[: WARM - 1]) == {Regime.CHOPPY.value}
    regime, reason = explain(bars.iloc[:10])
    assert regime is Regime.CHOPPY
    assert f"need about {WARM} bars, have 10" in reason


def test_the_regime_on_a_bar_does_not_depend_on_later_bars() -> None:
    bars = sample_bars("ADANIENT")
    full = classify(bars)
    assert set(full) == {r.value for r in Regime}
    for end in range(WARM - 5, len(bars), 23):
        cut = bars.iloc[:end]
        pd.testing.assert_series_equal(classify(cut), full.iloc[:end])
        assert explain(cut)[0].value == full.iloc[end - 1]


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"er_window": 1}, "at least 2 bars"),
        ({"trend_er": 1.5}, "trend_er must be in (0, 1)"),
        ({"panic_atr": -1.0}, "must be positive"),
        ({"vol_min_bars": 300}, "between 2 and vol_window"),
    ],
)
def test_bad_thresholds_are_refused_with_the_rule_and_the_values(
    overrides: dict[str, float], words: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        RegimeConfig(**overrides)  # type: ignore[arg-type]
    assert words in str(caught.value)


def test_bad_bars_are_refused() -> None:
    with pytest.raises(ValidationError, match="empty"):
        classify(_ramp(0).iloc[:0])


def test_two_years_of_bars_give_the_same_regime_and_vote_as_the_whole_history() -> None:
    # The signal service computes on the last 2 x 252 bars; TA-Lib's seeding has decayed
    # long before that, so the rules see what the full-history frames used in evaluation see.
    bars = sample_bars("SBIN")
    regimes, votes = classify(bars), ensemble_frame(bars)
    for end in range(700, len(bars) + 1, 30):
        window = bars.iloc[end - 504 : end]
        assert explain(window)[0].value == regimes.iloc[end - 1]
        assert ensemble(window).action.value == votes["action"].iloc[end - 1]
