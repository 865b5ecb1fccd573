"""The trading pages through AppTest: Trade, Orders, Portfolio, Funds & statements.

The ``desk`` fixture runs with FEED_MODE=off, so the paper market is closed unless a test opens
it (a running, fresh ``feed_status`` row and FEED_MODE=replay) and prints quotes itself.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy import delete, func, select, update
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1 import AppTest

from core.clock import now_ist
from core.domain import Account, Actor, Role
from core.marketdata import store
from core.marketdata.instruments import sample_master
from core.orders import charges_estimate
from core.services import Services
from core.services.orders import OrderService
from core.services.portfolio_views import positions_frame
from core.services.trading_views import gtt_frame
from core.trading import (
    Gtt,
    GttKind,
    GttLeg,
    GttStatus,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Product,
    Side,
    Validity,
)
from db.engine import Database
from db.models import FeedStatusRow, GttRow, InstrumentRow, OrderRow, QuoteRow
from pages.common import DISCLAIMER
from pages.nav import pages_for
from pages.trade_parts import ticket_request
from pages.trading_parts import csv_bytes, rupees
from tests.conftest import TEST_CLIENT, make_settings
from tests.support.apptest import app_as, open_tab_index, page, texts

TRADING_PAGES = ["pages/trade.py", "pages/orders.py", "pages/portfolio.py", "pages/funds.py"]
PRICES = {"INFY": "1500", "TCS": "3000", "SBIN": "800"}


# ----------------------------------------------------------------------------------------------
# Helpers: the market, logins, accounts
# ----------------------------------------------------------------------------------------------


def stock_instruments(svc: Services) -> None:
    """Store the sample instrument master (the demo seed has none) and quotes of PRICES."""
    now = now_ist()
    with svc.db.transaction() as session:
        ids = store.upsert_instruments(session, sample_master())
        for symbol, ltp in PRICES.items():
            price = Decimal(ltp)
            session.add(QuoteRow(
                instrument_id=ids[symbol], ltp=price, prev_close=price - 10, day_open=price - 5,
                day_high=price + 5, day_low=price - 10, volume=1_000_000, quote_time=now,
                source="replay:test", updated_at=now))


def open_market(svc: Services, monkeypatch: pytest.MonkeyPatch) -> Services:
    """Open the paper market (the feed runs, fresh, FEED_MODE not off); return services that
    see it open (the app under test reads the same environment)."""
    monkeypatch.setenv("FEED_MODE", "replay")
    monkeypatch.setenv("FEED_STALL_SECONDS", "3600")  # a slow machine never looks stalled
    now = now_ist()
    with svc.db.transaction() as session:
        session.add(FeedStatusRow(
            name="market", source="test replay", mode="replay", state="running",
            session_date=now.date(), simulated_at=now, last_tick_at=now, ticks=1,
            updated_at=now))
    url = svc.db.url
    return Services(Database(url), make_settings(url))


@pytest.fixture
def market(stocked, monkeypatch):
    """The stocked desk with the paper market open: (services that see it open, logins)."""
    svc, logins = stocked
    opened = open_market(svc, monkeypatch)
    yield opened, logins
    opened.db.dispose()


def who(svc: Services, logins, username: str) -> Actor:
    """Return the Actor of a demo user (a fresh server-side session)."""
    result = svc.auth.login(username, logins[username].password, TEST_CLIENT)
    return svc.auth.check_session(result.session_id or "", TEST_CLIENT)


def account(svc: Services, me: Actor, label: str) -> Account:
    """Return the demo account called ``label`` as ``me`` sees it."""
    return next(a for a in svc.household.list_accounts(me) if a.label == label)


def order_count(svc: Services) -> int:
    with svc.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(OrderRow)) or 0)


def table_of(at: AppTest, column: str) -> pd.DataFrame:
    """Return the shown table that has ``column`` (st.dataframe keys are not exposed)."""
    for frame in at.dataframe:
        if column in frame.value.columns:
            return frame.value
    raise AssertionError(f"no table with a {column!r} column; texts: {texts(at)}")


def on_page(at: AppTest, path: str) -> AppTest:
    at.switch_page(page(path)).run()
    assert not at.exception, at.exception
    return at


def fill_ticket(at: AppTest, svc: Services, *, label: str = "Priya · Trading",
                symbol: str = "INFY", side: str = "BUY", quantity: int = 10,
                order_type: str = "LIMIT", price: float | None = 1490.5,
                trigger: float | None = None, amo: bool = False,
                product: str = "CNC") -> None:
    """Fill the order ticket of the Trade page (without submitting)."""
    options = at.selectbox(key="trade_account").options
    accounts = {a.label: a.id for a in svc.household.list_accounts(
        svc.auth.check_session(at.session_state["sher_session_id"], TEST_CLIENT))}
    assert label in options
    at.selectbox(key="trade_account").set_value(accounts[label])
    at.selectbox(key="trade_symbol").set_value(symbol)
    at.radio(key="trade_side").set_value(side)
    at.number_input(key="trade_quantity").set_value(quantity)
    at.selectbox(key="trade_order_type").set_value(order_type)
    at.number_input(key="trade_price").set_value(price)
    at.number_input(key="trade_trigger").set_value(trigger)
    at.radio(key="trade_product").set_value(product)
    at.checkbox(key="trade_amo").set_value(amo)


@pytest.fixture
def stocked(desk):
    """The demo desk with the sample instruments and a few quotes (market still closed)."""
    stock_instruments(desk[0])
    return desk


# ----------------------------------------------------------------------------------------------
# Pure pieces
# ----------------------------------------------------------------------------------------------


def test_csv_downloads_hold_rupees_as_plain_numbers_and_none_as_an_empty_cell() -> None:
    frame = pd.DataFrame({"Symbol": ["INFY", "TCS"], "Qty": [10, 5],
                          "Avg price [₹]": ["10,00,000.50", "—"], "P&L [₹]": ["-1,234.00", "0.00"],
                          "Stop [₹]": ["₹1,450.00", None], "Note": ["1,000 shares", ""]})
    assert csv_bytes(frame).decode().splitlines() == [
        "Symbol,Qty,Avg price [₹],P&L [₹],Stop [₹],Note",
        "INFY,10,1000000.50,-1234.00,1450.00,\"1,000 shares\"",
        "TCS,5,,0.00,,"]


def test_a_flat_position_shows_no_average_price() -> None:
    flat, open_ = (Position(account_id=1, symbol="INFY", product=Product.MIS, quantity=q,
                            average_price=Decimal(0) if q == 0 else Decimal("1500.25"),
                            ltp=Decimal("1501"),
                            realized_pnl=Decimal("12.50"), unrealized_pnl=Decimal(0),
                            buy_quantity=10,
                            sell_quantity=10 - q) for q in (0, 5))
    frame = positions_frame([flat, open_], {1: "Priya"})
    assert list(frame["Avg price [₹]"]) == ["—", "1,500.25"]


def test_the_gtt_table_converts_to_arrow_with_and_without_an_order() -> None:
    now = now_ist()
    legs = (GttLeg(Decimal("1400"), Side.BUY, 1, Decimal("1401")),)
    gtts = [Gtt(id=n, account_id=1, account_label="A", symbol="INFY", kind=GttKind.SINGLE,
                product=Product.CNC, legs=legs, status=GttStatus.ACTIVE,
                reference_price=Decimal("1450"), created_by="priya", created_at=now,
                expires_at=now, triggered_at=None, triggered_leg=None, order_id=order,
                message=None) for n, order in ((1, None), (2, 17))]
    assert list(pa.Table.from_pandas(gtt_frame(gtts)).column("Order").to_pylist()) == ["—", "17"]


@pytest.mark.parametrize(("order_type", "price", "trigger"), [
    ("MARKET", None, None),
    ("LIMIT", Decimal("1490.55"), None),
    ("SL", Decimal("1490.55"), Decimal("1480.1")),
    ("SL-M", None, Decimal("1480.1")),
])
def test_the_ticket_sends_only_the_prices_its_order_type_uses_as_exact_decimals(
        order_type, price, trigger) -> None:
    values = {"account_id": 3, "symbol": "INFY", "side": "SELL", "quantity": 7.0,
              "order_type": order_type, "price": 1490.55, "trigger": 1480.1,
              "product": "MIS", "validity": "DAY", "amo": False}
    request = ticket_request(values, "SHER-abc")
    assert request == OrderRequest(3, "INFY", Side.SELL, 7, OrderType(order_type), Product.MIS,
                                   Validity.DAY, price, trigger, False, "SHER-abc")
    assert isinstance(request.quantity, int)


@pytest.mark.parametrize(("value", "shown"), [
    (Decimal("0"), "₹0.00"), (Decimal("999.5"), "₹999.50"), (Decimal("1234.567"), "₹1,234.57"),
    (Decimal("123456.7"), "₹1,23,456.70"), (Decimal("-12345678"), "-₹1,23,45,678.00"),
    (1500.05, "₹1,500.05"), (None, "—"),
])
def test_money_is_shown_in_rupees_with_indian_grouping_and_two_decimals(value, shown) -> None:
    assert rupees(value) == shown


# ----------------------------------------------------------------------------------------------
# Who sees what
# ----------------------------------------------------------------------------------------------


def test_trade_is_in_the_menu_of_roles_that_trade_and_not_of_viewers() -> None:
    for role in (Role.SUPER_ADMIN, Role.ADMIN, Role.TRADER, Role.FAMILY_MEMBER):
        assert "pages/trade.py" in {s.path for s in pages_for(role)}
    viewer = [s for s in pages_for(Role.VIEWER) if s.group == "Trading"]
    assert [s.title for s in viewer] == ["Orders", "Portfolio", "Funds & statements"]


@pytest.mark.parametrize("username", ["priya", "aarav", "kamla", "rahul"])
def test_every_trading_page_renders_with_orders_on_the_desk(stocked, username) -> None:
    svc, logins = stocked
    priya = who(svc, logins, "priya")
    svc.orders.place(priya, OrderRequest(account(svc, priya, "Priya · Trading").id, "INFY",
                                         Side.BUY, 5, OrderType.LIMIT, price=Decimal("1400"),
                                         amo=True))
    at = app_as(stocked, username)
    visible = {s.path for s in pages_for(Role(svc.auth.check_session(
        at.session_state["sher_session_id"], TEST_CLIENT).role))}
    for path in TRADING_PAGES:
        if path not in visible:
            continue
        on_page(at, path)
        assert not at.error, f"{path} showed errors for {username}: {[e.value for e in at.error]}"
        assert DISCLAIMER in texts(at)


def test_a_viewer_cannot_open_trade_from_the_menu(stocked) -> None:
    at = app_as(stocked, "aarav")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(page("pages/trade.py"))


def test_a_viewer_who_opens_trade_directly_is_refused_clearly(stocked) -> None:
    svc, logins = stocked
    result = svc.auth.login("aarav", logins["aarav"].password, TEST_CLIENT)
    at = AppTest.from_file(page("pages/trade.py"), default_timeout=30)
    at.session_state["sher_session_id"] = result.session_id
    at.run()
    assert not at.exception
    assert "Your role (viewer) may view accounts but not trade" in texts(at)
    assert not [b for b in at.button if b.label in ("Review", "Place order")]
    assert DISCLAIMER in texts(at)


def test_a_viewer_sees_the_order_book_but_no_modify_or_cancel_controls(stocked) -> None:
    svc, logins = stocked
    rahul = who(svc, logins, "rahul")
    long_term = account(svc, rahul, "Rahul · Long-term")  # aarav may view it
    svc.orders.place(rahul, OrderRequest(long_term.id, "TCS", Side.BUY, 1, OrderType.LIMIT,
                                         price=Decimal("2900"), amo=True))
    at = on_page(app_as(stocked, "aarav"), "pages/orders.py")
    book = table_of(at, "Client order id")
    assert list(book["Symbol"]) == ["TCS"] and list(book["Account"]) == ["Rahul · Long-term"]
    assert not [b for b in at.button if b.label in ("Modify", "Cancel order")]
    assert "you may view but not trade" in texts(at)


def test_a_user_with_no_tradable_account_is_told_why_on_the_trade_page(stocked) -> None:
    at = on_page(app_as(stocked, "ops"), "pages/trade.py")  # the operator owns no account
    assert "You have no account you may trade" in texts(at)
    assert not [b for b in at.button if b.label == "Place order"]


# ----------------------------------------------------------------------------------------------
# The order ticket
# ----------------------------------------------------------------------------------------------


def test_the_ticket_offers_only_tradable_accounts_and_shows_the_market_session(stocked) -> None:
    at = on_page(app_as(stocked, "priya"), "pages/trade.py")
    accounts = at.selectbox(key="trade_account").options
    assert accounts == ["Priya · Trading"]  # she may view Rahul · Long-term, not trade it
    assert "Market closed · market feed off (FEED_MODE=off)" in texts(at)
    assert "must be AMO" in texts(at)
    symbols = at.selectbox(key="trade_symbol").options  # the symbols themselves: stable values
    assert "INFY" in symbols and "RELIANCE" in symbols
    assert "No price yet (orders in them are refused): ADANIENT," in texts(at)
    assert "INFY," not in texts(at).split("No price yet")[1]  # a priced symbol is not listed


def test_review_shows_value_charges_and_required_funds_and_writes_nothing(stocked) -> None:
    svc, _ = stocked
    at = on_page(app_as(stocked, "priya"), "pages/trade.py")
    fill_ticket(at, svc, quantity=10, price=1490.5, amo=True)
    at.button(key="trade_review").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["LTP"] == "₹1,500.00"
    assert metrics["Estimated price"] == "₹1,490.50"
    assert metrics["Value"] == "₹14,905.00"
    charges = Decimal(metrics["Charges"].lstrip("₹").replace(",", ""))
    assert Decimal("0") < charges < Decimal("100")
    required = Decimal(metrics["Required funds"].lstrip("₹").replace(",", ""))
    assert required == Decimal("14905.00") + charges
    priya = svc.auth.check_session(at.session_state["sher_session_id"], TEST_CLIENT)
    available = svc.portfolio.funds(priya, account(svc, priya, "Priya · Trading").id).available
    assert f"of available {rupees(available)}" in texts(at)
    assert order_count(svc) == 0


def test_review_prices_the_size_the_risk_gate_would_place_and_names_each_charge(
        stocked) -> None:
    svc, logins = stocked
    priya = who(svc, logins, "priya")
    trading = account(svc, priya, "Priya · Trading").id
    svc.risk.set_limits(priya, trading, {"risk_per_trade_pct": "0.5"})  # stricter: allowed
    at = on_page(app_as(stocked, "priya"), "pages/trade.py")
    fill_ticket(at, svc, quantity=300, price=1490.5, amo=True)
    at.button(key="trade_review").click().run()
    assert not at.exception
    decision = svc.risk_gate.preview(priya, ticket_request_of(at, svc, 300))
    assert decision.approved and 0 < decision.quantity < 300, decision.summary()
    shown = [m.value for m in at.markdown if m.value.startswith("**Review:")]
    assert shown == [f"**Review: BUY {decision.quantity} INFY (LIMIT, CNC) (the risk gate's "
                     "size; you asked for 300)**"]
    value = {m.label: m.value for m in at.metric}["Value"]
    assert value == rupees(Decimal("1490.5") * decision.quantity)
    charges = next(f.value for f in at.dataframe if "Charge" in f.value.columns)
    assert list(charges["Charge"]) == ["Brokerage", "STT", "Exchange transaction", "IPFT",
                                       "SEBI fee", "Stamp duty", "GST", "DP charge"]
    assert all(amount.startswith("₹") for amount in charges["Amount [₹]"])


def test_review_s_charges_breakdown_adds_up_to_the_charges_shown(stocked) -> None:
    svc, _ = stocked
    at = on_page(app_as(stocked, "priya"), "pages/trade.py")
    fill_ticket(at, svc, quantity=5, price=1500.0, amo=True)
    at.button(key="trade_review").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    # Each rounded alone, STT 7.50 + exchange 0.22 + IPFT 0.01 + SEBI 0.01 + stamp 1.13 +
    # GST 0.04 make ₹8.91; the exact sum 8.904195 is charged as ₹8.90.
    assert {m.label: m.value for m in at.metric}["Charges"] == "₹8.90"
    charges = next(f.value for f in at.dataframe if "Charge" in f.value.columns)
    amounts = [Decimal(a.lstrip("₹").replace(",", "")) for a in charges["Amount [₹]"]]
    assert sum(amounts) == Decimal("8.90"), list(charges["Amount [₹]"])
    assert "rounded so that they add up to the charges above" in texts(at)


def ticket_request_of(at: AppTest, svc: Services, quantity: int) -> OrderRequest:
    """Return the request the filled ticket stands for (as the page builds it)."""
    return OrderRequest(at.selectbox(key="trade_account").value, "INFY", Side.BUY, quantity,
                        OrderType.LIMIT, Product.CNC, price=Decimal("1490.5"), amo=True)


def move_price(svc: Services, symbol: str, ltp: str) -> None:
    """Print a new last price of ``symbol`` (the feed moved it)."""
    with svc.db.transaction() as session:
        session.execute(update(QuoteRow).where(QuoteRow.instrument_id == select(
            InstrumentRow.id).where(InstrumentRow.symbol == symbol).scalar_subquery())
            .values(ltp=Decimal(ltp), updated_at=now_ist()))


def hold_in_the_browser(at: AppTest, key: str) -> str:
    """Return the wire value the browser now holds for the selectbox ``key``: the option label
    the user picked (it sends it back on every submit until the server resets the widget)."""
    return at.selectbox(key=key)._widget_state.string_value


def send_as_the_browser(at: AppTest, key: str, wire: str) -> None:
    """Make the next run receive ``wire`` as selectbox ``key``'s value, as a browser sends it.

    AppTest re-derives the label from the last run's options; a browser sends back the label it
    holds, even after a run showed the option under another label.
    """
    box = at.selectbox(key=key)

    class Held(type(box)):  # type: ignore[misc]
        @property
        def _widget_state(self) -> WidgetState:
            state = WidgetState()
            state.id = self.id
            state.string_value = wire
            return state

    box.__class__ = Held


def test_the_chosen_symbol_stays_chosen_when_its_price_moves_between_review_and_place(
        stocked) -> None:
    svc, _ = stocked
    at = on_page(app_as(stocked, "priya"), "pages/trade.py")
    fill_ticket(at, svc, symbol="TCS", quantity=2, price=2990.0, amo=True)
    held = hold_in_the_browser(at, "trade_symbol")
    move_price(svc, "TCS", "3004.10")  # the feed moves on while the user fills the ticket in
    at.button(key="trade_review").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert {m.label: m.value for m in at.metric}["LTP"] == "₹3,004.10"
    move_price(svc, "TCS", "3012.35")
    send_as_the_browser(at, "trade_symbol", held)
    at.button(key="trade_place").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="trade_symbol").value == "TCS"
    with svc.db.transaction() as session:
        row = session.scalars(select(OrderRow)).one()
        assert (row.symbol, row.quantity, row.price) == ("TCS", 2, Decimal("2990"))


def test_review_of_a_refused_ticket_says_why_once(stocked) -> None:
    svc, _ = stocked
    at = on_page(app_as(stocked, "priya"), "pages/trade.py")
    fill_ticket(at, svc, order_type="LIMIT", price=None, amo=True)
    at.button(key="trade_review").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["A LIMIT order needs a price; none was given"]
    assert at.number_input(key="trade_stop_loss").min > 0  # a planned stop-loss of ₹0 is none
    assert order_count(svc) == 0


def test_review_and_place_refuse_a_limit_price_beyond_the_band_and_write_nothing(
        stocked) -> None:
    svc, _ = stocked
    at = on_page(app_as(stocked, "priya"), "pages/trade.py")
    fill_ticket(at, svc, quantity=1, price=5000.0, amo=True)
    band = ("Price ₹5000 of INFY is outside today's price band ₹1,341.00 to ₹1,639.00 "
            "(previous close ₹1,490.00, NSE's dynamic price band); the exchange does not "
            "accept it")
    for button in ("trade_review", "trade_place"):
        at.button(key=button).click().run()
        assert not at.exception
        assert [e.value for e in at.error] == [band], button
        assert not at.metric  # no figures of an order the exchange would not take
    assert order_count(svc) == 0


def test_review_refuses_a_delivery_sell_without_the_shares_as_place_does(stocked) -> None:
    svc, _ = stocked
    at = on_page(app_as(stocked, "priya"), "pages/trade.py")
    fill_ticket(at, svc, side="SELL", quantity=50, price=1400.0, amo=True)
    refusal = ("You can sell at most 0 INFY from delivery (holdings 0, bought today 0, pending "
               "sells 0); use MIS to short intraday")
    for button in ("trade_review", "trade_place"):
        at.button(key=button).click().run()
        assert not at.exception
        assert [e.value for e in at.error] == [refusal], button
        assert not at.metric and "Risk gate" not in texts(at)  # nothing shown as approved
    assert order_count(svc) == 0


def test_a_market_order_without_amo_is_refused_while_the_market_is_closed(stocked) -> None:
    svc, _ = stocked
    at = on_page(app_as(stocked, "priya"), "pages/trade.py")
    fill_ticket(at, svc, order_type="MARKET", price=1500.0, trigger=1490.0, amo=False)
    at.button(key="trade_place").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "closed" in errors and "AMO" in errors, errors
    assert "takes no price" not in errors  # the leftover price and trigger were not sent
    assert order_count(svc) == 0


def test_a_limit_amo_order_is_accepted_listed_in_the_order_book_and_cancelled_there(
        stocked) -> None:
    svc, _ = stocked
    at = on_page(app_as(stocked, "priya"), "pages/trade.py")
    fill_ticket(at, svc, quantity=10, order_type="LIMIT", price=1490.5, trigger=1480.0, amo=True)
    at.button(key="trade_place").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "as an AMO for the next session's open: status OPEN" in texts(at)
    with svc.db.transaction() as session:
        row = session.scalars(select(OrderRow)).one()
        order_id = row.id
        assert (row.symbol, row.side, row.quantity, row.price, row.trigger_price, row.is_amo) == (
            "INFY", Side.BUY, 10, Decimal("1490.5"), None, True)

    on_page(at, "pages/orders.py")
    book = table_of(at, "Client order id")
    assert list(book["Order"]) == [order_id] and list(book["Status"]) == ["OPEN"]
    assert at.selectbox(key="orders_open_order").value == order_id
    at.button(key="orders_cancel").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert f"Order #{order_id} cancelled." in texts(at)
    assert list(table_of(at, "Client order id")["Status"]) == ["CANCELLED"]
    assert not [b for b in at.button if b.label == "Cancel order"]  # nothing open is left
    with svc.db.transaction() as session:
        assert session.get(OrderRow, order_id).status is OrderStatus.CANCELLED


@pytest.mark.parametrize("button", ["orders_cancel", "orders_modify"])
def test_a_button_acts_on_the_picked_order_even_if_it_closed_since_never_on_another(
        stocked, button: str) -> None:
    svc, logins = stocked
    priya = who(svc, logins, "priya")
    trading = account(svc, priya, "Priya · Trading").id
    first, picked = (svc.orders.place(priya, OrderRequest(
        trading, "INFY", Side.BUY, quantity, OrderType.LIMIT, Product.CNC,
        price=Decimal("1480.00"), amo=True)) for quantity in (5, 6))
    at = on_page(app_as(stocked, "priya"), "pages/orders.py")
    at.selectbox(key="orders_open_order").set_value(picked.id)
    at.number_input(key="orders_new_price").set_value(1481.0)
    svc.orders.cancel(priya, picked.id)  # from another tab, or it filled: no longer open

    at.button(key=button).click().run()

    assert not at.exception
    assert [e.value for e in at.error] == [
        f"Order {picked.id} is CANCELLED; only open orders can be modified or cancelled"]
    assert at.selectbox(key="orders_open_order").value == picked.id  # still the user's pick
    untouched = next(o for o in svc.orders.order_book(priya) if o.id == first.id)
    assert (untouched.status, untouched.price) == (OrderStatus.OPEN, Decimal("1480.00"))


def test_cancel_gtt_acts_on_the_picked_gtt_even_if_it_closed_since_never_on_another(
        stocked) -> None:
    svc, logins = stocked
    priya = who(svc, logins, "priya")
    trading = account(svc, priya, "Priya · Trading").id
    first, picked = (svc.orders.create_gtt(priya, trading, "INFY", Product.CNC, [GttLeg(
        Decimal(trigger), Side.BUY, 1, Decimal(trigger) + 1)]) for trigger in ("1400", "1410"))
    at = on_page(app_as(stocked, "priya"), "pages/orders.py")
    at.selectbox(key="orders_gtt").set_value(picked.id)
    svc.orders.cancel_gtt(priya, picked.id)  # from another tab

    at.button(key="orders_gtt_cancel_button").click().run()

    assert not at.exception
    assert [e.value for e in at.error] == [
        f"GTT {picked.id} is cancelled; only active GTTs can be cancelled"]
    assert svc.orders.gtts(priya, trading, active_only=True)[0].id == first.id


def test_a_second_click_that_interrupted_the_first_gets_the_same_order_back(stocked) -> None:
    svc, logins = stocked
    priya = who(svc, logins, "priya")
    # Repeating the same ticket on purpose: lift the risk gate's duplicate window for this test.
    svc.risk.set_limits(who(svc, logins, "rahul"), None, {"duplicate_window_s": "0"})
    at = on_page(app_as(stocked, "priya"), "pages/trade.py")
    fill_ticket(at, svc, quantity=3, amo=True)
    at.button(key="trade_place").click().run()
    assert order_count(svc) == 1
    assert "trade_client_order_id" not in at.session_state  # answered: the next is a new order
    at.button(key="trade_place").click().run()
    assert order_count(svc) == 2
    # A run interrupted after the order was written leaves its id behind for that request.
    first = svc.orders.order_book(priya)[0]
    request = OrderRequest(first.account_id, "INFY", Side.BUY, 3, OrderType.LIMIT, Product.CNC,
                           Validity.DAY, Decimal("1490.5"), None, True)
    at.session_state["trade_client_order_id"] = (first.client_order_id, request)
    at.button(key="trade_place").click().run()
    assert order_count(svc) == 2
    assert f"Order #{first.id} BUY 3 INFY (LIMIT, CNC) placed" in texts(at)
    at.session_state["trade_client_order_id"] = (first.client_order_id, request)
    at.number_input(key="trade_quantity").set_value(4)
    at.button(key="trade_place").click().run()  # a changed ticket is a new order
    assert not at.error, [e.value for e in at.error]
    assert order_count(svc) == 3


def test_an_open_order_is_modified_from_the_orders_page(stocked) -> None:
    svc, logins = stocked
    priya = who(svc, logins, "priya")
    order = svc.orders.place(priya, OrderRequest(
        account(svc, priya, "Priya · Trading").id, "SBIN", Side.BUY, 4, OrderType.LIMIT,
        price=Decimal("790"), amo=True))
    at = on_page(app_as(stocked, "priya"), "pages/orders.py")
    at.number_input(key="orders_new_quantity").set_value(6)
    at.number_input(key="orders_new_price").set_value(795.25)
    at.button(key="orders_modify").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert f"Order #{order.id} modified." in texts(at)
    with svc.db.transaction() as session:
        row = session.get(OrderRow, order.id)
        assert (row.quantity, row.price) == (6, Decimal("795.25"))


def test_a_delivery_sell_without_shares_is_refused_with_the_rule_and_nothing_written(
        market) -> None:
    svc, _ = market
    at = on_page(app_as(market, "priya"), "pages/trade.py")
    fill_ticket(at, svc, side="SELL", quantity=5, order_type="LIMIT", price=1500.0)
    at.button(key="trade_place").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "You can sell at most 0 INFY from delivery" in errors, errors
    assert order_count(svc) == 0


def test_a_broker_rejection_after_persistence_is_shown_as_an_error_with_its_reason(
        stocked, monkeypatch) -> None:
    svc, logins = stocked
    priya = who(svc, logins, "priya")
    rejected = svc.orders.place(priya, OrderRequest(
        account(svc, priya, "Priya · Trading").id, "INFY", Side.BUY, 1, OrderType.LIMIT,
        price=Decimal("1490"), amo=True))
    rejected = dataclasses.replace(rejected, status=OrderStatus.REJECTED,
                                   rejection_reason="RMS: scrip blocked for the day")
    # The paper broker accepts anything the order manager passes; stand in for a real broker
    # that refuses after the order was written.
    monkeypatch.setattr(OrderService, "place", lambda self, actor, request, source="web": rejected)
    at = on_page(app_as(stocked, "priya"), "pages/trade.py")
    fill_ticket(at, svc, amo=True)
    at.button(key="trade_place").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        f"Order #{rejected.id} BUY 1 INFY (LIMIT, CNC) was rejected: "
        "RMS: scrip blocked for the day"]
    assert not at.success or all("placed" not in s.value for s in at.success)


# ----------------------------------------------------------------------------------------------
# Market open: fills, positions, GTT
# ----------------------------------------------------------------------------------------------


def fill_pending(svc: Services) -> None:
    """Let the paper market trade: new volume on every quote, then one worker step."""
    with svc.db.transaction() as session:
        session.execute(update(QuoteRow).values(volume=QuoteRow.volume + 1_000_000,
                                                quote_time=now_ist() + timedelta(seconds=5),
                                                updated_at=now_ist()))
    svc.orders.step()


def test_with_the_market_open_a_market_order_fills_and_shows_in_portfolio_and_funds(
        market) -> None:
    svc, _ = market
    at = on_page(app_as(market, "priya"), "pages/trade.py")
    assert "Market open · market feed running (test replay, replay)" in texts(at)
    fill_ticket(at, svc, quantity=10, order_type="MARKET", price=None)
    at.button(key="trade_place").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "placed" in texts(at)
    fill_pending(svc)

    on_page(at, "pages/orders.py")
    book = table_of(at, "Client order id")
    assert list(book["Status"]) == ["FILLED"] and list(book["Filled"]) == [10]
    trades = table_of(at, "Trade id")
    assert list(trades["Symbol"]) == ["INFY"]

    on_page(at, "pages/portfolio.py")
    assert at.selectbox(key="portfolio_account").options[0] == "Whole family"
    family = table_of(at, "Net P&L [₹]")
    assert family["Account"].iloc[-1] == "Whole family"
    assert list(family.columns[:2]) == ["Account", "Deposits [₹]"]  # no internal ids shown
    positions = table_of(at, "MTM [₹]")
    assert list(positions.columns[:9]) == ["Account", "Symbol", "Product", "Net qty",
                                           "Avg price [₹]", "LTP [₹]", "Unrealized [₹]",
                                           "Realized [₹]", "MTM [₹]"]
    assert positions.set_index("Symbol").loc["INFY", "Net qty"] == 10

    on_page(at, "pages/funds.py")
    family_funds = table_of(at, "Available [₹]").set_index("Account")
    assert family_funds.loc["Priya · Trading", "Deposits [₹]"] == "10,00,000.00"
    assert family_funds.loc["Priya · Trading", "Charges today [₹]"] not in ("0.00", "—")
    assert family_funds.index[-1] == "Whole family"


def test_drilling_down_shows_one_account_s_positions_only(market) -> None:
    svc, logins = market
    rahul, priya = who(svc, logins, "rahul"), who(svc, logins, "priya")
    for me, label, symbol in ((priya, "Priya · Trading", "INFY"),
                              (rahul, "Rahul · Long-term", "TCS")):
        svc.orders.place(me, OrderRequest(account(svc, me, label).id, symbol, Side.BUY, 2,
                                          OrderType.MARKET))
    fill_pending(svc)
    at = on_page(app_as(market, "rahul"), "pages/portfolio.py")
    family = table_of(at, "MTM [₹]")
    assert sorted(family["Symbol"]) == ["INFY", "TCS"]  # rahul views every household account
    at.selectbox(key="portfolio_account").set_value(account(svc, rahul, "Rahul · Long-term").id)
    at.run()
    assert not at.exception
    positions = table_of(at, "MTM [₹]")
    assert list(positions["Symbol"]) == ["TCS"]
    assert "Whole family" not in [h.value for h in at.subheader]


def test_an_oco_gtt_is_created_on_the_trade_page_listed_and_cancelled_on_orders(
        market) -> None:
    svc, _ = market
    _hold_infy(market, 3)  # a delivery sell GTT needs the shares
    at = on_page(app_as(market, "priya"), "pages/trade.py")
    _oco_form(at, (1400.0, 1395.0), (1600.0, 1595.0))
    at.button(key="trade_gtt_create").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    with svc.db.transaction() as session:
        gtt = session.scalars(select(GttRow)).one()
        assert (gtt.kind.value, gtt.leg1_trigger, gtt.leg2_trigger) == (
            "oco", Decimal("1400"), Decimal("1600"))
        gtt_id = gtt.id
    assert f"GTT #{gtt_id} on INFY is active (oco)" in texts(at)

    on_page(at, "pages/orders.py")
    at.session_state["orders_tab"] = "GTT"  # she opened the GTT tab
    at.run()
    assert list(table_of(at, "Legs")["GTT"]) == [gtt_id]
    at.button(key="orders_gtt_cancel_button").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert f"GTT #{gtt_id} cancelled." in texts(at)
    assert list(table_of(at, "Legs")["Status"]) == ["cancelled"]
    assert open_tab_index(at) == 2  # the message above the tabs did not send her to Order book


def _hold_infy(market, quantity: int) -> None:
    """Give priya's trading account ``quantity`` INFY bought for delivery today."""
    svc, logins = market
    priya = who(svc, logins, "priya")
    svc.orders.place(priya, OrderRequest(account(svc, priya, "Priya · Trading").id, "INFY",
                                         Side.BUY, quantity, OrderType.MARKET))
    fill_pending(svc)


