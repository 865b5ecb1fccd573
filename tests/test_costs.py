"""The charges engine: MARKET_FACTS §2.2 worked examples, per-leg rules, properties, bad input."""

from __future__ import annotations

import re
from dataclasses import fields, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ValidationError
from engines.costs import (
    BROKERAGE_PROFILES,
    RATE_SETS,
    ChargeBreakdown,
    Segment,
    Side,
    brokerage_profile,
    leg_charges,
    rates_for,
    round_trip,
)

# Nothing written to the tree (no .hypothesis/ example database); no flaky timing deadlines.
settings.register_profile("costs", database=None, deadline=None, max_examples=200)
settings.load_profile("costs")

D = Decimal
ZERODHA = BROKERAGE_PROFILES["zerodha"]
BEFORE_2026 = date(2026, 3, 31)  # last day of the Oct-2024 STT
FROM_2026 = date(2026, 4, 1)  # first day of the Finance Act 2026 STT
DELIVERY, INTRADAY = Segment.EQUITY_DELIVERY, Segment.EQUITY_INTRADAY
FUTURES, OPTIONS = Segment.EQUITY_FUTURES, Segment.EQUITY_OPTIONS
CHARGES = ("brokerage", "stt", "exchange_txn", "ipft", "sebi_fee", "stamp_duty", "gst",
           "dp_charge")
PROPORTIONAL = ("stt", "exchange_txn", "ipft", "sebi_fee", "stamp_duty")


def paise(amount: Decimal) -> Decimal:
    """Return an unrounded amount quantised to the paisa (half up)."""
    return amount.quantize(D("0.01"), rounding=ROUND_HALF_UP)


# --- MARKET_FACTS §2.2 worked examples ------------------------------------------------------
# DP and contract-note rounding are excluded there, so dp_applies=False and the unrounded total
# is quantised to the paisa. All six reproduce with GST on brokerage + NSE transaction charge +
# SEBI fee and IPFT *outside* the GST base (zerodha's gst_on_ipft=False). With IPFT inside the
# base they come out 0.04 / 0.04 / 0.67 / 0.68 / 0.01 / 0.02 rupees higher (82.97, 223.52,
# 1109.56, 545.94, 66.42, 62.30), so that reading is not the one the table used.

WORKED_EXAMPLES = [
    pytest.param(INTRADAY, "1000", "1010", 100, FROM_2026, D("82.93"), id="intraday"),
    pytest.param(DELIVERY, "1000", "1010", 100, FROM_2026, D("223.48"), id="delivery"),
    pytest.param(FUTURES, "25000", "25050", 75, FROM_2026, D("1108.89"), id="futures-2026"),
    pytest.param(FUTURES, "25000", "25050", 75, BEFORE_2026, D("545.26"), id="futures-2024"),
    pytest.param(OPTIONS, "100", "110", 75, FROM_2026, D("66.41"), id="options-2026"),
    pytest.param(OPTIONS, "100", "110", 75, BEFORE_2026, D("62.28"), id="options-2024"),
]


@pytest.mark.parametrize(("segment", "buy", "sell", "qty", "day", "expected"), WORKED_EXAMPLES)
def test_worked_examples_reproduce_to_the_paisa(
    segment: Segment, buy: str, sell: str, qty: int, day: date, expected: Decimal
) -> None:
    charges = round_trip(segment, buy, sell, qty, day, ZERODHA, dp_applies=False)
    assert paise(charges.total) == expected


def test_intraday_worked_example_components_match_the_formula_table() -> None:
    buy = leg_charges(INTRADAY, Side.BUY, 1000, 100, FROM_2026, ZERODHA)
    sell = leg_charges(INTRADAY, Side.SELL, 1010, 100, FROM_2026, ZERODHA)
    # T = 100000 and 101000; 0.03% of each is 30.00 / 30.30, so the ₹20 cap applies.
    assert (buy.brokerage, sell.brokerage) == (D(20), D(20))
    assert (buy.stt, sell.stt) == (D(0), D("25.25"))
    assert (buy.stamp_duty, sell.stamp_duty) == (D(3), D(0))
    assert buy.exchange_txn == D("2.97")
    assert buy.ipft == buy.sebi_fee == D("0.1")
    assert buy.gst == D("0.18") * (D(20) + D("2.97") + D("0.1"))


