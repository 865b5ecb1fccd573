"""The OHLCV store and instrument master: bulk upserts and reads, the same on SQLite and PostgreSQL.

Bars are keyed by (instrument, interval, bar start). Prices are ``Numeric`` in the database and
``Decimal`` on the way in; reads return float DataFrames for charts and indicators (display only,
never for money arithmetic).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import pandas as pd
from sqlalchemy import Table, bindparam, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.clock import IST
from core.domain import Instrument, Interval
from db.models import BarRow, InstrumentRow

BAR_COLUMNS = ["open", "high", "low", "close", "volume"]
# Built once, as plain columns: every order looks its instrument up.
_INSTRUMENTS = cast(Table, InstrumentRow.__table__)
_INSTRUMENT = select(*_INSTRUMENTS.c).where(_INSTRUMENTS.c.symbol == bindparam("symbol"),
                                            _INSTRUMENTS.c.exchange == bindparam("exchange"))
_CHUNK_ROWS = 2000  # 8 parameters a row stays far below SQLite's variable limit


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


def to_instrument(row: InstrumentRow) -> Instrument:
    """Map a row to the domain type."""
    return Instrument(
        id=row.id,
        symbol=row.symbol,
        exchange=row.exchange,
        segment=row.segment,
        name=row.name,
        tick_size=row.tick_size,
        lot_size=row.lot_size,
        sector=row.sector,
        isin=row.isin,
    )


def upsert_instruments(session: Session, rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Insert or update instruments (keyed by exchange+symbol); return symbol -> id."""
    rows = list(rows)
    if rows:
        stmt = _insert(session, InstrumentRow.__table__)
        updatable = {"segment", "name", "tick_size", "lot_size", "sector", "isin", "is_active"}
        now = datetime.now(IST)
        values = [{**r, "created_at": now, "updated_at": now} for r in rows]
        stmt = stmt.on_conflict_do_update(
            index_elements=["exchange", "symbol"],
            set_={k: stmt.excluded[k] for k in updatable | {"updated_at"} if k in values[0]},
        )
        session.execute(stmt, values)
    symbols = [r["symbol"] for r in rows]
    found = session.execute(
        select(InstrumentRow.symbol, InstrumentRow.id).where(InstrumentRow.symbol.in_(symbols))
    ).all()
    return {symbol: ident for symbol, ident in found}


def instrument(session: Session, symbol: str, exchange: str = "NSE") -> Instrument | None:
    """Return the instrument ``symbol`` on ``exchange``, or None."""
    row = session.execute(_INSTRUMENT, {"symbol": symbol.upper(), "exchange": exchange}).first()
    # A plain row has every attribute to_instrument reads, under the same names.
    return to_instrument(cast(InstrumentRow, row)) if row else None


def all_instruments(session: Session) -> list[Instrument]:
    """Return every active instrument, by symbol."""
    rows = session.scalars(
        select(InstrumentRow)
        .where(InstrumentRow.is_active.is_(True))
        .order_by(InstrumentRow.symbol)
    ).all()
    return [to_instrument(r) for r in rows]


def search_instruments(session: Session, query: str, limit: int = 20) -> list[Instrument]:
    """Return instruments whose symbol or name contains ``query`` (symbol prefix first)."""
    text = query.strip().upper()
    if not text:
        return all_instruments(session)[:limit]
    pattern = f"%{text}%"
    rows = session.scalars(
        select(InstrumentRow)
        .where(
            InstrumentRow.is_active.is_(True),
            or_(InstrumentRow.symbol.like(pattern), func.upper(InstrumentRow.name).like(pattern)),
        )
        .order_by(InstrumentRow.symbol)
    ).all()
    ranked = sorted(rows, key=lambda r: (not r.symbol.startswith(text), r.symbol))
    return [to_instrument(r) for r in ranked[:limit]]