def _oco_form(at: AppTest, stop: tuple[float, float], target: tuple[float, float]) -> None:
    at.radio(key="trade_gtt_kind").set_value("oco").run()
    at.selectbox(key="trade_gtt_symbol").set_value("INFY")
    at.radio(key="trade_gtt_side").set_value("SELL")
    at.number_input(key="trade_gtt_quantity").set_value(3)
    at.number_input(key="trade_gtt_stop_trigger").set_value(stop[0])
    at.number_input(key="trade_gtt_stop_price").set_value(stop[1])
    at.number_input(key="trade_gtt_target_trigger").set_value(target[0])
    at.number_input(key="trade_gtt_target_price").set_value(target[1])


def test_reviewing_a_gtt_shows_each_legs_order_value_charges_and_funds_and_writes_nothing(
        market) -> None:
    svc, logins = market
    priya = who(svc, logins, "priya")
    _hold_infy(market, 3)  # a delivery sell GTT needs the shares
    at = on_page(app_as(market, "priya"), "pages/trade.py")
    _oco_form(at, (1400.0, 1395.0), (1600.0, 1595.0))
    at.button(key="trade_gtt_review").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    review = table_of(at, "Funds needed")
    trading = account(svc, priya, "Priya · Trading").id
    estimates = svc.orders.review_gtt(priya, trading, "INFY", Product.CNC, [
        GttLeg(Decimal("1400"), Side.SELL, 3, Decimal("1395")),
        GttLeg(Decimal("1600"), Side.SELL, 3, Decimal("1595"))])
    day = estimates[0].session.trading_day
    for price, est in zip(("1395", "1595"), estimates, strict=True):
        leg_order = OrderRequest(trading, "INFY", Side.SELL, 3, OrderType.LIMIT, Product.CNC,
                                 price=Decimal(price))
        assert (est.price, est.value, est.charges) == (
            Decimal(price), 3 * Decimal(price), charges_estimate(leg_order, Decimal(price), day))
    assert review.to_dict("list") == {
        "Leg": ["Stop-loss", "Target"],
        "When the last price crosses": ["₹1,400.00", "₹1,600.00"],
        "Places": ["LIMIT SELL 3 at ₹1,395.00", "LIMIT SELL 3 at ₹1,595.00"],
        "Value": ["₹4,185.00", "₹4,785.00"],
        "Charges": [rupees(e.charges.total) for e in estimates],
        "Funds needed": [rupees(e.required_funds) for e in estimates],
    }
    assert "Only one leg of an OCO fires" in texts(at)
    with svc.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(GttRow)) == 0


