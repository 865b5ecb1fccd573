"""The Signals page's pieces: model banner, signal detail with its chart, performance, admin.

Rendering only: every figure comes from the signal service or the model registry.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.clock import format_ist
from core.domain import Actor
from core.services.signal_registry import ModelState, ModelVersion, calibrator_label
from core.services.signal_views import (
    Performance,
    desk_price_warning,
    edge_statement,
    evidence_frame,
    figures_lines,
    journal_file_stem,
    journal_heading,
    no_bars_note,
    probability_of,
)
from core.services.signals import SignalChart
from core.trading import OrderRequest, OrderType, Product, Side
from engines.risk_types import RiskLimits
from engines.signal_types import Action, Signal
from pages.chart_figure import DOWN, UP
from pages.common import attempt, fetch, keep_pick, services
from pages.trading_parts import flash, rupees, table

FLASH = "signals_flash"
TRACE = "signals_trace"
LEVEL_COLOURS = {"Entry": "#1f77b4", "Stop-loss": DOWN, "Target 1": UP, "Target 2": UP,
                 "Target 3": UP}


def model_banner(state: ModelState | None) -> ModelVersion | None:
    """Say which model is in use (and why, if not the active one), or why there is none."""
    if state is None:
        return None
    if state.training is not None and state.in_use is None:
        st.info(f"{state.problem}", icon=":material/model_training:")
    elif state.problem:
        st.warning(state.problem)
    if state.fallback_reason:
        st.error(state.fallback_reason)
    version = state.in_use
    if version is not None:
        held_out = version.report.get("holdout_from")
        refit = (f"; the figures below test a calibrator fitted before {held_out} on the "
                 "held-out rest, and the one in use was then re-fitted on the whole window"
                 if held_out else "")
        st.markdown(f"**Model in use: {version.version}** (trees on labels "
                    f"{version.train_from}..{version.train_to}; calibrated "
                    f"{version.calibration_from}..{version.calibration_to}, "
                    f"{state.calibrators or calibrator_label(version)}{refit})")
        figures(version)
        for ceiling in state.ceilings:
            st.warning(ceiling, icon=":material/block:")
    return version


def figures(version: ModelVersion) -> None:
    """Show the measured figures of ``version`` with their date and data, and the edge's size."""
    for line in figures_lines(version):
        st.caption(line)
    st.caption(edge_statement(version))


def headline(signal: Signal) -> None:
    """Show a signal's action, probability, levels and regime as metrics."""
    cols = st.columns(5)
    cols[0].metric("Action", signal.action.value)
    side = probability_of(signal.entry, signal.stop_loss).lower()
    cols[1].metric(f"Probability ({side})", f"{signal.probability:.2f}",
                   help="Calibrated chance that target 1 comes before the stop-loss within the "
                        "horizon (for a HOLD: of the direction whose levels are shown)")
    cols[2].metric("Confidence", f"{signal.confidence:.2f}")
    cols[3].metric("Entry", rupees(signal.entry))
    cols[4].metric("Stop-loss", rupees(signal.stop_loss))
    targets = " · ".join(f"T{i} {rupees(t)}" for i, t in enumerate(signal.targets, start=1))
    levels_for = "" if signal.direction.value != "FLAT" else " (levels for reference)"
    st.markdown(f"**Direction** {signal.direction.value}{levels_for} · **regime** "
                f"{signal.regime.value} · **targets** {targets} · risk:reward "
                f"{signal.risk_reward:.2f} · strategies agree {signal.agreement}/{signal.voters}"
                f" · horizon {signal.horizon_bars} bars · bar of {format_ist(signal.as_of)[:10]}"
                f" · model {signal.model_version} · trace {signal.trace_id}")


