"""Charges on NSE equity trades: brokerage, STT, exchange fees, stamp duty, GST, DP.

Pure (no I/O): the paper broker calls :func:`leg_charges` for every executed leg, backtests and
the order ticket may call :func:`round_trip`. Money is :class:`~decimal.Decimal` throughout;
floats are refused at the door so no rupee amount is ever binary-rounded.

Sources
-------
All rates come from MARKET_FACTS §2 (2.1 rates, 2.2 formula table), which cites:

- STT, 1 Oct 2024 - 31 Mar 2026 (Finance (No.2) Act 2024):
  https://traderji.com/community/threads/general-trading-chat.96368/page-8235 ;
  https://fvbb.com/ns/stt-hike-f-o-costs-to-rise-by-up-to-60/248328 ; https://basantsecurities.com/list.html
- STT from 1 Apr 2026 (Finance Act 2026): https://cleartax.in/s/securities-transaction-tax-stt ;
  https://devadhaantu.in/2026/02/06/budget-2026-enhanced-stt-rates/ ;
  https://www.finnovate.in/learn/blog/budget-2026-stt-hike-fno-trades-explained
- NSE transaction charge from 1 Oct 2024:
  https://www.ndtvprofit.com/markets/nse-revises-cash-fno-market-fees-october-1
- IPFT: https://support.fyers.in/portal/en/kb/articles/what-are-ipft-charges ;
  https://uatcdn.angelone.in/exchange-transaction-charges
- SEBI turnover fee, Zerodha brokerage and GST base:
  https://support.zerodha.com/category/account-opening/charges-at-zerodha/trading-account-charges/articles/what-is-the-brokerage-for-futures-and-options
- Stamp duty: https://nseindia.com/invest/first-time-investor-stamp-duty-charges-taxes
- DP charge: https://support.zerodha.com/category/account-opening/charges-at-zerodha/articles/what-do-dp-charges-mean
- Dhan brokerage:
  https://raw.githubusercontent.com/chirag127/oriz.in/main/src/data/api/brokers.json ;
  Upstox brokerage: http://upstox.com/pricing/pro-plan/ ; Upstox puts IPFT in the GST base:
  https://upstx.gustya.com/brokerage-charges
- STT rounding to the nearest rupee (Zerodha text):
  https://fundfolio.freshdesk.com/support/solutions/articles/82000478165

Conventions
-----------
- One leg is one executed order: turnover T = price × quantity; for options ``price`` is the
  premium, so T is the premium turnover P of the formula table.
- Every component is computed unrounded; :meth:`ChargeBreakdown.rounded` rounds the way a
  contract note does.
- Rates live in one dated table, :data:`RATE_SETS`; a rate set applies from its
  ``effective_from`` until the day before the next one's.

Not modelled
------------
- STT on exercised / assigned in-the-money options (0.125% of intrinsic value to 31 Mar 2026,
  0.15% from 1 Apr 2026): the desk closes options by trading, not exercise.
- BSE and its scrip-group-dependent transaction charges (NSE only).
- Auto square-off fee (Zerodha ₹50 + GST per auto-squared order).
- ₹40-per-order brokerage when the account balance is negative (Zerodha).
- DP charges at Dhan and Upstox (not sourced in MARKET_FACTS; their profiles charge ₹0 DP).
- Reduced DP charge for women first holders; pledge, demat, AMC and call-and-trade fees.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from enum import StrEnum
from types import MappingProxyType

from core.domain import parse_choice
from core.errors import ValidationError

RUPEE = Decimal("1")
PAISA = Decimal("0.01")
_ZERO = Decimal("0")
#: Enough digits to keep every product of a rate, a price and a quantity exact.
_PRECISION = 50


class Segment(StrEnum):
    """Which NSE equity segment (and product) a leg trades in."""

    EQUITY_DELIVERY = "equity_delivery"
    EQUITY_INTRADAY = "equity_intraday"
    EQUITY_FUTURES = "equity_futures"
    EQUITY_OPTIONS = "equity_options"


class Side(StrEnum):
    """Direction of a leg."""

    BUY = "buy"
    SELL = "sell"


def _pct(percent: str) -> Decimal:
    """Return a rate given in percent (``"0.025"`` for 0.025%) as a fraction of turnover."""
    return Decimal(percent) / 100


# --------------------------------------------------------------------------------------------
# The dated rate table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentRates:
    """Statutory and exchange rates of one segment, each a fraction of turnover per leg.

    Attributes
    ----------
    stt_buy, stt_sell : Decimal
        Securities transaction tax on buy and sell legs.
    exchange_txn : Decimal
        NSE transaction charge, each side.
    ipft : Decimal
        NSE Investor Protection Fund Trust levy, each side.
    sebi_fee : Decimal
        SEBI turnover fee (₹10 per crore), each side.
    stamp_buy : Decimal
        Stamp duty, buy legs only.
    """

    stt_buy: Decimal
    stt_sell: Decimal
    exchange_txn: Decimal
    ipft: Decimal
    sebi_fee: Decimal
    stamp_buy: Decimal

    def stt(self, side: Side) -> Decimal:
        """Return the STT rate of a leg on ``side``."""
        return self.stt_buy if side is Side.BUY else self.stt_sell


@dataclass(frozen=True, slots=True)
class RateSet:
    """The rates in force from ``effective_from`` until the next rate set starts.

    Attributes
    ----------
    effective_from : date
        First trade date (inclusive) the rates apply to.
    segments : Mapping[Segment, SegmentRates]
        Rates per segment (read-only).
    gst : Decimal
        GST rate on the taxable services (brokerage, exchange charge, SEBI fee, DP, and IPFT
        where the broker's profile says so).
    """

    effective_from: date
    segments: Mapping[Segment, SegmentRates]
    gst: Decimal


_SEBI_FEE = _pct("0.0001")

_RATES_2024_10_01 = RateSet(
    effective_from=date(2024, 10, 1),
    segments=MappingProxyType({
        Segment.EQUITY_DELIVERY: SegmentRates(
            stt_buy=_pct("0.1"), stt_sell=_pct("0.1"), exchange_txn=_pct("0.00297"),
            ipft=_pct("0.0001"), sebi_fee=_SEBI_FEE, stamp_buy=_pct("0.015")),
        Segment.EQUITY_INTRADAY: SegmentRates(
            stt_buy=_ZERO, stt_sell=_pct("0.025"), exchange_txn=_pct("0.00297"),
            ipft=_pct("0.0001"), sebi_fee=_SEBI_FEE, stamp_buy=_pct("0.003")),
        Segment.EQUITY_FUTURES: SegmentRates(
            stt_buy=_ZERO, stt_sell=_pct("0.02"), exchange_txn=_pct("0.00173"),
            ipft=_pct("0.0001"), sebi_fee=_SEBI_FEE, stamp_buy=_pct("0.002")),
        Segment.EQUITY_OPTIONS: SegmentRates(  # all of premium turnover
            stt_buy=_ZERO, stt_sell=_pct("0.1"), exchange_txn=_pct("0.03503"),
            ipft=_pct("0.0005"), sebi_fee=_SEBI_FEE, stamp_buy=_pct("0.003")),
    }),
    gst=_pct("18"),
)

# Finance Act 2026: only the F&O sell-side STT changes.
_RATES_2026_04_01 = RateSet(
    effective_from=date(2026, 4, 1),
    segments=MappingProxyType({
        **_RATES_2024_10_01.segments,
        Segment.EQUITY_FUTURES: replace(
            _RATES_2024_10_01.segments[Segment.EQUITY_FUTURES], stt_sell=_pct("0.05")),
        Segment.EQUITY_OPTIONS: replace(
            _RATES_2024_10_01.segments[Segment.EQUITY_OPTIONS], stt_sell=_pct("0.15")),
    }),
    gst=_RATES_2024_10_01.gst,
)

#: Every rate set, oldest first. Add a new one here when a rate changes; never edit a past one.
RATE_SETS: tuple[RateSet, ...] = (_RATES_2024_10_01, _RATES_2026_04_01)


def rates_for(trade_date: date) -> RateSet:
    """Return the rate set in force on ``trade_date``.

    Raises
    ------
    ValidationError
        If ``trade_date`` is not a date, or falls before the earliest rate set.
    """
    if isinstance(trade_date, datetime) or not isinstance(trade_date, date):
        raise ValidationError(
            f"Trade date must be a calendar date (the IST trading day), not "
            f"{type(trade_date).__name__}: got {trade_date!r}")
    earliest = RATE_SETS[0].effective_from
    if trade_date < earliest:
        raise ValidationError(
            f"Trade date must be on or after {earliest.isoformat()} (earliest supported date "
            f"of the charge rates); got {trade_date.isoformat()}")
    current = RATE_SETS[0]
    for rate_set in RATE_SETS[1:]:
        if rate_set.effective_from <= trade_date:
            current = rate_set
    return current


# --------------------------------------------------------------------------------------------
# Broker profiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerageRule:
    """Brokerage of one executed order in one segment.

    The fee is ``flat_inr`` per executed order, or ``min(flat_inr, rate × turnover)`` when
    ``rate`` is set (the "₹20 or 0.03%, whichever is lower" schedules).
    """

    flat_inr: Decimal
    rate: Decimal | None = None

    def fee(self, turnover: Decimal) -> Decimal:
        """Return the brokerage in rupees of an order of ``turnover`` rupees."""
        if self.rate is None:
            return self.flat_inr
        return min(self.flat_inr, self.rate * turnover)


_FREE = BrokerageRule(flat_inr=_ZERO)
_FLAT_20 = BrokerageRule(flat_inr=Decimal("20"))
_20_OR_003 = BrokerageRule(flat_inr=Decimal("20"), rate=_pct("0.03"))
_20_OR_005 = BrokerageRule(flat_inr=Decimal("20"), rate=_pct("0.05"))


@dataclass(frozen=True, slots=True)
class BrokerageProfile:
    """One broker's fee schedule.

    Attributes
    ----------
    name : str
        Registry key in :data:`BROKERAGE_PROFILES`.
    brokerage : Mapping[Segment, BrokerageRule]
        Brokerage per executed order, per segment.
    dp_charge_inr : Decimal
        Depository charge per scrip per day on delivery sells, before GST (GST is added in
        :attr:`ChargeBreakdown.gst`).
    gst_on_ipft : bool
        Whether the broker puts the IPFT levy in the GST base. ``False`` means GST is on
        brokerage + NSE transaction charge + SEBI fee (+ DP), the base Zerodha's charges page
        states and the one that reproduces every worked example of MARKET_FACTS §2.2 to the
        paisa. Upstox includes IPFT (``True``).
    """

    name: str
    brokerage: Mapping[Segment, BrokerageRule]
    dp_charge_inr: Decimal = _ZERO
    gst_on_ipft: bool = False


#: Zerodha: ₹0 delivery; intraday and futures ₹20 or 0.03%, whichever is lower; options ₹20
#: flat; DP ₹13.50 + GST per scrip per day on delivery sells.
ZERODHA = BrokerageProfile(
    name="zerodha",
    brokerage=MappingProxyType({
        Segment.EQUITY_DELIVERY: _FREE,
        Segment.EQUITY_INTRADAY: _20_OR_003,
        Segment.EQUITY_FUTURES: _20_OR_003,
        Segment.EQUITY_OPTIONS: _FLAT_20,
    }),
    dp_charge_inr=Decimal("13.50"),
    gst_on_ipft=False,
)

#: Dhan: ₹0 delivery; intraday ₹20 or 0.03%; F&O ₹20 flat. DP and the GST treatment of IPFT
#: are not sourced: ₹0 DP and GST without IPFT.
DHAN = BrokerageProfile(
    name="dhan",
    brokerage=MappingProxyType({
        Segment.EQUITY_DELIVERY: _FREE,
        Segment.EQUITY_INTRADAY: _20_OR_003,
        Segment.EQUITY_FUTURES: _FLAT_20,
        Segment.EQUITY_OPTIONS: _FLAT_20,
    }),
)

#: Upstox: ₹20 per delivery order; intraday and futures ₹20 or 0.05%; options ₹20 flat; IPFT
#: in the GST base. DP is not sourced: ₹0.
UPSTOX = BrokerageProfile(
    name="upstox",
    brokerage=MappingProxyType({
        Segment.EQUITY_DELIVERY: _FLAT_20,
        Segment.EQUITY_INTRADAY: _20_OR_005,
        Segment.EQUITY_FUTURES: _20_OR_005,
        Segment.EQUITY_OPTIONS: _FLAT_20,
    }),
    gst_on_ipft=True,
)

#: The paper desk charges exactly like Zerodha, so paper results are not flattered by
#: cheaper-than-real costs.
PAPER = replace(ZERODHA, name="paper")

#: Broker name → fee schedule.
BROKERAGE_PROFILES: Mapping[str, BrokerageProfile] = MappingProxyType(
    {p.name: p for p in (ZERODHA, DHAN, UPSTOX, PAPER)})
DEFAULT_PROFILE = PAPER


def brokerage_profile(name: str) -> BrokerageProfile:
    """Return the fee schedule registered under ``name``.

    Raises
    ------
    ValidationError
        If no profile has that name; the message lists the known ones.
    """
    try:
        return BROKERAGE_PROFILES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(BROKERAGE_PROFILES))
        raise ValidationError(
            f"Unknown brokerage profile {name!r}; choose one of {known}") from None


# --------------------------------------------------------------------------------------------
# The breakdown
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChargeBreakdown:
    """Contract-note style charges of one leg (or a sum of legs), all in rupees (₹).

    Figures are unrounded unless the object came from :meth:`rounded`.

    Attributes
    ----------
    turnover : Decimal
        Price × quantity (premium × quantity for options). Not a charge.
    brokerage, stt, exchange_txn, ipft, sebi_fee, stamp_duty : Decimal
        The charges of MARKET_FACTS §2.2.
    gst : Decimal
        18% of brokerage + exchange_txn + sebi_fee + dp_charge (+ ipft if the profile says so).
    dp_charge : Decimal
        Depository charge before GST (delivery sells only).
    """

    turnover: Decimal
    brokerage: Decimal
    stt: Decimal
    exchange_txn: Decimal
    ipft: Decimal
    sebi_fee: Decimal
    stamp_duty: Decimal
    gst: Decimal
    dp_charge: Decimal

    @property
    def total(self) -> Decimal:
        """Return the sum of every charge in rupees (turnover excluded)."""
        return (self.brokerage + self.stt + self.exchange_txn + self.ipft + self.sebi_fee
                + self.stamp_duty + self.gst + self.dp_charge)

    def rounded(self) -> ChargeBreakdown:
        """Return a copy rounded the way a contract note shows it.

        STT to the nearest rupee (Zerodha: STT "will be rounded off to the nearest rupee"),
        every other figure to the paisa, both ROUND_HALF_UP; ``total`` of the copy is then the
        sum of the rounded figures. Rounding is per breakdown: round a :func:`round_trip` result
        and STT is rounded once over both legs, round each leg and it is rounded per leg.
        """
        values = {f.name: getattr(self, f.name).quantize(PAISA, rounding=ROUND_HALF_UP)
                  for f in fields(self)}
        values["stt"] = self.stt.quantize(RUPEE, rounding=ROUND_HALF_UP).quantize(PAISA)
        return ChargeBreakdown(**values)

    def __add__(self, other: ChargeBreakdown) -> ChargeBreakdown:
        """Return the field-by-field sum of two breakdowns."""
        if not isinstance(other, ChargeBreakdown):
            return NotImplemented
        return ChargeBreakdown(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                                  for f in fields(self)})


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _decimal(value: object, what: str) -> Decimal:
    """Return ``value`` as a finite Decimal; refuse floats, bools and non-numbers."""
    if isinstance(value, float):
        raise ValidationError(
            f"{what} must be given as an int, str or Decimal so money stays exact, not a float; "
            f"got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise ValidationError(
            f"{what} must be an int, str or Decimal; got {type(value).__name__} {value!r}")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise ValidationError(f"{what} must be a number; got {value!r}") from None
    if not number.is_finite():
        raise ValidationError(f"{what} must be a finite number; got {value!r}")
    return number


def _price(value: object) -> Decimal:
    """Return a validated price (premium for options) in rupees."""
    price = _decimal(value, "Price")
    if price <= 0:
        raise ValidationError(f"Price must be greater than ₹0; got {value!r}")
    return price


def _quantity(value: object) -> Decimal:
    """Return a validated quantity: a whole number of shares (units for F&O) above zero."""
    quantity = _decimal(value, "Quantity")
    if quantity <= 0:
        raise ValidationError(f"Quantity must be greater than 0; got {value!r}")
    if quantity != quantity.to_integral_value():
        raise ValidationError(f"Quantity must be a whole number; got {value!r}")
    return quantity


def _profile(profile: BrokerageProfile | str) -> BrokerageProfile:
    return profile if isinstance(profile, BrokerageProfile) else brokerage_profile(profile)


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


def leg_charges(
    segment: Segment | str,
    side: Side | str,
    price: Decimal | int | str,
    quantity: Decimal | int | str,
    trade_date: date,
    profile: BrokerageProfile | str = DEFAULT_PROFILE,
    *,
    dp_applies: bool = True,
) -> ChargeBreakdown:
    """Return the unrounded charges of one executed leg.

    Parameters
    ----------
    segment : Segment or str
        Segment of the leg (``"equity_delivery"`` ...).
    side : Side or str
        ``"buy"`` or ``"sell"``.
    price : Decimal, int or str
        Execution price in rupees; the premium for options. Floats are refused.
    quantity : Decimal, int or str
        Whole number of shares (units, i.e. lots × lot size, for F&O).
    trade_date : date
        IST trading day; picks the rate set.
    profile : BrokerageProfile or str
        Fee schedule or its name in :data:`BROKERAGE_PROFILES`; defaults to ``paper``.
    dp_applies : bool
        Whether a delivery sell pays the DP charge. DP is charged once per scrip per day, so the
        caller passes ``False`` for the second and later delivery sells of a scrip on a day.

    Returns
    -------
    ChargeBreakdown
        Every component in rupees, unrounded; call :meth:`ChargeBreakdown.rounded` for the
        contract-note view.

    Raises
    ------
    ValidationError
        On an unknown segment, side or profile, a non-positive or float price, a non-positive,
        fractional or float quantity, or a trade date before the first rate set.
    """
    seg = segment if isinstance(segment, Segment) else parse_choice(Segment, segment, "segment")
    leg_side = side if isinstance(side, Side) else parse_choice(Side, side, "side")
    px = _price(price)
    qty = _quantity(quantity)
    rate_set = rates_for(trade_date)
    schedule = _profile(profile)
    rates = rate_set.segments[seg]
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        turnover = px * qty
        brokerage = schedule.brokerage[seg].fee(turnover)
        stt = rates.stt(leg_side) * turnover
        exchange_txn = rates.exchange_txn * turnover
        ipft = rates.ipft * turnover
        sebi_fee = rates.sebi_fee * turnover
        stamp_duty = rates.stamp_buy * turnover if leg_side is Side.BUY else _ZERO
        dp_sell = seg is Segment.EQUITY_DELIVERY and leg_side is Side.SELL and dp_applies
        dp_charge = schedule.dp_charge_inr if dp_sell else _ZERO
        gst_base = brokerage + exchange_txn + sebi_fee + dp_charge
        if schedule.gst_on_ipft:
            gst_base += ipft
        gst = rate_set.gst * gst_base
    return ChargeBreakdown(
        turnover=turnover, brokerage=brokerage, stt=stt, exchange_txn=exchange_txn, ipft=ipft,
        sebi_fee=sebi_fee, stamp_duty=stamp_duty, gst=gst, dp_charge=dp_charge)


def round_trip(
    segment: Segment | str,
    buy_price: Decimal | int | str,
    sell_price: Decimal | int | str,
    quantity: Decimal | int | str,
    trade_date: date,
    profile: BrokerageProfile | str = DEFAULT_PROFILE,
    *,
    sell_date: date | None = None,
    dp_applies: bool = True,
) -> ChargeBreakdown:
    """Return the unrounded charges of buying and selling ``quantity``, summed.

    The buy executes on ``trade_date`` and the sell on ``sell_date`` (default the same day),
    each with the rates in force on its own date. Other parameters as in :func:`leg_charges`;
    ``turnover`` of the result is buy plus sell turnover.
    """
    buy = leg_charges(segment, Side.BUY, buy_price, quantity, trade_date, profile)
    sell = leg_charges(segment, Side.SELL, sell_price, quantity,
                       trade_date if sell_date is None else sell_date, profile,
                       dp_applies=dp_applies)
    return buy + sell
