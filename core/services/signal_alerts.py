"""New BUY and SELL signals as alerts, after each trading day's close (a worker job).

:meth:`SignalAlertService.run` scans the universe as the Signals page does
(:meth:`core.services.signals.SignalService.scan_as`, which journals every signal), then
writes one ``signal.new`` household alert per household for each BUY or SELL (the action rule
gives one only when the calibrated probability beats the expected hit rate by the minimum
edge), with ``probability`` set so each member's own threshold (0.00-0.99, default 0.00: every
one) filters it at delivery. The model's probabilities are small (a 2·ATR target before a 1·ATR
stop hits about a third of the time), so a fixed floor such as 0.50 would alert nothing ever;
:meth:`SignalAlertService.threshold_notes` tells a member what the model in use can reach.

A signal is news only on a fresh bar: one of the scan day's session or the session before
(an end-of-day import may land the next morning). On older data (a desk whose daily bars were
not imported) nothing is alerted and the run says why. The dedupe key names the household,
symbol, bar date and model version, so a second scan of the same bar (a retry, a restart, the
page's own scan) alerts nothing new, while a re-fitted model's view of it does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import NamedTuple, Protocol

from sqlalchemy import select

from core import alerts
from core.alert_types import probability_text
from core.clock import is_trading_day, now_ist, to_ist
from core.config import Settings
from core.domain import Actor
from core.errors import NotFound
from core.money import inr
from core.services.base import ServiceBase
from core.services.signal_registry import ModelRegistry, ModelState
from db.engine import Database
from db.models import HouseholdRow
from engines.signal_types import Action, Signal

KIND = "signal.new"
#: What every signal alert says about the model's measured edge.
CAVEAT = "Measured edge is small (see Signals page)."
OPERATOR = "worker"  # the journal's generated_by for the worker's scan
_KEY_CHARS = 120


class SignalScanner(Protocol):
    """What the alerts need of :class:`core.services.signals.SignalService`."""

    def scan_as(self, operator: str) -> list[Signal]:
        """Scan every instrument for an operator tool; return the journaled signals."""
        ...


@dataclass(slots=True)
class SignalAlertReport:
    """What one scan for alerts did."""

    scanned: int = 0
    alertable: list[str] = field(default_factory=list)  # symbols of BUY/SELL signals
    written: int = 0  # alerts added (all households)
    skipped: str = ""  # why nothing was scanned or alerted, else ""

    def summary(self) -> str:
        """Return one line for the worker's log and the job's record."""
        if self.skipped:
            return f"no signal alerts: {self.skipped}"
        return (f"{self.scanned} signal(s) scanned, {len(self.alertable)} BUY/SELL; "
                f"{self.written} alert(s) written")


def alertable(signal: Signal) -> bool:
    """Return whether ``signal`` is alerted: a BUY or a SELL (members filter by probability)."""
    return signal.action in (Action.BUY, Action.SELL)


class Note(NamedTuple):
    """One sentence for the Alerts page; ``warn`` when it means no signal alert will come."""

    warn: bool
    text: str


def threshold_notes(state: ModelState, threshold: Decimal) -> tuple[Note, ...]:
    """Return what a member's signal threshold means with the model in use (for the page)."""
    if state.in_use is None or state.highest is None:
        return (Note(True, "No model is in use, so no signal alert comes now"
                     + (f": {state.problem}" if state.problem else ".")),)
    long_top, short_top = state.highest
    notes = [Note(False, "Signal alerts come for BUY and SELL signals only. The model in use "
                         f"({state.in_use.version}) gives probabilities of at most "
                         f"{long_top:.3f} (long) and {short_top:.3f} (short): a 2·ATR target "
                         "before a 1·ATR stop is reached about a third of the time, so "
                         "probabilities stay small.")]
    if threshold > Decimal(str(round(max(long_top, short_top), 3))):
        notes.append(Note(True, f"Your threshold {probability_text(threshold)} is above them: "
                                "no signal alert will reach you. 0.00 lets every BUY and SELL "
                                "through."))
    notes.extend(Note(True, ceiling) for ceiling in state.ceilings)
    return tuple(notes)


