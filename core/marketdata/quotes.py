"""Reading what the market feed wrote: the latest quotes and the feed's status row.

Kept out of ``core.services`` so brokers (the paper broker's market view) can read prices
without importing the service facade.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import to_ist
from core.domain import FeedState, Quote
from db.models import FeedStatusRow, InstrumentRow, QuoteRow

FEED_NAME = "market"


def read_quotes(session: Session, symbols: Collection[str] | None = None) -> dict[str, Quote]:
    """Return stored quotes by symbol (every one, or only ``symbols``)."""
    query = select(InstrumentRow.symbol, QuoteRow).join(
        InstrumentRow, InstrumentRow.id == QuoteRow.instrument_id)
    if symbols is not None:
        query = query.where(InstrumentRow.symbol.in_(list(symbols)))
    return {
        symbol: Quote(
            symbol=symbol, ltp=row.ltp, prev_close=row.prev_close, day_open=row.day_open,
            day_high=row.day_high, day_low=row.day_low, volume=row.volume,
            quote_time=to_ist(row.quote_time), source=row.source)
        for symbol, row in session.execute(query).all()
    }


def to_feed_state(row: FeedStatusRow) -> FeedState:
    """Return the domain view of a feed status row."""
    return FeedState(
        name=row.name, source=row.source, mode=row.mode, state=row.state,
        session_date=row.session_date, simulated_at=row.simulated_at,
        last_tick_at=row.last_tick_at, speed=row.speed, ticks=row.ticks, message=row.message,
        updated_at=row.updated_at)


def read_feed_state(session: Session, name: str = FEED_NAME) -> FeedState | None:
    """Return the named feed's last status, or None if it never ran."""
    row = session.get(FeedStatusRow, name)
    return None if row is None else to_feed_state(row)
