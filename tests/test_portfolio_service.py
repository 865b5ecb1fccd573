"""The portfolio service over a real database (SQLite and PostgreSQL): which accounts "whole
family" holds, trade-book ranges, paper withdrawals, where a price comes from."""

from __future__ import annotations

import io
import json
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

import pandas as pd
import pytest
from sqlalchemy import delete, select

from core.clock import IST, now_ist, to_ist
from core.domain import Account, Actor
from core.errors import InsufficientFunds, PermissionDenied, ValidationError
from core.money import inr
from core.services import Services
from core.services.portfolio_views import PRICE_AS_OF
from core.trading import OrderType, Product
from db.models import AuditRow, BarRow, InstrumentRow, QuoteRow
from tests.support.market import open_market, tick
from tests.test_orders import _buy  # a 10 INFY CNC LIMIT buy at ₹1,500.00

REVERSED = (date(2026, 11, 20), date(2026, 11, 17))
REVERSED_TEXT = ("Start date 2026-11-20 is after end date 2026-11-17; pick a start on or before "
                 "the end")


@pytest.mark.usefixtures("backend")
def test_the_orders_trade_book_refuses_a_reversed_range_as_the_statements_do(
    services: Services, login,
) -> None:
    rahul = login("rahul")
    with pytest.raises(ValidationError) as statement:
        services.portfolio.trade_book_csv(rahul, None, *REVERSED)
    with pytest.raises(ValidationError) as book:
        services.orders.trade_book_frame(rahul, None, *REVERSED)
    assert str(book.value) == str(statement.value) == REVERSED_TEXT
    assert services.orders.trade_book_frame(rahul, None, REVERSED[1], REVERSED[0]).empty


def account_of(services: Services, actor: Actor, label: str) -> Account:
    """Return the demo account called ``label`` as ``actor`` sees it (open ones)."""
    return next(a for a in services.household.list_accounts(actor) if a.label == label)


def trading(services: Services, actor: Actor, label: str = "Priya · Trading") -> int:
    """Return the id of the demo account called ``label``."""
    return account_of(services, actor, label).id


def close_intraday(services: Services, rahul: Actor) -> int:
    """Close Rahul · Intraday (the demo gives it ₹10,00,000 and nothing open); return its id."""
    intraday = account_of(services, rahul, "Rahul · Intraday")
    services.household.update_account(rahul, intraday.id, intraday.label, intraday.group, False)
    return intraday.id


@pytest.mark.usefixtures("backend")
def test_a_closed_account_stays_in_every_whole_family_table_marked_closed(
    services: Services, login,
) -> None:
    rahul = login("rahul")
    closed = close_intraday(services, rahul)
    pf = services.portfolio
    assert closed in {a.id for a in pf.accounts(rahul)}
    assert pf.labels(rahul)[closed] == "Rahul · Intraday (closed)"
    funds = pf.funds_frame(rahul).set_index("Account")
    family = pf.family_frame(rahul).set_index("Account")
    assert "Rahul · Intraday (closed)" in funds.index
    assert "Rahul · Intraday (closed)" in family.index
    assert list(funds.index[:-1]) == list(family.index[:-1])  # the same accounts, same order
    whole = funds.loc["Whole family", "Deposits [₹]"]
    assert whole == family.loc["Whole family", "Deposits [₹]"] == "40,00,000.00"


@pytest.mark.usefixtures("backend")
def test_a_closed_account_s_own_statements_can_still_be_had(services: Services, login) -> None:
    rahul = login("rahul")
    closed = close_intraday(services, rahul)
    day = date(2026, 11, 20)
    for build in (services.portfolio.trade_book_csv, services.portfolio.pnl_statement_csv,
                  services.portfolio.charges_statement_csv):
        assert build(rahul, closed, day, day).decode().splitlines()[0]


@pytest.mark.usefixtures("backend")
def test_a_manager_withdraws_paper_funds_and_the_audit_says_so(
    services: Services, login,
) -> None:
    priya = login("priya")
    account = trading(services, priya)
    funds = services.portfolio.withdraw_funds(priya, account, Decimal("25000.50"), " Rent ")
    assert funds.deposits == Decimal("974999.50")
    assert funds.cash == funds.available == Decimal("974999.50")
    with services.db.transaction() as session:
        row = session.scalars(select(AuditRow).where(AuditRow.action == "funds.withdraw")).one()
        assert (row.actor_username, row.resource, row.outcome) == (
            "priya", f"account:{account}", "ok")
        assert json.loads(row.details) == {"amount": "25000.50", "note": "Rent"}


