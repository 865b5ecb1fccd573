"""The market feed as the worker runs it: step the feed, write quotes and the feed's status.

The worker calls :meth:`FeedService.step` every second. Each step advances the feed by the wall
time since the previous step and, in one transaction, upserts a ``quotes`` row for every symbol
that ticked and the ``feed_status`` row the app reads (source, simulated time, lag). A restarted
worker resumes a replay where the status row says it was. The app reads :meth:`status` and
:meth:`quotes`; the paper broker and MTM read quotes the same way.

The worker also calls :meth:`FeedService.check_stalled` every second. During NSE market hours
(09:15-15:30 IST on trading days, by the wall clock) with ``FEED_MODE`` on, a feed whose last
tick is more than ``FEED_STALL_SECONDS`` old (counted from 09:15 at the earliest) is stalled:
one ``feed_stalled`` alert per household goes to the outbox, its dedupe key naming the stall
episode (the last tick before the silence), so a long stall alerts once, a check that runs
twice or a restarted worker adds nothing, and a later stall alerts again. When ticks resume,
this process writes a ``feed_recovered`` note for the episode it alerted. Outside market
hours, on holidays and with the feed off nothing is checked: a replay playing in the evening
is not watched (the app still shows it as stalled, as :meth:`FeedState.is_stalled` says).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core import alerts
from core.clock import IST, MARKET_CLOSE, MARKET_OPEN, format_ist, is_trading_day, now_ist, to_ist
from core.config import Settings
from core.domain import FeedState, Interval, Quote
from core.errors import TradingError
from core.feeds.base import FeedMode, FeedProgress, FeedRunState
from core.feeds.replay import REPLAY_SOURCE, ReplayFeed
from core.marketdata.quotes import FEED_NAME, read_feed_state, read_quotes, to_feed_state
from core.marketdata.store import load_bars
from core.services.base import ServiceBase
from core.services.jobs import log_failure
from db.engine import Database
from db.models import BarRow, FeedStatusRow, HouseholdRow, InstrumentRow, QuoteRow

log = logging.getLogger("sher.feed")

ERROR_RETRY_SECONDS = 30  # a failing feed is rebuilt at most this often, not every second
BARS_CHECK_SECONDS = 30  # how often a running feed looks for newly imported 5-minute bars
_MESSAGE_CHARS = 300
STALLED_KIND = "feed_stalled"
RECOVERED_KIND = "feed_recovered"


@dataclass(frozen=True, slots=True)
class StallCheck:
    """What one :meth:`FeedService.check_stalled` saw and wrote."""

    watched: bool  # market hours on a trading day with the feed on: the feed should tick
    stalled: bool
    since: datetime | None  # IST: the last tick (or 09:15 today) the silence counts from
    silent_seconds: float  # wall seconds since ``since`` (0 when not watched)
    alerts: int  # feed_stalled alerts added now (0 when this episode already alerted)
    recoveries: int  # feed_recovered notes added now
    reason: str


class FeedService(ServiceBase):
    """Run the replay feed in the worker and report it to the app."""

    def __init__(
        self, db: Database, settings: Settings, clock: Callable[[], datetime] = now_ist
    ) -> None:
        """Bind to ``db``; ``clock`` gives the wall time of a step (injectable for tests)."""
        super().__init__(db, settings)
        self._clock = clock
        self._feed: ReplayFeed | None = None
        self._ids: dict[str, int] = {}
        self._retry_at: datetime | None = None  # after an error, rebuild no sooner than this
        self._last_error = ""
        self._bars_mark: tuple[int, datetime | None] | None = None  # 5m bars when built
        self._checked_at: datetime | None = None
        self._stall: datetime | None = None  # the episode this process alerted, until it ends

    # -- the worker's side ----------------------------------------------------------------
    def step(self, now: datetime | None = None) -> FeedState:
        """Advance the feed to wall time ``now`` and record quotes and status; return the status.

        A domain error (no bars, a bad REPLAY_START, a date beyond the calendar) is recorded as
        state ``error`` with its message and not raised; anything else is raised after dropping
        the in-memory feed, so the next step resumes from the last committed status.
        """
        now = now or self._clock()
        mode = self.settings.feed_mode
        if mode == "off":
            return self._record_idle(now, FeedRunState.STOPPED, "FEED_MODE is off")
        if self._feed is None and self._retry_at is not None and now < self._retry_at:
            return self._record_idle(now, FeedRunState.ERROR, self._last_error)  # backing off
        try:
            with self.db.transaction() as session:
                if self._feed is not None and self._bars_changed(session, now):
                    log.info("new 5-minute bars stored; rebuilding the market feed")
                    self._feed = None  # rebuilt below, resuming at the saved position
                feed = self._feed or self._build(session)
                if feed is None:
                    message = "No 5-minute bars are stored; import the 5-minute sample first"
                    return self._write_status(session, now, None, 0, message)
                self._feed = feed
                ticks = feed.advance(now)
                self._write_quotes(session, feed, {tick.symbol for tick in ticks}, now)
                return self._write_status(session, now, feed.progress(), len(ticks), None)
        except TradingError as exc:
            self._feed = None
            self._last_error = str(exc)
            self._retry_at = now + timedelta(seconds=ERROR_RETRY_SECONDS)
            log.warning("market feed error (retry in %d s): %s", ERROR_RETRY_SECONDS, exc)
            return self._record_idle(now, FeedRunState.ERROR, str(exc))
        except BaseException:
            self._feed = None
            raise

    def check_stalled(self, now: datetime | None = None,
                      state: FeedState | None = None) -> StallCheck:
        """Alert once per stall episode when the feed is silent in market hours (worker, 1 s).

        See the module docstring for the rule. The alert (kind ``feed_stalled``, severity
        warning, household-wide) and the recovery note commit in one transaction each; a
        database error is logged and reported in the result, never raised, so the worker's
        feed job carries on.

        Parameters
        ----------
        now : datetime, optional
            The wall time to judge at (default the service's clock); aware.
        state : FeedState, optional
            The status :meth:`step` just recorded: while it shows the feed ticking and no
            episode is open, nothing is read or written (the worker's every-second case).

        Returns
        -------
        StallCheck
            Whether the feed was watched and stalled, since when, and what was written.
        """
        now = to_ist(now or self._clock())
        why_not = self._unwatched_reason(now)
        if why_not is not None:
            self._stall = None  # the session is over: the episode ends without a note
            return StallCheck(False, False, None, 0.0, 0, 0, why_not)
        if state is not None and self._stall is None:
            since, silent = _silence(state, now)
            if silent <= self.settings.feed_stall_seconds:
                return StallCheck(True, False, since, silent, 0, 0, "ticking")
        try:
            with self.db.transaction() as session:
                return self._check(session, now)
        except SQLAlchemyError as exc:
            log_failure(log, exc, "could not check the market feed for a stall")
            return StallCheck(True, False, None, 0.0, 0, 0, f"check failed: {exc}"[:200])

    def _unwatched_reason(self, now: datetime) -> str | None:
        """Return why the feed is not expected to tick at ``now`` (IST), or None if it is."""
        if self.settings.feed_mode == "off":
            return "FEED_MODE is off"
        if not is_trading_day(now.date()):
            return f"{now.date()} is not an NSE trading day"
        if not MARKET_OPEN <= now.time() < MARKET_CLOSE:
            return "outside market hours (09:15-15:30 IST)"
        return None

    def _check(self, session: Session, now: datetime) -> StallCheck:
        state = read_feed_state(session)
        since, silent = _silence(state, now)
        limit = self.settings.feed_stall_seconds
        if silent <= limit:
            notes = self._recovered(session, now, silent) if self._stall is not None else 0
            return StallCheck(True, False, since, silent, 0, notes, "ticking")
        detail = "no feed status yet" if state is None else f"state {state.state}" + (
            f": {state.message}" if state.message else "")
        episode = since.isoformat(timespec="microseconds")
        added = 0
        for household_id in session.scalars(select(HouseholdRow.id).order_by(HouseholdRow.id)):
            added += alerts.enqueue(
                session, kind=STALLED_KIND, household_id=household_id, account_id=None,
                severity="warning",
                title=f"Market feed stalled: no tick since {format_ist(since)}",
                body=f"No new price for {silent:.0f} s (limit FEED_STALL_SECONDS={limit}) "
                     f"while the market is open ({detail}). Paper orders do not fill and "
                     "stops are not checked until ticks resume.",
                dedupe_key=f"feed-stalled:{household_id}:{episode}")
        if added:
            log.warning("market feed stalled: no tick since %s (%s)", format_ist(since), detail)
        self._stall = since
        return StallCheck(True, True, since, silent, added, 0, detail)

    def _recovered(self, session: Session, now: datetime, silent: float) -> int:
        """Write the recovery note of the episode this process alerted; end the episode."""
        assert self._stall is not None  # noqa: S101 - called only during an episode
        began, self._stall = self._stall, None
        episode = began.isoformat(timespec="microseconds")
        added = 0
        for household_id in session.scalars(select(HouseholdRow.id).order_by(HouseholdRow.id)):
            added += alerts.enqueue(
                session, kind=RECOVERED_KIND, household_id=household_id, account_id=None,
                severity="info", title="Market feed ticking again",
                body=f"Prices resumed at {format_ist(now - timedelta(seconds=silent))} after "
                     f"a stall that began at {format_ist(began)}.",
                dedupe_key=f"feed-recovered:{household_id}:{episode}")
        log.info("market feed ticking again after the stall since %s", format_ist(began))
        return added

    def stop(self, now: datetime | None = None) -> None:
        """Mark the feed stopped (the worker is shutting down); log database errors only."""
        try:
            self._record_idle(now or self._clock(), FeedRunState.STOPPED, "Worker stopped")
        except SQLAlchemyError:
            log.exception("could not record the feed as stopped")
        self._feed = None

    def reset(self) -> None:
        """Forget the feed's position so the next step starts again at REPLAY_START."""
        with self.db.transaction() as session:
            session.execute(delete(FeedStatusRow).where(FeedStatusRow.name == FEED_NAME))
        self._feed = None

    # -- the app's side -------------------------------------------------------------------
    def status(self) -> FeedState | None:
        """Return the feed's last recorded status, or None if no feed ever ran."""
        with self.db.transaction() as session:
            row = session.get(FeedStatusRow, FEED_NAME)
            return None if row is None else to_feed_state(row)

    def quotes(self) -> dict[str, Quote]:
        """Return the latest quote of every symbol the feed has written."""
        with self.db.transaction() as session:
            return read_quotes(session)

    def summary(self, now: datetime | None = None) -> str:
        """Return a one-line feed status for the sidebar."""
        if self.settings.feed_mode == "off":
            return "Market feed off (FEED_MODE=off)"
        state = self.status()
        if state is None:
            return "Market feed: no status yet (is the worker running?)"
        now = now or self._clock()
        if state.is_stalled(now, self.settings.feed_stall_seconds):
            return f"Market feed stalled: nothing for {state.lag_seconds(now) or 0:.0f} s"
        return f"Market feed {state.state} · simulated {format_ist(state.simulated_at)}"

    # -- internals ------------------------------------------------------------------------
    @staticmethod
    def _bars_now(session: Session) -> tuple[int, datetime | None]:
        count, last = session.execute(
            select(func.count(), func.max(BarRow.ts)).where(BarRow.interval == Interval.M5.value)
        ).one()
        return int(count or 0), last

    def _bars_changed(self, session: Session, now: datetime) -> bool:
        """Every BARS_CHECK_SECONDS, tell whether 5-minute bars were imported since the build."""
        if self._checked_at is not None and (now - self._checked_at).total_seconds() < (
            BARS_CHECK_SECONDS
        ):
            return False
        self._checked_at = now
        return self._bars_now(session) != self._bars_mark

    def _build(self, session: Session) -> ReplayFeed | None:
        with_bars = select(BarRow.instrument_id).where(BarRow.interval == Interval.M5.value)
        rows = session.execute(
            select(InstrumentRow.id, InstrumentRow.symbol).where(
                InstrumentRow.is_active.is_(True), InstrumentRow.id.in_(with_bars.distinct())
            )
        ).all()
        if not rows:
            return None
        self._bars_mark = self._bars_now(session)
        self._retry_at = None
        self._ids = {symbol: ident for ident, symbol in rows}
        bars = {symbol: load_bars(session, ident, Interval.M5) for ident, symbol in rows}
        feed = ReplayFeed(
            bars,
            mode=FeedMode(self.settings.feed_mode),
            speed=self.settings.replay_speed,
            start=self.settings.replay_start,
        )
        feed.subscribe(feed.symbols)
        if feed.idle_symbols:  # once per build, not every tick; the status says it each step
            log.warning("market feed: %s", feed.idle_note())
        status = session.get(FeedStatusRow, FEED_NAME)
        if status is not None and status.simulated_at is not None:
            if status.replay_start != self.settings.replay_start:
                log.info("REPLAY_START changed (%s -> %s); the replay starts again",
                         status.replay_start, self.settings.replay_start)
            elif status.mode == feed.mode:
                feed.seek(status.simulated_at)  # a restart resumes where the feed was
                log.info("market feed resumes at %s", format_ist(status.simulated_at))
        return feed

    def _write_quotes(
        self, session: Session, feed: ReplayFeed, symbols: set[str], now: datetime
    ) -> None:
        """Upsert the quote of every symbol that ticked: one statement, however many."""
        rows = []
        for symbol in sorted(symbols):
            ident, quote = self._ids.get(symbol), feed.latest_quote(symbol)
            if ident is None or quote is None:
                continue
            rows.append({
                "instrument_id": ident, "ltp": quote.ltp, "prev_close": quote.prev_close,
                "day_open": quote.day_open, "day_high": quote.day_high,
                "day_low": quote.day_low, "volume": quote.volume,
                "quote_time": quote.quote_time, "source": quote.source, "updated_at": now,
            })
        if not rows:
            return
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        statement = insert(QuoteRow)
        session.execute(statement.on_conflict_do_update(
            index_elements=[QuoteRow.instrument_id],
            set_={name: statement.excluded[name] for name in rows[0] if name != "instrument_id"},
        ), rows)

    def _write_status(
        self,
        session: Session,
        now: datetime,
        progress: FeedProgress | None,
        ticks: int,
        message: str | None,
        idle: FeedRunState = FeedRunState.STOPPED,
    ) -> FeedState:
        row = session.get(FeedStatusRow, FEED_NAME)
        if row is None:
            row = FeedStatusRow(name=FEED_NAME, ticks=0)
            session.add(row)
        row.source = REPLAY_SOURCE
        row.mode = self.settings.feed_mode
        row.speed = Decimal(str(self.settings.replay_speed)).quantize(Decimal("0.01"))
        row.replay_start = self.settings.replay_start
        row.ticks = (row.ticks or 0) + ticks
        row.updated_at = now
        if progress is None:
            row.state = idle.value
        else:
            row.state = progress.state.value
            row.session_date = progress.session_date
            row.simulated_at = progress.simulated_at
            message = message or progress.message
            if progress.state is FeedRunState.RUNNING:
                # A synthetic feed is never behind its own clock: every running step delivers
                # all that is due, so "last tick" is this step (lag = time since the loop ran).
                row.last_tick_at = now
        row.message = (message or "")[:_MESSAGE_CHARS] or None
        session.flush()
        return to_feed_state(row)

    def _record_idle(self, now: datetime, state: FeedRunState, message: str) -> FeedState:
        with self.db.transaction() as session:
            return self._write_status(session, now, None, 0, message, idle=state)


def _silence(state: FeedState | None, now: datetime) -> tuple[datetime, float]:
    """Return since when the feed has been silent at ``now`` (09:15 at the earliest), in s."""
    opened = datetime.combine(now.date(), MARKET_OPEN, tzinfo=IST)
    last = state.last_tick_at if state is not None else None
    since = max(to_ist(last), opened) if last is not None else opened
    return since, max((now - since).total_seconds(), 0.0)