@pytest.mark.parametrize(("segment", "buy", "sell", "qty", "day", "expected"), WORKED_EXAMPLES)
def test_gst_on_ipft_adds_exactly_eighteen_percent_of_the_ipft(
    segment: Segment, buy: str, sell: str, qty: int, day: date, expected: Decimal
) -> None:
    without = round_trip(segment, buy, sell, qty, day, ZERODHA, dp_applies=False)
    with_ipft = round_trip(segment, buy, sell, qty, day, replace(ZERODHA, gst_on_ipft=True),
                           dp_applies=False)
    assert with_ipft.gst - without.gst == D("0.18") * without.ipft
    assert paise(with_ipft.total) > expected


# --- which legs pay what ----------------------------------------------------------------------

STT_LEGS = [
    (DELIVERY, Side.BUY, True), (DELIVERY, Side.SELL, True),
    (INTRADAY, Side.BUY, False), (INTRADAY, Side.SELL, True),
    (FUTURES, Side.BUY, False), (FUTURES, Side.SELL, True),
    (OPTIONS, Side.BUY, False), (OPTIONS, Side.SELL, True),
]


@pytest.mark.parametrize(("segment", "side", "pays"), STT_LEGS)
def test_stt_is_charged_only_on_the_legs_the_table_names(
    segment: Segment, side: Side, pays: bool
) -> None:
    for day in (BEFORE_2026, FROM_2026):
        assert (leg_charges(segment, side, 100, 10, day).stt > 0) is pays


@pytest.mark.parametrize("segment", list(Segment))
def test_stamp_duty_is_charged_on_buys_only(segment: Segment) -> None:
    assert leg_charges(segment, Side.BUY, 100, 10, FROM_2026).stamp_duty > 0
    assert leg_charges(segment, Side.SELL, 100, 10, FROM_2026).stamp_duty == 0


@pytest.mark.parametrize(
    ("profile", "segment", "price", "qty", "brokerage"),
    [
        # Zerodha intraday/futures: 0.03% below ₹66,666.67 of turnover, ₹20 from there on.
        ("zerodha", INTRADAY, "500", 100, D("15")),  # T 50,000 → 0.03% = 15.00
        ("zerodha", INTRADAY, "1000", 100, D("20")),  # T 1,00,000 → 30.00 capped
        ("zerodha", FUTURES, "100", 100, D("3")),
        ("zerodha", FUTURES, "25000", 75, D("20")),
        ("zerodha", DELIVERY, "25000", 75, D("0")),
        ("zerodha", OPTIONS, "1", 1, D("20")),  # flat per order, however small
        ("paper", INTRADAY, "500", 100, D("15")),
        ("dhan", INTRADAY, "500", 100, D("15")),
        ("dhan", INTRADAY, "1000", 100, D("20")),
        ("dhan", FUTURES, "1", 1, D("20")),
        ("dhan", DELIVERY, "1000", 100, D("0")),
        # Upstox: 0.05% below ₹40,000, ₹20 per delivery order.
        ("upstox", INTRADAY, "300", 100, D("15")),
        ("upstox", INTRADAY, "500", 100, D("20")),
        ("upstox", DELIVERY, "1", 1, D("20")),
        ("upstox", OPTIONS, "100", 75, D("20")),
    ],
)
def test_brokerage_follows_each_profiles_cap_or_flat_fee(
    profile: str, segment: Segment, price: str, qty: int, brokerage: Decimal
) -> None:
    assert leg_charges(segment, Side.BUY, price, qty, FROM_2026, profile).brokerage == brokerage


@pytest.mark.parametrize(
    ("segment", "side", "dp_applies", "dp"),
    [
        (DELIVERY, Side.SELL, True, D("13.50")),
        (DELIVERY, Side.SELL, False, D("0")),
        (DELIVERY, Side.BUY, True, D("0")),
        (INTRADAY, Side.SELL, True, D("0")),
        (FUTURES, Side.SELL, True, D("0")),
        (OPTIONS, Side.SELL, True, D("0")),
    ],
)
def test_dp_is_charged_only_on_delivery_sells(
    segment: Segment, side: Side, dp_applies: bool, dp: Decimal
) -> None:
    charges = leg_charges(segment, side, 100, 10, FROM_2026, ZERODHA, dp_applies=dp_applies)
    assert charges.dp_charge == dp


def test_dp_charge_carries_gst() -> None:
    with_dp = leg_charges(DELIVERY, Side.SELL, 100, 10, FROM_2026, ZERODHA)
    without = leg_charges(DELIVERY, Side.SELL, 100, 10, FROM_2026, ZERODHA, dp_applies=False)
    assert with_dp.gst - without.gst == D("0.18") * D("13.50")
    assert with_dp.total - without.total == D("15.93")