def test_the_gtt_symbol_stays_chosen_when_its_price_moves_between_review_and_create(
        market) -> None:
    svc, _ = market
    _hold_infy(market, 3)
    at = on_page(app_as(market, "priya"), "pages/trade.py")
    _oco_form(at, (1400.0, 1395.0), (1600.0, 1595.0))
    held = hold_in_the_browser(at, "trade_gtt_symbol")
    move_price(svc, "INFY", "1503.45")
    at.button(key="trade_gtt_review").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    move_price(svc, "INFY", "1498.20")
    send_as_the_browser(at, "trade_gtt_symbol", held)
    at.button(key="trade_gtt_create").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "on INFY is active" in texts(at)
    with svc.db.transaction() as session:
        assert session.scalars(select(GttRow.symbol)).all() == ["INFY"]


def test_reviewing_a_gtt_that_breaks_a_rule_gives_the_create_refusal_and_writes_nothing(
        market) -> None:
    svc, _ = market
    at = on_page(app_as(market, "priya"), "pages/trade.py")
    _oco_form(at, (1600.0, 1595.0), (1400.0, 1395.0))  # the legs the wrong way round
    at.button(key="trade_gtt_review").click().run()
    assert not at.exception
    assert any("An OCO GTT needs its stop-loss trigger below and its target trigger above"
               in e.value for e in at.error), [e.value for e in at.error]
    assert not [f for f in at.dataframe if "Funds needed" in f.value.columns]
    with svc.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(GttRow)) == 0


