"""The chart service on SQLite and PostgreSQL, and the Chart page through AppTest."""

from __future__ import annotations

import csv
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from core.clock import IST
from core.domain import Interval
from core.errors import SessionInvalid, ValidationError
from core.marketdata import store
from core.services import Services
from core.services.charts import UNADJUSTED_NOTE, clear_bar_cache
from engines import indicators
from pages.chart_figure import build_figure
from tests.support.apptest import app_as, page, texts

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
OHLCV = ["open", "high", "low", "close", "volume"]
AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
USERS = ["ops", "rahul", "priya", "kamla", "aarav"]
ALL_OVERLAYS = frozenset({"ema20", "ema50", "vwap", "bollinger", "rsi", "macd"})

# Three weeks with NSE's holidays Holi (Mon 25 Mar 2024), Good Friday and Id (Thu 11 Apr).
TINY_DAILY = [
    ("2024-03-26", "100", "105", "99", "104", 1000),
    ("2024-03-27", "104", "110", "103", "108", 2000),
    ("2024-03-28", "108", "109", "101", "102", 1500),
    ("2024-04-01", "102", "103", "95", "96", 1000),
    ("2024-04-03", "98", "104", "97", "103", 1000),
    ("2024-04-05", "106", "108", "100", "101", 1000),
    ("2024-04-08", "101", "102", "98", "99", 700),
    ("2024-04-09", "99", "115", "99", "114", 900),
    ("2024-04-12", "113", "113", "90", "92.05", 600),
]


def _bars(rows: list[tuple[str, str, str, str, str, int]], naive: bool) -> pd.DataFrame:
    """Bars as the importer stores them: Decimal prices from the text, tz-aware IST starts."""
    stamps = pd.to_datetime([r[0] for r in rows])
    index = stamps.tz_localize(IST) if naive else stamps.tz_convert(IST)
    return pd.DataFrame(
        {
            "open": [Decimal(r[1]) for r in rows],
            "high": [Decimal(r[2]) for r in rows],
            "low": [Decimal(r[3]) for r in rows],
            "close": [Decimal(r[4]) for r in rows],
            "volume": [r[5] for r in rows],
        },
        index=index,
    )


