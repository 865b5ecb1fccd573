"""The portfolio: FIFO lots, T+1 holdings, P&L identities, funds and the family view."""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clock import IST
from core.errors import ValidationError
from core.portfolio import (
    Book,
    build_book,
    combine_books,
    compute_funds,
    consolidate,
    next_settlement_day,
    replay,
)
from core.trading import CHARGE_FIELDS, Charges, Product, Side, Trade
from engines.costs import Segment, leg_charges

# Nothing written to the tree (no .hypothesis/ example database); no flaky timing deadlines.
# A decorator per test rather than a loaded profile, so no other module's settings change.
PROPERTY = settings(database=None, deadline=None, max_examples=150)

D = Decimal
FRI = date(2026, 11, 20)  # settles Monday 23 Nov
MON = date(2026, 11, 23)  # settles Wednesday 25 Nov: Tuesday 24 Nov 2026 is an NSE holiday
WED = date(2026, 11, 25)
BUY, SELL = Side.BUY, Side.SELL
CNC, MIS = Product.CNC, Product.MIS
_clock = itertools.count()


def fill(side: Side, quantity: int, price: str | Decimal, *, symbol: str = "INFY",
         product: Product = MIS, day: date = FRI, account: int = 1,
         charges: Charges | None = None, at: datetime | None = None) -> Trade:
    """Return a fill; each executes a microsecond after the previous one unless ``at`` is given."""
    ident = next(_clock)
    executed = at or datetime.combine(day, time(9, 15), IST) + timedelta(microseconds=ident)
    return Trade(account_id=account, symbol=symbol, side=side, product=product,
                 quantity=quantity, price=D(price), executed_at=executed, trade_date=day,
                 broker_trade_id=f"T{ident}", broker_order_id=f"O{ident}",
                 charges=charges or Charges())


def real_charges(side: Side, product: Product, quantity: int, price: Decimal,
                 day: date) -> Charges:
    """Return the paper desk's charges of a leg (engines.costs) as trade charges."""
    segment = Segment.EQUITY_DELIVERY if product is CNC else Segment.EQUITY_INTRADAY
    legs = leg_charges(segment, side.value.lower(), price, quantity, day)
    return Charges(*(getattr(legs, name) for name in CHARGE_FIELDS))


def position(book: Book, symbol: str = "INFY", product: Product = MIS,
             account: int = 1) -> tuple[int, Decimal, Decimal, int, int]:
    """Return (quantity, average, realized, bought, sold) of one position row."""
    [row] = [p for p in book.positions
             if (p.symbol, p.product, p.account_id) == (symbol, product, account)]
    return row.quantity, row.average_price, row.realized_pnl, row.buy_quantity, row.sell_quantity


# --- FIFO tables ------------------------------------------------------------------------------

FIFO_TABLE = [
    pytest.param([(BUY, 10, "100"), (BUY, 10, "110"), (SELL, 15, "120")],
                 (5, D("110"), D("250"), 20, 15), id="partial-close-across-two-lots"),
    pytest.param([(BUY, 10, "100"), (SELL, 15, "90")],
                 (-5, D("90"), D("-100"), 10, 15), id="flip-long-to-short"),
    pytest.param([(SELL, 10, "100"), (BUY, 25, "95")],
                 (15, D("95"), D("50"), 25, 10), id="flip-short-to-long"),
    pytest.param([(SELL, 10, "100"), (SELL, 10, "90"), (BUY, 15, "80")],
                 (-5, D("90"), D("250"), 15, 20), id="short-covered-across-two-lots"),
    pytest.param([(BUY, 10, "100"), (SELL, 10, "101.05")],
                 (0, D("0"), D("10.50"), 10, 10), id="closed-flat"),
    pytest.param([(BUY, 3, "100"), (BUY, 3, "101"), (BUY, 3, "102")],
                 (9, D("101"), D("0"), 9, 0), id="three-lots-average"),
]


@pytest.mark.parametrize(("legs", "expected"), FIFO_TABLE)
def test_fifo_gives_the_open_quantity_average_and_realized_pnl_of_the_table(
    legs: list[tuple[Side, int, str]], expected: tuple[int, Decimal, Decimal, int, int]
) -> None:
    book = build_book([fill(side, qty, price) for side, qty, price in legs], {}, FRI)
    assert position(book) == expected
    assert book.realized_pnl == book.realized_today == expected[2]


