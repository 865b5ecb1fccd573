"""The market the paper broker trades against: open or closed, and the latest prices.

Two clocks meet here, on purpose:

- **Prices and open/closed follow the market feed.** The paper market is open exactly when the
  feed runs: ``FEED_MODE`` is not ``off``, the ``feed_status`` row ``"market"`` says
  ``running`` and it is not stalled (no write for ``FEED_STALL_SECONDS``). In the demo the
  replay feed plays 2021 sessions at 37.5× and is "open" whenever it runs, whatever the wall
  clock says; with a live feed it is open during real market hours. Orders fill only against
  prices the feed wrote to the ``quotes`` table.
- **The trading day is the IST wall date of now** (``core.clock.to_ist(now).date()``), not the
  feed's simulated date. Charges (their dated rate table), the DP charge per scrip per day,
  DAY-order expiry and T+1 settlement follow the real IST calendar, so a replayed 2021 session
  never makes a paper trade look like it happened in 2021.

:class:`FeedMarketView` reads both from the database; :class:`StaticMarketView` is a settable
stand-in for tests and contract checks.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from sqlalchemy.orm import Session

from brokers.base import SessionState
from core.clock import IST, to_ist
from core.config import Settings
from core.domain import FeedState, Quote
from core.marketdata.quotes import read_feed_and_quotes, read_feed_state, read_quotes
from db.engine import Database

STATIC_SOURCE = "static"


class MarketView(Protocol):
    """What the paper broker needs to know about the market.

    ``within`` is a database session the caller already has open: a view that reads the
    database reads in it instead of opening a transaction of its own (others ignore it).
    """

    def session(self, now: datetime, *, within: Session | None = None) -> SessionState:
        """Return whether the paper market is open at ``now``, why, and the IST trading day."""
        ...

    def quotes(self, symbols: Collection[str] | None = None, *,
               within: Session | None = None) -> dict[str, Quote]:
        """Return the latest quotes of ``symbols`` that have one (every priced one for None)."""
        ...

    def session_and_quotes(self, now: datetime, symbols: Collection[str], *,
                           within: Session | None = None
                           ) -> tuple[SessionState, dict[str, Quote]]:
        """Return :meth:`session` at ``now`` and :meth:`quotes` of ``symbols`` together."""
        ...


class FeedMarketView:
    """The paper market as the worker's market feed writes it (``quotes``, ``feed_status``)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        """Read from ``db``; ``settings`` give FEED_MODE and FEED_STALL_SECONDS."""
        self.db = db
        self.settings = settings

    def session(self, now: datetime, *, within: Session | None = None) -> SessionState:
        """Return open iff the feed is on, running and not stalled; else the reason it is not."""
        if self.settings.feed_mode == "off":
            return self._state(now, None)
        with self._reading(within) as session:
            return self._state(now, read_feed_state(session))

    def session_and_quotes(self, now: datetime, symbols: Collection[str], *,
                           within: Session | None = None
                           ) -> tuple[SessionState, dict[str, Quote]]:
        """Return :meth:`session` and :meth:`quotes` of ``symbols``, read in one statement."""
        with self._reading(within) as session:
            if self.settings.feed_mode != "off":
                found = read_feed_and_quotes(session, symbols)
                if found is not None:
                    return self._state(now, found[0]), found[1]
            # feed off, or its status never written
            return self._state(now, None), read_quotes(session, sorted(set(symbols)))

    def _state(self, now: datetime, state: FeedState | None) -> SessionState:
        """Return the session the feed's status ``state`` (None: none yet) makes at ``now``."""
        day = to_ist(now).date()
        if self.settings.feed_mode == "off":
            return SessionState(False, "market feed off (FEED_MODE=off)", day, now)
        if state is None:
            return SessionState(False, "no market feed status yet (is the worker running?)",
                                day, now)
        if state.state != "running":
            why = f"state {state.state}" + (f": {state.message}" if state.message else "")
            return SessionState(False, f"market feed is not running ({why})", day, now)
        if state.is_stalled(now, self.settings.feed_stall_seconds):
            lag = state.lag_seconds(now) or 0
            return SessionState(False, f"market feed stalled: no price for {lag:.0f} s", day, now)
        return SessionState(True, f"market feed running ({state.source}, {state.mode})", day, now)

    def quotes(self, symbols: Collection[str] | None = None, *,
               within: Session | None = None) -> dict[str, Quote]:
        """Return the stored quotes of ``symbols`` (every stored quote for None)."""
        with self._reading(within) as session:
            return read_quotes(session, None if symbols is None else sorted(set(symbols)))

    @contextmanager
    def _reading(self, within: Session | None) -> Iterator[Session]:
        if within is not None:
            yield within
        else:
            with self.db.transaction() as session:
                yield session


class StaticMarketView:
    """A hand-set market for tests: prices and volumes you set, open or closed as you say."""

    def __init__(self, is_open: bool = True, detail: str = "static market") -> None:
        """Start with no prices; open unless told otherwise."""
        self.is_open = is_open
        self.detail = detail
        self._quotes: dict[str, Quote] = {}

    def set_open(self, is_open: bool, detail: str | None = None) -> None:
        """Open or close the market, with the reason users are told."""
        self.is_open = is_open
        self.detail = detail or ("static market" if is_open else "static market closed")

    def set_price(
        self, symbol: str, ltp: Decimal | str | int, at: datetime, traded: int = 1_000_000
    ) -> Quote:
        """Print a new price of ``symbol`` at ``at`` after ``traded`` more shares changed hands.

        The day's volume grows by ``traded`` (a new IST day starts from it); the default is
        ample liquidity.
        """
        price = Decimal(ltp)
        old = self._quotes.get(symbol)
        today = old if old is not None and to_ist(old.quote_time).date() == to_ist(at).date() \
            else None
        quote = Quote(
            symbol=symbol, ltp=price,
            prev_close=old.ltp if today is None and old is not None else (
                today.prev_close if today else None),
            day_open=today.day_open if today else price,
            day_high=max(price, today.day_high) if today else price,
            day_low=min(price, today.day_low) if today else price,
            volume=(today.volume if today else 0) + traded,
            quote_time=at.astimezone(IST), source=STATIC_SOURCE)
        self._quotes[symbol] = quote
        return quote

    def session(self, now: datetime, *, within: Session | None = None) -> SessionState:
        """Return the state you set, with today's IST date."""
        return SessionState(self.is_open, self.detail, to_ist(now).date(), now)

    def session_and_quotes(self, now: datetime, symbols: Collection[str], *,
                           within: Session | None = None
                           ) -> tuple[SessionState, dict[str, Quote]]:
        """Return :meth:`session` and :meth:`quotes` of ``symbols``."""
        return self.session(now), self.quotes(symbols)

    def quotes(self, symbols: Collection[str] | None = None, *,
               within: Session | None = None) -> dict[str, Quote]:
        """Return the quotes you set, of ``symbols`` (all for None)."""
        return _pick(self._quotes, symbols)


def _pick(quotes: Mapping[str, Quote], symbols: Collection[str] | None) -> dict[str, Quote]:
    if symbols is None:
        return dict(quotes)
    return {s: quotes[s] for s in symbols if s in quotes}
