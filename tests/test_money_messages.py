"""Money in messages: the desk's rupees for derived amounts, typed values shown as typed.

Derived amounts (LTP, tick size, suggested prices, limits) read as the desk shows money
(``₹1,500.00``); a value the user typed that breaks a rule reads as typed (``₹1500.03``), never
rounded and never as a Python repr. The service tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.domain import Actor
from core.errors import ValidationError
from core.money import as_typed
from core.services import Services
from core.trading import (
    GttLeg,
    GttStatus,
    OrderRequest,
    OrderStatus,
    OrderType,
    Product,
    Side,
    Validity,
)
from tests.support.market import open_market, tick
from tests.test_orders import _buy  # a 10 INFY CNC LIMIT buy at ₹1,500.00

D = Decimal


@pytest.mark.parametrize(("value", "text"), [
    (D("1324.533"), "₹1324.533"),
    (D("0.0"), "₹0"),
    (D("-0.0"), "₹0"),
    (D("1300.0"), "₹1300"),
    (D("1E+2"), "₹100"),
    ("-5", "-₹5"),
    (" 12.50 ", "₹12.5"),
    (1.5, "₹1.5"),
    (7, "₹7"),
    ("lots", "'lots'"),
    (None, "None"),
    (D("NaN"), "NaN"),
])
def test_a_typed_amount_is_shown_as_typed_without_trailing_zeros_or_repr(value: object,
                                                                          text: str) -> None:
    assert as_typed(value) == text


# -- through the services, on both databases ------------------------------------------------------


@pytest.fixture
def priya(services: Services, login) -> Actor:
    open_market(services.db, {"INFY": "1500.00", "TCS": "3000.00"})
    return login("priya")


@pytest.fixture
def account(services: Services, priya: Actor) -> int:
    return next(a.id for a in services.household.list_accounts(priya)
                if a.label == "Priya · Trading")


def _refusal(services: Services, actor: Actor, request: OrderRequest) -> str:
    with pytest.raises(ValidationError) as refused:
        services.orders.place(actor, request)
    return str(refused.value)


@pytest.mark.usefixtures("backend")
def test_an_off_tick_price_is_shown_as_typed_and_the_valid_prices_as_rupees(
    services: Services, priya: Actor, account: int,
) -> None:
    assert _refusal(services, priya, _buy(account, price=D("1324.533"))) == (
        "Price ₹1324.533 of INFY is not on the tick size ₹0.05; use ₹1,324.50 or ₹1,324.55")


@pytest.mark.usefixtures("backend")
def test_a_price_an_order_type_does_not_take_is_shown_as_typed(
    services: Services, priya: Actor, account: int,
) -> None:
    assert _refusal(services, priya, _buy(account, trigger_price=D("1300.0"))) == (
        "A LIMIT order takes no trigger price (got ₹1300)")


@pytest.mark.usefixtures("backend")
def test_a_stop_trigger_the_market_has_passed_names_the_ltp_in_rupees(
    services: Services, priya: Actor, account: int,
) -> None:
    stop = _buy(account, order_type=OrderType.SL_M, price=None, trigger_price=D("1490.5"))
    assert _refusal(services, priya, stop) == (
        "A stop-loss BUY's trigger must be above the last price: trigger ₹1490.5 <= "
        "LTP ₹1,500.00 of INFY")


@pytest.mark.usefixtures("backend")
def test_an_oco_gtt_with_swapped_legs_names_the_ltp_in_rupees(
    services: Services, priya: Actor, account: int,
) -> None:
    legs = [GttLeg(D("1600.0"), Side.SELL, 10, D("1599")),
            GttLeg(D("1400"), Side.SELL, 10, D("1399"))]
    with pytest.raises(ValidationError) as refused:
        services.orders.create_gtt(priya, account, "INFY", Product.CNC, legs)
    assert str(refused.value) == (
        "An OCO GTT needs its stop-loss trigger below and its target trigger above the last "
        "price: stop ₹1600 < LTP ₹1,500.00 < target ₹1400 does not hold")


@pytest.mark.usefixtures("backend")
def test_a_fired_gtt_says_its_order_was_placed_and_still_says_so_once_it_fills(
    services: Services, priya: Actor, account: int,
) -> None:
    services.orders.create_gtt(priya, account, "INFY", Product.CNC,
                               [GttLeg(D("1450.00"), Side.BUY, 5, D("1452.00"))])
    tick(services.db, "INFY", "1449.00")
    services.orders.step()
    fired = services.orders.gtts(priya, account)[0]
    assert fired.status is GttStatus.TRIGGERED and fired.order_id is not None
    placed = f"Leg 1 triggered at ₹1,449.00; order {fired.order_id} placed"
    assert fired.message == placed
    tick(services.db, "INFY", "1450.00")  # the order (limit ₹1,452.00) fills on the next tick
    services.orders.step()
    [order] = services.orders.order_book(priya, account)
    assert order.status is OrderStatus.FILLED
    assert services.orders.gtts(priya, account)[0].message == placed


@pytest.mark.usefixtures("backend")
def test_an_ioc_order_that_cannot_fill_says_where_it_rested_in_rupees(
    services: Services, priya: Actor, account: int,
) -> None:
    order = services.orders.place(priya, _buy(account, price=D("1400.00"),
                                                  validity=Validity.IOC))
    tick(services.db, "INFY", "1500.00")  # its first open tick: no cross, so the IOC cancels
    services.orders.step()
    [book] = services.orders.order_book(priya, account)
    assert book.id == order.id and book.status is OrderStatus.CANCELLED
    assert book.rejection_reason == (
        "IOC: 10 unfilled shares cancelled (resting at ₹1,400.00 (last ₹1,500.00))")


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize(("amount", "message"), [
    (D("0.0"), "Amount must be above ₹0; got ₹0"),
    (D("-250"), "Amount must be above ₹0; got -₹250"),
    (D("1324.533"), "Deposit must be whole paise (at most 2 decimals); got ₹1324.533"),
    (D("100000000.001"), "Deposit must be whole paise (at most 2 decimals); got "
                         "₹100000000.001"),
])
def test_a_deposit_that_breaks_a_rule_shows_the_amount_as_typed(
    services: Services, login, priya: Actor, account: int, amount: Decimal, message: str,
) -> None:
    with pytest.raises(ValidationError) as refused:
        services.portfolio.add_funds(login("rahul"), account, amount, "top-up")
    assert str(refused.value) == message


TYPED_REFUSALS = [
    ("-5000", "Amount must be above ₹0; got -₹5000"),
    ("abc", "Amount must be a number of rupees (e.g. 25000 or 25,000.50); got 'abc'"),
    ("", "Amount is empty; type an amount in rupees, e.g. 25000 or 25,000.50"),
    ("1,5", "Amount must be a number of rupees (e.g. 25000 or 25,000.50); got '1,5': a comma "
            "may only group the digits of the whole rupees (1,00,000 or 100,000); write paise "
            "with a point"),
    ("NaN", "Amount must be a finite number of rupees; got 'NaN'"),
]


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize(("transfer", "what"), [("add_funds", "Deposit"),
                                                ("withdraw_funds", "Withdrawal")])
@pytest.mark.parametrize(("typed", "message"), [
    *TYPED_REFUSALS,
    ("250000.505", "{what} must be whole paise (at most 2 decimals); got ₹250000.505"),
])
def test_a_typed_amount_that_is_negative_or_no_number_is_refused_and_no_money_moves(
    services: Services, login, priya: Actor, account: int, transfer: str, what: str,
    typed: str, message: str,
) -> None:
    rahul = login("rahul")
    before = services.portfolio.funds(rahul, account).deposits
    with pytest.raises(ValidationError) as refused:
        getattr(services.portfolio, transfer)(rahul, account, typed, "a note")
    assert str(refused.value) == message.format(what=what)
    assert services.portfolio.funds(rahul, account).deposits == before


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize(("typed", "paid"), [
    ("₹1,00,000.50", D("100000.50")), ("100,000", D("100000")), (" 2500 ", D("2500")),
])
def test_a_typed_deposit_with_a_rupee_sign_or_digit_grouping_pays_in_what_was_typed(
    services: Services, login, priya: Actor, account: int, typed: str, paid: Decimal,
) -> None:
    rahul = login("rahul")
    before = services.portfolio.funds(rahul, account).deposits
    services.portfolio.add_funds(rahul, account, typed, "top-up")
    assert services.portfolio.funds(rahul, account).deposits == before + paid


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize(("amount", "shown"), [
    (D("150000000"), "₹15,00,00,000.00"),
    (D("100000000.50"), "₹10,00,00,000.50"),
])
def test_a_deposit_above_the_limit_is_shown_in_the_limit_s_format(
    services: Services, login, priya: Actor, account: int, amount: Decimal, shown: str,
) -> None:
    with pytest.raises(ValidationError) as refused:
        services.portfolio.add_funds(login("rahul"), account, amount, "top-up")
    assert str(refused.value) == (
        f"Amount {shown} is above the ₹10,00,00,000.00 a single transfer may move")
