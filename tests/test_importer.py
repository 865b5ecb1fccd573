"""The CSV importer: the sample imports, session rules drop and report, bad files write nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import time_machine
from sqlalchemy import func, select

from core.clock import IST, SPECIAL_SESSIONS, is_trading_day
from core.domain import Actor, Interval
from core.errors import PermissionDenied, ValidationError
from core.marketdata import store
from core.marketdata.importer import (
    REASON_CLOSING,
    REASON_DUPLICATE,
    REASON_NOT_TRADING_DAY,
    REASON_PRE_OPEN,
    read_bars,
    read_bars_file,
)
from core.marketdata.instruments import SAMPLE_DIR, instrument_row, sample_files
from core.services import Services
from db.engine import Database
from db.models import AuditRow, BarRow, InstrumentRow
from tests.conftest import TEST_SECRET, make_settings
from tests.support.apptest import app_as, page, texts

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = [
    pytest.param(path, interval, id=f"{interval.value}-{path.stem}")
    for interval in (Interval.D1, Interval.M5)
    for path in sample_files(interval)
]
SAMPLE_5M_BARS = 23_360  # 25,000 rows less 62 pre-open and 1,578 closing-session rows
SAMPLE_1D_BARS = 48_725  # every row: Muhurat and special Saturday sessions are kept
HEADER = "datetime,symbol,open,high,low,close,volume"
BAR_0915 = "2021-03-18 09:15:00,NSE:SBIN,360.0,361.5,359.2,360.9,120000.0"
BAR_0920 = "2021-03-18 09:20:00,NSE:SBIN,360.9,362.0,360.5,361.75,98000.0"


def csv(*lines: str) -> bytes:
    """Return CSV bytes from lines."""
    return ("\n".join(lines) + "\n").encode()


def counts(svc: Services) -> tuple[int, int, int]:
    """Return how many bars, instruments and audit entries are stored."""
    with svc.db.transaction() as session:
        return tuple(  # type: ignore[return-value]
            int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (BarRow, InstrumentRow, AuditRow)
        )


def audited_refusals(before: tuple[int, int, int], refused: int = 1) -> tuple[int, int, int]:
    """Return ``counts`` after ``refused`` refused files: no bar or instrument, one audit each."""
    bars, instruments, audits = before
    return bars, instruments, audits + refused


@pytest.fixture
def sqlite_services(sqlite_templates, tmp_path: Path) -> Iterator[Services]:
    """Services over a fresh demo SQLite database only (for the per-file sample tests)."""
    target = tmp_path / "sher.db"
    shutil.copyfile(sqlite_templates[True].source, target)
    url = f"sqlite:///{target}"
    svc = Services(Database(url), make_settings(url))
    yield svc
    svc.db.dispose()


@pytest.fixture
def rahul(login: Callable[[str], Actor]) -> Actor:
    """The demo household's admin."""
    return login("rahul")


# -- the sample --------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "interval"), SAMPLE)
def test_every_sample_file_imports_on_sqlite(sqlite_services, path, interval) -> None:
    report = sqlite_services.marketdata.import_file(path)
    rows = len(path.read_text().splitlines()) - 1
    assert report.interval is interval
    assert report.symbol == path.stem
    assert report.rows_read == rows
    assert report.rows_kept + report.rows_dropped == rows
    assert report.gaps.missing_days == 0
    assert report.gaps.missing_slots == 0
    assert sqlite_services.marketdata.bar_count(interval) == report.rows_kept
    assert report.first_bar is not None and report.first_bar.tzinfo is not None


def test_the_whole_sample_loads_with_the_instrument_master(services) -> None:
    seen: list[int] = []
    assert not services.marketdata.has_bars()
    reports = services.marketdata.load_sample(progress=lambda done, total, _r: seen.append(done))
    assert len(reports) == 45
    assert seen == list(range(1, 46))
    assert services.marketdata.bar_count(Interval.M5) == SAMPLE_5M_BARS
    assert services.marketdata.bar_count(Interval.D1) == SAMPLE_1D_BARS
    assert services.marketdata.has_bars()
    with services.db.transaction() as session:
        sectors = dict(session.execute(select(InstrumentRow.symbol, InstrumentRow.sector)).all())
        ticks = set(session.scalars(select(InstrumentRow.tick_size)))
        logged = session.scalar(
            select(AuditRow.details).where(AuditRow.action == "marketdata.load_sample")
        )
    assert len(sectors) == 50
    assert sectors["M&M"] == "Automobile"
    assert ticks == {Decimal("0.05")}
    assert logged is not None and f'"bars":{SAMPLE_5M_BARS + SAMPLE_1D_BARS}' in logged


