"""The instrument master seed and where the sample data lives.

The sample's ``sectors.csv`` lists the NIFTY-50 stocks with NSE's industry; every stock becomes
an NSE cash-equity instrument (segment EQ, tick 0.05, lot 1). Names and ISINs are unknown to
the sample, so they are left out of the rows: an upsert never blanks ones filled in elsewhere.
"""

from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.config import PROJECT_ROOT
from core.domain import Interval
from core.errors import ValidationError
from core.marketdata.importer import normalise_symbol

SAMPLE_DIR = PROJECT_ROOT / "data" / "sample"
SECTORS_FILE = SAMPLE_DIR / "sectors.csv"
SAMPLE_FOLDERS = {Interval.D1: SAMPLE_DIR / "nse_daily", Interval.M5: SAMPLE_DIR / "nse_5min"}

EXCHANGE = "NSE"
SEGMENT = "EQ"
TICK_SIZE = Decimal("0.05")
LOT_SIZE = 1


def instrument_row(symbol: str, sector: str | None = None) -> dict[str, Any]:
    """Return an instrument-master row for an NSE cash equity (for ``store.upsert_instruments``).

    ``sector`` is included only when known, so an upsert keeps a sector set elsewhere.
    """
    row: dict[str, Any] = {
        "symbol": normalise_symbol(symbol, "Symbol"),
        "exchange": EXCHANGE,
        "segment": SEGMENT,
        "tick_size": TICK_SIZE,
        "lot_size": LOT_SIZE,
    }
    if sector:
        row["sector"] = sector
    return row


def sample_master(path: Path = SECTORS_FILE) -> list[dict[str, Any]]:
    """Return the instrument rows of ``sectors.csv`` (columns ``symbol,sector``)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or {"symbol", "sector"} - set(reader.fieldnames):
            raise ValidationError(f"{path.name}: needs the columns symbol,sector")
        return [
            instrument_row(line["symbol"], (line["sector"] or "").strip() or None)
            for line in reader
        ]


@lru_cache(maxsize=1)
def sample_sectors() -> dict[str, str]:
    """Return symbol -> sector of the sample master (read once; empty if the file is absent)."""
    if not SECTORS_FILE.exists():
        return {}
    return {row["symbol"]: row["sector"] for row in sample_master() if row.get("sector")}


@lru_cache(maxsize=1)
def sample_symbols() -> frozenset[str]:
    """Return the symbols of the sample master (``sectors.csv``); others were imported."""
    if not SECTORS_FILE.exists():
        return frozenset()
    return frozenset(row["symbol"] for row in sample_master())


@lru_cache(maxsize=2)
def sample_last_days(interval: Interval) -> dict[str, date]:
    """Return symbol -> the last day of its sample file of ``interval`` (read once)."""
    last: dict[str, date] = {}
    for path in sample_files(interval):
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            days = [row[0][:10] for row in reader if row]
        if days:
            last[path.stem.upper()] = date.fromisoformat(max(days))
    return last


def sample_files(interval: Interval) -> list[Path]:
    """Return the sample CSV files of ``interval``, by name."""
    folder = SAMPLE_FOLDERS.get(interval)
    return sorted(folder.glob("*.csv")) if folder else []
