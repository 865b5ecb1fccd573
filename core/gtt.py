"""Good-till-triggered orders: the rules of a GTT and when it fires (pure, no I/O).

A GTT waits, for up to a year, for the last traded price to cross its trigger, then places a
LIMIT order through the normal order path (risk gate included). A *single* GTT has one trigger;
an *OCO* GTT has two legs, a stop-loss trigger below the price at creation and a target trigger
above it; the first one crossed fires and the other is cancelled with it.

The direction of each trigger is fixed at creation against the reference price (the LTP then):
a trigger above it fires when the LTP rises to or through it, a trigger below it when the LTP
falls to or through it. The order manager's service stores GTTs and calls :func:`fired_leg`
on every price step of the worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from core.domain import Instrument
from core.errors import RiskRejected, ValidationError
from core.money import as_typed, inr
from core.trading import GttKind, GttLeg, check_tick, to_price
from engines.risk_types import RiskLimits

GTT_LIFETIME = timedelta(days=365)


def fires(leg: GttLeg, reference: Decimal, ltp: Decimal) -> bool:
    """Return whether ``ltp`` has crossed ``leg``'s trigger, coming from ``reference``."""
    if leg.trigger_price > reference:
        return ltp >= leg.trigger_price
    return ltp <= leg.trigger_price


def fired_leg(legs: Sequence[GttLeg], reference: Decimal, ltp: Decimal) -> int | None:
    """Return the index of the leg ``ltp`` fires (the stop-loss leg first), or None."""
    for index, leg in enumerate(legs):
        if fires(leg, reference, ltp):
            return index
    return None


def check_gtt(legs: Sequence[GttLeg], instrument: Instrument, ltp: Decimal) -> GttKind:
    """Refuse a GTT that breaks a rule (naming the values); return its kind.

    Rules: one or two legs; quantity a positive lot multiple; trigger and limit prices positive
    and on the tick; no trigger equal to the LTP (it would fire at once); an OCO's first leg is
    the stop-loss below the LTP and its second the target above it, both on the same side.
    """
    if len(legs) not in (1, 2):
        raise ValidationError(f"A GTT has one leg (single) or two (OCO); got {len(legs)}")
    symbol = instrument.symbol
    for number, leg in enumerate(legs, start=1):
        if isinstance(leg.quantity, bool) or not isinstance(leg.quantity, int) or leg.quantity <= 0:
            raise ValidationError(f"GTT leg {number}: quantity must be above 0; got "
                                  f"{leg.quantity!r}")
        if leg.quantity % instrument.lot_size:
            raise ValidationError(f"GTT leg {number}: quantity {leg.quantity} of {symbol} is not "
                                  f"a multiple of its lot size {instrument.lot_size}")
        trigger = to_price(leg.trigger_price, f"GTT leg {number} trigger price")
        price = to_price(leg.price, f"GTT leg {number} limit price")
        check_tick(trigger, instrument.tick_size, f"GTT leg {number} trigger price", symbol)
        check_tick(price, instrument.tick_size, f"GTT leg {number} limit price", symbol)
        if trigger == ltp:
            raise ValidationError(f"GTT leg {number}: trigger {as_typed(trigger)} equals the last "
                                  f"price of {symbol}; it would fire at once")
    if len(legs) == 1:
        return GttKind.SINGLE
    stop, target = legs
    if not stop.trigger_price < ltp < target.trigger_price:
        raise ValidationError(
            f"An OCO GTT needs its stop-loss trigger below and its target trigger above the last "
            f"price: stop {as_typed(stop.trigger_price)} < LTP {inr(ltp)} < target "
            f"{as_typed(target.trigger_price)} does not hold")
    if stop.side is not target.side:
        raise ValidationError("Both legs of an OCO GTT must be on the same side (both SELL to "
                              f"exit a long, both BUY to cover a short); got {stop.side} and "
                              f"{target.side}")
    return GttKind.OCO


def check_order_limits(legs: Sequence[GttLeg], symbol: str, limits: RiskLimits) -> None:
    """Refuse a GTT whose leg's order the risk gate's fixed per-order limits would refuse.

    Each leg places a LIMIT order of its quantity at its limit price; an order above the
    account's ``max_order_value`` or ``max_order_quantity`` (:class:`RiskLimits`, the limits in
    force for the account) is refused by the gate whatever the market does, so such a GTT could
    never place its order. The price band and the funds are not checked here: they change
    before the trigger, and the gate checks them when it fires.

    Raises
    ------
    RiskRejected
        Naming each such leg, its order, the limits and the values.
    """
    problems = []
    for number, leg in enumerate(legs, start=1):
        broken = []
        value = leg.price * leg.quantity
        if value > limits.max_order_value:
            broken.append(f"order value {inr(value)} is above the limit "
                          f"{inr(limits.max_order_value)} per order")
        if leg.quantity > limits.max_order_quantity:
            broken.append(f"quantity {leg.quantity} is above the limit of "
                          f"{limits.max_order_quantity} shares per order")
        if broken:
            problems.append(f"leg {number} ({leg.side.value} {leg.quantity} {symbol} at "
                            f"{inr(leg.price)}): " + " and ".join(broken))
    if problems:
        raise RiskRejected("This GTT's order would be refused by the risk gate when it fires: "
                           + "; ".join(problems) + ". Lower the quantity, or ask for higher "
                           "per-order limits of this account (Risk page)")


def expiry(created_at: datetime) -> datetime:
    """Return when a GTT created at ``created_at`` expires unfired."""
    return created_at + GTT_LIFETIME