@pytest.mark.parametrize(
    ("segment", "day", "stt_rate"),
    [
        (FUTURES, BEFORE_2026, D("0.0002")), (FUTURES, FROM_2026, D("0.0005")),
        (OPTIONS, BEFORE_2026, D("0.001")), (OPTIONS, FROM_2026, D("0.0015")),
        (DELIVERY, BEFORE_2026, D("0.001")), (DELIVERY, FROM_2026, D("0.001")),
        (INTRADAY, BEFORE_2026, D("0.00025")), (INTRADAY, FROM_2026, D("0.00025")),
        (FUTURES, date(2024, 10, 1), D("0.0002")), (OPTIONS, date(2030, 1, 1), D("0.0015")),
    ],
)
def test_sell_side_stt_rate_switches_on_2026_04_01_exactly(
    segment: Segment, day: date, stt_rate: Decimal
) -> None:
    assert leg_charges(segment, Side.SELL, 1000, 1, day).stt == stt_rate * 1000


def test_rate_sets_are_oldest_first_and_start_on_2024_10_01() -> None:
    starts = [r.effective_from for r in RATE_SETS]
    assert starts == sorted(starts) == [date(2024, 10, 1), FROM_2026]
    assert rates_for(FROM_2026 - timedelta(days=1)) is RATE_SETS[0]
    assert rates_for(FROM_2026) is RATE_SETS[1]


def test_2026_rate_set_differs_only_in_futures_and_options_sell_stt() -> None:
    old, new = RATE_SETS
    assert new.gst == old.gst
    for segment in Segment:
        changed = {f.name for f in fields(old.segments[segment])
                   if getattr(old.segments[segment], f.name) != getattr(new.segments[segment],
                                                                         f.name)}
        assert changed == ({"stt_sell"} if segment in (FUTURES, OPTIONS) else set())


def test_round_trip_prices_each_leg_on_its_own_date() -> None:
    spanning = round_trip(FUTURES, 25000, 25050, 75, BEFORE_2026, sell_date=FROM_2026)
    assert spanning.stt == D("0.0005") * 25050 * 75


def test_round_trip_is_the_sum_of_its_legs() -> None:
    buy = leg_charges(DELIVERY, "buy", "1000", 100, FROM_2026)
    sell = leg_charges(DELIVERY, "sell", "1010", 100, FROM_2026)
    both = round_trip(DELIVERY, "1000", "1010", 100, FROM_2026)
    assert both == buy + sell
    assert both.total == buy.total + sell.total


def test_rounded_rounds_stt_to_the_rupee_and_the_rest_to_the_paisa() -> None:
    sell = leg_charges(INTRADAY, Side.SELL, 1010, 100, FROM_2026, ZERODHA)  # STT 25.25
    rounded = sell.rounded()
    assert rounded.stt == D("25.00")
    assert sell.gst == D("0.18") * (D(20) + D("2.9997") + D("0.101")) == D("4.158126")
    assert rounded.gst == D("4.16")
    assert rounded.total == sum((getattr(rounded, name) for name in CHARGES), D(0))
    assert leg_charges(DELIVERY, Side.SELL, 505, 10, FROM_2026).rounded().stt == D("5.00")
    assert leg_charges(DELIVERY, Side.SELL, 515, 10, FROM_2026).rounded().stt == D("5.00")
    assert leg_charges(DELIVERY, Side.SELL, 550, 10, FROM_2026).rounded().stt == D("6.00")


def test_the_paper_desk_charges_like_zerodha() -> None:
    paper = brokerage_profile("paper")
    assert replace(paper, name="zerodha") == ZERODHA


def test_strings_and_enums_are_interchangeable() -> None:
    assert leg_charges("equity_options", "sell", "100.05", "75", FROM_2026, "zerodha") == (
        leg_charges(OPTIONS, Side.SELL, D("100.05"), 75, FROM_2026, ZERODHA))


# --- properties -------------------------------------------------------------------------------

prices = st.decimals(min_value=D("0.05"), max_value=D("500000"), places=2)
quantities = st.integers(min_value=1, max_value=1_000_000)
trade_dates = st.dates(min_value=date(2024, 10, 1), max_value=date(2035, 12, 31))
profiles = st.sampled_from(sorted(BROKERAGE_PROFILES))


@given(st.sampled_from(list(Segment)), st.sampled_from(list(Side)), prices, quantities,
       trade_dates, profiles, st.booleans())
def test_every_component_is_non_negative_and_total_is_their_sum(
    segment: Segment, side: Side, price: Decimal, qty: int, day: date, profile: str,
    dp_applies: bool,
) -> None:
    charges = leg_charges(segment, side, price, qty, day, profile, dp_applies=dp_applies)
    assert all(getattr(charges, f.name) >= 0 for f in fields(charges))
    assert charges.total == sum((getattr(charges, name) for name in CHARGES), D(0))
    assert charges.turnover == price * qty
    rounded = charges.rounded()
    assert all(getattr(rounded, f.name) >= 0 for f in fields(rounded))


