"""Statements: a worked example checked by hand, totals that match the book, bad ranges."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.clock import IST
from core.errors import ValidationError
from core.portfolio import build_book, consolidate
from core.statements import (
    CHARGES_COLUMNS,
    MAX_RANGE_DAYS,
    PNL_COLUMNS,
    TOTAL,
    charges_statement,
    check_range,
    family_frame,
    paise,
    period_bounds,
    pnl_statement,
    trade_book_frame,
)
from core.trading import CHARGE_FIELDS, Charges, Product, Side, Trade
from tests.test_portfolio import PROPERTY, fill, fills

D = Decimal
BUY, SELL = Side.BUY, Side.SELL
CNC, MIS = Product.CNC, Product.MIS
NOV = (date(2026, 11, 1), date(2026, 11, 30))


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """Return an IST moment of November 2026."""
    return datetime(2026, 11, day, hour, minute, tzinfo=IST)


# The worked example: a delivery round trip sold in two parts, and an intraday round trip.
EXAMPLE = [
    fill(BUY, 10, "1500", product=CNC, day=date(2026, 11, 20),
         at=datetime(2026, 11, 20, 3, 50, tzinfo=UTC),  # 09:20 IST
         charges=Charges(stt=D("15"), stamp_duty=D("2.25"), exchange_txn=D("0.4455"))),
    fill(BUY, 5, "4000", symbol="TCS", day=date(2026, 11, 20), at=at(20, 10),
         charges=Charges(brokerage=D("6"), exchange_txn=D("0.594"))),
    fill(SELL, 5, "4010.50", symbol="TCS", day=date(2026, 11, 20), at=at(20, 14),
         charges=Charges(brokerage=D("6.01575"), stt=D("5.013125"))),
    fill(SELL, 4, "1550", product=CNC, day=date(2026, 11, 23), at=at(23, 10),
         charges=Charges(stt=D("6.2"), dp_charge=D("13.5"), gst=D("2.43"))),
    fill(SELL, 6, "1490.05", product=CNC, day=date(2026, 11, 25), at=at(25, 11),
         charges=Charges(stt=D("8.9403"))),
]


def rows(frame: pd.DataFrame) -> list[list[object]]:
    """Return a frame's rows as plain lists."""
    return [list(row) for row in frame.itertuples(index=False)]


def test_the_trade_book_shows_ist_times_labels_and_money_to_the_paisa() -> None:
    frame = trade_book_frame(reversed(EXAMPLE), {1: "Asha"})
    assert list(frame["Time [IST]"]) == ["2026-11-20 09:20:00", "2026-11-20 10:00:00",
                                         "2026-11-20 14:00:00", "2026-11-23 10:00:00",
                                         "2026-11-25 11:00:00"]
    assert rows(frame)[0] == ["2026-11-20 09:20:00", "Asha", "INFY", "BUY", "CNC", 10,
                              D("1500.00"), D("15000.00"), D("17.70"), EXAMPLE[0].broker_trade_id]
    assert trade_book_frame(EXAMPLE)["Account"][0] == "Account 1"


def test_the_pnl_statement_of_a_range_matches_the_hand_worked_example() -> None:
    # INFY closes in range: 4 @ 1550 and 6 @ 1490.05 against the 10 @ 1500 bought before it.
    # Realized 4 × 50 − 6 × 9.95 = 140.30; charges 22.13 + 8.9403 = 31.0703.
    frame = pnl_statement(EXAMPLE, date(2026, 11, 23), date(2026, 11, 25))
    assert list(frame.columns) == list(PNL_COLUMNS)
    assert rows(frame) == [
        ["INFY", "CNC", 10, D("1500.00"), D("1514.03"), D("140.30"), D("31.07"), D("109.23")],
        [TOTAL, "", 10, None, None, D("140.30"), D("31.07"), D("109.23")],
    ]


def test_the_pnl_statement_of_the_month_adds_the_intraday_round_trip() -> None:
    frame = pnl_statement(EXAMPLE, *period_bounds("month", date(2026, 11, 20)))
    assert rows(frame) == [
        ["INFY", "CNC", 10, D("1500.00"), D("1514.03"), D("140.30"), D("48.77"), D("91.53")],
        ["TCS", "MIS", 5, D("4000.00"), D("4010.50"), D("52.50"), D("17.62"), D("34.88")],
        [TOTAL, "", 15, None, None, D("192.80"), D("66.39"), D("126.41")],
    ]


