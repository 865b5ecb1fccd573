"""The Alerts page's pieces: connecting Telegram, my alert settings, the household's bot, the
delivery-channel notice and recent alerts with each recipient's delivery.

Rendering only: everything comes from the Telegram service (``services().telegram``), which
checks every right again; the page shows what the service returns and the rule it refuses with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, time

import pandas as pd
import streamlit as st

from core.alert_types import AlertType, Mode, NotificationPrefs, alert_type_of, probability_text
from core.alerts import Alert
from core.clock import format_ist, now_ist, to_ist
from core.domain import Actor
from core.errors import TradingError
from core.services.telegram import BotInfo, DeliveryView, LinkStatus
from core.services.telegram_prefs import THRESHOLD_RULE
from pages.common import attempt, fetch, services
from pages.trading_parts import flash, table

FLASH = "alerts_flash"
CODE = "alerts_link_code"
BOT_FIELD = "alerts_bot_token"
BOT_ERROR = "alerts_bot_error"
#: Seconds between looks for the bot's link while a code is shown.
LINK_POLL_S = 3
MODES = [mode.value for mode in Mode]
SOURCES = {"household": "this household (set here)", "environment": "TELEGRAM_BOT_TOKEN"}
RECENT_COLUMNS = ["Time (IST)", "Type", "Account", "Severity", "Title", "Outbox", "Delivery"]
NO_BOT = ("No Telegram bot is set up yet: a household admin must enter the bot's token on this "
          "page (or set TELEGRAM_BOT_TOKEN) before a chat can be linked.")
NO_NAME = ("The bot's @username is not known yet: the bot process (`python -m jobs.telegram_bot`) "
           "learns it from Telegram when it starts.")


# ----------------------------------------------------------------------------------------------
# Pure helpers (tested without Streamlit)
# ----------------------------------------------------------------------------------------------


def expiry_text(expires_at: datetime) -> str:
    """Return when a link code stops working, in IST: ``19:42 IST (2026-11-21)``."""
    local = to_ist(expires_at)
    return f"{local:%H:%M} IST ({local:%Y-%m-%d})"


def start_command(code: str, bot_username: str | None) -> str:
    """Return the instruction for a link code: send ``/start CODE`` to ``@bot``."""
    if bot_username:
        return f"Send `/start {code}` to @{bot_username} on Telegram."
    return f"Send `/start {code}` to the household's Telegram bot."


def link_text(status: LinkStatus) -> str:
    """Return a member's link status in a sentence."""
    if not status.linked:
        return "Telegram is not linked: alerts cannot reach your phone yet."
    who = f"@{status.telegram_username}" if status.telegram_username else "your Telegram chat"
    return f"Linked to {who} since {format_ist(status.linked_at)}."


def bot_rows(info: BotInfo) -> list[tuple[str, str]]:
    """Return the bot's facts as (label, value) pairs; the token is never among them."""
    if not info.configured:
        return [("Configured", "no: enter a token below or set TELEGRAM_BOT_TOKEN")]
    return [
        ("Configured", "yes"),
        ("Token from", SOURCES.get(str(info.source), str(info.source))),
        ("Bot", f"@{info.bot_username}" if info.bot_username
         else "not yet known (the bot process asks Telegram when it starts)"),
        ("Set by", f"{info.set_by or '—'} at {format_ist(info.set_at)}"
         if info.source == "household" else "the server's environment"),
    ]


def delivery_text(view: DeliveryView) -> str:
    """Return one recipient's delivery: ``Priya Sharma: sent silently (Do not disturb ...)``."""
    how = view.status
    if view.status == "sent" and view.silent:
        how = "sent silently"
    text = f"{view.display_name or view.username}: {how}"
    return f"{text} ({view.reason})" if view.reason else text


def outbox_text(alert: Alert) -> str:
    """Return an alert's outbox status, the channel that sent it and its last error, if any."""
    text = alert.status
    if alert.channel and alert.status == "sent":
        text = f"{text} via {alert.channel}"
    return f"{text}: {alert.last_error}" if alert.last_error else text


def deliveries_text(alert: Alert, views: Sequence[DeliveryView]) -> str:
    """Return every recipient's delivery in one cell (what the reader may see of them)."""
    if views:
        return "; ".join(delivery_text(v) for v in views)
    return "waiting for delivery" if alert.status == "pending" else "no Telegram delivery"


