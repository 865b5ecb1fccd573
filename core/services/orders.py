"""Orders for pages, jobs and the bot: authorization first, then the order manager.

Every method that places or changes an order calls
:meth:`~core.services.household.HouseholdService.authorize_trade` for the acting user before
:class:`~core.orders.OrderManager` runs the order path (which calls the risk gate). GTTs fire
from the worker's :meth:`OrderService.step` on behalf of their creator, whose right to trade the
account is checked again at that moment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from brokers.base import Broker, OrderChange, SessionState
from brokers.registry import only_desk_book_brokers, venue_steppers
from core import alerts, audit, risk_store
from core import gtt as gtt_rules
from core.clock import now_ist, to_ist
from core.config import Settings
from core.domain import Account, Actor, Instrument, Permission, Quote
from core.errors import (
    NotFound,
    OrderClosed,
    PermissionDenied,
    RiskRejected,
    TradingError,
    ValidationError,
)
from core.marketdata.quotes import read_quotes
from core.marketdata.store import all_instruments, search_instruments
from core.marketdata.store import instrument as find_instrument
from core.money import inr
from core.order_alerts import OrderEvent, gtt_refused_event
from core.orders import OrderEstimate, OrderManager, PassThroughRiskGate, RiskGate, load_order
from core.services import trading_views as views
from core.services.base import ServiceBase
from core.services.household import HouseholdService
from core.services.trade_book import load_trades
from core.statements import trade_book_frame
from core.trading import (
    Gtt,
    GttKind,
    GttLeg,
    GttStatus,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Product,
    Side,
    check_price_band,
    check_request,
)
from db.engine import Database
from db.locks import lock_accounts
from db.models import AccountRow, GttRow, MemberRow, OrderRow, UserRow
from engines.risk_types import Scope

log = logging.getLogger("sher.orders")

BOOK_LIMIT = 500
#: The ``source`` of a square-off's exit orders.
SQUARE_OFF = "square_off"
#: How often the worker's step asks desk-database brokers for every open order (seconds).
DESK_SYNC_SECONDS = 10.0
# Built once: the worker reads the active GTTs on every step.
_ACTIVE_GTTS = select(GttRow).where(GttRow.status == GttStatus.ACTIVE)


@dataclass(frozen=True, slots=True)
class StepReport:
    """What one worker step of the trading desk did."""

    venue_events: int
    synced: int
    gtts_fired: int


class OrderService(ServiceBase):
    """Place, change and list orders and GTTs; run the desk's trading step for the worker."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        household: HouseholdService,
        risk_gate: RiskGate | None = None,
        clock: Callable[[], datetime] = now_ist,
    ) -> None:
        """Bind to ``db``; ``risk_gate`` defaults to the pass-through gate."""
        super().__init__(db, settings)
        self.household = household
        self.clock = clock
        self._brokers: dict[int, Broker] = {}
        self._desk_synced_at = -DESK_SYNC_SECONDS  # the first step syncs every account
        self.manager = OrderManager(
            db, self.broker_for, risk_gate or PassThroughRiskGate(),
            mis_leverage=settings.paper_mis_leverage,
            slippage_bps=settings.paper_slippage_bps, clock=clock)

    # -- brokers --------------------------------------------------------------------------
    def broker_for(self, account_id: int) -> Broker:
        """Return the broker adapter of an account (built once per process)."""
        broker = self._brokers.get(account_id)
        if broker is None:
            with self.db.transaction() as session:
                row = session.get(AccountRow, account_id)
                if row is None:
                    raise NotFound(f"Account {account_id} does not exist")
                name = row.broker
            from brokers.registry import build_broker

            broker = build_broker(name, db=self.db, settings=self.settings,
                                  account_id=account_id, clock=self.clock)
            self._brokers[account_id] = broker
        return broker

    # -- reading --------------------------------------------------------------------------
    def tradable_accounts(self, actor: Actor) -> list[Account]:
        """Return the active accounts the actor may place orders on."""
        return [a for a in self.household.list_accounts(actor)
                if a.my_permission is Permission.TRADE]

    def symbols(self, actor: Actor) -> dict[str, Decimal | None]:
        """Return every active symbol of the instrument master, sorted, with its last price.

        None: no quote yet (the feed does not price it), so an order in it cannot be priced.
        """
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            quotes = read_quotes(session)
            return {i.symbol: quotes[i.symbol].ltp if i.symbol in quotes else None
                    for i in sorted(all_instruments(session), key=lambda i: i.symbol)}

    def search_symbols(self, actor: Actor, query: str, limit: int = 20) -> list[Instrument]:
        """Return instruments whose symbol or name matches ``query``."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            return search_instruments(session, query, limit)

    def market_session(self, actor: Actor, account_id: int) -> SessionState:
        """Return whether the account's market is open now (else only AMO orders)."""
        self.household.get_account(actor, account_id)
        return self.broker_for(account_id).session()

    def viewable_ids(self, actor: Actor, account_id: int | None) -> list[int]:
        """Return ``[account_id]`` if the actor may view it (else refuse), or all they may view."""
        if account_id is not None:
            return [self.household.get_account(actor, account_id).id]
        return [a.id for a in self.household.list_accounts(actor, include_closed=True)]

    def order_book(self, actor: Actor, account_id: int | None = None,
                   open_only: bool = False) -> list[Order]:
        """Return the newest orders (up to 500) of the accounts the actor may view."""
        ids = self.viewable_ids(actor, account_id)
        with self.db.transaction() as session:
            query = (select(OrderRow.id).where(OrderRow.account_id.in_(ids))
                     .order_by(OrderRow.id.desc()).limit(BOOK_LIMIT))
            if open_only:
                query = query.where(OrderRow.status.in_(
                    [OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED]))
            return [load_order(session, ident) for ident in session.scalars(query)]

    def order_book_frame(self, actor: Actor, account_id: int | None = None,
                         open_only: bool = False) -> pd.DataFrame:
        """Return the order book as a display-ready table."""
        return views.orders_frame(self.order_book(actor, account_id, open_only))

    def trade_book_frame(self, actor: Actor, account_id: int | None = None,
                         start: date | None = None, end: date | None = None) -> pd.DataFrame:
        """Return executions of the viewable accounts in [start, end] (default: all)."""
        ids = self.viewable_ids(actor, account_id)
        return trade_book_frame(load_trades(self.db, ids, start, end),
                                labels=self.household_labels(actor))

    def household_labels(self, actor: Actor) -> dict[int, str]:
        """Return account id -> label for the accounts the actor may view."""
        return {a.id: a.label for a in self.household.list_accounts(actor, include_closed=True)}

    # -- placing and changing ----------------------------------------------------------------
    def estimate(self, actor: Actor, request: OrderRequest) -> OrderEstimate:
        """Return price, value, charges and required vs available funds before submitting.

        Raises
        ------
        ValidationError
            As placing it would, a limit price outside today's price band and a delivery sell
            beyond the sellable shares included.
        """
        self.household.authorize_trade(actor, request.account_id)
        normalised, instrument = self.manager.normalise(request)
        return self.priced(normalised, instrument)

    def priced(self, request: OrderRequest, instrument: Instrument) -> OrderEstimate:
        """Return the estimate of a normalised ``request``, refusing a limit price outside
        today's price band (:func:`~core.trading.check_price_band`) from the same quote, and a
        delivery (CNC) sell of more shares than the account can sell now, as placing it would
        (:meth:`~core.orders.OrderManager.check_sellable`, from the broker's same pre-trade
        read)."""
        pre = self.manager.pre_trade(self.broker_for(request.account_id), request.symbol)
        estimate = self.manager.estimate(request, instrument, pre)
        if pre.quote is not None:
            check_price_band(request, pre.quote.prev_close, pre.quote.ltp, instrument.tick_size)
        if request.product is Product.CNC and request.side is Side.SELL:
            self.manager.check_sellable(request, pre)
        return estimate

    def place(self, actor: Actor, request: OrderRequest, source: str = "web") -> Order:
        """Place an order; refusals raise (nothing written), broker rejections return REJECTED.

        A limit price outside today's price band is refused before anything is written (the
        exchange would not accept it); the broker checks the band again when it takes the
        order, and its answer stands.
        """
        account = self.household.authorize_trade(actor, request.account_id)
        self._check_price_band(request)
        return self.manager.submit(request, placed_by=actor, source=source,
                                   account_label=account.label)

    def _check_price_band(self, request: OrderRequest) -> None:
        """Refuse ``request``'s limit price if it lies outside the band the broker's quote gives.

        No price (MARKET, SL-M), no quote or no previous close: nothing to check here. A client
        order id already recorded is left to the order manager, which hands that order back.
        """
        if request.price is None:
            return
        normalised, instrument = self.manager.normalise(request)
        if request.client_order_id is not None:
            with self.db.transaction() as session:
                if session.scalar(select(OrderRow.id).where(
                        OrderRow.client_order_id == normalised.client_order_id)) is not None:
                    return
        quote = self.broker_for(normalised.account_id).quote(normalised.symbol)
        if quote is not None:
            check_price_band(normalised, quote.prev_close, quote.ltp, instrument.tick_size)

    def _authorized_order(self, actor: Actor, order_id: int) -> Order:
        with self.db.transaction() as session:
            account_id = session.scalar(
                select(OrderRow.account_id).where(OrderRow.id == order_id))
        if account_id is None:
            self._deny(actor, "orders.change", f"order:{order_id}",
                       f"Order {order_id} is not available to you")
        self.household.authorize_trade(actor, account_id)
        with self.db.transaction() as session:
            return load_order(session, order_id)

    def modify(self, actor: Actor, order_id: int, *, quantity: int | None = None,
               price: Decimal | None = None, trigger_price: Decimal | None = None) -> Order:
        """Change an open order's quantity, price or trigger (through the risk gate)."""
        self._authorized_order(actor, order_id)
        if quantity is None and price is None and trigger_price is None:
            raise ValidationError("Nothing to change: give a new quantity, price or trigger")
        return self.manager.modify(order_id, OrderChange(quantity, price, trigger_price), actor)

    def cancel(self, actor: Actor, order_id: int) -> Order:
        """Cancel an open order's unfilled rest."""
        self._authorized_order(actor, order_id)
        return self.manager.cancel(order_id, actor)

    def square_off_intraday(self, actor: Actor | None, account_id: int) -> list[Order]:
        """Cancel open MIS orders and close every MIS position at market.

        ``actor`` None is the worker's end-of-day job; a user must be allowed to trade. The
        exits of an earlier square-off still open are kept, and what they will close is not
        sent again (a second press while they fill places nothing more).
        """
        if actor is not None:
            self.household.authorize_trade(actor, account_id)
        with self.db.transaction() as session:
            lock_accounts(session, [account_id])  # and so find the orders recording now
            rows = session.execute(select(
                OrderRow.id, OrderRow.source, OrderRow.symbol, OrderRow.side, OrderRow.quantity,
                OrderRow.filled_quantity).where(
                OrderRow.account_id == account_id, OrderRow.product == Product.MIS,
                OrderRow.status.in_([OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED]))).all()
        open_mis = [r.id for r in rows if r.source != SQUARE_OFF]
        exiting: dict[str, int] = {}  # symbol -> signed quantity the open exits will trade
        for r in rows:
            if r.source == SQUARE_OFF:
                rest = r.quantity - r.filled_quantity
                exiting[r.symbol] = exiting.get(r.symbol, 0) + (rest if r.side is Side.BUY
                                                                else -rest)
        why = ("Cancelled by the scheduled MIS square-off" if actor is None
               else f"Cancelled by {actor.username}'s intraday square-off")
        for order_id in open_mis:
            try:
                self.manager.cancel(order_id, actor, why)
            except OrderClosed:  # filled or cancelled since: nothing left to cancel
                continue
        placed = []
        for position in self.broker_for(account_id).positions():
            if position.product is not Product.MIS or position.quantity == 0:
                continue
            left = position.quantity + exiting.get(position.symbol, 0)
            if left == 0 or (left > 0) != (position.quantity > 0):
                continue  # the open exits close it
            side = Side.SELL if left > 0 else Side.BUY
            request = OrderRequest(account_id, position.symbol, side, abs(left),
                                   OrderType.MARKET, Product.MIS)
            placed.append(self.manager.submit_paced(request, placed_by=actor,
                                                    source=SQUARE_OFF))
        return placed

    # -- GTT --------------------------------------------------------------------------------
    def create_gtt(self, actor: Actor, account_id: int, symbol: str, product: Product,
                   legs: Sequence[GttLeg]) -> Gtt:
        """Create a single (one leg) or OCO (stop-loss leg, target leg) GTT."""
        account, instrument, ltp, kind = self._checked_gtt(actor, account_id, symbol, product,
                                                           legs)
        symbol = instrument.symbol
        now = self.clock()
        with self.db.transaction() as session:
            # Under the account lock, as orders are placed: a panic engaging now either is seen
            # here (refused) or lists this GTT under the same lock to cancel it.
            lock_accounts(session, [account.id])
            _refuse_while_stopped(session, account)
            row = GttRow(account_id=account.id, instrument_id=instrument.id, symbol=symbol,
                         kind=kind, product=product, status=GttStatus.ACTIVE,
                         reference_price=ltp, created_by_user_id=actor.user_id,
                         expires_at=gtt_rules.expiry(now), **_leg_columns(legs))
            session.add(row)
            session.flush()
            self._audit(session, actor, "gtt.create", f"gtt:{row.id}",
                        {"account_id": account.id, "symbol": symbol, "kind": kind.value,
                         "legs": [vars_of(leg) for leg in legs]},
                        household_id=account.household_id)
            gtt_id = row.id
        return self._gtt(gtt_id)

    def review_gtt(self, actor: Actor, account_id: int, symbol: str, product: Product,
                   legs: Sequence[GttLeg]) -> list[OrderEstimate]:
        """Check a GTT as :meth:`create_gtt` does and estimate each leg's order; write nothing.

        Each estimate prices the LIMIT order the leg places at the leg's limit price (the worst
        it fills at) with today's charges, against the funds available now; the funds are
        checked again when the trigger places the order.

        Raises
        ------
        ValidationError, NotFound, PermissionDenied
            As :meth:`create_gtt` would, for the same GTT.
        """
        _account, instrument, _ltp, _kind = self._checked_gtt(actor, account_id, symbol,
                                                              product, legs)
        pre = self.manager.pre_trade(self.broker_for(account_id), instrument.symbol)
        return [self.manager.estimate(
            OrderRequest(account_id, instrument.symbol, leg.side, leg.quantity, OrderType.LIMIT,
                         product, price=leg.price), instrument, pre, at=leg.price)
            for leg in legs]

    def _checked_gtt(self, actor: Actor, account_id: int, symbol: str, product: Product,
                     legs: Sequence[GttLeg]) -> tuple[Account, Instrument, Decimal, GttKind]:
        """Authorize and check a GTT; return the account, instrument, LTP and the GTT's kind.

        A kill switch, panic, loss limit or disable of the household or the account refuses
        it: the GTT would wait and fire an order while (or after) trading is stopped. So does
        a leg whose order is above the account's order value or quantity limit
        (:func:`core.gtt.check_order_limits`): the gate would refuse it when it fires.
        """
        account = self.household.authorize_trade(actor, account_id)
        with self.db.transaction() as session:
            _refuse_while_stopped(session, account)
        symbol = symbol.strip().upper()
        with self.db.transaction() as session:
            instrument = find_instrument(session, symbol)
        if instrument is None:
            raise NotFound(f"Unknown symbol {symbol!r} on NSE; pick one from the list")
        for leg in legs:
            check_request(OrderRequest(account_id, symbol, leg.side, leg.quantity,
                                       OrderType.LIMIT, product, price=leg.price), instrument)
        broker = self.broker_for(account_id)
        quote = broker.quote(symbol)
        if quote is None:
            raise ValidationError(f"No live price for {symbol}; a GTT needs one to set its "
                                  "trigger direction")
        kind = gtt_rules.check_gtt(legs, instrument, quote.ltp)
        with self.db.transaction() as session:  # the per-order limits in force for the account
            limits, _source = risk_store.effective_limits(session, account.household_id,
                                                          account_id)
        gtt_rules.check_order_limits(legs, symbol, limits)
        sells = [leg for leg in legs if leg.side is Side.SELL]
        if product is Product.CNC and sells:  # as a broker does: a delivery sell GTT needs shares
            largest = max(sells, key=lambda leg: leg.quantity)  # an OCO fires one leg only
            self.manager.check_sellable(
                OrderRequest(account_id, symbol, Side.SELL, largest.quantity, OrderType.LIMIT,
                             product, price=largest.price),
                self.manager.pre_trade(broker, symbol))
        return account, instrument, quote.ltp, kind

    def cancel_gtt(self, actor: Actor, gtt_id: int) -> Gtt:
        """Cancel an active GTT."""
        with self.db.transaction() as session:
            account_id = session.scalar(select(GttRow.account_id).where(GttRow.id == gtt_id))
        if account_id is None:
            self._deny(actor, "gtt.cancel", f"gtt:{gtt_id}", f"GTT {gtt_id} is not available "
                       "to you")
        account = self.household.authorize_trade(actor, account_id)
        with self.db.transaction() as session:
            row = session.get(GttRow, gtt_id, with_for_update=True)
            assert row is not None  # noqa: S101
            if row.status is not GttStatus.ACTIVE:
                raise ValidationError(f"GTT {gtt_id} is {row.status.value}; only active GTTs "
                                      "can be cancelled")
            row.status = GttStatus.CANCELLED
            self._audit(session, actor, "gtt.cancel", f"gtt:{gtt_id}", {},
                        household_id=account.household_id)
        return self._gtt(gtt_id)

    def gtts(self, actor: Actor, account_id: int | None = None,
             active_only: bool = False) -> list[Gtt]:
        """Return the GTTs of the accounts the actor may view, newest first."""
        ids = self.viewable_ids(actor, account_id)
        with self.db.transaction() as session:
            query = select(GttRow.id).where(GttRow.account_id.in_(ids)).order_by(GttRow.id.desc())
            if active_only:
                query = query.where(GttRow.status == GttStatus.ACTIVE)
            gtt_ids = list(session.scalars(query.limit(BOOK_LIMIT)))
        return [self._gtt(ident) for ident in gtt_ids]

    def gtt_frame(self, actor: Actor, account_id: int | None = None) -> pd.DataFrame:
        """Return the GTT list as a display-ready table."""
        return views.gtt_frame(self.gtts(actor, account_id))

    def _gtt(self, gtt_id: int) -> Gtt:
        with self.db.transaction() as session:
            found = session.execute(
                select(GttRow, AccountRow.label, UserRow.username)
                .join(AccountRow, AccountRow.id == GttRow.account_id)
                .outerjoin(UserRow, UserRow.id == GttRow.created_by_user_id)
                .where(GttRow.id == gtt_id)).one()
            return views.to_gtt(*found)

    # -- the worker's step ------------------------------------------------------------------
    def step(self, now: datetime | None = None) -> StepReport:
        """Match simulated venues, mirror broker state, fire due GTTs; the worker runs it."""

        now = now or self.clock()
        events = synced = 0
        incomplete: list[int] = []
        with self.db.transaction() as session:  # a venue's fills and their mirror: one commit
            for venue_step in venue_steppers(self.db, self.settings, self.clock):
                stepped = venue_step(now, session)
                events += stepped.events
                mirrored, missing = self.manager.apply_updates_in(session, stepped.updates)
                synced += mirrored
                incomplete.extend(missing)
        if incomplete:
            synced += self.manager.sync(incomplete)
        # Anything changed outside the venues' steps: every step for brokers outside the
        # desk's database (if any broker is), every DESK_SYNC_SECONDS for the rest (a safety
        # net; see sync).
        desk = time.monotonic() - self._desk_synced_at >= DESK_SYNC_SECONDS
        if desk or not only_desk_book_brokers():
            synced += self.manager.sync(desk=desk)
        if desk:
            self._desk_synced_at = time.monotonic()
        fired = self.fire_gtts(now)
        return StepReport(events, synced, fired)

    def fire_gtts(self, now: datetime) -> int:
        """Fire every active GTT whose trigger the LTP crossed; expire old ones."""
        with self.db.reading() as session:
            rows = list(session.scalars(_ACTIVE_GTTS))
        fired = 0
        live = [row for row in rows if to_ist(row.expires_at) > now]
        for row in rows:
            if to_ist(row.expires_at) <= now:
                self._close_gtt(row.id, GttStatus.EXPIRED, "Expired unfired after one year")
        markets = self._gtt_markets(live)
        for row in live:
            quote = markets[row.account_id].get(row.symbol)
            if quote is None:
                continue
            legs = views.gtt_legs(row)
            index = gtt_rules.fired_leg(legs, row.reference_price, quote.ltp)
            if index is not None and self._claim(row.id, index, now):
                fired += 1
                self._place_for_gtt(row, legs[index], index, quote.ltp)
        return fired

    def _gtt_markets(self, rows: list[GttRow]) -> dict[int, dict[str, Quote]]:
        """Return, per account, the quotes of its GTT symbols while its market is open.

        Accounts whose brokers share a market (``market_key``, e.g. every paper account on
        the feed) are served by one read of the session and one of the prices.
        """
        groups: dict[str, tuple[Broker, set[int], set[str]]] = {}
        for row in rows:
            broker = self.broker_for(row.account_id)
            key = getattr(broker, "market_key", None) or f"account:{row.account_id}"
            _, accounts, symbols = groups.setdefault(key, (broker, set(), set()))
            accounts.add(row.account_id)
            symbols.add(row.symbol)
        markets: dict[int, dict[str, Quote]] = {}
        for broker, accounts, symbols in groups.values():
            quotes = broker.quotes(sorted(symbols)) if broker.session().is_open else {}
            for account_id in accounts:
                markets[account_id] = quotes
        return markets

    def _claim(self, gtt_id: int, index: int, now: datetime) -> bool:
        with self.db.transaction() as session:
            row = session.get(GttRow, gtt_id, with_for_update=True)
            if row is None or row.status is not GttStatus.ACTIVE:
                return False  # someone else fired or cancelled it
            row.status, row.triggered_at, row.triggered_leg = GttStatus.TRIGGERED, now, index + 1
            self._audit(session, None, "gtt.trigger", f"gtt:{gtt_id}", {"leg": index + 1},
                        household_id=_gtt_household(session, row))
            return True

    def _place_for_gtt(self, row: GttRow, leg: GttLeg, index: int, ltp: Decimal) -> None:
        request = OrderRequest(row.account_id, row.symbol, leg.side, leg.quantity,
                                    OrderType.LIMIT, row.product, price=leg.price,
                                    client_order_id=f"GTT-{row.id}")
        try:
            creator = self._creator(row)
            self.household.authorize_trade(creator, row.account_id)
            order = self.manager.submit(request, placed_by=creator, source="gtt", gtt_id=row.id)
        except TradingError as exc:
            refused = gtt_refused_event(row.id, row.symbol, leg.side.value, leg.quantity,
                                        str(exc))
            self._close_gtt(row.id, GttStatus.REJECTED, f"Triggered at {inr(ltp)} but the order "
                            f"was refused: {exc}", alert=refused)
            return
        with self.db.transaction() as session:
            saved = session.get(GttRow, row.id)
            assert saved is not None  # noqa: S101
            saved.order_id = order.id
            # "placed", not the order's status now: that would go stale (the order book is live).
            # A rejection is final, so it is named with its reason.
            outcome = "placed"
            if order.status is OrderStatus.REJECTED:
                saved.status = GttStatus.REJECTED
                why = order.rejection_reason
                outcome = f"rejected: {why}" if why else "rejected"
            saved.message = (f"Leg {index + 1} triggered at {inr(ltp)}; order {order.id} "
                             f"{outcome}")[:300]

    def _creator(self, row: GttRow) -> Actor:
        with self.db.transaction() as session:
            user = session.get(UserRow, row.created_by_user_id) if row.created_by_user_id else None
            if user is None:
                raise PermissionDenied(f"GTT {row.id} has no creator who may trade")
            member_id = session.scalar(select(MemberRow.id).where(MemberRow.user_id == user.id))
            return Actor(user.id, user.username, user.display_name, user.role,
                         user.household_id, member_id)

    def _close_gtt(self, gtt_id: int, status: GttStatus, message: str,
                   alert: OrderEvent | None = None) -> None:
        """Close a GTT; ``alert`` (an order the trigger could not place) commits with it."""
        with self.db.transaction() as session:
            row = session.get(GttRow, gtt_id, with_for_update=True)
            assert row is not None  # noqa: S101
            row.status, row.message = status, message[:300]
            household_id = _gtt_household(session, row)
            self._audit(session, None, f"gtt.{status.value}", f"gtt:{gtt_id}",
                        {"message": message[:300]},
                        outcome=audit.FAILED if status is GttStatus.REJECTED else audit.OK,
                        household_id=household_id)
            if alert is not None:
                alerts.enqueue(session, kind=alert.kind, household_id=household_id,
                               account_id=row.account_id, severity=alert.severity,
                               title=alert.title, body=alert.body,
                               dedupe_key=alert.dedupe_key)


