"""Order management: intent -> validation -> risk gate -> persisted -> broker -> state machine.

Every order the desk sends goes through :meth:`OrderManager.submit`, whatever asked for it (the
order ticket, a GTT trigger, the end-of-day square-off, later strategies and the Telegram bot):

1. the request is normalised and checked against the instrument
   (:func:`core.trading.check_request`), the broker's capabilities, the market session, the
   live price and the account's funds and sellable shares; a refusal raises, writes nothing;
2. the **risk gate** (:class:`RiskGate`; in production
   :class:`core.services.risk_gate.DeskRiskGate`) decides, and may reduce the quantity; no
   path skips the call (orders of the risk procedures themselves, ``source`` "panic" or
   "risk", go through it as action ``protect``);
3. the order is persisted as ``PENDING`` with its client order id **before** it is sent, so a
   crash after sending cannot lose it, and the same client order id submitted twice yields one
   order (with a broker keeping its book in the desk's database, the row and the broker's
   order are written in one transaction, the row once, with the broker's answer: they commit
   together or not at all);
4. the broker acknowledges (``OPEN``) or refuses (``REJECTED`` with the broker's reason);
5. :meth:`OrderManager.sync` mirrors the broker's order states and executions back into the
   book (``PARTIALLY_FILLED``, ``FILLED``, ``CANCELLED``), with their charges.

Each transition is written to the audit trail, and each event a person wants on the phone
(placed, filled, partially filled, rejected, cancelled) to the alert outbox in the same
transaction (:mod:`core.order_alerts`). Authorization (may this user trade this
account?) is the service layer's job: :class:`core.services.orders.OrderService` calls
:meth:`core.services.household.HouseholdService.authorize_trade` before any of this.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol, cast

from sqlalchemy import Integer, Table, bindparam, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from brokers.base import (
    Broker,
    Capability,
    DeskDatabaseBroker,
    OrderChange,
    OrderUpdate,
    PreTrade,
    PreTradeReader,
    SessionState,
)
from core import audit
from core.clock import now_ist, to_ist
from core.domain import Actor, Instrument
from core.errors import (
    InsufficientFunds,
    NotFound,
    OrderClosed,
    OrderRejected,
    RateLimited,
    RiskRejected,
    ValidationError,
)
from core.marketdata.store import instrument as find_instrument
from core.money import inr
from core.order_alerts import enqueue_order_event
from core.trading import (
    CHARGE_FIELDS,
    Charges,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Product,
    Side,
    Validity,
    check_request,
    check_trigger_vs_ltp,
    expected_price,
    may_transition,
    required_funds,
)
from db.base import utcnow
from db.engine import Database
from db.models import AccountRow, OrderRow, TradeRow, UserRow
from engines import costs
from engines.risk_types import OrderAction, PreTradeDecision

_REASON_CHARS = 300
#: How long the order manager reuses an instrument's tick and lot size (seconds).
INSTRUMENT_CACHE_SECONDS = 30.0
#: A burst of exits waits out the SEBI orders-per-second limit: tries again this often (s) ...
PACE_STEP_S = 0.2
#: ... for at most this long per order (s); 25 positions close in under 3 s.
PACE_WAIT_S = 5.0
_CAPABILITY_FOR = {
    OrderType.SL: Capability.SL,
    OrderType.SL_M: Capability.SL_M,
}


# ----------------------------------------------------------------------------------------------
# The risk gate hook
# ----------------------------------------------------------------------------------------------


#: Order sources whose orders are the risk procedures' own exits (gate action ``protect``).
PROTECT_SOURCES = frozenset({"panic", "risk"})


@dataclass(frozen=True, slots=True)
class RiskContext:
    """What the risk gate is told about an order besides the request itself."""

    action: OrderAction
    account_id: int
    user_id: int | None
    ltp: Decimal
    estimate: OrderEstimate
    instrument: Instrument | None = None
    pre: PreTrade | None = None
    #: The transaction the order is written in, with the account locked (desk-database
    #: brokers): a gate reads in it, so it decides on exactly what the write will find.
    session: Session | None = None


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """The gate's verdict with its reasons (shown to the user when it refuses).

    ``quantity`` is the size the gate approves (None: as requested); the order manager places
    that size. ``decision`` is the risk engine's full answer, when a real gate made it.
    """

    approved: bool
    reasons: tuple[str, ...] = ()
    quantity: int | None = None
    decision: PreTradeDecision | None = None


class RiskGate(Protocol):
    """Decides whether an order may go to the broker; never raises for a refusal."""

    def check(self, request: OrderRequest, context: RiskContext) -> RiskDecision:
        """Return the decision for ``request``."""
        ...


class PassThroughRiskGate:
    """Approves everything; stands in until the risk engine is plugged in (issue: risk gate)."""

    def check(self, request: OrderRequest, context: RiskContext) -> RiskDecision:
        """Approve ``request``."""
        return RiskDecision(True, ("pass-through: no risk limits configured yet",))


# ----------------------------------------------------------------------------------------------
# Pre-trade arithmetic (pure)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderEstimate:
    """What the order ticket shows before submission, in rupees."""

    symbol: str
    ltp: Decimal | None
    price: Decimal
    value: Decimal
    charges: Charges
    required_funds: Decimal
    available_funds: Decimal
    session: SessionState
    warnings: tuple[str, ...] = ()

    @property
    def shortfall(self) -> Decimal:
        """Return how much more money the order needs (0 if it fits)."""
        return max(self.required_funds - self.available_funds, Decimal(0))


def charges_estimate(request: OrderRequest, price: Decimal, trade_date: date,
                     dp_applies: bool = True) -> Charges:
    """Return the charges of executing ``request`` in full at ``price`` (paper profile).

    ``dp_applies`` False: the account already paid today's DP charge on the symbol (a delivery
    sell earlier today), so this delivery sell pays none.
    """
    segment = (costs.Segment.EQUITY_INTRADAY if request.product is Product.MIS
               else costs.Segment.EQUITY_DELIVERY)
    leg = costs.leg_charges(segment, request.side.value.lower(), price, request.quantity,
                            trade_date, costs.DEFAULT_PROFILE, dp_applies=dp_applies)
    return Charges(*(getattr(leg, name) for name in CHARGE_FIELDS))


def new_client_order_id() -> str:
    """Return a fresh client order id (``SHER-`` and 16 hex digits)."""
    return f"SHER-{uuid.uuid4().hex[:16]}"


# ----------------------------------------------------------------------------------------------
# Rows <-> domain
# ----------------------------------------------------------------------------------------------


def to_order(row: OrderRow, account_label: str, placed_by: str | None) -> Order:
    """Return the domain order of a row."""
    return Order(
        id=row.id, client_order_id=row.client_order_id, account_id=row.account_id,
        account_label=account_label, symbol=row.symbol, side=row.side, quantity=row.quantity,
        order_type=row.order_type, product=row.product, validity=row.validity, price=row.price,
        trigger_price=row.trigger_price, amo=row.is_amo, status=row.status,
        filled_quantity=row.filled_quantity, average_price=row.average_price,
        broker_order_id=row.broker_order_id, rejection_reason=row.rejection_reason,
        source=row.source, placed_by=placed_by, created_at=to_ist(row.created_at),
        updated_at=to_ist(row.updated_at), gtt_id=row.gtt_id)


# Built once: on the order path, building a statement costs about as much CPU as sending it.
_ORDER_WITH_NAMES = (select(OrderRow, AccountRow.label, UserRow.username)
                     .join(AccountRow, AccountRow.id == OrderRow.account_id)
                     .outerjoin(UserRow, UserRow.id == OrderRow.placed_by_user_id)
                     .where(OrderRow.id == bindparam("order")))
#: An order's account label and placer's username (as :func:`load_order` joins them).
_NAMES = select(AccountRow.label,
                select(UserRow.username).where(UserRow.id == bindparam("user", type_=Integer))
                .scalar_subquery()).where(AccountRow.id == bindparam("account", type_=Integer))
_OPEN_AT_BROKER = (select(OrderRow.id, OrderRow.account_id, OrderRow.broker_order_id,
                          OrderRow.status, OrderRow.filled_quantity)
                   .where(OrderRow.status.in_([OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED]),
                          OrderRow.broker_order_id.is_not(None)))
_ORDERS = cast(Table, OrderRow.__table__)
#: The orders that broker updates name, locked. Plain rows: the mirror writes back explicitly
#: (:data:`_WRITE_MIRRORED`) instead of through the ORM's unit of work, which cost more.
_ROWS_OF_UPDATES = (select(*_ORDERS.c)
                    .where(_ORDERS.c.account_id.in_(bindparam("accounts", expanding=True)),
                           _ORDERS.c.broker_order_id.in_(bindparam("idents", expanding=True)))
                    .order_by(_ORDERS.c.id).with_for_update())
#: What mirroring a broker update may change on an order (see :meth:`OrderManager._apply`).
_MIRRORED = ("status", "broker_order_id", "rejection_reason", "filled_quantity",
             "average_price", "updated_at")
_WRITE_MIRRORED = sql_update(_ORDERS).where(_ORDERS.c.id == bindparam("mirrored_id"))
_INSERT_FILLS = insert(cast(Table, TradeRow.__table__))
_INSERT_ORDER = insert(_ORDERS).returning(_ORDERS.c.id)
_ORDER_KEYS = tuple(column.key for column in _ORDERS.c)
#: The columns a new order row is written with (every one but its id).
_ORDER_COLUMNS = tuple(key for key in _ORDER_KEYS if key != "id")
_KNOWN_FILLS = select(TradeRow.broker_trade_id).where(
    TradeRow.order_id.in_(bindparam("orders", expanding=True)))


def load_order(session: Session, order_id: int) -> Order:
    """Return one order with its account label and placer's username."""
    found = session.execute(_ORDER_WITH_NAMES, {"order": order_id}).one_or_none()
    if found is None:
        raise NotFound(f"Order {order_id} does not exist")
    row, label, username = found
    return to_order(row, label, username)


