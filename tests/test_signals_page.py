"""The Signals page through AppTest: model state, generate, scan, detail, performance, admin."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from core.clock import format_ist
from core.services import Services
from db.engine import Database
from db.models import ModelStatus, SignalRow
from engines.signal_types import DISCLAIMER
from pages.signals_parts import build_figure
from tests.conftest import TEST_CLIENT, make_settings
from tests.support.apptest import app_as, page, texts
from tests.support.market import load_instruments
from tests.test_signal_service import SYMBOLS, TINY, import_daily

PAGE = "pages/signals.py"


@pytest.fixture
def signals_desk(desk, tmp_path: Path, monkeypatch):
    """The AppTest desk with four symbols' daily bars and its own model folder (no model)."""
    svc, logins = desk
    models = tmp_path / "models"
    monkeypatch.setenv("MODEL_DIR", str(models))
    own = Services(Database(svc.db.url), make_settings(svc.db.url, model_dir=models))
    own.models.cfg = TINY
    load_instruments(own.db)
    for symbol in SYMBOLS:
        import_daily(own, tmp_path, symbol, until="2025-06-30")
    yield own, logins
    own.db.dispose()


@pytest.fixture
def modelled(signals_desk):
    """The signals desk with a trained, active tiny model."""
    signals_desk[0].models.train_as("test", activate=True)
    return signals_desk


def on_signals(desk, username: str) -> AppTest:
    at = app_as(desk, username)
    at.switch_page(page(PAGE)).run()
    assert not at.exception, at.exception
    return at


def test_without_a_model_the_page_says_what_to_do_and_the_worker_state(signals_desk) -> None:
    at = on_signals(signals_desk, "priya")
    assert "No signal model is active yet" in texts(at)
    signals_desk[0].models._start_row("xgb-running", "worker")
    at.run()
    assert "The signal model xgb-running is being trained by worker" in texts(at)


def test_a_trader_generates_a_signal_and_sees_its_chart_evidence_figures_and_disclaimer(
        modelled) -> None:
    svc = modelled[0]
    at = on_signals(modelled, "priya")
    version = svc.models.in_use().version
    assert f"Model in use: {version.version}" in texts(at)
    assert "Long setups: AUC" in texts(at) and "The edge is small" in texts(at)
    at.selectbox(key="signals_symbol").set_value("INFY")
    at.button(key="signals_generate_button").click().run()
    assert not at.exception, at.exception
    shown = texts(at)
    assert at.subheader[0].value.startswith("INFY: ") and DISCLAIMER in shown
    with svc.db.transaction() as session:
        row = session.scalar(select(SignalRow).where(SignalRow.symbol == "INFY"))
    assert row is not None and row.generated_by == "priya" and row.trace_id in shown
    assert any(m.label in ("Probability (long)", "Probability (short)") for m in at.metric)
    evidence = [f.value for f in at.dataframe if "detail" in f.value.columns]
    assert evidence and len(evidence[0]) > 3
    assert "Long setups: AUC" in shown


def test_a_scan_shows_the_ranked_table_and_opens_a_signal(modelled) -> None:
    at = on_signals(modelled, "kamla")
    at.button(key="signals_scan_button").click().run()
    assert not at.exception, at.exception
    table = next(f.value for f in at.dataframe if "edge" in f.value.columns)
    assert sorted(table["symbol"]) == sorted(SYMBOLS)
    first = table["trace_id"][0]
    at.selectbox(key="signals_open").set_value(first).run()
    assert not at.exception, at.exception
    assert f"trace {first}" in texts(at) and DISCLAIMER in texts(at)
    assert [s.value for s in at.subheader] == [f"{table['symbol'][0]}: {table['action'][0]}"]


def test_the_performance_tab_says_when_the_journal_is_empty(modelled) -> None:
    at = on_signals(modelled, "aarav")
    assert "The journal holds no signal yet." in texts(at)
    at.button(key="signals_refresh").click().run()
    assert "0 signal(s) got an outcome" in texts(at)