def _gtt_household(session: Session, row: GttRow) -> int:
    """Return the household of a GTT's account (its audit rows and alerts belong there)."""
    household_id = session.scalar(select(AccountRow.household_id).where(
        AccountRow.id == row.account_id))
    assert household_id is not None  # noqa: S101 - the GTT's account exists
    return household_id


def _leg_columns(legs: Sequence[GttLeg]) -> dict[str, object]:
    first = legs[0]
    columns: dict[str, object] = {
        "leg1_trigger": first.trigger_price, "leg1_side": first.side,
        "leg1_quantity": first.quantity, "leg1_price": first.price}
    if len(legs) == 2:
        second = legs[1]
        columns.update(leg2_trigger=second.trigger_price, leg2_side=second.side,
                       leg2_quantity=second.quantity, leg2_price=second.price)
    return columns


def vars_of(leg: GttLeg) -> dict[str, str]:
    """Return a GTT leg as audit details."""
    return {"trigger": str(leg.trigger_price), "side": leg.side.value,
            "quantity": str(leg.quantity), "price": str(leg.price)}


def _refuse_while_stopped(session: Session, account: Account) -> None:
    """Refuse a GTT while a kill switch, panic, loss limit or disable stops the account."""
    stops = [s for s in risk_store.covering_states(session, account.household_id, account.id)
             if s.strategy is None]
    if stops:
        stop = stops[0]
        where = "the household" if stop.scope is Scope.HOUSEHOLD else "this account"
        raise RiskRejected(
            f"No GTT while trading is stopped on {where}: "
            f"{stop.kind.value.replace('_', ' ')} ({stop.phase.value}) — {stop.reason}. "
            "Create it once the stop is lifted (Risk page)")