@pytest.mark.usefixtures("backend")
def test_a_withdrawal_above_the_withdrawable_cash_names_it_and_why(
    services: Services, login,
) -> None:
    open_market(services.db, {"INFY": "1500.00"})
    priya = login("priya")
    account = trading(services, priya)
    services.orders.place(priya, _buy(account, price=Decimal("1400.00")))  # rests: blocks
    funds = services.portfolio.funds(priya, account)
    assert funds.used_margin > 0 and funds.available == funds.cash - funds.used_margin
    # Blocked funds carry 4 decimals: withdrawable is the available funds down to the paisa,
    # so the figure the message gives can itself be withdrawn.
    withdrawable = funds.available.quantize(Decimal("0.01"), rounding=ROUND_FLOOR)
    assert withdrawable != funds.available
    for too_much in (funds.cash, withdrawable + Decimal("0.01")):
        with pytest.raises(InsufficientFunds) as refused:
            services.portfolio.withdraw_funds(priya, account, too_much, "all of it")
        assert str(refused.value) == (
            f"Cannot withdraw {inr(too_much)} from Priya · Trading: withdrawable now is "
            f"{inr(withdrawable)}, the cash {inr(funds.cash)} less the used margin "
            f"{inr(funds.used_margin)} that open orders and open intraday positions block")
    assert services.portfolio.funds(priya, account).deposits == Decimal("1000000")
    left = services.portfolio.withdraw_funds(priya, account, withdrawable, "the rest")
    assert Decimal(0) <= left.available < Decimal("0.01")
    assert left.used_margin == funds.used_margin


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize(("amount", "message"), [
    (Decimal("0"), "Amount must be above ₹0; got ₹0"),
    (Decimal("-5"), "Amount must be above ₹0; got -₹5"),
    (Decimal("12345.678"), "Withdrawal must be whole paise (at most 2 decimals); got ₹12345.678"),
    (Decimal("150000000"), "Amount ₹15,00,00,000.00 is above the ₹10,00,00,000.00 a single "
                           "transfer may move"),
])
def test_a_bad_withdrawal_amount_is_refused_like_a_deposit(
    services: Services, login, amount: Decimal, message: str,
) -> None:
    priya = login("priya")
    with pytest.raises(ValidationError) as refused:
        services.portfolio.withdraw_funds(priya, trading(services, priya), amount, "")
    assert str(refused.value) == message


@pytest.mark.usefixtures("backend")
def test_who_may_not_add_funds_may_not_withdraw_them(services: Services, login) -> None:
    aarav = login("aarav")  # views Rahul · Long-term, manages nothing
    account = trading(services, aarav, "Rahul · Long-term")
    with pytest.raises(PermissionDenied):
        services.portfolio.add_funds(aarav, account, Decimal("100"), "")
    with pytest.raises(PermissionDenied):
        services.portfolio.withdraw_funds(aarav, account, Decimal("100"), "")
    assert services.portfolio.funds(aarav, account).deposits == Decimal("1000000")


@pytest.mark.usefixtures("backend")
def test_the_charges_statement_s_parts_add_up_to_each_row_s_total(
    services: Services, login,
) -> None:
    open_market(services.db, {"INFY": "1500.00"})
    priya = login("priya")
    account = trading(services, priya)
    services.orders.place(priya, _buy(account, quantity=5))  # 5 INFY CNC at ₹1,500.00
    tick(services.db, "INFY", "1500.00")
    services.orders.step()
    day = services.orders.market_session(priya, account).trading_day
    csv = services.portfolio.charges_statement_csv(priya, account, day, day).decode()
    frame = pd.read_csv(io.StringIO(csv), dtype=str)
    parts = [c for c in frame.columns if c not in ("Date", "Trades", "Turnover [₹]",
                                                      "Total [₹]")]
    # STT 7.50, exchange 0.22275, IPFT 0.0075, SEBI 0.0075, stamp 1.125, GST 0.041445: each
    # rounded alone they make ₹8.91, their exact sum is ₹8.904195, charged as ₹8.90.
    for _, row in frame.iterrows():
        assert row["Total [₹]"] == "8.90"
        assert sum(Decimal(row[c]) for c in parts) == Decimal("8.90"), dict(row)
        assert row["Stamp duty [₹]"] == "1.12" and row["IPFT [₹]"] == row["SEBI fee [₹]"] == "0.01"
    assert services.portfolio.funds(priya, account).charges_total.quantize(
        Decimal("0.01")) == Decimal("8.90")


