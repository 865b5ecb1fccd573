"""Trading domain types: order requests, orders, trades, positions, holdings, funds.

Shared by the order manager (``core.orders``), the portfolio (``core.portfolio``), every broker
adapter (``brokers/``) and the pages. Money is :class:`~decimal.Decimal`, quantities are whole
shares, times are aware. The rules that need only an order and its instrument live here too
(:func:`check_request`), so the order form, the order manager and the paper broker state the
same rule in the same words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from enum import StrEnum

from core.domain import Instrument
from core.errors import ValidationError
from core.money import as_typed, inr, paise_adding_up

ZERO = Decimal("0")


class Side(StrEnum):
    """Direction of an order or trade."""

    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """Return +1 for BUY and -1 for SELL (the change in net quantity per share)."""
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    """How an order is priced."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"
    SL = "SL"  # stop-loss limit: on trigger becomes a LIMIT at ``price``
    SL_M = "SL-M"  # stop-loss market: on trigger becomes a MARKET order


class Product(StrEnum):
    """How a position is carried."""

    CNC = "CNC"  # delivery: full cash, settles into holdings on T+1
    MIS = "MIS"  # intraday: leveraged, squared off by the end of the day
    NRML = "NRML"  # carry-forward F&O; not allowed on cash equities


class Validity(StrEnum):
    """How long an order lives."""

    DAY = "DAY"
    IOC = "IOC"


class OrderStatus(StrEnum):
    """The order state machine: PENDING -> OPEN -> PARTIALLY_FILLED -> FILLED/CANCELLED/REJECTED.

    PENDING orders are persisted but not yet acknowledged by the broker. REJECTED comes from
    PENDING (the broker refused) or from OPEN (e.g. funds gone at trigger time).
    """

    PENDING = "PENDING"
    OPEN = "OPEN"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"

    @property
    def is_final(self) -> bool:
        """Return whether the order can no longer change."""
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})

#: Allowed transitions of the order state machine (from -> the set of next states).
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.OPEN, OrderStatus.REJECTED,
                                    OrderStatus.CANCELLED}),
    OrderStatus.OPEN: frozenset({OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED,
                                 OrderStatus.CANCELLED, OrderStatus.REJECTED}),
    OrderStatus.PARTIALLY_FILLED: frozenset({OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED,
                                             OrderStatus.CANCELLED}),
    OrderStatus.FILLED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
}


def may_transition(old: OrderStatus, new: OrderStatus) -> bool:
    """Return whether the state machine allows ``old`` -> ``new`` (staying put is allowed)."""
    return old == new or new in TRANSITIONS[old]


class GttKind(StrEnum):
    """A GTT with one trigger, or two (OCO: one cancels the other)."""

    SINGLE = "single"
    OCO = "oco"


class GttStatus(StrEnum):
    """Where a GTT stands."""

    ACTIVE = "active"
    TRIGGERED = "triggered"
    CANCELLED = "cancelled"
    REJECTED = "rejected"  # triggered, but the order it placed was refused
    EXPIRED = "expired"


#: Client order ids: letters, digits, '-', '_' and ':' (fits every broker's tag field).
CLIENT_ORDER_ID_RE = re.compile(r"^[A-Za-z0-9_:\-]{1,40}$")
STRATEGY_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What a user (or a strategy) asks for; validated by :func:`check_request`.

    Attributes
    ----------
    account_id : int
        The account to trade.
    symbol : str
        NSE trading symbol, e.g. ``"INFY"``.
    side, order_type, product, validity : enums
        As named.
    quantity : int
        Shares; a multiple of the instrument's lot size.
    price : Decimal | None
        Limit price; required by LIMIT and SL, refused on MARKET and SL-M.
    trigger_price : Decimal | None
        Required by SL and SL-M, refused otherwise.
    amo : bool
        After-market order: queued to the next session open.
    client_order_id : str | None
        Idempotency key; the same id submitted twice yields one order. Generated when None.
    strategy : str | None
        Tag of the strategy that sent the order (None: a person); strategy-scoped risk states,
        MTM limits and panic find a strategy's orders by it.
    stop_loss : Decimal | None
        The stop the trader plans for the position (a signal's stop, the ticket's optional
        field); the risk gate sizes the order from its distance. Not sent to the broker.
    """

    account_id: int
    symbol: str
    side: Side
    quantity: int
    order_type: OrderType = OrderType.MARKET
    product: Product = Product.CNC
    validity: Validity = Validity.DAY
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    amo: bool = False
    client_order_id: str | None = None
    strategy: str | None = None
    stop_loss: Decimal | None = None

    @property
    def is_stop(self) -> bool:
        """Return whether the order waits for a trigger (SL or SL-M)."""
        return self.order_type in (OrderType.SL, OrderType.SL_M)


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the order book shows it."""

    id: int
    client_order_id: str
    account_id: int
    account_label: str
    symbol: str
    side: Side
    quantity: int
    order_type: OrderType
    product: Product
    validity: Validity
    price: Decimal | None
    trigger_price: Decimal | None
    amo: bool
    status: OrderStatus
    filled_quantity: int
    average_price: Decimal | None
    broker_order_id: str | None
    rejection_reason: str | None
    source: str
    placed_by: str | None
    created_at: datetime
    updated_at: datetime
    gtt_id: int | None = None

    @property
    def pending_quantity(self) -> int:
        """Return the shares still to fill (0 once final)."""
        return 0 if self.status.is_final else self.quantity - self.filled_quantity