def test_every_closed_lot_realizes_its_own_sell_minus_buy() -> None:
    ledger = replay([fill(BUY, 10, "100"), fill(BUY, 10, "110"), fill(SELL, 25, "120"),
                     fill(BUY, 5, "115")])
    assert [(c.quantity, c.buy_price, c.sell_price, c.realized) for c in ledger.closes] == [
        (10, D("100"), D("120"), D("200")),
        (10, D("110"), D("120"), D("100")),
        (5, D("115"), D("120"), D("25")),
    ]
    assert ledger.lots == {}


def test_trades_are_matched_in_execution_order_and_ties_keep_input_order() -> None:
    same = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
    early, late = fill(BUY, 10, "100", at=same), fill(BUY, 10, "120", at=same)
    sell = fill(SELL, 10, "130", at=same + timedelta(minutes=1))
    assert build_book([sell, early, late], {}, FRI).realized_pnl == D("300")
    assert build_book([sell, late, early], {}, FRI).realized_pnl == D("100")


# --- settlement and holdings ------------------------------------------------------------------


@pytest.mark.parametrize(("traded", "settles"), [
    (FRI, MON),  # over the weekend
    (MON, WED),  # over the Guru Nanak Jayanti holiday, Tuesday 24 Nov 2026
    (date(2026, 11, 21), MON),  # a Saturday's (special session) trades settle Monday
])
def test_settlement_is_the_next_nse_trading_day(traded: date, settles: date) -> None:
    assert next_settlement_day(traded) == settles


@pytest.mark.parametrize(("traded", "today", "held"), [
    (FRI, FRI, False), (FRI, MON, True),
    (MON, MON, False), (MON, date(2026, 11, 24), False), (MON, WED, True),
])
def test_delivery_buys_become_holdings_on_their_settlement_day(
    traded: date, today: date, held: bool
) -> None:
    book = build_book([fill(BUY, 10, "100", product=CNC, day=traded)], {"INFY": D("105")}, today)
    if held:
        [holding] = book.holdings
        assert (holding.quantity, holding.average_price, holding.unrealized_pnl) == (
            10, D("100"), D("50"))
        assert holding.value == D("1050")
        assert book.positions == ()  # nothing open outside holdings, no trades today
    else:
        assert book.holdings == ()
        assert book.positions[0].quantity == 10
    assert book.unrealized_pnl == D("50")


def test_a_sell_from_settled_holdings_is_realized_on_todays_cnc_position_row() -> None:
    trades = [fill(BUY, 10, "100", product=CNC, day=FRI),
              fill(BUY, 5, "104", product=CNC, day=MON),
              fill(SELL, 12, "110", product=CNC, day=WED)]
    book = build_book(trades, {"INFY": D("111")}, WED)
    assert position(book, product=CNC) == (0, D("0"), D("100") + D("12"), 0, 12)
    [holding] = book.holdings
    assert (holding.quantity, holding.average_price) == (3, D("104"))
    assert book.realized_today == book.realized_pnl == D("112")


def test_a_delivery_sell_beyond_the_holdings_opens_a_short_position() -> None:
    trades = [fill(BUY, 10, "100", product=CNC, day=FRI),
              fill(SELL, 12, "110", product=CNC, day=MON)]
    book = build_book(trades, {}, MON)
    assert book.holdings == ()
    assert position(book, product=CNC) == (-2, D("110"), D("100"), 0, 12)


def test_intraday_and_delivery_lots_of_one_symbol_are_kept_apart() -> None:
    trades = [fill(BUY, 10, "100", product=CNC), fill(BUY, 5, "102"), fill(SELL, 5, "104"),
              fill(BUY, 20, "50", symbol="TCS")]
    book = build_book(trades, {"INFY": D("101"), "TCS": D("49")}, FRI)
    assert position(book, product=MIS) == (0, D("0"), D("10"), 5, 5)
    assert position(book, product=CNC) == (10, D("100"), D("0"), 10, 0)
    assert book.mis_open_cost == D("1000")
    assert book.mis_margin(5) == D("200")
    assert book.unrealized_pnl == D("10") - D("20")