def test_a_gtt_without_every_price_is_refused_on_the_page(stocked) -> None:
    at = on_page(app_as(stocked, "priya"), "pages/trade.py")
    at.selectbox(key="trade_gtt_symbol").set_value("INFY")
    at.number_input(key="trade_gtt_leg_trigger").set_value(1600.0)
    at.button(key="trade_gtt_create").click().run()
    assert "give every trigger and limit price" in texts(at)


# ----------------------------------------------------------------------------------------------
# Funds & statements
# ----------------------------------------------------------------------------------------------


def test_an_account_manager_adds_paper_funds(stocked) -> None:
    svc, logins = stocked
    priya = who(svc, logins, "priya")
    trading = account(svc, priya, "Priya · Trading").id
    before = svc.portfolio.funds(priya, trading).deposits
    at = on_page(app_as(stocked, "priya"), "pages/funds.py")  # a trader manages her own
    assert at.selectbox(key="funds_add_account").options == ["Priya · Trading"]
    at.text_input(key="funds_add_amount").input("25,000")
    at.text_input(key="funds_add_note").input("Diwali top-up")
    at.button(key="funds_add_submit").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Added ₹25,000.00 of paper funds to Priya · Trading." in texts(at)
    assert svc.portfolio.funds(priya, trading).deposits == before + 25000