def signal_probability(signal: Signal) -> Decimal:
    """Return the probability as the outbox stores it (4 places)."""
    return Decimal(str(signal.probability)).quantize(Decimal("0.0001"))


def dedupe_key(household_id: int, signal: Signal) -> str:
    """Return the alert's dedupe key: household, symbol, bar date and model version."""
    key = (f"signal:{household_id}:{signal.symbol}:{to_ist(signal.as_of).date().isoformat()}:"
           f"{signal.model_version}")
    if len(key) <= _KEY_CHARS:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"signal:{household_id}:{signal.symbol}:{digest}"


def signal_text(signal: Signal) -> tuple[str, str]:
    """Return the alert's title and body (phone-width lines)."""
    probability = signal_probability(signal)
    title = f"{signal.action.value} signal: {signal.symbol} (p {probability:.2f})"
    t1, t2, t3 = signal.targets
    body = (f"{signal.action.value} {signal.symbol} · probability {probability:.2f}\n"
            f"Entry {inr(signal.entry)} · stop {inr(signal.stop_loss)}\n"
            f"Targets {inr(t1)} / {inr(t2)} / {inr(t3)}\n"
            f"Regime {signal.regime.value} · risk:reward {signal.risk_reward:.2f}\n"
            f"Close of {to_ist(signal.as_of):%d %b %Y} · model {signal.model_version}\n"
            f"{CAVEAT}")
    return title, body


def _fresh_days(day: date) -> tuple[date, date]:
    """Return ``day``'s session and the one before: the bars whose signals are news."""
    earlier = date.fromordinal(day.toordinal() - 1)
    while not is_trading_day(earlier):
        earlier = date.fromordinal(earlier.toordinal() - 1)
    return earlier, day


class SignalAlertService(ServiceBase):
    """Scans after the close and alerts new BUY/SELL signals."""

    def __init__(self, db: Database, settings: Settings, signals: SignalScanner,
                 models: ModelRegistry | None = None) -> None:
        """Scan through ``signals``; ``models`` (the registry) answers :meth:`threshold_notes`."""
        super().__init__(db, settings)
        self.signals = signals
        self.models = models

    def threshold_notes(self, actor: Actor, threshold: Decimal) -> tuple[Note, ...]:
        """Return what ``threshold`` means with the model in use (see :func:`threshold_notes`)."""
        if self.models is None:
            return ()
        return threshold_notes(self.models.state(actor), threshold)

    def run(self, now: datetime | None = None) -> SignalAlertReport:
        """Scan and alert (see the module docstring); return what was done.

        Skipped (nothing scanned) on a day NSE does not trade and when no model is active;
        a model whose file cannot be loaded raises (the job fails and says why).
        """
        now = to_ist(now or now_ist())
        day = now.date()
        if not is_trading_day(day):
            return SignalAlertReport(skipped=f"{day.isoformat()} is not an NSE trading day")
        try:
            signals = self.signals.scan_as(OPERATOR)
        except NotFound as exc:  # no active model (or the first one still training)
            return SignalAlertReport(skipped=str(exc))
        report = SignalAlertReport(scanned=len(signals))
        wanted = [s for s in signals if alertable(s)]
        report.alertable = [s.symbol for s in wanted]
        fresh = _fresh_days(day)
        news = [s for s in wanted if fresh[0] <= to_ist(s.as_of).date() <= fresh[1]]
        newest = max((to_ist(s.as_of).date() for s in signals), default=None)
        if newest is not None and newest < fresh[0]:  # stale whether or not any is alertable
            report.skipped = (f"the newest daily bar is of {newest.isoformat()}, not of "
                              f"{fresh[0].isoformat()} or {day.isoformat()}: import the day's "
                              "bars for signals to alert")
            return report
        with self.db.transaction() as session:
            households = list(session.scalars(select(HouseholdRow.id)
                                              .order_by(HouseholdRow.id)))
            for signal in news:
                title, body = signal_text(signal)
                for household_id in households:
                    report.written += alerts.enqueue(
                        session, kind=KIND, household_id=household_id, account_id=None,
                        severity="info", title=title, body=body,
                        dedupe_key=dedupe_key(household_id, signal),
                        probability=signal_probability(signal))
        return report
