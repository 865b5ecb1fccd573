"""The Risk page's pieces: today's usage, the limits form, position controls, states, panic
buttons with their confirmation step, and recent risk alerts.

Rendering only: every figure comes from the risk service (``services().risk``); the service
checks every right again, whatever this page shows or hides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import time
from decimal import Decimal
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.clock import format_ist
from core.domain import Account, Actor
from core.money import inr
from core.services.risk import KIND_TITLES
from engines.risk_types import (
    LIMIT_FIELDS,
    LIMIT_LABELS,
    PositionControl,
    RiskLimits,
    Scope,
    StatePhase,
)
from pages.common import attempt, fetch, keep_pick, services
from pages.trading_parts import flash, rupees, table

FLASH = "risk_flash"
PENDING = "risk_panic_pending"
REPORT = "risk_panic_report"

#: Every RiskLimits field's form label (units in brackets), the name its refusals use too.
LABELS = LIMIT_LABELS
TRAIL_KINDS = {"none": "No trailing stop", "points": "Trail by ₹", "pct": "Trail by %"}
STEP_MARK = {True: "ok", False: "FAILED"}
OWN, FOLLOWS = "this account", "the household"
#: The position-control form's value widgets, emptied once their controls are set.
CONTROL_FIELDS = ("risk_control_stop", "risk_control_target", "risk_control_trail_kind",
                  "risk_control_trail")


# ----------------------------------------------------------------------------------------------
# Pure helpers (tested without Streamlit)
# ----------------------------------------------------------------------------------------------


def field_text(value: object) -> str:
    """Return a limit's value as the form shows it: ``1``, ``0.80``, ``15:15``, ``on``/``off``,
    empty for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, time):
        return f"{value:%H:%M}"
    return str(value)


def limit_changes(before: RiskLimits, after: RiskLimits) -> list[str]:
    """Return ``field old → new`` for every limit that differs."""
    return [f"{LABELS[name]} {field_text(getattr(before, name)) or 'none'} → "
            f"{field_text(getattr(after, name)) or 'none'}"
            for name in LIMIT_FIELDS if getattr(before, name) != getattr(after, name)]


def limits_frame(limits: RiskLimits, defaults: RiskLimits,
                 own: frozenset[str] = frozenset()) -> pd.DataFrame:
    """Return the limits as a read-only table beside the household defaults, each limit
    saying whether it is the account's own or follows the household's."""
    return pd.DataFrame({
        "Limit": [LABELS[name] for name in LIMIT_FIELDS],
        "Field": list(LIMIT_FIELDS),
        "Value": [field_text(getattr(limits, name)) or "none" for name in LIMIT_FIELDS],
        "Household default": [field_text(getattr(defaults, name)) or "none"
                              for name in LIMIT_FIELDS],
        "Set by": [OWN if name in own else FOLLOWS for name in LIMIT_FIELDS],
    })


def own_note(name: str, own: frozenset[str], defaults: RiskLimits) -> str:
    """Return what an account's limit follows: ``This account's own (household default 2).``"""
    default = field_text(getattr(defaults, name)) or "none"
    if name in own:
        return f"This account's own (household default {default})."
    return f"Follows the household default ({default})."


def edited(shown: RiskLimits, values: Mapping[str, object]) -> dict[str, object]:
    """Return the form's values that differ from what it showed: the limits a person changed.

    Only these are saved, so the limits left alone go on following the household's."""
    out = {}
    for name, value in values.items():
        before = getattr(shown, name)
        if isinstance(value, bool) and value is before:
            continue
        if isinstance(value, str) and value.strip() == field_text(before):
            continue
        out[name] = value
    return out


@dataclass(frozen=True, slots=True)
class Bar:
    """One usage bar: a label, how full it is (0..1) and the sentence under it."""

    label: str
    fraction: float
    text: str


def _fraction(used: Decimal | int, limit: Decimal | int) -> float:
    if limit <= 0:
        return 1.0
    return float(min(max(Decimal(used) / Decimal(limit), Decimal(0)), Decimal(1)))


