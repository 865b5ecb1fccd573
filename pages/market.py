"""Market: NSE status and IST clock, the feed's health, the universe, movers, a sector map."""

import pandas as pd
import plotly.express as px
import streamlit as st

from core.clock import format_ist, now_ist, to_ist
from core.domain import Actor
from core.errors import ConfigError
from core.services.market import universe_heading
from pages.common import actor, fetch, footer, services

me = actor()
svc = services()
st.title("Market")
st.caption(
    "Universe: the NIFTY-50 stocks of the sample and any imported stocks, each on its own. It "
    "is not the index and no index value is shown."
)


@st.cache_data(ttl=5, show_spinner=False)
def _universe(_me: Actor, user_id: int) -> pd.DataFrame:
    return services().market.universe(_me)


@st.cache_data(ttl=5, show_spinner=False)
def _movers(_me: Actor, user_id: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    return services().market.movers(_me, n=5)


@st.cache_data(ttl=5, show_spinner=False)
def _sectors(_me: Actor, user_id: int) -> pd.DataFrame:
    return services().market.sector_map(_me)


@st.fragment(run_every=1)
def market_status() -> None:
    """NSE status from the calendar, with the IST clock."""
    try:
        state = svc.market.market_clock()
    except ConfigError as exc:
        st.metric("NSE cash market", "unknown")
        st.warning(str(exc))
        return
    if (ending := svc.market.calendar_warning(state.at)) is not None:
        st.warning(ending)
    cols = st.columns([1, 2])
    cols[0].metric("NSE cash market", state.status.value, help=state.detail)
    cols[1].metric("Time in India", format_ist(state.at))
    st.caption(state.detail)


@st.fragment(run_every=2)
def feed_status() -> None:
    """Where the price feed is: source, simulated time, lag; stalls are called out."""
    if svc.settings.feed_mode == "off":
        st.info("The market feed is off (FEED_MODE=off): prices below are stored daily closes.")
        return
    state = svc.feed.status()
    if state is None:
        st.warning("No market feed has run yet. Start the worker with `python -m jobs.worker`.")
        return
    now = now_ist()
    lag = state.lag_seconds(now)
    stalled = state.is_stalled(now, svc.settings.feed_stall_seconds)
    cols = st.columns(4)
    cols[0].metric("Feed", "stalled" if stalled else state.state,
                   help=f"{state.mode} mode · {state.source} · recorded state {state.state}")
    simulated = state.simulated_at
    cols[1].metric(
        f"Simulated time ({to_ist(simulated):%d %b %Y})" if simulated else "Simulated time",
        "—" if simulated is None else f"{to_ist(simulated):%H:%M:%S} IST",
        help=format_ist(simulated),
    )
    cols[2].metric("Lag", "—" if lag is None else f"{lag:.0f} s", help="Wall time since last tick")
    cols[3].metric("Ticks", f"{state.ticks:,}")
    st.caption(f"Source: {state.source} · {state.message or ''}")
    if stalled:
        st.error(
            f"The feed has stalled: no update for {lag or 0:.0f} s (limit "
            f"{svc.settings.feed_stall_seconds} s, last at {format_ist(state.last_tick_at)}). "
            "Prices below are frozen; check the worker."
        )
    elif state.state == "error":
        st.error(f"The feed stopped on an error: {state.message}")


market_status()
feed_status()

universe = fetch(lambda: _universe(me, me.user_id))
if universe is None or universe.empty:
    st.info("No instruments are stored yet. Import the sample data to see prices here.")
else:
    heading, counted = universe_heading(universe)
    st.subheader(heading)
    st.caption(counted)
    st.dataframe(universe, hide_index=True, key="market_universe")
    st.download_button(
        "Download CSV",
        universe.to_csv(index=False).encode("utf-8"),
        file_name=f"universe_{now_ist():%Y%m%d_%H%M%S}.csv",
        mime="text/csv",
        key="market_download",
        icon=":material/download:",
    )
    movers = fetch(lambda: _movers(me, me.user_id))
    if movers is not None:
        left, right = st.columns(2)
        with left:
            st.subheader("Top gainers")
            st.dataframe(movers[0], hide_index=True, key="market_gainers")
        with right:
            st.subheader("Top losers")
            st.dataframe(movers[1], hide_index=True, key="market_losers")
    sectors = fetch(lambda: _sectors(me, me.user_id))
    if sectors is not None and not sectors.empty:
        st.subheader("Sectors")
        figure = px.treemap(
            sectors,
            path=[px.Constant("Sectors"), "Sector", "Symbol"],
            values="Size",
            color="Change [%]",
            color_continuous_scale="RdYlGn",
            color_continuous_midpoint=0,
        )
        figure.update_traces(
            root_color="lightgrey",  # no colour (and so no "average") for the whole universe
            hovertemplate="%{label}<br>Change %{color:.2f}% (equal-weight within sector)"
            "<extra></extra>",
        )
        figure.update_layout(margin={"t": 30, "l": 0, "r": 0, "b": 0})
        st.caption("Same-day prices only; sector colour is the equal-weight average change.")
        st.plotly_chart(figure, key="market_sectors")

footer()
