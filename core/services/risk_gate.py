"""The desk's risk gate: gathers an order's risk picture and asks :func:`engines.risk.decide`.

:class:`DeskRiskGate` is the :class:`core.orders.RiskGate` every order of the desk passes (the
order manager calls :meth:`DeskRiskGate.check` on each path). It is also what pages ask before
an order is placed (:meth:`DeskRiskGate.preview`) and what the Risk page shows as today's usage
(:meth:`DeskRiskGate.usage`).

What is read fresh on every check (so another process's change counts at once): the states
covering the account (kill switch, panic, loss limits, disabled), the account's recent orders
(orders/second and the duplicate window), and whether the account has new fills or deposits.
What is reused while unchanged (the "warm state"): the account's book, its limits (2 s), the
market figures (a day: ATR, correlations, regime; :mod:`core.risk_market`).

The orders/second count is the larger of the database's count (orders created in the last
second, any process) and this process's own approvals in the last second, which also covers a
burst whose orders are not yet written. Every cash-equity instrument is one NSE segment, so
the count is per account.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, true, union
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from core import risk_store
from core.clock import now_ist, to_ist
from core.domain import Actor
from core.errors import NotFound
from core.orders import OrderEstimate, RiskContext, RiskDecision
from core.portfolio import replay, summarise
from core.queue_book import AccountBook
from core.risk_market import MarketFigures
from core.services.household import HouseholdService
from core.services.orders import OrderService
from core.services.portfolio import last_prices, read_last_prices
from core.services.trade_book import load_trades, to_trade
from core.trading import ZERO, Holding, OrderRequest, OrderStatus, Position, Side, Trade
from db.engine import Database
from db.models import AccountRow, EquityPeakRow, OrderRow, TradeRow
from engines.risk import decide, loss_limit
from engines.risk_types import (
    ActiveState,
    Exposure,
    OrderAction,
    PreTradeDecision,
    PreTradeInput,
    RiskLimits,
)
from engines.signal_types import Regime

#: How long limits read from the database are reused (seconds).
LIMITS_CACHE_SECONDS = 2.0
#: Orders that do not make a repeat a duplicate: refused or withdrawn, so nothing stands.
_NOT_DUPLICATES = frozenset({OrderStatus.REJECTED, OrderStatus.CANCELLED})
#: How long a book is reused while the account has no new fill or deposit (seconds).
BOOK_CACHE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """An account's money and exposure as the gate sees it."""

    account_id: int
    household_id: int
    capital: Decimal  # equity now: deposits + cash flow + market value
    day_pnl: Decimal
    week_pnl: Decimal
    exposures: tuple[Exposure, ...]
    net_quantity: dict[str, int]  # signed open quantity per symbol (positions and holdings)
    version: tuple[int, int, Decimal]  # (trade count, last trade id, deposits)
    built_at: float
    positions: tuple[Position, ...] = ()  # open (non-holding) positions, marked when built
    #: money paid in net of withdrawals that ``capital`` counts (the paper ledger; 0 at a
    #: broker that keeps the money itself): an equity peak is moved by flows since it was set.
    paid_in: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class SectorUsage:
    """Market value of an account's open symbols in one sector."""

    sector: str
    value: Decimal
    pct: Decimal  # of capital
    limit_pct: Decimal


@dataclass(frozen=True, slots=True)
class RiskUsage:
    """Today's use of an account's limits, for the Risk page."""

    account_id: int
    capital: Decimal
    day_pnl: Decimal
    daily_limit: Decimal  # rupees of loss that stop trading today
    week_pnl: Decimal
    weekly_limit: Decimal
    open_positions: int
    max_open_positions: int
    sectors: tuple[SectorUsage, ...]
    orders_last_second: int
    max_orders_per_second: int
    peak_equity: Decimal | None
    drawdown_pct: Decimal
    drawdown_reduce_pct: Decimal
    drawdown_kill_pct: Decimal
    regime: Regime | None
    regime_reason: str
    states: tuple[ActiveState, ...]
    limits: RiskLimits
    limits_source: str


