"""New high-probability signals become household alerts after the close, once per bar and model.

A desk stocked with sample symbols' daily bars trains a tiny model through the real registry
(as tests/test_signal_service.py does); the scan, journal and alerts run on SQLite and
PostgreSQL.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import select

from core.clock import IST
from core.services import Services
from core.services.signal_alerts import (
    CAVEAT,
    Note,
    SignalAlertService,
    alertable,
    dedupe_key,
    signal_text,
)
from core.services.signal_views import desk_price_warning
from core.services.signals import to_signal
from db.engine import Database
from db.models import AlertOutboxRow, SignalRow
from engines.model import ModelConfig
from engines.signal_types import Action, Direction, Regime, Signal
from jobs.worker import Worker
from tests.conftest import make_settings
from tests.support.market import load_instruments
from tests.support.outbox import alert_rows
from tests.test_signal_service import import_daily

SYMBOLS = ("INFY", "TCS", "SBIN", "HDFCBANK", "RELIANCE", "WIPRO")
LAST_BAR = datetime(2025, 9, 30, 15, 50, tzinfo=IST)  # the sample's last session, after close


def _signal(action: Action, probability: float) -> Signal:
    return Signal(
        symbol="INFY", as_of=datetime(2025, 9, 30, tzinfo=IST), action=action,
        direction=Direction.LONG if action is not Action.SELL else Direction.SHORT,
        probability=probability, confidence=0.4, entry=Decimal("1450.05"),
        stop_loss=Decimal("1420.00"),
        targets=(Decimal("1480.00"), Decimal("1500.50"), Decimal("1525.00")), risk_reward=1.5,
        regime=Regime.TRENDING, agreement=3, voters=4, evidence=(),
        model_version="xgb-20250930-101010", trace_id="sig-1", horizon_bars=10)


@pytest.mark.parametrize(("action", "probability", "alerted"), [
    (Action.BUY, 0.5, True), (Action.SELL, 0.72, True), (Action.BUY, 0.33, True),
    (Action.HOLD, 0.9, False), (Action.SELL, 0.21, True), (Action.HOLD, 0.2, False),
])
def test_every_buy_or_sell_is_alerted_and_no_hold(
        action: Action, probability: float, alerted: bool) -> None:
    assert alertable(_signal(action, probability)) is alerted


def test_a_signal_alert_states_action_probability_levels_regime_and_the_caveat() -> None:
    title, body = signal_text(_signal(Action.BUY, 0.71234))
    assert title == "BUY signal: INFY (p 0.71)"
    assert body.splitlines() == [
        "BUY INFY · probability 0.71", "Entry ₹1,450.05 · stop ₹1,420.00",
        "Targets ₹1,480.00 / ₹1,500.50 / ₹1,525.00", "Regime TRENDING · risk:reward 1.50",
        "Close of 30 Sep 2025 · model xgb-20250930-101010", CAVEAT]
    assert dedupe_key(1, _signal(Action.BUY, 0.7)) == (
        "signal:1:INFY:2025-09-30:xgb-20250930-101010")
    long_version = replace(_signal(Action.BUY, 0.7), model_version="v" * 150)
    assert len(dedupe_key(1, long_version)) <= 120


# ----------------------------------------------------------------------------------------------
# The scan and the outbox (SQLite and PostgreSQL)
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def svc(demo_url: str, tmp_path: Path):
    """A demo desk with six symbols' daily bars; model files in the test's folder."""
    services = Services(Database(demo_url), make_settings(demo_url,
                                                          model_dir=tmp_path / "models"))
    services.models.cfg = ModelConfig(n_rounds=12)
    load_instruments(services.db)
    for symbol in SYMBOLS:
        import_daily(services, tmp_path, symbol)
    yield services
    services.db.dispose()


def _alerts(services: Services) -> list[AlertOutboxRow]:
    return alert_rows(services, AlertOutboxRow.kind == "signal.new")


def _service(services: Services) -> SignalAlertService:
    return SignalAlertService(services.db, services.settings, services.signals)


@pytest.mark.usefixtures("backend")
def test_without_an_active_model_the_scan_is_skipped_with_the_reason(svc: Services) -> None:
    report = _service(svc).run(LAST_BAR)
    assert report.skipped.startswith("No signal model is active yet")
    with time_machine.travel(LAST_BAR):
        result = Worker(svc).scan_signal_alerts()
    assert result.outcome.value == "skipped" and "No signal model is active" in (
        result.message or "")
    assert _alerts(svc) == []


class FakeScanner:
    """Stands in for the signal service: returns the signals it was given, counts scans."""

    def __init__(self, signals: list[Signal]) -> None:
        self.signals = signals
        self.scans: list[str] = []

    def scan_as(self, operator: str) -> list[Signal]:
        self.scans.append(operator)
        return list(self.signals)


def _on(symbol: str, action: Action, probability: float) -> Signal:
    return replace(_signal(action, probability), symbol=symbol, trace_id=f"sig-{symbol}")


SCANNED = [_on("INFY", Action.BUY, 0.7234), _on("TCS", Action.SELL, 0.5),
           _on("SBIN", Action.BUY, 0.3312), _on("WIPRO", Action.HOLD, 0.91)]


def _symbol(row: AlertOutboxRow) -> str:
    return row.title.split(": ")[1].split(" ")[0]


@pytest.mark.usefixtures("backend")
def test_each_buy_or_sell_is_one_household_alert_with_its_probability(
        services: Services, login) -> None:
    scanner = FakeScanner(SCANNED)
    alerts = SignalAlertService(services.db, services.settings, scanner)
    report = alerts.run(LAST_BAR)
    assert scanner.scans == ["worker"]
    assert (report.scanned, report.alertable, report.written) == (
        4, ["INFY", "TCS", "SBIN"], 3)
    assert report.summary() == "4 signal(s) scanned, 3 BUY/SELL; 3 alert(s) written"
    rows = _alerts(services)
    household = login("rahul").household_id
    assert [(_symbol(r), r.probability, r.household_id, r.account_id, r.user_id, r.severity)
            for r in rows] == [
        ("INFY", Decimal("0.7234"), household, None, None, "info"),
        ("TCS", Decimal("0.5000"), household, None, None, "info"),
        ("SBIN", Decimal("0.3312"), household, None, None, "info")]
    assert rows[0].title == "BUY signal: INFY (p 0.72)" and rows[1].title.startswith("SELL")
    assert rows[0].dedupe_key == f"signal:{household}:INFY:2025-09-30:xgb-20250930-101010"
    assert all(row.body.endswith(CAVEAT) for row in rows)
    again = alerts.run(LAST_BAR.replace(hour=18))  # a retry, a restart: nothing new
    assert again.written == 0 and len(_alerts(services)) == 3
    refit = FakeScanner([replace(SCANNED[0], model_version="xgb-20251001-050000")])
    assert SignalAlertService(services.db, services.settings, refit).run(LAST_BAR).written == 1


@pytest.mark.usefixtures("backend")
def test_signals_on_stale_bars_or_a_holiday_alert_nothing(services: Services) -> None:
    alerts = SignalAlertService(services.db, services.settings, FakeScanner(SCANNED))
    saturday = alerts.run(datetime(2025, 10, 4, 15, 50, tzinfo=IST))
    assert saturday.skipped == "2025-10-04 is not an NSE trading day"
    stale = alerts.run(datetime(2025, 10, 10, 15, 50, tzinfo=IST))
    assert stale.skipped == ("the newest daily bar is of 2025-09-30, not of 2025-10-09 or "
                             "2025-10-10: import the day's bars for signals to alert")
    next_morning = alerts.run(datetime(2025, 10, 1, 15, 50, tzinfo=IST))  # yesterday's bar
    assert next_morning.written == 3
    assert len(_alerts(services)) == 3


@pytest.mark.usefixtures("backend")
def test_the_real_scan_journals_every_symbol_as_the_worker_and_alerts_every_buy_or_sell(
        svc: Services) -> None:
    svc.models.train_as("test", activate=True)
    report = _service(svc).run(LAST_BAR)
    with svc.db.transaction() as session:
        journal = [to_signal(row) for row in session.scalars(
            select(SignalRow).where(SignalRow.generated_by == "worker"))]
    assert sorted(s.symbol for s in journal) == sorted(SYMBOLS)
    expected = sorted(s.symbol for s in journal if s.action is not Action.HOLD)
    assert sorted(report.alertable) == expected and report.scanned == len(SYMBOLS)
    assert sorted(_symbol(row) for row in _alerts(svc)) == expected
    holds = {s.symbol for s in journal if s.action is Action.HOLD}
    assert not holds & {_symbol(row) for row in _alerts(svc)}


@pytest.mark.parametrize(("desk_ltp", "warned"), [
    (None, False), (Decimal("1450.05"), False), (Decimal("1595.00"), False),  # within 10%
    (Decimal("1595.10"), True), (Decimal("951.00"), True)])
def test_a_signal_far_from_the_desk_s_price_says_its_levels_do_not_apply(
        desk_ltp: Decimal | None, warned: bool) -> None:
    warning = desk_price_warning(_signal(Action.BUY, 0.6), desk_ltp)
    assert (warning is not None) == warned
    if desk_ltp == Decimal("951.00"):
        assert warning == (
            "The paper desk's last price of INFY is ₹951.00, 34% away from this signal's entry "
            "₹1,450.05 (the close of the daily bar of 2025-09-30): the desk's prices are of "
            "another day, so this signal's stop-loss and targets do not apply to an order "
            "placed there now.")


@pytest.mark.usefixtures("backend")
def test_stale_bars_are_named_even_when_no_signal_would_be_alerted(
        services: Services) -> None:
    holds = [_on("INFY", Action.HOLD, 0.31), _on("TCS", Action.HOLD, 0.41)]
    stale = SignalAlertService(services.db, services.settings, FakeScanner(holds)).run(
        datetime(2025, 10, 10, 15, 50, tzinfo=IST))
    assert stale.skipped == ("the newest daily bar is of 2025-09-30, not of 2025-10-09 or "
                             "2025-10-10: import the day's bars for signals to alert")
    assert stale.summary().startswith("no signal alerts: the newest daily bar is of 2025-09-30")
    fresh = SignalAlertService(services.db, services.settings, FakeScanner(holds)).run(LAST_BAR)
    assert fresh.skipped == "" and fresh.scanned == 2 and fresh.written == 0
    assert _alerts(services) == []


@pytest.mark.usefixtures("backend")
def test_the_threshold_notes_say_how_high_the_model_in_use_goes(svc: Services, login) -> None:
    rahul = login("rahul")
    [none] = svc.signal_alerts.threshold_notes(rahul, Decimal("0.00"))
    assert none.warn and none.text.startswith(
        "No model is in use, so no signal alert comes now: No signal model is active yet")
    svc.models.train_as("test", activate=True)
    state = svc.models.state(rahul)
    assert state.highest is not None and state.in_use is not None
    long_top, short_top = state.highest
    first, *rest = svc.signal_alerts.threshold_notes(rahul, Decimal("0.00"))
    assert not first.warn and first.text.startswith(
        f"Signal alerts come for BUY and SELL signals only. The model in use "
        f"({state.in_use.version}) gives probabilities of at most {long_top:.3f} (long) and "
        f"{short_top:.3f} (short)")
    assert [n.text for n in rest] == list(state.ceilings)  # every BUY/SELL passes 0.00
    high = svc.signal_alerts.threshold_notes(rahul, Decimal("0.70"))
    assert Note(True, "Your threshold 0.70 is above them: no signal alert will reach you. "
                      "0.00 lets every BUY and SELL through.") in high
    # a threshold stored with 3 decimals is named with all 3, not rounded to 2
    assert any(n.text.startswith("Your threshold 0.755 is above them")
               for n in svc.signal_alerts.threshold_notes(rahul, Decimal("0.755")))
    top = Decimal(str(round(max(long_top, short_top), 3)))
    assert not any(n.text.startswith("Your threshold")
                   for n in svc.signal_alerts.threshold_notes(rahul, top))