def test_a_day_with_only_an_opening_buy_shows_its_charges_as_a_loss() -> None:
    frame = pnl_statement(EXAMPLE, *period_bounds("day", date(2026, 11, 20)),
                          ltp={"INFY": D("1510")})
    assert rows(frame)[0] == ["INFY", "CNC", 0, None, None, D("0.00"), D("17.70"), D("-17.70"),
                              10, D("100.00")]
    assert rows(frame)[-1][-2:] == [10, D("100.00")]


def test_an_unpriced_open_row_has_no_unrealized_pnl_and_the_total_leaves_it_out() -> None:
    frame = pnl_statement(EXAMPLE, date(2026, 11, 20), date(2026, 11, 20), ltp={})
    assert rows(frame)[0][-2:] == [10, None]
    assert rows(frame)[-1][-1] == D("0.00")


def test_the_charges_statement_matches_the_hand_worked_contract_notes() -> None:
    frame = charges_statement(EXAMPLE, *NOV)
    assert list(frame.columns) == list(CHARGES_COLUMNS)
    zero = D("0.00")
    assert rows(frame) == [
        ["2026-11-20", 3, D("55052.50"), D("12.02"), D("20.01"), D("1.04"), zero, zero,
         D("2.25"), zero, zero, D("35.32")],
        ["2026-11-23", 1, D("6200.00"), zero, D("6.20"), zero, zero, zero, zero, D("2.43"),
         D("13.50"), D("22.13")],
        ["2026-11-25", 1, D("8940.30"), zero, D("8.94"), zero, zero, zero, zero, zero, zero,
         D("8.94")],
        [TOTAL, 5, D("70192.80"), D("12.02"), D("35.15"), D("1.04"), zero, zero, D("2.25"),
         D("2.43"), D("13.50"), D("66.39")],
    ]


def test_an_empty_range_still_has_a_zero_totals_row() -> None:
    assert rows(charges_statement(EXAMPLE, date(2026, 11, 26), date(2026, 11, 30)))[0][:3] == [
        TOTAL, 0, D("0.00")]
    assert rows(pnl_statement([], date(2026, 11, 26), date(2026, 11, 30)))[0][:3] == [
        TOTAL, "", 0]


def test_the_family_table_has_one_row_per_account_and_a_family_row() -> None:
    other = [fill(BUY, 1, "100", account=2, day=date(2026, 11, 25), at=at(25, 12))]
    family = consolidate({1: build_book(EXAMPLE, {}, date(2026, 11, 25)),
                          2: build_book(other, {"INFY": D("90")}, date(2026, 11, 25))},
                         {1: D("100000"), 2: D("5000")})
    frame = family_frame(family, {1: "Asha"})
    assert list(frame["Account"]) == ["Asha", "Account 2", "Family"]
    assert list(frame["Deposits [₹]"]) == [D("100000.00"), D("5000.00"), D("105000.00")]
    assert list(frame["Realized [₹]"]) == [D("192.80"), D("0.00"), D("192.80")]
    assert list(frame["Unrealized [₹]"]) == [D("0.00"), D("-10.00"), D("-10.00")]


# --- totals agree with the book ---------------------------------------------------------------


@PROPERTY
@given(fills(accounts=(1, 2)))
def test_pnl_statement_totals_over_all_time_equal_the_books_realized_and_charges(
    trades: list[Trade]
) -> None:
    # Each account's figure rounded once, the family's the sum of its accounts' (the rule of
    # core.money.accounts_total); realized P&L of tick prices is exact anyway.
    books = [build_book([t for t in trades if t.account_id == a], {}, date(2026, 11, 27))
             for a in (1, 2)]
    frame = pnl_statement(trades, date(2026, 11, 1), date(2026, 11, 30))
    total = frame.iloc[-1]
    assert total["Realized [₹]"] == sum(b.realized_pnl for b in books) == (
        build_book(trades, {}, date(2026, 11, 27)).realized_pnl)
    assert total["Charges [₹]"] == sum(paise(b.charges) for b in books)
    assert total["Net [₹]"] == sum(paise(b.realized_pnl - b.charges) for b in books)
    for column in ("Realized [₹]", "Charges [₹]", "Net [₹]"):  # the rows add up to it
        assert sum(frame[column].iloc[:-1], D(0)) == total[column]


