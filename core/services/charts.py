"""Chart data: stored bars of one symbol at an interval, with indicators, trade markers and notes.

The Chart page, and later the bot's chart images, call :meth:`ChartService.chart`. Reads are
fast on repeat: loaded bars sit in an in-process cache for ``BAR_CACHE_TTL_SECONDS``, keyed by
database, instrument, interval and the loaded range; the indicators are recomputed on every call
(TA-Lib takes well under a millisecond for years of bars).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import IST
from core.domain import Actor, Instrument, Interval, parse_choice
from core.errors import NotFound, ValidationError
from core.marketdata import store
from core.services.base import ServiceBase
from db.models import BarRow
from engines import indicators
from engines.bars import normal_market, resample_ohlcv

#: Overlay and panel names :meth:`ChartService.chart` accepts, with the columns each adds.
OVERLAY_COLUMNS: dict[str, tuple[str, ...]] = {
    "ema20": ("ema20",),
    "ema50": ("ema50",),
    "vwap": ("vwap",),
    "bollinger": ("bb_mid", "bb_upper", "bb_lower"),
    "rsi": ("rsi",),
    "macd": ("macd", "macd_signal", "macd_hist"),
}
OVERLAY_LABELS = {
    "ema20": "EMA 20",
    "ema50": "EMA 50",
    "vwap": "VWAP",
    "bollinger": "Bollinger (20, 2)",
    "rsi": "RSI (14)",
    "macd": "MACD (12, 26, 9)",
}
INTERVAL_LABELS = {Interval.M5: "5-minute", Interval.D1: "daily", Interval.W1: "weekly"}
#: Bars loaded before the shown range so EMA/RSI/MACD have settled (EMA 50 starts within
#: ``(49/51) ** 300``, ~6e-6 of its seeding gap, i.e. far below the 0.05 tick).
WARMUP_BARS = 300
DEFAULT_DAILY_SPAN = timedelta(days=365)
DEFAULT_INTRADAY_SESSIONS = 5
BAR_CACHE_TTL_SECONDS = 60.0
#: 5-minute bars in a normal-market session (09:15-15:30 IST).
SESSION_BARS = 75
BAR_CACHE_SIZE = 64
UNADJUSTED_NOTE = (
    "5-minute bars are not adjusted for splits/bonuses: prices before a corporate action are not "
    "comparable with later ones, nor with the (adjusted) daily chart."
)


@dataclass(frozen=True, slots=True)
class ChartMarker:
    """One of the user's trades (or, later, a signal) drawn on the price chart."""

    time: datetime
    side: str
    price: Decimal
    quantity: int
    label: str


@dataclass(frozen=True, slots=True)
class ChartData:
    """What the Chart page draws.

    ``frame``: float OHLCV plus the requested indicator columns (see ``OVERLAY_COLUMNS``),
    indexed by IST bar start, oldest first; empty when nothing is stored in the range.
    ``start``/``end``: the dates shown (inclusive), after defaults; ``available``: the first
    and last dates stored for this symbol and interval, or None if none are.
    """

    instrument: Instrument
    interval: Interval
    start: date | None
    end: date | None
    available: tuple[date, date] | None
    frame: pd.DataFrame
    markers: list[ChartMarker] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """Return e.g. 'RELIANCE · daily'."""
        return f"{self.instrument.symbol} · {INTERVAL_LABELS[self.interval]}"

    def to_csv(self) -> str:
        """Return the shown bars and indicators as CSV, times in IST."""
        return self.frame.to_csv(index_label="ts_ist", float_format="%.4f")


class _TtlLru:
    """A small thread-safe LRU of read-only DataFrames whose entries expire after ``ttl`` s."""

    def __init__(self, size: int, ttl: float) -> None:
        self.size, self.ttl = size, ttl
        self._items: OrderedDict[tuple[object, ...], tuple[float, pd.DataFrame]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> pd.DataFrame | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if time.monotonic() - item[0] > self.ttl:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: tuple[object, ...], frame: pd.DataFrame) -> None:
        with self._lock:
            self._items[key] = (time.monotonic(), frame)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_BARS = _TtlLru(BAR_CACHE_SIZE, BAR_CACHE_TTL_SECONDS)


