"""The Market page's data: the universe with prices, movers, a sector map and the NSE clock.

Prices come from the feed's quotes when one exists for a symbol, otherwise from the last two
stored daily bars (last close against the close before). Each row names its source and time,
because the two are different days: the replay plays 2021 sessions, the daily sample ends in
2025. The universe is the instrument master: the NIFTY-50 stocks of the shipped sample
(``data/sample/sectors.csv``) and any stock an import added. It is not the NIFTY 50 index and
nothing here may be labelled as if it were; a price is called "sample" only when it is one of
the shipped sample files' bars, else "imported".
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import (
    IST,
    MARKET_CLOSE,
    MarketState,
    calendar_warning,
    format_ist,
    market_state,
    now_ist,
    to_ist,
)
from core.domain import Actor, Interval, Quote
from core.feeds.replay import REPLAY_SOURCE
from core.marketdata.instruments import sample_last_days, sample_sectors, sample_symbols
from core.marketdata.quotes import read_quotes
from core.marketdata.store import all_instruments
from core.services.base import ServiceBase
from db.models import BarRow

UNIVERSE_NAME = "NIFTY-50 constituents (sample data)"
#: The heading when the master also holds stocks that are not in the sample (imported ones).
MIXED_UNIVERSE_NAME = "NIFTY-50 sample and imported stocks"
UNCLASSIFIED = "Unclassified"
DAILY_SOURCE = "daily close (sample)"
IMPORTED_DAILY_SOURCE = "daily close (imported)"
IMPORTED_REPLAY_SOURCE = "replay:imported 5-minute"
NO_DATA_SOURCE = "no price stored"
UNIVERSE_COLUMNS = [
    "Symbol",
    "Sector",
    "Last price [₹]",
    "Change [₹]",
    "Change [%]",
    "Volume",
    "As of (IST)",
    "Source",
]


def _last_two_daily(session: Session) -> dict[int, list[tuple[datetime, Decimal, int]]]:
    """Return each instrument's two latest daily bars (newest first), in one query."""
    ranked = select(
        BarRow.instrument_id,
        BarRow.ts,
        BarRow.close,
        BarRow.volume,
        func.row_number()
        .over(partition_by=BarRow.instrument_id, order_by=BarRow.ts.desc())
        .label("rank"),
    ).where(BarRow.interval == Interval.D1.value).subquery()
    rows = session.execute(
        select(ranked.c.instrument_id, ranked.c.ts, ranked.c.close, ranked.c.volume)
        .where(ranked.c.rank <= 2)
        .order_by(ranked.c.instrument_id, ranked.c.rank)
    ).all()
    latest: dict[int, list[tuple[datetime, Decimal, int]]] = {}
    for instrument_id, ts, close, volume in rows:
        latest.setdefault(instrument_id, []).append((ts, close, volume))
    return latest


def _daily_row(symbol: str, bars: list[tuple[datetime, Decimal, int]]) -> dict[str, object]:
    if not bars:
        return {"Source": NO_DATA_SOURCE}
    ts, close, volume = bars[0]
    day = to_ist(ts).date()
    sample_until = sample_last_days(Interval.D1).get(symbol)
    from_sample = sample_until is not None and day <= sample_until
    previous = bars[1][1] if len(bars) > 1 else None
    change = None if previous is None else close - previous
    return {
        "Last price [₹]": float(close),
        "Change [₹]": None if change is None else float(change),
        "Change [%]": None if change is None or not previous else float(change / previous * 100),
        "Volume": int(volume),
        "As of (IST)": format_ist(datetime.combine(day, MARKET_CLOSE, tzinfo=IST)),
        "Source": DAILY_SOURCE if from_sample else IMPORTED_DAILY_SOURCE,
    }


def _quote_row(quote: Quote) -> dict[str, object]:
    change, pct = quote.change, quote.change_pct
    return {
        "Last price [₹]": float(quote.ltp),
        "Change [₹]": None if change is None else float(change),
        "Change [%]": None if pct is None else float(pct),
        "Volume": quote.volume,
        "As of (IST)": format_ist(quote.quote_time),
        "Source": (
            IMPORTED_REPLAY_SOURCE
            if quote.source == REPLAY_SOURCE and quote.symbol not in sample_last_days(Interval.M5)
            else quote.source
        ),
    }