def test_the_five_minute_import_drops_pre_open_and_closing_session_bars_and_reports_them() -> None:
    parsed = read_bars_file(SAMPLE_DIR / "nse_5min" / "RELIANCE.csv")
    report = parsed.report
    assert report.dropped[REASON_PRE_OPEN].count == 62
    assert report.dropped[REASON_CLOSING].count == 272
    assert report.rows_kept == 5000 - 62 - 272
    clock = {t.strftime("%H:%M") for t in parsed.bars.index}
    assert {"09:05", "15:30", "15:40", "15:45", "15:50", "15:55"}.isdisjoint(clock)
    assert min(clock) == "09:15" and max(clock) == "15:25"
    assert report.dropped[REASON_PRE_OPEN].rows[0] == 23  # 2021-03-18 09:05, spreadsheet row
    lines = report.describe()
    assert "4,666 bars kept" in lines[0]
    assert any("62 row(s): pre-open 09:00-09:15 (rows 23, 104" in line for line in lines)


def test_daily_bars_on_muhurat_and_special_saturday_sessions_are_kept() -> None:
    parsed = read_bars_file(SAMPLE_DIR / "nse_daily" / "RELIANCE.csv")
    assert REASON_NOT_TRADING_DAY not in parsed.report.dropped
    kept_days = {ts.date() for ts in parsed.bars.index}
    assert set(SPECIAL_SESSIONS) <= kept_days  # 2020-11-14 Muhurat ... 2024-11-01 Muhurat
    assert parsed.report.first_bar == datetime(2020, 10, 1, tzinfo=IST)


def test_a_daily_bar_on_an_ordinary_holiday_is_dropped_and_reported() -> None:
    data = csv("date,open,high,low,close,volume", "2026-11-24,10,11,9,10.5,100",
               "2026-11-23,10,11,9,10.5,100")
    with time_machine.travel(datetime(2026, 11, 25, 18, 0, tzinfo=IST), tick=False):
        report = read_bars(data, "HOLI.csv").report
    assert report.dropped[REASON_NOT_TRADING_DAY].count == 1  # 24 Nov 2026: NSE holiday


def test_prices_are_decimal_exactly_as_written_and_volume_a_whole_number() -> None:
    bars = read_bars(csv(HEADER, BAR_0915, BAR_0920), "x.csv").bars
    assert bars["close"].tolist() == [Decimal("360.9"), Decimal("361.75")]
    assert bars["volume"].tolist() == [120000, 98000]
    assert bars.index[0] == datetime(2021, 3, 18, 9, 15, tzinfo=IST)


# -- variants ----------------------------------------------------------------------------------
def test_a_date_column_with_naive_dates_reads_as_daily_bars_at_ist_midnight() -> None:
    data = csv("Date,Open,High,Low,Close,Volume", "2021-03-18,10,11,9,10.5,100",
               "2021-03-19,10.5,12,10,11,200")
    parsed = read_bars(data, "TCS.csv")
    assert parsed.report.interval is Interval.D1
    assert parsed.report.symbol == "TCS"
    assert parsed.bars.index[0] == datetime(2021, 3, 18, tzinfo=IST)


def test_datetimes_with_an_ist_offset_or_in_utc_become_the_same_ist_bars() -> None:
    ist = csv("datetime,open,high,low,close,volume", "2021-03-18T09:15:00+05:30,10,11,9,10,1")
    utc = csv("datetime,open,high,low,close,volume", "2021-03-18T03:45:00Z,10,11,9,10,1")
    first = read_bars(ist, "INFY.csv").bars.index[0]
    assert first == read_bars(utc, "INFY.csv").bars.index[0]
    assert first == datetime(2021, 3, 18, 9, 15, tzinfo=IST)
    assert str(first.tz) == "Asia/Kolkata"


def test_without_a_symbol_column_the_symbol_comes_from_the_file_name() -> None:
    data = csv("timestamp,open,high,low,close,volume,oi", "2021-03-18 09:15:00,10,11,9,10,1,0")
    assert read_bars(data, "INFY_5_minute.csv").report.symbol == "INFY"
    assert read_bars(data, "whatever.csv", symbol="m&m").report.symbol == "M&M"


def test_a_symbol_column_that_agrees_with_the_declared_symbol_is_accepted() -> None:
    assert read_bars(csv(HEADER, BAR_0915), "upload.csv", symbol="sbin").report.symbol == "SBIN"


def test_exact_duplicate_rows_are_dropped_and_reported() -> None:
    report = read_bars(csv(HEADER, BAR_0915, BAR_0920, BAR_0915), "SBIN.csv").report
    assert report.rows_kept == 2
    assert report.dropped[REASON_DUPLICATE].rows == (4,)


def test_missing_days_and_five_minute_slots_are_reported_as_gaps() -> None:
    data = csv(HEADER, BAR_0915, BAR_0920.replace("09:20", "09:30"),
               "2021-03-22 09:15:00,NSE:SBIN,360.0,361.5,359.2,360.9,1")
    gaps = read_bars(data, "SBIN.csv").report.gaps
    assert gaps.missing_days == 1
    assert gaps.first_missing_days == (date(2021, 3, 19),)
    assert gaps.first_missing_slots[:2] == (
        datetime(2021, 3, 18, 9, 20, tzinfo=IST),
        datetime(2021, 3, 18, 9, 25, tzinfo=IST),
    )
    assert gaps.missing_slots == 75 - 2  # 2021-03-18 09:15-15:25 less the two bars
    assert "1 trading day(s) without bars (first: 2021-03-19)" in gaps.describe()