def clear_bar_cache() -> None:
    """Forget cached bars (call after importing bars so charts show them at once)."""
    _BARS.clear()


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=IST)


def _ist_date(moment: datetime) -> date:
    return moment.astimezone(IST).date()


def _parse_overlays(overlays: frozenset[str]) -> list[str]:
    unknown = sorted(set(overlays) - OVERLAY_COLUMNS.keys())
    if unknown:
        raise ValidationError(
            f"Unknown overlay {', '.join(map(repr, unknown))}; choose from "
            f"{', '.join(OVERLAY_COLUMNS)}"
        )
    return [name for name in OVERLAY_COLUMNS if name in overlays]


def _add_indicators(frame: pd.DataFrame, wanted: list[str]) -> pd.DataFrame:
    """Return ``frame`` with the smoothed indicators of ``wanted`` (VWAP excluded) added."""
    close = frame["close"]
    columns: dict[str, pd.Series] = {}
    if "ema20" in wanted:
        columns["ema20"] = indicators.ema(close, 20)
    if "ema50" in wanted:
        columns["ema50"] = indicators.ema(close, 50)
    if "bollinger" in wanted:
        bands = indicators.bollinger(close, 20, 2.0)
        columns.update(bb_mid=bands.mid, bb_upper=bands.upper, bb_lower=bands.lower)
    if "rsi" in wanted:
        columns["rsi"] = indicators.rsi(close, 14)
    if "macd" in wanted:
        result = indicators.macd(close, 12, 26, 9)
        columns.update(macd=result.macd, macd_signal=result.signal, macd_hist=result.hist)
    return frame.assign(**columns) if columns else frame