def recent_frame(items: Sequence[tuple[Alert, Sequence[DeliveryView]]],
                 account_labels: Mapping[int, str]) -> pd.DataFrame:
    """Return recent alerts as a table: one row per alert, every recipient's delivery in one cell.

    ``account_labels`` names accounts; a household alert shows ``Household`` and an account the
    reader cannot name shows ``#id``.
    """
    rows = [{
        "Time (IST)": format_ist(alert.created_at),
        "Type": alert_type_of(alert.kind).label,
        "Account": ("Household" if alert.account_id is None
                    else account_labels.get(alert.account_id, f"#{alert.account_id}")),
        "Severity": alert.severity,
        "Title": alert.title,
        "Outbox": outbox_text(alert),
        "Delivery": deliveries_text(alert, views),
    } for alert, views in items]
    return pd.DataFrame(rows, columns=RECENT_COLUMNS)


# ----------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------


def channel_notice() -> None:
    """Say where alerts go when the desk does not deliver them by Telegram."""
    channel = services().settings.alert_channel
    if channel != "telegram":
        st.info(f"Alerts are written to the log (ALERT_CHANNEL={channel}). Telegram delivery "
                "needs ALERT_CHANNEL=telegram and the bot process (`python -m jobs.telegram_bot`); "
                "your link and settings below are kept for then.")


def connect_section(me: Actor) -> None:
    """Show the member's link status; make a one-time code (Connect) or unlink in one click."""
    tg = services().telegram
    status = fetch(lambda: tg.link_status(me))
    if status is None:
        return
    if status.linked:
        st.session_state.pop(CODE, None)
        st.success(link_text(status))
        if (st.button("Unlink", key="alerts_unlink", icon=":material/link_off:")
                and attempt(lambda: tg.unlink(me))):
            flash(FLASH, "Telegram unlinked: no more alerts reach that chat.")
        return
    st.info(link_text(status))
    # A bot whose @username is known is running; otherwise ask whether any bot is set up.
    bot = None if status.bot_username else fetch(lambda: tg.bot_info(me))
    no_bot = bot is not None and not bot.configured  # a code would have no bot to go to
    if st.button("Connect", key="alerts_connect", icon=":material/link:", type="primary",
                 disabled=no_bot, help=NO_BOT if no_bot else None):
        code = fetch(lambda: tg.create_link_code(me))
        if code is not None:
            st.session_state[CODE] = code
    code = st.session_state.get(CODE)
    if code is not None and code.expires_at <= now_ist():
        st.warning(f"The code {code.code} expired at {expiry_text(code.expires_at)}; press "
                   "Connect for a new one.")
        st.session_state.pop(CODE)
        code = None
    if code is None:
        st.caption("Connect makes a one-time code (valid 10 minutes) that you send to the "
                   "household's bot; that chat then gets your alerts.")
    else:
        st.markdown(f"# `{code.code}`")
        st.markdown(start_command(code.code, status.bot_username))
        st.caption(f"The code works once and expires at {expiry_text(code.expires_at)}. "
                   "This page updates by itself once the bot links your chat.")
        await_link(me, code.expires_at)
    if not status.bot_username:
        st.warning(NO_BOT if no_bot else NO_NAME)


@st.fragment(run_every=LINK_POLL_S)
def await_link(me: Actor, expires_at: datetime) -> None:
    """While a code is shown, look for the bot's link; rerun the page once linked or expired."""
    status = fetch(lambda: services().telegram.link_status(me))
    if (status is not None and status.linked) or expires_at <= now_ist():
        st.rerun()