# -- bad input: a clear error, nothing written -------------------------------------------------
BAD = [
    pytest.param(b"", None, r"SBIN\.csv: the file is empty", id="empty-file"),
    pytest.param(csv(HEADER), None, r"header but no rows", id="header-only"),
    pytest.param(b"\xff\xfe\x00d", None, r"not a UTF-8 text CSV", id="not-utf8"),
    pytest.param(csv("datetime,open,high,low,close", "2021-03-18 09:15:00,1,2,1,2"), None,
                 r"missing column\(s\): volume\. Found: datetime, open", id="missing-volume"),
    pytest.param(csv("when,open,high,low,close,volume", "2021-03-18 09:15:00,1,2,1,2,3"), None,
                 r"missing column\(s\): a time column \(timestamp, datetime or date\)",
                 id="missing-time-column"),
    pytest.param(csv(HEADER, BAR_0915, BAR_0920.replace("2021-03-18 09:20:00", "18/03/21 9h")),
                 None, r"ISO date.* row 3: datetime '18/03/21 9h'", id="unparseable-time"),
    pytest.param(csv(HEADER, BAR_0915, BAR_0920.replace("09:20:00", "09:20:00+05:30")), None,
                 r"all naive \(IST\) or all with a zone offset.* row 3: datetime "
                 r"'2021-03-18 09:20:00\+05:30'", id="naive-and-aware-times"),
    pytest.param(csv(HEADER, BAR_0915.replace("360.0,", "abc,")), None,
                 r"open must be a number\. Broken on 1 row\(s\): row 2: open 'abc'",
                 id="unparseable-number"),
    pytest.param(csv(HEADER, BAR_0915, BAR_0920.replace("362.0,360.5", "360.0,360.5")), None,
                 r"high must be ≥ low\. Broken on 1 row\(s\): row 3: high '360\.0' low '360\.5'",
                 id="high-below-low"),
    pytest.param(csv(HEADER, BAR_0915.replace("360.0,", "365.0,")), None,
                 r"open and close must lie within \[low, high\].* row 2: open '365\.0'",
                 id="open-above-high"),
    pytest.param(csv(HEADER, BAR_0915, BAR_0920.replace("360.5,", "-1,")), None,
                 r"prices must be positive.* row 3: .*low '-1'", id="negative-price"),
    pytest.param(csv(HEADER, BAR_0915.replace("360.9,120000.0", "0,120000.0")), None,
                 r"prices must be positive.* row 2: .*close '0'", id="zero-price"),
    pytest.param(csv(HEADER, BAR_0915.replace("120000.0", "-5")), None,
                 r"volume must not be negative.* row 2: volume '-5'", id="negative-volume"),
    pytest.param(csv(HEADER, BAR_0915.replace("120000.0", "10.5")), None,
                 r"volume must be a whole number.* row 2: volume '10\.5'", id="fractional-volume"),
    pytest.param(csv(HEADER, BAR_0915, BAR_0915.replace("360.9,", "361.0,")), None,
                 r"same time appears with different values\. Broken on 2 row\(s\): row 2: .*"
                 r"row 3: '2021-03-18 09:15:00' open '360\.0'", id="duplicate-time-other-values"),
    pytest.param(csv(HEADER, BAR_0915.replace("NSE:SBIN", "NSE:INFY")), "SBIN",
                 r"declared symbol SBIN only.* row 2: symbol 'NSE:INFY'", id="other-symbol"),
    pytest.param(csv(HEADER, BAR_0915, BAR_0920.replace("NSE:SBIN", "NSE:INFY")), None,
                 r"one symbol per file; the first row names SBIN.* row 3", id="two-symbols"),
    pytest.param(csv(HEADER, BAR_0915.replace("09:15", "09:17")), None,
                 r"5-minute mark.* row 2: datetime '2021-03-18 09:17:00'", id="unaligned-time"),
    pytest.param(csv(HEADER, BAR_0915.replace("09:15", "09:05")), None,
                 r"no bar left to import.*pre-open 09:00-09:15: 1", id="only-pre-open"),
    pytest.param(csv(HEADER, BAR_0915.replace("360.9,", "360.91234,")), None,
                 r"at most 4 decimal places.* row 2", id="too-many-decimals"),
    pytest.param(csv(HEADER, *[BAR_0915.replace("-18 09:15", f"-{d} 09:15") for d in range(18, 25)]
                     ).replace(b"120000.0", b"-1"), None,
                 r"Broken on 7 row\(s\): row 2: .*row 6: volume '-1'; and 2 more",
                 id="only-five-rows-named"),
]