@pytest.mark.parametrize(("kind", "typed", "refusal"), [
    ("add", "-5000", "Amount must be above ₹0; got -₹5000"),
    ("add", "abc", "Amount must be a number of rupees (e.g. 25000 or 25,000.50); got 'abc'"),
    ("add", "250000.505", "Deposit must be whole paise (at most 2 decimals); got ₹250000.505"),
    ("withdraw", "-5000", "Amount must be above ₹0; got -₹5000"),
    ("withdraw", "abc", "Amount must be a number of rupees (e.g. 25000 or 25,000.50); got "
                        "'abc'"),
])
def test_a_negative_or_non_numeric_amount_is_refused_as_typed_and_moves_no_money(
    stocked, kind: str, typed: str, refusal: str,
) -> None:
    svc, logins = stocked
    priya = who(svc, logins, "priya")
    trading = account(svc, priya, "Priya · Trading").id
    before = svc.portfolio.funds(priya, trading).deposits
    at = on_page(app_as(stocked, "priya"), "pages/funds.py")
    at.text_input(key=f"funds_{kind}_amount").input(typed)
    at.button(key=f"funds_{kind}_submit").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [refusal]
    assert not [s.value for s in at.success]
    assert svc.portfolio.funds(priya, trading).deposits == before


@pytest.mark.parametrize("username", ["kamla", "aarav"])
def test_users_who_manage_no_account_get_no_add_funds_form(stocked, username) -> None:
    at = on_page(app_as(stocked, username), "pages/funds.py")
    assert not [b for b in at.button if b.label in ("Add funds", "Withdraw funds")]