def settings_section(me: Actor) -> None:
    """Render my alert settings as one form; Save calls ``update_prefs`` once."""
    tg = services().telegram
    prefs: NotificationPrefs | None = fetch(lambda: tg.notification_prefs(me))
    if prefs is None:
        return
    notes = fetch(lambda: services().signal_alerts.threshold_notes(
        me, prefs.signal_min_probability)) or ()
    with st.form("alerts_settings"):
        st.markdown("**Per alert type** (on: with sound · silent: no sound · off: not sent)")
        modes: dict[str, str] = {}
        columns = st.columns(3)
        for index, alert_type in enumerate(AlertType):
            modes[alert_type.value] = columns[index % 3].radio(
                alert_type.label, MODES, index=MODES.index(prefs.mode(alert_type).value),
                horizontal=True,
                key=f"alerts_mode_{alert_type.value}")
        st.markdown("**Do not disturb** (IST; may cross midnight, e.g. 22:00-07:00). Alerts "
                    "arrive silently inside it; kill switch, panic and loss-limit breaches "
                    "still ring.")
        dnd_on = st.checkbox("Do not disturb", value=prefs.dnd_start is not None,
                             key="alerts_dnd_on")
        left, right = st.columns(2)
        dnd_start = left.time_input("From (IST)", value=prefs.dnd_start or time(22, 0),
                                    key="alerts_dnd_start", step=900)
        dnd_end = right.time_input("Until (IST)", value=prefs.dnd_end or time(7, 0),
                                   key="alerts_dnd_end", step=900)
        summary_on = st.checkbox("Daily P&L summary", key="alerts_summary_on",
                                 value=prefs.daily_summary_time is not None,
                                 help="After the market closes (from 15:35 IST); untick for none.")
        summary_at = st.time_input("Daily summary at (IST)", key="alerts_summary_at", step=900,
                                   value=prefs.daily_summary_time or time(16, 0))
        # Text the service judges as typed: a number widget kept its last valid value when
        # given -1 or 1.5, and Save then said "saved" without saving it.
        threshold = st.text_input(
            "Signal alerts from a probability of (0.00-0.99, at most 3 decimals; 0.00: every "
            "BUY and SELL)", value=probability_text(prefs.signal_min_probability),
            placeholder="e.g. 0.35", help=f"{THRESHOLD_RULE}.", key="alerts_signal_threshold")
        for note in notes:
            if note.warn:
                st.warning(note.text)
            else:
                st.caption(note.text)
        if st.form_submit_button("Save settings", key="alerts_settings_save",
                                 type="primary"):
            dnd = (dnd_start, dnd_end) if dnd_on else None
            summary = summary_at if summary_on else None
            if attempt(lambda: tg.update_prefs(
                    me, modes=modes, dnd=dnd, daily_summary_time=summary,
                    signal_min_probability=threshold)):
                flash(FLASH, "Alert settings saved.")


def _save_token(me: Actor) -> None:
    """Form callback: hand the typed token to the service and empty the field at once.

    Run before the page draws again, so the token leaves the session state whether the service
    takes it or refuses it (its error names the rule, never the token).
    """
    token = str(st.session_state.get(BOT_FIELD) or "")
    st.session_state[BOT_FIELD] = ""
    try:
        services().telegram.set_bot_token(me, token)
    except TradingError as exc:
        st.session_state[BOT_ERROR] = str(exc)
        return
    st.session_state[FLASH] = "Bot token saved. The bot process picks it up within 30 s."


def bot_section(me: Actor) -> None:
    """Show the bot's facts; a password form sets a new token; one button removes it.

    The service refuses the form's calls to anyone but a household admin (or super admin).
    """
    tg = services().telegram
    info = fetch(lambda: tg.bot_info(me))
    if info is None:
        return
    for label, value in bot_rows(info):
        st.markdown(f"**{label}:** {value}")
    error = st.session_state.pop(BOT_ERROR, None)
    if error:
        st.error(error)
    with st.form("alerts_bot_form", clear_on_submit=True):
        st.text_input("New bot token (from @BotFather; stored encrypted, never shown again)",
                      type="password", key=BOT_FIELD)
        st.form_submit_button("Save token", key="alerts_bot_save", type="primary",
                              on_click=_save_token, args=(me,))
    if (info.source == "household"
            and st.button("Remove token", key="alerts_bot_clear", icon=":material/delete:")
            and attempt(lambda: tg.clear_bot_token(me))):
        flash(FLASH, "Bot token removed.")


def recent_section(me: Actor, account_labels: Mapping[int, str]) -> None:
    """Show recent alerts with their outbox status and each recipient's delivery, as a table."""
    items = fetch(lambda: services().telegram.recent_alerts(me, limit=50))
    if items is None:
        return
    table(recent_frame(items, account_labels), "alerts_recent", "alerts", "No alerts yet.")
