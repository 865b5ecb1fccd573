"""Alert types, members' notification preferences and the delivery decision: pure, no I/O.

Every outbox alert has a ``kind`` written by its producer (``"order.filled"``,
``"risk.daily_loss"``, ...). Members choose per :class:`AlertType` (a coarser grouping of
kinds) whether its alerts ring (``on``), arrive without sound (``silent``) or stay away
(``off``), plus a do-not-disturb window, a daily summary time and a signal threshold.
:func:`decide` applies those choices to one alert for one member; :func:`alert_text` renders
the Telegram message.

==================  ==========================================================================
AlertType           Outbox kinds
==================  ==========================================================================
ORDER_PLACED        ``order.placed``
ORDER_FILLED        ``order.filled``
ORDER_PARTIAL       ``order.partially_filled``
ORDER_REJECTED      ``order.rejected``
ORDER_CANCELLED     ``order.cancelled``
STOP_LOSS           ``risk.stop_loss``
TARGET              ``risk.target``
TRAILING_STOP       ``risk.trailing_stop``
RISK_WARNING        ``risk.warning.*``
RISK_BREACH         ``risk.daily_loss``, ``risk.weekly_loss``, ``risk.mtm*``, ``risk.eod``,
                    any other ``risk.*`` rule
KILL_SWITCH         ``risk.kill_switch``, ``risk.panic``, ``risk.disabled``
SESSION             ``auth.session_expiry``, ``auth.logout`` (and any ``auth.*``)
SYSTEM              ``feed_stalled``, ``feed_recovered``, ``worker.*``; every unknown kind
SIGNAL              ``signal.new`` (and any ``signal.*``)
DAILY_SUMMARY       ``summary.daily`` (and any ``summary.*``)
==================  ==========================================================================
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType

from core.alerts import Alert
from core.clock import to_ist

#: Widest line a phone shows without wrapping, in characters (Telegram's default font).
PHONE_LINE_CHARS = 40
#: Severity that rings through a do-not-disturb window (kill switch, panic, loss-limit breach).
CRITICAL = "critical"


class AlertType(StrEnum):
    """What an alert is about, as members choose it; the value is the settings key."""

    ORDER_PLACED = "order_placed"
    ORDER_FILLED = "order_filled"
    ORDER_PARTIAL = "order_partial"
    ORDER_REJECTED = "order_rejected"
    ORDER_CANCELLED = "order_cancelled"
    STOP_LOSS = "stop_loss"
    TARGET = "target"
    TRAILING_STOP = "trailing_stop"
    RISK_WARNING = "risk_warning"
    RISK_BREACH = "risk_breach"
    KILL_SWITCH = "kill_switch"
    SESSION = "session"
    SYSTEM = "system"
    SIGNAL = "signal"
    DAILY_SUMMARY = "daily_summary"

    @property
    def label(self) -> str:
        """Return the type's name for people (settings page, messages)."""
        return _LABELS[self]


_LABELS: Mapping[AlertType, str] = MappingProxyType({
    AlertType.ORDER_PLACED: "Order placed",
    AlertType.ORDER_FILLED: "Order filled",
    AlertType.ORDER_PARTIAL: "Order partially filled",
    AlertType.ORDER_REJECTED: "Order rejected",
    AlertType.ORDER_CANCELLED: "Order cancelled",
    AlertType.STOP_LOSS: "Stop-loss hit",
    AlertType.TARGET: "Target hit",
    AlertType.TRAILING_STOP: "Trailing stop hit",
    AlertType.RISK_WARNING: "Risk limit warning",
    AlertType.RISK_BREACH: "Risk limit breach",
    AlertType.KILL_SWITCH: "Kill switch and panic",
    AlertType.SESSION: "Session expiry and logout",
    AlertType.SYSTEM: "System (worker, feed, jobs)",
    AlertType.SIGNAL: "New high-probability signal",
    AlertType.DAILY_SUMMARY: "Daily P&L summary",
})


class Mode(StrEnum):
    """How a member wants one alert type: with sound, without sound, or not at all."""

    ON = "on"
    SILENT = "silent"
    OFF = "off"


