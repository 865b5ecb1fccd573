"""Triple-barrier labels on crafted bars: target first, stop first, both in one bar, expiry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engines.bars import IST
from engines.labels import resolved_at, triple_barrier
from engines.signal_types import BarrierSpec, Direction

SPEC = BarrierSpec(atr_period=14, k_target=2.0, m_stop=1.0, horizon_bars=5)
FLAT = 20  # flat bars (range 99-101, close 100): ATR is exactly 2 from bar 14 on


def crafted(later: list[tuple[float, float]]) -> pd.DataFrame:
    """Return FLAT quiet bars then bars with the given (high, low); closes sit mid-range.

    Entry on the last quiet bar (index FLAT - 1) is 100 with ATR 2: LONG target 104, stop 98.
    """
    highs = [101.0] * FLAT + [h for h, _ in later]
    lows = [99.0] * FLAT + [lo for _, lo in later]
    closes = [(h + lo) / 2 for h, lo in zip(highs, lows, strict=True)]
    index = pd.date_range("2024-01-01", periods=len(highs), freq="D", tz=IST)
    return pd.DataFrame({"open": closes, "high": highs, "low": lows, "close": closes,
                         "volume": 1000.0}, index=index)


def label_at_entry(later: list[tuple[float, float]], direction: Direction) -> float:
    return float(triple_barrier(crafted(later), SPEC, direction).iloc[FLAT - 1])


QUIET = (101.0, 99.0)


@pytest.mark.parametrize(
    ("later", "long", "short"),
    [
        pytest.param([QUIET, (104.0, 99.5), QUIET, QUIET, QUIET], 1.0, 0.0,
                     id="long target touched first (high == target counts)"),
        pytest.param([QUIET, (100.5, 98.0), (110.0, 100.0), QUIET, QUIET], 0.0, 0.0,
                     id="long stop first, target later: a miss"),
        pytest.param([QUIET, (104.5, 97.5), QUIET, QUIET, QUIET], 0.0, 0.0,
                     id="both barriers in one bar: the stop counts first"),
        pytest.param([QUIET, QUIET, QUIET, QUIET, QUIET], 0.0, 0.0,
                     id="neither within the horizon: expired is a miss"),
        pytest.param([QUIET, (101.0, 96.0), QUIET, QUIET, QUIET], 0.0, 1.0,
                     id="short target (entry - 2 ATR) touched first"),
        pytest.param([QUIET, QUIET, QUIET, QUIET, QUIET, (120.0, 99.0)], 0.0, 0.0,
                     id="a target after H bars does not count"),
    ],
)
def test_label_of_a_crafted_path(later: list[tuple[float, float]], long: float,
                                 short: float) -> None:
    assert label_at_entry(later, Direction.LONG) == long
    assert label_at_entry(later, Direction.SHORT) == short


def test_labels_are_nan_without_atr_or_without_h_later_bars() -> None:
    bars = crafted([QUIET] * 5)
    labels = triple_barrier(bars, SPEC, Direction.LONG)
    assert labels.iloc[:14].isna().all()  # ATR(14) needs 15 bars
    assert labels.iloc[-SPEC.horizon_bars:].isna().all()
    assert labels.iloc[14:-SPEC.horizon_bars].notna().all()


def test_short_labels_are_long_labels_of_the_mirrored_prices() -> None:
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 400)))
    high = close * (1 + rng.uniform(0, 0.02, 400))
    low = close * (1 - rng.uniform(0, 0.02, 400))
    index = pd.date_range("2022-01-03", periods=400, freq="B", tz=IST)
    bars = pd.DataFrame({"open": close, "high": high, "low": low, "close": close,
                         "volume": 1.0}, index=index)
    mirror = bars.assign(high=1000.0 - low, low=1000.0 - high, close=1000.0 - close,
                         open=1000.0 - close)
    spec = BarrierSpec()
    short = triple_barrier(bars, spec, Direction.SHORT)
    long_of_mirror = triple_barrier(mirror, spec, Direction.LONG)
    np.testing.assert_array_equal(short.to_numpy(), long_of_mirror.to_numpy())
    assert 0.1 < short.mean() < 0.5


def test_a_label_resolves_at_the_start_of_bar_t_plus_h() -> None:
    index = pd.date_range("2024-01-01", periods=8, freq="D", tz=IST)
    resolved = resolved_at(index, SPEC)
    assert list(resolved.iloc[:3]) == list(index[5:8])
    assert resolved.iloc[3:].isna().all()


def test_flat_direction_has_no_label() -> None:
    with pytest.raises(ValueError, match="LONG or SHORT"):
        triple_barrier(crafted([QUIET] * 5), SPEC, Direction.FLAT)