def _same_request(row: OrderRow, request: OrderRequest) -> bool:
    return (row.account_id, row.symbol, row.side, row.quantity, row.order_type, row.product,
            row.validity, row.price, row.trigger_price, row.is_amo) == (
        request.account_id, request.symbol, request.side, request.quantity, request.order_type,
        request.product, request.validity, request.price, request.trigger_price, request.amo)


# ----------------------------------------------------------------------------------------------
# The order manager
# ----------------------------------------------------------------------------------------------


class OrderManager:
    """Runs orders through the path of the module docstring; one instance per process."""

    def __init__(
        self,
        db: Database,
        broker_for: Callable[[int], Broker],
        risk_gate: RiskGate,
        *,
        mis_leverage: int = 5,
        slippage_bps: int = 5,
        clock: Callable[[], datetime] = now_ist,
    ) -> None:
        """Bind to ``db``; ``broker_for(account_id)`` returns the account's broker adapter."""
        self.db = db
        self.broker_for = broker_for
        self.risk_gate = risk_gate
        self.mis_leverage = mis_leverage
        self.slippage_bps = slippage_bps
        self.clock = clock
        self._instruments: dict[str, tuple[float, Instrument]] = {}
        self._households: dict[int, int | None] = {}

    # -- checks before anything is written ------------------------------------------------
    def normalise(self, request: OrderRequest) -> tuple[OrderRequest, Instrument]:
        """Return the request with a clean symbol and client id, and its instrument."""
        symbol = str(request.symbol or "").strip().upper()
        if not symbol:
            raise ValidationError("Symbol is required; pick one from the instrument list")
        instrument = self._instrument(symbol)
        if instrument is None:
            raise NotFound(
                f"Unknown symbol {symbol!r} on NSE; pick one from the instrument list")
        request = replace(request, symbol=symbol,
                          client_order_id=request.client_order_id or new_client_order_id())
        check_request(request, instrument)
        return request, instrument

    def _instrument(self, symbol: str) -> Instrument | None:
        """Return the instrument of ``symbol``, read at most every few seconds per symbol.

        Tick and lot size change rarely (an instrument import); the broker checks the order
        against its own fresh read again before accepting it.
        """
        cached = self._instruments.get(symbol)
        now = time.monotonic()
        if cached is not None and now - cached[0] < INSTRUMENT_CACHE_SECONDS:
            return cached[1]
        with self.db.transaction() as session:
            instrument = find_instrument(session, symbol)
        if instrument is not None:
            self._instruments[symbol] = (now, instrument)
        return instrument

    def estimate(self, request: OrderRequest, instrument: Instrument,
                 pre: PreTrade | None = None, at: Decimal | None = None) -> OrderEstimate:
        """Return price, value, charges and funds for ``request`` (normalised) without sending.

        ``pre`` is the broker's pre-trade read of the symbol, if the caller already has it.
        ``at`` prices the order at that price instead of its expected fill now: a GTT leg's
        limit price, the worst its order fills at when the trigger places it (no market-hours
        warning then: the trigger, not the user, places it).
        """
        if pre is None:
            pre = self.pre_trade(self.broker_for(request.account_id), request.symbol)
        session_state, quote = pre.session, pre.quote
        warnings: list[str] = []
        if quote is None:
            raise ValidationError(
                f"No live price for {request.symbol}: paper orders fill only against the "
                "market feed, which has not priced this symbol (see the Market page)")
        price = at if at is not None else expected_price(
            request, quote.ltp, self.slippage_bps, instrument.tick_size)
        charges = charges_estimate(request, price, session_state.trading_day,
                                   dp_applies=not pre.dp_paid)
        needed = required_funds(request, price, charges, self.mis_leverage, pre.open_mis)
        if not session_state.is_open and not request.amo and at is None:
            warnings.append(f"Market closed ({session_state.detail}): tick AMO to queue it")
        return OrderEstimate(request.symbol, quote.ltp, price, price * request.quantity,
                             charges, needed, pre.available, session_state, tuple(warnings))

    @staticmethod
    def pre_trade(broker: Broker, symbol: str) -> PreTrade:
        """Return the broker's session, quote, positions and funds for an order in ``symbol``.

        One read from brokers with the ``PRE_TRADE`` capability, else one call per item.
        """
        if Capability.PRE_TRADE in broker.capabilities:
            return cast(PreTradeReader, broker).pre_trade(symbol)
        positions = [p for p in broker.positions() if p.symbol == symbol]
        return PreTrade(
            session=broker.session(), quote=broker.quote(symbol),
            open_mis=sum(p.quantity for p in positions if p.product is Product.MIS),
            held=sum(h.quantity for h in broker.holdings() if h.symbol == symbol),
            bought=sum(p.quantity for p in positions if p.product is Product.CNC),
            available=broker.funds().available)

    def _precheck(self, broker: Broker, request: OrderRequest, estimate: OrderEstimate,
                  pre: PreTrade, session: Session | None = None) -> None:
        self._check_capabilities(broker, request)
        state = estimate.session
        if request.amo and state.is_open:
            raise ValidationError(
                f"The market is open ({state.detail}); AMO is only for orders placed while it "
                "is closed — untick AMO")
        if not request.amo and not state.is_open:
            raise ValidationError(
                f"Market is closed ({state.detail}): a {request.order_type} order cannot be "
                "placed now; tick AMO to queue it for the next session open")
        assert estimate.ltp is not None  # noqa: S101 - estimate refuses a missing price
        check_trigger_vs_ltp(request, estimate.ltp)
        if request.product is Product.CNC and request.side is Side.SELL:
            self.check_sellable(request, pre, session)
        if estimate.required_funds > estimate.available_funds:
            raise InsufficientFunds(
                f"Insufficient funds for {request.side} {request.quantity} {request.symbol} "
                f"({request.product}): needs {inr(estimate.required_funds)}, available "
                f"{inr(estimate.available_funds)}")

    @staticmethod
    def _check_capabilities(broker: Broker, request: OrderRequest) -> None:
        needed = _CAPABILITY_FOR.get(request.order_type)
        if request.amo:
            needed = needed or Capability.AMO
        if request.validity is Validity.IOC:
            needed = needed or Capability.IOC
        if needed is not None and needed not in broker.capabilities:
            raise ValidationError(f"Broker {broker.name!r} does not support {needed.value} orders")

    def check_sellable(self, request: OrderRequest, pre: PreTrade,
                       session: Session | None = None) -> None:
        """Refuse a delivery (CNC) sell of more shares than the account can sell now.

        Sellable = settled holdings + delivery shares bought today − open delivery sells.
        """
        held, bought = pre.held, pre.bought
        query = select(OrderRow).where(
            OrderRow.account_id == request.account_id,
            OrderRow.symbol == request.symbol, OrderRow.side == Side.SELL,
            OrderRow.product == Product.CNC,
            OrderRow.status.in_([OrderStatus.PENDING, OrderStatus.OPEN,
                                 OrderStatus.PARTIALLY_FILLED]))
        if session is None:
            with self.db.transaction() as fresh:
                rows = list(fresh.scalars(query))
        else:
            rows = list(session.scalars(query))
        pending = sum(row.quantity - row.filled_quantity for row in rows)
        sellable = held + max(bought, 0) - pending
        if request.quantity > sellable:
            raise ValidationError(
                f"You can sell at most {max(sellable, 0)} {request.symbol} from delivery "
                f"(holdings {held}, bought today {max(bought, 0)}, pending sells {pending}); "
                "use MIS to short intraday")

    def _gate(self, request: OrderRequest, action: OrderAction, user_id: int | None,
              estimate: OrderEstimate, instrument: Instrument | None = None,
              pre: PreTrade | None = None, session: Session | None = None
              ) -> tuple[OrderRequest, RiskDecision]:
        """Ask the risk gate; return the request at the approved size and the decision.

        Raises RiskRejected when the gate refuses (nothing has been written yet).
        """
        assert estimate.ltp is not None  # noqa: S101 - estimate refuses a missing price
        decision = self.risk_gate.check(
            request, RiskContext(action, request.account_id, user_id, estimate.ltp, estimate,
                                 instrument, pre, session))
        if not decision.approved:
            reasons = "; ".join(decision.reasons) or "no reason given"
            only_rate = decision.decision is not None and {
                r.rule for r in decision.decision.rejections} == {"rate"}
            raise (RateLimited if only_rate else RiskRejected)(
                f"Risk gate refused {request.side} {request.quantity} {request.symbol}: "
                f"{reasons}")
        if decision.quantity is not None and decision.quantity != request.quantity:
            if not 0 < decision.quantity < request.quantity:
                raise RiskRejected(
                    f"Risk gate approved {decision.quantity} of {request.quantity} "
                    f"{request.symbol}; a gate may only reduce a size")
            request = replace(request, quantity=decision.quantity)
        return request, decision

    @staticmethod
    def action_of(source: str, gtt_id: int | None) -> OrderAction:
        """Return the gate action of an order from ``source`` (GTT trigger, protect, ...)."""
        if gtt_id is not None:
            return OrderAction.GTT
        if source in PROTECT_SOURCES:
            return OrderAction.PROTECT
        if source == "square_off":
            return OrderAction.SQUARE_OFF
        return OrderAction.PLACE

    # -- the path -------------------------------------------------------------------------
    def submit(
        self,
        request: OrderRequest,
        *,
        placed_by: Actor | None,
        source: str = "web",
        gtt_id: int | None = None,
        on_recorded: Callable[[Session, Order], None] | None = None,
        account_label: str | None = None,
    ) -> Order:
        """Run ``request`` through the full path and return the order (maybe REJECTED).

        ``on_recorded(session, order)`` runs inside the transaction that records the order's
        outcome (OPEN or REJECTED), so what it writes (an alert in the outbox, a control
        marked triggered) commits with the order or not at all. It does not run when the
        client order id names an order already recorded: that order's own transaction did.
        ``account_label`` is the account's label if the caller just read it (authorizing the
        order); the returned order carries it instead of reading it again.

        Raises
        ------
        ValidationError, InsufficientFunds, RiskRejected
            Before anything is written; the message states the rule and the values. A
            refusal by the risk gate is audited (``orders.place``, outcome denied), except
            the orders-per-second limit's alone (:class:`RateLimited`: paced exits retry it).
        """
        try:
            return self._submit(request, placed_by, source, gtt_id, on_recorded, account_label)
        except RateLimited:
            raise
        except RiskRejected as refused:
            self._audit_refusal(placed_by, "orders.place", f"account:{request.account_id}",
                                request, refused, source)
            raise

    def _submit(self, request: OrderRequest, placed_by: Actor | None, source: str,
                gtt_id: int | None, on_recorded: Callable[[Session, Order], None] | None,
                account_label: str | None) -> Order:
        given_id = request.client_order_id
        request, instrument = self.normalise(request)
        existing = self._existing(request) if given_id is not None else None
        if existing is not None:
            return existing
        broker = self.broker_for(request.account_id)
        if Capability.DESK_DATABASE in broker.capabilities:
            return self._submit_in_one_transaction(request, instrument, broker, placed_by,
                                                   source, gtt_id, on_recorded, account_label)
        request, risk_note = self._checked(request, instrument, broker,
                                           self.pre_trade(broker, request.symbol),
                                           placed_by, source, gtt_id)
        order_id = self._persist(request, instrument, broker, placed_by, source, gtt_id,
                                 risk_note)
        if order_id is None:  # lost an insert race on the same client order id
            existing = self._existing(request)
            assert existing is not None  # noqa: S101 - the unique key says it exists
            return existing
        try:
            broker_order_id = broker.place_order(request)
        except (OrderRejected, ValidationError) as exc:
            return self._transition(order_id, OrderStatus.REJECTED, placed_by, reason=str(exc),
                                    on_recorded=on_recorded, risk_note=risk_note)
        return self._transition(order_id, OrderStatus.OPEN, placed_by,
                                broker_order_id=broker_order_id, on_recorded=on_recorded,
                                risk_note=risk_note)

    def submit_paced(self, request: OrderRequest, *, placed_by: Actor | None, source: str,
                     wait_s: float = PACE_WAIT_S) -> Order:
        """Submit as :meth:`submit` does, waiting out the SEBI orders-per-second limit.

        For exits sent in a burst (a stop closing every position, a square-off): an order
        refused only because the account sent its ten orders this second is sent again every
        :data:`PACE_STEP_S` seconds, for at most ``wait_s`` seconds; then the refusal stands.
        """
        started = time.monotonic()
        while True:
            try:
                return self.submit(request, placed_by=placed_by, source=source)
            except RateLimited:
                if time.monotonic() - started >= wait_s:
                    raise
                time.sleep(PACE_STEP_S)

    def _checked(self, request: OrderRequest, instrument: Instrument, broker: Broker,
                 pre: PreTrade, placed_by: Actor | None, source: str, gtt_id: int | None,
                 session: Session | None = None
                 ) -> tuple[OrderRequest, dict[str, object] | None]:
        """Run the checks and the risk gate on ``pre``; return the request at the approved size.

        The second value is the audit note of a size the gate reduced (None if it did not).
        ``session`` is the transaction the order will be written in, if the gate should read
        in it (the account is locked there). Raises as :meth:`submit` does; writes nothing.
        """
        estimate = self.estimate(request, instrument, pre)
        self._precheck(broker, request, estimate, pre, session)
        gated, decision = self._gate(request, self.action_of(source, gtt_id),
                                     placed_by.user_id if placed_by else None, estimate,
                                     instrument, pre, session)
        if gated.quantity == request.quantity:
            return request, None
        return gated, {"requested_quantity": request.quantity,
                       "risk_gate": "; ".join(decision.reasons)[:_REASON_CHARS]}

    def _audit_refusal(self, actor: Actor | None, action: str, resource: str,
                       request: OrderRequest, refused: RiskRejected, source: str) -> None:
        """Audit a refusal by the risk gate, in a transaction of its own (the order's rolled
        back): who asked for what, from where, and the gate's reasons."""
        with self.db.transaction() as session:
            audit.append(session, _event(
                actor, action, None, self._household(session, request.account_id), {
                    "account_id": request.account_id, "symbol": request.symbol,
                    "side": request.side.value, "quantity": request.quantity,
                    "order_type": request.order_type.value, "product": request.product.value,
                    "price": request.price, "trigger_price": request.trigger_price,
                    "source": source, "refused": str(refused)[:_REASON_CHARS]},
                resource=resource, outcome=audit.DENIED))

    def _existing(self, request: OrderRequest) -> Order | None:
        with self.db.transaction() as session:
            row = session.scalar(
                select(OrderRow).where(OrderRow.client_order_id == request.client_order_id))
            if row is None:
                return None
            if not _same_request(row, request):
                raise ValidationError(
                    f"Client order id {request.client_order_id!r} was already used for order "
                    f"{row.id} ({row.side} {row.quantity} {row.symbol}); use a new id")
            return load_order(session, row.id)

    @staticmethod
    def _pending_row(request: OrderRequest, instrument: Instrument, broker: Broker,
                     placed_by: Actor | None, source: str, gtt_id: int | None,
                     risk_note: dict[str, object] | None = None) -> OrderRow:
        assert request.client_order_id is not None  # noqa: S101 - normalise sets it
        note = risk_note or {}
        asked = note.get("requested_quantity")
        return OrderRow(
            client_order_id=request.client_order_id, account_id=request.account_id,
            instrument_id=instrument.id, symbol=request.symbol, side=request.side,
            quantity=request.quantity, order_type=request.order_type,
            product=request.product, validity=request.validity, price=request.price,
            trigger_price=request.trigger_price, is_amo=request.amo,
            status=OrderStatus.PENDING, broker=broker.name, source=source,
            gtt_id=gtt_id, placed_by_user_id=placed_by.user_id if placed_by else None,
            strategy=request.strategy, filled_quantity=0,
            requested_quantity=asked if isinstance(asked, int) else None,
            risk_note=str(note.get("risk_gate") or "")[:_REASON_CHARS] if asked else None,
            created_at=utcnow(), updated_at=utcnow())

    def _household(self, session: Session, account_id: int) -> int | None:
        """Return the household of an account (fixed for its life, so read once)."""
        if account_id not in self._households:
            account = session.get(AccountRow, account_id)
            self._households[account_id] = account.household_id if account else None
        return self._households[account_id]

    def _placed_event(self, session: Session, row: OrderRow, placed_by: Actor | None,
                      source: str, risk_note: dict[str, object] | None = None
                      ) -> audit.AuditEvent:
        return _event(placed_by, "orders.place", row.id, self._household(session, row.account_id),
                      {"client_order_id": row.client_order_id, "account_id": row.account_id,
                       "symbol": row.symbol, "side": row.side.value,
                       "quantity": row.quantity, "type": row.order_type.value,
                       "product": row.product.value, "price": row.price,
                       "trigger_price": row.trigger_price, "amo": row.is_amo,
                       "source": source, "strategy": row.strategy,
                       "status": OrderStatus.PENDING.value, **(risk_note or {})})

    def _persist(self, request: OrderRequest, instrument: Instrument, broker: Broker,
                 placed_by: Actor | None, source: str, gtt_id: int | None,
                 risk_note: dict[str, object] | None = None) -> int | None:
        try:
            with self.db.transaction() as session:
                row = self._pending_row(request, instrument, broker, placed_by, source, gtt_id,
                                        risk_note)
                session.add(row)
                session.flush()
                audit.append(session, self._placed_event(session, row, placed_by, source,
                                                         risk_note))
                return row.id
        except IntegrityError:
            return None

    def _submit_in_one_transaction(
        self, request: OrderRequest, instrument: Instrument, broker: Broker,
        placed_by: Actor | None, source: str, gtt_id: int | None,
        on_recorded: Callable[[Session, Order], None] | None = None,
        account_label: str | None = None,
    ) -> Order:
        """Read, check, gate, have the broker accept, record the order: one transaction.

        For brokers keeping their books in the desk's database (``DESK_DATABASE``). The broker
        locks the account first (``pre_trade_in``), so the checks and the gate decide on what
        the write then finds, and nothing is read twice. The order row is written once, with
        the broker's answer (OPEN or REJECTED), and the audit still records ``orders.place``
        (PENDING) then the transition; the commit makes the order, the broker's acceptance and
        both audit entries durable together, so a crash can leave neither an accepted order
        without its record nor a record without its outcome (nothing reaches the broker's book
        before the desk's record commits with it). A refusal rolls everything back.
        """
        desk = cast(DeskDatabaseBroker, broker)
        try:
            with self.db.transaction() as session:
                pre = desk.pre_trade_in(session, request.symbol)
                request, risk_note = self._checked(request, instrument, broker, pre, placed_by,
                                                   source, gtt_id, session)
                row = self._pending_row(request, instrument, broker, placed_by, source, gtt_id,
                                        risk_note)
                # One transaction: the row is written once, with the broker's answer, and
                # commits with the broker's order or not at all. Its client order id is unique
                # in both books, so a repeat fails the insert and is answered by _existing.
                reason: str | None = None
                try:
                    row.broker_order_id = desk.place_in(session, request, pre)
                except (OrderRejected, ValidationError) as exc:
                    reason = str(exc)
                    row.status = OrderStatus.REJECTED
                    row.rejection_reason = reason[:_REASON_CHARS]
                else:
                    row.status = OrderStatus.OPEN
                # A Core insert built once (the ORM's unit of work costs more than the round
                # trip); ``row`` stays outside the session and holds what was written.
                row.id = session.connection().execute(_INSERT_ORDER, {
                    column: getattr(row, column) for column in _ORDER_COLUMNS}).scalar_one()
                events = [self._placed_event(session, row, placed_by, source, risk_note),
                          self._recorded(session, row, OrderStatus.PENDING, 0, placed_by,
                                         reason=reason, risk_note=risk_note)]
                audit.append_many(session, events)
                if account_label is not None:  # usernames never change
                    label, username = account_label, placed_by.username if placed_by else None
                else:
                    label, username = session.connection().execute(_NAMES, {
                        "account": row.account_id, "user": row.placed_by_user_id}).one()
                order = to_order(row, label, username)
                if on_recorded is not None:
                    on_recorded(session, order)
                return order
        except IntegrityError:  # lost an insert race on the same client order id
            existing = self._existing(request)
            if existing is None:
                raise
            return existing

    def _transition(self, order_id: int, new: OrderStatus, actor: Actor | None, *,
                    reason: str | None = None, broker_order_id: str | None = None,
                    filled: int | None = None, average: Decimal | None = None,
                    on_recorded: Callable[[Session, Order], None] | None = None,
                    risk_note: dict[str, object] | None = None) -> Order:
        with self.db.transaction() as session:
            row = session.get(OrderRow, order_id, with_for_update=True)
            assert row is not None  # noqa: S101 - callers pass ids they just read
            self._apply(session, row, new, actor, reason=reason,
                        broker_order_id=broker_order_id, filled=filled, average=average,
                        risk_note=risk_note)
            session.flush()
            order = load_order(session, order_id)
            if on_recorded is not None:
                on_recorded(session, order)
            return order

    def _apply(self, session: Session, row: OrderRow, new: OrderStatus, actor: Actor | None, *,
               reason: str | None = None, broker_order_id: str | None = None,
               filled: int | None = None, average: Decimal | None = None,
               events: list[audit.AuditEvent] | None = None,
               risk_note: dict[str, object] | None = None) -> bool:
        """Move ``row`` to ``new`` and audit it (into ``events`` if given, else at once).

        ``risk_note`` is the gate's note of a size it cut, for the placed or rejected alert.
        """
        old, old_filled = row.status, row.filled_quantity
        changed_fill = filled is not None and filled != row.filled_quantity
        if old == new and not changed_fill:
            return False
        if not may_transition(old, new):
            raise OrderRejected(f"Order {row.id} cannot go from {old} to {new}")
        row.status = new
        if broker_order_id is not None:
            row.broker_order_id = broker_order_id
        if reason is not None:
            row.rejection_reason = reason[:_REASON_CHARS]
        if filled is not None:
            row.filled_quantity = filled
        if average is not None:
            row.average_price = average
        event = self._recorded(session, row, old, old_filled, actor, reason=reason,
                               risk_note=risk_note)
        if events is None:
            audit.append(session, event)
        else:
            events.append(event)
        return True

    def _recorded(self, session: Session, row: OrderRow, old: OrderStatus, old_filled: int,
                  actor: Actor | None, *, reason: str | None = None,
                  risk_note: dict[str, object] | None = None) -> audit.AuditEvent:
        """Write the alert of ``row``'s move from ``old`` (as it now is); return its audit event.

        The alert commits with the change, or not at all; the caller appends the event.
        """
        household_id = self._household(session, row.account_id)
        if household_id is not None:
            enqueue_order_event(session, row, old, old_filled, household_id,
                                actor.username if actor else None, risk_note)
        return _event(actor, "orders.status", row.id, household_id,
                      {"from": old.value, "to": row.status.value,
                       "filled": row.filled_quantity, "average_price": row.average_price,
                       "broker_order_id": row.broker_order_id, "reason": reason})

    # -- changes --------------------------------------------------------------------------
    def _open_row(self, session: Session, order_id: int) -> OrderRow:
        row = session.get(OrderRow, order_id)
        if row is None:
            raise NotFound(f"Order {order_id} does not exist")
        if row.status.is_final or row.broker_order_id is None:
            raise OrderClosed(
                f"Order {order_id} is {row.status}; only open orders can be modified or "
                "cancelled")
        return row

    def _check_still_open(self, order_id: int, actor: Actor | None) -> None:
        """After the broker refused to change an order, mirror it; refuse as closed if it is.

        The order was open in the book when the user asked, but it can fill (or the broker
        cancel it) before the request arrives. Then the user gets the book's answer for a
        closed order, naming the desk's order id, not the broker's refusal in the broker's
        words and ids.
        """
        self.sync([order_id], actor=actor)
        with self.db.transaction() as session:
            self._open_row(session, order_id)

    def modify(self, order_id: int, change: OrderChange, actor: Actor) -> Order:
        """Change quantity, price or trigger of an open order, through the risk gate."""
        with self.db.transaction() as session:
            row = self._open_row(session, order_id)
            request = OrderRequest(
                account_id=row.account_id, symbol=row.symbol, side=row.side,
                quantity=change.quantity if change.quantity is not None else row.quantity,
                order_type=row.order_type, product=row.product, validity=row.validity,
                price=change.price if change.price is not None else row.price,
                trigger_price=(change.trigger_price if change.trigger_price is not None
                               else row.trigger_price),
                amo=row.is_amo, client_order_id=row.client_order_id)
            filled, broker_order_id = row.filled_quantity, row.broker_order_id
            current = row.quantity
        if request.quantity <= filled:
            raise ValidationError(
                f"New quantity {request.quantity} must be above the {filled} already filled")
        _, instrument = self.normalise(request)
        estimate = self.estimate(request, instrument)
        try:
            gated, decision = self._gate(request, OrderAction.MODIFY, actor.user_id, estimate,
                                         instrument)
            # The gate sized this order when it was placed: a change that adds no shares keeps
            # that size (a reduction the gate would make now, such as a CHOPPY market's half
            # size, was made then). More shares are sized as a new order of the new quantity
            # would be.
            if request.quantity > current and gated.quantity < request.quantity:
                most = max(gated.quantity, current)
                raise RiskRejected(
                    f"Risk gate allows at most {most} {request.symbol} for this order, not "
                    f"{request.quantity}: a new order of {request.quantity} would be cut to "
                    f"{gated.quantity} ({'; '.join(decision.reasons)}); modify to {most} or "
                    "fewer")
        except RiskRejected as refused:
            self._audit_refusal(actor, "orders.modify", f"order:{order_id}", request, refused,
                                "modify")
            raise
        assert broker_order_id is not None  # noqa: S101 - _open_row checked
        try:
            self.broker_for(request.account_id).modify_order(broker_order_id, change)
        except OrderRejected:
            self._check_still_open(order_id, actor)
            raise
        with self.db.transaction() as session:
            changed = session.get(OrderRow, order_id, with_for_update=True)
            assert changed is not None  # noqa: S101
            row = changed
            # What the order was, beside what it is now: an auditor reads the change itself.
            before = {"quantity": row.quantity, "price": row.price,
                      "trigger_price": row.trigger_price}
            row.quantity, row.price = request.quantity, request.price
            row.trigger_price = request.trigger_price
            _audit(session, actor, "orders.modify", row.id,
                   self._household(session, row.account_id),
                   {"quantity": row.quantity, "price": row.price,
                    "trigger_price": row.trigger_price, "before": before})
        self.sync([order_id])
        with self.db.transaction() as session:
            return load_order(session, order_id)

    def cancel(self, order_id: int, actor: Actor | None, why: str | None = None) -> Order:
        """Cancel the unfilled rest of an open order.

        ``why`` says who or what cancelled it when not the user ("Cancelled by panic on the
        whole household"): the book's reason and the alert carry it instead of the broker's.
        """
        with self.db.transaction() as session:
            row = self._open_row(session, order_id)
            account_id, broker_order_id = row.account_id, row.broker_order_id
        assert broker_order_id is not None  # noqa: S101 - _open_row checked
        try:
            self.broker_for(account_id).cancel_order(broker_order_id)
        except OrderRejected:
            self._check_still_open(order_id, actor)
            raise
        self.sync([order_id], actor=actor, why={order_id: why} if why else None)
        with self.db.transaction() as session:
            return load_order(session, order_id)

    # -- mirroring the broker -------------------------------------------------------------
    def sync(self, order_ids: Iterable[int] | None = None, actor: Actor | None = None, *,
             desk: bool = True, why: Mapping[int, str] | None = None) -> int:
        """Mirror broker state and executions of open orders into the book; return changes.

        ``desk`` False leaves out accounts whose broker keeps its books in the desk's database
        (``DESK_DATABASE``): their changes reach the book through the venue step's updates
        (mirrored in its transaction) and through this manager's own cancel and modify, so
        the worker asks them only every few seconds, as a safety net. ``why`` maps an order
        the desk cancelled to the reason the book records for it (see :meth:`cancel`).
        """
        with self.db.reading() as session:
            query = _OPEN_AT_BROKER
            if order_ids is not None:
                query = query.where(OrderRow.id.in_(list(order_ids)))
            open_rows = session.execute(query).all()
        by_account: dict[int, dict[str, tuple[OrderStatus, int]]] = {}
        for _ident, account_id, broker_order_id, status, filled in open_rows:
            if broker_order_id is not None:
                by_account.setdefault(account_id, {})[broker_order_id] = (status, filled)
        updates: list[OrderUpdate] = []
        for account_id, known in by_account.items():
            broker = self.broker_for(account_id)
            if not desk and Capability.DESK_DATABASE in broker.capabilities:
                continue
            for state in broker.orders(list(known)):
                if known[state.broker_order_id] != (state.status, state.filled_quantity):
                    # Ask the broker now: no broker round trip inside the book's transaction.
                    trades = (broker.order_trades(state.broker_order_id)
                              if state.filled_quantity else [])
                    updates.append(OrderUpdate(state, tuple(trades)))
        return self.apply_updates(updates, actor, all_fills=True, why=why)

    def apply_updates(self, updates: Iterable[OrderUpdate], actor: Actor | None = None, *,
                      all_fills: bool = False, why: Mapping[int, str] | None = None) -> int:
        """Mirror broker order updates (state and new fills) into the book in one transaction.

        Updates of orders the book does not hold, or already mirrored (by another process, or
        a repeated push), change nothing; a fill already in the book is not written twice. An
        update whose fills do not add up to its filled quantity (an earlier push was lost) is
        left to :meth:`sync`, which asks the broker for all of the order's fills (and passes
        ``all_fills=True``: mirrored as the broker says). Return how many orders changed.
        """
        updates = list(updates)
        if not updates:
            return 0
        with self.db.transaction() as session:
            mirrored, incomplete = self.apply_updates_in(session, updates, actor,
                                                         all_fills=all_fills, why=why)
        return mirrored + (self.sync(incomplete, actor, why=why) if incomplete else 0)

    def apply_updates_in(self, session: Session, updates: Iterable[OrderUpdate],
                         actor: Actor | None = None, *, all_fills: bool = False,
                         why: Mapping[int, str] | None = None) -> tuple[int, list[int]]:
        """Mirror ``updates`` within ``session`` (see :meth:`apply_updates`).

        Return how many orders changed and the ids of those whose fills did not add up, for
        the caller to :meth:`sync` after its transaction commits.
        """
        pending = {(u.order.account_id, u.order.broker_order_id): u for u in updates}
        if not pending:
            return 0, []
        incomplete: list[int] = []
        found = session.connection().execute(_ROWS_OF_UPDATES, {
            "accounts": sorted({account for account, _ in pending}),
            "idents": sorted({ident for _, ident in pending})})
        # OrderRow objects outside the session: _mirror writes what it changes itself.
        rows = [OrderRow(**dict(zip(_ORDER_KEYS, values, strict=True))) for values in found]
        changed = [(row, pending[(row.account_id, row.broker_order_id or "")])
                   for row in rows if (row.account_id, row.broker_order_id) in pending]
        changed = [(row, update) for row, update in changed
                   if (row.status, row.filled_quantity)
                   != (update.order.status, update.order.filled_quantity)]
        # Only _mirror writes fills, with the filled quantity, so an order the book holds as
        # unfilled has no fill in the book to skip: ask only about orders already part-filled.
        filled = [row.id for row, update in changed
                  if update.order.filled_quantity != row.filled_quantity and row.filled_quantity]
        known = set(session.connection().execute(_KNOWN_FILLS, {"orders": filled}).scalars()
                    ) if filled else set()
        mirrored = 0
        for row, update in changed:
            new_fills = sum(t.quantity for t in update.trades
                            if t.broker_trade_id not in known)
            if not all_fills and (
                    row.filled_quantity + new_fills != update.order.filled_quantity):
                incomplete.append(row.id)
                continue
            self._mirror(session, row, update, known, actor, (why or {}).get(row.id),
                         _risk_note_of(row))
            mirrored += 1
        return mirrored, incomplete

    def _mirror(self, session: Session, row: OrderRow, update: OrderUpdate,
                known: set[str], actor: Actor | None, why: str | None = None,
                risk_note: dict[str, object] | None = None) -> None:
        state = update.order
        if state.filled_quantity != row.filled_quantity:
            fills = [{"order_id": row.id, "account_id": row.account_id, "symbol": trade.symbol,
                      "side": trade.side, "product": trade.product, "quantity": trade.quantity,
                      "price": trade.price, "executed_at": trade.executed_at,
                      "trade_date": trade.trade_date, "broker_trade_id": trade.broker_trade_id,
                      "broker_order_id": trade.broker_order_id,
                      "charges_total": trade.charges.total,
                      **{name: getattr(trade.charges, name) for name in CHARGE_FIELDS}}
                     for trade in update.trades if trade.broker_trade_id not in known]
            if fills:  # a Core insert: the rows are never read back through this session
                session.connection().execute(_INSERT_FILLS, fills)
        reason = state.status_message if state.status in (
            OrderStatus.REJECTED, OrderStatus.CANCELLED) else None
        if why and state.status is OrderStatus.CANCELLED:
            reason = f"{why} ({state.filled_quantity} of {row.quantity} filled)"
        if self._apply(session, row, state.status, actor, reason=reason,
                       filled=state.filled_quantity, average=state.average_price,
                       risk_note=risk_note):
            row.updated_at = utcnow()
            session.connection().execute(_WRITE_MIRRORED, {
                "mirrored_id": row.id, **{name: getattr(row, name) for name in _MIRRORED}})


def _risk_note_of(row: OrderRow) -> dict[str, object] | None:
    """Return the gate's note of an order whose size it cut (as audited), else None."""
    if row.requested_quantity is None:
        return None
    return {"requested_quantity": row.requested_quantity, "risk_gate": row.risk_note or ""}


def _event(actor: Actor | None, action: str, order_id: int | None, household_id: int | None,
           details: dict[str, object], *, resource: str | None = None,
           outcome: str = audit.OK) -> audit.AuditEvent:
    """Return an audit event of an order (``resource`` instead: of something else)."""
    return audit.AuditEvent(
        action=action, resource=resource or f"order:{order_id}",
        actor_user_id=actor.user_id if actor else None,
        actor_username=actor.username if actor else None,
        household_id=household_id, outcome=outcome, details=details,
        client=actor.client if actor else None)


def _audit(session: Session, actor: Actor | None, action: str, order_id: int,
           household_id: int | None, details: dict[str, object]) -> None:
    audit.append(session, _event(actor, action, order_id, household_id, details))