@pytest.mark.parametrize(("data", "declared", "message"), BAD)
def test_a_bad_file_is_refused_with_the_rule_and_rows_and_nothing_is_written(
    services, rahul, data, declared, message
) -> None:
    before = counts(services)
    with pytest.raises(ValidationError, match=message) as refused:
        services.marketdata.import_csv(rahul, "SBIN.csv", data, symbol=declared)
    assert str(refused.value).endswith("Nothing was imported.")
    assert counts(services) == audited_refusals(before)


FUTURE = [
    pytest.param(csv("date,open,high,low,close,volume", "2026-11-20,10,11,9,10.5,100",
                     "2026-11-27,10,11,9,10.5,100"),
                 r"ITC\.csv: bars may not start in the future \(now is 2026-11-22 13:00:00 IST\)\. "
                 r"Broken on 1 row\(s\): row 3: date '2026-11-27'", id="daily"),
    pytest.param(csv(HEADER, BAR_0915, "2026-11-23 09:15:00,NSE:SBIN,360,361,359,360,1"),
                 r"bars may not start in the future .* row 3: datetime '2026-11-23 09:15:00'",
                 id="five-minute"),
    pytest.param(csv("date,open,high,low,close,volume", "2027-01-04,10,11,9,10.5,100"),
                 r"bars may not start in the future .* row 2: date '2027-01-04'",
                 id="beyond-the-calendar"),
]


@pytest.mark.parametrize(("data", "message"), FUTURE)
def test_bars_that_start_after_now_refuse_the_file_and_nothing_is_written(
    services, rahul, data, message
) -> None:
    before = counts(services)
    with (
        time_machine.travel(datetime(2026, 11, 22, 13, 0, tzinfo=IST), tick=False),
        pytest.raises(ValidationError, match=message) as refused,
    ):
        services.marketdata.import_csv(rahul, "ITC.csv", data)
    assert str(refused.value).endswith("Nothing was imported.")
    assert counts(services) == audited_refusals(before)


def test_a_date_beyond_the_calendar_is_refused_like_any_bad_row(services, rahul) -> None:
    later = csv("date,open,high,low,close,volume", "2026-12-31,10,11,9,10.5,100",
                "2027-01-04,10,11,9,10.5,100")
    before = counts(services)
    with (
        time_machine.travel(datetime(2027, 2, 1, 18, 0, tzinfo=IST), tick=False),
        pytest.raises(ValidationError) as refused,
    ):
        services.marketdata.import_csv(rahul, "ITC.csv", later)
    assert str(refused.value) == (
        "ITC.csv: every bar must fall within the trading calendar, which covers 2006-11-22 to "
        "2026-12-31 (for a later year, enter NSE's official holiday list in "
        "HOLIDAYS_BEYOND_CALENDAR in core/clock.py). Broken on 1 row(s): row 3: date "
        "'2027-01-04'. Nothing was imported."
    )
    with pytest.raises(ValidationError, match=r"ITC\.csv: every bar must fall within the "
                       r"trading calendar.* row 2: date '2005-03-01'.*Nothing was imported\."):
        services.marketdata.import_csv(
            rahul, "ITC.csv", csv("date,open,high,low,close,volume", "2005-03-01,10,11,9,10,1"))
    assert counts(services) == audited_refusals(before, 2)


def _five_minute_rows(day: str, minutes: range) -> list[str]:
    return [f"{day} {9 + (15 + m) // 60:02d}:{(15 + m) % 60:02d}:00,NSE:SBIN,360,361,359,360,1"
            for m in minutes]


def _weekly_rows(weeks: int) -> list[str]:
    mondays = pd.date_range("2021-01-04", periods=weeks, freq="7D")
    return [f"{d:%Y-%m-%d},10,11,9,10,1" for d in mondays if is_trading_day(d.date())]


SPACING = [
    pytest.param(csv(HEADER, *_five_minute_rows("2021-03-18", range(0, 375, 15))), None,
                 r"SBIN\.csv: bars of a 5-minute file must be 5 minutes apart within a session; "
                 r"most steps are 15 minutes \(24 of 24; 5 minutes: 0\): rows 2-3 are 15 minutes "
                 r"apart \(2021-03-18 09:15 → 09:30\)", id="15-minute-bars-on-5-minute-marks"),
    pytest.param(csv(HEADER, *_five_minute_rows("2021-03-18", range(0, 375, 60))), "5m",
                 r"most steps are 60 minutes", id="hourly-bars-declared-5m"),
    pytest.param(csv("date,open,high,low,close,volume", *_weekly_rows(20)), None,
                 r"SBIN\.csv: bars of a daily file must be on consecutive trading days most of "
                 r"the time; 1[0-9] of 1[0-9] steps skip trading days: rows 2-3 go from "
                 r"2021-01-04 to 2021-01-11, skipping 4 trading day\(s\)\. This looks like "
                 r"weekly", id="weekly-bars-as-daily"),
    pytest.param(csv("date,open,high,low,close,volume", "2021-01-04,10,11,9,10,1",
                     "2021-02-01,10,11,9,10,1", "2021-03-01,10,11,9,10,1",
                     "2021-04-01,10,11,9,10,1"), "1d",
                 r"steps skip trading days", id="monthly-bars-declared-1d"),
    pytest.param(csv(HEADER, *_five_minute_rows("2021-03-18", range(0, 30, 5)),
                     "2021-03-19 00:00:00,NSE:SBIN,360,361,359,360,1"), None,
                 r"daily bars \(dates at midnight\) or 5-minute bars \(times of day\), not both; "
                 r"most rows are times of day.* row 8: datetime '2021-03-19 00:00:00'",
                 id="a-midnight-row-in-a-5-minute-file"),
    pytest.param(csv("date,open,high,low,close,volume", "2021-03-15,10,11,9,10,1",
                     "2021-03-16,10,11,9,10,1", "2021-03-17 09:15,10,11,9,10,1",
                     "2021-03-18,10,11,9,10,1"), None,
                 r"most rows are dates at midnight.* row 4: date '2021-03-17 09:15'",
                 id="an-intraday-row-in-a-daily-file"),
]