def usage_bars(usage: Any) -> list[Bar]:
    """Return the usage bars of a ``RiskUsage``: losses, positions, order rate, drawdown."""
    day_loss = max(-usage.day_pnl, Decimal(0))
    week_loss = max(-usage.week_pnl, Decimal(0))
    drawdown = Decimal(usage.drawdown_pct)
    if drawdown >= usage.drawdown_kill_pct:
        zone = "kill switch zone"
    elif drawdown >= usage.drawdown_reduce_pct:
        zone = "sizes are being reduced"
    else:
        zone = "full size"
    return [
        Bar("Loss today", _fraction(day_loss, usage.daily_limit),
            f"Loss today {rupees(day_loss)} of the daily limit {rupees(usage.daily_limit)} "
            f"(P&L {rupees(usage.day_pnl)})"),
        Bar("Loss this week", _fraction(week_loss, usage.weekly_limit),
            f"Loss this week {rupees(week_loss)} of the weekly limit "
            f"{rupees(usage.weekly_limit)} (P&L {rupees(usage.week_pnl)})"),
        Bar("Open positions", _fraction(usage.open_positions, usage.max_open_positions),
            f"{usage.open_positions} of at most {usage.max_open_positions} open positions"),
        Bar("Orders per second", _fraction(usage.orders_last_second,
                                           usage.max_orders_per_second),
            f"{usage.orders_last_second} order(s) in the last second of at most "
            f"{usage.max_orders_per_second} (SEBI: 10 per account and exchange segment)"),
        Bar("Drawdown from peak", _fraction(drawdown, usage.drawdown_kill_pct),
            f"Drawdown {drawdown:.2f}% from the peak {rupees(usage.peak_equity)}: {zone} "
            f"(sizes shrink from {usage.drawdown_reduce_pct}%, kill switch at "
            f"{usage.drawdown_kill_pct}%)"),
    ]