def test_yesterdays_unsettled_lots_are_positions_without_todays_quantities() -> None:
    book = build_book([fill(BUY, 10, "100", product=CNC, day=MON)], {}, date(2026, 11, 24))
    [row] = book.positions
    assert (row.quantity, row.buy_quantity, row.realized_pnl) == (10, 0, D("0"))


def test_without_an_ltp_lots_count_at_cost_and_the_symbol_is_listed_unpriced() -> None:
    book = build_book([fill(BUY, 10, "100"), fill(SELL, 4, "90", symbol="TCS")],
                      {"TCS": D("80")}, FRI)
    infy = book.positions[0]
    assert (infy.ltp, infy.unrealized_pnl) == (None, D("0"))
    assert book.market_value == D("1000") - D("320")
    assert book.unrealized_pnl == D("40")
    assert book.unpriced == ("INFY",)


def test_money_totals_split_all_time_from_today() -> None:
    trades = [fill(BUY, 10, "100", product=CNC, day=FRI, charges=Charges(stt=D("1"))),
              fill(SELL, 10, "110", product=CNC, day=MON, charges=Charges(dp_charge=D("13.5")))]
    book = build_book(trades, {}, MON)
    assert (book.buy_value, book.sell_value) == (D("1000"), D("1100"))
    assert (book.charges, book.charges_today) == (D("14.5"), D("13.5"))
    assert book.cash_flow == D("85.5")
    assert book.day_pnl == D("100") - D("13.5")


# --- funds ----------------------------------------------------------------------------------------


def test_funds_charge_delivery_in_full_and_intraday_by_margin() -> None:
    trades = [fill(BUY, 10, "100", product=CNC, charges=Charges(stt=D("1"))),
              fill(BUY, 10, "200", charges=Charges(brokerage=D("0.6"))),
              fill(SELL, 10, "50", symbol="TCS")]
    book = build_book(trades, {}, FRI)
    funds = compute_funds(1, D("100000"), book, D("500"), 5)
    assert funds.cash == D("100000") - D("1000") - D("1.6")
    assert funds.used_margin == (D("2000") + D("500")) / 5 + D("500")
    assert funds.available == funds.cash - funds.used_margin
    assert (funds.realized_pnl, funds.charges_total, funds.charges_today) == (
        D("0"), D("1.6"), D("1.6"))
    assert compute_funds(1, D("0"), book, D("0"), 5, D("9")).charges_today == D("9")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"account_id": 2}, "Funds of account 2 cannot come from a book holding accounts [1]"),
    ({"mis_leverage": 0}, "MIS leverage must be a whole number of at least 1; got 0"),
    ({"blocked_for_orders": D("-1")}, "Blocked margin cannot be negative; got -₹1"),
    ({"deposits": 1000.0}, "Deposits must be a Decimal amount in rupees; got 1000.0"),
])
def test_funds_refuse_bad_input_naming_the_value(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"account_id": 1, "deposits": D("1000"),
                               "book": build_book([fill(BUY, 1, "10")], {}, FRI),
                               "blocked_for_orders": D("0"), "mis_leverage": 5}
    with pytest.raises(ValidationError, match=re.escape(message)):
        compute_funds(**{**args, **kwargs})  # type: ignore[arg-type]


# --- bad input --------------------------------------------------------------------------------


def test_a_trade_with_a_naive_time_is_refused_by_its_id() -> None:
    naive = replace(fill(BUY, 1, "10"), executed_at=datetime(2026, 11, 20, 10, 0),  # noqa: DTZ001
                    broker_trade_id="X1")
    with pytest.raises(ValidationError, match=r"Trade X1 \(BUY 1 INFY\) has a naive"):
        build_book([fill(BUY, 1, "10"), naive], {}, FRI)


@pytest.mark.parametrize("bad", [datetime(2026, 11, 20, tzinfo=IST), "2026-11-20"])
def test_today_must_be_a_calendar_date(bad: object) -> None:
    with pytest.raises(ValidationError, match="Today must be a calendar date"):
        build_book([], {}, bad)  # type: ignore[arg-type]