@dataclass(frozen=True, slots=True)
class Charges:
    """Charges of one trade (or a sum), rupees, unrounded to the paisa (sub-paisa kept)."""

    brokerage: Decimal = ZERO
    stt: Decimal = ZERO
    exchange_txn: Decimal = ZERO
    ipft: Decimal = ZERO
    sebi_fee: Decimal = ZERO
    stamp_duty: Decimal = ZERO
    gst: Decimal = ZERO
    dp_charge: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        """Return the sum of every charge."""
        return (self.brokerage + self.stt + self.exchange_txn + self.ipft + self.sebi_fee
                + self.stamp_duty + self.gst + self.dp_charge)

    def __add__(self, other: Charges) -> Charges:
        """Return the field-by-field sum."""
        if not isinstance(other, Charges):
            return NotImplemented
        return Charges(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[Decimal, ...]:
        """Return the fields in declaration order."""
        return (self.brokerage, self.stt, self.exchange_txn, self.ipft, self.sebi_fee,
                self.stamp_duty, self.gst, self.dp_charge)

    def shown_parts(self) -> list[Decimal]:
        """Return each charge to the paisa (in :data:`CHARGE_FIELDS` order) for a breakdown
        shown beside the total: the parts add up to the exact total rounded once, each within a
        paisa of its own value (:func:`core.money.paise_adding_up`)."""
        return paise_adding_up(list(self.as_tuple()))


CHARGE_FIELDS = ("brokerage", "stt", "exchange_txn", "ipft", "sebi_fee", "stamp_duty", "gst",
                 "dp_charge")


@dataclass(frozen=True, slots=True)
class Trade:
    """One execution (fill) of an order, with its charges."""

    account_id: int
    symbol: str
    side: Side
    product: Product
    quantity: int
    price: Decimal
    executed_at: datetime
    trade_date: date
    broker_trade_id: str
    broker_order_id: str
    charges: Charges = field(default_factory=Charges)
    order_id: int | None = None

    @property
    def value(self) -> Decimal:
        """Return price × quantity in rupees."""
        return self.price * self.quantity


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An order as a broker reports it (its own id and state), for the order manager's sync."""

    broker_order_id: str
    client_order_id: str
    account_id: int
    symbol: str
    side: Side
    quantity: int
    order_type: OrderType
    product: Product
    validity: Validity
    price: Decimal | None
    trigger_price: Decimal | None
    amo: bool
    status: OrderStatus
    filled_quantity: int
    average_price: Decimal | None
    status_message: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Position:
    """A net position in one symbol and product (open quantity and the day's realized P&L)."""

    account_id: int
    symbol: str
    product: Product
    quantity: int  # net: positive long, negative short, 0 closed today
    average_price: Decimal  # of the open quantity (FIFO lots); 0 when flat
    ltp: Decimal | None
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    buy_quantity: int = 0
    sell_quantity: int = 0

    @property
    def mtm(self) -> Decimal:
        """Return realized plus unrealized P&L in rupees."""
        return self.realized_pnl + self.unrealized_pnl


@dataclass(frozen=True, slots=True)
class Holding:
    """Settled delivery shares (CNC after T+1)."""

    account_id: int
    symbol: str
    quantity: int
    average_price: Decimal
    ltp: Decimal | None
    unrealized_pnl: Decimal

    @property
    def value(self) -> Decimal | None:
        """Return quantity × LTP, or None without a price."""
        return None if self.ltp is None else self.ltp * self.quantity


@dataclass(frozen=True, slots=True)
class Funds:
    """Money of one account in rupees.

    Attributes
    ----------
    deposits : Decimal
        Paid in, net of withdrawals (the paper account's capital).
    cash : Decimal
        Deposits + realized P&L − charges − cost of open delivery shares.
    used_margin : Decimal
        Blocked for open orders and open intraday positions.
    available : Decimal
        ``cash − used_margin``: what a new order may use.
    charges_today : Decimal
        Charges of trades executed on the current trading day.
    """

    account_id: int
    deposits: Decimal
    cash: Decimal
    used_margin: Decimal
    available: Decimal
    realized_pnl: Decimal
    charges_total: Decimal
    charges_today: Decimal


@dataclass(frozen=True, slots=True)
class GttLeg:
    """One trigger of a GTT and the LIMIT order it places when the LTP crosses it."""

    trigger_price: Decimal
    side: Side
    quantity: int
    price: Decimal


@dataclass(frozen=True, slots=True)
class Gtt:
    """A good-till-triggered order: single trigger or OCO (stop-loss leg + target leg)."""

    id: int
    account_id: int
    account_label: str
    symbol: str
    kind: GttKind
    product: Product
    legs: tuple[GttLeg, ...]
    status: GttStatus
    reference_price: Decimal
    created_by: str | None
    created_at: datetime
    expires_at: datetime
    triggered_at: datetime | None
    triggered_leg: int | None
    order_id: int | None
    message: str | None


# ----------------------------------------------------------------------------------------------
# Rules that need only the request and the instrument
# ----------------------------------------------------------------------------------------------


def to_price(value: object, what: str) -> Decimal:
    """Return ``value`` as a positive finite Decimal price; refuse junk, naming the value."""
    if isinstance(value, float):
        value = str(value)  # widget floats: keep the shown digits, not the binary expansion
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise ValidationError(f"{what} must be a number; got {value!r}")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise ValidationError(f"{what} must be a number; got {value!r}") from None
    if not number.is_finite() or number <= 0:
        raise ValidationError(f"{what} must be greater than ₹0; got {as_typed(value)}")
    return number


def on_tick(price: Decimal, tick: Decimal) -> bool:
    """Return whether ``price`` is a whole multiple of the tick size."""
    return (price % tick) == 0


def check_tick(price: Decimal, tick: Decimal, what: str, symbol: str) -> None:
    """Refuse a price that is not a multiple of the tick size, naming the nearest valid ones."""
    if not on_tick(price, tick):
        below = (price // tick) * tick
        raise ValidationError(
            f"{what} {as_typed(price)} of {symbol} is not on the tick size {inr(tick)}; "
            f"use {inr(below)} or {inr(below + tick)}"
        )


def check_request(request: OrderRequest, instrument: Instrument) -> None:
    """Refuse a request that breaks an instrument or order-type rule; state the rule and values.

    Market-state, price-band (:func:`check_price_band`) and funds rules need live data and live
    in the order manager and the broker; this checks quantity, lot, tick, the prices each order
    type needs, the SL trigger's side of the price, the product and the client order id.
    """
    symbol = instrument.symbol
    if isinstance(request.quantity, bool) or not isinstance(request.quantity, int):
        raise ValidationError(
            f"Quantity must be a whole number of shares; got {request.quantity!r}")
    if request.quantity <= 0:
        raise ValidationError(f"Quantity must be greater than 0; got {request.quantity}")
    if request.quantity % instrument.lot_size:
        raise ValidationError(
            f"Quantity {request.quantity} of {symbol} is not a multiple of its lot size "
            f"{instrument.lot_size}"
        )
    if request.product is Product.NRML and instrument.segment.upper() in ("EQ", "CASH", "EQUITY"):
        raise ValidationError(
            f"Product NRML is for futures and options; {symbol} is a cash equity "
            f"(segment {instrument.segment}): use CNC for delivery or MIS for intraday"
        )
    _check_prices(request, instrument)
    if request.validity is Validity.IOC and (request.amo or request.is_stop):
        raise ValidationError(
            "IOC orders execute immediately or cancel; they cannot be AMO or stop-loss orders"
        )
    if request.client_order_id is not None and not CLIENT_ORDER_ID_RE.match(
        request.client_order_id
    ):
        raise ValidationError(
            "Client order id must be 1-40 letters, digits, '-', '_' or ':'; "
            f"got {request.client_order_id!r}"
        )
    _check_tags(request)


def _check_tags(request: OrderRequest) -> None:
    """Check the strategy tag and the planned stop-loss (sizing only, never sent)."""
    if request.strategy is not None and not STRATEGY_RE.match(request.strategy):
        raise ValidationError(
            "Strategy tag must be 1-40 letters, digits, '-', '_' or '.'; "
            f"got {request.strategy!r}")
    stop = request.stop_loss
    if stop is not None and (not isinstance(stop, Decimal) or not stop.is_finite() or stop <= 0):
        raise ValidationError(
            f"Stop-loss must be a positive price in rupees; got {as_typed(stop)}")


def _check_prices(request: OrderRequest, instrument: Instrument) -> None:
    """Check the prices an order type needs, their tick, and an SL trigger's side of price."""
    symbol = instrument.symbol
    needs_price = request.order_type in (OrderType.LIMIT, OrderType.SL)
    needs_trigger = request.order_type in (OrderType.SL, OrderType.SL_M)
    if needs_price and request.price is None:
        raise ValidationError(f"A {request.order_type} order needs a price; none was given")
    if not needs_price and request.price is not None:
        raise ValidationError(
            f"A {request.order_type} order takes no price (got {as_typed(request.price)}); "
            "use LIMIT or SL to set one"
        )
    if needs_trigger and request.trigger_price is None:
        raise ValidationError(f"A {request.order_type} order needs a trigger price; none was given")
    if not needs_trigger and request.trigger_price is not None:
        raise ValidationError(
            f"A {request.order_type} order takes no trigger price "
            f"(got {as_typed(request.trigger_price)})"
        )
    tick = instrument.tick_size
    if request.price is not None:
        price = to_price(request.price, "Price")
        check_tick(price, tick, "Price", symbol)
    if request.trigger_price is not None:
        trigger = to_price(request.trigger_price, "Trigger price")
        check_tick(trigger, tick, "Trigger price", symbol)
        if request.order_type is OrderType.SL and request.price is not None:
            if request.side is Side.BUY and trigger > request.price:
                raise ValidationError(
                    f"An SL BUY triggers at or below its limit price: trigger "
                    f"{as_typed(trigger)} is above price {as_typed(request.price)}"
                )
            if request.side is Side.SELL and trigger < request.price:
                raise ValidationError(
                    f"An SL SELL triggers at or above its limit price: trigger "
                    f"{as_typed(trigger)} is below price {as_typed(request.price)}"
                )


def check_trigger_vs_ltp(request: OrderRequest, ltp: Decimal) -> None:
    """Refuse a stop order whose trigger the market has already passed (it would fire at once).

    An SL/SL-M BUY protects a short or buys a breakout: its trigger must be above the LTP; a
    SELL stop must be below it.
    """
    if not request.is_stop or request.trigger_price is None:
        return
    trigger = request.trigger_price
    if request.side is Side.BUY and trigger <= ltp:
        raise ValidationError(
            f"A stop-loss BUY's trigger must be above the last price: trigger "
            f"{as_typed(trigger)} <= LTP {inr(ltp)} of {request.symbol}"
        )
    if request.side is Side.SELL and trigger >= ltp:
        raise ValidationError(
            f"A stop-loss SELL's trigger must be below the last price: trigger "
            f"{as_typed(trigger)} >= LTP {inr(ltp)} of {request.symbol}"
        )


#: NSE's dynamic price band (operating range) of a security with derivatives, as every
#: NIFTY-50 stock has: orders priced beyond the base price (the previous close) ± 10% are not
#: accepted. When trade reaches 9.90% from the base, the band flexes by 5% in that direction,
#: as often as the trend goes on (NSE FAQs on price band / operating range flex).
PRICE_BAND_PCT = Decimal(10)
PRICE_BAND_FLEX_PCT = Decimal(5)
_FLEX_AT_PCT = Decimal("9.90")


def price_band(base: Decimal, ltp: Decimal, tick: Decimal) -> tuple[Decimal, Decimal]:
    """Return today's operating range (lowest, highest accepted limit price), on the tick.

    ``base`` is the previous close; each side starts ``PRICE_BAND_PCT`` away and widens by
    ``PRICE_BAND_FLEX_PCT`` each time the last price has come within 0.10% of it.
    """
    move = (ltp - base) / base * 100
    widths = []
    for toward in (-move, move):  # the lower side, then the upper side
        width = PRICE_BAND_PCT
        while toward >= width - (PRICE_BAND_PCT - _FLEX_AT_PCT):
            width += PRICE_BAND_FLEX_PCT
        widths.append(width)
    lowest = (base * (1 - widths[0] / 100) / tick).to_integral_value(ROUND_CEILING) * tick
    highest = (base * (1 + widths[1] / 100) / tick).to_integral_value(ROUND_FLOOR) * tick
    return lowest, highest


def check_price_band(request: OrderRequest, base: Decimal | None, ltp: Decimal,
                     tick: Decimal) -> None:
    """Refuse a limit price outside today's operating range, as the exchange would.

    Stop triggers may lie outside it (the exchange keeps such orders until they trigger); a
    MARKET or SL-M order has no price to check; nothing is checked without a previous close.
    """
    if request.price is None or base is None or base <= 0:
        return
    lowest, highest = price_band(base, ltp, tick)
    if not lowest <= request.price <= highest:
        raise ValidationError(
            f"Price {as_typed(request.price)} of {request.symbol} is outside today's price band "
            f"{inr(lowest)} to {inr(highest)} (previous close {inr(base)}, NSE's dynamic "
            "price band); the exchange does not accept it")


# ----------------------------------------------------------------------------------------------
# Expected execution price and the funds an order blocks (order ticket, order manager, paper)
# ----------------------------------------------------------------------------------------------


def slipped_price(ltp: Decimal, side: Side, slippage_bps: int, tick: Decimal) -> Decimal:
    """Return the LTP moved ``slippage_bps`` against the trader, rounded outward to the tick.

    A BUY pays more (rounded up to the tick), a SELL receives less (rounded down, never below
    one tick).
    """
    factor = Decimal(slippage_bps) / Decimal(10_000)
    raw = ltp * (1 + factor) if side is Side.BUY else ltp * (1 - factor)
    rounding = ROUND_CEILING if side is Side.BUY else ROUND_FLOOR
    steps = (raw / tick).to_integral_value(rounding=rounding)
    return max(steps * tick, tick)


def expected_price(
    request: OrderRequest, ltp: Decimal, slippage_bps: int, tick: Decimal
) -> Decimal:
    """Return the price an order is expected to execute at, for funds and charges estimates.

    LIMIT and SL: their limit price. MARKET: the LTP with slippage. SL-M: its trigger with
    slippage (it fills just past the trigger, not at today's LTP).
    """
    if request.order_type in (OrderType.LIMIT, OrderType.SL) and request.price is not None:
        return request.price
    base = ltp
    if request.order_type is OrderType.SL_M and request.trigger_price is not None:
        base = request.trigger_price
    return slipped_price(base, request.side, slippage_bps, tick)


def required_funds(
    request: OrderRequest, price: Decimal, charges: Charges, leverage: int, open_mis_qty: int
) -> Decimal:
    """Return the cash an order blocks: full value for CNC buys, value/leverage for MIS.

    A CNC sell needs shares, not cash (its charges come out of the proceeds). An MIS order only
    needs margin for the part that opens or adds to a position: the part that closes an
    opposite open MIS position (``open_mis_qty``, signed) needs none.
    """
    if request.product is Product.CNC:
        return price * request.quantity + charges.total if request.side is Side.BUY else ZERO
    reducing = 0
    if request.side is Side.BUY and open_mis_qty < 0:
        reducing = min(request.quantity, -open_mis_qty)
    elif request.side is Side.SELL and open_mis_qty > 0:
        reducing = min(request.quantity, open_mis_qty)
    opening = request.quantity - reducing
    return price * opening / Decimal(leverage) + charges.total