def _sample_rows(folder: str, symbol: str) -> list[tuple[str, str, str, str, str, int]]:
    with (SAMPLE / folder / f"{symbol}.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        stamp = "timestamp" if folder == "nse_daily" else "datetime"
        return [
            (
                row[stamp],
                row["open"],
                row["high"],
                row["low"],
                row["close"],
                int(float(row["volume"])),
            )
            for row in reader
        ]


def _instrument(symbol: str) -> dict[str, object]:
    return {
        "symbol": symbol,
        "exchange": "NSE",
        "segment": "EQ",
        "name": symbol.title(),
        "tick_size": Decimal("0.05"),
        "lot_size": 1,
        "sector": None,
        "isin": None,
    }


def load_sample(svc: Services) -> None:
    """RELIANCE daily + 5-minute, TCS daily only, TINY (a 3-week fixture), EMPTY with no bars."""
    with svc.db.transaction() as session:
        ids = store.upsert_instruments(
            session, [_instrument(s) for s in ("RELIANCE", "TCS", "TINY", "EMPTY")]
        )
        for symbol in ("RELIANCE", "TCS"):
            bars = _bars(_sample_rows("nse_daily", symbol), naive=False)
            store.upsert_bars(session, ids[symbol], Interval.D1, bars)
        five = _bars(_sample_rows("nse_5min", "RELIANCE"), naive=True)
        store.upsert_bars(session, ids["RELIANCE"], Interval.M5, five)
        store.upsert_bars(session, ids["TINY"], Interval.D1, _bars(TINY_DAILY, naive=True))


def _csv_frame(folder: str, symbol: str) -> pd.DataFrame:
    """The sample file as floats, the way a test reads it independently of the service."""
    rows = _sample_rows(folder, symbol)
    frame = _bars(rows, naive=folder == "nse_5min").astype(float)
    frame["volume"] = frame["volume"].astype("int64")
    return frame


@pytest.fixture
def charts(services: Services, login):
    """The chart service over a demo database holding the sample bars, and a trader's Actor."""
    load_sample(services)
    return services.charts, login("priya")


def _days(frame: pd.DataFrame) -> list[str]:
    return sorted({t.date().isoformat() for t in frame.index})


# -- resampled and stored bars --------------------------------------------------------------------
def test_weekly_bars_of_a_small_fixture_equal_the_hand_computed_and_pandas_weeks(charts) -> None:
    service, me = charts
    data = service.chart(me, "TINY", "1w", None, None, frozenset())
    by_hand = pd.DataFrame(
        [
            (100.0, 110.0, 99.0, 102.0, 4500),
            (102.0, 108.0, 95.0, 101.0, 3000),
            (101.0, 115.0, 90.0, 92.05, 2200),
        ],
        columns=OHLCV,
        index=pd.DatetimeIndex(["2024-03-26", "2024-04-01", "2024-04-08"], name="ts").tz_localize(
            IST
        ),
    )
    pd.testing.assert_frame_equal(data.frame[OHLCV], by_hand)
    daily = _bars(TINY_DAILY, naive=True).astype(float)
    by_pandas = daily.resample("W-SUN").agg(AGG).dropna()
    assert data.frame[OHLCV].to_numpy().tolist() == by_pandas.to_numpy().tolist()
    assert data.interval is Interval.W1
    assert any("resampled from daily bars" in note for note in data.notes)


def test_weekly_bars_of_five_years_equal_pandas_resample_of_the_sample_file(charts) -> None:
    service, me = charts
    data = service.chart(me, "reliance", "1w", None, None, frozenset())
    daily = _csv_frame("nse_daily", "RELIANCE")
    by_pandas = daily.resample("W-SUN").agg(AGG).dropna()
    assert len(data.frame) == len(by_pandas) == 262
    assert data.frame[OHLCV].to_numpy().tolist() == by_pandas.to_numpy().tolist()
    assert data.start == date(2020, 9, 28) and data.end == date(2025, 9, 30)  # whole weeks


def test_daily_bars_default_to_the_last_year_of_stored_data(charts) -> None:
    service, me = charts
    data = service.chart(me, "RELIANCE", "1d", None, None, frozenset())
    assert (data.start, data.end) == (date(2024, 9, 30), date(2025, 9, 30))
    assert data.available == (date(2020, 10, 1), date(2025, 9, 30))
    expected = _csv_frame("nse_daily", "RELIANCE").loc["2024-09-30":"2025-09-30"]
    pd.testing.assert_frame_equal(data.frame, expected, check_names=False)
    assert data.markers == []
    assert UNADJUSTED_NOTE not in data.notes


def test_five_minute_bars_default_to_the_last_five_sessions_of_the_normal_market(charts) -> None:
    service, me = charts
    data = service.chart(me, "RELIANCE", "5m", None, None, frozenset())
    assert _days(data.frame) == [
        "2021-06-14",
        "2021-06-15",
        "2021-06-16",
        "2021-06-17",
        "2021-06-18",
    ]
    assert len(data.frame) == 5 * 75
    clock = data.frame.index.strftime("%H:%M")
    assert clock.min() == "09:15" and clock.max() == "15:25"
    assert UNADJUSTED_NOTE in data.notes
    assert "14 pre-open or closing-session bars" in " ".join(data.notes)


def test_an_explicit_range_returns_exactly_the_stored_bars_in_it(charts) -> None:
    service, me = charts
    data = service.chart(me, "RELIANCE", "5m", date(2021, 4, 1), date(2021, 4, 9), frozenset())
    raw = _csv_frame("nse_5min", "RELIANCE").loc["2021-04-01":"2021-04-09"]
    regular = raw[
        (raw.index.strftime("%H:%M") >= "09:15") & (raw.index.strftime("%H:%M") < "15:30")
    ]
    pd.testing.assert_frame_equal(data.frame, regular, check_names=False)
    assert _days(data.frame) == [
        "2021-04-01",
        "2021-04-05",
        "2021-04-06",
        "2021-04-07",
        "2021-04-08",
        "2021-04-09",
    ]  # Good Friday 2 Apr is absent


# -- overlays -------------------------------------------------------------------------------------
def test_overlays_are_computed_with_history_before_the_shown_range(charts) -> None:
    service, me = charts
    data = service.chart(me, "RELIANCE", "1d", date(2025, 1, 1), date(2025, 9, 30), ALL_OVERLAYS)
    columns = [
        "ema20",
        "ema50",
        "vwap",
        "bb_mid",
        "bb_upper",
        "bb_lower",
        "rsi",
        "macd",
        "macd_signal",
        "macd_hist",
    ]
    assert list(data.frame.columns) == [*OHLCV, *columns]
    assert data.frame.index[0].date() == date(2025, 1, 1)
    assert not data.frame.isna().any().any()  # the warm-up margin came from earlier bars
    close = _csv_frame("nse_daily", "RELIANCE")["close"]
    on_all = indicators.ema(close, 50).loc[data.frame.index]
    assert (data.frame["ema50"] - on_all).abs().max() < 1e-3
    first = data.frame.iloc[0]
    assert first["vwap"] == pytest.approx((first["high"] + first["low"] + first["close"]) / 3)
    assert "VWAP is anchored to the first bar shown (2025-01-01)." in data.notes


def test_indicators_without_enough_history_are_blank_and_say_so(charts) -> None:
    service, me = charts
    data = service.chart(me, "TINY", "1d", None, None, frozenset({"ema20", "rsi"}))
    assert data.frame["ema20"].isna().all()
    assert data.notes[-1] == (
        "Too few earlier bars are stored to compute every indicator from the first bar shown: "
        "EMA 20 for the first 9; RSI (14) for the first 9 bars are blank."
    )


def test_intraday_vwap_restarts_each_session(charts) -> None:
    service, me = charts
    data = service.chart(me, "RELIANCE", "5m", None, None, frozenset({"vwap"}))
    opens = data.frame.groupby(data.frame.index.date).head(1)
    typical = (opens["high"] + opens["low"] + opens["close"]) / 3
    assert (opens["vwap"] - typical).abs().max() < 1e-9
    assert "VWAP restarts each session." in data.notes


# -- empty states, errors and access --------------------------------------------------------------
def test_a_symbol_without_bars_at_an_interval_gives_an_empty_chart_with_a_note(charts) -> None:
    service, me = charts
    data = service.chart(me, "TCS", "5m", None, None, frozenset({"ema20"}))
    assert data.frame.empty and data.available is None
    assert data.notes == ["No bars stored for TCS at 5-minute"]
    outside = service.chart(me, "TCS", "1d", date(2019, 1, 1), date(2019, 12, 31), frozenset())
    assert outside.frame.empty
    assert outside.notes == [
        "No bars stored for TCS at daily between 2019-01-01 and 2019-12-31 "
        "(stored: 2020-10-01 to 2025-09-30)"
    ]


def _five_minute_only(svc: Services, symbol: str = "INTRA") -> None:
    """Store INFY's sample 5-minute bars as ``symbol``, which has no daily bars."""
    with svc.db.transaction() as session:
        ids = store.upsert_instruments(session, [_instrument(symbol)])
        five = _bars(_sample_rows("nse_5min", "INFY"), naive=True)
        store.upsert_bars(session, ids[symbol], Interval.M5, five)
    clear_bar_cache()


def test_a_symbol_with_only_five_minute_bars_gets_daily_and_weekly_bars_built_from_them(
        charts, services) -> None:
    service, me = charts
    _five_minute_only(services)
    five = _csv_frame("nse_5min", "INFY")
    minutes = five.index.hour * 60 + five.index.minute
    session = five[(minutes >= 9 * 60 + 15) & (minutes < 15 * 60 + 30)]
    expected = session.groupby(session.index.normalize()).agg(AGG)
    data = service.chart(me, "INTRA", "1d", None, None, frozenset())
    assert not data.frame.empty
    assert len(data.frame) == len(expected) and data.frame.index[0] == expected.index[0]
    assert data.available == (expected.index[0].date(), expected.index[-1].date())
    pd.testing.assert_frame_equal(data.frame[OHLCV], expected[OHLCV], check_dtype=False,
                                  check_freq=False, check_names=False)
    assert data.notes[0] == (
        "No daily bars are stored for INTRA: its daily bars are built from its 5-minute bars "
        "(normal market 09:15–15:30 IST, one bar per IST day), which are not adjusted for "
        "splits/bonuses.")
    weekly = service.chart(me, "INTRA", "1w", None, None, frozenset({"ema20"}))
    assert not weekly.frame.empty
    assert weekly.frame["volume"].sum() == expected["volume"].sum()
    assert weekly.notes[0].startswith("No daily bars are stored for INTRA: its weekly bars")


def test_the_chart_page_draws_the_daily_bars_of_a_five_minute_only_symbol(desk) -> None:
    svc, _ = desk
    load_sample(svc)
    _five_minute_only(svc)
    at = app_as(desk, "priya")
    at.switch_page(page("pages/chart.py")).run()
    at.selectbox(key="chart_symbol").set_value("INTRA").run()
    assert not at.exception
    assert "INTRA · daily ·" in texts(at)
    assert "No daily bars are stored for INTRA: its daily bars are built" in texts(at)
    assert _figure_json(at)["data"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("NOPE", "1d", None, None, frozenset()), "Unknown symbol 'NOPE' on NSE"),
        (
            ("RELIANCE", "2h", None, None, frozenset()),
            "Unknown interval '2h'; choose one of 5m, 1d, 1w",
        ),
        (
            ("RELIANCE", "1d", date(2025, 3, 1), date(2025, 2, 1), frozenset()),
            r"Start date \(2025-03-01\) must be on or before end date \(2025-02-01\)",
        ),
        (
            ("RELIANCE", "1d", None, None, frozenset({"sma7"})),
            "Unknown overlay 'sma7'; choose from ema20, ema50, vwap, bollinger, rsi, macd",
        ),
    ],
)
def test_bad_chart_requests_are_refused_with_the_rule_and_the_values(charts, args, message):
    service, me = charts
    with pytest.raises(ValidationError, match=message):
        service.chart(me, *args)