@pytest.mark.parametrize(("data", "declared", "message"), SPACING)
def test_a_file_whose_bars_are_not_spaced_like_its_interval_is_refused(
    services, rahul, data, declared, message
) -> None:
    before = counts(services)
    with pytest.raises(ValidationError, match=message) as refused:
        services.marketdata.import_csv(rahul, "SBIN.csv", data, interval=declared)
    assert str(refused.value).endswith("Nothing was imported.")
    assert counts(services) == audited_refusals(before)


def test_missing_bars_and_holidays_do_not_break_the_spacing_rule() -> None:
    every_third_missing = [m for m in range(0, 375, 5) if m % 15 != 10]  # 5, 10, 5, 10 ...
    five = read_bars(csv(HEADER, *_five_minute_rows("2021-03-18", range(0, 375, 5))[:40],
                         *_five_minute_rows("2021-03-19", range(0, 375, 5))[::2][:3],
                         *_five_minute_rows("2021-03-22", every_third_missing)), "SBIN.csv")
    assert five.report.interval is Interval.M5 and five.report.rows_kept == 93
    daily = ["2021-03-25", "2021-03-26", "2021-03-30", "2021-03-31", "2021-04-05", "2021-04-06"]
    parsed = read_bars(csv("date,open,high,low,close,volume",
                           *[f"{d},10,11,9,10,1" for d in daily]), "SBIN.csv")
    assert parsed.report.rows_kept == 6  # 29 Mar and 2 Apr are holidays; 1 Apr is missing
    specials = csv("date,open,high,low,close,volume", "2020-11-14,10,11,9,10,1",
                   "2024-01-20,10,11,9,10,1", "2025-02-01,10,11,9,10,1")
    assert read_bars(specials, "SBIN.csv").report.rows_kept == 3  # special sessions only


def test_an_interval_that_contradicts_the_times_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"daily bars must be stamped at midnight IST"):
        read_bars(csv(HEADER, BAR_0915), "SBIN.csv", interval="1d")
    with pytest.raises(ValidationError, match=r"interval 1w is not stored \(only 5m, 1d\)"):
        read_bars(csv(HEADER, BAR_0915), "SBIN.csv", interval="1w")
    with pytest.raises(ValidationError, match=r"Unknown interval '2m'"):
        read_bars(csv(HEADER, BAR_0915), "SBIN.csv", interval="2m")


def test_a_file_name_that_is_no_symbol_needs_a_declared_symbol() -> None:
    data = csv("date,open,high,low,close,volume", "2021-03-18,10,11,9,10,1")
    with pytest.raises(ValidationError, match=r"the file name 'my data' is not an NSE symbol"):
        read_bars(data, "my data.csv")


# -- the service -------------------------------------------------------------------------------
def test_an_import_is_stored_and_audited_with_its_summary(services, rahul) -> None:
    report = services.marketdata.import_csv(rahul, "SBIN.csv", csv(HEADER, BAR_0915, BAR_0920))
    assert report.rows_kept == 2
    with services.db.transaction() as session:
        closes = session.scalars(select(BarRow.close).order_by(BarRow.ts)).all()
        entry = session.execute(
            select(AuditRow.actor_username, AuditRow.resource, AuditRow.details).where(
                AuditRow.action == "marketdata.import"
            )
        ).one()
    assert closes == [Decimal("360.9"), Decimal("361.75")]
    assert entry.actor_username == "rahul"
    assert entry.resource == "instrument:SBIN"
    assert '"rows_kept":2' in entry.details