def build_figure(chart: SignalChart) -> go.Figure:
    """Return daily candles around the signal with entry, stop-loss and targets drawn."""
    bars, signal = chart.bars, chart.signal
    x = pd.DatetimeIndex(bars.index).tz_convert("Asia/Kolkata").tz_localize(None)
    fig = go.Figure(go.Candlestick(x=x, open=bars["open"], high=bars["high"], low=bars["low"],
                                   close=bars["close"], name=signal.symbol,
                                   increasing_line_color=UP, decreasing_line_color=DOWN))
    start = pd.Timestamp(signal.as_of).tz_convert("Asia/Kolkata").tz_localize(None)
    levels = {"Entry": signal.entry, "Stop-loss": signal.stop_loss,
              **{f"Target {i}": t for i, t in enumerate(signal.targets, start=1)}}
    end = x[-1] if len(x) and x[-1] > start else start + pd.Timedelta(days=signal.horizon_bars)
    for name, price in levels.items():
        fig.add_trace(go.Scatter(
            x=[start, end], y=[float(price), float(price)], mode="lines+text", name=name,
            text=["", f"{name} {rupees(price)}"], textposition="top left",
            line={"color": LEVEL_COLOURS[name], "width": 1.5,
                  "dash": "solid" if name in ("Entry", "Stop-loss") else "dash"}))
    fig.add_vline(x=start, line={"color": "grey", "dash": "dot", "width": 1})
    fig.update_layout(height=460, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      xaxis_rangeslider_visible=False, hovermode="x unified",
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1,
                              "xanchor": "right"})
    fig.update_yaxes(title_text="Price (₹)")
    return fig


def detail(me: Actor, trace_id: str, version: ModelVersion | None, key: str,
           past: bool = False) -> None:
    """Show one journaled signal: headline, chart, evidence, model figures, disclaimer.

    ``key`` prefixes the widget keys, so the Signal, Scan and journal tabs may each show one.
    A ``past`` signal (opened from the journal) shows its stored fields and outcome; it is
    not offered to the risk gate, its levels being of its own bar.
    """
    chart = fetch(lambda: services().signals.chart(me, trace_id))
    if chart is None:
        return
    signal = chart.signal
    st.subheader(f"{signal.symbol}: {signal.action.value}")
    headline(signal)
    quote = (fetch(lambda: services().feed.quotes()) or {}).get(signal.symbol)  # the desk's
    gap = desk_price_warning(signal, quote.ltp if quote is not None else None)
    if gap is not None:
        st.warning(gap, icon=":material/warning:")
    if not past:
        risk_check(me, signal, key)
    if chart.outcome != "OPEN":
        st.markdown(f"**Outcome:** {chart.outcome} on {format_ist(chart.outcome_at)[:10]} at "
                    f"{rupees(chart.outcome_price)}")
    st.plotly_chart(build_figure(chart), key=f"{key}_chart")
    st.markdown("**Evidence**")
    st.markdown("\n".join(f"- **{e.source} · {e.name}**: {e.detail}" for e in signal.evidence))
    with st.expander("Evidence as a table"):
        st.dataframe(evidence_frame(signal), hide_index=True, key=f"{key}_evidence")
    if version is not None and version.version == signal.model_version:
        figures(version)
    else:
        st.caption(f"Computed with model {signal.model_version} (not the model in use now).")
    st.caption(signal.disclaimer)


def signal_request(signal: Signal, account_id: int, quantity: int, amo: bool) -> OrderRequest:
    """Return the order a signal suggests: a LIMIT at its entry with its stop-loss.

    A BUY is a delivery (CNC) buy; a SELL is an intraday (MIS) short, the only short a cash
    account may hold.
    """
    buy = signal.action is Action.BUY
    return OrderRequest(
        account_id=account_id, symbol=signal.symbol, side=Side.BUY if buy else Side.SELL,
        quantity=quantity, order_type=OrderType.LIMIT,
        product=Product.CNC if buy else Product.MIS, price=signal.entry, amo=amo,
        stop_loss=signal.stop_loss)


