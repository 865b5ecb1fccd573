"""The post-trade risk watch the worker runs after every trading step.

For each household: gather its accounts' open positions with LTPs, the position controls
(stop-loss, target, trailing stop), the MTM limits (account, family, strategy), each account's
loss and drawdown figures, and whether the end-of-day MIS square-off is due; ask
:func:`engines.risk.evaluate`; then act, always through the order path (so the gate sees every
exit as action ``protect``):

- a square-off becomes a MARKET order with a **deterministic client order id** (rule, control,
  account, symbol, product, IST day and the fill that opened the position), so a watch that
  runs twice (retry, restart, two triggers) places one exit, while a position opened again
  after its exit (the same MTM target or the MIS square-off later that day) gets its own; a
  fired control is retired with its exit order in the same transaction as its alert;
- a position control ends with its position: once the fills show the position flat (closed by
  hand, panic, loss limit, square-off), or opened again since the watch last saw it (closed
  and reopened, or turned from short to long, between two runs), the control is retired
  (audited ``risk.control.retire``) and never applied to the next position;
- an engage (loss limit, kill switch, MTM stop-loss) runs :meth:`RiskService.engage`, which is
  idempotent by a unique key in the database;
- trailing stops' new best prices and each account's equity peak are stored;
- a scope whose loss used 80 % of a loss limit gets one ``risk.warning.*`` alert a day
  (:mod:`core.risk_warnings`), written with the peaks.

Loss-limit states whose day or week is over are lifted here as well.

Cost per run (the worker runs it every second): one read of the accounts' fill versions,
limits, equity peaks, controls, states, MTM limits and prices; the gate's book of an account
is asked for only when the account has new fills or the book is :data:`BOOK_REFRESH_SECONDS`
old, and is otherwise re-marked at the run's prices (equity, day and week P&L move by
quantity × price change), so 1,000 positions do not mean replaying their fills every second.
"""

from __future__ import annotations

import hashlib
import logging
import time as time_module
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import alerts, audit, risk_store
from core.clock import MARKET_CLOSE, now_ist, to_ist
from core.errors import TradingError
from core.portfolio import build_book
from core.risk_warnings import WarningAlert, account_losses, near_limits, warning_alert
from core.services.exit_retry import ExitRetry, rejected_exits, rejected_note
from core.services.portfolio import last_prices, read_last_prices
from core.services.risk import RiskService
from core.services.risk_gate import AccountSnapshot, DeskRiskGate
from core.trading import ZERO, Order, OrderRequest, OrderStatus, OrderType, Product, Side, Trade
from db.engine import Database
from db.models import AccountRow, OrderRow
from engines.risk import evaluate
from engines.risk_types import (
    AccountRisk,
    LivePosition,
    MtmLimit,
    PositionControl,
    PostTradeInput,
    PostTradeResult,
    RiskLimits,
    Scope,
    SquareOff,
    StateKind,
)

log = logging.getLogger("sher.risk")

#: How long an account's book from the gate is re-marked at fresh prices before the watch asks
#: for a new one although the account has no new fills (deposits, the day's turn), in seconds.
BOOK_REFRESH_SECONDS = 30.0
#: At most this many such age refreshes a run, oldest first, so books are not all rebuilt in
#: the same second (an account with new fills is always rebuilt at once).
REFRESHES_PER_RUN = 2
_monotonic = time_module.monotonic
#: A control whose position the watch never saw open is retired as flat only once it is this
#: old (seconds): a fill the broker already shows may reach the desk's trades a little later.
CONTROL_GRACE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class _Figures:
    """An account's equity, day and week P&L at the latest prices."""

    capital: Decimal
    day_pnl: Decimal
    week_pnl: Decimal