def test_a_refused_file_is_audited_as_a_failed_import_with_who_the_file_and_the_rule(
    services, rahul, tmp_path
) -> None:
    bad = csv(HEADER, BAR_0915.replace("361.5,359.2", "359.0,359.2"))  # high < low
    with pytest.raises(ValidationError, match="high must be ≥ low") as refused:
        services.marketdata.import_csv(rahul, "SBIN.csv", bad)
    path = tmp_path / "SBIN.csv"
    path.write_bytes(bad)
    with pytest.raises(ValidationError, match="high must be ≥ low"):
        services.marketdata.import_file(path)  # the CLI's call: no household to name
    with services.db.transaction() as session:
        entries = session.execute(
            select(AuditRow.actor_username, AuditRow.household_id, AuditRow.resource,
                   AuditRow.outcome, AuditRow.details)
            .where(AuditRow.action == "marketdata.import").order_by(AuditRow.id)
        ).all()
    assert [e[:4] for e in entries] == [
        ("rahul", rahul.household_id, "file:SBIN.csv", "failed"),
        (None, None, "file:SBIN.csv", "failed"),
    ]
    assert rahul.household_id is not None
    details = json.loads(entries[0].details)
    assert details == {"file": "SBIN.csv", "refused": str(refused.value)}
    assert "high must be ≥ low" in details["refused"]
    assert services.marketdata.bar_count() == 0


def test_reimporting_the_same_file_is_idempotent_and_a_corrected_file_replaces_bars(
    services, rahul
) -> None:
    data = csv(HEADER, BAR_0915, BAR_0920)
    services.marketdata.import_csv(rahul, "SBIN.csv", data)
    bars_after_first = counts(services)[0]
    again = services.marketdata.import_csv(rahul, "SBIN.csv", data)
    assert counts(services)[0] == bars_after_first == 2
    assert again.replaced == 0 and not any("replaced" in line for line in again.describe())
    with pytest.raises(ValidationError) as refused:  # history changes only when asked to
        services.marketdata.import_csv(rahul, "SBIN.csv", data.replace(b"361.75", b"361.8"))
    assert str(refused.value) == (
        "1 stored 5-minute bar(s) of SBIN on 2021-03-18 09:20 IST have other values in this "
        "file (first, 2021-03-18 09:20 IST: stored open / high / low / close / volume 360.90 / "
        "362.00 / 360.50 / 361.75 / 98,000, file 360.90 / 362.00 / 360.50 / 361.80 / 98,000). "
        "Importing would replace them: import it again with 'Replace stored bars that differ' "
        "ticked (on the command line: --replace), or remove those rows. Nothing was imported.")
    with services.db.transaction() as session:
        assert session.scalars(select(BarRow.close).order_by(BarRow.ts)).all() == [
            Decimal("360.9"), Decimal("361.75")]
        last = session.scalars(select(AuditRow).order_by(AuditRow.id.desc())).first()
        assert (last.action, last.outcome) == ("marketdata.import", "failed")
    corrected = services.marketdata.import_csv(rahul, "SBIN.csv",
                                               data.replace(b"361.75", b"361.8"), replace=True)
    with services.db.transaction() as session:
        closes = session.scalars(select(BarRow.close).order_by(BarRow.ts)).all()
    assert closes == [Decimal("360.9"), Decimal("361.8")]
    # The replacement is said, not silent: on the page, in the CLI and in the audit.
    assert corrected.replaced == 1
    assert "  replaced 1 stored bar(s) that had other values" in corrected.describe()
    assert corrected.summary()["replaced"] == 1


def test_an_import_that_creates_an_instrument_says_so(services, rahul) -> None:
    daily = csv("date,open,high,low,close,volume", "2021-03-18,10,11,9,10.5,100",
                "2021-03-19,10.5,12,10,11,200")
    report = services.marketdata.import_csv(rahul, "data.csv", daily)
    assert report.symbol == "DATA" and report.new_instrument
    assert "  new instrument DATA (not in the instrument master; no sector): it is now offered " \
        "for trading; check the symbol is the NSE one" in report.describe()
    assert report.summary()["new_instrument"] is True
    again = services.marketdata.import_csv(rahul, "data.csv", daily)
    assert not again.new_instrument
    assert not any("new instrument" in line for line in again.describe())
    with services.db.transaction() as session:
        store.upsert_instruments(session, [instrument_row("SBIN", "Banks")])
    assert not services.marketdata.import_csv(rahul, "SBIN.csv", daily).new_instrument


@pytest.mark.parametrize("name", ["12345.csv", "ABCDEFGHIJKLMNOPQRSTU.csv", "ab#c.csv"])
def test_a_file_name_that_is_no_plausible_nse_symbol_is_refused(name: str) -> None:
    data = csv("date,open,high,low,close,volume", "2021-03-18,10,11,9,10,1")
    with pytest.raises(ValidationError, match=r"is not an NSE symbol \(letters, digits, '&' or "
                       r"'-', at most 20, at least one letter\)\. Declare the symbol"):
        read_bars(data, name)
    assert read_bars(data, "3MINDIA.csv").report.symbol == "3MINDIA"
    assert read_bars(data, "BAJAJ-AUTO.csv").report.symbol == "BAJAJ-AUTO"


def test_a_trader_may_not_import_and_the_refusal_is_audited(services, login) -> None:
    priya = login("priya")
    bars, instruments, _ = counts(services)
    with pytest.raises(PermissionDenied, match="'trader' may not import market data"):
        services.marketdata.import_csv(priya, "SBIN.csv", csv(HEADER, BAR_0915))
    assert counts(services)[:2] == (bars, instruments)
    with services.db.transaction() as session:
        outcome = session.scalar(select(AuditRow.outcome).where(
            AuditRow.action == "marketdata.import", AuditRow.actor_username == "priya"))
    assert outcome == "denied"


