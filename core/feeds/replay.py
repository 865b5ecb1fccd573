"""ReplayFeed: real trading days of stored 5-minute bars played back as ticks.

Only bars that start on the 09:15-15:25 IST grid of a trading day are played (75 a session);
pre-open (09:05), closing-session (15:30 and later), off-grid and holiday bars are ignored even
if the store holds them. Each bar becomes four ticks at fixed offsets into the bar:

=========  =========================================================
Offset     Price
=========  =========================================================
+0 s       open
+100 s     low for a rising bar (close >= open), else high
+200 s     the other extreme
+299 s     close (the last tick of a session is 15:29:59 IST)
=========  =========================================================

The day's volume accumulates a quarter of the bar's volume per tick; ``prev_close`` is the
symbol's last close of the previous stored session.

The replay loops over the sessions in which at least half of the symbols have bars (if there is
none, the sessions with the most symbols): a symbol imported with bars of another period (a
2010-2019 file next to the 2021 sample) never stretches the loop over years in which the others
get no ticks. Such a symbol gets no ticks itself; :attr:`ReplayFeed.idle_symbols` names it and
:meth:`ReplayFeed.progress` says so.

Two modes:

* ``replay``: sessions back to back from the start session at ``speed`` simulated seconds per
  wall second (37.5 plays a 6 h 15 min session in 10 minutes); after the last session it loops
  to the start session. The first :meth:`ReplayFeed.advance` only sets the wall-clock baseline.
* ``wallclock``: the start session's bar at the current IST time of day, replayed every trading
  day. Outside 09:15-15:30 IST (and on weekends and holidays) it reports ``closed`` and emits
  nothing; starting mid-session it first catches up from 09:15.

The feed does no I/O: the caller passes bars in and wall times to :meth:`advance`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import pandas as pd

from core.clock import IST, MARKET_CLOSE, MARKET_OPEN, is_trading_day, to_ist
from core.domain import Quote, Tick
from core.errors import ConfigError
from core.feeds.base import FeedMode, FeedProgress, FeedRunState

REPLAY_SOURCE = "replay:sample 5-minute"
BAR_SECONDS = 300
SLOTS_PER_SESSION = 75  # 09:15, 09:20 ... 15:25
SESSION_SECONDS = BAR_SECONDS * SLOTS_PER_SESSION  # 22,500 s = 09:15-15:30
TICK_OFFSETS = (0, 100, 200, 299)
_OPEN_MINUTE = MARKET_OPEN.hour * 60 + MARKET_OPEN.minute


@dataclass(frozen=True, slots=True)
class _Bar:
    slot: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


@dataclass(frozen=True, slots=True)
class _Due:
    """A tick of the current session: seconds after 09:15, symbol, price, day volume."""

    offset: int
    symbol: str
    price: Decimal
    day_volume: int


@dataclass(slots=True)
class _Day:
    open: Decimal
    high: Decimal
    low: Decimal
    last: Decimal
    volume: int
    at: datetime
    prev_close: Decimal | None


def session_open_at(day: date) -> datetime:
    """Return 09:15 IST on ``day``."""
    return datetime.combine(day, MARKET_OPEN, tzinfo=IST)


def _price(value: object) -> Decimal:
    # The store reads prices as floats for charts; str() gives back the 4-decimal text exactly.
    return value if isinstance(value, Decimal) else Decimal(str(value))


def session_bars(
    bars: Mapping[str, pd.DataFrame], trading_day: Callable[[date], bool] = is_trading_day
) -> dict[date, dict[str, list[_Bar]]]:
    """Group bars by session, keeping only 09:15-15:25 IST grid bars of trading days."""
    sessions: dict[date, dict[str, list[_Bar]]] = {}
    trades: dict[date, bool] = {}
    for symbol, frame in bars.items():
        if frame.empty:
            continue
        index = pd.DatetimeIndex(frame.index)
        if index.tz is None:
            raise ValueError(f"bars of {symbol} have naive timestamps; pass IST-aware ones")
        local = index.tz_convert(IST)
        minutes = local.hour * 60 + local.minute - _OPEN_MINUTE
        keep = (
            (local.second == 0)
            & (local.microsecond == 0)
            & (minutes % 5 == 0)
            & (minutes >= 0)
            & (minutes < SLOTS_PER_SESSION * 5)
        )
        rows = frame.loc[keep]
        for ts, minute, (o, h, lo, c, v) in zip(
            local[keep],
            minutes[keep],
            rows[["open", "high", "low", "close", "volume"]].itertuples(index=False),
            strict=True,
        ):
            day = ts.date()
            if day not in trades:
                trades[day] = trading_day(day)
            if trades[day]:
                bar = _Bar(minute // 5, _price(o), _price(h), _price(lo), _price(c), int(v))
                sessions.setdefault(day, {}).setdefault(symbol, []).append(bar)
    for per_symbol in sessions.values():
        for symbol_bars in per_symbol.values():
            symbol_bars.sort(key=lambda bar: bar.slot)
    return sessions


def loop_sessions(sessions: Mapping[date, Mapping[str, object]]) -> list[date]:
    """Return the sessions a replay loops over, in order (see the module docs).

    A session is kept when at least half of all the symbols have bars in it; when no session
    qualifies, the sessions with the most symbols are kept.
    """
    symbols = {symbol for per_symbol in sessions.values() for symbol in per_symbol}
    if not sessions:
        return []
    kept = [day for day, per in sessions.items() if 2 * len(per) >= len(symbols)]
    if not kept:
        most = max(len(per) for per in sessions.values())
        kept = [day for day, per in sessions.items() if len(per) == most]
    return sorted(kept)


class ReplayFeed:
    """A :class:`~core.feeds.base.MarketFeed` over stored 5-minute bars (see module docs)."""

    name = "market"
    source = REPLAY_SOURCE

    def __init__(
        self,
        bars: Mapping[str, pd.DataFrame],
        *,
        mode: FeedMode = FeedMode.REPLAY,
        speed: float = 37.5,
        start: date | None = None,
        loop: bool = True,
        trading_day: Callable[[date], bool] = is_trading_day,
    ) -> None:
        """Prepare a replay of ``bars`` (symbol -> frame indexed by aware bar start).

        ``start`` is the first session to play (default: the first session in which the most
        symbols have all 75 bars); ``trading_day`` is the calendar (injectable for tests). The
        loop's sessions are :func:`loop_sessions`'.
        """
        if mode not in (FeedMode.REPLAY, FeedMode.WALLCLOCK):
            raise ConfigError(f"ReplayFeed plays in replay or wallclock mode, not {mode!r}")
        if speed <= 0:
            raise ConfigError(f"replay speed must be above 0 simulated s per wall s; got {speed}")
        stored = session_bars(bars, trading_day)
        if not stored:
            raise ConfigError(
                "no 5-minute bars between 09:15 and 15:25 IST on a trading day are stored; "
                "import the 5-minute sample first"
            )
        self._prev_close = _previous_closes(stored)
        self._sessions = {day: stored[day] for day in loop_sessions(stored)}
        self._dates = sorted(self._sessions)
        self._symbols = sorted({s for per in self._sessions.values() for s in per})
        every = {s for per in stored.values() for s in per}
        self._idle = sorted(every - set(self._symbols))
        self.mode = mode
        self.speed = speed
        self._loop = loop
        self._trading_day = trading_day
        self._start = self._start_index(start)
        self._subscribed: set[str] = set()
        self._schedule_key: tuple[int, frozenset[str]] | None = None
        self._offsets: list[int] = []
        self._dues: list[_Due] = []
        self._day: dict[str, _Day] = {}
        self._index = self._start
        self._offset = 0.0
        self._last_wall: datetime | None = None
        self._wall_date: date | None = None
        self._state = FeedRunState.RUNNING

    # -- what the store holds -------------------------------------------------------------
    @property
    def symbols(self) -> list[str]:
        """Return every symbol with playable bars."""
        return list(self._symbols)

    @property
    def sessions(self) -> list[date]:
        """Return the sessions of one replay cycle, in play order (start session first)."""
        return self._dates[self._start :]

    @property
    def idle_symbols(self) -> list[str]:
        """Return the symbols with bars only outside the loop's sessions: they get no ticks."""
        return list(self._idle)

    def idle_note(self) -> str:
        """Return why some symbols get no ticks ('' when every symbol is played)."""
        if not self._idle:
            return ""
        named = ", ".join(self._idle[:3]) + (
            f" and {len(self._idle) - 3} more" if len(self._idle) > 3 else ""
        )
        return (
            f"no ticks for {named}: no 5-minute bars in the replayed sessions "
            f"({self._dates[0]} to {self._dates[-1]})"
        )

    def _start_index(self, start: date | None) -> int:
        if start is not None:
            for i, day in enumerate(self._dates):
                if day >= start:
                    return i
            raise ConfigError(
                f"REPLAY_START {start} is after the last stored 5-minute session "
                f"{self._dates[-1]}; choose a date from {self._dates[0]} to {self._dates[-1]}"
            )
        full = [
            sum(len(bars) == SLOTS_PER_SESSION for bars in self._sessions[day].values())
            for day in self._dates
        ]
        return full.index(max(full))

    # -- MarketFeed -----------------------------------------------------------------------
    def subscribe(self, symbols: Iterable[str]) -> None:
        """Add ``symbols``; subscribe before advancing (a late symbol starts mid-session)."""
        self._subscribed.update(s.upper() for s in symbols)

    def subscribed(self) -> frozenset[str]:
        """Return the subscribed symbols."""
        return frozenset(self._subscribed)

    def latest_quote(self, symbol: str) -> Quote | None:
        """Return the symbol's price and day so far, or None before its first tick today."""
        day = self._day.get(symbol.upper())
        if day is None:
            return None
        return Quote(
            symbol=symbol.upper(),
            ltp=day.last,
            prev_close=day.prev_close,
            day_open=day.open,
            day_high=day.high,
            day_low=day.low,
            volume=day.volume,
            quote_time=day.at,
            source=self.source,
        )

    def advance(self, now: datetime) -> list[Tick]:
        """Return the ticks due up to wall time ``now``, oldest first."""
        if now.tzinfo is None:
            raise ValueError(f"naive datetime {now.isoformat()} refused; pass an aware one")
        if self.mode is FeedMode.WALLCLOCK:
            return self._advance_wallclock(now)
        if self._state is FeedRunState.FINISHED:
            return []
        if self._last_wall is None:
            self._last_wall = now
            return []
        elapsed = max((now - self._last_wall).total_seconds(), 0.0)
        self._last_wall = now
        return self.play(elapsed * self.speed)

    def progress(self) -> FeedProgress:
        """Return mode, state, session and simulated time."""
        day = self._dates[self._index]
        simulated = session_open_at(day) + timedelta(seconds=self._offset)
        position = f"{self._index - self._start + 1} of {len(self.sessions)}"
        if self._state is FeedRunState.FINISHED:
            message = f"Replay finished after session {day}"
        elif self.mode is FeedMode.REPLAY:
            message = f"Replaying session {day} ({position}) at {self.speed:g}x"
        elif self._state is FeedRunState.CLOSED:
            message = (
                f"Market closed (09:15-15:30 IST on trading days); session {day} is replayed "
                "on the IST clock while it is open"
            )
        else:
            message = f"Following the IST clock with session {day}"
        if self._idle:
            message = f"{message}; {self.idle_note()}"
        return FeedProgress(self.mode, self._state, day, simulated, message)

    # -- replay mechanics -----------------------------------------------------------------
    def play(self, simulated_seconds: float) -> list[Tick]:
        """Move the simulated clock on by ``simulated_seconds`` and return the ticks passed."""
        ticks: list[Tick] = []
        remaining = simulated_seconds
        while self._state is not FeedRunState.FINISHED:
            end = self._offset + remaining
            if end < SESSION_SECONDS:
                ticks += self._emit(self._offset, end)
                self._offset = end
                break
            ticks += self._emit(self._offset, SESSION_SECONDS)
            self._offset = float(SESSION_SECONDS)
            remaining = end - SESSION_SECONDS
            if not self._next_session():
                self._state = FeedRunState.FINISHED
        return ticks

    def seek(self, moment: datetime) -> None:
        """Resume at simulated ``moment`` (a status row's), rebuilding the day so far silently.

        A moment outside the stored sessions resumes at the next session on or after its date,
        or at the start session when there is none. In wallclock mode the position follows the
        clock, so seeking does nothing.
        """
        if self.mode is FeedMode.WALLCLOCK:
            return
        local = to_ist(moment)
        index = next(
            (i for i in range(self._start, len(self._dates)) if self._dates[i] >= local.date()),
            self._start,
        )
        self._begin_session(index)
        if self._dates[index] == local.date():
            target = (local - session_open_at(local.date())).total_seconds()
            target = min(max(target, 0.0), float(SESSION_SECONDS))
            self._emit(0.0, target)
            self._offset = target
        self._last_wall = None
        self._state = FeedRunState.RUNNING

    def _advance_wallclock(self, now: datetime) -> list[Tick]:
        local = to_ist(now)
        if self._wall_date != local.date():  # each wall day replays the session from 09:15
            self._wall_date = local.date()
            self._begin_session(self._start)
        if not self._trading_day(local.date()):
            self._state = FeedRunState.CLOSED
            return []
        target = (local - session_open_at(local.date())).total_seconds()
        target = min(max(target, 0.0), float(SESSION_SECONDS))
        ticks = self._emit(self._offset, target) if target > self._offset else []
        self._offset = max(self._offset, target)
        is_open = MARKET_OPEN <= local.time() < MARKET_CLOSE
        self._state = FeedRunState.RUNNING if is_open else FeedRunState.CLOSED
        return ticks

    def _begin_session(self, index: int) -> None:
        self._index = index
        self._offset = 0.0
        self._day = {}

    def _next_session(self) -> bool:
        if self._index + 1 < len(self._dates):
            self._begin_session(self._index + 1)
        elif self._loop:
            self._begin_session(self._start)
        else:
            return False
        return True

    def _schedule(self) -> tuple[list[int], list[_Due]]:
        key = (self._index, frozenset(self._subscribed))
        if key != self._schedule_key:
            per_symbol = self._sessions[self._dates[self._index]]
            dues: list[_Due] = []
            for symbol in sorted(self._subscribed & per_symbol.keys()):
                dues += _bar_ticks(symbol, per_symbol[symbol])
            dues.sort(key=lambda due: (due.offset, due.symbol))
            self._schedule_key = key
            self._dues = dues
            self._offsets = [due.offset for due in dues]
        return self._offsets, self._dues

    def _emit(self, start: float, end: float) -> list[Tick]:
        """Apply and return the ticks with offsets in [start, end) of the current session."""
        offsets, dues = self._schedule()
        day = self._dates[self._index]
        opened = session_open_at(day)
        ticks = []
        for due in dues[bisect_left(offsets, start) : bisect_left(offsets, end)]:
            at = opened + timedelta(seconds=due.offset)
            state = self._day.get(due.symbol)
            if state is None:
                prev = self._prev_close.get((day, due.symbol))
                self._day[due.symbol] = _Day(
                    due.price, due.price, due.price, due.price, due.day_volume, at, prev
                )
            else:
                state.high = max(state.high, due.price)
                state.low = min(state.low, due.price)
                state.last = due.price
                state.volume = due.day_volume
                state.at = at
            ticks.append(Tick(due.symbol, at, due.price, due.day_volume))
        return ticks


def _previous_closes(
    sessions: Mapping[date, Mapping[str, list[_Bar]]],
) -> dict[tuple[date, str], Decimal]:
    """Return (session, symbol) -> the symbol's last close of its previous stored session."""
    result: dict[tuple[date, str], Decimal] = {}
    last: dict[str, Decimal] = {}
    for day in sorted(sessions):
        for symbol in sessions[day]:
            if symbol in last:
                result[(day, symbol)] = last[symbol]
        for symbol, symbol_bars in sessions[day].items():
            last[symbol] = symbol_bars[-1].close
    return result


def _bar_ticks(symbol: str, bars: list[_Bar]) -> list[_Due]:
    """Return a session's ticks of one symbol: four a bar, volume accumulating."""
    dues = []
    cumulative = 0
    for bar in bars:
        rising = bar.close >= bar.open
        path = (bar.open, *((bar.low, bar.high) if rising else (bar.high, bar.low)), bar.close)
        base = bar.slot * BAR_SECONDS
        for k, (offset, price) in enumerate(zip(TICK_OFFSETS, path, strict=True)):
            dues.append(_Due(base + offset, symbol, price, cumulative + bar.volume * (k + 1) // 4))
        cumulative += bar.volume
    return dues