def test_only_admins_see_training_and_an_admin_trains_then_activates_a_version(
        modelled) -> None:
    svc = modelled[0]
    for username in ("priya", "aarav"):
        at = on_signals(modelled, username)
        assert not [b for b in at.button if b.key == "signals_train"]
        assert "Training and activating models is for household admins." in texts(at)
    at = on_signals(modelled, "rahul")
    at.button(key="signals_train").click().run()
    assert not at.exception, at.exception
    versions = svc.models.all_versions()
    assert len(versions) == 2 and versions[0].status is ModelStatus.READY
    assert f"Trained {versions[0].version}" in texts(at)
    at.selectbox(key="signals_activate_version").set_value(versions[0].version)
    at.button(key="signals_activate_button").click().run()
    assert not at.exception, at.exception
    assert svc.models.in_use().version.version == versions[0].version
    assert f"{versions[0].version} is now the active signal model." in texts(at)


def test_activate_acts_on_the_version_picked_even_if_another_admin_activated_it_first(
        modelled) -> None:
    svc = modelled[0]
    rahul = svc.auth.check_session(svc.auth.login(
        "rahul", modelled[1]["rahul"].password, TEST_CLIENT).session_id or "", TEST_CLIENT)
    for _ in range(2):
        svc.models.retrain(rahul)
    picked = svc.models.all_versions()[0].version  # the newest; the older one is ready too
    at = on_signals(modelled, "rahul")
    at.selectbox(key="signals_activate_version").set_value(picked).run()
    svc.models.activate(rahul, picked)  # from another admin's tab

    at.button(key="signals_activate_button").click().run()

    assert not at.exception, at.exception
    assert svc.models.in_use().version.version == picked  # not another ready version
    assert f"{picked} is now the active signal model." in texts(at)


def test_the_signal_chart_draws_entry_stop_and_three_targets(modelled) -> None:
    svc = modelled[0]
    me = svc.auth.check_session(svc.auth.login(
        "priya", modelled[1]["priya"].password, TEST_CLIENT).session_id or "", TEST_CLIENT)
    signal = svc.signals.generate(me, "SBIN")
    figure = build_figure(svc.signals.chart(me, signal.trace_id))
    names = [trace.name for trace in figure.data]
    assert names == ["SBIN", "Entry", "Stop-loss", "Target 1", "Target 2", "Target 3"]
    assert figure.data[2].y[0] == float(signal.stop_loss)


def test_a_corrupt_active_model_file_shows_the_fallback_version_and_why(modelled) -> None:
    svc = modelled[0]
    good = svc.models.in_use().version.version
    newer = svc.models.train_as("test", activate=True).version
    (svc.settings.resolved_model_dir() / f"{newer}.model").write_bytes(b"not a model")
    at = on_signals(modelled, "priya")
    assert f"Model in use: {good}" in texts(at)
    error = " ".join(e.value for e in at.error)
    assert f"Model {newer}" in error and f"Using {good}, the previous good version" in error


def test_the_banner_says_plainly_when_the_model_cannot_give_a_buy_or_a_sell(
        modelled, monkeypatch) -> None:
    from core.services import signal_registry
    from engines.signals import SignalConfig

    monkeypatch.setattr(signal_registry, "ACTION_RULE", SignalConfig(min_edge=0.0))
    at = on_signals(modelled, "priya")
    assert "cannot give a" not in texts(at)  # any model reaches its base rate
    monkeypatch.setattr(signal_registry, "ACTION_RULE", SignalConfig(min_edge=0.9))
    at.run()
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("This model version cannot give a BUY: its highest long "
                            "probability is ") and w.endswith("every signal is HOLD.")
               for w in warnings), warnings
    assert any(w.startswith("This model version cannot give a SELL") for w in warnings)


def test_the_journal_table_says_when_it_shows_only_the_newest_signals(
        modelled, monkeypatch) -> None:
    from core.services import signals as signals_module

    at = on_signals(modelled, "priya")
    at.button(key="signals_scan_button").click().run()  # journals all four symbols
    assert "journaled signals (the table" not in texts(at)
    monkeypatch.setattr(signals_module, "JOURNAL_ROWS", 2)
    at.run()
    assert not at.exception, at.exception
    assert ("The newest 2 of 4 journaled signals (the table and its CSV hold these only)."
            in [c.value for c in at.caption])
    journal = next(f.value for f in at.dataframe if "outcome" in f.value.columns)
    assert len(journal) == 2