def _remark(snapshot: AccountSnapshot, prices: dict[str, Decimal]) -> _Figures:
    """Return the snapshot's figures moved to ``prices`` (its quantities are unchanged).

    With fixed quantities every figure is linear in the price: an open position moves equity,
    day and week P&L by quantity × the price change since the snapshot's mark (its LTP, or
    its average when it had none); a holding (net quantity minus the positions') moves equity
    only. A symbol whose positions and holdings net to zero has no exposure row and is moved
    by its positions alone until the next refresh.
    """
    moved = ZERO
    position_qty: dict[str, int] = defaultdict(int)
    position_value: dict[str, Decimal] = defaultdict(Decimal)
    for p in snapshot.positions:
        mark = p.ltp if p.ltp is not None else p.average_price
        position_qty[p.symbol] += p.quantity
        position_value[p.symbol] += abs(p.quantity) * mark
        ltp = prices.get(p.symbol)
        if ltp is not None:
            moved += p.quantity * (ltp - mark)
    held_moved = ZERO
    for exposure in snapshot.exposures:
        held = exposure.quantity - position_qty.get(exposure.symbol, 0)
        ltp = prices.get(exposure.symbol)
        if held > 0 and ltp is not None:
            held_moved += held * ltp - (exposure.value - position_value.get(exposure.symbol,
                                                                            ZERO))
    return _Figures(snapshot.capital + moved + held_moved, snapshot.day_pnl + moved,
                    snapshot.week_pnl + moved)


@dataclass(frozen=True, slots=True)
class _Open:
    """A position's net quantity from the fills and the fill that opened it from flat."""

    quantity: int
    opened_by: str  # broker trade id of that fill; "" while flat
    opened_at: datetime | None = None  # when that fill executed


def _openings(trades: Iterable[Trade]) -> dict[tuple[str, Product], _Open]:
    """Return each (symbol, product)'s net quantity and the fill that last opened it.

    ``trades`` are one account's fills, oldest first. A fill opens a position when it takes
    the net quantity away from zero or across it (a short turned long is a new position).
    """
    out: dict[tuple[str, Product], _Open] = {}
    for trade in trades:
        key = (trade.symbol, trade.product)
        held = out.get(key)
        before = held.quantity if held is not None else 0
        after = before + (trade.quantity if trade.side is Side.BUY else -trade.quantity)
        if held is None or before == 0 or before * after < 0:
            out[key] = _Open(after, trade.broker_trade_id if after else "",
                             trade.executed_at if after else None)
        else:
            out[key] = _Open(after, held.opened_by if after else "",
                             held.opened_at if after else None)
    return out


@dataclass(slots=True)
class WatchReport:
    """What one run of the watch did."""

    households: int = 0
    positions: int = 0
    square_offs: list[str] = field(default_factory=list)  # client order ids placed (or found)
    engaged: list[str] = field(default_factory=list)
    trails_moved: int = 0
    lifted: int = 0
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    limit_warnings: int = 0  # risk.warning.* alerts written (80 % of a loss limit used)
    retired: list[int] = field(default_factory=list)  # controls whose position closed
    exit_retries: list[str] = field(default_factory=list)  # rejected exits sent again


def exit_client_id(square: SquareOff, day: str, opened_by: str = "") -> str:
    """Return the client order id of a watch exit: the same for the same exit of one position.

    ``opened_by`` is the broker trade id of the fill that opened the position from flat: an
    exit of the same rule, symbol and product on the same day is a new order once the
    position was closed and opened again, and the same one (found, not placed twice) on every
    run while that position lasts.
    """
    text = f"{square.rule}|{square.control_id}|{square.account_id}|{square.symbol}|" \
           f"{square.product.value}|{day}"
    if opened_by:
        text += f"|{opened_by}"
    return "rw-" + hashlib.sha256(text.encode()).hexdigest()[:24]