def week_start(day: date) -> date:
    """Return the Monday of ``day``'s week (the weekly loss limit's period starts there)."""
    return day - timedelta(days=day.weekday())


_FILLS_AND_PEAK = select(
    select(func.count(TradeRow.id)).where(TradeRow.account_id == bindparam("account"))
    .scalar_subquery().label("fills"),
    select(func.coalesce(func.max(TradeRow.id), 0))
    .where(TradeRow.account_id == bindparam("account")).scalar_subquery().label("last_fill"),
    select(EquityPeakRow.peak_equity).where(EquityPeakRow.account_id == bindparam("account"))
    .scalar_subquery().label("peak"),
    select(EquityPeakRow.paid_in).where(EquityPeakRow.account_id == bindparam("account"))
    .scalar_subquery().label("peak_paid_in"),
)

# Built once, like _FILLS_AND_PEAK: the gate runs them before every order.
# Plain rows (the trade table's columns, named as TradeRow's attributes), not ORM objects.
_NEW_FILLS = (select(*cast(Table, TradeRow.__table__).c)
              .where(TradeRow.account_id == bindparam("account"),
                     TradeRow.id > bindparam("after"))
              .order_by(TradeRow.executed_at, TradeRow.id))
#: What the orders/second count and the duplicate window read of each recent order, and the
#: exposure checks of each open one (its unfilled part may still fill: see _with_open_orders).
#: The last is the size the person asked for when the gate cut it (else NULL): a repeat of
#: the request is a duplicate whatever size the first one was placed at.
_RECENT_COLUMNS = (OrderRow.created_at, OrderRow.symbol, OrderRow.side, OrderRow.quantity,
                   OrderRow.status, OrderRow.client_order_id, OrderRow.filled_quantity,
                   OrderRow.price, OrderRow.trigger_price, OrderRow.requested_quantity)
