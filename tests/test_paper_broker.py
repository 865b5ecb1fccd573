"""The paper broker on SQLite and PostgreSQL: refusals, fills, charges, funds, expiry, AMO."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy import select

from brokers.base import OrderChange, SessionState
from brokers.paper import FeedMarketView, PaperBroker, PaperConfig, PaperExchange
from brokers.paper.records import AMO_QUEUED, to_trade
from core import portfolio
from core.errors import InsufficientFunds, NotFound, OrderRejected, ValidationError
from core.money import inr
from core.queue_book import AccountBook
from core.trading import (
    CHARGE_FIELDS,
    Charges,
    OrderStatus,
    OrderType,
    Product,
    Side,
    Trade,
    Validity,
)
from db.engine import Database
from db.models import FeedStatusRow, InstrumentRow, PaperTradeRow, QuoteRow
from engines import costs
from tests.conftest import make_settings
from tests.support.paper import CAPITAL, T0, PaperDesk, paper_desk

D = Decimal
DAY1, DAY2, DAY3 = date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 6)
BUY, SELL = Side.BUY, Side.SELL


@pytest.fixture
def paper(demo_url: str) -> Iterator[PaperDesk]:
    desk = paper_desk(demo_url)
    yield desk
    desk.db.dispose()


def expected_charges(side: Side, price: str, quantity: int, day: date, product=Product.CNC,
                     dp: bool = False) -> dict[str, Decimal]:
    segment = (costs.Segment.EQUITY_INTRADAY if product is Product.MIS
               else costs.Segment.EQUITY_DELIVERY)
    leg = costs.leg_charges(segment, side.value.lower(), D(price), quantity, day, "paper",
                            dp_applies=dp)
    return {name: getattr(leg, name).quantize(D("0.000001")) for name in CHARGE_FIELDS}


def charges_of(trade: Trade) -> dict[str, Decimal]:
    return {name: getattr(trade.charges, name) for name in CHARGE_FIELDS}


def to_block(amount: Decimal) -> Decimal:
    return amount.quantize(D("0.0001"), rounding=ROUND_CEILING)


# -- refusals: the rule and the values, and nothing written --------------------------------------

REFUSALS = [
    pytest.param({"quantity": 0}, ValidationError, "Quantity must be greater than 0; got 0",
                 id="zero-quantity"),
    pytest.param({"quantity": -5}, ValidationError, "Quantity must be greater than 0; got -5",
                 id="negative-quantity"),
    pytest.param({"symbol": "LOTX", "quantity": 10}, ValidationError,
                 "Quantity 10 of LOTX is not a multiple of its lot size 25", id="lot-multiple"),
    pytest.param({"order_type": OrderType.LIMIT, "price": D("1500.03")}, ValidationError,
                 "Price ₹1500.03 of INFY is not on the tick size ₹0.05; use ₹1,500.00 or ₹1,500.05",
                 id="price-off-tick"),
    pytest.param({"order_type": OrderType.LIMIT}, ValidationError,
                 "A LIMIT order needs a price; none was given", id="limit-without-price"),
    pytest.param({"order_type": OrderType.SL, "price": D("1510"), "trigger_price": D("1515")},
                 ValidationError, "An SL BUY triggers at or below its limit price: trigger "
                 "₹1515 is above price ₹1510", id="sl-trigger-wrong-side"),
    pytest.param({"order_type": OrderType.SL_M, "trigger_price": D("1490")}, ValidationError,
                 "A stop-loss BUY's trigger must be above the last price: trigger ₹1490 <= "
                 "LTP ₹1,500.00 of INFY", id="stop-trigger-already-passed"),
    pytest.param({"symbol": "XYZ"}, ValidationError, "Unknown symbol 'XYZ' on NSE",
                 id="unknown-symbol"),
    pytest.param({"symbol": "WIPRO"}, OrderRejected,
                 "No live price for WIPRO: the paper desk fills only against the market feed; "
                 "symbols with prices: INFY, TCS", id="no-live-price"),
    pytest.param({"side": SELL}, OrderRejected,
                 "You can sell at most 0 INFY from delivery (holdings 0, bought today 0, pending "
                 "sells 0); use MIS to short intraday", id="cnc-sell-without-shares"),
    pytest.param({"amo": True}, OrderRejected,
                 "AMO is only for orders placed while it is closed", id="amo-while-open"),
    pytest.param({"client_order_id": "bad id!"}, ValidationError,
                 "Client order id must be 1-40 letters", id="bad-client-order-id"),
]


@pytest.mark.parametrize(("fields", "error", "message"), REFUSALS)
def test_a_refused_order_states_the_rule_and_writes_nothing(paper: PaperDesk, fields, error,
                                                            message) -> None:
    before = paper.counts()
    with pytest.raises(error) as caught:
        paper.place(**fields)
    assert message in str(caught.value)
    assert paper.counts() == before


def test_an_order_without_a_client_order_id_is_refused(paper: PaperDesk) -> None:
    request = replace(paper.request(), client_order_id=None)
    with pytest.raises(ValidationError, match="needs a client order id"):
        paper.broker.place_order(request)
    assert paper.counts() == (0, 0)


def test_a_market_order_is_refused_while_the_market_is_closed(paper: PaperDesk) -> None:
    paper.market.set_open(False, "market feed is not running (state closed: night)")
    with pytest.raises(OrderRejected) as caught:
        paper.place()
    assert str(caught.value) == (
        "Market is closed (market feed is not running (state closed: night)); place it as an "
        "AMO to queue it for the next session open")
    assert paper.counts() == (0, 0)


def test_insufficient_funds_names_what_is_needed_and_available(paper: PaperDesk) -> None:
    price = D("1500.75")  # 1500 with 5 bps slippage
    charges = costs.leg_charges("equity_delivery", "buy", price, 1000, DAY1, "paper").total
    with pytest.raises(InsufficientFunds) as caught:
        paper.place(quantity=1000)
    assert str(caught.value) == (
        f"Insufficient funds for BUY 1000 INFY CNC: needs {inr(to_block(price * 1000 + charges))}"
        ", available ₹10,00,000.00; add funds or reduce the quantity")
    assert paper.counts() == (0, 0)


def test_the_same_client_order_id_places_one_order(paper: PaperDesk) -> None:
    request = paper.request(client_order_id="retry-1")
    first = paper.broker.place_order(request)
    assert paper.broker.place_order(request) == first
    assert paper.counts() == (1, 0)
    assert paper.order(first).client_order_id == "retry-1"
    assert first == "P1" or first.startswith("P")


# -- fills ----------------------------------------------------------------------------------------


def test_a_market_buy_fills_at_the_next_price_charged_by_the_costs_engine(paper: PaperDesk) -> None:
    order_id = paper.place()
    assert paper.exchange.step().fills == 0  # the price seen at placement does not fill it
    report = paper.price("INFY", "1510")
    assert (report.fills, report.filled) == (1, 1)
    order = paper.order(order_id)
    assert (order.status, order.filled_quantity, order.average_price) == (
        OrderStatus.FILLED, 10, D("1510.80"))  # 1510 × 1.0005 = 1510.755, up to the tick
    (trade,) = paper.broker.order_trades(order_id)
    assert (trade.quantity, trade.price, trade.trade_date) == (10, D("1510.80"), DAY1)
    assert charges_of(trade) == expected_charges(BUY, "1510.80", 10, DAY1)
    assert paper.broker.trade_book() == [trade]
    assert paper.blocked(order_id) == 0
    funds = paper.broker.funds()
    assert funds.available == CAPITAL - D("15108.00") - trade.charges.total
    (position,) = paper.broker.positions()
    assert (position.symbol, position.product, position.quantity) == ("INFY", Product.CNC, 10)
    assert paper.broker.holdings() == []


def test_a_big_order_fills_in_parts_by_volume_participation(paper: PaperDesk) -> None:
    order_id = paper.place(quantity=100)
    paper.price("INFY", "1500", traded=200)  # 25% of 200 shares = 50
    assert (paper.order(order_id).status, paper.order(order_id).filled_quantity) == (
        OrderStatus.PARTIALLY_FILLED, 50)
    paper.price("INFY", "1502", traded=1000)
    order = paper.order(order_id)
    assert (order.status, order.filled_quantity) == (OrderStatus.FILLED, 100)
    assert order.average_price == (D("1500.75") * 50 + D("1502.80") * 50) / 100
    assert [t.quantity for t in paper.broker.order_trades(order_id)] == [50, 50]


def test_dp_is_charged_on_the_first_delivery_sell_of_a_scrip_per_day(paper: PaperDesk) -> None:
    paper.buy_and_fill("INFY", 40, "1500")
    paper.buy_and_fill("TCS", 10, "3500")
    paper.clock.next_day()  # DAY2: settled into holdings
    assert {h.symbol: h.quantity for h in paper.broker.holdings()} == {"INFY": 40, "TCS": 10}
    first = paper.place("INFY", SELL, 10)
    second = paper.place("INFY", SELL, 10)
    tcs = paper.place("TCS", SELL, 10)
    paper.price("INFY", "1520")  # both INFY sells fill on one tick: DP on the first only
    paper.price("TCS", "3550")
    paper.clock.next_day()  # DAY3: a new day, DP again
    third = paper.place("INFY", SELL, 10)
    paper.price("INFY", "1530")
    dp = {oid: paper.broker.order_trades(oid)[0].charges.dp_charge
          for oid in (first, second, tcs, third)}
    assert dp == {first: D("13.50"), second: 0, tcs: D("13.50"), third: D("13.50")}
    (trade,) = paper.broker.order_trades(first)
    assert charges_of(trade) == expected_charges(SELL, "1519.20", 10, DAY2, dp=True)


def test_a_day_order_expires_unfilled_at_the_end_of_its_trading_day(paper: PaperDesk) -> None:
    order_id = paper.place(order_type=OrderType.LIMIT, price=D("1400"))
    paper.price("INFY", "1450")
    assert paper.broker.funds().available < CAPITAL
    paper.clock.next_day()
    report = paper.exchange.step()
    assert report.expired == 1
    order = paper.order(order_id)
    assert (order.status, order.status_message) == (
        OrderStatus.CANCELLED, "Expired unfilled at the end of 2026-03-04 (DAY order)")
    assert paper.broker.funds().available == CAPITAL
    assert paper.broker.order_book() == []  # yesterday's and final: off today's book


def test_an_amo_waits_for_the_open_and_does_not_expire_while_queued(paper: PaperDesk) -> None:
    paper.market.set_open(False, "market feed is not running (state closed)")
    order_id = paper.place(amo=True)
    assert paper.order(order_id).status_message == AMO_QUEUED
    paper.price("INFY", "1490")  # a closed tick
    paper.clock.next_day()
    assert paper.exchange.step().expired == 0
    assert paper.order(order_id).status is OrderStatus.OPEN
    paper.market.set_open(True)
    paper.price("INFY", "1505")
    order = paper.order(order_id)
    assert (order.status, order.average_price, order.status_message) == (
        OrderStatus.FILLED, D("1505.80"), None)
    assert paper.broker.order_trades(order_id)[0].trade_date == DAY2


def test_an_ioc_limit_fills_what_it_can_and_cancels_the_rest(paper: PaperDesk) -> None:
    order_id = paper.place(quantity=100, order_type=OrderType.LIMIT, price=D("1500"),
                           validity=Validity.IOC)
    paper.price("INFY", "1499", traded=160)  # 25% of 160 = 40
    order = paper.order(order_id)
    assert (order.status, order.filled_quantity) == (OrderStatus.CANCELLED, 40)
    assert "IOC: 60 unfilled shares cancelled" in (order.status_message or "")
    assert paper.blocked(order_id) == 0


def test_funds_are_blocked_by_an_open_order_and_released_as_it_fills_or_cancels(
        paper: PaperDesk) -> None:
    order_id = paper.place(quantity=100, order_type=OrderType.LIMIT, price=D("1490"))
    charges = costs.leg_charges("equity_delivery", "buy", D("1490"), 100, DAY1).total
    blocked = to_block(D("149000") + charges)
    assert paper.blocked(order_id) == blocked
    funds = paper.broker.funds()
    assert (funds.used_margin, funds.available) == (blocked, CAPITAL - blocked)
    paper.price("INFY", "1495")  # rests
    paper.price("INFY", "1489", traded=160)  # 40 fill at the limit
    assert paper.order(order_id).status is OrderStatus.PARTIALLY_FILLED
    assert paper.blocked(order_id) == to_block(blocked * 60 / 100)
    paper.broker.cancel_order(order_id)
    order = paper.order(order_id)
    assert (order.status, order.status_message) == (
        OrderStatus.CANCELLED, "Cancelled by the user (40 of 100 filled)")
    (trade,) = paper.broker.order_trades(order_id)
    assert trade.price == D("1490")
    assert paper.broker.funds().available == CAPITAL - D("59600") - trade.charges.total


def test_an_intraday_short_blocks_margin_and_covering_it_blocks_only_charges(
        paper: PaperDesk) -> None:
    short = paper.place(side=SELL, quantity=100, product=Product.MIS)
    sell_price = D("1499.25")
    charges = costs.leg_charges("equity_intraday", "sell", sell_price, 100, DAY1).total
    assert paper.blocked(short) == to_block(sell_price * 100 / 5 + charges)
    paper.price("INFY", "1500")
    (position,) = paper.broker.positions()
    assert (position.product, position.quantity) == (Product.MIS, -100)
    cover = paper.place(side=BUY, quantity=100, product=Product.MIS)
    buy_charges = costs.leg_charges("equity_intraday", "buy", D("1500.75"), 100, DAY1).total
    assert paper.blocked(cover) == to_block(buy_charges)


def test_a_delivery_sell_beyond_what_is_held_is_refused(paper: PaperDesk) -> None:
    paper.buy_and_fill("INFY", 10, "1500")
    paper.place(side=SELL, quantity=4, order_type=OrderType.LIMIT, price=D("1600"))
    before = paper.counts()
    with pytest.raises(OrderRejected) as caught:
        paper.place(side=SELL, quantity=7)
    assert str(caught.value) == (
        "You can sell at most 6 INFY from delivery (holdings 0, bought today 10, pending sells "
        "4); use MIS to short intraday")
    assert paper.counts() == before
    paper.clock.next_day()
    with pytest.raises(OrderRejected, match=r"at most 6 INFY from delivery \(holdings 10, "
                                            r"bought today 0, pending sells 4\)"):
        paper.place(side=SELL, quantity=7)


# -- modify and cancel ----------------------------------------------------------------------------


@pytest.mark.parametrize("final", [OrderStatus.FILLED, OrderStatus.CANCELLED])
def test_modify_and_cancel_refuse_an_order_that_is_no_longer_open(paper: PaperDesk,
                                                                   final) -> None:
    order_id = paper.place()
    if final is OrderStatus.FILLED:
        paper.price("INFY", "1501")
    else:
        paper.broker.cancel_order(order_id)
    before = (paper.counts(), paper.order(order_id))
    with pytest.raises(OrderRejected) as modify:
        paper.broker.modify_order(order_id, OrderChange(quantity=20))
    with pytest.raises(OrderRejected) as cancel:
        paper.broker.cancel_order(order_id)
    assert str(modify.value) == f"Order {order_id} is {final}; only open orders can be modified"
    assert str(cancel.value) == f"Order {order_id} is {final}; only open orders can be cancelled"
    assert (paper.counts(), paper.order(order_id)) == before


def test_modify_rechecks_the_price_the_quantity_and_the_funds(paper: PaperDesk) -> None:
    order_id = paper.place(quantity=100, order_type=OrderType.LIMIT, price=D("1490"))
    paper.price("INFY", "1495")
    paper.price("INFY", "1489", traded=40)  # 10 of 100 fill
    paper.broker.modify_order(order_id, OrderChange(price=D("1480")))
    assert paper.order(order_id).price == D("1480")
    charges = costs.leg_charges("equity_delivery", "buy", D("1480"), 90, DAY1).total
    assert paper.blocked(order_id) == to_block(D("1480") * 90 + charges)
    with pytest.raises(ValidationError, match="must be more than the 10 already filled"):
        paper.broker.modify_order(order_id, OrderChange(quantity=10))
    with pytest.raises(ValidationError, match="is not on the tick size"):
        paper.broker.modify_order(order_id, OrderChange(price=D("1480.01")))
    with pytest.raises(InsufficientFunds, match=r"needs ₹[\d,]+\.\d\d, available ₹[\d,]+\.\d\d"):
        paper.broker.modify_order(order_id, OrderChange(quantity=1000))
    with pytest.raises(ValidationError, match="Nothing to change"):
        paper.broker.modify_order(order_id, OrderChange())
    assert (paper.order(order_id).quantity, paper.order(order_id).price) == (100, D("1480"))


def test_an_unknown_or_foreign_order_id_is_not_found(paper: PaperDesk) -> None:
    order_id = paper.place()
    foreign = replace(paper, broker=type(paper.broker)(
        paper.db, paper.other_account_id, PaperConfig(), paper.market, paper.clock))
    for broker, ident in ((paper.broker, "P999"), (paper.broker, "junk"),
                          (foreign.broker, order_id)):
        with pytest.raises(NotFound, match="No paper order"):
            broker.cancel_order(ident)
        assert broker.orders([ident]) == []


# -- the exchange step ----------------------------------------------------------------------------


def test_a_step_limited_to_some_orders_matches_only_those(paper: PaperDesk) -> None:
    first, second = paper.place(), paper.place()
    paper.market.set_price("INFY", "1502", paper.clock.advance(seconds=1))
    report = paper.exchange.step(only=[second])
    assert (report.examined, report.fills) == (1, 1)
    assert [paper.order(i).status for i in (first, second)] == [OrderStatus.OPEN,
                                                                OrderStatus.FILLED]


def test_two_steps_at_once_fill_an_order_once(paper: PaperDesk) -> None:
    order_id = paper.place()
    paper.market.set_price("INFY", "1502", paper.clock.advance(seconds=1))
    other = PaperExchange(paper.db, PaperConfig(), paper.market, paper.clock)
    start = threading.Barrier(2)
    reports = []

    def run(exchange: PaperExchange) -> None:
        start.wait()
        reports.append(exchange.step())

    threads = [threading.Thread(target=run, args=(e,)) for e in (paper.exchange, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.fills for r in reports) == [0, 1]
    assert len(paper.broker.order_trades(order_id)) == 1


# -- capital ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "message"), [
    (D("0.0"), "Deposit must be greater than ₹0; got ₹0"),
    ("-5", "Deposit must be greater than ₹0; got -₹5"),
    (D("10.005"), "Deposit must be whole paise (at most 2 decimals); got ₹10.005"),
    ("lots", "Deposit must be a number; got 'lots'"),
    (None, "Deposit must be a number; got None"),
])
def test_a_deposit_must_be_a_positive_number_of_paise(paper: PaperDesk, amount,
                                                      message) -> None:
    with pytest.raises(ValidationError) as caught:
        paper.broker.deposit(amount, "bad")
    assert str(caught.value) == message
    assert paper.broker.deposits() == CAPITAL


def test_withdrawals_reduce_capital_but_not_below_what_is_available(paper: PaperDesk) -> None:
    paper.broker.withdraw(D("250000.50"), "school fees")
    assert paper.broker.deposits() == D("749999.50")
    paper.broker.deposit("0.50", user_id=None)
    assert paper.broker.deposits() == D("750000.00")
    paper.place(order_type=OrderType.LIMIT, price=D("1400"), quantity=100)
    available = paper.broker.funds().available
    with pytest.raises(InsufficientFunds) as caught:
        paper.broker.withdraw(D("750000"))
    assert str(caught.value) == f"Cannot withdraw ₹7,50,000.00: available {inr(available)}"
    assert paper.broker.deposits() == D("750000.00")


def test_a_new_day_starts_the_volume_count_again(paper: PaperDesk) -> None:
    paper.market.set_open(False)
    order_id = paper.place(quantity=100, amo=True)
    paper.clock.next_day()
    paper.market.set_open(True)
    paper.market.set_price("INFY", "1500", paper.clock.advance(seconds=1), traded=120)
    paper.exchange.step()  # a new IST day: its whole volume so far (120) counts
    assert paper.order(order_id).filled_quantity == 30
    assert T0.date() == DAY1


# -- the market feed as the paper market --------------------------------------------------------


def write_feed(db: Database, at: datetime, state: str = "running", message: str | None = None,
               last_tick_at: datetime | None = None) -> None:
    with db.transaction() as session:
        session.merge(FeedStatusRow(
            name="market", source="replay", mode="replay", state=state, ticks=1,
            message=message, updated_at=at, last_tick_at=last_tick_at or at, simulated_at=at))


def write_quote(db: Database, symbol: str, price: str, at: datetime, volume: int) -> None:
    with db.transaction() as session:
        ident = session.scalar(select(InstrumentRow.id).where(InstrumentRow.symbol == symbol))
        session.merge(QuoteRow(instrument_id=ident, ltp=D(price), prev_close=None,
                               day_open=D(price), day_high=D(price), day_low=D(price),
                               volume=volume, quote_time=at, source="replay", updated_at=at))


@pytest.mark.parametrize(("mode", "feed", "is_open", "detail"), [
    ("off", ("running", None, 0), False, "market feed off (FEED_MODE=off)"),
    ("replay", None, False, "no market feed status yet (is the worker running?)"),
    ("replay", ("closed", "Market opens 09:15 IST", 0), False,
     "market feed is not running (state closed: Market opens 09:15 IST)"),
    ("replay", ("running", None, 60), False, "market feed stalled: no price for 60 s"),
    ("replay", ("running", None, 2), True, "market feed running (replay, replay)"),
])
def test_the_paper_market_is_open_only_while_the_feed_runs(paper: PaperDesk, mode, feed,
                                                           is_open, detail) -> None:
    if feed is not None:
        state, message, age = feed
        write_feed(paper.db, T0, state, message, T0 - timedelta(seconds=age))
    write_quote(paper.db, "INFY", "1500", T0, volume=10_000)
    market = FeedMarketView(paper.db, make_settings(paper.db.url, feed_mode=mode,
                                                    feed_stall_seconds=15))
    assert market.session(T0) == SessionState(is_open, detail, DAY1, T0)
    # The order path and the step read both in one statement: the same answers.
    state, quotes = market.session_and_quotes(T0, ["INFY", "TCS", "INFY"])
    assert (state, quotes) == (market.session(T0), market.quotes(["INFY", "TCS"]))
    assert set(quotes) == {"INFY"} and quotes["INFY"].ltp == D("1500")
    assert market.session_and_quotes(T0, [])[1] == {}


def test_orders_fill_against_the_quotes_the_feed_writes(paper: PaperDesk) -> None:
    db = paper.db
    market = FeedMarketView(db, make_settings(db.url, feed_stall_seconds=15))
    broker = PaperBroker(db, paper.account_id, PaperConfig(), market, paper.clock)
    exchange = PaperExchange(db, PaperConfig(), market, paper.clock)
    write_feed(db, T0)
    write_quote(db, "INFY", "1500", T0, volume=10_000)
    with pytest.raises(OrderRejected, match=r"symbols with prices: INFY$"):
        broker.place_order(paper.request("TCS"))
    order_id = broker.place_order(paper.request(quantity=100))
    assert exchange.step(T0).fills == 0  # the quote it was placed on
    later = paper.clock.advance(seconds=1)
    write_feed(db, later)
    write_quote(db, "INFY", "1501", later, volume=10_200)  # 200 traded since: 50 fill
    assert exchange.step(later).fills == 1
    quote = broker.quote("INFY")
    assert (broker.orders([order_id])[0].filled_quantity, quote and quote.ltp) == (50, D("1501"))
    assert set(market.quotes(["INFY", "TCS"])) == {"INFY"}


# -- the in-memory book ---------------------------------------------------------------------------


def all_fills(paper: PaperDesk) -> list[Trade]:
    with paper.db.transaction() as session:
        rows = session.scalars(select(PaperTradeRow).where(
            PaperTradeRow.account_id == paper.account_id).order_by(PaperTradeRow.id)).all()
        return [to_trade(row) for row in rows]


def test_the_cached_book_equals_one_built_from_every_fill(paper: PaperDesk) -> None:
    paper.buy_and_fill("INFY", 30, "1500")
    paper.buy_and_fill("TCS", 5, "3500", Product.MIS)
    paper.clock.next_day()
    paper.place("INFY", SELL, 10)
    paper.place("TCS", SELL, 5, product=Product.MIS)
    paper.price("INFY", "1510")
    paper.price("TCS", "3490")
    paper.buy_and_fill("INFY", 7, "1505")
    ltp = {symbol: quote.ltp for symbol, quote in paper.market.quotes().items()}
    expected = portfolio.build_book(all_fills(paper), ltp, DAY2)
    assert paper.broker.positions() == list(expected.positions)
    assert paper.broker.holdings() == list(expected.holdings)
    funds = paper.broker.funds()
    assert funds == portfolio.compute_funds(paper.account_id, CAPITAL, expected, D(0), 5)


def test_a_fill_committed_out_of_id_order_is_still_counted(paper: PaperDesk) -> None:
    order_id = paper.buy_and_fill("INFY", 10, "1500")
    for ident in (1000, 500):  # 1000 commits and is read first; 500 commits late
        with paper.db.transaction() as session:
            session.add(PaperTradeRow(
                id=ident, paper_order_id=int(order_id[1:]), account_id=paper.account_id,
                symbol="INFY", side=Side.BUY, product=Product.CNC, quantity=1,
                price=D("1500"), executed_at=T0, trade_date=DAY1))
        funds = paper.broker.funds()  # the order path's read: money and new fills at once
        (position,) = paper.broker.positions()
    assert position.quantity == 12
    every_fill = portfolio.build_book(all_fills(paper), {}, DAY1)
    assert funds == portfolio.compute_funds(paper.account_id, CAPITAL, every_fill, D(0), 5)


FILL = st.tuples(
    st.sampled_from(["INFY", "TCS"]), st.sampled_from([Product.CNC, Product.MIS]),
    st.sampled_from([BUY, SELL]), st.integers(1, 5), st.sampled_from(["99.5", "100", "101.25"]),
    st.integers(0, 2),  # trade day: DAY1 + n
    st.integers(-2, 30),  # seconds after the previous fill (negative: committed late)
    st.sampled_from(["0", "0.123456", "13.5"]))


@hyp_settings(database=None, deadline=None, max_examples=150)
@given(st.lists(st.one_of(FILL, st.tuples(st.integers(0, 3), st.booleans())), max_size=40))
def test_the_queue_by_queue_book_always_equals_one_over_every_fill(steps) -> None:
    account = AccountBook()
    fills: list[Trade] = []
    at = T0
    for step in steps:
        if len(step) == 2:  # look at the book: on some day, with or without TCS priced
            offset, priced = step
            ltp = {"INFY": D("100.75"), **({"TCS": D("99")} if priced else {})}
            today = DAY1 + timedelta(days=offset)
            assert account.book(ltp, today) == portfolio.build_book(fills, ltp, today)
            continue
        symbol, product, side, quantity, price, day, seconds, charge = step
        at += timedelta(seconds=seconds)
        trade = Trade(1, symbol, side, product, quantity, D(price), at,
                      DAY1 + timedelta(days=day), f"T{len(fills)}", "P1",
                      Charges(stt=D(charge)))
        fills.append(trade)
        account.add(trade)
    ltp = {"INFY": D("100"), "TCS": D("100")}
    assert account.book(ltp, DAY3) == portfolio.build_book(fills, ltp, DAY3)