_EXACT_KINDS: Mapping[str, AlertType] = MappingProxyType({
    "order.placed": AlertType.ORDER_PLACED,
    "order.filled": AlertType.ORDER_FILLED,
    "order.partially_filled": AlertType.ORDER_PARTIAL,
    "order.rejected": AlertType.ORDER_REJECTED,
    "order.cancelled": AlertType.ORDER_CANCELLED,
    "risk.stop_loss": AlertType.STOP_LOSS,
    "risk.target": AlertType.TARGET,
    "risk.trailing_stop": AlertType.TRAILING_STOP,
    "risk.kill_switch": AlertType.KILL_SWITCH,
    "risk.panic": AlertType.KILL_SWITCH,
    "risk.disabled": AlertType.KILL_SWITCH,
    "signal.new": AlertType.SIGNAL,
    "summary.daily": AlertType.DAILY_SUMMARY,
})
# Checked in order after the exact kinds; the first matching prefix wins.
_PREFIXES: tuple[tuple[str, AlertType], ...] = (
    ("risk.warning.", AlertType.RISK_WARNING),
    ("risk.", AlertType.RISK_BREACH),  # daily_loss, weekly_loss, mtm_*, eod and future limits
    ("auth.", AlertType.SESSION),
    ("signal.", AlertType.SIGNAL),
    ("summary.", AlertType.DAILY_SUMMARY),
)


def alert_type_of(kind: str) -> AlertType:
    """Return the alert type of an outbox ``kind``.

    Unknown kinds are :attr:`AlertType.SYSTEM`, so a new producer's alerts still reach people
    (members who turned system alerts off do not get them).
    """
    exact = _EXACT_KINDS.get(kind)
    if exact is not None:
        return exact
    for prefix, alert_type in _PREFIXES:
        if kind.startswith(prefix):
            return alert_type
    return AlertType.SYSTEM


@dataclass(frozen=True, slots=True)
class NotificationPrefs:
    """One member's delivery choices; times are IST wall-clock times.

    ``modes`` may leave types out: a missing type is :attr:`Mode.ON`. ``dnd_start`` and
    ``dnd_end`` are both set (a window, which may cross midnight) or both None (no window).
    ``daily_summary_time`` None: no daily summary.
    """

    modes: Mapping[AlertType, Mode]
    dnd_start: time | None
    dnd_end: time | None
    daily_summary_time: time | None
    signal_min_probability: Decimal

    def mode(self, alert_type: AlertType) -> Mode:
        """Return the member's mode for ``alert_type`` (default :attr:`Mode.ON`)."""
        return self.modes.get(alert_type, Mode.ON)

    def in_dnd(self, at: datetime) -> bool:
        """Return whether ``at`` (aware) falls inside the do-not-disturb window, in IST.

        The window includes its start and excludes its end; 22:00-07:00 crosses midnight.
        """
        if self.dnd_start is None or self.dnd_end is None or self.dnd_start == self.dnd_end:
            return False
        clock = to_ist(at).time().replace(tzinfo=None)
        if self.dnd_start < self.dnd_end:
            return self.dnd_start <= clock < self.dnd_end
        return clock >= self.dnd_start or clock < self.dnd_end


#: The defaults of a member who never opened the settings: every type on, no DND, the daily
#: summary at 16:00 IST (after the closing session), every BUY and SELL signal (threshold 0:
#: the model's calibrated probabilities stay near a third, see core.services.signal_alerts).
DEFAULT_PREFS = NotificationPrefs(
    modes=MappingProxyType(dict.fromkeys(AlertType, Mode.ON)),
    dnd_start=None,
    dnd_end=None,
    daily_summary_time=time(16, 0),
    signal_min_probability=Decimal("0.00"),
)


