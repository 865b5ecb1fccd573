"""Risk page part: the family's and each strategy's MTM stop-loss and target.

An account's own MTM stop-loss/target are fields of its limits (the Limits tab). Here: the whole
family's (admins) and a strategy's (admins and traders). When the day's MTM of the scope falls to
the stop-loss, the worker's risk watch stops trading for the scope until the next trading day
(cancel pending orders, close positions); at the target it closes the scope's positions.
"""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import streamlit as st

from core.clock import format_ist
from core.domain import Actor
from engines.risk_types import Scope
from pages.common import attempt, fetch, services
from pages.trading_parts import flash, rupees, table

FAMILY = "Whole family"
STRATEGY = "A strategy"


def _amount(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def mtm_section(me: Actor, *, admin: bool, may_trade: bool, flash_key: str) -> None:
    """Show the MTM limits and, for those allowed, the form that sets or removes one."""
    views = fetch(lambda: services().risk.mtm_limits(me))
    if views is not None:
        frame = pd.DataFrame([{
            "Scope": "Whole family" if v.scope is Scope.HOUSEHOLD else f"Strategy {v.key}",
            "MTM stop-loss": rupees(v.stop_loss) if v.stop_loss is not None else "—",
            "MTM target": rupees(v.target) if v.target is not None else "—",
            "Set by": v.updated_by or "—", "Updated (IST)": format_ist(v.updated_at),
        } for v in views], columns=["Scope", "MTM stop-loss", "MTM target", "Set by",
                                    "Updated (IST)"])
        table(frame, "risk_mtm_table", "mtm_limits", "No family or strategy MTM limits set.")
    if not (admin or may_trade):
        st.caption("Only admins and members who trade an account may set MTM limits.")
        return
    scopes = [FAMILY, STRATEGY] if admin else [STRATEGY]
    with st.form("risk_mtm"):
        scope = st.radio("For", scopes, horizontal=True, key="risk_mtm_scope")
        name = st.text_input("Strategy tag (for a strategy)", key="risk_mtm_strategy",
                             help="The tag its orders carry, e.g. momentum-1")
        left, right = st.columns(2)
        stop = left.number_input("MTM stop-loss [₹ of day loss]", min_value=0.0, value=None,
                                 step=1000.0, key="risk_mtm_stop",
                                 help="Empty: none. Both empty removes the limit.")
        target = right.number_input("MTM target [₹ of day profit]", min_value=0.0,
                                    value=None, step=1000.0, key="risk_mtm_target")
        saved = st.form_submit_button("Save MTM limit", key="risk_mtm_save")
    if not saved:
        return
    kind = Scope.HOUSEHOLD if scope == FAMILY else Scope.STRATEGY
    what = "the whole family" if kind is Scope.HOUSEHOLD else f"strategy {name.strip()!r}"
    if attempt(lambda: services().risk.set_mtm_limit(
            me, kind, name, stop_loss=_amount(stop), target=_amount(target))):
        flash(flash_key, f"MTM limits of {what} saved.")