@given(st.sampled_from(list(Segment)), st.sampled_from(list(Side)), prices, quantities,
       st.integers(min_value=1, max_value=1000), trade_dates, profiles)
def test_charges_never_fall_as_quantity_grows(
    segment: Segment, side: Side, price: Decimal, qty: int, extra: int, day: date, profile: str
) -> None:
    """What is asserted, at a fixed price, segment, side, date and profile, for q < q + extra.

    - Every component (brokerage included) and the total are non-decreasing in quantity.
    - The proportional components (STT, exchange, IPFT, SEBI, stamp) are exactly linear:
      c(k·q) == k·c(q). Brokerage is not (capped or flat per order), so neither is GST.
    - Brokerage never exceeds the profile's per-order flat fee (the ₹20 cap).
    """
    small = leg_charges(segment, side, price, qty, day, profile)
    large = leg_charges(segment, side, price, qty + extra, day, profile)
    assert all(getattr(small, name) <= getattr(large, name) for name in CHARGES)
    assert small.total <= large.total
    scaled = leg_charges(segment, side, price, qty * extra, day, profile)
    for name in PROPORTIONAL:
        assert getattr(scaled, name) == getattr(small, name) * extra
    assert large.brokerage <= BROKERAGE_PROFILES[profile].brokerage[segment].flat_inr


@given(st.sampled_from(list(Segment)), prices, quantities, trade_dates)
def test_stt_on_a_buy_is_zero_except_for_delivery(
    segment: Segment, price: Decimal, qty: int, day: date
) -> None:
    stt = leg_charges(segment, Side.BUY, price, qty, day).stt
    assert (stt > 0) if segment is DELIVERY else (stt == 0)


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "qty", "message"),
    [
        (0, 10, "Price must be greater than ₹0; got 0"),
        ("-1.5", 10, "Price must be greater than ₹0; got '-1.5'"),
        (100, 0, "Quantity must be greater than 0; got 0"),
        (100, -5, "Quantity must be greater than 0; got -5"),
        (100, "2.5", "Quantity must be a whole number; got '2.5'"),
        (100.5, 10, "Price must be given as an int, str or Decimal so money stays exact, "
                    "not a float; got 100.5"),
        (100, 10.0, "Quantity must be given as an int, str or Decimal"),
        ("abc", 10, "Price must be a number; got 'abc'"),
        ("NaN", 10, "Price must be a finite number; got 'NaN'"),
        (D("Infinity"), 10, "Price must be a finite number"),
        (True, 10, "Price must be an int, str or Decimal; got bool True"),
        (None, 10, "Price must be an int, str or Decimal; got NoneType None"),
    ],
)
def test_bad_price_or_quantity_is_refused_with_the_rule_and_the_value(
    price: object, qty: object, message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        leg_charges(INTRADAY, Side.BUY, price, qty, FROM_2026)  # type: ignore[arg-type]


def test_unknown_broker_profile_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError, match="Unknown brokerage profile 'angel'; choose one of "
                                              "dhan, paper, upstox, zerodha"):
        leg_charges(INTRADAY, Side.BUY, 100, 10, FROM_2026, "angel")


def test_unknown_segment_or_side_names_the_choices() -> None:
    with pytest.raises(ValidationError, match="Unknown segment 'commodity'; choose one of"):
        leg_charges("commodity", Side.BUY, 100, 10, FROM_2026)
    with pytest.raises(ValidationError, match="Unknown side 'short'; choose one of buy, sell"):
        leg_charges(INTRADAY, "short", 100, 10, FROM_2026)


def test_trade_date_before_the_first_rate_set_names_both_dates() -> None:
    with pytest.raises(ValidationError, match=r"on or after 2024-10-01 .*got 2024-09-30"):
        leg_charges(INTRADAY, Side.BUY, 100, 10, date(2024, 9, 30))


def test_a_datetime_is_not_taken_for_a_trade_date() -> None:
    with pytest.raises(ValidationError, match="Trade date must be a calendar date"):
        leg_charges(INTRADAY, Side.BUY, 100, 10, datetime(2026, 4, 1, 10, 0))  # noqa: DTZ001


def test_charge_breakdown_adds_only_to_another_breakdown() -> None:
    charges = leg_charges(INTRADAY, Side.BUY, 100, 10, FROM_2026)
    assert isinstance(charges + charges, ChargeBreakdown)
    with pytest.raises(TypeError):
        _ = charges + 1  # type: ignore[operator]