class ChartService(ServiceBase):
    """Bars, indicators and markers for the Chart page; any logged-in role may read them."""

    def symbols(self, actor: Actor) -> list[str]:
        """Return the symbols of every active instrument, alphabetically."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            return [i.symbol for i in store.all_instruments(session)]

    def chart(
        self,
        actor: Actor,
        symbol: str,
        interval: str,
        start: date | None = None,
        end: date | None = None,
        overlays: frozenset[str] = frozenset(),
    ) -> ChartData:
        """Return ``symbol``'s bars at ``interval`` from ``start`` to ``end`` (inclusive dates).

        Parameters
        ----------
        actor
            The logged-in user; any role may read charts.
        symbol
            An NSE symbol of the instrument master, e.g. ``"RELIANCE"`` (case-insensitive).
        interval
            ``"5m"`` (stored 5-minute bars, normal market 09:15-15:30 IST only), ``"1d"``
            (stored daily bars) or ``"1w"`` (weekly, resampled from daily bars on read; see
            :func:`engines.bars.resample_ohlcv`). A symbol without daily bars gets its daily
            and weekly bars built from its 5-minute bars (normal market, one per IST day),
            and a note says so.
        start, end
            The dates shown. Defaults: ``end`` = the last stored date (or ``start`` if later);
            ``start`` = 365 days before ``end`` for daily, the first of the last 5 stored
            sessions up to ``end`` for 5-minute, the first stored bar for weekly. Weekly ranges
            snap back to the Monday of ``start``'s week (whole weeks). Indicators are computed
            with up to ``WARMUP_BARS`` earlier bars, then cut to the range.
        overlays
            Names from ``OVERLAY_COLUMNS``: ``ema20``, ``ema50``, ``vwap``, ``bollinger``,
            ``rsi``, ``macd``. VWAP restarts each session on 5-minute bars and is anchored to
            the first shown bar on daily and weekly bars.

        Raises
        ------
        ValidationError
            Unknown symbol, interval or overlay, or ``start`` after ``end``.
        """
        chosen = parse_choice(Interval, interval, "interval")
        wanted = _parse_overlays(overlays)
        if start is not None and end is not None and start > end:
            raise ValidationError(f"Start date ({start}) must be on or before end date ({end})")
        stored = Interval.D1 if chosen is Interval.W1 else chosen
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            inst = store.instrument(session, symbol.strip())
            if inst is None:
                raise NotFound(
                    f"Unknown symbol {symbol.strip().upper()!r} on NSE; pick one of the "
                    "instruments in the master (a household admin adds more on Import data)"
                )
            extent = self._extent(session, inst.id, stored)
            intraday = extent is None and stored is Interval.D1
            if intraday:  # no daily bars: build them from the stored 5-minute bars
                stored = Interval.M5
                extent = self._extent(session, inst.id, stored)
            if extent is None:
                return self._empty(inst, chosen, start, end, None)
            clipped = (start is not None and start < extent[0]) or (
                end is not None and end > extent[1]
            )
            start, end = self._default_range(session, inst.id, chosen, extent, start, end)
            if start > end:  # only when an explicit end precedes the stored data
                return self._empty(inst, chosen, start, end, extent)
            bars = self._load(session, inst.id, stored, chosen, start, end)
        if intraday:
            bars = resample_ohlcv(normal_market(bars), "1d") if len(bars) else bars
        return self._build(inst, chosen, start, end, extent, bars, wanted, clipped, intraday)

    # -- reading ----------------------------------------------------------------------------
    def _extent(
        self, session: Session, instrument_id: int, stored: Interval
    ) -> tuple[date, date] | None:
        first, last = session.execute(
            select(func.min(BarRow.ts), func.max(BarRow.ts)).where(
                BarRow.instrument_id == instrument_id, BarRow.interval == stored.value
            )
        ).one()
        return None if first is None else (_ist_date(first), _ist_date(last))

    def _default_range(
        self,
        session: Session,
        instrument_id: int,
        chosen: Interval,
        extent: tuple[date, date],
        start: date | None,
        end: date | None,
    ) -> tuple[date, date]:
        if end is None:
            end = max(extent[1], start) if start is not None else extent[1]
        if start is None:
            if chosen is Interval.D1:
                start = end - DEFAULT_DAILY_SPAN
            elif chosen is Interval.W1:
                start = extent[0]
            else:
                start = self._last_sessions_start(session, instrument_id, end) or end
        if chosen is Interval.W1:
            start -= timedelta(days=start.weekday())
        return start, end

    def _last_sessions_start(self, session: Session, instrument_id: int, end: date) -> date | None:
        """Return the first of the last ``DEFAULT_INTRADAY_SESSIONS`` stored dates up to ``end``."""
        limit = DEFAULT_INTRADAY_SESSIONS * 100
        while True:
            stamps = session.scalars(
                select(BarRow.ts)
                .where(
                    BarRow.instrument_id == instrument_id,
                    BarRow.interval == Interval.M5.value,
                    BarRow.ts < _midnight(end + timedelta(days=1)),
                )
                .order_by(BarRow.ts.desc())
                .limit(limit)
            ).all()
            days = sorted({_ist_date(ts) for ts in stamps}, reverse=True)
            if len(days) > DEFAULT_INTRADAY_SESSIONS or len(stamps) < limit:
                return days[:DEFAULT_INTRADAY_SESSIONS][-1] if days else None
            limit *= 4

    def _load(
        self,
        session: Session,
        instrument_id: int,
        stored: Interval,
        chosen: Interval,
        start: date,
        end: date,
    ) -> pd.DataFrame:
        """Load [start, end] plus a warm-up margin of earlier bars, through the cache."""
        per_bar = 5 if chosen is Interval.W1 else 1  # weekly: ~5 daily bars a week
        if stored is not chosen and stored is Interval.M5:
            per_bar *= SESSION_BARS  # daily or weekly bars built from 5-minute bars
        load_start = session.scalar(
            select(BarRow.ts)
            .where(
                BarRow.instrument_id == instrument_id,
                BarRow.interval == stored.value,
                BarRow.ts < _midnight(start),
            )
            .order_by(BarRow.ts.desc())
            .offset(WARMUP_BARS * per_bar - 1)
            .limit(1)
        )
        lower = load_start.astimezone(IST) if load_start is not None else None
        upper = _midnight(end + timedelta(days=1))
        key = (self.db.url, instrument_id, stored.value, lower, upper)
        bars = _BARS.get(key)
        if bars is None:
            bars = store.load_bars(session, instrument_id, stored, lower, upper)
            _BARS.put(key, bars)
        return bars

    def _markers(self, instrument: Instrument, start: date, end: date) -> list[ChartMarker]:
        """Return the user's trades on ``instrument`` in the range.

        The paper desk does not record trades yet (issue 4); signals follow from their issue.
        """
        return []

    # -- shaping ----------------------------------------------------------------------------
    def _empty(
        self,
        inst: Instrument,
        chosen: Interval,
        start: date | None,
        end: date | None,
        extent: tuple[date, date] | None,
    ) -> ChartData:
        frame = pd.DataFrame(
            {c: pd.Series(dtype="float64") for c in store.BAR_COLUMNS},
            index=pd.DatetimeIndex([], tz=IST, name="ts"),
        )
        what = f"No bars stored for {inst.symbol} at {INTERVAL_LABELS[chosen]}"
        if extent is not None:
            what += f" between {start} and {end} (stored: {extent[0]} to {extent[1]})"
        return ChartData(inst, chosen, start, end, extent, frame, [], [what])

    def _build(
        self,
        inst: Instrument,
        chosen: Interval,
        start: date,
        end: date,
        extent: tuple[date, date],
        bars: pd.DataFrame,
        wanted: list[str],
        clipped: bool,
        intraday: bool = False,
    ) -> ChartData:
        notes: list[str] = []
        if intraday:
            notes.append(
                f"No daily bars are stored for {inst.symbol}: its {INTERVAL_LABELS[chosen]} "
                "bars are built from its 5-minute bars (normal market 09:15–15:30 IST, one bar "
                "per IST day), which are not adjusted for splits/bonuses."
            )
        if chosen is Interval.M5:
            notes.append(UNADJUSTED_NOTE)
            regular = normal_market(bars)
            shown_from = _midnight(start)
            dropped = int((bars.index >= shown_from).sum() - (regular.index >= shown_from).sum())
            if dropped:
                notes.append(
                    f"{dropped} pre-open or closing-session bars (outside the normal market "
                    "09:15–15:30 IST) are left out."
                )
            bars = regular
        elif chosen is Interval.W1:
            bars = resample_ohlcv(bars, "1w")
            notes.append(
                "Weekly bars are resampled from daily bars: Monday–Friday weeks, each labelled "
                "by its first trading day."
            )
        full = _add_indicators(bars, wanted)
        frame = full.iloc[int(full.index.searchsorted(_midnight(start))) :].copy()
        if frame.empty:
            return self._empty(inst, chosen, start, end, extent)
        if "vwap" in wanted:
            anchor: Literal["session", "start"] = "session" if chosen is Interval.M5 else "start"
            where = 5 + sum(len(OVERLAY_COLUMNS[n]) for n in wanted[: wanted.index("vwap")])
            vwap = indicators.vwap(
                frame["high"], frame["low"], frame["close"], frame["volume"], anchor
            )
            frame.insert(where, "vwap", vwap)  # in OVERLAY_COLUMNS order, like the others
            notes.append(
                "VWAP restarts each session."
                if anchor == "session"
                else f"VWAP is anchored to the first bar shown ({frame.index[0].date()})."
            )
        notes.extend(_warmup_notes(frame, wanted))
        if clipped:
            stored = ("5-minute" if intraday else "daily" if chosen is Interval.W1
                      else INTERVAL_LABELS[chosen])
            notes.append(
                f"Stored {stored} bars of {inst.symbol} run from {extent[0]} to {extent[1]}; "
                "the range asked for reaches beyond them."
            )
        markers = self._markers(inst, start, end)
        return ChartData(inst, chosen, start, end, extent, frame, markers, notes)


def _warmup_notes(frame: pd.DataFrame, wanted: list[str]) -> list[str]:
    """Say which indicators are blank at the start for lack of earlier stored bars (one note)."""
    blanks = []
    for name in wanted:
        missing = frame[OVERLAY_COLUMNS[name][-1]].isna().to_numpy()
        blank = len(missing) if missing.all() else int(missing.argmin())
        if blank:
            blanks.append(f"{OVERLAY_LABELS[name]} for the first {blank}")
    if not blanks:
        return []
    return [
        "Too few earlier bars are stored to compute every indicator from the first bar shown: "
        f"{'; '.join(blanks)} bars are blank."
    ]
