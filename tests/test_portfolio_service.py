"""The portfolio service over a real database (SQLite and PostgreSQL): which accounts "whole
family" holds, trade-book ranges, paper withdrawals, where a price comes from."""

from __future__ import annotations

from datetime import date

import pytest

from core.domain import Actor
from core.errors import ValidationError
from core.services import Services

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


def close_intraday(services: Services, rahul: Actor) -> int:
    """Close Rahul · Intraday (the demo gives it ₹10,00,000 and nothing open); return its id."""
    intraday = next(a for a in services.household.list_accounts(rahul)
                    if a.label == "Rahul · Intraday")
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
