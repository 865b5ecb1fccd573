"""Chart: candles of any stored symbol with overlays, RSI/MACD panels, trade markers and notes."""

from datetime import date

import streamlit as st

from core.domain import Actor
from core.services.charts import INTERVAL_LABELS, OVERLAY_LABELS, ChartData
from pages.chart_figure import build_figure
from pages.common import actor, fetch, footer, services

OVERLAY_CHOICES = ("ema20", "ema50", "vwap", "bollinger")
EARLIEST = date(1990, 1, 1)
INTERVAL_NAMES = {i.value: label for i, label in INTERVAL_LABELS.items()}
BY_USER = {Actor: lambda a: a.user_id}


@st.cache_data(ttl=60, show_spinner=False, hash_funcs=BY_USER)
def _symbols(database_url: str, me: Actor) -> list[str]:
    return services().charts.symbols(me)


@st.cache_data(ttl=60, show_spinner="Loading bars…", hash_funcs=BY_USER)
def _chart(
    database_url: str,
    me: Actor,
    symbol: str,
    interval: str,
    start: date | None,
    end: date | None,
    overlays: frozenset[str],
) -> ChartData:
    return services().charts.chart(me, symbol, interval, start, end, overlays)


me = actor()
url = services().db.url  # part of every cache key: one process may serve several databases
st.title("Chart")
symbols = fetch(lambda: _symbols(url, me)) or []
if not symbols:
    st.info("No instruments are stored yet. A household admin can import bars on Import data.")
    footer()
    st.stop()

left, middle, right = st.columns([2, 3, 3])
symbol = left.selectbox(
    "Symbol",
    symbols,
    index=symbols.index("RELIANCE") if "RELIANCE" in symbols else 0,
    key="chart_symbol",
    help="Type to search",
)
interval = middle.radio(
    "Interval",
    list(INTERVAL_NAMES),
    index=1,
    format_func=INTERVAL_NAMES.__getitem__,
    horizontal=True,
    key="chart_interval",
)
overlays = right.multiselect(
    "Overlays",
    OVERLAY_CHOICES,
    default=["ema20"],
    format_func=OVERLAY_LABELS.__getitem__,
    key="chart_overlays",
)
cols = st.columns([2, 2, 1, 1])
start = cols[0].date_input(
    "From", value=None, min_value=EARLIEST, key="chart_start", help="Empty: the default range"
)
end = cols[1].date_input(
    "To", value=None, min_value=EARLIEST, key="chart_end", help="Empty: the last stored bar"
)
panels = [
    name
    for name, on in (
        ("rsi", cols[2].toggle("RSI", key="chart_rsi")),
        ("macd", cols[3].toggle("MACD", key="chart_macd")),
    )
    if on
]

wanted = frozenset([*overlays, *panels])
data = fetch(lambda: _chart(url, me, symbol, interval, start, end, wanted))
if data is not None:
    if data.frame.empty:
        st.info(
            f"{data.notes[0]}. A household admin can import them on Import data; or pick "
            "another interval or range."
        )
    else:
        st.caption(f"{data.label} · {data.start} to {data.end} · {len(data.frame)} bars (IST)")
        st.plotly_chart(build_figure(data, panels), key="chart_figure", config={"scrollZoom": True})
        for note in data.notes:
            st.caption(note)
        if not data.markers:
            st.caption("No trades on this symbol yet.")
        st.download_button(
            "Download shown bars (CSV)",
            data.to_csv(),
            file_name=f"{data.instrument.symbol}_{data.interval.value}_{data.start}_{data.end}.csv",
            mime="text/csv",
            key="chart_download",
        )
footer()
