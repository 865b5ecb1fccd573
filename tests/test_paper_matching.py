"""Paper matching: one table of price paths per order type, IOC, AMO, participation, slippage."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from brokers.paper.matching import (
    FillConfig,
    MarketTick,
    RestingOrder,
    advance,
    match,
    participation_cap,
)
from core.trading import OrderType, Side, Validity, slipped_price

CONFIG = FillConfig(slippage_bps=5, participation_pct=25, tick_size=Decimal("0.05"))
D = Decimal


def run(order: RestingOrder, path: list, config: FillConfig = CONFIG
        ) -> list[tuple[int, Decimal | None]]:
    """Feed ``path`` (prices, or MarketTicks) to ``order``; return its fills [(qty, price)]."""
    fills = []
    for step in path:
        tick = step if isinstance(step, MarketTick) else MarketTick(D(step))
        result = match(order, tick, config)
        if result.fill_quantity:
            fills.append((result.fill_quantity, result.fill_price))
        order = advance(order, result)
        if result.cancel_rest or order.remaining == 0:
            break
    return fills


def order(side: Side, kind: OrderType, price: str | None = None, trigger: str | None = None,
          quantity: int = 10, **extra: Any) -> RestingOrder:
    return RestingOrder(side=side, order_type=kind, quantity=quantity,
                        price=None if price is None else D(price),
                        trigger_price=None if trigger is None else D(trigger), **extra)


BUY, SELL = Side.BUY, Side.SELL


@pytest.mark.parametrize(("side", "path", "fills"), [
    (BUY, ["1000"], [(10, D("1000.50"))]),  # 1000 × 1.0005 = 1000.50
    (SELL, ["1000"], [(10, D("999.50"))]),
    (BUY, ["123.45"], [(10, D("123.55"))]),  # 123.5117 rounded up to the tick
    (SELL, ["123.45"], [(10, D("123.35"))]),  # 123.3883 rounded down to the tick
    (BUY, ["99.80", "120"], [(10, D("99.85"))]),  # the first new price fills it
])
def test_a_market_order_fills_at_the_next_price_with_slippage(side, path, fills) -> None:
    assert run(order(side, OrderType.MARKET), path) == fills


@pytest.mark.parametrize(("side", "limit", "path", "fills"), [
    # resting first (a tick that did not cross), then filled at the limit
    (BUY, "100", ["101", "100.50", "99.80"], [(10, D("100"))]),
    (SELL, "200", ["199", "201"], [(10, D("200"))]),
    # marketable on arrival: the better of the limit and the price with slippage
    (BUY, "100", ["99"], [(10, D("99.05"))]),
    (BUY, "100", ["99.98"], [(10, D("100"))]),  # 99.98 with slippage is 100.05: the limit caps
    (BUY, "100", ["100"], [(10, D("100"))]),
    (SELL, "200", ["205"], [(10, D("204.85"))]),
    (SELL, "200", ["200.05"], [(10, D("200"))]),
    # never crossing
    (BUY, "100", ["101", "100.05", "102"], []),
    (SELL, "200", ["198", "199.95"], []),
])
def test_a_limit_order_fills_only_at_or_better_than_its_limit(side, limit, path, fills) -> None:
    assert run(order(side, OrderType.LIMIT, limit), path) == fills


@pytest.mark.parametrize(("side", "limit", "trigger", "path", "fills"), [
    # triggered and marketable on the same tick: a taker fill with slippage, capped at the limit
    (BUY, "106", "105", ["104", "105"], [(10, D("105.10"))]),
    (SELL, "94", "95", ["96", "95"], [(10, D("94.95"))]),
    # triggered past its limit: rests as a LIMIT and later fills at the limit
    (BUY, "106", "105", ["104", "107", "105.50"], [(10, D("106"))]),
    (SELL, "94", "95", ["96", "93", "94.50"], [(10, D("94"))]),
    # never triggered: no fill even at prices the limit would accept
    (BUY, "106", "105", ["100", "104.95", "103"], []),
    (SELL, "94", "95", ["96", "95.05", "97"], []),
])
def test_a_stop_limit_order_becomes_a_limit_at_its_trigger(side, limit, trigger, path,
                                                           fills) -> None:
    assert run(order(side, OrderType.SL, limit, trigger), path) == fills


@pytest.mark.parametrize(("side", "trigger", "path", "fills"), [
    (BUY, "105", ["104", "106"], [(10, D("106.10"))]),  # 106 × 1.0005 = 106.053 -> 106.10
    (BUY, "105", ["105"], [(10, D("105.10"))]),
    (SELL, "95", ["96", "94"], [(10, D("93.95"))]),  # 93.953 -> 93.95
    (SELL, "95", ["95"], [(10, D("94.95"))]),
    (BUY, "105", ["104", "104.95"], []),
    (SELL, "95", ["96", "95.05"], []),
])
def test_a_stop_market_order_fills_on_its_trigger_tick_with_slippage(side, trigger, path,
                                                                     fills) -> None:
    assert run(order(side, OrderType.SL_M, trigger=trigger), path) == fills


def test_a_closed_tick_matches_nothing_and_triggers_nothing() -> None:
    closed = MarketTick(D("90"), None, market_open=False)
    for resting in (order(BUY, OrderType.MARKET), order(BUY, OrderType.LIMIT, "100"),
                    order(SELL, OrderType.SL_M, trigger="95")):
        result = match(resting, closed, CONFIG)
        assert (result.fill_quantity, result.triggered, result.cancel_rest) == (0, False, False)
        assert "market closed" in (result.message or "")


def test_an_amo_waits_through_closed_ticks_and_fills_on_the_first_open_one() -> None:
    amo = order(BUY, OrderType.MARKET, amo=True)
    path = [MarketTick(D("1000"), 500, False), MarketTick(D("1001"), 900, False),
            MarketTick(D("1002"), 1000, True)]
    assert run(amo, path) == [(10, D("1002.55"))]


def test_an_ioc_order_fills_what_it_can_on_its_first_open_tick_and_cancels_the_rest() -> None:
    ioc = order(BUY, OrderType.LIMIT, "100", quantity=100, validity=Validity.IOC)
    waiting = match(ioc, MarketTick(D("99.50"), 200, market_open=False), CONFIG)
    assert (waiting.fill_quantity, waiting.cancel_rest) == (0, False)
    result = match(ioc, MarketTick(D("99.50"), 200), CONFIG)  # 25% of 200 = 50
    assert (result.fill_quantity, result.fill_price, result.cancel_rest) == (50, D("99.55"), True)
    assert "IOC: 50 unfilled shares cancelled" in (result.message or "")


def test_an_ioc_order_that_does_not_cross_is_cancelled_whole() -> None:
    ioc = order(SELL, OrderType.LIMIT, "200", validity=Validity.IOC)
    result = match(ioc, MarketTick(D("199")), CONFIG)
    assert (result.fill_quantity, result.cancel_rest) == (0, True)
    assert result.message == "IOC: 10 unfilled shares cancelled (resting at ₹200.00 (last ₹199.00))"
    one = match(order(SELL, OrderType.LIMIT, "200", quantity=1, validity=Validity.IOC),
                MarketTick(D("199")), CONFIG)
    assert one.message == "IOC: 1 unfilled share cancelled (resting at ₹200.00 (last ₹199.00))"


def test_volume_participation_fills_a_big_order_in_parts() -> None:
    resting = order(BUY, OrderType.MARKET, quantity=100)
    seen = []
    for price, volume in (("100", 200), ("100.10", 3), ("100.20", 100), ("100.30", 400)):
        result = match(resting, MarketTick(D(price), volume), CONFIG)
        resting = advance(resting, result)
        seen.append((result.fill_quantity, resting.remaining))
    # 25% of 200, of 3 (0: nothing this tick), of 100, then the last 25 of 100 available
    assert seen == [(50, 50), (0, 50), (25, 25), (25, 0)]


def test_a_tick_whose_share_rounds_to_zero_fills_nothing_and_says_why() -> None:
    result = match(order(BUY, OrderType.MARKET), MarketTick(D("100"), 3), CONFIG)
    assert result.fill_quantity == 0 and result.fill_price is None
    assert result.message == "no fill: 25% of 3 shares traded is 0"


@pytest.mark.parametrize(("volume", "cap"), [(None, None), (0, 0), (3, 0), (4, 1), (399, 99)])
def test_participation_cap_is_the_floor_of_the_share_of_volume(volume, cap) -> None:
    assert participation_cap(volume, CONFIG) == cap


@pytest.mark.parametrize(("price", "side", "bps", "expected"), [
    ("1000", BUY, 5, "1000.50"),
    ("1000", SELL, 5, "999.50"),
    ("100.02", BUY, 0, "100.05"),  # an off-tick price is rounded outward even without slippage
    ("100.02", SELL, 0, "100.00"),
    ("100", BUY, 0, "100"),
    ("2.10", BUY, 5, "2.15"),  # 2.101 rounds up a whole tick
    ("2.10", SELL, 5, "2.05"),
    ("0.05", SELL, 5, "0.05"),  # never at or below zero: one tick at least
    ("3456.70", BUY, 50, "3474.00"),  # 3473.9835 up to the tick
])
def test_slippage_is_rounded_outward_to_the_tick(price, side, bps, expected) -> None:
    assert slipped_price(D(price), side, bps, D("0.05")) == D(expected)