def test_instruments_are_found_by_symbol_and_an_unknown_symbol_is_named(services, rahul) -> None:
    services.marketdata.import_csv(rahul, "SBIN.csv", csv(HEADER, BAR_0915))
    found = services.marketdata.instrument(rahul, "sbin")
    assert (found.symbol, found.exchange, found.segment, found.tick_size, found.lot_size) == (
        "SBIN", "NSE", "EQ", Decimal("0.05"), 1)
    assert [i.symbol for i in services.marketdata.search_instruments(rahul, "sb")] == ["SBIN"]
    with pytest.raises(ValidationError, match="Unknown symbol 'NOPE'"):
        services.marketdata.instrument(rahul, "nope")


# -- the command line --------------------------------------------------------------------------
def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": TEST_SECRET}
    return subprocess.run([sys.executable, "-m", "core.marketdata", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_command_line_imports_a_file_and_exits_zero(sqlite_services) -> None:
    done = _cli(sqlite_services.db.url, "import", str(SAMPLE_DIR / "nse_5min" / "SBIN.csv"))
    assert done.returncode == 0, done.stderr
    assert "SBIN.csv: SBIN 5m, 5,000 rows read, 4,663 bars kept" in done.stdout
    assert sqlite_services.marketdata.bar_count(Interval.M5) == 4663


def test_the_command_line_exits_one_when_a_file_is_refused_and_imports_the_others(
    sqlite_services, tmp_path
) -> None:
    bad = tmp_path / "SBIN.csv"
    bad.write_bytes(csv(HEADER, BAR_0915.replace("361.5,359.2", "359.0,359.2")))
    good = SAMPLE_DIR / "nse_daily" / "TCS.csv"
    done = _cli(sqlite_services.db.url, "import", str(bad), str(good))
    assert done.returncode == 1
    assert "REFUSED SBIN.csv: high must be ≥ low" in done.stderr
    assert "1 of 2 file(s) refused; the other 1 was imported." in done.stdout
    assert sqlite_services.marketdata.bar_count(Interval.D1) == 1241
    assert sqlite_services.marketdata.bar_count(Interval.M5) == 0


def test_the_command_line_says_nothing_was_imported_when_every_file_is_refused(
    sqlite_services, tmp_path
) -> None:
    bad = tmp_path / "SBIN.csv"
    bad.write_bytes(csv(HEADER, BAR_0915.replace("361.5,359.2", "359.0,359.2")))
    done = _cli(sqlite_services.db.url, "import", str(bad))
    assert done.returncode == 1
    assert "1 of 1 file(s) refused. Nothing was imported." in done.stdout
    assert "the other" not in done.stdout
    assert sqlite_services.marketdata.bar_count() == 0


def test_the_command_line_replaces_stored_bars_only_with_replace(sqlite_services, tmp_path
                                                                  ) -> None:
    path = tmp_path / "SBIN.csv"
    path.write_bytes(csv(HEADER, BAR_0915))
    assert _cli(sqlite_services.db.url, "import", str(path)).returncode == 0
    path.write_bytes(csv(HEADER, BAR_0915.replace("360.9,", "361.0,")))
    refused = _cli(sqlite_services.db.url, "import", str(path))
    assert refused.returncode == 1
    assert "have other values in this file" in refused.stderr
    assert "(on the command line: --replace)" in refused.stderr
    done = _cli(sqlite_services.db.url, "import", "--replace", str(path))
    assert done.returncode == 0, done.stderr
    assert "replaced 1 stored bar(s) that had other values" in done.stdout
    with sqlite_services.db.transaction() as session:
        assert session.scalars(select(BarRow.close)).all() == [Decimal("361.0")]


# -- the page ----------------------------------------------------------------------------------
def test_the_import_page_renders_for_an_admin(desk) -> None:
    at = app_as(desk, "rahul")
    at.switch_page(page("pages/data_import.py")).run()
    assert not at.exception
    assert at.title[0].value == "Import data"
    assert "No bars are stored yet" in texts(at)


def test_the_import_page_is_absent_from_a_traders_navigation(desk) -> None:
    at = app_as(desk, "priya")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(page("pages/data_import.py"))


def test_importing_without_a_file_asks_for_one(desk) -> None:
    at = app_as(desk, "rahul")
    at.switch_page(page("pages/data_import.py")).run()
    at.button(key="FormSubmitter:data_import_form-Import").click().run()
    assert not at.exception
    assert "Choose at least one CSV file to import." in texts(at)


def test_a_typed_symbol_with_more_than_one_uploaded_file_is_refused_and_nothing_imported(
        desk) -> None:
    svc, _ = desk
    plain = "datetime,open,high,low,close,volume"
    bars = csv(plain, BAR_0915.replace(",NSE:SBIN", ""), BAR_0920.replace(",NSE:SBIN", ""))
    at = app_as(desk, "rahul")
    at.switch_page(page("pages/data_import.py")).run()
    at.file_uploader(key="data_import_files").set_value(
        [("first.csv", bars, "text/csv"), ("second.csv", bars, "text/csv")])
    at.text_input(key="data_import_symbol").input("SBIN")
    at.button(key="FormSubmitter:data_import_form-Import").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "A typed symbol names one file's symbol; got 'SBIN' with 2 files (first.csv, "
        "second.csv): upload one file with it, or leave Symbol empty so each file's symbol "
        "comes from its symbol column or its name. Nothing was imported."]
    assert svc.marketdata.bar_count() == 0
    at.file_uploader(key="data_import_files").set_value([("first.csv", bars, "text/csv")])
    at.button(key="FormSubmitter:data_import_form-Import").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert svc.marketdata.bar_count() == 2  # one file with a typed symbol still imports


def test_a_reimported_bar_shows_up_in_charts_at_once(services, login) -> None:
    from datetime import date

    rahul = login("rahul")
    head = "timestamp,open,high,low,close,volume\n"
    first = head + "2025-09-29 00:00:00+05:30,100,110,90,105,1000\n"
    services.marketdata.import_csv(rahul, "TESTCO.csv", first.encode(), "TESTCO", "1d")
    day = date(2025, 9, 29)
    before = services.charts.chart(rahul, "TESTCO", "1d", day, day, frozenset())
    assert before.frame["close"].tolist() == [105.0]
    corrected = head + "2025-09-29 00:00:00+05:30,100,110,90,107.5,1000\n"
    services.marketdata.import_csv(rahul, "TESTCO.csv", corrected.encode(), "TESTCO", "1d",
                                   replace=True)
    after = services.charts.chart(rahul, "TESTCO", "1d", day, day, frozenset())
    assert after.frame["close"].tolist() == [107.5]


def test_a_file_named_after_another_known_symbol_is_refused_when_declared_otherwise(
    services, login
) -> None:
    rahul = login("rahul")
    services.marketdata.load_sample()
    before = services.marketdata.bar_count(Interval.D1)
    data = (SAMPLE_DIR / "nse_daily" / "RELIANCE.csv").read_bytes()
    with pytest.raises(ValidationError, match="named after RELIANCE but TCS was declared"):
        services.marketdata.import_csv(rahul, "RELIANCE.csv", data, "TCS", "1d")
    assert services.marketdata.bar_count(Interval.D1) == before


@pytest.mark.parametrize(("cells", "rule"), [
    ("100000000000000,100000000000000,100000000000000,100000000000000,10",
     "prices must be below 100,000,000,000,000"),
    ("10,11,9,10.5,10000000000000000000", "volume must be at most 9,223,372,036,854,775,807"),
])
def test_values_beyond_what_the_database_stores_are_refused(cells, rule) -> None:
    with pytest.raises(ValidationError, match=rule):
        read_bars(csv("date,open,high,low,close,volume", f"2025-09-29,{cells}"), "BIG.csv")


def test_the_page_refuses_a_file_that_changes_stored_bars_until_replace_is_ticked(desk) -> None:
    svc, _ = desk
    first = csv(HEADER, BAR_0915, BAR_0920)
    at = app_as(desk, "rahul")
    at.switch_page(page("pages/data_import.py")).run()
    at.file_uploader(key="data_import_files").set_value([("SBIN.csv", first, "text/csv")])
    at.button(key="FormSubmitter:data_import_form-Import").click().run()
    assert not at.exception and not at.error
    other = first.replace(b"360.9,120000", b"359.9,120000").replace(
        b"361.75,98000", b"361.7,98000")  # another source's values for both bars
    at.file_uploader(key="data_import_files").set_value([("SBIN.csv", other, "text/csv")])
    at.button(key="FormSubmitter:data_import_form-Import").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "2 stored 5-minute bar(s) of SBIN from 2021-03-18 09:15 IST to 2021-03-18 09:20 IST "
        "have other values in this file (first, 2021-03-18 09:15 IST: stored open / high / low "
        "/ close / volume 360.00 / 361.50 / 359.20 / 360.90 / 120,000, file 360.00 / 361.50 / "
        "359.20 / 359.90 / 120,000). Importing would replace them: import it again with "
        "'Replace stored bars that differ' ticked (on the command line: --replace), or remove "
        "those rows. Nothing was imported."]
    with svc.db.transaction() as session:
        assert session.scalars(select(BarRow.close).order_by(BarRow.ts)).all() == [
            Decimal("360.9"), Decimal("361.75")]
    at.checkbox(key="data_import_replace").check()
    at.button(key="FormSubmitter:data_import_form-Import").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Replaced 2 stored bar(s) of SBIN" in w.value for w in at.warning)
    with svc.db.transaction() as session:
        assert session.scalars(select(BarRow.close).order_by(BarRow.ts)).all() == [
            Decimal("359.9"), Decimal("361.7")]