@pytest.mark.usefixtures("backend")
def test_a_replay_quote_is_dated_as_the_replay_s_time_not_as_an_old_quote(
    services: Services, login,
) -> None:
    prices = {"INFY": "1340.95", "TCS": "3000.00"}
    open_market(services.db, prices)
    priya = login("priya")
    account = trading(services, priya)
    for symbol, price in prices.items():
        services.orders.place(priya, _buy(account, symbol=symbol, quantity=1, price=None,
                                          order_type=OrderType.MARKET, product=Product.MIS))
        tick(services.db, symbol, price)
    services.orders.step()
    simulated = datetime(2021, 3, 19, 13, 31, tzinfo=IST)  # the demo replays 2021 sessions
    now = now_ist()
    with services.db.transaction() as session:
        ids = dict(session.execute(select(InstrumentRow.symbol, InstrumentRow.id)).all())
        for symbol, written in (("INFY", now), ("TCS", now - timedelta(days=3))):
            quote = session.get(QuoteRow, ids[symbol])
            quote.source, quote.quote_time, quote.updated_at = (
                "replay:sample 5-minute", simulated, written)
    frame = services.portfolio.positions_frame(priya, account).set_index("Symbol")
    assert dict(frame[PRICE_AS_OF]) == {
        "INFY": "replay 2021-03-19 13:31",  # written today by the running replay
        "TCS": "replay 2021-03-19 13:31 (old quote)",  # the replay wrote it days ago
    }


@pytest.mark.usefixtures("backend")
def test_each_price_on_the_portfolio_says_where_it_comes_from_and_when(
    services: Services, login,
) -> None:
    prices = {"INFY": "1500.00", "TCS": "3000.00", "SBIN": "800.00", "ITC": "400.00"}
    open_market(services.db, prices)
    priya = login("priya")
    account = trading(services, priya)
    for symbol in prices:
        services.orders.place(priya, _buy(account, symbol=symbol, quantity=1, price=None,
                                          order_type=OrderType.MARKET, product=Product.MIS))
    for symbol, price in prices.items():
        tick(services.db, symbol, price)
    services.orders.step()
    now = now_ist()
    with services.db.transaction() as session:
        ids = dict(session.execute(select(InstrumentRow.symbol, InstrumentRow.id)).all())
        session.get(QuoteRow, ids["INFY"]).quote_time = to_ist(now).replace(hour=0, minute=5)
        session.get(QuoteRow, ids["TCS"]).quote_time = now - timedelta(days=6)  # stale quote
        for symbol in ("SBIN", "ITC"):  # SBIN keeps only a daily close, ITC nothing at all
            session.delete(session.get(QuoteRow, ids[symbol]))
        session.execute(delete(BarRow).where(BarRow.instrument_id.in_([ids["SBIN"], ids["ITC"]])))
        closed_at = datetime(2026, 11, 16, tzinfo=IST)
        session.add(BarRow(instrument_id=ids["SBIN"], interval="1d", ts=closed_at, open=790,
                           high=805, low=785, close=Decimal("801.50"), volume=1000))
    frame = services.portfolio.positions_frame(priya, account).set_index("Symbol")
    stale = to_ist(now - timedelta(days=6))
    assert dict(frame[PRICE_AS_OF]) == {
        "INFY": "today 00:05",
        "TCS": f"{stale:%Y-%m-%d %H:%M} (old quote)",
        "SBIN": "2026-11-16 (daily close)",
        "ITC": "no price (counted at cost)",
    }
    assert frame.loc["SBIN", "LTP [₹]"] == "801.50"
    assert frame.loc["ITC", "LTP [₹]"] == frame.loc["ITC", "Unrealized [₹]"] == "—"
    assert services.portfolio.unpriced(priya, account) == ["ITC"]
