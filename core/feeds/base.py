"""The market-feed interface: what the worker needs from any source of live prices.

A feed is polled, not pushed: the worker calls :meth:`MarketFeed.advance` about once a second
with the wall-clock time and gets the ticks that arrived since the previous call, in order. A
replay feed computes them from stored bars; a broker websocket feed (later) drains the queue its
socket thread filled. Either way the caller owns the loop, the database writes and the clock,
so a feed stays free of I/O beyond its own source and can be tested with an injected ``now``.

============================  ========  ====================================================
Member                        Required  Meaning
============================  ========  ====================================================
``name``                      yes       Short id of the feed, e.g. ``"market"``.
``source``                    yes       What users are told the prices come from.
``subscribe(symbols)``        yes       Add symbols; only subscribed symbols produce ticks.
``subscribed()``              yes       The subscribed symbols.
``latest_quote(symbol)``      yes       The symbol's day so far as a :class:`Quote`, or None.
``advance(now)``              yes       Return the ticks due up to wall time ``now``, oldest
                                        first (strictly increasing per symbol).
``progress()``                yes       Mode, state, session and simulated time for the UI.
============================  ========  ====================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol

from core.domain import Quote, Tick


class FeedMode(StrEnum):
    """How a feed maps wall time to market time."""

    REPLAY = "replay"  # stored sessions back to back at a speed (simulated s per wall s)
    WALLCLOCK = "wallclock"  # the replay session's bar at the current IST time of day
    LIVE = "live"  # a broker's real-time feed (later)


class FeedRunState(StrEnum):
    """What a feed is doing; only ``running`` feeds can be stalled."""

    RUNNING = "running"
    CLOSED = "closed"  # following the wall clock while the market is shut: nothing is due
    FINISHED = "finished"  # a replay that does not loop reached its end
    STOPPED = "stopped"  # the worker stopped it, FEED_MODE is off, or there is nothing to play
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class FeedProgress:
    """Where a feed stands, for the status row and the app's feed panel."""

    mode: FeedMode
    state: FeedRunState
    session_date: date | None
    simulated_at: datetime | None
    message: str | None


class MarketFeed(Protocol):
    """A source of ticks and quotes; see the module docstring for the member table."""

    name: str
    source: str

    def subscribe(self, symbols: Iterable[str]) -> None:
        """Add ``symbols`` (NSE trading symbols) to the subscription."""
        ...

    def subscribed(self) -> frozenset[str]:
        """Return the subscribed symbols."""
        ...

    def latest_quote(self, symbol: str) -> Quote | None:
        """Return ``symbol``'s latest price and day so far, or None before its first tick."""
        ...

    def advance(self, now: datetime) -> list[Tick]:
        """Return the ticks due up to wall time ``now`` (aware), oldest first."""
        ...

    def progress(self) -> FeedProgress:
        """Return mode, state, session and simulated time."""
        ...