def sector_frame(sectors: Sequence[Any]) -> pd.DataFrame:
    """Return exposure by sector with the limit and the room left, largest first."""
    rows = [{
        "Sector": s.sector or "unknown",
        "Value [₹]": inr(s.value, symbol=False),  # Indian grouping, as the other tables
        "Share of capital [%]": round(float(s.pct), 2),
        "Limit [%]": float(s.limit_pct),
        "Room [%]": round(float(s.limit_pct) - float(s.pct), 2),
        "Status": "over the limit" if s.pct > s.limit_pct else "within",
    } for s in sectors]
    columns = ["Sector", "Value [₹]", "Share of capital [%]", "Limit [%]", "Room [%]", "Status"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("Share of capital [%]", ascending=False, ignore_index=True)


def steps_frame(steps: Sequence[Any], labels: Mapping[int, str]) -> pd.DataFrame:
    """Return a panic report's steps: what, which account, on what, ok or failed, detail."""
    return pd.DataFrame([{
        "Step": s.step,
        "Account": "" if s.account_id is None else labels.get(s.account_id,
                                                              f"account {s.account_id}"),
        "Target": s.target,
        "Result": STEP_MARK[bool(s.ok)], "Detail": s.detail,
    } for s in steps], columns=["Step", "Account", "Target", "Result", "Detail"])


# ----------------------------------------------------------------------------------------------
# Usage
# ----------------------------------------------------------------------------------------------


def sector_figure(frame: pd.DataFrame, limit_pct: float) -> go.Figure:
    """Return exposure by sector as bars with the sector limit drawn across."""
    fig = go.Figure(go.Bar(x=frame["Sector"], y=frame["Share of capital [%]"],
                           name="share of capital"))
    fig.add_hline(y=limit_pct, line={"color": "#d62728", "dash": "dash"},
                  annotation_text=f"limit {limit_pct:g}%", annotation_position="top left")
    fig.update_layout(height=280, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      yaxis_title="% of capital", showlegend=False)
    return fig


@st.fragment(run_every=10)
def usage_panel(me: Actor, account_id: int) -> None:
    """Show today's usage of the account's limits, refreshed every 10 seconds."""
    usage = fetch(lambda: services().risk_gate.usage(me, account_id))
    if usage is None:
        return
    for state in usage.states:
        st.error(stopped_text(state), icon=":material/block:")
    cols = st.columns(4)
    cols[0].metric("Capital", rupees(usage.capital))
    cols[1].metric("P&L today", rupees(usage.day_pnl))
    cols[2].metric("Peak equity", rupees(usage.peak_equity))
    regime = getattr(usage.regime, "value", usage.regime)
    cols[3].metric("Market regime", regime or "unknown",
                   help=f"{usage.regime_reason} PANIC: no new entries; CHOPPY: sizes scaled "
                        "down; TRENDING and MEAN_REVERTING: full size")
    for bar in usage_bars(usage):
        st.progress(bar.fraction, text=bar.text)
    frame = sector_frame(usage.sectors)
    if frame.empty:
        st.caption("No open positions: no exposure by sector.")
        return
    st.markdown("**Exposure by sector**")
    limit = float(frame["Limit [%]"].iloc[0])
    st.plotly_chart(sector_figure(frame, limit), key="risk_sector_chart")
    table(frame, "risk_sectors", "risk_sectors", "No exposure.")


# ----------------------------------------------------------------------------------------------
# Limits
# ----------------------------------------------------------------------------------------------


def _scope_name(account: Account | None) -> str:
    return "household defaults" if account is None else f"limits of {account.label}"


def limits_section(me: Actor, account: Account | None, may_edit: bool) -> None:
    """Show the limits (the form when ``may_edit``), each with its default and explanation."""
    account_id = None if account is None else account.id
    view = fetch(lambda: services().risk.limits(me, account_id))
    if view is None:
        return
    source = {"account": f"this account's own limits in {len(view.own)} of "
                         f"{len(LIMIT_FIELDS)} (marked \"This account's own\"); the "
                         "household defaults in the rest, as they change",
              "household": "the household defaults",
              "default": "the built-in defaults"}.get(view.source, view.source)
    st.caption(f"In force: {source}.")
    if not may_edit:
        st.caption("Changing limits is for household admins and the account's traders.")
        table(limits_frame(view.limits, view.household_defaults, view.own),
              "risk_limits_table", "risk_limits", "No limits.")
        return
    stem = f"risk_limit_{account_id or 'household'}"
    values = _limits_form(view, stem, account is None)
    if values is not None:
        values = edited(view.limits, values)
        saved = fetch(lambda: services().risk.set_limits(me, account_id, values))
        if saved is not None:
            changes = limit_changes(view.limits, saved)
            flash(FLASH, f"Saved the {_scope_name(account)}: "
                  + ("; ".join(changes) if changes else "nothing changed"))
    back_to = "built-in defaults" if account is None else "household defaults"
    if st.button(f"Reset to the {back_to}", key="risk_limits_reset",
                 icon=":material/restart_alt:"):
        reset = fetch(lambda: services().risk.reset_limits(me, account_id))
        if reset is not None:
            for name in LIMIT_FIELDS:
                st.session_state.pop(f"{stem}_{name}", None)
            flash(FLASH, f"The {_scope_name(account)} are the {back_to} again.")


def _limits_form(view: Any, stem: str, household: bool) -> dict[str, object] | None:
    """Render every limit as a form field; return the values (strings) when submitted."""
    defaults: RiskLimits = view.household_defaults
    values: dict[str, object] = {}
    with st.form("risk_limits"):
        cols = st.columns(2)
        for index, name in enumerate(LIMIT_FIELDS):
            column = cols[index % 2]
            note = view.explanations.get(name, "")  # ends with the built-in default
            current = getattr(view.limits, name)
            if isinstance(current, bool):
                values[name] = column.checkbox(LABELS[name], value=current, key=f"{stem}_{name}",
                                               help=note)
            else:
                values[name] = column.text_input(LABELS[name], value=field_text(current),
                                                 key=f"{stem}_{name}", help=note)
            column.caption(note if household else
                           f"{own_note(name, view.own, defaults)} {note}")
        label = "Save household defaults" if household else "Save limits"
        submitted = st.form_submit_button(label, key="risk_limits_save", type="primary")
    return values if submitted else None


# ----------------------------------------------------------------------------------------------
# Position controls
# ----------------------------------------------------------------------------------------------


def controls_section(me: Actor, account: Account, may_trade: bool) -> None:
    """List the account's stop-loss / target / trailing controls; set and clear them."""
    risk = services().risk
    controls = fetch(lambda: risk.controls(me, account.id)) or []
    if controls:
        st.dataframe(controls_frame(controls), hide_index=True, key="risk_controls_table")
    else:
        st.caption("No stop-loss, target or trailing stop is set on this account's positions.")
    if not may_trade:
        return
    for control in controls:
        if st.button(f"Clear #{control.control_id} {control.symbol} {control.product}",
                     key=f"risk_control_clear_{control.control_id}") and attempt(
                lambda c=control: risk.clear_control(me, c.control_id)):
            flash(FLASH, f"Cleared the controls of {control.symbol} ({control.product}).")
    positions = fetch(lambda: services().portfolio.positions(me, account.id)) or []
    open_positions = {f"{p.symbol} · {p.product.value}": p for p in positions if p.quantity}
    if not open_positions:
        st.caption("Controls go on open positions; this account has none.")
        return
    _control_form(me, account, open_positions)


def controls_frame(controls: Sequence[PositionControl]) -> pd.DataFrame:
    """Return position controls as a table (empty cells where none is set)."""
    def cell(value: Decimal | None) -> str:
        return "" if value is None else rupees(value)

    return pd.DataFrame([{
        "Control": c.control_id, "Symbol": c.symbol, "Product": c.product.value,
        "Stop-loss [₹]": cell(c.stop_loss), "Target [₹]": cell(c.target),
        "Trail [₹]": cell(c.trail_points),
        "Trail [%]": "" if c.trail_pct is None else f"{c.trail_pct.normalize():f}",
        "Best price [₹]": cell(c.extreme),
    } for c in controls])


def _control_form(me: Actor, account: Account, open_positions: Mapping[str, Any]) -> None:
    with st.form("risk_control"):
        st.markdown("**Set stop-loss / target / trailing stop**")
        top = st.columns(3)
        choices = keep_pick("risk_control_position", {k: k for k in open_positions},
                            lambda gone: f"{gone} · closed since")
        chosen = top[0].selectbox("Position", list(choices), format_func=choices.get,
                                  key="risk_control_position")
        stop = top[1].number_input("Stop-loss [₹]", min_value=0.0, value=None, step=0.05,
                                   format="%.2f", key="risk_control_stop")
        target = top[2].number_input("Target [₹]", min_value=0.0, value=None, step=0.05,
                                     format="%.2f", key="risk_control_target")
        low = st.columns(2)
        kind = low[0].radio("Trailing stop", list(TRAIL_KINDS), format_func=TRAIL_KINDS.get,
                            horizontal=True, key="risk_control_trail_kind")
        trail = low[1].number_input("Trail by", min_value=0.0, value=None, step=0.05,
                                    format="%.2f", key="risk_control_trail")
        submitted = st.form_submit_button("Set controls", key="risk_control_set")
    if not submitted or chosen is None:
        return
    if chosen not in open_positions:
        st.error(f"The position {chosen} has closed since you picked it: nothing to control.")
        return
    position = open_positions[chosen]
    trail_value = None if kind == "none" or trail is None else Decimal(str(trail))
    set_control = services().risk.set_control
    made = fetch(lambda: set_control(
        me, account.id, position.symbol, position.product,
        stop_loss=None if stop is None else Decimal(str(stop)),
        target=None if target is None else Decimal(str(target)),
        trail_points=trail_value if kind == "points" else None,
        trail_pct=trail_value if kind == "pct" else None))
    if made is not None:
        # An empty form for the next position: a value left in it would be set there too.
        for key in CONTROL_FIELDS:
            st.session_state.pop(key, None)
        flash(FLASH, f"Controls set on {position.symbol} ({position.product.value}).")


# ----------------------------------------------------------------------------------------------
# States, re-enable
# ----------------------------------------------------------------------------------------------


def states_section(me: Actor, account_id: int | None, labels: Mapping[int, str]) -> None:
    """Show active and recent states (of the account, or all for the family); re-enable one."""
    states = fetch(lambda: services().risk.states(me, include_cleared=True))
    if states is None:
        return
    if account_id is not None:
        states = [s for s in states if s.account_id in (None, account_id)]
    if not states:
        st.caption("No trading stop has been engaged: every covered account may trade.")
        return
    st.dataframe(states_frame(states), hide_index=True, key="risk_states_table")
    allowed = {s.id: s for s in states if s.may_reenable and s.phase is not StatePhase.CLEARED}
    for state in states:  # a stop this member cannot lift: say who can
        if state.phase is StatePhase.ACTIVE and not state.may_reenable:
            st.caption(f"{_state_label(state)}: only {state.reenable_by} may re-enable "
                       "trading.")
    if allowed:
        with st.form("risk_reenable"):
            choices = keep_pick("risk_reenable_state",
                                {i: _state_label(s) for i, s in allowed.items()},
                                lambda gone: f"#{gone} · lifted or changed since")
            chosen = st.selectbox("State", list(choices), key="risk_reenable_state",
                                  format_func=choices.get)
            note = st.text_input("Note (why trading may resume)", key="risk_reenable_note")
            go_ = st.form_submit_button("Re-enable trading", key="risk_reenable_go")
        if go_ and chosen is not None:
            done = fetch(lambda: services().risk.reenable(me, chosen, note))
            if done is not None:
                st.session_state.pop(REPORT, None)
                flash(FLASH, f"Re-enabled: {_state_label(done)} is cleared.")
    for state in states[:5]:
        if state.steps:
            with st.expander(f"Report of {_state_label(state)}"):
                st.dataframe(steps_frame(state.steps, labels), hide_index=True,
                             key=f"risk_state_report_{state.id}")


def _state_label(state: Any) -> str:
    who = (state.account_label or (f"strategy {state.strategy}" if state.strategy else None)
           or "whole household")
    return f"#{state.id} {KIND_TITLES[state.kind]} · {who}"


def stopped_text(state: Any) -> str:
    """Return the banner of a state covering the shown account: what it stops, and why.

    A strategy's state stops only that strategy's orders; the account's other orders pass.
    """
    what = (f"Orders of strategy {state.strategy} are stopped" if state.strategy
            else "Trading is stopped")
    return (f"{what}: {KIND_TITLES[state.kind]} ({state.scope}, {state.phase}) — "
            f"{state.reason}")


def states_frame(states: Sequence[Any]) -> pd.DataFrame:
    """Return states as a table, newest first as the service lists them."""
    return pd.DataFrame([{
        "State": s.id, "Kind": KIND_TITLES[s.kind], "Scope": str(s.scope),
        "Covers": s.account_label or s.strategy or "whole household", "Phase": str(s.phase),
        "Reason": s.reason, "Until": "" if s.until is None else f"{s.until}",
        "Engaged": format_ist(s.engaged_at), "By": s.engaged_by or "system",
        "Cleared": format_ist(s.cleared_at) if s.cleared_at else "",
    } for s in states])


# ----------------------------------------------------------------------------------------------
# Panic
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PanicTarget:
    """What a pressed panic button would stop: the scope, its key and words for people."""

    scope: Scope
    account_id: int | None
    strategy: str | None
    what: str


def panic_section(me: Actor, account: Account | None, labels: Mapping[int, str], *,
                  admin: bool, may_trade: bool, strategy_ok: bool) -> None:
    """Render the panic buttons the actor may press; each asks for a confirmation first.

    ``may_trade``: the account's button (TRADE on it); ``admin``: the household's;
    ``strategy_ok``: the strategy button (an admin, or someone who trades an account).
    """
    view = None if account is None else account.id
    report = st.session_state.get(REPORT)
    if report is not None and report[0] == view:  # the report of the panic pressed here
        show_report(report[1], report[2], labels)
    pending: PanicTarget | None = st.session_state.get(PENDING)
    if pending is not None:
        _confirm(me, pending, view)
        return
    st.caption("Panic cancels every pending order and GTT in its scope, closes every open "
               "position at market, then stops trading until someone allowed re-enables it.")
    cols = st.columns(3)
    if account is not None and may_trade and cols[0].button(
            f"Panic: {account.label}", key="risk_panic_account", type="primary",
            icon=":material/emergency:"):
        _ask(PanicTarget(Scope.ACCOUNT, account.id, None, f"the account {account.label}"))
    if admin and cols[1].button("Panic: whole household", key="risk_panic_household",
                                type="primary", icon=":material/emergency_home:"):
        _ask(PanicTarget(Scope.HOUSEHOLD, None, None, "the whole household (every account)"))
    if strategy_ok:
        with cols[2]:
            strategy = st.text_input("Strategy", key="risk_panic_strategy_name",
                                     placeholder="strategy tag, e.g. ema_cross")
            if st.button("Panic: strategy", key="risk_panic_strategy", type="primary",
                         icon=":material/emergency:"):
                if strategy.strip():
                    _ask(PanicTarget(Scope.STRATEGY, None, strategy.strip(),
                                     f"the strategy {strategy.strip()}"))
                else:
                    st.warning("Name the strategy whose orders to stop.")


def _ask(target: PanicTarget) -> None:
    st.session_state[PENDING] = target
    st.rerun()


def _confirm(me: Actor, target: PanicTarget, view: int | None) -> None:
    st.warning(f"Panic for {target.what}: cancel every pending order, close every open position "
               "at market and disable trading until it is re-enabled. Are you sure?",
               icon=":material/warning:")
    cols = st.columns([1, 1, 4])
    if cols[0].button("Confirm panic", key="risk_panic_confirm", type="primary"):
        st.session_state.pop(PENDING, None)
        with st.status(f"Panic for {target.what}…", expanded=True) as status:
            report = fetch(lambda: services().risk.panic(
                me, target.scope, account_id=target.account_id, strategy=target.strategy))
            status.update(label="Panic done" if report is not None else "Panic refused",
                          state="complete" if report is not None else "error")
        if report is not None:
            st.session_state[REPORT] = (view, target.what, report)
            st.rerun()
    if cols[1].button("Cancel", key="risk_panic_cancel"):
        st.session_state.pop(PENDING, None)
        st.rerun()


def show_report(what: str, report: Any, labels: Mapping[int, str]) -> None:
    """Show a panic report: one line, then each step ok or failed with its detail."""
    head = (f"Panic for {what} — {report.summary()}. Trading stays disabled ({report.phase}) "
            "until someone allowed re-enables it.")
    (st.success if report.ok else st.warning)(head)
    st.dataframe(steps_frame(report.steps, labels), hide_index=True, key="risk_panic_steps")


# ----------------------------------------------------------------------------------------------
# Alerts
# ----------------------------------------------------------------------------------------------


def alerts_section(me: Actor) -> None:
    """Show the latest risk alerts of the household and the viewable accounts."""
    alerts = fetch(lambda: services().risk.alerts(me, limit=50))
    if alerts is None:
        return
    frame = pd.DataFrame([{
        "Time": format_ist(a.created_at), "Severity": a.severity, "Kind": a.kind,
        "Title": a.title, "Detail": a.body,
    } for a in alerts], columns=["Time", "Severity", "Kind", "Title", "Detail"])
    table(frame, "risk_alerts", "risk_alerts", "No risk alerts yet.")