def test_every_logged_in_role_may_read_charts_and_symbols(services, login) -> None:
    load_sample(services)
    for username in USERS:
        me = login(username)
        assert services.charts.symbols(me) == ["EMPTY", "RELIANCE", "TCS", "TINY"]
        assert len(services.charts.chart(me, "TCS", "1w", None, None, frozenset()).frame) > 250


def test_a_logged_out_user_cannot_read_charts(services, login) -> None:
    load_sample(services)
    me = login("aarav")
    services.auth.logout(me)
    with pytest.raises(SessionInvalid):
        services.charts.chart(me, "RELIANCE", "1d", None, None, frozenset())


def test_cached_bars_are_reloaded_after_the_cache_is_cleared(charts, services) -> None:
    service, me = charts
    before = service.chart(me, "TINY", "1d", None, None, frozenset())
    with services.db.transaction() as session:
        tiny = store.instrument(session, "TINY")
        assert tiny is not None
        fixed = _bars([("2024-04-12", "113", "113", "90", "93", 600)], naive=True)
        store.upsert_bars(session, tiny.id, Interval.D1, fixed)
    assert service.chart(me, "TINY", "1d", None, None, frozenset()).frame.equals(before.frame)
    clear_bar_cache()
    after = service.chart(me, "TINY", "1d", None, None, frozenset())
    assert after.frame["close"].iloc[-1] == 93.0


