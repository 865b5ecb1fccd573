"""Matching one resting paper order against one market tick: pure, no I/O.

The paper exchange (:mod:`brokers.paper.exchange`) calls :func:`match` for every open order
whose symbol printed a new price, and :func:`advance` to carry the order's state to the next
tick. The rules, in the words the order book shows them:

- Nothing matches while the market is closed. An after-market order (AMO) waits for the first
  open tick; that is how "AMO queues to the next session open" works.
- MARKET fills at the tick price with slippage: a BUY pays ``price × (1 + bps/10000)`` rounded
  *up* to the tick, a SELL receives it rounded *down* (never below one tick).
- LIMIT BUY fills when the price is at or below the limit. An order that already rested (saw a
  tick that did not cross) was resting liquidity and fills at its limit; one marketable on
  arrival takes liquidity and fills at ``min(limit, price with slippage)``. SELL mirrors it.
- SL BUY triggers when the price reaches the trigger (``price >= trigger``; SELL ``<=``). A
  triggered SL is a LIMIT at its ``price`` (it may fill on the trigger tick if marketable), a
  triggered SL-M a MARKET order (it fills on the trigger tick, with slippage).
- Volume participation: a tick fills at most ``floor(volume × participation_pct / 100)`` shares,
  ``volume`` being the shares the market traded since the order last matched (``None``:
  unlimited). Bigger orders fill in parts over several ticks.
- IOC: after its first open tick, whatever is unfilled is cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from core.money import inr
from core.trading import OrderType, Side, Validity, slipped_price
from engines.risk_types import shares


@dataclass(frozen=True, slots=True)
class FillConfig:
    """How the paper exchange fills.

    Attributes
    ----------
    slippage_bps : int
        Basis points (1/100 %) a MARKET or stop-market fill pays worse than the price (5).
    participation_pct : int
        Percent of the traded volume since the last match an order may take per tick (25).
    tick_size : Decimal
        Price step fills are rounded to, rupees (0.05).
    """

    slippage_bps: int = 5
    participation_pct: int = 25
    tick_size: Decimal = Decimal("0.05")


@dataclass(frozen=True, slots=True)
class RestingOrder:
    """The matching state of one order.

    Attributes
    ----------
    side, order_type, validity : enums
        As the order was placed.
    quantity, filled_quantity : int
        Shares ordered and filled so far.
    price, trigger_price : Decimal | None
        Limit price (LIMIT, SL) and trigger (SL, SL-M).
    amo : bool
        After-market order (waits for an open tick; matches like any other after that).
    triggered : bool
        A stop order's trigger has been reached.
    rested : bool
        The (triggered) limit order saw an open tick that did not cross its limit.
    """

    side: Side
    order_type: OrderType
    quantity: int
    filled_quantity: int = 0
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    validity: Validity = Validity.DAY
    amo: bool = False
    triggered: bool = False
    rested: bool = False

    @property
    def remaining(self) -> int:
        """Return the shares still to fill."""
        return self.quantity - self.filled_quantity


@dataclass(frozen=True, slots=True)
class MarketTick:
    """A new price of the order's symbol.

    Attributes
    ----------
    price : Decimal
        Last traded price, rupees.
    volume : int | None
        Shares traded since the order last matched; ``None`` means unlimited.
    market_open : bool
        Whether the market is open (closed ticks never match).
    """

    price: Decimal
    volume: int | None = None
    market_open: bool = True


@dataclass(frozen=True, slots=True)
class MatchResult:
    """What one tick did to one order.

    Attributes
    ----------
    fill_quantity : int
        Shares filled on this tick (0: none).
    fill_price : Decimal | None
        Price of the fill, rupees (None without a fill).
    triggered, rested : bool
        The order's new stop and resting state.
    cancel_rest : bool
        The unfilled rest is to be cancelled (IOC after its first open tick).
    message : str | None
        Why nothing or only part filled, or why the rest was cancelled, in plain words.
    """

    fill_quantity: int
    fill_price: Decimal | None
    triggered: bool
    rested: bool
    cancel_rest: bool
    message: str | None = None


def _slipped(price: Decimal, side: Side, config: FillConfig) -> Decimal:
    return slipped_price(price, side, config.slippage_bps, config.tick_size)


def participation_cap(volume: int | None, config: FillConfig) -> int | None:
    """Return the most shares a tick with ``volume`` may fill (None: no limit)."""
    if volume is None:
        return None
    return max(volume, 0) * config.participation_pct // 100


def _crosses(side: Side, limit: Decimal, price: Decimal) -> bool:
    return price <= limit if side is Side.BUY else price >= limit


def _triggers(order: RestingOrder, price: Decimal) -> bool:
    assert order.trigger_price is not None  # noqa: S101 - check_request guarantees it
    if order.side is Side.BUY:
        return price >= order.trigger_price
    return price <= order.trigger_price


def _limit_fill_price(order: RestingOrder, tick: MarketTick, config: FillConfig) -> Decimal:
    """Return the fill price of a crossing limit: its limit if it rested, else the better one."""
    assert order.price is not None  # noqa: S101 - check_request guarantees it
    if order.rested:
        return order.price
    slipped = _slipped(tick.price, order.side, config)
    return min(order.price, slipped) if order.side is Side.BUY else max(order.price, slipped)


def match(order: RestingOrder, tick: MarketTick, config: FillConfig) -> MatchResult:
    """Return what ``tick`` does to ``order``: a fill (maybe partial), a trigger, a cancel.

    Parameters
    ----------
    order : RestingOrder
        The open order (``remaining > 0``).
    tick : MarketTick
        The new price, the volume since the order last matched, and whether the market is open.
    config : FillConfig
        Slippage, participation and tick size.

    Returns
    -------
    MatchResult
        The fill (``fill_quantity`` 0 if none) and the order's new state.
    """
    if not tick.market_open:
        return MatchResult(0, None, order.triggered, order.rested, False,
                           "market closed: waiting for the next open tick")
    triggered = order.triggered
    if order.order_type in (OrderType.SL, OrderType.SL_M) and not triggered:
        triggered = _triggers(order, tick.price)
    price, rested, why = _price_on_tick(replace(order, triggered=triggered), tick, config)
    quantity = 0
    if price is not None:
        cap = participation_cap(tick.volume, config)
        quantity = order.remaining if cap is None else min(order.remaining, cap)
        if quantity == 0:
            why = (f"no fill: {config.participation_pct}% of {shares(tick.volume or 0)} "
                   "traded is 0")
    cancel = order.validity is Validity.IOC and quantity < order.remaining
    if cancel:
        left = order.remaining - quantity
        why = (f"IOC: {left} unfilled share{'' if left == 1 else 's'} cancelled "
               f"({why or 'not marketable'})")
    return MatchResult(quantity, price if quantity else None, triggered, rested, cancel, why)


def _price_on_tick(
    order: RestingOrder, tick: MarketTick, config: FillConfig
) -> tuple[Decimal | None, bool, str | None]:
    """Return (the price the order would fill at or None, its new rested flag, why not)."""
    kind = order.order_type
    if kind in (OrderType.SL, OrderType.SL_M) and not order.triggered:
        return None, order.rested, f"waiting for the trigger {inr(order.trigger_price)}"
    if kind in (OrderType.MARKET, OrderType.SL_M):
        return _slipped(tick.price, order.side, config), order.rested, None
    assert order.price is not None  # noqa: S101 - LIMIT and SL carry a price
    if _crosses(order.side, order.price, tick.price):
        return _limit_fill_price(order, tick, config), order.rested, None
    return None, True, f"resting at {inr(order.price)} (last {inr(tick.price)})"


def advance(order: RestingOrder, result: MatchResult) -> RestingOrder:
    """Return ``order`` after ``result``: filled quantity and trigger/rest flags carried."""
    return replace(order, filled_quantity=order.filled_quantity + result.fill_quantity,
                   triggered=result.triggered, rested=result.rested)
