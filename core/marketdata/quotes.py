"""Reading what the market feed wrote: the latest quotes and the feed's status row.

Kept out of ``core.services`` so brokers (the paper broker's market view) can read prices
without importing the service facade.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from core.clock import to_ist
from core.domain import FeedState, Quote
from db.models import FeedStatusRow, InstrumentRow, QuoteRow

FEED_NAME = "market"

# Built once, as plain columns (no ORM objects): the order path and the worker's every step
# read them. Executed through the session, so its pending changes are flushed first.
_QUOTES = cast(Table, QuoteRow.__table__)
_ALL_QUOTES = select(InstrumentRow.symbol, *_QUOTES.c).join(
    InstrumentRow, InstrumentRow.id == _QUOTES.c.instrument_id)
_QUOTES_OF = _ALL_QUOTES.where(InstrumentRow.symbol.in_(bindparam("symbols", expanding=True)))
_FEED = cast(Table, FeedStatusRow.__table__)
_FEED_STATE = select(*_FEED.c).where(_FEED.c.name == bindparam("name"))
_PRICED = _QUOTES.join(InstrumentRow, InstrumentRow.id == _QUOTES.c.instrument_id)
#: The feed's status row with the quotes of some symbols beside it (one row per quote, or
#: one row of NULL quote columns): the order path and the step need both.
_FEED_AND_QUOTES = (
    select(*_FEED.c, InstrumentRow.symbol.label("q_symbol"),
           *(column.label(f"q_{column.key}") for column in _QUOTES.c))
    .select_from(_FEED.outerjoin(
        _PRICED, InstrumentRow.symbol.in_(bindparam("symbols", expanding=True))))
    .where(_FEED.c.name == bindparam("name")))


def read_quotes(session: Session, symbols: Collection[str] | None = None) -> dict[str, Quote]:
    """Return stored quotes by symbol (every one, or only ``symbols``)."""
    found = (session.execute(_ALL_QUOTES) if symbols is None
             else session.execute(_QUOTES_OF, {"symbols": list(symbols)}))
    return {
        row.symbol: Quote(
            symbol=row.symbol, ltp=row.ltp, prev_close=row.prev_close, day_open=row.day_open,
            day_high=row.day_high, day_low=row.day_low, volume=row.volume,
            quote_time=to_ist(row.quote_time), source=row.source)
        for row in found
    }


def read_feed_and_quotes(session: Session, symbols: Collection[str], name: str = FEED_NAME
                         ) -> tuple[FeedState, dict[str, Quote]] | None:
    """Return the named feed's status and the stored quotes of ``symbols``, in one read.

    None if the feed never ran (read the quotes with :func:`read_quotes` then).
    """
    rows = session.execute(_FEED_AND_QUOTES, {"name": name, "symbols": sorted(set(symbols))}
                           ).all()
    if not rows:
        return None
    # A plain row has every attribute to_feed_state reads, under the same names.
    state = to_feed_state(cast(FeedStatusRow, rows[0]))
    return state, {
        row.q_symbol: Quote(
            symbol=row.q_symbol, ltp=row.q_ltp, prev_close=row.q_prev_close,
            day_open=row.q_day_open, day_high=row.q_day_high, day_low=row.q_day_low,
            volume=row.q_volume, quote_time=to_ist(row.q_quote_time), source=row.q_source)
        for row in rows if row.q_symbol is not None}


def to_feed_state(row: FeedStatusRow) -> FeedState:
    """Return the domain view of a feed status row."""
    return FeedState(
        name=row.name, source=row.source, mode=row.mode, state=row.state,
        session_date=row.session_date, simulated_at=row.simulated_at,
        last_tick_at=row.last_tick_at, speed=row.speed, ticks=row.ticks, message=row.message,
        updated_at=row.updated_at)


def read_feed_state(session: Session, name: str = FEED_NAME) -> FeedState | None:
    """Return the named feed's last status, or None if it never ran."""
    row = session.execute(_FEED_STATE, {"name": name}).one_or_none()
    # A plain row has every attribute to_feed_state reads, under the same names.
    return None if row is None else to_feed_state(cast(FeedStatusRow, row))