@PROPERTY
@given(fills(), st.integers(min_value=0, max_value=12))
def test_realized_pnl_of_two_adjacent_ranges_adds_up_to_that_of_both(
    trades: list[Trade], split: int
) -> None:
    middle = date(2026, 11, 15) + timedelta(days=split)

    def realized(start: date, end: date) -> Decimal:
        return pnl_statement(trades, start, end).iloc[-1]["Realized [₹]"]

    assert realized(NOV[0], middle) + realized(middle + timedelta(days=1), NOV[1]) == (
        realized(*NOV))


@PROPERTY
@given(fills(accounts=(1, 2)))
def test_charges_statement_totals_equal_the_sum_of_the_trades_charges(
    trades: list[Trade]
) -> None:
    # Each account's total rounded once, the family's the sum of its accounts' (the rule of
    # core.money.accounts_total); each part within a paisa of its exact value per account.
    total = charges_statement(trades, *NOV).iloc[-1]
    own = [[t for t in trades if t.account_id == a] for a in (1, 2)]
    summed = [sum((t.charges for t in mine), Charges()) for mine in own]
    assert total["Total [₹]"] == sum(paise(charges.total) for charges in summed)
    for name, column in zip(CHARGE_FIELDS, CHARGES_COLUMNS[3:-1], strict=True):
        assert abs(total[column] - sum(getattr(c, name) for c in summed)) < D("0.02")
    for _, row in charges_statement(trades, *NOV).iterrows():  # every row adds up
        assert sum(row[column] for column in CHARGES_COLUMNS[3:-1]) == row["Total [₹]"]
    assert total["Trades"] == len(trades)
    assert total["Turnover [₹]"] == sum(paise(sum((t.value for t in mine), D(0)))
                                        for mine in own)


# --- a family and an account's parts add up as shown ------------------------------------------


def _fill_charged(account: int, total: str, minute: int) -> Trade:
    """Return a 2026-11-22 intraday buy of ``account`` whose charges are exactly ``total``."""
    return fill(BUY, 1, "100", account=account, day=date(2026, 11, 22), at=at(22, 10, minute),
                charges=Charges(brokerage=D(total)))


# Rahul · Long-term's day: five fills whose charges rounded one by one (81.06 + 18.51 + 58.35 +
# 22.40 + 3.24 = 183.56) overshoot the account's charges rounded once (183.549 -> 183.55).
OVERSHOOT = [_fill_charged(1, total, minute) for minute, total in enumerate(
    ("81.057", "18.507", "58.346", "22.398", "3.241"))]


def test_a_trade_books_charges_add_up_to_the_accounts_charges_as_the_statements_show_them(
) -> None:
    other = [_fill_charged(2, "1.005", 30), _fill_charged(2, "2.005", 31)]  # 3.01, not 3.02
    day = date(2026, 11, 22), date(2026, 11, 22)
    frame = trade_book_frame([*OVERSHOOT, *other], {1: "Rahul · Long-term", 2: "Kamla"})
    mine = frame[frame["Account"] == "Rahul · Long-term"]["Charges [₹]"]
    assert sum(paise(t.charges.total) for t in OVERSHOOT) == D("183.56")  # the old rows
    book = build_book(OVERSHOOT, {}, date(2026, 11, 22))
    assert sum(mine, D(0)) == paise(book.charges_today) == D("183.55")
    assert sum(mine, D(0)) == charges_statement(OVERSHOOT, *day).iloc[-1]["Total [₹]"]
    assert sum(mine, D(0)) == pnl_statement(OVERSHOOT, *day).iloc[-1]["Charges [₹]"]
    assert all(abs(shown - t.charges.total) < D("0.01")
               for shown, t in zip(mine, OVERSHOOT, strict=True))
    assert sum(frame[frame["Account"] == "Kamla"]["Charges [₹]"], D(0)) == D("3.01")
    family = charges_statement([*OVERSHOOT, *other], *day)  # the sum of the two accounts'
    assert list(family["Total [₹]"]) == [D("186.56"), D("186.56")]
    assert sum(frame["Charges [₹]"], D(0)) == D("186.56")
    assert pnl_statement([*OVERSHOOT, *other], *day).iloc[-1]["Charges [₹]"] == D("186.56")