_OPEN_STATUSES = (OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
#: Recent or open (a union: each part has its index; an OR would read every order of the
#: account).
_RECENT_ORDERS = union(
    select(*_RECENT_COLUMNS).where(OrderRow.account_id == bindparam("account"),
                                   OrderRow.created_at >= bindparam("since")),
    select(*_RECENT_COLUMNS).where(OrderRow.account_id == bindparam("account"),
                                   OrderRow.status.in_(_OPEN_STATUSES)))
_RECENT_OR_OPEN = _RECENT_ORDERS.subquery()
#: Both in one round trip: the fill figures on every row, beside each recent order (one row
#: of NULL order columns when there is none).
_HEAD = _FILLS_AND_PEAK.subquery()
_FILLS_PEAK_AND_RECENT = (
    select(_HEAD.c.fills, _HEAD.c.last_fill, _HEAD.c.peak, _HEAD.c.peak_paid_in,
           *_RECENT_OR_OPEN.c)
    .select_from(_HEAD.outerjoin(_RECENT_OR_OPEN, true())))


class _Fills:
    """One account's fills as the gate last read them, and their book kept up to date.

    Fills are added in time order (a late one makes the gate read them all again), so the
    book is extended per FIFO queue (:class:`core.queue_book.AccountBook`) rather than
    replayed, and the realized P&L and charges of the fills before a week's Monday are
    computed once per week: the week's figures are the totals minus those.
    """

    def __init__(self) -> None:
        self.last_id = 0
        self.trades: list[Trade] = []
        self.book = AccountBook()
        self.symbols: set[str] = set()
        self._before: tuple[date, int, Decimal, Decimal] | None = None

    def extend(self, new: list[Trade]) -> None:
        """Add ``new`` fills (oldest first); earlier than the last one: rebuild the book."""
        if not new:
            return
        if self.trades and new[0].executed_at < self.trades[-1].executed_at:
            trades = sorted([*self.trades, *new], key=lambda t: t.executed_at)  # stable
            self.trades, self.book, self.symbols, self._before = [], AccountBook(), set(), None
            new = trades
        for trade in new:
            self.trades.append(trade)
            self.book.add(trade)
            self.symbols.add(trade.symbol)

    def before(self, day: date) -> tuple[Decimal, Decimal]:
        """Return (realized P&L, charges) of the fills dated before ``day``.

        A close belongs to the day of its closing fill, and FIFO matching is causal, so the
        closes of the fills before ``day`` are those of replaying just them.
        """
        count = bisect_left(self.trades, day, key=lambda t: t.trade_date)
        cached = self._before
        if cached is not None and cached[0] == day and cached[1] == count:
            return cached[2], cached[3]
        prefix = self.trades[:count]
        realized = sum((c.realized for c in replay(prefix).closes), ZERO)
        charges = sum((t.charges.total for t in prefix), ZERO)
        self._before = (day, count, realized, charges)
        return realized, charges


class DeskRiskGate:
    """The risk gate of the desk's order path (see the module docstring)."""

    def __init__(self, db: Database, household: HouseholdService, orders: OrderService,
                 clock: Callable[[], datetime] = now_ist) -> None:
        """Read from ``db``; ``orders`` supplies brokers (for deposits) and instruments."""
        self.db = db
        self.household = household
        self.orders = orders
        self.clock = clock
        self.market = MarketFigures(db, clock)
        self._lock = threading.Lock()
        self._books_lock = threading.RLock()
        self._books: dict[int, AccountSnapshot] = {}
        self._fills: dict[int, _Fills] = {}
        self._paid_in: dict[int, tuple[float, Decimal]] = {}
        self._ledgered: set[int] = set()  # accounts whose paid-in is a ledger's (paper)
        self._limits: dict[int, tuple[float, RiskLimits, str, int]] = {}
        #: Per account: (when, symbol, side, quantity approved, client order id, quantity
        #: asked) of each approval, for the orders/second count and the duplicate window.
        self._approved: dict[int, deque[tuple[float, str, Side, int, str | None, int]]] = {}

    # -- the RiskGate protocol ---------------------------------------------------------------
    def check(self, request: OrderRequest, context: RiskContext) -> RiskDecision:
        """Decide ``request`` and remember an approval for the orders/second count."""
        with self._lock:
            decision = self._decide(request, context.action, context.estimate,
                                    context.instrument.sector if context.instrument else None,
                                    context.session)
            if decision.approved:
                self._approved.setdefault(request.account_id, deque()).append(
                    (time.monotonic(), request.symbol, request.side, decision.quantity,
                     request.client_order_id, request.quantity))
        # A refusal gives its rules only: sizing notes of an order that is not placed confuse.
        reasons = decision.reasons if decision.approved else tuple(
            r.message for r in decision.rejections)
        return RiskDecision(decision.approved, reasons,
                            decision.quantity if decision.approved else None, decision)

    def preview(self, actor: Actor, request: OrderRequest,
                stop_price: Decimal | None = None) -> PreTradeDecision:
        """Return what the gate would decide for ``request`` now; nothing is written.

        Raises
        ------
        PermissionDenied
            If the actor may not trade the account.
        ValidationError, NotFound
            If the request is malformed (a limit price outside today's price band included),
            sells more delivery shares than the account can sell, or the symbol is unknown, as
            placing it would.
        """
        self.household.authorize_trade(actor, request.account_id)
        if stop_price is not None:
            request = replace(request, stop_loss=stop_price)
        request, instrument = self.orders.manager.normalise(request)
        estimate = self.orders.priced(request, instrument)
        return self._decide(request, OrderAction.PLACE, estimate, instrument.sector)

    # -- gathering ----------------------------------------------------------------------------
    def _decide(self, request: OrderRequest, action: OrderAction, estimate: OrderEstimate,
                sector: str | None, within: Session | None = None) -> PreTradeDecision:
        household_id = self._household_of(request.account_id)
        limits, _source = self._limits_of(household_id, request.account_id, within)
        since = datetime.now(UTC) - timedelta(seconds=max(limits.duplicate_window_s, 1))
        # What must be fresh: three plain reads (and the new fills and prices, if any) in the
        # order's own transaction, which holds the account's lock, or else on one connection
        # in autocommit (each sees every committed change; no BEGIN/ROLLBACK round trips).
        with ExitStack() as stack:
            # The order's own session holds no unflushed changes yet: its connection reads
            # the same rows, without the ORM's per-statement work.
            reader = within.connection() if within is not None else stack.enter_context(
                self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT"))
            states = risk_store.covering_states(reader, household_id, request.account_id,
                                                to_ist(self.clock()).date())
            fills, peak, recent = self._fills_peak_and_recent(reader, request.account_id, since)
            snapshot = self.snapshot(request.account_id, fills, reader)
        rate, duplicate_age = self._recent(request, limits, recent)
        figures = self.market.figures(request.symbol)
        exposures = _with_open_orders(
            snapshot, recent, request.client_order_id, self.market.sector,
            lambda symbols: read_last_prices(within, symbols) if within is not None
            else last_prices(self.db, symbols))
        open_symbols = [e.symbol for e in exposures if e.quantity]
        assert estimate.ltp is not None  # noqa: S101 - the estimate refuses a missing price
        return decide(PreTradeInput(
            action=action, account_id=request.account_id, symbol=request.symbol,
            sector=sector if sector is not None else self.market.sector(request.symbol),
            side=request.side, product=request.product, quantity=request.quantity,
            lot_size=1, price=estimate.price, capital=snapshot.capital,
            position_quantity=snapshot.net_quantity.get(request.symbol, 0),
            stop_price=request.stop_loss, atr=figures.atr, market_price=estimate.ltp,
            exposures=exposures,
            correlations=self.market.correlations(request.symbol, open_symbols),
            day_pnl=snapshot.day_pnl, week_pnl=snapshot.week_pnl,
            peak_equity=(max(peak.at(snapshot.paid_in), snapshot.capital)
                         if peak is not None else None),
            regime=self.market.regime().regime, orders_last_second=rate,
            duplicate_age_s=duplicate_age, market_open=estimate.session.is_open,
            amo=request.amo, session_detail=estimate.session.detail,
            strategy=request.strategy, states=states), limits)

    def _household_of(self, account_id: int) -> int:
        cached = self._limits.get(account_id)
        if cached is not None:
            return cached[3]
        with self.db.transaction() as session:
            household_id = session.scalar(
                select(AccountRow.household_id).where(AccountRow.id == account_id))
        if household_id is None:
            raise NotFound(f"Account {account_id} does not exist")
        return int(household_id)

    def _limits_of(self, household_id: int, account_id: int, within: Session | None = None
                   ) -> tuple[RiskLimits, str]:
        """Return the account's limits and their source, re-read at most every few seconds.

        ``within`` is the order's own transaction to re-read them in (None: one of their own).
        """
        cached = self._limits.get(account_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < LIMITS_CACHE_SECONDS:
            return cached[1], cached[2]
        with ExitStack() as stack:
            session = within if within is not None else stack.enter_context(
                self.db.transaction())
            limits, source = risk_store.effective_limits(session, household_id, account_id)
        self._limits[account_id] = (now, limits, source, household_id)
        return limits, source

    def forget_limits(self) -> None:
        """Drop cached limits (after this process changed them)."""
        self._limits.clear()

    @staticmethod
    def _fills_peak_and_recent(session: Session | Connection, account_id: int, since: datetime
                               ) -> tuple[tuple[int, int], risk_store.Peak | None, list[Any]]:
        """Return ((fill count, last fill id), stored equity peak, recent orders) at once.

        The orders are those :meth:`_recent_rows` returns (created since ``since``, or open).
        """
        rows = session.execute(_FILLS_PEAK_AND_RECENT, {"account": account_id, "since": since}
                               ).all()
        count, last, peak, paid_in = rows[0][:4]
        return ((int(count), int(last)),
                risk_store.Peak(Decimal(peak), Decimal(paid_in or 0)) if peak is not None
                else None,
                [row[4:] for row in rows if row[4] is not None])

    @staticmethod
    def _fill_version(session: Session, account_id: int) -> tuple[int, int]:
        """Return (how many fills the account has, the last fill's id)."""
        count, last = session.execute(
            select(func.count(TradeRow.id), func.coalesce(func.max(TradeRow.id), 0))
            .where(TradeRow.account_id == account_id)).one()
        return int(count), int(last)

    def _deposits(self, account_id: int) -> Decimal:
        """Return the account's paid-in capital (re-read at most every few seconds)."""
        cached = self._paid_in.get(account_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < LIMITS_CACHE_SECONDS:
            return cached[1]
        broker = self.orders.broker_for(account_id)
        deposits = getattr(broker, "deposits", None)
        if callable(deposits):
            paid = Decimal(deposits())
            self._ledgered.add(account_id)
        else:
            funds = broker.funds()
            paid = funds.available + funds.used_margin
        self._paid_in[account_id] = (now, paid)
        return paid

    def snapshot(self, account_id: int, fills: tuple[int, int] | None = None,
                 reader: Session | Connection | None = None) -> AccountSnapshot:
        """Return the account's capital, P&L and exposure (rebuilt when it has new fills).

        ``fills`` is the account's (fill count, last fill id) if the caller just read it, and
        ``reader`` the open transaction or connection to read new fills and prices in.
        """
        if fills is None:
            with self.db.transaction() as session:
                fills = self._fill_version(session, account_id)
        version = (*fills, self._deposits(account_id))
        with self._books_lock:  # the running books are extended in place: one thread at a time
            cached = self._books.get(account_id)
            if (cached is not None and cached.version == version
                    and time.monotonic() - cached.built_at < BOOK_CACHE_SECONDS):
                return cached
            snapshot = self._build(account_id, version, reader)
            self._books[account_id] = snapshot
            return snapshot

    def fills(self, account_id: int) -> list[Trade]:
        """Return the account's fills as its last :meth:`snapshot` read them (oldest first)."""
        with self._books_lock:
            fills = self._fills.get(account_id)
            return [] if fills is None else list(fills.trades)

    def _trades(self, account_id: int, version: tuple[int, int, Decimal],
                reader: Session | Connection | None = None) -> _Fills:
        """Return every fill of the account, loading only those newer than the last read."""
        count, last_id = version[0], version[1]
        fills = self._fills.get(account_id)
        if fills is None or fills.last_id > last_id or len(fills.trades) > count:
            fills = _Fills()  # first read, or the history changed: read it all again
        if fills.last_id < last_id:
            params = {"account": account_id, "after": fills.last_id}
            with ExitStack() as stack:
                source = reader if reader is not None else stack.enter_context(
                    self.db.transaction())
                # A row has every attribute to_trade reads, under the same names.
                new = [to_trade(cast(TradeRow, row)) for row in source.execute(_NEW_FILLS, params)]
            fills.extend(new)
        if len(fills.trades) != count:  # fills arrived out of id order: read them all
            fills = _Fills()
            fills.extend(load_trades(self.db, [account_id]))
        fills.last_id = last_id
        self._fills[account_id] = fills
        return fills

    def _build(self, account_id: int, version: tuple[int, int, Decimal],
               reader: Session | Connection | None = None) -> AccountSnapshot:
        today = to_ist(self.clock()).date()
        fills = self._trades(account_id, version, reader)
        symbols = fills.symbols
        prices = (read_last_prices(reader, symbols) if reader is not None
                  else last_prices(self.db, symbols))
        book = fills.book.book(prices, today)
        summary = summarise(account_id, book, version[2])
        capital = summary.equity if summary.equity is not None else ZERO
        realized_before, charges_before = fills.before(week_start(today))
        week_realized = book.realized_pnl - realized_before
        week_charges = book.charges - charges_before
        unrealized = sum((p.unrealized_pnl for p in book.positions), ZERO)
        net: dict[str, int] = {}
        value: dict[str, Decimal] = {}
        rows: list[Position | Holding] = [*book.positions, *book.holdings]
        for row in rows:
            if not row.quantity:
                continue
            net[row.symbol] = net.get(row.symbol, 0) + row.quantity
            mark = row.ltp if row.ltp is not None else row.average_price
            value[row.symbol] = value.get(row.symbol, ZERO) + abs(row.quantity) * mark
        exposures = tuple(Exposure(symbol, self.market.sector(symbol), qty, value[symbol])
                          for symbol, qty in sorted(net.items()) if qty)
        return AccountSnapshot(
            account_id=account_id, household_id=self._household_of(account_id),
            capital=capital, day_pnl=book.day_pnl,
            week_pnl=week_realized + unrealized - week_charges, exposures=exposures,
            net_quantity=net, version=version, built_at=time.monotonic(),
            positions=tuple(p for p in book.positions if p.quantity),
            paid_in=version[2] if account_id in self._ledgered else ZERO)

    @staticmethod
    def _recent_rows(session: Session | Connection, account_id: int,
                     since: datetime) -> list[Any]:
        """Return the account's orders created since ``since`` or still open (any process)."""
        return list(session.execute(_RECENT_ORDERS, {"account": account_id, "since": since}).all())

    def _recent(self, request: OrderRequest, limits: RiskLimits,
                rows: list[Any] | None = None) -> tuple[int, float | None]:
        """Return (orders in the last second, seconds since an identical order or None).

        Identical: the same symbol, side and quantity, the quantity being the one placed or
        the one asked for when the gate cut it (so asking for the same again is a repeat).
        """
        now_mono = time.monotonic()
        window = max(limits.duplicate_window_s, 1)
        if rows is None:
            since = datetime.now(UTC) - timedelta(seconds=window)
            with self.db.transaction() as session:
                rows = self._recent_rows(session, request.account_id, since)
        now = datetime.now(UTC)
        db_rate, ages = 0, []
        written = {row[5] for row in rows}
        for created, symbol, side, quantity, status, client_id, *_, asked in rows:
            age = (now - _aware(created)).total_seconds()
            if age < 1.0:
                db_rate += 1
            if (status not in _NOT_DUPLICATES and symbol == request.symbol
                    and side is request.side and request.quantity in (quantity, asked)
                    and client_id != request.client_order_id):
                ages.append(age)
        approvals = self._approved.get(request.account_id)
        mem_rate = 0
        if approvals is not None:
            while approvals and now_mono - approvals[0][0] > window:
                approvals.popleft()
            for at, symbol, side, quantity, approved_id, asked in approvals:
                age = now_mono - at
                if age < 1.0:
                    mem_rate += 1
                if ((symbol, side) == (request.symbol, request.side)
                        and request.quantity in (quantity, asked)
                        and approved_id != request.client_order_id
                        and approved_id not in written):  # written: its status decides
                    ages.append(age)
        return max(db_rate, mem_rate), (min(ages) if ages else None)

    # -- usage ----------------------------------------------------------------------------
    def usage(self, actor: Actor, account_id: int) -> RiskUsage:
        """Return today's use of the account's limits (the actor must be able to view it)."""
        self.household.get_account(actor, account_id)
        household_id = self._household_of(account_id)
        limits, source = self._limits_of(household_id, account_id)
        snapshot = self.snapshot(account_id)
        with self.db.transaction() as session:
            states = risk_store.covering_states(session, household_id, account_id)
            stored = risk_store.peak_of(session, account_id)
        peak = (max(stored.at(snapshot.paid_in), snapshot.capital) if stored is not None
                else None)
        capital = snapshot.capital
        by_sector: dict[str, Decimal] = {}
        for exposure in snapshot.exposures:
            key = exposure.sector or "Unknown"
            by_sector[key] = by_sector.get(key, ZERO) + exposure.value
        sectors = tuple(
            SectorUsage(name, value, _pct(value, capital), limits.max_sector_pct)
            for name, value in sorted(by_sector.items(), key=lambda kv: -kv[1]))
        rate, _ = self._recent(
            OrderRequest(account_id=account_id, symbol="", side=Side.BUY, quantity=0), limits)
        regime = self.market.regime()
        drawdown = _pct(peak - capital, peak) if peak else ZERO
        return RiskUsage(
            account_id=account_id, capital=capital, day_pnl=snapshot.day_pnl,
            daily_limit=loss_limit(capital, snapshot.day_pnl, limits.daily_loss_pct)[1],
            week_pnl=snapshot.week_pnl,
            weekly_limit=loss_limit(capital, snapshot.week_pnl, limits.weekly_loss_pct)[1],
            open_positions=sum(1 for e in snapshot.exposures if e.quantity),
            max_open_positions=limits.max_open_positions, sectors=sectors,
            orders_last_second=rate, max_orders_per_second=limits.max_orders_per_second,
            peak_equity=peak, drawdown_pct=drawdown,
            drawdown_reduce_pct=limits.drawdown_reduce_pct,
            drawdown_kill_pct=limits.drawdown_kill_pct, regime=regime.regime,
            regime_reason=regime.reason, states=states, limits=limits, limits_source=source)


def _pct(part: Decimal, whole: Decimal | None) -> Decimal:
    if not whole or whole <= 0:
        return ZERO
    return (part * 100 / whole).quantize(Decimal("0.01"))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _with_open_orders(snapshot: AccountSnapshot, rows: list[Any], client_id: str | None,
                      sector_of: Callable[[str], str | None],
                      price_of: Callable[[list[str]], dict[str, Decimal]]
                      ) -> tuple[Exposure, ...]:
    """Return the account's exposures as if its open orders' unfilled parts filled too.

    The sector and open-position limits judge what the account would hold: two orders placed
    together (two tabs, a strategy's burst) or a resting LIMIT order must not each pass alone
    what they break together. Per symbol the worse side counts: the position plus every open
    BUY, or the position less every open SELL, whichever is larger. The order being modified
    (``client_id``) is left out: the request stands for it. A symbol is valued at the
    position's mark, else at its open orders' average limit (or trigger) price, else at the
    last price ``price_of`` reads (MARKET and SL-M orders in a symbol not held).
    """
    buys: dict[str, list[tuple[int, Decimal | None]]] = {}
    sells: dict[str, list[tuple[int, Decimal | None]]] = {}
    for row in rows:
        symbol, side, quantity, status, row_id, filled, price, trigger = row[1:9]
        left = int(quantity) - int(filled or 0)
        if status not in _OPEN_STATUSES or row_id == client_id or left <= 0:
            continue
        mark = price if price is not None else trigger
        (buys if side is Side.BUY else sells).setdefault(symbol, []).append(
            (left, Decimal(mark) if mark is not None else None))
    if not buys and not sells:
        return snapshot.exposures
    held = {e.symbol: e for e in snapshot.exposures}
    totals: dict[str, tuple[int, list[tuple[int, Decimal | None]]]] = {}
    for name in set(held) | set(buys) | set(sells):
        quantity = held[name].quantity if name in held else 0
        up_orders, down_orders = buys.get(name, []), sells.get(name, [])
        up = quantity + sum(q for q, _ in up_orders)
        down = quantity - sum(q for q, _ in down_orders)
        worst, orders = (up, up_orders) if abs(up) >= abs(down) else (down, down_orders)
        if worst:
            totals[name] = (worst, orders)
    unpriced = sorted(n for n, (_, orders) in totals.items() if n not in held
                      and not any(mark is not None for _, mark in orders))
    last = price_of(unpriced) if unpriced else {}
    out = []
    for name, (worst, orders) in sorted(totals.items()):
        now = held.get(name)
        priced = [(q, mark) for q, mark in orders if mark is not None]
        if now is not None and now.quantity:
            unit = now.value / abs(now.quantity)
        elif priced:
            unit = sum((q * mark for q, mark in priced), ZERO) / sum(q for q, _ in priced)
        else:
            unit = last.get(name, ZERO)
        out.append(Exposure(name, now.sector if now is not None else sector_of(name), worst,
                            abs(worst) * unit))
    return tuple(out)
