"""Model features: no look-ahead, TA-Lib values against the ``ta`` reference, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ta

from core.errors import ValidationError
from engines.bars import IST
from engines.features import FEATURES, MIN_BARS, atr, check_history, compute_features

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "nse_daily"
OHLCV = ["open", "high", "low", "close", "volume"]
WARM = 400  # bars after which the TA-Lib seeds have decayed (see engines.indicators)


def sample_bars(symbol: str) -> pd.DataFrame:
    frame = pd.read_csv(SAMPLE / f"{symbol}.csv")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp"))).tz_convert(IST)
    return frame[OHLCV].astype(float)


@pytest.fixture(scope="module")
def reliance() -> pd.DataFrame:
    return sample_bars("RELIANCE")


@pytest.fixture(scope="module")
def features(reliance: pd.DataFrame) -> pd.DataFrame:
    return compute_features(reliance)


def test_features_have_one_row_per_bar_and_the_declared_columns(
    reliance: pd.DataFrame, features: pd.DataFrame
) -> None:
    assert list(features.columns) == list(FEATURES)
    assert features.index.equals(reliance.index)


def test_every_feature_is_defined_from_the_min_bars_th_bar_on(features: pd.DataFrame) -> None:
    assert features.iloc[MIN_BARS - 1:].notna().all().all()
    assert features.iloc[MIN_BARS - 2].isna().any()  # the 52-week features need all MIN_BARS


def test_no_feature_on_day_t_changes_when_later_bars_exist(
    reliance: pd.DataFrame, features: pd.DataFrame
) -> None:
    rng = np.random.default_rng(5)
    days = sorted(rng.choice(np.arange(30, len(reliance) - 1), size=40, replace=False))
    for t in [*days, MIN_BARS - 1, len(reliance) - 2]:
        truncated = compute_features(reliance.iloc[: t + 1]).iloc[-1]
        full = features.iloc[t]
        np.testing.assert_allclose(truncated.to_numpy(), full.to_numpy(), rtol=1e-12,
                                   atol=1e-12, equal_nan=True, err_msg=f"bar {t}")


def test_features_do_not_depend_on_the_price_scale(reliance: pd.DataFrame,
                                                   features: pd.DataFrame) -> None:
    scaled = reliance.copy()
    scaled[["open", "high", "low", "close"]] *= 37.0
    np.testing.assert_allclose(compute_features(scaled).iloc[WARM:].to_numpy(),
                               features.iloc[WARM:].to_numpy(), rtol=1e-6, atol=1e-9)


def _ta_reference(bars: pd.DataFrame) -> dict[str, pd.Series]:
    h, lo, c, v = bars["high"], bars["low"], bars["close"], bars["volume"]
    rng = ta.volatility.AverageTrueRange(h, lo, c, 14).average_true_range()
    adx = ta.trend.ADXIndicator(h, lo, c, 14)
    bands = ta.volatility.BollingerBands(c, 20, 2)
    vwap = ta.volume.VolumeWeightedAveragePrice(h, lo, c, v, 20).volume_weighted_average_price()
    ema20 = ta.trend.EMAIndicator(c, 20).ema_indicator()
    return {
        "rsi_14": ta.momentum.RSIIndicator(c, 14).rsi(),
        "macd_hist_atr": ta.trend.MACD(c, 26, 12, 9).macd_diff() / rng,
        "adx_14": adx.adx(),
        "di_diff": adx.adx_pos() - adx.adx_neg(),
        "atr_pct": rng / c,
        "bb_width": bands.bollinger_wband() / 100.0,
        "bb_pos": bands.bollinger_pband(),
        "vwap_dist_atr": (c - vwap) / rng,
        "roc_5": ta.momentum.ROCIndicator(c, 5).roc(),
        "roc_20": ta.momentum.ROCIndicator(c, 20).roc(),
        "roc_60": ta.momentum.ROCIndicator(c, 60).roc(),
        "ema20_dist": c / ema20 - 1.0,
        "ema20_50": ema20 / ta.trend.EMAIndicator(c, 50).ema_indicator() - 1.0,
        "sma200_dist": c / ta.trend.SMAIndicator(c, 200).sma_indicator() - 1.0,
    }


@pytest.mark.parametrize("symbol", ["RELIANCE", "TCS"])
def test_ta_lib_features_match_the_ta_package_after_warm_up(symbol: str) -> None:
    bars = sample_bars(symbol)
    ours = compute_features(bars)
    for name, expected in _ta_reference(bars).items():
        np.testing.assert_allclose(ours[name].iloc[WARM:].to_numpy(),
                                   expected.iloc[WARM:].to_numpy(), rtol=1e-6, atol=1e-8,
                                   err_msg=name)


def test_atr_matches_the_ta_package(reliance: pd.DataFrame) -> None:
    expected = ta.volatility.AverageTrueRange(
        reliance["high"], reliance["low"], reliance["close"], 14
    ).average_true_range()
    ours = atr(reliance)
    assert ours.iloc[:14].isna().all() and ours.iloc[14:].notna().all()
    # Both use Wilder's smoothing; only the seed differs (TA-Lib: mean of the first 14 ranges).
    np.testing.assert_allclose(ours.iloc[WARM:].to_numpy(), expected.iloc[WARM:].to_numpy(),
                               rtol=1e-9)


def test_hand_checked_gap_volume_and_close_location() -> None:
    index = pd.date_range("2024-01-01", periods=25, freq="D", tz=IST)
    bars = pd.DataFrame({"open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0,
                         "volume": 1000.0}, index=index)
    bars.loc[index[-1], ["open", "high", "low", "close", "volume"]] = [104.0, 106.0, 103.0, 105.5,
                                                                     5000.0]
    last = compute_features(bars).iloc[-1]
    prev_atr = 2.0  # every earlier bar's true range is 101 - 99
    assert last["gap_atr"] == pytest.approx((104.0 - 100.0) / prev_atr)
    assert last["close_loc"] == pytest.approx((105.5 - 103.0) / (106.0 - 103.0))
    # 20 earlier bars of equal volume: zero spread, so the z-score is undefined (NaN).
    assert np.isnan(last["volume_z"])


def test_too_little_history_says_how_many_bars_a_signal_needs(reliance: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match=rf"RELIANCE has 100 daily bars.*at least {MIN_BARS}"):
        check_history(reliance.iloc[:100], "RELIANCE")
    check_history(reliance.iloc[:MIN_BARS], "RELIANCE")


def test_bars_without_a_volume_column_are_refused(reliance: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match=r"lack columns \['volume'\]"):
        compute_features(reliance.drop(columns="volume"))


def test_bars_with_naive_timestamps_are_refused(reliance: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match="tz-aware"):
        compute_features(reliance.tz_localize(None))
