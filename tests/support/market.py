"""Drive the paper market in tests: load the instrument master, open the feed, write ticks.

The paper market is open when the ``feed_status`` row is running and fresh; prices are the
``quotes`` rows. These helpers write exactly what the worker's feed would, so the real
services, paper broker and order manager run unchanged.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from core.clock import now_ist
from core.marketdata.instruments import sample_master
from core.marketdata.store import upsert_instruments
from db.engine import Database
from db.models import FeedStatusRow, InstrumentRow, QuoteRow


def load_instruments(db: Database) -> None:
    """Store the sample instrument master (40 NSE equities, tick 0.05, lot 1)."""
    with db.transaction() as session:
        upsert_instruments(session, sample_master())


def set_feed(db: Database, running: bool = True, at: datetime | None = None) -> None:
    """Write the feed status row: running and fresh (market open) or closed."""
    at = at or now_ist()
    with db.transaction() as session:
        row = session.get(FeedStatusRow, "market") or FeedStatusRow(name="market", ticks=0)
        row.source, row.mode = "test feed", "replay"
        row.state = "running" if running else "closed"
        row.message = None if running else "test: market closed"
        row.updated_at = at
        row.last_tick_at = at if running else row.last_tick_at
        row.simulated_at = at
        session.merge(row)


def tick(db: Database, symbol: str, price: Decimal | str, volume_add: int = 1_000_000,
         at: datetime | None = None) -> None:
    """Write a new quote for ``symbol`` (a later time and more day volume than the last)."""
    price = Decimal(price)
    with db.transaction() as session:
        instrument_id = session.scalar(
            select(InstrumentRow.id).where(InstrumentRow.symbol == symbol))
        assert instrument_id is not None, symbol
        row = session.get(QuoteRow, instrument_id)
        last = row.quote_time if row is not None else None
        when = at or now_ist()
        if last is not None and when <= last:
            when = last + timedelta(seconds=1)
        if row is None:
            row = QuoteRow(instrument_id=instrument_id, prev_close=price, day_open=price,
                           day_high=price, day_low=price, volume=0, source="test feed")
            session.add(row)
        row.ltp = price
        row.day_high = max(row.day_high, price)
        row.day_low = min(row.day_low, price)
        row.volume = (row.volume or 0) + volume_add
        row.quote_time = when
        row.updated_at = now_ist()


def open_market(db: Database, prices: dict[str, str]) -> None:
    """Load instruments, mark the feed running and price ``prices`` (symbol -> price)."""
    load_instruments(db)
    set_feed(db, running=True)
    for symbol, price in prices.items():
        tick(db, symbol, price)