def test_an_account_manager_withdraws_paper_funds_and_too_much_is_refused(stocked) -> None:
    svc, logins = stocked
    priya = who(svc, logins, "priya")
    trading = account(svc, priya, "Priya · Trading").id
    at = on_page(app_as(stocked, "priya"), "pages/funds.py")
    assert at.selectbox(key="funds_withdraw_account").options == ["Priya · Trading"]
    at.text_input(key="funds_withdraw_amount").input("1000000.01")
    at.button(key="funds_withdraw_submit").click().run()
    assert [e.value for e in at.error] == [
        "Cannot withdraw ₹10,00,000.01 from Priya · Trading: withdrawable now is "
        "₹10,00,000.00, the cash ₹10,00,000.00 less the used margin ₹0.00 that open orders "
        "and open intraday positions block"]
    at.text_input(key="funds_withdraw_amount").input("40000")
    at.button(key="funds_withdraw_submit").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Withdrew ₹40,000.00 of paper funds from Priya · Trading." in texts(at)
    assert svc.portfolio.funds(priya, trading).deposits == 960000


def test_a_withdrawal_keeps_the_page_on_the_withdraw_tab(stocked) -> None:
    at = on_page(app_as(stocked, "priya"), "pages/funds.py")
    at.session_state["funds_tab"] = "Withdraw funds"  # she opened the Withdraw tab
    at.run()
    at.text_input(key="funds_withdraw_amount").input("40000")
    at.button(key="funds_withdraw_submit").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Withdrew ₹40,000.00 of paper funds from Priya · Trading." in texts(at)
    # The message above the tabs moved them down; the browser still shows Withdraw funds.
    assert at.session_state["funds_tab"] == "Withdraw funds" and open_tab_index(at) == 1