def universe_heading(frame: pd.DataFrame) -> tuple[str, str]:
    """Return the universe's heading and a caption counting what is priced and from where.

    ``frame`` is :meth:`MarketService.universe`'s. Stocks outside the sample master were
    imported: the heading then stops calling the list the sample's NIFTY-50 constituents.
    """
    imported = int((~frame["Symbol"].isin(sample_symbols())).sum())
    title = MIXED_UNIVERSE_NAME if imported else UNIVERSE_NAME
    source = frame["Source"].astype(str)
    priced = int(frame["Last price [₹]"].notna().sum())
    from_imports = int(source.isin([IMPORTED_DAILY_SOURCE, IMPORTED_REPLAY_SOURCE]).sum())
    stocks = f"{len(frame)} stocks" + (f" ({imported} imported)" if imported else "")
    caption = (
        f"{priced} of {stocks} have a price: {priced - from_imports} from the sample, "
        f"{from_imports} from imported bars. Each row names its source: replay quotes are "
        "simulated from a stored 5-minute session; daily closes are the last stored day."
    )
    return title, caption


def _same_day(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep the rows whose price is from the trading day most rows share."""
    if frame.empty:
        return frame
    day = frame["As of (IST)"].astype(str).str[:10]
    return frame[day == day.mode().iloc[0]]


class MarketService(ServiceBase):
    """Read-only market views for any logged-in user."""

    def universe(self, actor: Actor) -> pd.DataFrame:
        """Return the universe with last price, day change and volume, one row per symbol.

        Columns are :data:`UNIVERSE_COLUMNS`; change is None when no previous close is known.
        """
        sectors = sample_sectors()
        records: list[dict[str, object]] = []
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            # With the feed off, stored quotes are leftovers of an earlier replay: not prices now.
            quotes = read_quotes(session) if self.settings.feed_mode != "off" else {}
            daily = _last_two_daily(session)
            for instrument in all_instruments(session):
                quote = quotes.get(instrument.symbol)
                values = (
                    _quote_row(quote)
                    if quote is not None
                    else _daily_row(instrument.symbol, daily.get(instrument.id, []))
                )
                sector = instrument.sector or sectors.get(instrument.symbol) or UNCLASSIFIED
                records.append({"Symbol": instrument.symbol, "Sector": sector, **values})
        frame = pd.DataFrame.from_records(records, columns=UNIVERSE_COLUMNS)
        for column in ("Last price [₹]", "Change [₹]", "Change [%]"):
            frame[column] = frame[column].astype("float64").round(2)
        frame["Volume"] = frame["Volume"].astype("Int64")
        return frame

    def movers(self, actor: Actor, n: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Return the ``n`` biggest gainers and losers by change % (rising/falling only).

        Only symbols priced on the same day are compared (the day most symbols share), so a
        replayed 2021 session never ranks against a 2025 daily close.
        """
        frame = _same_day(self.universe(actor).dropna(subset=["Change [%]"]))
        columns = ["Symbol", "Last price [₹]", "Change [%]", "As of (IST)", "Source"]
        gainers = frame[frame["Change [%]"] > 0].sort_values("Change [%]", ascending=False)
        losers = frame[frame["Change [%]"] < 0].sort_values("Change [%]", ascending=True)
        return (
            gainers.head(n)[columns].reset_index(drop=True),
            losers.head(n)[columns].reset_index(drop=True),
        )

    def sector_map(self, actor: Actor, by_volume: bool = False) -> pd.DataFrame:
        """Return treemap data: Sector, Symbol, Size (equal, or volume) and Change [%].

        Equal sizes are the default because volumes from different sources and days do not
        compare. Symbols without a change (no previous close) are left out.
        """
        frame = _same_day(self.universe(actor).dropna(subset=["Change [%]"]))
        size = frame["Volume"].fillna(0).astype("float64") if by_volume else 1.0
        result = pd.DataFrame(
            {
                "Sector": frame["Sector"],
                "Symbol": frame["Symbol"],
                "Size": size,
                "Change [%]": frame["Change [%]"],
            }
        )
        return result.sort_values(["Sector", "Symbol"]).reset_index(drop=True)

    def market_clock(self, at: datetime | None = None) -> MarketState:
        """Return the NSE cash market's status at ``at`` (default now) from the NSE calendar."""
        return market_state(at)

    def calendar_warning(self, at: datetime | None = None) -> str | None:
        """Return a warning when the trading calendar ends soon after ``at`` (default now)."""
        return calendar_warning(to_ist(at or now_ist()).date())