def test_a_family_row_is_the_sum_of_its_account_rows_as_shown() -> None:
    # Three accounts each charged x.xx5: the exact total 3.015 rounds to 3.02, the rows to 3.03.
    trades = [_fill_charged(account, "1.005", account) for account in (1, 2, 3)]
    books = {a: build_book([t for t in trades if t.account_id == a], {"INFY": D("100")},
                           date(2026, 11, 22)) for a in (1, 2, 3)}
    frame = family_frame(consolidate(books, {1: D("1"), 2: D("2"), 3: D("3")}))
    assert list(frame["Charges [₹]"]) == [D("1.01"), D("1.01"), D("1.01"), D("3.03")]
    assert list(frame["Net P&L [₹]"]) == [D("-1.01"), D("-1.01"), D("-1.01"), D("-3.03")]
    assert list(frame["Day P&L [₹]"]) == [D("-1.01"), D("-1.01"), D("-1.01"), D("-3.03")]


@PROPERTY
@given(fills(accounts=(1, 2, 3)))
def test_every_money_column_of_a_statement_adds_up_to_its_total(trades: list[Trade]) -> None:
    book = trade_book_frame(trades)
    charges = charges_statement(trades, *NOV)
    assert sum(book["Charges [₹]"], D(0)) == charges.iloc[-1]["Total [₹]"]
    for account in (1, 2, 3):
        mine = [t for t in trades if t.account_id == account]
        shown = book[book["Account"] == f"Account {account}"]["Charges [₹]"]
        assert sum(shown, D(0)) == paise(sum((t.charges.total for t in mine), D(0)))
    pnl = pnl_statement(trades, *NOV, ltp={"INFY": D("1500.05")})
    for column in ("Realized [₹]", "Charges [₹]", "Net [₹]", "Unrealized [₹]"):
        rows = pnl[column].iloc[:-1]
        assert sum((v for v in rows if v is not None), D(0)) == pnl.iloc[-1][column]
    assert pnl.iloc[-1]["Charges [₹]"] == charges.iloc[-1]["Total [₹]"]


# --- periods and bad ranges -------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "anchor", "bounds"), [
    ("day", date(2026, 11, 24), (date(2026, 11, 24), date(2026, 11, 24))),
    ("month", date(2026, 11, 24), (date(2026, 11, 1), date(2026, 11, 30))),
    ("month", date(2028, 2, 10), (date(2028, 2, 1), date(2028, 2, 29))),
    ("month", date(2026, 12, 31), (date(2026, 12, 1), date(2026, 12, 31))),
    ("fy", date(2026, 3, 31), (date(2025, 4, 1), date(2026, 3, 31))),
    ("fy", date(2026, 4, 1), (date(2026, 4, 1), date(2027, 3, 31))),
])
def test_period_bounds_give_the_first_and_last_day_of_the_period(
    kind: str, anchor: date, bounds: tuple[date, date]
) -> None:
    assert period_bounds(kind, anchor) == bounds


def test_an_unknown_period_names_the_known_ones() -> None:
    with pytest.raises(ValidationError, match="Unknown statement period 'week'; choose one of "
                                              "day, month, fy"):
        period_bounds("week", date(2026, 11, 24))


BAD_RANGES = [
    pytest.param(date(2026, 11, 25), date(2026, 11, 20),
                 "Start date 2026-11-25 is after end date 2026-11-20; pick a start on or before "
                 "the end", id="reversed"),
    pytest.param(date(2016, 11, 21), date(2026, 11, 30),
                 f"A statement covers at most {MAX_RANGE_DAYS} days; 2016-11-21 to 2026-11-30 "
                 "is 3662 days", id="too-long"),
    pytest.param(datetime(2026, 11, 20, tzinfo=IST), date(2026, 11, 30),
                 "Start date must be a calendar date", id="datetime"),
    pytest.param(date(2026, 11, 20), "2026-11-30", "End date must be a calendar date",
                 id="string"),
]


@pytest.mark.parametrize(("start", "end", "message"), BAD_RANGES)
@pytest.mark.parametrize("statement", [pnl_statement, charges_statement])
def test_bad_date_ranges_are_refused_with_both_dates(
    statement: object, start: date, end: date, message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        statement(EXAMPLE, start, end)  # type: ignore[operator]


def test_the_longest_range_allowed_is_max_range_days_inclusive() -> None:
    end = date(2026, 11, 30)
    check_range(end - timedelta(days=MAX_RANGE_DAYS - 1), end)
    with pytest.raises(ValidationError, match="is 3661 days"):
        check_range(end - timedelta(days=MAX_RANGE_DAYS), end)
