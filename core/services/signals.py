"""Signals for pages, jobs and the bot: generate, scan, journal, mark outcomes, measure.

Every signal is computed by the pure engines (:func:`compute_signal`: features and the
calibrated model in :mod:`engines.model`, ensemble, regime, levels in :mod:`engines.signals`)
with the model the registry has in use, and journaled once per symbol, bar and model version in
``signals``. Later daily bars decide each journaled signal's outcome (:meth:`mark_outcomes`, run
by the worker after the close and by the page's refresh); past performance is computed from
those journal rows only. Any logged-in user may view and generate signals; training and
activating models is the registry's admin work (:mod:`core.services.signal_registry`).
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import pandas as pd
from sqlalchemy import Float, func, select, type_coerce, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from threadpoolctl import threadpool_limits

from core.clock import IST, now_ist
from core.config import Settings
from core.domain import Actor, Instrument, Interval
from core.errors import NotFound
from core.marketdata.store import all_instruments, instrument, load_bars
from core.services import signal_views as views
from core.services.base import ServiceBase
from core.services.signal_registry import ModelInUse, ModelRegistry
from core.services.signal_views import Performance
from db.engine import Database
from db.models import BarRow, SignalRow
from engines.features import MIN_BARS, check_history
from engines.model import ModelArtifact, predict, universe_center
from engines.outcomes import FINAL, Outcome, mark
from engines.signal_types import Direction, Evidence, Signal
from engines.signals import build_signal

log = logging.getLogger("sher.signals")

ScanProgress = Callable[[int, int, str], None]
#: Bars a signal is computed from: twice the feature warm-up, so smoothed indicators have
#: converged (engines.features) while a scan reads far fewer rows than the whole history.
SIGNAL_BARS = 2 * MIN_BARS
_SIGNAL_DAYS = SIGNAL_BARS * 7 // 4 + 30  # calendar days that hold SIGNAL_BARS trading days
CHART_BARS_BEFORE = 90
#: Journal rows the Signals page shows and downloads (the newest); it says when there are more.
JOURNAL_ROWS = 500


def compute_signal(symbol: str, bars: pd.DataFrame, artifact: ModelArtifact,
                   trace_id: str | None = None,
                   center: Mapping[str, float] | None = None) -> Signal:
    """Return the signal of ``symbol`` on its last bar (pure: engines only, no I/O).

    ``center`` is the desk universe's mean model score on that bar
    (:func:`engines.model.universe_center`): the calibrator ranks the stock against it, as
    the model was calibrated and is evaluated; None uses the calibrator's stored centre.

    Inference runs on one OpenMP thread: for a single row, XGBoost's thread start-up costs more
    than the work, and on a busy two-core machine it made a scan of 40 symbols 5-20 times
    slower (measured 0.26 s against 2-7 s). Raises ValidationError naming the bars needed when
    the history is too short.
    """
    check_history(bars, symbol)
    bars = bars.iloc[-SIGNAL_BARS:]
    with threadpool_limits(1, user_api="openmp"):
        prediction = predict(artifact, bars, symbol=symbol, center=center)
    return build_signal(symbol, bars, prediction, spec=artifact.spec,
                        trace_id=trace_id or new_trace_id())


def universe_centers(artifact: ModelArtifact, universe: Mapping[str, pd.DataFrame],
             frames: Sequence[pd.DataFrame]) -> dict[pd.Timestamp, dict[str, float]]:
    """Return the universe's mean model score on each last bar of ``frames`` (see predict).

    The universe is every desk instrument with daily bars, each cut to the signals' bars
    (:data:`SIGNAL_BARS`), as the evaluation references the training universe.
    """
    cut = {symbol: frame.iloc[-SIGNAL_BARS:] for symbol, frame in universe.items()
           if len(frame) >= MIN_BARS}
    with threadpool_limits(1, user_api="openmp"):
        return {when: universe_center(artifact, cut, when.to_pydatetime())
                for when in {frame.index[-1] for frame in frames if len(frame)}}


def new_trace_id() -> str:
    """Return a fresh trace id for a signal."""
    return f"sig-{uuid.uuid4().hex[:20]}"


def edge(signal: Signal, artifact: ModelArtifact) -> float:
    """Return the signal's probability above its direction's expected hit rate (NaN for a HOLD).

    A HOLD has no direction, so no edge to rank by; the scan lists HOLDs after BUY/SELL.
    """
    if signal.direction is Direction.LONG:
        return signal.probability - artifact.base_rate_long
    if signal.direction is Direction.SHORT:
        return signal.probability - artifact.base_rate_short
    return math.nan


@dataclass(frozen=True, slots=True)
class SignalChart:
    """A journaled signal with the daily bars around it (before and, if any, after)."""

    signal: Signal
    bars: pd.DataFrame
    outcome: str
    outcome_at: datetime | None
    outcome_price: Decimal | None


def _to_row(signal: Signal, generated_by: str) -> SignalRow:
    t1, t2, t3 = signal.targets
    return SignalRow(
        trace_id=signal.trace_id, symbol=signal.symbol, bar_time=signal.as_of,
        generated_at=now_ist(), generated_by=generated_by, action=signal.action,
        direction=signal.direction, probability=_decimal(signal.probability, 6),
        confidence=_decimal(signal.confidence, 6), entry=signal.entry,
        stop_loss=signal.stop_loss, target1=t1, target2=t2, target3=t3,
        risk_reward=_decimal(signal.risk_reward, 4), regime=signal.regime,
        agreement=signal.agreement, voters=signal.voters,
        evidence=json.dumps([views.evidence_dict(e) for e in signal.evidence]),
        model_version=signal.model_version, horizon_bars=signal.horizon_bars,
        outcome=Outcome.OPEN.value)


def _decimal(value: float, places: int) -> Decimal:
    return Decimal(str(round(float(value), places)))


def to_signal(row: SignalRow) -> Signal:
    """Return the journaled signal of a row."""
    return Signal(
        symbol=row.symbol, as_of=row.bar_time, action=row.action, direction=row.direction,
        probability=float(row.probability), confidence=float(row.confidence), entry=row.entry,
        stop_loss=row.stop_loss, targets=(row.target1, row.target2, row.target3),
        risk_reward=float(row.risk_reward), regime=row.regime, agreement=row.agreement,
        voters=row.voters,
        evidence=tuple(Evidence(**item) for item in json.loads(row.evidence)),
        model_version=row.model_version, trace_id=row.trace_id, horizon_bars=row.horizon_bars)


class SignalService(ServiceBase):
    """Generate and scan signals, keep the journal, mark outcomes, report performance."""

    def __init__(self, db: Database, settings: Settings, registry: ModelRegistry) -> None:
        """Bind to ``db`` and the model registry."""
        super().__init__(db, settings)
        self.registry = registry

    # -- generating -----------------------------------------------------------------------
    def symbols(self, actor: Actor) -> list[str]:
        """Return every active symbol, sorted."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            return [i.symbol for i in all_instruments(session)]

    def generate(self, actor: Actor, symbol: str) -> Signal:
        """Return the signal of ``symbol`` on its last daily bar, journaled.

        Raises NotFound for an unknown symbol or when no model is active (saying what to do),
        ValidationError when the symbol has fewer daily bars than a signal needs.
        """
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            found = instrument(session, symbol.strip())
            if found is None:
                raise NotFound(f"Unknown symbol {symbol.strip().upper()!r}; pick one of the "
                               "desk's instruments")
            universe = self._recent_bars(session, all_instruments(session))
        bars = universe.get(found.symbol)
        if bars is None:  # an inactive instrument: not in the universe, its own bars only
            with self.db.transaction() as session:
                bars = self._recent_bars(session, [found])[found.symbol]
        used = self.registry.in_use()
        check_history(bars, found.symbol)
        centers = universe_centers(used.artifact, universe, [bars])
        signal = compute_signal(found.symbol, bars, used.artifact,
                                center=centers.get(bars.index[-1]))
        return self.journal([signal], actor.username)[0]

    def scan(self, actor: Actor, symbols: Sequence[str] | None = None,
             progress: ScanProgress | None = None) -> pd.DataFrame:
        """Return the ranked table of signals over ``symbols`` (default: every instrument).

        Symbols with some but too few daily bars are listed in the table's ``attrs["skipped"]``
        with their counts; instruments without daily bars are left out (``attrs["no_bars"]``
        counts them, ``attrs["no_bars_symbols"]`` names them). Signals are journaled. Rows are
        ranked BUY/SELL first, then by edge (probability above the expected hit rate).
        """
        journaled, used, skipped, no_bars = self._scan(actor, actor.username, symbols, progress)
        frame = views.scan_frame(journaled, [edge(s, used.artifact) for s in journaled])
        frame.attrs["skipped"] = skipped
        frame.attrs["no_bars"] = len(no_bars)
        frame.attrs["no_bars_symbols"] = no_bars
        return frame

    def scan_as(self, operator: str) -> list[Signal]:
        """Scan every instrument as :meth:`scan` does, for an operator tool (the worker).

        Return the journaled signals (journaled as generated by ``operator``), in the
        instruments' order; raises as :meth:`scan` does (NotFound when no model is active).
        """
        return self._scan(None, operator, None, None)[0]

    def _scan(self, actor: Actor | None, generated_by: str, symbols: Sequence[str] | None,
              progress: ScanProgress | None
              ) -> tuple[list[Signal], ModelInUse, list[str], list[str]]:
        """Compute and journal the signals; return them, the model, the skipped and the bar-less."""
        with self.db.transaction() as session:
            if actor is not None:
                self._fresh_role(session, actor)
            wanted = {s.upper() for s in symbols} if symbols is not None else None
            everything = all_instruments(session)
            instruments = [i for i in everything if wanted is None or i.symbol in wanted]
            if wanted is not None and (missing := wanted - {i.symbol for i in instruments}):
                raise NotFound(f"Unknown symbol(s) {', '.join(sorted(missing))}")
            universe = self._recent_bars(session, everything)  # the centres need them all
        bars = {i.symbol: universe[i.symbol] for i in instruments}
        used = self.registry.in_use()
        signals, skipped = self._compute_all(bars, used, progress, universe)
        journaled = self.journal(signals, generated_by)
        return journaled, used, skipped, [symbol for symbol, b in bars.items() if b.empty]

    def _compute_all(self, bars: dict[str, pd.DataFrame], used: ModelInUse,
                     progress: ScanProgress | None, universe: Mapping[str, pd.DataFrame]
                     ) -> tuple[list[Signal], list[str]]:
        signals, skipped = [], []
        total = len(bars)
        usable = [frame for frame in bars.values() if len(frame) >= MIN_BARS]
        centers = universe_centers(used.artifact, universe, usable)
        for done, (symbol, frame) in enumerate(bars.items(), start=1):
            if frame.empty:
                pass  # an instrument without daily bars (e.g. not imported yet)
            elif len(frame) < MIN_BARS:
                skipped.append(f"{symbol} ({len(frame)} of {MIN_BARS} bars)")
            else:
                signals.append(compute_signal(symbol, frame, used.artifact,
                                              center=centers.get(frame.index[-1])))
            if progress is not None:
                progress(done, total, symbol)
        return signals, skipped

    def _recent_bars(self, session: Session, instruments: Sequence[Instrument]
                     ) -> dict[str, pd.DataFrame]:
        """Return each instrument's recent daily bars, read in one query.

        The window ends at the newest daily bar on the desk and holds about SIGNAL_BARS
        sessions; an instrument with fewer bars in it is read whole (it may be a stale one).
        """
        last = session.scalar(select(func.max(BarRow.ts)).where(
            BarRow.interval == Interval.D1.value))
        found: dict[str, pd.DataFrame] = {}
        if last is not None:
            ids = {i.id: i.symbol for i in instruments}
            prices = [type_coerce(getattr(BarRow, c), Float).label(c)
                      for c in ("open", "high", "low", "close")]
            rows = session.execute(
                select(BarRow.instrument_id, BarRow.ts, *prices, BarRow.volume)
                .where(BarRow.interval == Interval.D1.value,
                       BarRow.ts >= last - timedelta(days=_SIGNAL_DAYS),
                       BarRow.instrument_id.in_(list(ids)))
                .order_by(BarRow.instrument_id, BarRow.ts)).all()
            frame = pd.DataFrame(rows, columns=["instrument_id", "ts", "open", "high", "low",
                                                "close", "volume"])
            frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_convert(IST)
            for ident, group in frame.groupby("instrument_id", sort=False):
                found[ids[int(ident)]] = group.drop(columns="instrument_id").set_index("ts")
        for item in instruments:
            if len(found.get(item.symbol, ())) < SIGNAL_BARS:
                found[item.symbol] = load_bars(session, item.id, Interval.D1)
        return {i.symbol: found[i.symbol] for i in instruments}

    def journal(self, signals: Iterable[Signal], generated_by: str) -> list[Signal]:
        """Journal new signals in one transaction; return them as stored (with trace ids).

        A signal already journaled for the same symbol, bar and model version comes back as
        first journaled (generating twice does not count twice). Probabilities are stored to
        6 places and risk:reward to 4, and returned so, so a signal reads back identical.
        """
        batch = list(signals)
        try:
            with self.db.transaction() as session:
                return self._journal_all(session, batch, generated_by)
        except IntegrityError:  # a concurrent request journaled one first: one at a time
            out = []
            for signal in batch:
                with self.db.transaction() as session:
                    out.extend(self._journal_all(session, [signal], generated_by))
            return out

    @staticmethod
    def _journal_all(session: Session, signals: Sequence[Signal], generated_by: str
                     ) -> list[Signal]:
        if not signals:
            return []
        rows = {(r.symbol, r.bar_time, r.model_version): r for r in session.scalars(
            select(SignalRow).where(
                SignalRow.symbol.in_({s.symbol for s in signals}),
                SignalRow.bar_time.in_({s.as_of for s in signals}),
                SignalRow.model_version.in_({s.model_version for s in signals})))}
        out = []
        for signal in signals:
            key = (signal.symbol, signal.as_of, signal.model_version)
            if key not in rows:
                rows[key] = _to_row(signal, generated_by)
                session.add(rows[key])
            out.append(rows[key])
        session.flush()
        return [to_signal(row) for row in out]

    # -- reading the journal --------------------------------------------------------------
    def signal(self, actor: Actor, trace_id: str) -> Signal:
        """Return a journaled signal by trace id."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            return to_signal(self._row(session, trace_id))

    @staticmethod
    def _row(session: Session, trace_id: str) -> SignalRow:
        row = session.scalar(select(SignalRow).where(SignalRow.trace_id == trace_id))
        if row is None:
            raise NotFound(f"Signal {trace_id!r} is not in the journal")
        return row

    def chart(self, actor: Actor, trace_id: str) -> SignalChart:
        """Return a journaled signal with its daily bars: 90 before and up to its horizon after."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            row = self._row(session, trace_id)
            found = instrument(session, row.symbol)
            if found is None:
                raise NotFound(f"Unknown symbol {row.symbol!r}")
            bars = load_bars(session, found.id, Interval.D1,
                             start=row.bar_time - timedelta(days=CHART_BARS_BEFORE * 2 + 10))
            after = bars.index > row.bar_time
            bars = pd.concat([bars[~after].iloc[-CHART_BARS_BEFORE:],
                              bars[after].iloc[:row.horizon_bars]])
            return SignalChart(to_signal(row), bars, row.outcome, row.outcome_at,
                               row.outcome_price)

    def journal_frame(self, actor: Actor, limit: int | None = None) -> pd.DataFrame:
        """Return the newest journaled signals (up to ``limit``, default :data:`JOURNAL_ROWS`).

        ``attrs["total"]`` holds how many signals the journal holds, so a page can say the
        table is cut (:func:`core.services.signal_views.journal_heading`).
        """
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            rows = session.scalars(select(SignalRow).order_by(SignalRow.id.desc())
                                   .limit(limit or JOURNAL_ROWS)).all()
            total = session.scalar(select(func.count()).select_from(SignalRow)) or 0
            frame = views.journal_frame(rows)
            frame.attrs["total"] = int(total)
            return frame

    # -- outcomes and performance ---------------------------------------------------------
    def refresh_outcomes(self, actor: Actor) -> int:
        """Mark outcomes now for a page's refresh button (any logged-in user)."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
        return self.mark_outcomes(now_ist())

    def mark_outcomes(self, now: datetime) -> int:
        """Decide LONG/SHORT signals from the daily bars after them up to ``now``.

        Open signals and those at target 1 or 2 whose horizon still runs are (re-)marked (a
        later bar may reach a further target; a hit never turns into a miss). Returns how many
        signals got a new outcome.
        """
        with self.db.transaction() as session:
            rows = session.scalars(select(SignalRow).where(
                SignalRow.outcome.not_in([o.value for o in FINAL]),
                SignalRow.direction != Direction.FLAT)).all()
            by_symbol: dict[str, list[SignalRow]] = {}
            for row in rows:
                by_symbol.setdefault(row.symbol, []).append(row)
            decided = 0
            for symbol, open_rows in by_symbol.items():
                found = instrument(session, symbol)
                if found is None:
                    continue
                first = min(r.bar_time for r in open_rows)
                bars = load_bars(session, found.id, Interval.D1, start=first, end=now)
                decided += sum(self._decide(session, row, bars) for row in open_rows)
        if decided:
            log.info("marked the outcome of %d signal(s)", decided)
        return decided

    @staticmethod
    def _decide(session: Session, row: SignalRow, bars: pd.DataFrame) -> bool:
        later = bars[bars.index > row.bar_time]
        outcome, at, price = mark(row.direction, row.entry, row.stop_loss,
                                  (row.target1, row.target2, row.target3), later,
                                  row.horizon_bars)
        if outcome.value == row.outcome:
            return False
        session.execute(update(SignalRow).where(SignalRow.id == row.id).values(
            outcome=outcome.value, outcome_at=at, outcome_price=price))
        return True

    def performance(self, actor: Actor) -> Performance:
        """Return realized hit rates by confidence and regime and the reliability table.

        Computed from resolved LONG/SHORT journal rows only; an empty journal says so.
        """
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            rows = session.execute(select(
                SignalRow.action, SignalRow.direction, SignalRow.probability,
                SignalRow.confidence, SignalRow.regime, SignalRow.outcome)).all()
        return views.performance(rows)