def risk_check(me: Actor, signal: Signal, key: str) -> None:
    """Ask the risk gate what it would approve for the signal on a chosen account."""
    if signal.action is Action.HOLD:
        return
    accounts = fetch(lambda: services().orders.tradable_accounts(me)) or []
    if not accounts:
        return
    labels = {a.id: a.label for a in accounts}
    house = RiskLimits()  # the household defaults' size cap; the gate cuts it to the budget
    wanted = max(1, min(house.max_order_quantity, int(house.max_order_value / signal.entry)))
    with st.form(f"{key}_risk"):
        cols = st.columns([2, 1, 1, 1])
        account_id = cols[0].selectbox("Account", list(labels), format_func=labels.get,
                                       key=f"{key}_risk_account")
        quantity = cols[1].number_input(
            "Shares wanted", min_value=1, value=wanted, step=1, key=f"{key}_risk_quantity",
            help="The gate sizes this down to the account's risk budget at the signal's stop")
        amo = cols[2].checkbox("AMO", key=f"{key}_risk_amo",
                               help="Check it as an after-market order (market closed)")
        asked = cols[3].form_submit_button("Check with the risk gate", key=f"{key}_risk_check")
    if not asked:
        return
    request = signal_request(signal, account_id, int(quantity), amo)
    decision = fetch(lambda: services().risk_gate.preview(me, request, signal.stop_loss))
    if decision is None:
        return
    text = (f"{request.side} {signal.symbol} on {labels[account_id]} ({request.product}, stop "
            f"{rupees(signal.stop_loss)}, {decision.level} risk): {decision.summary()}")
    (st.success if decision.approved and not decision.warnings else
     st.warning if decision.approved else st.error)(text)


def scan_section(me: Actor, version: ModelVersion | None) -> None:
    """Scan every symbol with a progress bar; show the ranked table; open one signal."""
    if st.button("Scan all symbols", key="signals_scan_button", icon=":material/radar:"):
        bar = st.progress(0.0, text="Scanning…")

        def _tick(done: int, total: int, symbol: str) -> None:
            bar.progress(done / total, text=f"Scanned {symbol} ({done} of {total})")

        frame = fetch(lambda: services().signals.scan(me, progress=_tick))
        bar.empty()
        if frame is not None:
            st.session_state["signals_scan"] = frame
    frame = st.session_state.get("signals_scan")
    if frame is None:
        st.caption("Scan computes a signal for every symbol with enough daily history and "
                   "ranks them: BUY/SELL first, then by edge (probability above the "
                   "expected hit rate now, the long-run rate the probabilities are "
                   "levelled to).")
        return
    table(frame, "signals_scan_table", "signal_scan", "No symbol has enough daily history.")
    if version is not None:
        figures(version)  # the measured figures beside every probability shown
    skipped = frame.attrs.get("skipped") or []
    if skipped:
        st.caption(f"Skipped for too little history: {', '.join(skipped)}")
    bar_less = no_bars_note(frame.attrs.get("no_bars_symbols") or [])
    if bar_less is not None:
        st.caption(bar_less)
    if not frame.empty:
        labels = dict(zip(frame["trace_id"], frame["symbol"] + " · " + frame["action"],
                          strict=True))
        chosen = st.selectbox("Open a signal", list(labels), format_func=labels.get,
                              index=None, placeholder="Pick a row to see its chart and evidence",
                              key="signals_open")
        if chosen:
            detail(me, chosen, version, "signals_scan_detail")