def test_one_account_s_funds_show_as_rupee_metrics(stocked) -> None:
    svc, logins = stocked
    at = on_page(app_as(stocked, "priya"), "pages/funds.py")
    priya = who(svc, logins, "priya")
    at.selectbox(key="funds_account").set_value(account(svc, priya, "Priya · Trading").id).run()
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {"Available", "Used margin", "Cash", "Deposits", "Charges today",
                            "Realized P&L"}
    assert all(v.startswith("₹") and v[-3] == "." for v in metrics.values())


@pytest.mark.parametrize("period", ["day", "month", "custom"])
def test_statements_offer_three_csv_downloads_for_each_kind_of_period(stocked, period) -> None:
    at = on_page(app_as(stocked, "kamla"), "pages/funds.py")
    at.radio(key="funds_period").set_value(period).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    labels = [b.label for b in at.get("download_button")]
    for wanted in ("Trade book (CSV)", "P&L statement (CSV)", "Charges statement (CSV)"):
        assert wanted in labels


def test_square_off_on_the_portfolio_page_closes_intraday_positions(market) -> None:
    svc, _ = market
    priya = who(svc, _, "priya")
    account_id = account(svc, priya, "Priya · Trading").id
    svc.orders.place(priya, OrderRequest(account_id, "INFY", Side.BUY, 7, OrderType.MARKET,
                                         Product.MIS))
    fill_pending(svc)
    at = on_page(app_as(market, "priya"), "pages/portfolio.py")
    at.selectbox(key="portfolio_account").set_value(account_id).run()
    at.button(key="portfolio_square_off_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Square-off sent 1 order(s): SELL 7 INFY" in texts(at)
    fill_pending(svc)
    assert [p.quantity for p in svc.portfolio.positions(priya, account_id)] == [0]


def test_viewers_get_no_square_off_button(stocked) -> None:
    svc, _ = stocked
    at = on_page(app_as(stocked, "aarav"), "pages/portfolio.py")
    aarav = who(svc, _, "aarav")
    at.selectbox(key="portfolio_account").set_value(
        account(svc, aarav, "Rahul · Long-term").id).run()
    assert not at.exception
    assert not [b for b in at.button if b.key == "portfolio_square_off_go"]


def test_a_reversed_trade_book_range_on_the_orders_page_is_refused_with_the_rule(
    stocked,
) -> None:
    at = on_page(app_as(stocked, "rahul"), "pages/orders.py")
    at.date_input(key="orders_trades_from").set_value(date(2026, 11, 20))
    at.date_input(key="orders_trades_to").set_value(date(2026, 11, 17)).run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Start date 2026-11-20 is after end date 2026-11-17; pick a start on or before the end"]
    assert "No trades in this range." not in texts(at)


def test_a_closed_account_is_in_the_family_funds_and_can_be_picked_for_its_statements(
    stocked,
) -> None:
    svc, logins = stocked
    rahul = who(svc, logins, "rahul")
    intraday = account(svc, rahul, "Rahul · Intraday")
    svc.household.update_account(rahul, intraday.id, intraday.label, intraday.group, False)
    at = on_page(app_as(stocked, "rahul"), "pages/funds.py")
    funds = table_of(at, "Owner").set_index("Account")
    assert funds.loc["Whole family", "Deposits [₹]"] == "40,00,000.00"
    assert funds.loc["Rahul · Intraday (closed)", "Deposits [₹]"] == "10,00,000.00"
    assert "Rahul · Intraday (Rahul Sharma) (closed)" in at.selectbox(key="funds_account").options
    at.selectbox(key="funds_account").set_value(intraday.id).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    labels = [b.label for b in at.get("download_button")]
    assert {"Trade book (CSV)", "P&L statement (CSV)", "Charges statement (CSV)"} <= set(labels)
    assert "Intraday" not in " ".join(at.selectbox(key="funds_add_account").options)
    at = on_page(app_as(stocked, "rahul"), "pages/portfolio.py")
    family = table_of(at, "Net P&L [₹]").set_index("Account")
    assert family.loc["Whole family", "Deposits [₹]"] == "40,00,000.00"
    assert "Rahul · Intraday (closed)" in family.index


def test_a_closed_account_s_orders_and_trades_can_be_picked_on_the_orders_page(market) -> None:
    svc, logins = market
    rahul = who(svc, logins, "rahul")
    intraday = account(svc, rahul, "Rahul · Intraday")
    svc.orders.place(rahul, OrderRequest(intraday.id, "INFY", Side.BUY, 2, OrderType.MARKET,
                                         Product.MIS))
    fill_pending(svc)
    svc.orders.square_off_intraday(rahul, intraday.id)
    fill_pending(svc)
    svc.household.update_account(rahul, intraday.id, intraday.label, intraday.group, False)
    at = on_page(app_as(market, "rahul"), "pages/orders.py")
    assert "Rahul · Intraday (Rahul Sharma) (closed)" in at.selectbox(
        key="orders_account").options
    at.selectbox(key="orders_account").set_value(intraday.id).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(table_of(at, "Status")) == 2  # its buy and the square-off's sell


def test_the_portfolio_dates_a_live_replay_quote_as_the_replay_s_time(market) -> None:
    svc, logins = market
    priya = who(svc, logins, "priya")
    account_id = account(svc, priya, "Priya · Trading").id
    svc.orders.place(priya, OrderRequest(account_id, "INFY", Side.BUY, 2, OrderType.MARKET,
                                         Product.MIS))
    fill_pending(svc)
    with svc.db.transaction() as session:  # the demo's replay plays 2021 sessions
        session.execute(update(QuoteRow).where(QuoteRow.instrument_id == select(
            InstrumentRow.id).where(InstrumentRow.symbol == "INFY").scalar_subquery()).values(
            quote_time=datetime(2021, 3, 19, 8, 1, tzinfo=UTC), source="replay:sample 5-minute",
            updated_at=now_ist()))
    at = on_page(app_as(market, "priya"), "pages/portfolio.py")
    positions = table_of(at, "MTM [₹]").set_index("Symbol")
    assert positions.loc["INFY", "Price as of (IST)"] == "replay 2021-03-19 13:31"


def test_the_portfolio_names_each_price_s_source_and_lists_the_unpriced(market) -> None:
    svc, logins = market
    priya = who(svc, logins, "priya")
    account_id = account(svc, priya, "Priya · Trading").id
    for symbol in ("INFY", "TCS"):
        svc.orders.place(priya, OrderRequest(account_id, symbol, Side.BUY, 2, OrderType.MARKET,
                                             Product.MIS))
    fill_pending(svc)
    with svc.db.transaction() as session:  # TCS's quote goes, and no daily close is stored
        session.execute(delete(QuoteRow).where(QuoteRow.instrument_id == select(
            InstrumentRow.id).where(InstrumentRow.symbol == "TCS").scalar_subquery()))
    at = on_page(app_as(market, "priya"), "pages/portfolio.py")
    positions = table_of(at, "MTM [₹]").set_index("Symbol")
    assert positions.loc["TCS", "Price as of (IST)"] == "no price (counted at cost)"
    assert positions.loc["INFY", "Price as of (IST)"].startswith("today ")
    assert "No price for TCS: neither the feed nor a stored daily close prices it" in texts(at)