def test_a_float_ltp_is_refused() -> None:
    message = "LTP of INFY must be a Decimal; got 101.5"
    with pytest.raises(ValidationError, match=re.escape(message)):
        build_book([fill(BUY, 1, "100")], {"INFY": 101.5}, FRI)  # type: ignore[dict-item]


# --- the family -------------------------------------------------------------------------------


def test_the_family_has_a_row_per_account_and_totals_that_add_up() -> None:
    ltp = {"INFY": D("120"), "TCS": D("50")}
    mine = [fill(BUY, 10, "100", account=1), fill(SELL, 5, "110", account=1, symbol="TCS")]
    theirs = [fill(BUY, 30, "110", account=2), fill(BUY, 20, "90", account=2, symbol="TCS"),
              fill(SELL, 10, "40", account=2, symbol="TCS")]
    books = {1: build_book(mine, ltp, FRI), 2: build_book(theirs, ltp, FRI)}
    family = consolidate(books, {1: D("1000"), 2: D("5000")})
    assert [row.account_id for row in family.accounts] == [1, 2]
    assert family.total.account_id is None and family.total.deposits == D("6000")
    for name in ("realized_pnl", "unrealized_pnl", "charges", "market_value", "day_pnl"):
        assert getattr(family.total, name) == sum(getattr(r, name) for r in family.accounts)
    whole = build_book(mine + theirs, ltp, FRI)
    assert family.book == combine_books(books.values()) == whole
    infy, tcs = family.positions
    assert (infy.symbol, infy.accounts, infy.quantity, infy.average_price) == (
        "INFY", (1, 2), 40, D("107.5"))
    # long 10 @ 90 (account 2) against short 5 @ 110 (account 1): break-even 70
    assert (tcs.quantity, tcs.average_price, tcs.unrealized_pnl) == (5, D("70"), D("-100"))
    assert tcs.unrealized_pnl == (tcs.ltp - tcs.average_price) * tcs.quantity  # type: ignore
    assert family.total.equity == D("6000") + whole.cash_flow + whole.market_value


def test_family_deposits_are_unknown_unless_known_for_every_account() -> None:
    books = {1: build_book([], {}, FRI), 2: build_book([], {}, FRI)}
    assert consolidate(books, {1: D("10")}).total.deposits is None
    assert consolidate(books).accounts[0].equity is None


def test_a_book_filed_under_another_account_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"book given for account 2 holds accounts \[1\]"):
        consolidate({2: build_book([fill(BUY, 1, "10")], {}, FRI)})


def test_books_of_different_days_do_not_add_up() -> None:
    with pytest.raises(ValidationError, match="one trading day; got 2026-11-20, 2026-11-23"):
        consolidate({1: build_book([], {}, FRI), 2: build_book([], {}, MON)})
    with pytest.raises(ValidationError, match="got no books"):
        consolidate({})


# --- properties -------------------------------------------------------------------------------

SYMBOLS = ("INFY", "TCS", "SBIN")
TRADING_DAYS = (date(2026, 11, 19), FRI, MON, WED, date(2026, 11, 26))
ticks = st.integers(min_value=1, max_value=200_000).map(lambda n: n * D("0.05"))
any_charges = st.builds(Charges, *(st.decimals(min_value=0, max_value=500, places=4)
                                   for _ in CHARGE_FIELDS))


@st.composite
def fills(draw: st.DrawFn, accounts: Sequence[int] = (1,)) -> list[Trade]:
    """Draw 0-40 fills of 2-3 symbols, CNC or MIS, on a handful of November 2026 days."""
    symbols = SYMBOLS[:draw(st.integers(min_value=2, max_value=3))]
    trades = []
    for _ in range(draw(st.integers(min_value=0, max_value=40))):
        side, product = draw(st.sampled_from(Side)), draw(st.sampled_from((CNC, MIS)))
        quantity, price = draw(st.integers(min_value=1, max_value=500)), draw(ticks)
        day = draw(st.sampled_from(TRADING_DAYS))
        charges = draw(st.one_of(
            st.just(real_charges(side, product, quantity, price, day)), any_charges))
        trades.append(fill(side, quantity, price, symbol=draw(st.sampled_from(symbols)),
                           product=product, day=day, account=draw(st.sampled_from(accounts)),
                           charges=charges))
    return sorted(trades, key=lambda t: t.trade_date)  # executions in date order