class RiskWatch:
    """Runs post-trade controls, loss limits, drawdown and the EOD square-off (worker job)."""

    def __init__(self, db: Database, gate: DeskRiskGate, risk: RiskService,
                 clock: Callable[[], datetime] = now_ist) -> None:
        """Act through ``gate.orders`` (the order service) and ``risk`` (states)."""
        self.db = db
        self.gate = gate
        self.risk = risk
        self.orders = gate.orders
        self.clock = clock
        self._books: dict[int, tuple[AccountSnapshot, float]] = {}  # snapshot, when taken
        self._tagged_cache: dict[tuple[int, ...], tuple[object, dict[int, str]]] = {}
        self._warned: set[str] = set()  # dedupe keys of the limit warnings written today
        self._warned_day: date | None = None
        #: account -> (fill version, its positions' openings), re-read on new fills
        self._openings: dict[int, tuple[tuple[int, int], dict[tuple[str, Product], _Open]]] = {}
        #: household -> control id -> the fill that opened its position when the watch saw it
        self._seen: dict[int, dict[int, str]] = {}
        self.exit_retry = ExitRetry(db, self.orders.manager)

    def run(self, now: datetime | None = None) -> WatchReport:
        """Evaluate every household once; return what was done."""
        now = to_ist(now or self.clock())
        report = WatchReport()
        report.lifted = self.risk.lift_lapsed()
        with self.db.transaction() as session:
            accounts = session.execute(
                select(AccountRow.id, AccountRow.household_id, AccountRow.label)
                .where(AccountRow.is_active.is_(True)).order_by(AccountRow.id)).all()
        by_household: dict[int, list[int]] = defaultdict(list)
        labels: dict[int, str] = {}  # how the engine's reasons name each account
        for account_id, household_id, label in accounts:
            by_household[household_id].append(account_id)
            labels[account_id] = risk_store.account_name(label)
        for household_id, account_ids in by_household.items():
            try:
                self._household(household_id, account_ids, now, report, labels)
            except TradingError as exc:
                report.failures.append(f"household {household_id}: {exc}")
                log.warning("risk watch: household %s: %s", household_id, exc)
            report.households += 1
        return report

    # -- gathering ------------------------------------------------------------------------
    def _household(self, household_id: int, account_ids: list[int], now: datetime,
                   report: WatchReport, labels: dict[int, str]) -> None:
        held = self._symbols(account_ids)
        with self.db.transaction() as session:  # one read of everything but the books
            fills = risk_store.fill_versions(session, account_ids)
            limits = risk_store.account_limits(session, household_id, account_ids)
            peaks = risk_store.peaks(session, account_ids)
            controls = risk_store.active_controls(session, account_ids)
            engaged = risk_store.engaged_keys(session, household_id, now.date())
            stored_mtm = risk_store.mtm_limit_rows(session, household_id)
            prices = read_last_prices(session, held)  # the books' symbols (quote, else close)
            names = [m.key for m in stored_mtm if m.scope is Scope.STRATEGY]
            tagged = self._tagged(session, account_ids, names, fills)
            rejected = rejected_exits(session, account_ids, ExitRetry.since(now))
        snapshots = self._snapshots(account_ids, fills)
        controls = self._live_controls(household_id, controls, fills, now, report)
        positions, prices, figures = self._marked(snapshots, prices)
        report.positions += len(positions)
        strategy_positions, strategy_mtm = self._strategies(account_ids, names, tagged, now,
                                                            prices)
        mtm_limits = self._mtm_limits(household_id, account_ids, figures, limits, stored_mtm,
                                      strategy_mtm)
        mis_due, mis_carried = self._mis_due(positions, fills, limits, now)
        result = evaluate(PostTradeInput(
            now=now, positions=(*positions, *strategy_positions), controls=tuple(controls),
            mtm_limits=tuple(mtm_limits),
            accounts=tuple(AccountRisk(a, f.capital, f.day_pnl, f.week_pnl,
                                       _peak(peaks.get(a), snapshots[a]), limits[a])
                           for a, f in figures.items()),
            engaged=engaged,
            mis_due=mis_due, mis_carried=mis_carried), labels)
        report.warnings.extend(result.warnings)
        self._act(household_id, result, now, report)
        if rejected:
            sent, failed = self.exit_retry.run(household_id, rejected)
            report.exit_retries.extend(sent)
            report.failures.extend(failed)
        higher = {a: f.capital for a, f in figures.items()
                  if f.capital > 0 and (peaks.get(a) is None
                                        or f.capital > peaks[a].at(snapshots[a].paid_in))}
        near = self._new_warnings(household_id, figures, limits, mtm_limits, engaged, now)
        if higher or near:  # most runs set no new peak and warn nothing: no transaction then
            with self.db.transaction() as session:
                if higher:
                    risk_store.raise_peaks(session, higher, now,
                                           {a: snapshots[a].paid_in for a in higher})
                for alert in near:
                    alerts.enqueue(session, kind=alert.kind, household_id=household_id,
                                   account_id=alert.account_id, severity="warning",
                                   title=alert.title, body=alert.body,
                                   dedupe_key=alert.dedupe_key)
            self._warned.update(alert.dedupe_key for alert in near)
            report.limit_warnings += len(near)

    def _opened(self, account_id: int, version: tuple[int, int]
                 ) -> dict[tuple[str, Product], _Open] | None:
        """Return the account's positions' openings from the gate's fills (None: unknown).

        Called after :meth:`_snapshots`, so the gate holds the fills of ``version`` or newer;
        fewer fills than the version counts mean the gate's copy is not usable this run.
        """
        cached = self._openings.get(account_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        trades = self.gate.fills(account_id)
        if len(trades) < version[0]:
            return None
        found = _openings(trades)
        self._openings[account_id] = (version, found)
        return found

    def _live_controls(self, household_id: int, controls: list[PositionControl],
                       fills: dict[int, tuple[int, int]], now: datetime,
                       report: WatchReport) -> list[PositionControl]:
        """Return the controls that still guard the position they were set on; retire the rest.

        A control ends with its position: it is retired once the fills show the position flat,
        or opened by another fill than the one the watch saw it on (closed and reopened, or
        turned, between two runs). A control the watch sees for the first time (just set, or
        the worker restarted) is retired when its position was opened more than
        :data:`CONTROL_GRACE_SECONDS` after it was set, or is flat and it is that old (the
        broker may show a fill before the desk records it, and clocks differ a little).
        """
        seen = self._seen.get(household_id, {})
        keep: list[PositionControl] = []
        now_seen: dict[int, str] = {}
        gone: dict[int, str] = {}  # control id -> why (seen open before, or reopened)
        unseen_flat: dict[int, str] = {}
        first: list[tuple[PositionControl, _Open]] = []
        for control in controls:
            opened = self._opened(control.account_id, fills[control.account_id])
            if opened is None:
                keep.append(control)
                continue
            held = opened.get((control.symbol, control.product))
            opened_by = held.opened_by if held is not None else ""
            before = seen.get(control.control_id)
            what = f"{control.symbol} {control.product.value}"
            if held is not None and opened_by and before is None:
                first.append((control, held))
            elif opened_by and before == opened_by:
                now_seen[control.control_id] = opened_by
                keep.append(control)
            elif opened_by:
                gone[control.control_id] = _reopened(what, opened_by)
            elif before is not None:
                gone[control.control_id] = f"the {what} position it was set on is closed"
            else:
                unseen_flat[control.control_id] = f"the {what} position is closed"
        if first:
            with self.db.transaction() as session:
                created = risk_store.control_times(session, [c.control_id for c, _ in first])
            grace = timedelta(seconds=CONTROL_GRACE_SECONDS)
            for control, held in first:
                set_at = created.get(control.control_id)
                if set_at is not None and held.opened_at is not None \
                        and held.opened_at > set_at + grace:
                    gone[control.control_id] = _reopened(
                        f"{control.symbol} {control.product.value}", held.opened_by)
                else:
                    now_seen[control.control_id] = held.opened_by
                    keep.append(control)
        self._seen[household_id] = now_seen
        if gone or unseen_flat:
            self._retire(household_id, gone, unseen_flat, now, report)
        return keep

    def _retire(self, household_id: int, gone: dict[int, str], unseen_flat: dict[int, str],
                now: datetime, report: WatchReport) -> None:
        """Retire controls whose position ended (audited, like a clear)."""
        with self.db.transaction() as session:
            rows = risk_store.retire_controls(session, gone)
            rows += risk_store.retire_controls(
                session, unseen_flat, created_before=now - timedelta(
                    seconds=CONTROL_GRACE_SECONDS))
            why = {**gone, **unseen_flat}
            for row in rows:
                audit.append(session, audit.AuditEvent(
                    action="risk.control.retire", resource=f"position_control:{row.id}",
                    household_id=household_id,
                    details={"account_id": row.account_id, "symbol": row.symbol,
                             "product": row.product.value, "why": why[row.id]}))
        report.retired.extend(row.id for row in rows)

    def _new_warnings(self, household_id: int, figures: dict[int, _Figures],
                      limits: dict[int, RiskLimits], mtm_limits: list[MtmLimit],
                      engaged: frozenset[tuple[Scope, str, StateKind]], now: datetime
                      ) -> list[WarningAlert]:
        """Return the loss-limit warnings (80 % used) not yet written today by this watch.

        The outbox's dedupe key makes one per scope, kind and IST day however many watches
        write it; remembering the keys written keeps a warning that holds all day from costing
        a write every second.
        """
        day = now.date()
        if self._warned_day != day:
            self._warned_day, self._warned = day, set()
        losses = account_losses({a: (f.capital, f.day_pnl, f.week_pnl)
                                 for a, f in figures.items()}, limits)
        found = [warning_alert(household_id, w, day)
                 for w in near_limits(losses, mtm_limits, engaged)]
        return [alert for alert in found if alert.dedupe_key not in self._warned]

    def _symbols(self, account_ids: list[int]) -> set[str]:
        """Return the symbols of the books the watch holds for ``account_ids``."""
        out: set[str] = set()
        for account_id in account_ids:
            held = self._books.get(account_id)
            if held is not None:
                out.update(p.symbol for p in held[0].positions)
                out.update(e.symbol for e in held[0].exposures)
        return out

    def _tagged(self, session: Session, account_ids: list[int], names: list[str],
                fills: dict[int, tuple[int, int]]) -> dict[int, str]:
        """Return order id -> strategy of the filled orders of ``names`` (re-read on new fills).

        An order's filled quantity only changes with a fill, so the answer holds while the
        accounts' fill versions and the strategy names are unchanged.
        """
        if not names:
            return {}
        key = (tuple(sorted(fills.items())), tuple(sorted(names)))
        cached = self._tagged_cache.get(tuple(account_ids))
        if cached is not None and cached[0] == key:
            return cached[1]
        rows = session.execute(
            select(OrderRow.id, OrderRow.strategy)
            .where(OrderRow.account_id.in_(account_ids), OrderRow.strategy.in_(names),
                   OrderRow.filled_quantity > 0)).all()
        by_order = {ident: name for ident, name in rows if name}
        self._tagged_cache[tuple(account_ids)] = (key, by_order)
        return by_order

    def _mis_due(self, positions: list[LivePosition], fills: dict[int, tuple[int, int]],
                 limits: dict[int, RiskLimits], now: datetime,
                 ) -> tuple[frozenset[int], frozenset[tuple[int, str]]]:
        """Return ``mis_due`` and ``mis_carried`` for the engine: which MIS positions close now.

        An intraday position is never carried overnight: it is squared off from the account's
        square-off time to the 15:30 close on every day the account's market is open (the
        paper market of the demo runs on weekends and holidays too; a live broker's only in NSE
        hours), and one opened on an earlier IST day as soon as its market is open. After
        15:30 the demo's paper market still runs: an MIS trade made then is not closed at once
        on its fill, but at the next IST day's first run. A closed market (a live
        broker on a holiday, a stalled feed) is not asked for an exit its gate would refuse,
        so nothing is sent every second; the position goes at its market's next open.
        """
        due: set[int] = set()
        carried: set[tuple[int, str]] = set()
        market: dict[int, bool] = {}
        for p in positions:
            if p.product is not Product.MIS or not p.quantity:
                continue
            opened = self._opened(p.account_id, fills[p.account_id]) or {}
            held = opened.get((p.symbol, p.product))
            old = held is not None and held.opened_at is not None \
                and to_ist(held.opened_at).date() < now.date()
            timed = limits[p.account_id].mis_square_off_at <= now.time() < MARKET_CLOSE
            if not (old or timed) or not self._market_open(p.account_id, market):
                continue
            if old:
                carried.add((p.account_id, p.symbol))
            if timed:
                due.add(p.account_id)
        return frozenset(due), frozenset(carried)

    def _market_open(self, account_id: int, known: dict[int, bool]) -> bool:
        """Return whether the account's broker takes orders now (asked once per run)."""
        if account_id not in known:
            try:
                known[account_id] = self.orders.broker_for(account_id).session().is_open
            except TradingError as exc:
                log.warning("risk watch: market session of account %s unknown: %s",
                            account_id, exc)
                known[account_id] = False
        return known[account_id]

    def _snapshots(self, account_ids: list[int], fills: dict[int, tuple[int, int]]
                   ) -> dict[int, AccountSnapshot]:
        """Return each account's book from the gate, asking for a new one only when needed.

        An account with new fills gets a fresh snapshot at once; one without is re-marked at
        fresh prices by :meth:`_marked` and refreshed (deposits, the day's turn) once it is
        :data:`BOOK_REFRESH_SECONDS` old, at most :data:`REFRESHES_PER_RUN` a run, oldest first.
        """
        now = _monotonic()
        out: dict[int, AccountSnapshot] = {}
        stale: list[tuple[float, int]] = []
        for account_id in account_ids:
            held = self._books.get(account_id)
            if held is None or held[0].version[:2] != fills[account_id]:
                out[account_id] = self._take(account_id, fills[account_id], now)
                continue
            out[account_id] = held[0]
            if now - held[1] >= BOOK_REFRESH_SECONDS:
                stale.append((held[1], account_id))
        for _taken, account_id in sorted(stale)[:REFRESHES_PER_RUN]:
            out[account_id] = self._take(account_id, fills[account_id], now)
        return out

    def _take(self, account_id: int, fills: tuple[int, int], now: float) -> AccountSnapshot:
        snapshot = self.gate.snapshot(account_id, fills)
        self._books[account_id] = (snapshot, now)
        return snapshot

    def _marked(self, snapshots: dict[int, AccountSnapshot], prices: dict[str, Decimal],
                ) -> tuple[list[LivePosition], dict[str, Decimal], dict[int, _Figures]]:
        """Return the open positions and each account's figures, marked at the latest prices.

        The snapshots hold each account's positions from its fills (rebuilt only when it has
        new ones); ``prices`` (the books' symbols: the feed's quote, else the last daily close)
        re-mark them all, so the watch never replays fills itself; the symbols of books new
        this run are read here. Return the positions, the prices and the re-marked account
        figures.
        """
        held = [p for snapshot in snapshots.values() for p in snapshot.positions]
        wanted = {p.symbol for p in held} | {
            e.symbol for snapshot in snapshots.values() for e in snapshot.exposures}
        if wanted - prices.keys():
            prices = {**prices, **last_prices(self.db, wanted - prices.keys())}
        out = []
        for p in held:
            ltp = prices.get(p.symbol, p.ltp)
            unrealized = (ltp - p.average_price) * p.quantity if ltp is not None else ZERO
            out.append(LivePosition(p.account_id, p.symbol, p.product, p.quantity,
                                    p.average_price, ltp, p.realized_pnl + unrealized))
        return out, prices, {a: _remark(s, prices) for a, s in snapshots.items()}

    def _strategies(self, account_ids: list[int], names: list[str], by_order: dict[int, str],
                    now: datetime, prices: dict[str, Decimal],
                    ) -> tuple[list[LivePosition], dict[str, Decimal]]:
        """Return the positions and day MTM of each strategy with an MTM limit.

        ``by_order`` maps the strategies' filled orders to their names; the fills are the
        gate's (read by the snapshots); ``prices`` are the ones the positions were marked at,
        completed for symbols no account holds open.
        """
        if not names:
            return [], {}
        if not by_order:
            return [], {name: ZERO for name in names}
        trades = [t for a in account_ids for t in self.gate.fills(a) if t.order_id in by_order]
        grouped: dict[str, list[Trade]] = defaultdict(list)
        for trade in trades:
            assert trade.order_id is not None  # noqa: S101 - filtered above
            grouped[by_order[trade.order_id]].append(trade)
        prices = {**prices, **last_prices(self.db, {t.symbol for t in trades} - set(prices))}
        positions: list[LivePosition] = []
        mtm: dict[str, Decimal] = {name: ZERO for name in names}
        for name, own in grouped.items():
            book = build_book(own, prices, now.date())
            mtm[name] = book.day_pnl
            positions.extend(LivePosition(p.account_id, p.symbol, p.product, p.quantity,
                                          p.average_price, p.ltp, p.mtm, strategy=name)
                             for p in book.positions if p.quantity)
        return positions, mtm

    @staticmethod
    def _mtm_limits(household_id: int, account_ids: list[int], figures: dict[int, _Figures],
                    limits: dict[int, RiskLimits], stored: list[risk_store.MtmLimitView],
                    strategy_mtm: dict[str, Decimal]) -> list[MtmLimit]:
        out = [MtmLimit(Scope.ACCOUNT, str(a), limits[a].portfolio_mtm_stop_loss,
                        limits[a].portfolio_mtm_target, figures[a].day_pnl, (a,))
               for a in account_ids
               if limits[a].portfolio_mtm_stop_loss or limits[a].portfolio_mtm_target]
        family = sum((f.day_pnl for f in figures.values()), ZERO)
        for row in stored:
            if row.scope is Scope.HOUSEHOLD:
                out.append(MtmLimit(Scope.HOUSEHOLD, str(household_id), row.stop_loss,
                                    row.target, family, tuple(account_ids)))
            elif row.scope is Scope.STRATEGY:
                out.append(MtmLimit(Scope.STRATEGY, row.key, row.stop_loss, row.target,
                                    strategy_mtm.get(row.key, ZERO), tuple(account_ids)))
        return out

    # -- acting ---------------------------------------------------------------------------
    def _act(self, household_id: int, result: PostTradeResult, now: datetime,
             report: WatchReport) -> None:
        if result.trail_updates:
            with self.db.transaction() as session:
                report.trails_moved += risk_store.apply_trails(session, result.trail_updates)
        for engage in result.engages:
            try:
                self.risk.engage(engage.kind, engage.scope, engage.key, engage.reason,
                                 engage.account_ids, until=engage.until)
                report.engaged.append(f"{engage.scope.value}:{engage.key}:{engage.kind.value}")
            except TradingError as exc:
                report.failures.append(f"engage {engage.kind.value} {engage.key}: {exc}")
                log.warning("risk watch: engage %s failed: %s", engage, exc)
        for square in result.square_offs:
            self._square_off(household_id, square, now, report)

    def _opened_by(self, square: SquareOff) -> str:
        """Return the fill that opened the position ``square`` closes ("" if unknown)."""
        book = self._books.get(square.account_id)
        opened = self._opened(square.account_id, book[0].version[:2]) if book else None
        held = opened.get((square.symbol, square.product)) if opened else None
        return held.opened_by if held is not None else ""

    def _square_off(self, household_id: int, square: SquareOff, now: datetime,
                    report: WatchReport) -> None:
        client_id = exit_client_id(square, now.date().isoformat(), self._opened_by(square))
        request = OrderRequest(
            account_id=square.account_id, symbol=square.symbol,
            side=Side.SELL if square.quantity > 0 else Side.BUY,
            quantity=abs(square.quantity), order_type=OrderType.MARKET,
            product=square.product, client_order_id=client_id)
        recorded: list[Order] = []

        def record(session: Session, order: Order) -> None:
            """Mark the control, queue the alert, audit: in the exit order's transaction."""
            self._record_exit(session, household_id, square, request, order, now, client_id)
            recorded.append(order)

        try:
            order = self.orders.manager.submit(request, placed_by=None, source="risk",
                                               on_recorded=record)
        except TradingError as exc:
            report.failures.append(f"{square.rule} {square.symbol} account "
                                   f"{square.account_id}: {exc}")
            log.warning("risk watch: %s exit of %s failed: %s", square.rule, square.symbol, exc)
            return
        report.square_offs.append(client_id)
        if not recorded:  # an exit placed by an earlier run: its record is written once
            with self.db.transaction() as session:
                self._record_exit(session, household_id, square, request, order, now,
                                  client_id)

    @staticmethod
    def _record_exit(session: Session, household_id: int, square: SquareOff,
                     request: OrderRequest, order: Order, now: datetime,
                     client_id: str) -> None:
        """Mark the control triggered and queue the exit's alert (once, by its dedupe key)."""
        placed = order.status is not OrderStatus.REJECTED
        if square.control_id is not None:
            risk_store.mark_triggered(session, square.control_id, square.rule, now, order.id)
        fresh = alerts.enqueue(
            session, kind=f"risk.{square.rule}", household_id=household_id,
            account_id=square.account_id,
            severity="warning" if placed else "critical",
            title=f"{_RULE_TITLES.get(square.rule, square.rule)}: {square.symbol}",
            body=f"{square.reason}. Exit order {order.id}: {request.side} "
                 f"{request.quantity} {square.symbol} {square.product} at market — "
                 f"{order.status}"
                 + (f" ({order.rejection_reason})" if order.rejection_reason else "")
                 + ("" if placed else "." + rejected_note(1)),
            dedupe_key=f"risk-exit:{client_id}")
        if fresh:
            audit.append(session, audit.AuditEvent(
                action=f"risk.{square.rule}", resource=f"order:{order.id}",
                actor_user_id=None, actor_username=None, household_id=household_id,
                outcome=audit.OK if placed else audit.FAILED,
                details={"account_id": square.account_id, "symbol": square.symbol,
                         "product": square.product.value, "quantity": square.quantity,
                         "rule": square.rule, "reason": square.reason,
                         "control_id": square.control_id, "status": order.status.value},
                client=None))


def _peak(stored: risk_store.Peak | None, snapshot: AccountSnapshot) -> Decimal | None:
    """Return an account's equity peak moved by the money paid in or out since it was set.

    The snapshot's equity counts ``snapshot.paid_in``: against the peak moved to the same
    paid-in, a deposit or withdrawal is no gain or loss (None: no peak yet).
    """
    return stored.at(snapshot.paid_in) if stored is not None else None


def _reopened(what: str, opened_by: str) -> str:
    """Return why a control is retired whose position was closed and opened again."""
    return (f"the {what} position it was set on was closed and another one opened (fill "
            f"{opened_by}); a control guards only the position it was set on")


_RULE_TITLES = {
    "stop_loss": "Stop-loss hit", "target": "Target hit", "trailing_stop": "Trailing stop hit",
    "mtm_target": "MTM target reached", "eod": "End-of-day MIS square-off",
}
