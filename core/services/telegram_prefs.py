"""Members' notification preferences: per alert type on/silent/off, DND, summary, threshold.

Part of :class:`core.services.telegram.TelegramService`. Each user changes only their own
settings; a bad value is refused with the rule and nothing is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import time
from decimal import Decimal, InvalidOperation
from enum import Enum

from sqlalchemy import select

from core.alert_types import DEFAULT_PREFS, AlertType, Mode, NotificationPrefs
from core.domain import Actor, parse_choice
from core.errors import ValidationError
from core.services.base import ServiceBase
from core.services.daily_summary import EARLIEST as SUMMARY_EARLIEST
from core.services.telegram_delivery import load_prefs
from db.models import AlertPreferenceRow, NotificationSettingsRow

THRESHOLD_MIN, THRESHOLD_MAX = Decimal("0.00"), Decimal("0.99")
#: The signal threshold's rule, as the Alerts page shows it and refusals state it.
THRESHOLD_RULE = (f"Signal threshold must be between {THRESHOLD_MIN} and {THRESHOLD_MAX} "
                  "(a probability: 0.75, not 75%) with at most 3 decimals")
# A typed threshold: ASCII digits and at most one point (no sign, exponent, '%' or ',').
_TYPED = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_MILLI = Decimal("0.001")
# A widget's float (0.71 -> 0.7100000000000001) is rounded to 3 decimals when this close.
_FLOAT_NOISE = Decimal("1e-9")


class _Unchanged(Enum):
    UNCHANGED = "unchanged"


#: Pass to :meth:`TelegramPrefs.update_prefs` (the default) to keep a setting as it is.
UNCHANGED = _Unchanged.UNCHANGED


class TelegramPrefs(ServiceBase):
    """Notification preferences; part of :class:`core.services.telegram.TelegramService`."""

    def notification_prefs(self, actor: Actor) -> NotificationPrefs:
        """Return the actor's alert modes, DND window, daily summary time and signal threshold."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            return load_prefs(session, actor.user_id)

    def update_prefs(
        self,
        actor: Actor,
        *,
        modes: Mapping[str, str] | None = None,
        dnd: tuple[time, time] | _Unchanged | None = UNCHANGED,
        daily_summary_time: time | _Unchanged | None = UNCHANGED,
        signal_min_probability: Decimal | str | _Unchanged = UNCHANGED,
    ) -> NotificationPrefs:
        """Change the actor's own notification settings; return them as now stored.

        ``modes`` maps alert types (``"order_filled"``) to ``"on"``, ``"silent"`` or ``"off"``;
        types left out keep their mode. ``dnd`` None removes the window.
        ``signal_min_probability`` may be the text a person typed (``"0.75"``); it is judged as
        typed (:data:`THRESHOLD_RULE`).

        Raises
        ------
        ValidationError
            For an unknown type or mode, a DND window that starts when it ends, a daily summary
            time before the summaries start (15:35 IST), or a signal threshold that is no
            number from 0.00 to 0.99 with at most 3 decimals; nothing is written.
        """
        parsed = {parse_choice(AlertType, key, "alert type"): parse_choice(Mode, value, "mode")
                  for key, value in (modes or {}).items()}
        if dnd is not None and dnd is not UNCHANGED:
            start, end = (moment.replace(tzinfo=None, second=0, microsecond=0) for moment in dnd)
            if start == end:
                raise ValidationError(f"Do-not-disturb must start and end at different times; "
                                      f"got {start:%H:%M}-{end:%H:%M}")
            dnd = (start, end)
        if isinstance(daily_summary_time, time):
            daily_summary_time = daily_summary_time.replace(tzinfo=None, microsecond=0)
            if daily_summary_time < SUMMARY_EARLIEST:
                raise ValidationError(
                    f"The daily summary goes out after the close, from "
                    f"{SUMMARY_EARLIEST:%H:%M} IST: pick a time from {SUMMARY_EARLIEST:%H:%M} to "
                    f"23:59; got {daily_summary_time:%H:%M}")
        if signal_min_probability is not UNCHANGED:
            signal_min_probability = _threshold(signal_min_probability)
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            for alert_type, mode in parsed.items():
                pref = session.scalar(select(AlertPreferenceRow).where(
                    AlertPreferenceRow.user_id == actor.user_id,
                    AlertPreferenceRow.alert_type == alert_type.value))
                if pref is None:
                    pref = AlertPreferenceRow(user_id=actor.user_id, alert_type=alert_type.value)
                    session.add(pref)
                pref.mode = mode.value
            settings = session.get(NotificationSettingsRow, actor.user_id)
            if settings is None:
                settings = NotificationSettingsRow(
                    user_id=actor.user_id, dnd_start=DEFAULT_PREFS.dnd_start,
                    dnd_end=DEFAULT_PREFS.dnd_end,
                    daily_summary_time=DEFAULT_PREFS.daily_summary_time,
                    signal_min_probability=DEFAULT_PREFS.signal_min_probability)
                session.add(settings)
            changes: dict[str, object] = {k.value: v.value for k, v in parsed.items()}
            if dnd is not UNCHANGED:
                settings.dnd_start, settings.dnd_end = dnd if dnd is not None else (None, None)
                changes["dnd"] = f"{dnd[0]:%H:%M}-{dnd[1]:%H:%M}" if dnd else None
            if daily_summary_time is not UNCHANGED:
                settings.daily_summary_time = daily_summary_time
                changes["daily_summary_time"] = (f"{daily_summary_time:%H:%M}"
                                                 if daily_summary_time else None)
            if signal_min_probability is not UNCHANGED:
                settings.signal_min_probability = signal_min_probability
                changes["signal_min_probability"] = str(signal_min_probability)
            session.flush()
            self._audit(session, actor, "telegram.prefs", f"user:{actor.user_id}", changes)
            return load_prefs(session, actor.user_id)


def _threshold(value: object) -> Decimal:
    """Return a signal threshold as a Decimal, or raise ValidationError with the rule.

    Text is judged as typed (``"0.75"``; surrounding spaces aside) and quoted in the refusal;
    a widget's float is first rounded to 3 decimals when it is that close.
    """
    shown = value.strip() if isinstance(value, str) else value
    if isinstance(shown, str):
        if not shown:
            raise ValidationError(f"{THRESHOLD_RULE}; got nothing (0.00 lets every BUY and "
                                  "SELL through)")
        parsed = Decimal(shown) if _TYPED.fullmatch(shown) else Decimal("NaN")
    else:
        try:
            parsed = value if isinstance(value, Decimal) else Decimal(str(value))
        except InvalidOperation:
            parsed = Decimal("NaN")
        if parsed.is_finite() and abs(parsed - parsed.quantize(_MILLI)) < _FLOAT_NOISE:
            parsed = parsed.quantize(_MILLI)
    if not parsed.is_finite() or not THRESHOLD_MIN <= parsed <= THRESHOLD_MAX \
            or parsed != parsed.quantize(_MILLI):
        raise ValidationError(f"{THRESHOLD_RULE}; got {shown}")
    # Keep the decimals typed, but none past the third (0.990000 -> 0.990; 0.5 stays 0.5).
    quantized = parsed.quantize(_MILLI)
    return quantized if len(str(quantized)) < len(str(parsed)) else parsed
