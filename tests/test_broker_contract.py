"""The broker contract: every registered broker behaves the same through the Broker protocol.

Each broker supplies a harness (:class:`BrokerUnderTest`): the adapter built by the registry,
a liquid symbol, and a ``trade`` hook that makes the market print a new price so marketable
orders fill (the paper broker moves its static market and runs the exchange step; a live
adapter's harness would point at its fake venue). The tests only use the protocol.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from brokers.base import REQUIRED_CAPABILITIES, Broker, OrderChange
from brokers.paper import FeedMarketView, PaperBroker
from brokers.registry import BROKER_CLASSES, BROKER_FACTORIES, build_broker
from core.domain import Broker as BrokerName
from core.errors import NotFound, OrderRejected, ValidationError
from core.trading import OrderRequest, OrderStatus, OrderType, Product, Side
from db.engine import Database
from tests.conftest import make_settings
from tests.support.paper import paper_desk


@dataclass
class BrokerUnderTest:
    """A broker adapter plus what the contract needs to drive its market."""

    broker: Broker
    symbol: str
    trade: Callable[[str], None]  # make ``symbol`` trade at a new price; open orders may fill

    def request(self, side: Side = Side.BUY, quantity: int = 2, **fields: Any) -> OrderRequest:
        return OrderRequest(account_id=self.broker.account_id, symbol=self.symbol, side=side,
                            quantity=quantity, client_order_id=f"c-{uuid.uuid4().hex[:12]}",
                            **fields)

    def ltp(self) -> Decimal:
        quote = self.broker.quote(self.symbol)
        assert quote is not None
        return quote.ltp


def _paper(url: str) -> Iterator[BrokerUnderTest]:
    desk = paper_desk(url)
    broker = build_broker("paper", db=desk.db, settings=make_settings(url),
                          account_id=desk.account_id, market=desk.market, clock=desk.clock)

    def trade(symbol: str) -> None:
        (quote,) = desk.market.quotes([symbol]).values()
        desk.price(symbol, str(quote.ltp + 1))

    yield BrokerUnderTest(broker, "INFY", trade)
    desk.db.dispose()


#: Broker name -> harness; every registered broker needs one.
HARNESSES: dict[str, Callable[[str], Iterator[BrokerUnderTest]]] = {"paper": _paper}


@pytest.fixture(params=sorted(name.value for name in BROKER_FACTORIES))
def under_test(request: pytest.FixtureRequest, demo_url: str) -> Iterator[BrokerUnderTest]:
    yield from HARNESSES[request.param](demo_url)


def test_every_registered_broker_has_a_contract_harness() -> None:
    assert {name.value for name in BROKER_FACTORIES} == set(HARNESSES)
    assert set(BROKER_CLASSES) == set(BROKER_FACTORIES)  # and its adapter class


def test_the_broker_follows_the_protocol_with_the_required_capabilities(under_test) -> None:
    broker = under_test.broker
    assert isinstance(broker, Broker)
    assert broker.name in {name.value for name in BROKER_FACTORIES}
    assert broker.capabilities >= REQUIRED_CAPABILITIES
    # The registry's class of the broker is the adapter's, so what the worker decides from
    # the class (e.g. whether any broker keeps books outside the desk) holds for it.
    assert type(broker) is BROKER_CLASSES[BrokerName(broker.name)]
    assert broker.capabilities == BROKER_CLASSES[BrokerName(broker.name)].capabilities
    assert broker.session().is_open
    assert under_test.symbol in broker.quotes([under_test.symbol, "NOSUCH"])


def test_a_placed_order_is_in_the_order_book_with_its_client_order_id(under_test) -> None:
    request = under_test.request(order_type=OrderType.LIMIT, price=under_test.ltp() - 50)
    order_id = under_test.broker.place_order(request)
    (found,) = under_test.broker.orders([order_id])
    assert (found.client_order_id, found.status, found.quantity) == (
        request.client_order_id, OrderStatus.OPEN, 2)
    assert order_id in [o.broker_order_id for o in under_test.broker.order_book()]


def test_a_market_order_fills_after_a_new_price_and_its_trades_are_in_the_books(
        under_test) -> None:
    broker = under_test.broker
    order_id = broker.place_order(under_test.request())
    under_test.trade(under_test.symbol)
    (order,) = broker.orders([order_id])
    assert (order.status, order.filled_quantity) == (OrderStatus.FILLED, 2)
    trades = broker.order_trades(order_id)
    assert sum(t.quantity for t in trades) == 2
    assert all(t.broker_order_id == order_id for t in trades)
    assert {t.broker_trade_id for t in trades} <= {t.broker_trade_id for t in broker.trade_book()}


def test_a_delivery_buy_is_a_position_and_costs_its_value_and_charges(under_test) -> None:
    broker = under_test.broker
    before = broker.funds()
    order_id = broker.place_order(under_test.request(product=Product.CNC))
    under_test.trade(under_test.symbol)
    trades = broker.order_trades(order_id)
    cost = sum((t.value + t.charges.total for t in trades), Decimal(0))
    after = broker.funds()
    assert before.available - after.available == cost
    assert after.charges_today - before.charges_today == sum(
        (t.charges.total for t in trades), Decimal(0))
    positions = [p for p in broker.positions()
                 if p.symbol == under_test.symbol and p.product is Product.CNC]
    assert sum(p.quantity for p in positions) == 2
    assert all(h.symbol != under_test.symbol for h in broker.holdings())  # settles T+1


def test_an_open_limit_order_can_be_modified_and_cancelled_once(under_test) -> None:
    broker = under_test.broker
    low = under_test.ltp() - 50
    order_id = broker.place_order(under_test.request(order_type=OrderType.LIMIT, price=low))
    broker.modify_order(order_id, OrderChange(price=low - 1))
    assert broker.orders([order_id])[0].price == low - 1
    broker.cancel_order(order_id)
    assert broker.orders([order_id])[0].status is OrderStatus.CANCELLED
    with pytest.raises(OrderRejected):
        broker.cancel_order(order_id)


def test_an_unknown_order_id_is_refused_and_left_out(under_test) -> None:
    broker = under_test.broker
    with pytest.raises((NotFound, OrderRejected)):
        broker.cancel_order("NO-SUCH-ORDER")
    with pytest.raises((NotFound, OrderRejected)):
        broker.modify_order("NO-SUCH-ORDER", OrderChange(price=Decimal(100)))
    assert broker.orders(["NO-SUCH-ORDER"]) == []


# -- the registry ---------------------------------------------------------------------------------


def test_build_broker_refuses_an_unknown_broker_and_names_the_known_ones(empty_url) -> None:
    db = Database(empty_url)
    with pytest.raises(ValidationError) as caught:
        build_broker("zerodha", db=db, settings=make_settings(empty_url), account_id=1)
    assert str(caught.value) == "Unknown broker 'zerodha'; known brokers: paper"
    db.dispose()


def test_the_paper_broker_trades_on_the_market_feed_by_default(empty_url) -> None:
    db = Database(empty_url)
    broker = build_broker(" Paper ", db=db, settings=make_settings(empty_url, feed_mode="off"),
                          account_id=7)
    assert isinstance(broker, PaperBroker)
    assert isinstance(broker.market, FeedMarketView)
    assert broker.account_id == 7
    assert broker.session().detail == "market feed off (FEED_MODE=off)"
    db.dispose()
