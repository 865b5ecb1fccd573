"""Pure bar resampling and indicators: by-hand fixtures, pandas resample, ``ta`` as reference."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ta

from engines import indicators
from engines.bars import IST, normal_market, resample_ohlcv

ROOT = Path(__file__).resolve().parents[1]
OHLCV = ["open", "high", "low", "close", "volume"]
AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}

# Three weeks of March-April 2024 with NSE's real holidays: Holi (Mon 25 Mar), Good Friday
# (29 Mar) and Id-ul-Fitr (Thu 11 Apr). Prices are made up to be easy to aggregate by hand.
DAILY_CSV = """day,open,high,low,close,volume
2024-03-26,100,105,99,104,1000
2024-03-27,104,110,103,108,2000
2024-03-28,108,109,101,102,1500
2024-04-01,102,103,95,96,1000
2024-04-02,96,99,94,98,1000
2024-04-03,98,104,97,103,1000
2024-04-04,103,107,102,106,1000
2024-04-05,106,108,100,101,1000
2024-04-08,101,102,98,99,700
2024-04-09,99,115,99,114,900
2024-04-10,114,116,112,113,800
2024-04-12,113,113,90,92,600
"""

# Expected weekly bars, by hand: (label, open, high, low, close, volume).
WEEKLY_BY_HAND = [
    ("2024-03-26", 100, 110, 99, 102, 4500),  # Holi week: labelled Tuesday, its first day
    ("2024-04-01", 102, 108, 94, 101, 5000),
    ("2024-04-08", 101, 116, 90, 92, 3000),  # Id-ul-Fitr Thursday missing
]


def _daily(text: str = DAILY_CSV) -> pd.DataFrame:
    frame = pd.read_csv(io.StringIO(text))
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("day")), name="ts").tz_localize(IST)
    frame[["open", "high", "low", "close"]] = frame[["open", "high", "low", "close"]].astype(float)
    return frame[OHLCV]


def _expected(rows: list[tuple[str, float, float, float, float, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["ts", *OHLCV])
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("ts")), name="ts").tz_localize(IST)
    frame[["open", "high", "low", "close"]] = frame[["open", "high", "low", "close"]].astype(float)
    frame["volume"] = frame["volume"].astype("int64")
    return frame


def _pandas_weekly(daily: pd.DataFrame) -> pd.DataFrame:
    """Weekly bars the pandas way: W-SUN bins (Monday-Sunday), empty weeks dropped, relabelled."""
    weekly = daily.resample("W-SUN").agg(AGG).dropna(subset=["open"])
    first_days = daily.index.to_series().resample("W-SUN").first().dropna()
    weekly.index = pd.DatetimeIndex(first_days.loc[weekly.index].to_numpy(), name="ts")
    weekly.index = weekly.index.tz_localize(None).tz_localize(IST)
    return weekly.astype({"volume": "int64"})


def _sample_daily(symbol: str = "RELIANCE") -> pd.DataFrame:
    frame = pd.read_csv(ROOT / "data" / "sample" / "nse_daily" / f"{symbol}.csv")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp")), name="ts")
    frame.index = frame.index.tz_convert(IST)
    return frame[OHLCV]


def test_weekly_bars_from_daily_match_the_hand_computed_weeks() -> None:
    weekly = resample_ohlcv(_daily(), "1w")
    pd.testing.assert_frame_equal(weekly, _expected(WEEKLY_BY_HAND))


def test_weekly_bars_from_daily_match_pandas_resample() -> None:
    daily = _daily()
    pd.testing.assert_frame_equal(resample_ohlcv(daily, "1w"), _pandas_weekly(daily))


def test_weekly_bars_of_five_years_of_reliance_match_pandas_resample() -> None:
    daily = _sample_daily()
    pd.testing.assert_frame_equal(resample_ohlcv(daily, "1w"), _pandas_weekly(daily))


def test_a_sunday_muhurat_session_joins_the_week_it_ends() -> None:
    daily = _sample_daily().loc["2023-11-06":"2023-11-17"]
    muhurat = pd.Timestamp("2023-11-12", tz=IST)  # Diwali: Muhurat trading on a Sunday
    assert muhurat in daily.index
    weekly = resample_ohlcv(daily, "1w")
    assert [d.date().isoformat() for d in weekly.index] == ["2023-11-06", "2023-11-13"]
    assert weekly["close"].iloc[0] == daily.loc[muhurat, "close"]
    pd.testing.assert_frame_equal(weekly, _pandas_weekly(daily))


def test_weeks_without_bars_are_dropped_not_filled() -> None:
    daily = _daily()
    gap = daily.drop(daily.loc["2024-04-01":"2024-04-05"].index)
    weekly = resample_ohlcv(gap, "1w")
    assert [d.date().isoformat() for d in weekly.index] == ["2024-03-26", "2024-04-08"]
    assert not weekly.isna().any().any()


FIVE_MIN_CSV = """ts,open,high,low,close,volume
2021-04-01 09:05,50,50,50,50,300
2021-04-01 09:15,100,102,99,101,10
2021-04-01 09:20,101,104,100,103,20
2021-04-01 15:25,103,103,97,98,30
2021-04-01 15:40,98,98,98,98,400
2021-04-05 09:15,99,100,95,96,5
2021-04-05 09:20,96,97,94,97,15
"""


def _five_minute() -> pd.DataFrame:
    frame = pd.read_csv(io.StringIO(FIVE_MIN_CSV))
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("ts")), name="ts").tz_localize(IST)
    frame[["open", "high", "low", "close"]] = frame[["open", "high", "low", "close"]].astype(float)
    return frame[OHLCV]


def test_daily_bars_from_five_minute_bars_are_labelled_by_session_date() -> None:
    daily = resample_ohlcv(_five_minute(), "1d")
    expected = _expected(
        [("2021-04-01", 50, 104, 50, 98, 760), ("2021-04-05", 99, 100, 94, 97, 20)]
    )
    pd.testing.assert_frame_equal(daily, expected)


def test_daily_bars_from_the_normal_market_leave_out_pre_open_and_closing_bars() -> None:
    regular = normal_market(_five_minute())
    assert [t.strftime("%H:%M") for t in regular.index] == [
        "09:15",
        "09:20",
        "15:25",
        "09:15",
        "09:20",
    ]
    daily = resample_ohlcv(regular, "1d")
    expected = _expected(
        [("2021-04-01", 100, 104, 97, 98, 60), ("2021-04-05", 99, 100, 94, 97, 20)]
    )
    pd.testing.assert_frame_equal(daily, expected)


def test_daily_bars_from_the_sample_five_minute_file_match_pandas_resample() -> None:
    raw = pd.read_csv(ROOT / "data" / "sample" / "nse_5min" / "INFY.csv")
    raw.index = pd.DatetimeIndex(pd.to_datetime(raw.pop("datetime")), name="ts").tz_localize(IST)
    bars = raw[OHLCV].astype({"volume": "int64"})
    by_pandas = bars.resample("D").agg(AGG).dropna(subset=["open"]).astype({"volume": "int64"})
    by_pandas.index.name = "ts"
    pd.testing.assert_frame_equal(resample_ohlcv(bars, "1d"), by_pandas, check_freq=False)


def test_resampling_refuses_naive_times_unsorted_bars_and_unknown_rules() -> None:
    daily = _daily()
    with pytest.raises(ValueError, match="tz-aware"):
        resample_ohlcv(daily.tz_localize(None), "1w")
    with pytest.raises(ValueError, match="sorted"):
        resample_ohlcv(daily.iloc[::-1], "1w")
    with pytest.raises(ValueError, match="'1h' is not one of 1w, 1d"):
        resample_ohlcv(daily, "1h")


def test_resampling_no_bars_returns_an_empty_frame_with_the_bar_columns() -> None:
    empty = resample_ohlcv(_daily().iloc[:0], "1w")
    assert empty.empty
    assert list(empty.columns) == OHLCV


# -- indicators against ta ------------------------------------------------------------------------
#: Bars after which TA-Lib's SMA-seeded averages and ta's first-value-seeded ones agree to 1e-6
#: (12 x the longest period, EMA 50).
SETTLED = 600


@pytest.fixture(scope="module")
def close() -> pd.Series:
    return _sample_daily()["close"]


def _agree(ours: pd.Series, reference: pd.Series, after: int) -> None:
    assert ours.index.equals(reference.index)
    diff = (ours - reference).iloc[after:].abs()
    assert len(diff) > 500
    assert diff.max() < 1e-6, f"max difference {diff.max()} at {diff.idxmax()}"


@pytest.mark.parametrize("n", [20, 50])
def test_ema_equals_ta_after_warm_up_and_is_blank_before_n_bars(close, n) -> None:
    ours = indicators.ema(close, n)
    _agree(ours, ta.trend.EMAIndicator(close, window=n).ema_indicator(), SETTLED)
    assert ours.iloc[: n - 1].isna().all() and ours.iloc[n - 1 :].notna().all()


def test_rsi_equals_ta_after_warm_up_and_is_blank_for_the_first_14_bars(close) -> None:
    ours = indicators.rsi(close, 14)
    _agree(ours, ta.momentum.RSIIndicator(close, window=14).rsi(), SETTLED)
    assert ours.iloc[:14].isna().all() and ours.iloc[14:].between(0, 100).all()


def test_bollinger_bands_equal_ta_from_the_first_full_window(close) -> None:
    ours = indicators.bollinger(close, 20, 2.0)
    reference = ta.volatility.BollingerBands(close, window=20, window_dev=2)
    _agree(ours.mid, reference.bollinger_mavg(), 19)
    _agree(ours.upper, reference.bollinger_hband(), 19)
    _agree(ours.lower, reference.bollinger_lband(), 19)
    assert ours.mid.iloc[:19].isna().all()


def test_macd_equals_ta_after_warm_up_and_is_blank_until_both_emas_settle(close) -> None:
    ours = indicators.macd(close, 12, 26, 9)
    reference = ta.trend.MACD(close, window_slow=26, window_fast=12, window_sign=9)
    _agree(ours.macd, reference.macd(), SETTLED)
    _agree(ours.signal, reference.macd_signal(), SETTLED)
    _agree(ours.hist, reference.macd_diff(), SETTLED)
    assert ours.hist.iloc[:33].isna().all() and ours.hist.iloc[33:].notna().all()


def test_indicator_periods_that_make_no_sense_are_refused(close) -> None:
    with pytest.raises(ValueError, match="EMA period must be at least 1; got 0"):
        indicators.ema(close, 0)
    with pytest.raises(ValueError, match=r"slow period \(12\) must exceed the fast period \(26\)"):
        indicators.macd(close, 26, 12, 9)


# -- VWAP by hand ---------------------------------------------------------------------------------
def test_session_vwap_restarts_each_day_with_typical_price_weights() -> None:
    bars = _five_minute().iloc[1:]  # 3 normal bars + a closing bar on day 1, 2 bars on day 2
    ours = indicators.vwap(bars["high"], bars["low"], bars["close"], bars["volume"], "session")
    tp = [(102 + 99 + 101) / 3, (104 + 100 + 103) / 3, (103 + 97 + 98) / 3, 98.0]
    day1 = np.cumsum(np.multiply(tp, [10, 20, 30, 400])) / np.cumsum([10, 20, 30, 400])
    tp2 = [(100 + 95 + 96) / 3, (97 + 94 + 97) / 3]
    day2 = np.cumsum(np.multiply(tp2, [5, 15])) / np.cumsum([5, 15])
    np.testing.assert_allclose(ours.to_numpy(), [*day1, *day2], rtol=0, atol=1e-9)
    assert ours.iloc[4] == pytest.approx((100 + 95 + 96) / 3)  # day 2 starts afresh


def test_range_vwap_is_anchored_to_the_first_bar_given() -> None:
    bars = _daily().iloc[:3]
    ours = indicators.vwap(bars["high"], bars["low"], bars["close"], bars["volume"], "start")
    # typical prices 102.666.., 107, 104 with volumes 1000, 2000, 1500
    expected = [
        (308 / 3),
        (308 / 3 * 1000 + 107 * 2000) / 3000,
        (308 / 3 * 1000 + 107 * 2000 + 104 * 1500) / 4500,
    ]
    np.testing.assert_allclose(ours.to_numpy(), expected, rtol=0, atol=1e-9)


def test_vwap_is_blank_until_some_volume_has_traded() -> None:
    bars = _daily().iloc[:2].assign(volume=[0, 10])
    ours = indicators.vwap(bars["high"], bars["low"], bars["close"], bars["volume"], "start")
    assert np.isnan(ours.iloc[0]) and ours.iloc[1] == pytest.approx(107)