def upsert_bars(
    session: Session, instrument_id: int, interval: Interval, bars: pd.DataFrame
) -> int:
    """Insert or replace bars. ``bars``: tz-aware DatetimeIndex (bar start) and BAR_COLUMNS.

    Prices must already be Decimal (the importer converts them from text exactly).
    """
    if bars.empty:
        return 0
    if bars.index.tz is None:
        raise ValueError("bar timestamps must be tz-aware")
    records = [
        {
            "instrument_id": instrument_id,
            "interval": interval.value,
            "ts": ts.to_pydatetime(),
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": int(v),
        }
        for ts, o, h, lo, c, v in zip(
            bars.index,
            bars["open"],
            bars["high"],
            bars["low"],
            bars["close"],
            bars["volume"],
            strict=True,
        )
    ]
    for start in range(0, len(records), _CHUNK_ROWS):
        stmt = _insert(session, BarRow.__table__)
        stmt = stmt.on_conflict_do_update(
            index_elements=["instrument_id", "interval", "ts"],
            set_={k: stmt.excluded[k] for k in BAR_COLUMNS},
        )
        session.execute(stmt, records[start : start + _CHUNK_ROWS])
    return len(records)


@dataclass(frozen=True, slots=True)
class BarChanges:
    """Bars of a file that are stored already with other values (an upsert replaces them)."""

    count: int = 0
    first: pd.Timestamp | None = None  # IST bar start of the first such bar
    last: pd.Timestamp | None = None
    stored: tuple[float, ...] = ()  # the first one's stored open, high, low, close, volume
    new: tuple[float, ...] = ()  # and the file's


def changed_bars(
    session: Session, instrument_id: int, interval: Interval, bars: pd.DataFrame
) -> BarChanges:
    """Return which of ``bars`` are stored already with other values (an upsert replaces
    them), so an import can refuse or say that it changes history rather than do it silently."""
    if bars.empty:
        return BarChanges()
    stored = load_bars(session, instrument_id, interval, bars.index.min().to_pydatetime(),
                       bars.index.max().to_pydatetime() + timedelta(microseconds=1))
    common = stored.index.intersection(bars.index)
    if common.empty:
        return BarChanges()
    new = bars.loc[common, list(BAR_COLUMNS)].astype(float)
    old = stored.loc[common, list(BAR_COLUMNS)].astype(float)
    differs = (new != old).any(axis=1)
    if not differs.any():
        return BarChanges()
    changed = common[differs.to_numpy()]
    first = changed[0]
    return BarChanges(int(differs.sum()), first, changed[-1],
                      tuple(float(v) for v in old.loc[first]),
                      tuple(float(v) for v in new.loc[first]))


def load_bars(
    session: Session,
    instrument_id: int,
    interval: Interval,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """Return stored bars in [start, end) as floats, indexed by IST bar start, oldest first."""
    query = select(
        BarRow.ts, BarRow.open, BarRow.high, BarRow.low, BarRow.close, BarRow.volume
    ).where(BarRow.instrument_id == instrument_id, BarRow.interval == interval.value)
    if start is not None:
        query = query.where(BarRow.ts >= start)
    if end is not None:
        query = query.where(BarRow.ts < end)
    rows = session.execute(query.order_by(BarRow.ts)).all()
    frame = pd.DataFrame(rows, columns=["ts", *BAR_COLUMNS])
    if frame.empty:
        return frame.set_index(pd.DatetimeIndex([], tz=IST, name="ts"))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_convert(IST)
    for column in ("open", "high", "low", "close"):
        frame[column] = frame[column].astype(float)
    frame["volume"] = frame["volume"].astype("int64")
    return frame.set_index("ts")


def bar_count(session: Session, interval: Interval | None = None) -> int:
    """Return how many bars are stored (optionally of one interval)."""
    query = select(func.count()).select_from(BarRow)
    if interval is not None:
        query = query.where(BarRow.interval == interval.value)
    return int(session.scalar(query) or 0)
