"""The Market page: universe, movers and sector data from the service; the page for every user."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from core import clock
from core.clock import IST, MarketStatus, now_ist
from core.domain import Interval
from core.errors import SessionInvalid
from core.feeds.replay import REPLAY_SOURCE
from core.marketdata import store
from core.marketdata.instruments import instrument_row
from core.services import Services
from core.services.market import (
    MIXED_UNIVERSE_NAME,
    UNIVERSE_COLUMNS,
    UNIVERSE_NAME,
    universe_heading,
)
from db.models import FeedStatusRow, QuoteRow
from tests.conftest import make_settings
from tests.support.apptest import app_as, page, texts

DAILY = Path(__file__).resolve().parents[1] / "data" / "sample" / "nse_daily"
SYMBOLS = ("SBIN", "TCS", "INFY", "HDFCBANK", "RELIANCE", "NEWCO")
USERS = ["ops", "rahul", "priya", "kamla", "aarav"]
REPLAY_AT = datetime(2021, 4, 13, 11, 0, tzinfo=IST)


def daily_tail(symbol: str, rows: int = 3) -> pd.DataFrame:
    """Return the last ``rows`` daily bars of the sample, prices as exact Decimals."""
    with (DAILY / f"{symbol}.csv").open(encoding="utf-8", newline="") as handle:
        records = list(csv.DictReader(handle))[-rows:]
    index = pd.DatetimeIndex([datetime.fromisoformat(r["timestamp"]) for r in records], name="ts")
    return pd.DataFrame(
        {k: [Decimal(r[k]) for r in records] for k in ("open", "high", "low", "close")}
        | {"volume": [int(r["volume"]) for r in records]},
        index=index,
    )


def load_market(services: Services) -> None:
    """SBIN and RELIANCE have replay quotes; TCS, INFY, HDFCBANK daily bars; NEWCO nothing."""
    with services.db.transaction() as session:
        ids = store.upsert_instruments(session, [
            {"symbol": s, "exchange": "NSE", "segment": "EQ", "name": s,
             "tick_size": Decimal("0.05"), "lot_size": 1,
             "sector": "Banks" if s == "HDFCBANK" else None, "isin": None}
            for s in SYMBOLS])
        for symbol in ("TCS", "INFY", "HDFCBANK", "SBIN"):
            store.upsert_bars(session, ids[symbol], Interval.D1, daily_tail(symbol))
        for symbol, ltp, prev in (("SBIN", "350", "340"), ("RELIANCE", "1900", "2000")):
            session.add(QuoteRow(
                instrument_id=ids[symbol], ltp=Decimal(ltp), prev_close=Decimal(prev),
                day_open=Decimal(prev), day_high=Decimal(ltp), day_low=Decimal(prev),
                volume=1000, quote_time=REPLAY_AT, source="replay:sample 5-minute",
                updated_at=now_ist()))


@pytest.fixture
def market(services: Services, login):
    load_market(services)
    return services, login("priya")


def test_the_universe_lists_every_instrument_with_an_honest_source(market) -> None:
    services, priya = market
    frame = services.market.universe(priya).set_index("Symbol")
    assert list(frame.reset_index().columns) == UNIVERSE_COLUMNS
    assert sorted(frame.index) == sorted(SYMBOLS)
    sbin = frame.loc["SBIN"]  # a replay quote wins over its stored daily bars
    assert sbin["Source"] == "replay:sample 5-minute"
    assert sbin["Last price [₹]"] == 350.0 and sbin["Change [₹]"] == 10.0
    assert sbin["Change [%]"] == pytest.approx(2.94)
    assert sbin["As of (IST)"] == "2021-04-13 11:00:00 IST"
    tcs = frame.loc["TCS"]
    assert tcs["Source"] == "daily close (sample)"
    assert tcs["Last price [₹]"] == 2888.4 and tcs["Change [₹]"] == pytest.approx(-7.7)
    assert tcs["Change [%]"] == pytest.approx(round(-7.7 / 2896.1 * 100, 2))
    assert tcs["Volume"] == 2253458 and tcs["As of (IST)"] == "2025-09-30 15:30:00 IST"
    newco = frame.loc["NEWCO"]
    assert newco["Source"] == "no price stored" and pd.isna(newco["Last price [₹]"])


def test_imported_stocks_and_bars_are_labelled_imported_never_sample(market) -> None:
    services, priya = market
    sample_only = services.market.universe(priya)
    sample_only = sample_only[sample_only["Symbol"] != "NEWCO"]
    assert universe_heading(sample_only)[0] == UNIVERSE_NAME
    with services.db.transaction() as session:
        ids = store.upsert_instruments(session, [instrument_row("BIGCO")])
        newco = store.instrument(session, "NEWCO")
        infy = store.instrument(session, "INFY")
        assert newco is not None and infy is not None
        store.upsert_bars(session, newco.id, Interval.D1, daily_tail("TCS"))
        after_sample = daily_tail("INFY", 1)  # the sample ends on 2025-09-30
        after_sample.index = after_sample.index + timedelta(days=1)
        store.upsert_bars(session, infy.id, Interval.D1, after_sample)
        session.add(QuoteRow(
            instrument_id=ids["BIGCO"], ltp=Decimal("10"), prev_close=Decimal("9"),
            day_open=Decimal("9"), day_high=Decimal("10"), day_low=Decimal("9"), volume=5,
            quote_time=REPLAY_AT, source=REPLAY_SOURCE, updated_at=now_ist()))
    frame = services.market.universe(priya)
    source = frame.set_index("Symbol")["Source"]
    assert source["NEWCO"] == "daily close (imported)"
    assert source["INFY"] == "daily close (imported)"  # a day after the sample's last
    assert source["TCS"] == "daily close (sample)"
    assert source["BIGCO"] == "replay:imported 5-minute"
    assert source["SBIN"] == "replay:sample 5-minute"
    heading, caption = universe_heading(frame)
    assert heading == MIXED_UNIVERSE_NAME == "NIFTY-50 sample and imported stocks"
    assert caption.startswith(
        "7 of 7 stocks (2 imported) have a price: 4 from the sample, 3 from imported bars.")


def test_sectors_come_from_the_master_then_sectors_csv_then_unclassified(market) -> None:
    services, priya = market
    sector = services.market.universe(priya).set_index("Symbol")["Sector"]
    assert sector["HDFCBANK"] == "Banks"  # the instrument master wins
    assert sector["TCS"] == "Information Technology"  # data/sample/sectors.csv
    assert sector["NEWCO"] == "Unclassified"


def test_movers_rank_rising_and_falling_symbols_of_the_same_day_only(market) -> None:
    services, priya = market
    gainers, losers = services.market.movers(priya, n=5)
    # SBIN's and RELIANCE's replay quotes are from 2021-04-13; the daily closes of TCS, INFY
    # and HDFCBANK (the majority) are from 2025-09-30: only those are compared.
    assert list(gainers["Symbol"]) == ["HDFCBANK"]
    assert list(losers["Symbol"]) == ["TCS"]  # INFY closed unchanged
    assert not {"SBIN", "RELIANCE"} & (set(gainers["Symbol"]) | set(losers["Symbol"]))
    assert "Source" in gainers.columns


def test_the_sector_map_has_one_tile_per_symbol_with_a_change_that_day(market) -> None:
    services, priya = market
    tiles = services.market.sector_map(priya)
    assert list(tiles.columns) == ["Sector", "Symbol", "Size", "Change [%]"]
    assert sorted(tiles["Symbol"]) == ["HDFCBANK", "INFY", "TCS"]  # same day only
    assert set(tiles["Size"]) == {1.0}
    by_volume = services.market.sector_map(priya, by_volume=True).set_index("Symbol")
    assert by_volume.loc["TCS", "Size"] == 2253458


@pytest.mark.parametrize("username", USERS)
def test_every_role_may_read_the_market(services: Services, login, username: str) -> None:
    load_market(services)
    assert len(services.market.universe(login(username))) == len(SYMBOLS)


def test_a_logged_out_user_is_refused(services: Services, login) -> None:
    priya = login("priya")
    services.auth.logout(priya)
    with pytest.raises(SessionInvalid):
        services.market.universe(priya)


def test_the_market_clock_reads_the_nse_calendar(services: Services) -> None:
    assert services.market.market_clock(
        datetime(2026, 11, 20, 9, 15, tzinfo=IST)).status is MarketStatus.OPEN
    assert services.market.market_clock(
        datetime(2026, 11, 24, 10, 0, tzinfo=IST)).status is MarketStatus.HOLIDAY


# -- the page ----------------------------------------------------------------------------------
def _everything_shown(at) -> str:
    frames = [e.value.to_csv() for e in at.dataframe]
    metrics = [f"{m.label} {m.value}" for m in at.metric]
    charts = [str(c.proto) for c in at.get("plotly_chart")]
    headings = [h.value for h in at.subheader]
    return "\n".join([texts(at), *headings, *frames, *metrics, *charts])


@pytest.mark.parametrize("username", USERS)
def test_the_market_page_renders_for_every_demo_user(desk, username: str) -> None:
    services, _ = desk
    load_market(services)
    at = app_as(desk, username).switch_page(page("pages/market.py")).run()
    assert not at.exception
    assert at.title[0].value == "Market"
    status = next(m for m in at.metric if m.label == "NSE cash market")
    assert status.value in {s.value for s in MarketStatus}
    assert "IST" in next(m for m in at.metric if m.label == "Time in India").value
    shown = _everything_shown(at)
    assert MIXED_UNIVERSE_NAME in shown and "SBIN" in shown and "RELIANCE" in shown
    assert UNIVERSE_NAME not in shown  # NEWCO is no NIFTY-50 constituent of the sample
    assert "4 of 6 stocks (1 imported) have a price: 4 from the sample, 0 from" in shown
    assert "NIFTY 50" not in shown.upper()
    assert at.get("plotly_chart"), "the sector heatmap is missing"
    assert "FEED_MODE=off" in shown


def test_the_page_warns_when_the_feed_has_stalled(desk, monkeypatch) -> None:
    monkeypatch.setenv("FEED_MODE", "replay")
    services, _ = desk
    long_ago = now_ist() - timedelta(minutes=5)
    with services.db.transaction() as session:
        session.add(FeedStatusRow(
            name="market", source="replay:sample 5-minute", mode="replay", state="running",
            session_date=REPLAY_AT.date(), simulated_at=REPLAY_AT, last_tick_at=long_ago,
            speed=Decimal("37.5"), ticks=42, message="Replaying", updated_at=long_ago))
    at = app_as(desk, "aarav").switch_page(page("pages/market.py")).run()
    assert not at.exception
    assert any("The feed has stalled" in e.value for e in at.error)
    assert next(m for m in at.metric if m.label == "Feed").value == "stalled"
    shown = _everything_shown(at)
    assert "Simulated time (13 Apr 2021)" in shown and "11:00:00 IST" in shown


def test_the_page_warns_when_the_trading_calendar_ends_soon(desk, monkeypatch) -> None:
    services, _ = desk
    monkeypatch.setattr(clock, "CALENDAR_WARN_DAYS", 100_000)  # whatever today's date is
    at = app_as(desk, "aarav").switch_page(page("pages/market.py")).run()
    assert not at.exception
    expected = services.market.calendar_warning()
    assert expected is not None and expected.startswith("The trading calendar ends on 2026-12-31")
    assert expected in [w.value for w in at.warning]
    monkeypatch.setattr(clock, "CALENDAR_WARN_DAYS", -100_000)
    at = app_as(desk, "aarav").switch_page(page("pages/market.py")).run()
    assert not any("trading calendar ends" in w.value for w in at.warning)


def test_the_page_says_when_no_feed_has_run(desk, monkeypatch) -> None:
    monkeypatch.setenv("FEED_MODE", "replay")
    at = app_as(desk, "kamla").switch_page(page("pages/market.py")).run()
    assert not at.exception
    assert any("No market feed has run yet" in w.value for w in at.warning)


def test_with_the_feed_off_left_over_replay_quotes_are_not_shown_as_prices(
        services: Services, login) -> None:
    load_market(services)
    url = services.settings.database_url
    off = Services(services.db, make_settings(url, feed_mode="off"))
    frame = off.market.universe(login("priya")).set_index("Symbol")
    assert frame.loc["SBIN", "Source"] == "daily close (sample)"  # not the 2021 replay quote
    assert frame.loc["RELIANCE", "Source"] == "no price stored"