prices = st.dictionaries(st.sampled_from(SYMBOLS), ticks)
todays = st.sampled_from((WED, date(2026, 11, 26), date(2026, 11, 27)))


def open_cost(trades: Sequence[Trade]) -> dict[tuple[str, Product], Decimal]:
    """Return the signed FIFO cost of what is open per (symbol, product), computed another way.

    Under FIFO the open shares are always the newest |net| shares traded in the net's
    direction, so no lot matching is needed.
    """
    by_key: dict[tuple[str, Product], list[Trade]] = defaultdict(list)
    for trade in trades:
        by_key[(trade.symbol, trade.product)].append(trade)
    costs = {}
    for key, group in by_key.items():
        net = sum(t.side.sign * t.quantity for t in group)
        left, cost = abs(net), D(0)
        for trade in reversed([t for t in group if t.side.sign * net > 0]):
            take = min(left, trade.quantity)
            cost, left = cost + trade.price * take, left - take
        costs[key] = cost if net >= 0 else -cost
    return costs


@PROPERTY
@given(fills(), prices, todays, st.decimals(min_value=0, max_value=10**8, places=2))
def test_cash_plus_what_is_open_minus_capital_equals_realized_plus_unrealized_minus_charges(
    trades: list[Trade], ltp: dict[str, Decimal], today: date, deposits: Decimal
) -> None:
    book = build_book(trades, ltp, today)
    assert deposits + book.cash_flow + book.market_value - deposits == (
        book.realized_pnl + book.unrealized_pnl - book.charges)


@PROPERTY
@given(fills(), prices, todays, st.decimals(min_value=0, max_value=10**8, places=2),
       st.decimals(min_value=0, max_value=10**6, places=2), st.integers(1, 10))
def test_funds_cash_is_capital_plus_realized_minus_charges_minus_open_delivery_cost(
    trades: list[Trade], ltp: dict[str, Decimal], today: date, deposits: Decimal,
    blocked: Decimal, leverage: int
) -> None:
    book = build_book(trades, ltp, today)
    funds = compute_funds(1, deposits, book, blocked, leverage)
    costs = open_cost(trades)
    delivery = sum((c for (_, product), c in costs.items() if product is CNC), D(0))
    intraday = sum((abs(c) for (_, product), c in costs.items() if product is MIS), D(0))
    assert funds.cash == deposits + book.realized_pnl - book.charges - delivery
    assert funds.used_margin == intraday / leverage + blocked
    assert funds.available == funds.cash - funds.used_margin


@PROPERTY
@given(fills(), prices, todays)
def test_open_quantities_of_positions_and_holdings_are_the_net_of_the_fills(
    trades: list[Trade], ltp: dict[str, Decimal], today: date
) -> None:
    book = build_book(trades, ltp, today)
    net: dict[tuple[str, Product], int] = defaultdict(int)
    for trade in trades:
        net[(trade.symbol, trade.product)] += trade.side.sign * trade.quantity
    rows: dict[tuple[str, Product], int] = defaultdict(int)
    for p in book.positions:
        rows[(p.symbol, p.product)] += p.quantity
    for h in book.holdings:
        assert h.quantity > 0 and h.average_price > 0
        rows[(h.symbol, CNC)] += h.quantity
    assert {k: v for k, v in rows.items() if v} == {k: v for k, v in net.items() if v}


@PROPERTY
@given(fills(accounts=(1, 2, 3)), prices, todays)
def test_one_book_of_the_family_equals_the_sum_of_the_account_books(
    trades: list[Trade], ltp: dict[str, Decimal], today: date
) -> None:
    books = {a: build_book([t for t in trades if t.account_id == a], ltp, today)
             for a in {t.account_id for t in trades} or {1}}
    assert consolidate(books).book == build_book(trades, ltp, today)