def performance_section(me: Actor, version: ModelVersion | None = None) -> None:
    """Past performance from the journal, the reliability diagram and the journal itself.

    A journaled signal can be opened from the table (``journal_open``).
    """
    if st.button("Refresh outcomes", key="signals_refresh", icon=":material/refresh:"):
        count = fetch(lambda: services().signals.refresh_outcomes(me))
        if count is not None:
            st.success(f"{count} signal(s) got an outcome from later bars.")
    perf: Performance | None = fetch(lambda: services().signals.performance(me))
    if perf is None:
        return
    st.caption(perf.note)
    if perf.resolved:
        cols = st.columns(3)
        cols[0].metric("Decided signals", f"{perf.resolved:,}")
        cols[1].metric("Hit rate (target 1 first)", f"{perf.hit_rate:.2f}")
        cols[2].metric("Mean probability given", f"{perf.mean_probability:.2f}")
        left, right = st.columns(2)
        left.markdown("**By confidence**")
        left.dataframe(perf.by_confidence, hide_index=True, key="signals_by_confidence")
        right.markdown("**By regime**")
        right.dataframe(perf.by_regime, hide_index=True, key="signals_by_regime")
        st.plotly_chart(reliability_figure(perf.reliability), key="signals_reliability")
    journal = fetch(lambda: services().signals.journal_frame(me))
    if journal is None:
        return
    heading = journal_heading(journal)
    if heading is not None:
        st.caption(heading)
    table(journal, "signals_journal", journal_file_stem(journal), "No signal journaled yet.")
    journal_open(me, journal, version)


def journal_open(me: Actor, journal: pd.DataFrame, version: ModelVersion | None) -> None:
    """Open one journaled signal from the journal table in the detail view (its stored fields)."""
    if journal.empty:
        return
    labels = dict(zip(journal["trace_id"],
                      journal["symbol"] + " · " + journal["action"] + " · bar of "
                      + journal["bar"] + " · outcome " + journal["outcome"], strict=True))
    chosen = st.selectbox("Open a journaled signal", list(labels), format_func=labels.get,
                          index=None, key="signals_journal_open",
                          placeholder="Pick a row to see its chart, outcome and evidence")
    if chosen:
        detail(me, chosen, version, "signals_journal_detail", past=True)


def reliability_figure(points: Sequence[dict[str, float]]) -> go.Figure:
    """Return the reliability diagram: realized hit rate against mean probability per bin."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                             line={"dash": "dot", "color": "grey"}))
    fig.add_trace(go.Scatter(
        x=[p["p_mean"] for p in points], y=[p["hit_rate"] for p in points],
        mode="markers+lines", name="journal", text=[f"n={p['n']}" for p in points],
        marker={"size": [6 + min(20, p["n"] ** 0.5) for p in points]}))
    fig.update_layout(height=360, title={"text": "Reliability (from the journal)", "x": 0},
                      xaxis_title="probability given", yaxis_title="realized hit rate",
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def admin_section(me: Actor, versions: Sequence[ModelVersion]) -> None:
    """Train a new version (with progress), read its report, activate a version."""
    if st.button("Train a new version", key="signals_train", icon=":material/model_training:"):
        with st.status("Training a signal model…", expanded=True) as status:
            trained = fetch(lambda: services().models.retrain(me, progress=status.write))
            if trained is None:
                status.update(label="Training failed", state="error")
            else:
                status.update(label=f"Trained {trained.version}", state="complete")
                flash(FLASH, f"Trained {trained.version}; read its report, then activate it.")
    ready = [v.version for v in versions if v.status.value == "ready"]
    if not ready:
        return
    status = {v.version: v.status.value for v in versions}
    labels = keep_pick("signals_activate_version", {v: v for v in ready},
                       lambda gone: f"{gone} · {status[gone]} now")
    chosen = st.selectbox("Ready version", list(labels), format_func=labels.get,
                          key="signals_activate_version")
    picked = next(v for v in versions if v.version == chosen)  # versions are never deleted
    figures(picked)
    st.markdown("**Evaluation report**")
    st.json(picked.report, expanded=1)
    if st.button("Activate", key="signals_activate_button") and attempt(
            lambda: services().models.activate(me, chosen)):
        flash(FLASH, f"{chosen} is now the active signal model.")
