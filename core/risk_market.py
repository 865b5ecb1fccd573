"""Market figures the risk gate needs, from stored daily bars: ATR, correlations, the regime.

Daily bars change once a day, so each figure is computed once per IST day and process and then
served from memory (the gate's "warm state"):

- **ATR(14)** of a symbol's daily bars, in rupees: the stop distance when an order has no stop.
- **60-day correlation** of daily close-to-close returns between two symbols, over the dates both
  have bars (at least 20 common returns, else unknown).
- **Market regime**: :func:`engines.regime.explain` on an equal-weighted index of every symbol
  with daily bars (each day's index return is the mean of the symbols' returns; its high, low
  and open are the means of their ratios to the previous close). NIFTY itself is not in the
  sample data; an equal-weighted index of 40 of its members moves with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
from sqlalchemy import select

from core.clock import IST, now_ist, to_ist
from core.domain import Interval
from db.engine import Database
from db.models import BarRow, InstrumentRow
from engines.features import atr as atr_series
from engines.regime import explain
from engines.signal_types import Regime

#: Daily bars read per symbol (the last ones stored): ATR, the 60-day window and the regime.
HISTORY_BARS = 260
CORRELATION_DAYS = 60
MIN_COMMON_RETURNS = 20
MIN_INDEX_MEMBERS = 5


@dataclass(frozen=True, slots=True)
class SymbolFigures:
    """One symbol's daily-bar figures for a day."""

    atr: Decimal | None
    returns: pd.Series  # daily close-to-close returns, the last CORRELATION_DAYS, by date


@dataclass(frozen=True, slots=True)
class MarketRegime:
    """The market regime today and why (None: too little data)."""

    regime: Regime | None
    reason: str
    members: int


class MarketFigures:
    """Per-day caches of ATR, returns, sectors and the market regime; thread-safe."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = now_ist) -> None:
        """Read bars from ``db``; "today" is ``clock()``'s IST date."""
        self.db = db
        self.clock = clock
        self._lock = threading.Lock()
        self._day: date | None = None
        self._symbols: dict[str, SymbolFigures] = {}
        self._regime: MarketRegime | None = None
        self._sectors: dict[str, str | None] = {}
        self._pairs: dict[tuple[str, str], float] = {}

    def _today(self) -> date:
        day = to_ist(self.clock()).date()
        if day != self._day:
            self._day, self._symbols, self._regime, self._sectors = day, {}, None, {}
            self._pairs = {}
        return day

    def sector(self, symbol: str) -> str | None:
        """Return the symbol's sector from the instrument master (None if unknown)."""
        with self._lock:
            self._today()
            if not self._sectors:
                with self.db.transaction() as session:
                    self._sectors = dict(session.execute(
                        select(InstrumentRow.symbol, InstrumentRow.sector)).all())
            return self._sectors.get(symbol)

    def figures(self, symbol: str) -> SymbolFigures:
        """Return ATR(14) and recent returns of ``symbol`` (empty when it has no bars)."""
        with self._lock:
            day = self._today()
            cached = self._symbols.get(symbol)
            if cached is None:
                cached = self._symbols[symbol] = self._load(symbol, day)
            return cached

    def _bars(self, symbol: str, day: date) -> pd.DataFrame:
        """Return the symbol's last HISTORY_BARS daily bars up to ``day`` (oldest first)."""
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=IST)
        with self.db.transaction() as session:
            rows = session.execute(
                select(BarRow.ts, BarRow.open, BarRow.high, BarRow.low, BarRow.close,
                       BarRow.volume)
                .join(InstrumentRow, InstrumentRow.id == BarRow.instrument_id)
                .where(InstrumentRow.symbol == symbol, BarRow.interval == Interval.D1.value,
                       BarRow.ts < end)
                .order_by(BarRow.ts.desc()).limit(HISTORY_BARS)).all()
        frame = pd.DataFrame(rows[::-1], columns=["ts", "open", "high", "low", "close",
                                                  "volume"])
        if frame.empty:
            return frame
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_convert(IST)
        for column in ("open", "high", "low", "close", "volume"):
            frame[column] = frame[column].astype(float)
        return frame.set_index("ts")

    def _load(self, symbol: str, day: date) -> SymbolFigures:
        bars = self._bars(symbol, day)
        if len(bars) < 2:
            return SymbolFigures(None, pd.Series(dtype=float))
        value = float(atr_series(bars).iloc[-1]) if len(bars) > 15 else float("nan")
        closes = bars["close"]
        closes.index = closes.index.date
        returns = closes.pct_change().dropna().iloc[-CORRELATION_DAYS:]
        atr = None if np.isnan(value) else Decimal(str(round(value, 4)))
        return SymbolFigures(atr, returns)

    def correlations(self, symbol: str, others: Iterable[str]) -> dict[str, float]:
        """Return the 60-day return correlation of ``symbol`` with each of ``others`` it can.

        Each pair is computed once a day; pairs without enough common days are left out.
        """
        out: dict[str, float] = {}
        for other in others:
            if other == symbol:
                continue
            pair = (symbol, other) if symbol < other else (other, symbol)
            value = self._pairs.get(pair) if self._day == to_ist(self.clock()).date() else None
            if value is None:
                value = self._correlation(*pair)
                with self._lock:
                    self._today()
                    self._pairs[pair] = value
            if not np.isnan(value):
                out[other] = value
        return out

    def _correlation(self, first: str, second: str) -> float:
        both = pd.concat([self.figures(first).returns, self.figures(second).returns], axis=1,
                         join="inner").dropna()
        if len(both) < MIN_COMMON_RETURNS:
            return float("nan")
        value = float(np.corrcoef(both.iloc[:, 0], both.iloc[:, 1])[0, 1])
        return value if np.isnan(value) else round(value, 4)

    def regime(self) -> MarketRegime:
        """Return today's market regime of the equal-weighted index (computed once a day)."""
        with self._lock:
            day = self._today()
            if self._regime is None:
                self._regime = self._market_regime(day)
            return self._regime

    def _market_regime(self, day: date) -> MarketRegime:
        with self.db.transaction() as session:
            symbols = list(session.scalars(
                select(InstrumentRow.symbol).where(InstrumentRow.id.in_(
                    select(BarRow.instrument_id).where(BarRow.interval == Interval.D1.value)
                    .distinct()))))
        ratios: dict[str, list[pd.Series]] = {"open": [], "high": [], "low": [], "close": []}
        for symbol in symbols:
            bars = self._bars(symbol, day)
            if len(bars) < 2:
                continue
            previous = bars["close"].shift(1)
            for column, parts in ratios.items():
                part = (bars[column] / previous).iloc[1:]
                part.index = part.index.normalize()
                parts.append(part)
        members = len(ratios["close"])
        if members < MIN_INDEX_MEMBERS:
            return MarketRegime(None, f"only {members} symbols have daily bars; the market "
                                      f"regime needs {MIN_INDEX_MEMBERS}", members)
        means = {c: pd.concat(parts, axis=1).mean(axis=1).sort_index()
                 for c, parts in ratios.items()}
        level = means["close"].cumprod() * 1000.0
        prior = level.shift(1).fillna(1000.0)
        index = pd.DataFrame({"open": prior * means["open"], "high": prior * means["high"],
                              "low": prior * means["low"], "close": level,
                              "volume": 0.0}).dropna()
        index["high"] = index[["open", "high", "low", "close"]].max(axis=1)
        index["low"] = index[["open", "high", "low", "close"]].min(axis=1)
        regime, reason = explain(index)
        return MarketRegime(regime, f"equal-weighted index of {members} stocks: {reason}",
                            members)
