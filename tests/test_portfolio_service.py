"""The portfolio service over a real database (SQLite and PostgreSQL): which accounts "whole
family" holds, trade-book ranges, paper withdrawals, where a price comes from."""

from __future__ import annotations

from datetime import date

import pytest

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
