"""The replay feed: session handling, tick order and prices, speed, wallclock mode, the service."""

from __future__ import annotations

import csv
import logging
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from core.clock import IST, MARKET_CLOSE, MARKET_OPEN, is_trading_day
from core.domain import Interval
from core.errors import ConfigError
from core.feeds import FeedMode, FeedRunState, MarketFeed, ReplayFeed
from core.feeds.replay import SESSION_SECONDS
from core.marketdata import store
from core.services import Services
from core.services.feed import FeedService
from db.engine import Database
from db.models import FeedStatusRow, QuoteRow
from jobs.worker import Worker
from tests.conftest import make_settings

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "nse_5min"
SYMBOLS = ("SBIN", "TCS")
# Four sessions around the Ambedkar Jayanti holiday (2021-04-14 is absent from the data).
WINDOW = (date(2021, 4, 12), date(2021, 4, 16))
SESSIONS = [date(2021, 4, 12), date(2021, 4, 13), date(2021, 4, 15), date(2021, 4, 16)]
T0 = datetime(2026, 11, 20, 20, 0, tzinfo=IST)  # any wall time works in replay mode


def sample_bars(symbol: str, first: date, last: date) -> pd.DataFrame:
    """Return the sample's 5-minute bars of ``symbol`` in [first, last], every row kept."""
    rows = []
    with (SAMPLE / f"{symbol}.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            ts = datetime.fromisoformat(row["datetime"]).replace(tzinfo=IST)
            if first <= ts.date() <= last:
                rows.append((ts, *(Decimal(row[k]) for k in ("open", "high", "low", "close")),
                             int(float(row["volume"]))))
    frame = pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume"])
    return frame.set_index(pd.DatetimeIndex(frame.pop("ts"), name="ts"))


def window_bars(first: date = WINDOW[0], last: date = WINDOW[1]) -> dict[str, pd.DataFrame]:
    return {symbol: sample_bars(symbol, first, last) for symbol in SYMBOLS}


def load_sample(services: Services, first: date = WINDOW[0], last: date = WINDOW[1]) -> None:
    """Store instruments and the window's 5-minute bars (pre-open and closing bars included)."""
    with services.db.transaction() as session:
        ids = store.upsert_instruments(session, [
            {"symbol": s, "exchange": "NSE", "segment": "EQ", "name": s,
             "tick_size": Decimal("0.05"), "lot_size": 1, "sector": None, "isin": None}
            for s in SYMBOLS])
        for symbol in SYMBOLS:
            store.upsert_bars(session, ids[symbol], Interval.M5, sample_bars(symbol, first, last))


def new_feed(**kwargs: object) -> ReplayFeed:
    feed = ReplayFeed(window_bars(), **kwargs)  # type: ignore[arg-type]
    feed.subscribe(SYMBOLS)
    return feed


def play_all(feed: ReplayFeed, sessions: int = 1) -> list:
    feed.advance(T0)
    return feed.advance(T0 + timedelta(seconds=SESSION_SECONDS * sessions / feed.speed))


def regular_bars(symbol: str, day: date) -> pd.DataFrame:
    frame = sample_bars(symbol, day, day)
    times = frame.index.time
    return frame[(times >= MARKET_OPEN) & (times < MARKET_CLOSE)]


# -- the feed on its own ---------------------------------------------------------------------
def test_a_replay_feed_is_a_market_feed() -> None:
    feed: MarketFeed = new_feed()
    assert feed.subscribed() == frozenset(SYMBOLS)
    assert feed.latest_quote("SBIN") is None


def test_sessions_run_in_order_and_skip_the_holiday_absent_from_the_data() -> None:
    feed = new_feed()
    assert feed.sessions == SESSIONS
    seen = []
    for _ in SESSIONS:
        seen.append(feed.progress().session_date)
        feed.play(SESSION_SECONDS)
    assert seen == SESSIONS


def test_ticks_are_strictly_ordered_per_symbol_and_never_go_back_overall() -> None:
    ticks = play_all(new_feed(), sessions=len(SESSIONS))
    assert [t.ts for t in ticks] == sorted(t.ts for t in ticks)
    for symbol in SYMBOLS:
        stamps = [t.ts for t in ticks if t.symbol == symbol]
        assert all(a < b for a, b in pairwise(stamps))


def test_only_normal_market_times_on_trading_days_are_played() -> None:
    ticks = play_all(new_feed(), sessions=len(SESSIONS))
    assert {t.ts.date() for t in ticks} == set(SESSIONS)
    assert all(time(9, 15) <= t.ts.astimezone(IST).time() < time(15, 30) for t in ticks)
    assert min(t.ts for t in ticks).time() == time(9, 15)
    assert max(t.ts for t in ticks).time() == time(15, 29, 59)
    # the 09:05 pre-open and 15:30-15:55 closing bars are in the input but not played
    assert len(ticks) == len(SESSIONS) * len(SYMBOLS) * 75 * 4


def test_each_bar_becomes_open_extremes_in_the_bars_direction_then_close() -> None:
    ticks = [t for t in play_all(new_feed()) if t.symbol == "SBIN"]
    bars = regular_bars("SBIN", SESSIONS[0])
    assert len(ticks) == 4 * len(bars) == 300
    directions = set()
    for i, (start, bar) in enumerate(bars.iterrows()):
        four = ticks[4 * i : 4 * i + 4]
        assert [t.ts - start for t in four] == [timedelta(seconds=s) for s in (0, 100, 200, 299)]
        rising = bar["close"] >= bar["open"]
        middle = [bar["low"], bar["high"]] if rising else [bar["high"], bar["low"]]
        assert [t.ltp for t in four] == [bar["open"], *middle, bar["close"]]
        directions.add(rising)
    assert directions == {True, False}  # both kinds of bar were checked


def test_day_volume_accumulates_and_the_quote_tracks_the_day() -> None:
    feed = new_feed()
    ticks = [t for t in play_all(feed, sessions=1) if t.symbol == "TCS"]
    bars = regular_bars("TCS", SESSIONS[0])
    volumes = [t.day_volume for t in ticks]
    assert volumes == sorted(volumes) and volumes[-1] == int(bars["volume"].sum())
    feed.play(SESSION_SECONDS - 0.5)  # past 15:29:59 of the next session
    quote = feed.latest_quote("TCS")
    day = regular_bars("TCS", SESSIONS[1])
    assert quote is not None
    assert quote.day_open == day["open"].iloc[0]
    assert quote.day_high == max(day["high"]) and quote.day_low == min(day["low"])
    assert quote.ltp == day["close"].iloc[-1] and quote.volume == int(day["volume"].sum())
    assert quote.source == "replay:sample 5-minute"


def test_prev_close_is_the_previous_sessions_1525_close_not_the_closing_session_bar() -> None:
    feed = new_feed(start=SESSIONS[2])
    feed.play(1.0)
    quote = feed.latest_quote("SBIN")
    assert quote is not None
    assert quote.prev_close == Decimal("341.5")  # 2021-04-13 15:25 bar; its 15:30 bar is 341.25
    assert quote.change == quote.ltp - Decimal("341.5")


def test_the_replay_loops_to_the_start_session_after_the_last() -> None:
    feed = new_feed(start=SESSIONS[1])
    feed.play(SESSION_SECONDS * 3)
    progress = feed.progress()
    assert progress.session_date == SESSIONS[1]
    assert progress.simulated_at == datetime(2021, 4, 13, 9, 15, tzinfo=IST)
    assert progress.state is FeedRunState.RUNNING


def test_a_replay_without_loop_finishes_after_the_last_session() -> None:
    feed = new_feed(start=SESSIONS[3], loop=False)
    assert len(feed.play(SESSION_SECONDS * 2)) == 600
    assert feed.progress().state is FeedRunState.FINISHED
    assert feed.advance(T0) == []


def test_ten_wall_minutes_at_speed_37_5_play_exactly_one_session() -> None:
    feed = new_feed(speed=37.5)
    assert feed.advance(T0) == []  # the first call sets the baseline
    ticks = feed.advance(T0 + timedelta(minutes=10))
    assert {t.ts.date() for t in ticks} == {SESSIONS[0]}
    assert len(ticks) == 2 * 75 * 4
    assert feed.progress().simulated_at == datetime(2021, 4, 13, 9, 15, tzinfo=IST)


def test_one_wall_second_at_speed_37_5_moves_simulated_time_37_5_seconds() -> None:
    feed = new_feed(speed=37.5)
    feed.advance(T0)
    feed.advance(T0 + timedelta(seconds=1))
    assert feed.progress().simulated_at == datetime(2021, 4, 12, 9, 15, 37, 500000, tzinfo=IST)


def test_the_default_start_is_the_first_session_with_all_75_bars() -> None:
    bars = {s: sample_bars(s, date(2021, 3, 17), date(2021, 3, 19)) for s in SYMBOLS}
    feed = ReplayFeed(bars)
    assert feed.sessions[0] == date(2021, 3, 18)  # 2021-03-17 is partial in the sample
    assert ReplayFeed(bars, start=date(2021, 3, 19)).sessions == [date(2021, 3, 19)]
    with pytest.raises(ConfigError, match="after the last stored 5-minute session"):
        ReplayFeed(bars, start=date(2021, 3, 20))


def test_bars_the_store_should_not_hold_are_ignored_anyway() -> None:
    bars = window_bars()
    stray = pd.DataFrame(
        {"open": [Decimal(1)] * 3, "high": [Decimal(1)] * 3, "low": [Decimal(1)] * 3,
         "close": [Decimal(1)] * 3, "volume": [1] * 3},
        index=pd.DatetimeIndex([datetime(2021, 4, 14, 10, 0, tzinfo=IST),  # holiday
                                datetime(2021, 4, 17, 10, 0, tzinfo=IST),  # Saturday
                                datetime(2021, 4, 15, 10, 2, tzinfo=IST)]),  # off the grid
    )
    bars["SBIN"] = pd.concat([bars["SBIN"], stray]).sort_index()
    feed = ReplayFeed(bars)
    feed.subscribe(SYMBOLS)
    assert feed.sessions == SESSIONS
    ticks = feed.play(SESSION_SECONDS * 4)
    assert all(t.ltp != Decimal(1) for t in ticks)


def test_no_playable_bars_is_a_config_error_naming_the_rule() -> None:
    with pytest.raises(ConfigError, match="09:15 and 15:25 IST"):
        ReplayFeed({"SBIN": sample_bars("SBIN", date(2021, 4, 14), date(2021, 4, 14))})


def test_wallclock_mode_plays_the_sessions_bar_at_the_current_ist_time() -> None:
    feed = new_feed(mode=FeedMode.WALLCLOCK, start=SESSIONS[1])
    friday = date(2026, 11, 20)
    ticks = feed.advance(datetime.combine(friday, time(10, 2, 30), tzinfo=IST))
    assert {t.ts.date() for t in ticks} == {SESSIONS[1]}  # caught up from 09:15
    assert max(t.ts for t in ticks) == datetime(2021, 4, 13, 10, 1, 40, tzinfo=IST)
    progress = feed.progress()
    assert progress.state is FeedRunState.RUNNING
    assert progress.simulated_at == datetime(2021, 4, 13, 10, 2, 30, tzinfo=IST)
    more = feed.advance(datetime.combine(friday, time(10, 5, 0), tzinfo=IST))
    assert {t.ts.time() for t in more} == {time(10, 3, 20), time(10, 4, 59)}


def test_wallclock_mode_reports_closed_and_emits_nothing_outside_market_hours() -> None:
    feed = new_feed(mode=FeedMode.WALLCLOCK)
    friday, saturday = date(2026, 11, 20), date(2026, 11, 21)
    assert feed.advance(datetime.combine(friday, time(9, 14, 59), tzinfo=IST)) == []
    assert feed.progress().state is FeedRunState.CLOSED
    late = feed.advance(datetime.combine(friday, time(15, 45), tzinfo=IST))
    assert len(late) == 600  # the whole day caught up, the last tick at 15:29:59
    assert feed.progress().state is FeedRunState.CLOSED
    assert feed.advance(datetime.combine(friday, time(17, 0), tzinfo=IST)) == []
    assert feed.advance(datetime.combine(saturday, time(11, 0), tzinfo=IST)) == []
    assert feed.progress().state is FeedRunState.CLOSED
    assert "Market closed" in (feed.progress().message or "")


def test_seek_resumes_mid_session_with_the_day_so_far_rebuilt() -> None:
    straight = new_feed()
    straight.play(SESSION_SECONDS + 3600)  # 10:15 on the second session
    resumed = new_feed()
    resumed.seek(datetime(2021, 4, 13, 10, 15, tzinfo=IST))
    assert resumed.progress() == straight.progress()
    assert resumed.latest_quote("SBIN") == straight.latest_quote("SBIN")
    assert resumed.play(600) == straight.play(600)


# -- the service over a database ---------------------------------------------------------------
class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def sample_db(services: Services) -> Services:
    load_sample(services)
    return services


def feed_service(services: Services, clock: Clock, **settings: object) -> FeedService:
    url = services.settings.database_url
    return FeedService(services.db, make_settings(url, **settings), clock=clock)


def test_step_writes_quotes_and_the_feed_status_in_one_go(sample_db: Services) -> None:
    clock = Clock(T0)
    feed = feed_service(sample_db, clock, replay_speed=37.5)
    first = feed.step()
    assert first.state == "running" and first.ticks == 0
    assert first.simulated_at == datetime(2021, 4, 12, 9, 15, tzinfo=IST)
    clock.tick(60)  # 2,250 simulated seconds: 09:15 to 09:52:30
    state = feed.step()
    assert state.source == "replay:sample 5-minute" and state.mode == "replay"
    assert state.session_date == SESSIONS[0]
    assert state.simulated_at == datetime(2021, 4, 12, 9, 52, 30, tzinfo=IST)
    assert state.ticks == 2 * (7 * 4 + 2)
    assert state.last_tick_at == clock.now and state.speed == Decimal("37.50")
    quotes = feed.quotes()
    assert set(quotes) == set(SYMBOLS)
    bar = regular_bars("SBIN", SESSIONS[0]).iloc[7]  # the 09:50 bar, two ticks in
    rising = bar["close"] >= bar["open"]
    assert quotes["SBIN"].ltp == (bar["low"] if rising else bar["high"])
    assert quotes["SBIN"].quote_time == datetime(2021, 4, 12, 9, 51, 40, tzinfo=IST)
    assert quotes["SBIN"].prev_close is None  # no session before the first one stored
    assert feed.status() == state


def test_a_restarted_worker_resumes_where_the_feed_was(sample_db: Services) -> None:
    clock = Clock(T0)
    first = feed_service(sample_db, clock)
    first.step()
    clock.tick(700)  # into the second session
    before = first.step()
    clock.tick(3600)  # the worker is down for an hour
    second = feed_service(sample_db, clock)
    after = second.step()
    assert after.simulated_at == before.simulated_at and after.ticks == before.ticks
    assert second.quotes() == first.quotes()
    clock.tick(10)
    moved = second.step()
    assert moved.simulated_at == before.simulated_at + timedelta(seconds=375)
    assert moved.ticks > before.ticks


def test_a_feed_that_stops_stepping_is_shown_as_stalled(sample_db: Services) -> None:
    clock = Clock(T0)
    feed = feed_service(sample_db, clock, feed_stall_seconds=15)
    feed.step()
    state = feed.step(clock.tick(1))
    assert not state.is_stalled(clock.now + timedelta(seconds=15), 15)
    assert state.is_stalled(clock.now + timedelta(seconds=16), 15)
    assert "stalled" in feed.summary(clock.now + timedelta(seconds=16))
    feed.stop(clock.tick(2))
    stopped = feed.status()
    assert stopped is not None and stopped.state == "stopped"
    assert not stopped.is_stalled(clock.now + timedelta(hours=1), 15)


def test_without_5_minute_bars_the_feed_says_what_to_do(services: Services) -> None:
    state = feed_service(services, Clock(T0)).step()
    assert state.state == "stopped"
    assert "import the 5-minute sample" in (state.message or "")


def test_a_replay_start_past_the_data_is_recorded_as_an_error_not_raised(sample_db) -> None:
    state = feed_service(sample_db, Clock(T0), replay_start=date(2022, 1, 3)).step()
    assert state.state == "error"
    assert "REPLAY_START 2022-01-03 is after the last stored" in (state.message or "")


def test_feed_mode_off_records_a_stopped_feed(sample_db: Services) -> None:
    state = feed_service(sample_db, Clock(T0), feed_mode="off").step()
    assert state.state == "stopped" and state.message == "FEED_MODE is off"
    with sample_db.db.transaction() as session:
        assert session.scalars(select(QuoteRow)).all() == []
        assert session.get(FeedStatusRow, "market") is not None


def test_the_worker_schedules_the_feed_every_second_unless_it_is_off(demo_url: str) -> None:
    for mode, expected in (("replay", True), ("off", False)):
        services = Services(Database(demo_url), make_settings(demo_url, feed_mode=mode))
        worker = Worker(services)
        worker.schedule()
        job = worker.scheduler.get_job("feed")
        assert (job is not None) is expected
        if job is not None:
            assert job.trigger.interval == timedelta(seconds=1)
        services.db.dispose()


def test_a_failing_feed_step_is_logged_and_the_worker_carries_on(services, caplog) -> None:
    worker = Worker(services)

    def broken() -> None:
        raise RuntimeError("database went away")

    services.feed.step = broken  # type: ignore[method-assign]
    worker.feed_step()
    assert "market feed step failed" in caplog.text


def test_a_dead_worker_is_shown_as_stalled_while_the_market_is_closed(sample_db) -> None:
    evening = datetime(2026, 11, 20, 15, 31, tzinfo=IST)  # a Friday, after the close
    clock = Clock(evening)
    state = feed_service(sample_db, clock, feed_mode="wallclock").step()
    assert state.state == "closed"
    assert not state.is_stalled(evening + timedelta(seconds=10), 15)  # the worker writes on
    monday = datetime(2026, 11, 23, 10, 0, tzinfo=IST)  # nothing written since Friday
    assert state.is_stalled(monday, 15)


def test_a_failing_feed_backs_off_instead_of_rebuilding_every_second(sample_db) -> None:
    clock = Clock(T0)
    feed = feed_service(sample_db, clock, replay_start=date(2022, 1, 3))
    assert feed.step().state == "error"
    for _ in range(5):
        assert feed.step(clock.tick(1)).state == "error"  # recorded, not rebuilt
    assert feed._retry_at is not None and clock.now < feed._retry_at
    assert feed.step(clock.tick(30)).state == "error"  # retried after 30 s, fails again


def test_bars_imported_while_the_feed_runs_are_picked_up_without_a_restart(sample_db) -> None:
    clock = Clock(T0)
    feed = feed_service(sample_db, clock)
    feed.step()
    feed.step(clock.tick(5))
    assert "INFY" not in feed.quotes()
    with sample_db.db.transaction() as session:
        ids = store.upsert_instruments(session, [
            {"symbol": "INFY", "exchange": "NSE", "segment": "EQ", "name": "INFY",
             "tick_size": Decimal("0.05"), "lot_size": 1, "sector": None, "isin": None}])
        store.upsert_bars(session, ids["INFY"], Interval.M5,
                          sample_bars("INFY", WINDOW[0], WINDOW[1]))
    feed.step(clock.tick(31))  # the feed checks for new bars every 30 s
    feed.step(clock.tick(5))
    assert "INFY" in feed.quotes()


def test_a_changed_replay_start_restarts_the_replay_there(sample_db: Services) -> None:
    clock = Clock(T0)
    first = feed_service(sample_db, clock)
    first.step()
    clock.tick(700)
    assert first.step().session_date == SESSIONS[1]  # into the second session
    moved = feed_service(sample_db, clock, replay_start=SESSIONS[3])  # operator edits the .env
    state = moved.step(clock.tick(1))
    assert state.session_date == SESSIONS[3]
    assert state.simulated_at == datetime(2021, 4, 16, 9, 15, tzinfo=IST)
    again = feed_service(sample_db, clock, replay_start=SESSIONS[3])  # same start: resumes
    assert again.step(clock.tick(1)).simulated_at == state.simulated_at


def other_period_bars(first: date, sessions: int) -> pd.DataFrame:
    """Return full 5-minute sessions of a made-up stock from ``first`` on (another period)."""
    days = [d.date() for d in pd.bdate_range(first, periods=sessions * 2)
            if is_trading_day(d.date())][:sessions]
    index = pd.DatetimeIndex([datetime.combine(day, MARKET_OPEN, tzinfo=IST)
                              + timedelta(minutes=5 * slot) for day in days for slot in range(75)],
                             name="ts")
    price = [Decimal("100")] * len(index)
    return pd.DataFrame({"open": price, "high": price, "low": price, "close": price,
                         "volume": [10] * len(index)}, index=index)


def test_a_symbol_of_another_period_neither_moves_the_loop_nor_stalls_the_others() -> None:
    feed = ReplayFeed({**window_bars(), "BIGCO": other_period_bars(date(2010, 1, 4), 20)})
    feed.subscribe([*SYMBOLS, "BIGCO"])
    assert feed.sessions == SESSIONS
    assert feed.symbols == sorted(SYMBOLS) and feed.idle_symbols == ["BIGCO"]
    ticks = feed.play(SESSION_SECONDS * 4)
    assert {t.symbol for t in ticks} == set(SYMBOLS)
    assert sorted({t.ts.date() for t in ticks}) == SESSIONS
    assert feed.progress().message.endswith(
        "; no ticks for BIGCO: no 5-minute bars in the replayed sessions (2021-04-12 to "
        "2021-04-16)")


def test_after_importing_bars_of_another_period_the_replay_stays_on_its_sessions(
    sample_db: Services, caplog: pytest.LogCaptureFixture
) -> None:
    with sample_db.db.transaction() as session:
        ids = store.upsert_instruments(session, [
            {"symbol": "BIGCO", "exchange": "NSE", "segment": "EQ", "name": "BIGCO",
             "tick_size": Decimal("0.05"), "lot_size": 1, "sector": None, "isin": None}])
        store.upsert_bars(session, ids["BIGCO"], Interval.M5,
                          other_period_bars(date(2010, 1, 4), 20))
    clock = Clock(T0)
    feed = feed_service(sample_db, clock)
    with caplog.at_level(logging.WARNING, logger="sher.feed"):
        first = feed.step()
        for _ in range(5):
            state = feed.step(clock.tick(10))
    assert first.simulated_at == datetime(2021, 4, 12, 9, 15, tzinfo=IST)
    assert state.session_date == SESSIONS[0] and state.ticks > 0
    assert set(feed.quotes()) == set(SYMBOLS)  # the sample ticks; BIGCO gets none
    assert state.message is not None and "no ticks for BIGCO" in state.message
    assert caplog.text.count("no ticks for BIGCO") == 1  # logged once, not every step