def test_the_figure_has_candles_volume_and_the_asked_panels(charts) -> None:
    service, me = charts
    data = service.chart(me, "RELIANCE", "5m", None, None, ALL_OVERLAYS)
    figure = build_figure(data, ["rsi", "macd"])
    kinds = [trace.type for trace in figure.data]
    assert kinds.count("candlestick") == 1 and "bar" in kinds
    names = {trace.name for trace in figure.data}
    assert {"EMA 20", "EMA 50", "VWAP", "RSI 14", "MACD", "Signal"} <= names
    breaks = figure.layout.xaxis.rangebreaks
    assert any(b.pattern == "hour" and tuple(b.bounds) == (15.5, 9.25) for b in breaks)
    assert pd.Timestamp(figure.data[0].x[0]) == pd.Timestamp("2021-06-14 09:15")  # IST clock


# -- the page -------------------------------------------------------------------------------------
def _figure_json(at) -> dict:
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


@pytest.mark.parametrize("username", USERS)
def test_the_chart_page_renders_for_every_role(desk, username) -> None:
    svc, _ = desk
    load_sample(svc)
    at = app_as(desk, username)
    at.switch_page(page("pages/chart.py")).run()
    assert not at.exception
    assert at.title[0].value == "Chart"
    assert at.selectbox(key="chart_symbol").value == "RELIANCE"
    assert "RELIANCE · daily · 2024-09-30 to 2025-09-30 · 250 bars (IST)" in texts(at)
    assert "No trades on this symbol yet." in texts(at)
    assert len(_figure_json(at)["data"]) == 3  # candles, EMA 20, volume


def test_switching_interval_overlays_and_panels_redraws_the_chart(desk) -> None:
    svc, _ = desk
    load_sample(svc)
    at = app_as(desk, "priya")
    at.switch_page(page("pages/chart.py")).run()
    at.radio(key="chart_interval").set_value("5m").run()
    assert not at.exception
    assert UNADJUSTED_NOTE in texts(at)
    at.multiselect(key="chart_overlays").set_value(["ema50", "vwap", "bollinger"]).run()
    at.toggle(key="chart_rsi").set_value(True).run()
    at.toggle(key="chart_macd").set_value(True).run()
    assert not at.exception
    names = {trace.get("name") for trace in _figure_json(at)["data"]}
    assert {"EMA 50", "VWAP", "Bollinger upper", "RSI 14", "MACD"} <= names
    assert "EMA 20" not in names
    at.radio(key="chart_interval").set_value("1w").run()
    assert "RELIANCE · weekly" in texts(at)
    at.selectbox(key="chart_symbol").set_value("TCS").run()
    at.radio(key="chart_interval").set_value("5m").run()
    assert not at.exception
    assert "No bars stored for TCS at 5-minute. A household admin can import them" in texts(at)
    assert not at.get("plotly_chart")