def test_the_banner_names_each_side_s_calibrator(modelled) -> None:
    from core.services.signal_registry import calibrator_kinds

    used = modelled[0].models.in_use()
    at = on_signals(modelled, "priya")
    banner = next(m.value for m in at.markdown if m.value.startswith("**Model in use"))
    assert f"{used.version.calibration_to}, {calibrator_kinds(used.artifact)}" in banner
    assert "long " in banner and ", short " in banner


def test_an_attached_evaluation_without_edge_replaces_the_small_edge_statement(
        modelled) -> None:
    svc = modelled[0]
    version = svc.models.in_use().version.version
    svc.models.attach_evaluation_as("cli", version, {
        "auc": 0.49, "auc_ci_low": 0.33, "auc_ci_high": 0.57, "ece": 0.03, "base_rate": 0.27,
        "n_predictions": 900, "brier_skill": -0.0101, "meta": {"n_symbols": 10}})
    at = on_signals(modelled, "priya")
    captions = [c.value for c in at.caption]
    assert any(c.startswith("Evaluation (python -m engines.evaluate): AUC 0.49") for c in captions)
    assert any(c.startswith("No measurable edge: the evaluation on unseen stocks") for c in
               captions), captions
    assert "The edge is small" not in texts(at)


def test_the_scan_names_the_instruments_without_daily_bars(modelled) -> None:
    at = on_signals(modelled, "kamla")
    at.button(key="signals_scan_button").click().run()
    assert not at.exception, at.exception
    note = next(c.value for c in at.caption if "have no daily bars yet" in c.value)
    assert note.endswith(" more.") and ": " in note, note


def test_a_journaled_signal_opens_from_the_journal_with_its_outcome_and_later_bars(
        modelled, tmp_path) -> None:
    svc = modelled[0]
    at = on_signals(modelled, "priya")
    at.button(key="signals_scan_button").click().run()  # journals all four symbols
    made_with = svc.models.in_use().version.version
    import_daily(svc, tmp_path, "SBIN", after="2025-06-30")
    with svc.db.transaction() as session:
        row = session.scalar(select(SignalRow).where(SignalRow.symbol == "SBIN"))
        assert row is not None
        row.outcome, row.outcome_price = "STOP", Decimal("801.50")
        row.outcome_at = row.bar_time + timedelta(days=3)
        trace, bar_time, decided = row.trace_id, row.bar_time, row.outcome_at
    svc.models.train_as("test", activate=True)  # the journaled signal's model is not in use
    at.run()
    assert not at.exception, at.exception

    at.selectbox(key="signals_journal_open").set_value(trace).run()

    assert not at.exception, at.exception
    shown = texts(at)
    assert f"trace {trace}" in shown and DISCLAIMER in shown
    assert any(s.value.startswith("SBIN: ") for s in at.subheader)
    assert f"**Outcome:** STOP on {format_ist(decided)[:10]} at ₹801.50" in shown
    assert f"Computed with model {made_with} (not the model in use now)." in shown
    assert svc.signals.chart(
        svc.auth.check_session(svc.auth.login(
            "priya", modelled[1]["priya"].password, TEST_CLIENT).session_id or "",
            TEST_CLIENT), trace).bars.index.max() > bar_time  # later bars drawn


def test_the_scan_table_names_the_direction_of_each_probability(modelled) -> None:
    at = on_signals(modelled, "kamla")
    at.button(key="signals_scan_button").click().run()
    assert not at.exception, at.exception
    table = next(f.value for f in at.dataframe if "edge" in f.value.columns)
    columns = list(table.columns)
    assert columns.index("probability of") == columns.index("probability") - 1
    assert set(table["probability of"]) <= {"LONG", "SHORT"}


def test_the_page_names_the_held_out_and_the_expected_hit_rates_apart(modelled) -> None:
    at = on_signals(modelled, "kamla")
    captions = [c.value for c in at.caption]
    assert any(c.startswith("Expected hit rate now: long ") for c in captions), captions
    assert any("held-out hit rate" in c for c in captions)
    at.button(key="signals_scan_button").click().run()
    assert not at.exception, at.exception
    assert "base rate" not in texts(at)