def probability_text(value: Decimal) -> str:
    """Return a probability or signal threshold with every digit it is stored with.

    At least 2 decimals and no trailing zeros beyond them (``0.5`` -> ``0.50``, ``0.755`` ->
    ``0.755``, ``0.2996`` -> ``0.2996``): nothing is rounded, so two values shown side by side
    differ whenever they differ.
    """
    digits = f"{value:f}"
    whole, _point, fraction = digits.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"{whole}.{fraction}"


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to send one alert to one member, with or without sound, and why not."""

    send: bool
    silent: bool
    reason: str | None = field(default=None)


def decide(alert: Alert, prefs: NotificationPrefs, at: datetime) -> Decision:
    """Apply a member's preferences to one alert.

    Parameters
    ----------
    alert : Alert
        The outbox alert (its ``kind``, ``severity`` and, for signals, ``probability``).
    prefs : NotificationPrefs
        The recipient's choices.
    at : datetime
        When the message would go out (aware); the DND window is read in IST.

    Returns
    -------
    Decision
        Not sent when the type is off or a signal is below the member's threshold; sent silently
        when the type is silent or inside DND (a critical alert rings through DND); else sent
        with sound. ``reason`` says why it is not sent or silent.
    """
    alert_type = alert_type_of(alert.kind)
    mode = prefs.mode(alert_type)
    if mode is Mode.OFF:
        return Decision(send=False, silent=False, reason=f"{alert_type.label} alerts are off")
    threshold = prefs.signal_min_probability
    if alert_type is AlertType.SIGNAL and alert.probability is not None \
            and alert.probability < threshold:
        return Decision(send=False, silent=False,
                        reason=f"Signal probability {probability_text(alert.probability)} is "
                               f"below your threshold {probability_text(threshold)}")
    if mode is Mode.SILENT:
        return Decision(send=True, silent=True, reason=f"{alert_type.label} alerts are silent")
    if prefs.in_dnd(at) and alert.severity != CRITICAL:
        assert prefs.dnd_start is not None and prefs.dnd_end is not None  # noqa: S101 - in_dnd
        return Decision(send=True, silent=True,
                        reason=f"Do not disturb {prefs.dnd_start:%H:%M}-{prefs.dnd_end:%H:%M} "
                               "IST")
    return Decision(send=True, silent=False, reason=None)


_SEVERITY_MARKS: Mapping[str, str] = MappingProxyType(
    {"critical": "\U0001f534", "warning": "\U0001f7e0", "info": "\U0001f535"})


def _wrap(text: str) -> list[str]:
    """Wrap each line of ``text`` to the phone's width, keeping blank lines and long words."""
    lines: list[str] = []
    for line in text.splitlines() or [""]:
        lines.extend(textwrap.wrap(line, PHONE_LINE_CHARS, break_long_words=False,
                                   break_on_hyphens=False) or [""])
    return lines


def account_line(alert: Alert, account_label: str | None) -> str:
    """Return whom an alert's message says it is about.

    The account's label; ``For you`` for an alert to one member that names no account (a
    session expiry warning or logout, their own daily summary): it is not about the whole
    household; ``Household`` for a household alert.
    """
    if account_label:
        return account_label
    return "For you" if alert.user_id is not None else "Household"


def alert_text(alert: Alert, account_label: str | None) -> str:
    """Render an alert as a Telegram HTML message (``parse_mode="HTML"``) for a phone.

    The message is the bold title (with a severity mark), the time as
    ``dd Mon YYYY HH:MM:SS IST``, the account's label (``Household`` for a household alert,
    ``For you`` for one member's own; :func:`account_line`) and the body. Every piece of text
    is HTML-escaped; lines are wrapped at :data:`PHONE_LINE_CHARS` characters where a word
    boundary allows.
    """
    mark = _SEVERITY_MARKS.get(alert.severity, "")
    title = "\n".join(html.escape(line, quote=False) for line in _wrap(alert.title.strip()))
    when = to_ist(alert.created_at).strftime("%d %b %Y %H:%M:%S IST")
    who = html.escape(account_line(alert, account_label), quote=False)
    parts = [f"{mark} <b>{title}</b>".strip(), when, who]
    body = alert.body.strip()
    if body:
        parts.append("")
        parts.extend(html.escape(line, quote=False) for line in _wrap(body))
    return "\n".join(parts)
