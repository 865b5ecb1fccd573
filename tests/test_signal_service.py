"""The signal service and model registry on SQLite and PostgreSQL.

A desk stocked with a few sample symbols' daily bars trains tiny models (few rounds) through the
real registry; signals come from the real engines and are journaled; outcomes are marked from
bars imported later, the way the daily import brings them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from core.errors import NotFound, PermissionDenied, ValidationError
from core.services import Services
from core.services.signals import SIGNAL_BARS
from db.engine import Database
from db.models import AuditRow, ModelStatus, SignalRow
from engines.features import MIN_BARS
from engines.model import ModelConfig, ModelFileError
from engines.signal_types import Action, Direction
from tests.conftest import make_settings
from tests.support.market import load_instruments

ROOT = Path(__file__).resolve().parent.parent
DAILY = ROOT / "data" / "sample" / "nse_daily"
SYMBOLS = ("INFY", "TCS", "SBIN", "HDFCBANK")
TINY = ModelConfig(n_rounds=12)
CUT = "2025-06-30"  # bars after this day arrive "later" in the outcome test


def import_daily(svc: Services, tmp_path: Path, symbol: str, *, until: str | None = None,
                 after: str | None = None, last: int | None = None) -> None:
    """Import part of a sample daily file through the real importer."""
    frame = pd.read_csv(DAILY / f"{symbol}.csv")
    day = frame["timestamp"].str[:10]
    if until is not None:
        frame = frame[day <= until]
    if after is not None:
        frame = frame[day > after]
    if last is not None:
        frame = frame.tail(last)
    path = tmp_path / f"{symbol}.csv"
    frame.to_csv(path, index=False)
    svc.marketdata.import_file(path, symbol=symbol, interval="1d")


@pytest.fixture
def svc(demo_url: str, tmp_path: Path):
    """Services over a demo desk whose model files live in the test's folder."""
    services = Services(Database(demo_url), make_settings(demo_url,
                                                          model_dir=tmp_path / "models"))
    services.models.cfg = TINY
    load_instruments(services.db)
    yield services
    services.db.dispose()


@pytest.fixture
def stocked(svc: Services, tmp_path: Path) -> Services:
    """The desk with four symbols' daily bars up to CUT."""
    for symbol in SYMBOLS:
        import_daily(svc, tmp_path, symbol, until=CUT)
    return svc


@pytest.fixture
def trained(stocked: Services) -> Services:
    """The stocked desk with one trained, active model."""
    stocked.models.train_as("test", activate=True)
    return stocked


def audit_actions(svc: Services) -> list[tuple[str, str, str]]:
    with svc.db.transaction() as session:
        rows = session.execute(select(AuditRow.action, AuditRow.outcome, AuditRow.actor_username)
                               .where(AuditRow.action.like("model.%"))).all()
    return [tuple(r) for r in rows]


# ----------------------------------------------------------------------------------------------
# Registry: training, activation, authorization, corrupt files
# ----------------------------------------------------------------------------------------------


def test_an_admin_trains_a_version_registered_with_its_file_hash_windows_and_figures(
        stocked, login) -> None:
    rahul = login("rahul")
    steps: list[str] = []
    version = stocked.models.retrain(rahul, progress=steps.append)
    assert version.status is ModelStatus.READY and version.created_by == "rahul"
    data = (stocked.settings.resolved_model_dir() / f"{version.version}.model").read_bytes()
    assert version.sha256 == hashlib.sha256(data).hexdigest()
    assert version.size_bytes == len(data)
    assert version.n_symbols == len(SYMBOLS) and len(version.features) > 10
    assert version.train_from < version.train_to < version.calibration_to
    assert str(version.calibration_to) <= CUT
    assert 0.4 < version.metrics["auc"] < 0.7 and 0 < version.metrics["base_rate"] < 1
    assert version.report["base_rate_long"] == pytest.approx(
        stocked.models.store.read(version.version, version.sha256).base_rate_long)
    assert steps and steps[0].startswith("Loading daily bars")

    active = stocked.models.activate(rahul, version.version)
    assert active.is_active and active.activated_by == "rahul"
    assert stocked.models.state(rahul).in_use.version == version.version
    assert ("model.train", "ok", "rahul") in audit_actions(stocked)
    assert ("model.activate", "ok", "rahul") in audit_actions(stocked)


@pytest.mark.parametrize("username", ["priya", "aarav"])
def test_only_admins_may_train_or_activate_and_each_refusal_is_audited(
        trained, login, username) -> None:
    me = login(username)
    with pytest.raises(PermissionDenied, match="only an admin or super admin may train"):
        trained.models.retrain(me)
    version = trained.models.versions(me)[0].version
    with pytest.raises(PermissionDenied, match="may not activate a signal model"):
        trained.models.activate(me, version)
    denied = [a for a in audit_actions(trained) if a[1] == "denied"]
    assert denied == [("model.train", "denied", username), ("model.activate", "denied", username)]


def test_a_new_activation_keeps_the_previous_version_available_and_only_one_active(
        trained, login) -> None:
    rahul = login("rahul")
    first = trained.models.versions(rahul)[0]
    second = trained.models.retrain(rahul, activate=True)
    versions = {v.version: v for v in trained.models.versions(rahul)}
    assert versions[second.version].is_active
    assert versions[first.version].status is ModelStatus.READY
    assert sum(v.is_active for v in versions.values()) == 1
    trained.models.activate(rahul, first.version)
    assert trained.models.in_use().version.version == first.version


def test_a_corrupt_model_file_falls_back_to_the_previous_good_version_and_says_why(
        trained, login) -> None:
    rahul = login("rahul")
    good = trained.models.versions(rahul)[0].version
    newer = trained.models.retrain(rahul, activate=True).version
    path = trained.settings.resolved_model_dir() / f"{newer}.model"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    used = trained.models.in_use()
    assert used.version.version == good
    assert f"Model {newer}" in used.fallback_reason and "SHA-256" in used.fallback_reason
    assert f"Using {good}, the previous good version" in used.fallback_reason
    state = trained.models.state(rahul)
    assert state.in_use.version == good and state.fallback_reason == used.fallback_reason
    assert trained.signals.generate(rahul, "INFY").model_version == good
    with pytest.raises(ModelFileError, match="SHA-256"):
        trained.models.activate(rahul, newer)

    (trained.settings.resolved_model_dir() / f"{good}.model").unlink()
    with pytest.raises(ModelFileError, match=r"SHA-256.*No earlier version loads either"):
        trained.models.in_use()


def test_without_an_active_model_generating_says_what_to_do_or_that_training_runs(
        stocked, login) -> None:
    priya = login("priya")
    with pytest.raises(NotFound, match=r"No signal model is active yet.*signals_cli train"):
        stocked.signals.generate(priya, "INFY")
    with pytest.raises(NotFound, match="No signal model is active yet"):
        stocked.signals.scan(priya)
    stocked.models._start_row("xgb-test-running", "worker")
    state = stocked.models.state(priya)
    assert state.in_use is None and state.training.version == "xgb-test-running"
    assert "is being trained by worker" in state.problem
    assert stocked.models.fail_stale_training("worker") == 1
    assert "stopped" in stocked.models.versions(priya)[0].message


def test_training_without_enough_daily_bars_says_what_to_import(svc, login) -> None:
    with pytest.raises(ValidationError, match=f"the {MIN_BARS} daily bars training needs"):
        svc.models.retrain(login("rahul"))


# ----------------------------------------------------------------------------------------------
# Generating, scanning, the journal
# ----------------------------------------------------------------------------------------------


def test_a_trader_generates_a_journaled_signal_and_generating_again_keeps_its_trace(
        trained, login) -> None:
    priya = login("priya")
    signal = trained.signals.generate(priya, "infy")
    assert signal.symbol == "INFY" and str(signal.as_of.date()) == CUT
    assert signal.model_version == trained.models.in_use().version.version
    assert 0 < signal.probability < 1 and signal.evidence
    for price in (signal.entry, signal.stop_loss, *signal.targets):
        assert price % Decimal("0.05") == 0
    again = trained.signals.generate(login("aarav"), "INFY")
    assert again.trace_id == signal.trace_id
    assert trained.signals.signal(priya, signal.trace_id) == signal
    journal = trained.signals.journal_frame(priya)
    assert list(journal["trace_id"]) == [signal.trace_id] and journal["by"][0] == "priya"


def test_an_unknown_symbol_is_refused_by_name(trained, login) -> None:
    with pytest.raises(NotFound, match="Unknown symbol 'NOSUCH'"):
        trained.signals.generate(login("priya"), "nosuch")
    with pytest.raises(NotFound, match="Unknown symbol"):
        trained.signals.scan(login("priya"), ["INFY", "NOSUCH"])


def test_too_little_history_names_the_bars_a_signal_needs(trained, login, tmp_path) -> None:
    import_daily(trained, tmp_path, "WIPRO", last=100)
    with pytest.raises(ValidationError, match=f"WIPRO has 100 daily bars; a signal needs at "
                                              f"least {MIN_BARS}"):
        trained.signals.generate(login("priya"), "WIPRO")


def test_a_scan_ranks_every_symbol_with_history_and_lists_the_ones_skipped(
        trained, login, tmp_path) -> None:
    import_daily(trained, tmp_path, "WIPRO", last=100)
    seen: list[tuple[int, int, str]] = []
    frame = trained.signals.scan(login("kamla"), progress=lambda *a: seen.append(a))
    assert sorted(frame["symbol"]) == sorted(SYMBOLS)
    assert frame.attrs["skipped"] == [f"WIPRO (100 of {MIN_BARS} bars)"]
    total = len(trained.signals.symbols(login("kamla")))  # every instrument, bars or not
    assert [step[:2] for step in seen] == [(n, total) for n in range(1, total + 1)]
    assert frame.attrs["no_bars"] == total - len(SYMBOLS) - 1
    acts = frame["action"] != Action.HOLD.value
    assert list(acts) == sorted(acts, reverse=True)  # BUY/SELL first
    assert list(frame[acts]["edge"]) == sorted(frame[acts]["edge"], reverse=True)
    assert frame[~acts]["edge"].isna().all()  # a HOLD takes no direction: no edge
    assert list(frame[~acts]["symbol"]) == sorted(frame[~acts]["symbol"])
    assert {"probability", "confidence", "entry [₹]", "stop-loss [₹]", "target 1 [₹]",
            "target 2 [₹]", "target 3 [₹]", "risk:reward", "regime", "evidence"} <= set(
                frame.columns)
    assert frame["evidence"].min() > 3  # votes, model, regime, contributions
    with trained.db.transaction() as session:
        assert len(session.scalars(select(SignalRow.id)).all()) == len(SYMBOLS)
    trained.signals.scan(login("kamla"), ["INFY"])  # again: journaled once
    with trained.db.transaction() as session:
        assert len(session.scalars(select(SignalRow.id)).all()) == len(SYMBOLS)


def test_a_signal_chart_holds_the_bars_before_it_and_its_levels(trained, login) -> None:
    priya = login("priya")
    signal = trained.signals.generate(priya, "TCS")
    chart = trained.signals.chart(priya, signal.trace_id)
    assert chart.signal == signal and chart.outcome == "OPEN"
    assert len(chart.bars) == 90 and chart.bars.index[-1] == pd.Timestamp(signal.as_of)
    with pytest.raises(NotFound, match="not in the journal"):
        trained.signals.chart(priya, "sig-unknown")


def test_signals_use_the_last_bars_only_as_far_as_the_features_need(trained) -> None:
    assert SIGNAL_BARS >= 2 * MIN_BARS


# ----------------------------------------------------------------------------------------------
# Outcomes and performance
# ----------------------------------------------------------------------------------------------


def _crafted(trained: Services, priya, symbol: str, kind: str):
    """A journaled LONG signal on the CUT bar whose levels make ``kind`` happen next."""
    base = trained.signals.generate(priya, symbol)
    entry = base.entry
    tick = Decimal("0.05")
    far_down, far_up = (entry / 2).quantize(tick), (entry * 2).quantize(tick)
    near = (entry + tick, entry + 2 * tick, entry + 3 * tick)
    levels = {"target": (far_down, near), "stop": (entry - tick, (far_up,) * 3),
              "expiry": (far_down, (far_up, far_up + tick, far_up + 2 * tick))}[kind]
    stop, targets = levels
    return replace(base, action=Action.BUY, direction=Direction.LONG, stop_loss=stop,
                   targets=tuple(targets), trace_id=f"sig-{kind}-{symbol}",
                   model_version=f"crafted-{kind}")


def test_outcomes_are_marked_from_later_bars_and_performance_comes_from_the_journal(
        trained, login, tmp_path) -> None:
    priya = login("priya")
    crafted = [_crafted(trained, priya, "INFY", "target"), _crafted(trained, priya, "TCS", "stop"),
               _crafted(trained, priya, "SBIN", "expiry")]
    trained.signals.journal(crafted, "test")
    assert trained.signals.refresh_outcomes(priya) == 0  # no later bars yet
    for symbol in SYMBOLS:
        import_daily(trained, tmp_path, symbol, after=CUT)
    with trained.db.transaction() as session:
        directional = session.scalar(select(func.count()).select_from(SignalRow).where(
            SignalRow.direction != Direction.FLAT))
    assert trained.signals.refresh_outcomes(priya) == directional  # 60 later bars: all decided
    with trained.db.transaction() as session:
        rows = {r.trace_id: r for r in session.scalars(
            select(SignalRow).where(SignalRow.trace_id.like("sig-%-%")))}
    target = rows["sig-target-INFY"]
    assert target.outcome == "TARGET3" and target.outcome_price == crafted[0].targets[2]
    assert rows["sig-stop-TCS"].outcome == "STOP"
    assert rows["sig-stop-TCS"].outcome_price == crafted[1].stop_loss
    expiry = rows["sig-expiry-SBIN"]
    assert expiry.outcome == "EXPIRED" and expiry.outcome_at > expiry.bar_time
    for row in rows.values():
        assert row.outcome_at > row.bar_time
    assert trained.signals.mark_outcomes(pd.Timestamp.now(tz="UTC").to_pydatetime()) == 0

    perf = trained.signals.performance(priya)
    assert perf.journaled == 6  # three generated, three crafted
    with trained.db.transaction() as session:
        decided = session.execute(select(SignalRow.outcome, SignalRow.probability).where(
            SignalRow.outcome != "OPEN")).all()
    hits = [o in ("TARGET1", "TARGET2", "TARGET3") for o, _ in decided]
    assert perf.resolved == len(decided)
    assert perf.hit_rate == pytest.approx(sum(hits) / len(hits))
    assert perf.mean_probability == pytest.approx(
        sum(float(p) for _, p in decided) / len(decided))
    assert perf.by_regime["signals"].sum() == len(decided)
    assert perf.by_confidence["signals"].sum() == len(decided)
    assert sum(point["n"] for point in perf.reliability) == len(decided)
    assert f"From {len(decided)} decided" in perf.note and "mostly noise" in perf.note


def test_an_empty_journal_says_so_and_shows_no_rates(trained, login) -> None:
    perf = trained.signals.performance(login("aarav"))
    assert perf.journaled == 0 and perf.resolved == 0 and perf.hit_rate is None
    assert perf.note == "The journal holds no signal yet." and perf.reliability == []


# ----------------------------------------------------------------------------------------------
# Operator paths (worker and CLI)
# ----------------------------------------------------------------------------------------------


def test_the_weekly_calibrator_refit_registers_and_activates_a_version_on_the_same_trees(
        trained) -> None:
    first = trained.models.in_use().version
    refit = trained.models.refit_calibrator_as("worker")
    assert refit.is_active and refit.base_version == first.version
    assert refit.version.startswith(f"{first.version}-c")
    assert trained.models.in_use().version.version == refit.version
    assert ("model.train", "ok", "worker") in audit_actions(trained)


def test_an_evaluation_report_attached_to_a_version_is_shown_beside_its_figures(
        trained) -> None:
    from core.services.signal_views import figures_lines

    version = trained.models.in_use().version.version
    report = {"auc": 0.54, "auc_ci_low": 0.52, "auc_ci_high": 0.56, "ece": 0.021,
              "base_rate": 0.27, "n_predictions": 1000, "brier_skill": 0.001,
              "meta": {"n_symbols": 10, "from": "2024-04-15", "to": "2025-09-30",
                       "generated_at": "2026-11-21T10:00:00+05:30"}}
    attached = trained.models.attach_evaluation_as("cli", version, report)
    lines = figures_lines(attached)
    assert lines[-1].startswith("Evaluation (python -m engines.evaluate): AUC 0.54 (90% CI "
                                "0.52–0.56), ECE 0.021")
    assert "10 symbols, 2024-04-15..2025-09-30, measured 2026-11-21" in lines[-1]
    assert lines[0].startswith(f"Long setups: AUC {attached.metrics['auc']:.2f}")
    with pytest.raises(ValidationError, match="Not an evaluation report"):
        trained.models.attach_evaluation_as("cli", version, {"auc": 0.5})
    assert json.loads(json.dumps(attached.report))["evaluation"]["auc"] == 0.54


def test_the_cli_trains_activates_attaches_and_lists_audited_as_cli(stocked, tmp_path,
                                                                    capsys) -> None:
    from core.signals_cli import _run, parser

    report = tmp_path / "report.json"
    report.write_text(json.dumps({"auc": 0.55, "ece": 0.03, "base_rate": 0.28,
                                  "n_predictions": 500}), encoding="utf-8")
    assert _run(stocked, parser().parse_args(["train", "--activate", "--evaluation",
                                              str(report)])) == 0
    version = stocked.models.in_use().version
    assert version.created_by == "cli" and version.report["evaluation"]["auc"] == 0.55
    out = capsys.readouterr().out
    assert out.startswith("Loading daily bars") and f"{version.version}  active" in out
    assert "Evaluation (python -m engines.evaluate): AUC 0.55, ECE 0.030" in out
    assert _run(stocked, parser().parse_args(["list"])) == 0
    assert f"{version.version}  active    by cli" in capsys.readouterr().out
    assert ("model.activate", "ok", "cli") in audit_actions(stocked)


def test_the_cli_runs_as_a_module_against_database_url(demo_url, tmp_path) -> None:
    import subprocess
    import sys

    from tests.conftest import TEST_SECRET

    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": demo_url, "SECRET_KEY": TEST_SECRET,
           "MODEL_DIR": str(tmp_path / "models")}
    done = subprocess.run([sys.executable, "-m", "core.signals_cli", "list"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "No signal model is registered yet" in done.stdout
    refused = subprocess.run([sys.executable, "-m", "core.signals_cli", "activate", "xgb-none"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                             check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "sher signals: Model version 'xgb-none' does not exist"


def test_model_files_default_to_a_folder_beside_the_sqlite_database_else_var_models() -> None:
    from core.config import VAR_DIR

    assert make_settings("sqlite:////srv/desk/sher.db").resolved_model_dir() == Path(
        "/srv/desk/models")
    assert make_settings("postgresql://u@h/db").resolved_model_dir() == VAR_DIR / "models"
    assert make_settings("postgresql://u@h/db", model_dir=Path("/m")).resolved_model_dir() == \
        Path("/m")


def test_the_desks_signal_ranks_the_stock_against_the_universes_score_that_day(
        trained, login) -> None:
    from core.marketdata.store import all_instruments
    from engines.model import predict, universe_center

    priya = login("priya")
    generated = trained.signals.generate(priya, "INFY")
    used = trained.models.in_use().artifact
    with trained.db.transaction() as session:
        bars = trained.signals._recent_bars(session, all_instruments(session))
    bars = {symbol: frame for symbol, frame in bars.items() if len(frame) >= MIN_BARS}
    center = universe_center(used, bars, bars["INFY"].index[-1].to_pydatetime())
    expected = predict(used, bars["INFY"], symbol="INFY", center=center)
    stored = predict(used, bars["INFY"], symbol="INFY")  # the calibrator's stored centre
    assert generated.probability in (pytest.approx(expected.p_long, abs=1e-6),
                                     pytest.approx(expected.p_short, abs=1e-6))
    assert (expected.p_long, expected.p_short) != (stored.p_long, stored.p_short)
    scanned = trained.signals.scan(priya)
    row = scanned[scanned["symbol"] == "INFY"].iloc[0]
    assert float(row["probability"]) == pytest.approx(generated.probability, abs=1e-3)


def test_the_model_state_says_when_the_model_cannot_reach_a_buy_or_a_sell(trained,
                                                                         login) -> None:
    import numpy as np

    from core.services.signal_registry import action_ceilings

    artifact = trained.models.in_use().artifact
    tops = {}
    for side in ("LONG", "SHORT"):
        calibrator = artifact.calibrators[side]
        tops[side] = calibrator.highest()
        with np.errstate(over="ignore"):
            grid = calibrator.apply(np.linspace(-60.0, 60.0, 4001), 0.0)
        assert tops[side] == pytest.approx(float(grid.max()))  # the top of the clipped range
        assert calibrator.high < 1e9  # the score range is clipped in training
    reachable = replace(artifact, base_rate_long=tops["LONG"] - 0.031,
                        base_rate_short=tops["SHORT"] - 0.031)
    assert action_ceilings(reachable) == ()
    no_buy = replace(reachable, base_rate_long=tops["LONG"] - 0.02)
    (line,) = action_ceilings(no_buy)
    assert line == (f"This model version cannot give a BUY: its highest long probability is "
                    f"{tops['LONG']:.3f}, below the {tops['LONG'] + 0.01:.3f} a BUY needs "
                    f"(expected hit rate {tops['LONG'] - 0.02:.3f} + edge 0.03); no signal is "
                    "a BUY.")
    neither = replace(no_buy, base_rate_short=tops["SHORT"])
    lines = action_ceilings(neither)
    assert [x.split(":")[0] for x in lines] == ["This model version cannot give a BUY",
                                                "This model version cannot give a SELL"]
    assert all(x.endswith("; every signal is HOLD.") for x in lines)
    state = trained.models.state(login("priya"))
    assert state.ceilings == action_ceilings(artifact)


def test_hold_signals_are_not_counted_as_undecided_and_their_outcome_reads_no_trade(
        trained, login) -> None:
    priya = login("priya")
    base = trained.signals.generate(priya, "INFY")
    crafted = _crafted(trained, priya, "TCS", "target")  # a BUY, still open
    with trained.db.transaction() as session:
        session.execute(SignalRow.__table__.delete())  # only the crafted rows from here on
    holds = [replace(base, action=Action.HOLD, direction=Direction.FLAT,
                     trace_id=f"sig-hold-{i}", model_version=f"crafted-hold-{i}")
             for i in range(3)]
    trained.signals.journal(holds, "test")
    perf = trained.signals.performance(priya)
    assert (perf.journaled, perf.holds, perf.resolved) == (3, 3, 0)
    assert perf.note == ("The journal holds no BUY/SELL signal yet. 3 HOLD signal(s) are "
                         "journaled but have no trade to mark.")
    trained.signals.journal([crafted], "test")
    note = trained.signals.performance(priya).note
    assert note.startswith("The journal holds 1 BUY/SELL signal(s), none decided yet")
    assert note.endswith(" 3 HOLD signal(s) are journaled but have no trade to mark.")
    journal = trained.signals.journal_frame(priya)
    outcomes = dict(zip(journal["trace_id"], journal["outcome"], strict=True))
    assert outcomes == {"sig-target-TCS": "OPEN", "sig-hold-0": "no trade",
                        "sig-hold-1": "no trade", "sig-hold-2": "no trade"}


def test_a_journal_cut_to_its_newest_rows_says_of_how_many(trained, login,
                                                           monkeypatch) -> None:
    from core.services import signals as signals_module
    from core.services.signal_views import journal_file_stem, journal_heading

    priya = login("priya")
    for symbol in SYMBOLS:
        trained.signals.generate(priya, symbol)
    whole = trained.signals.journal_frame(priya)
    assert len(whole) == whole.attrs["total"] == 4
    assert journal_heading(whole) is None and journal_file_stem(whole) == "signal_journal"
    monkeypatch.setattr(signals_module, "JOURNAL_ROWS", 3)
    cut = trained.signals.journal_frame(priya)
    assert (len(cut), cut.attrs["total"]) == (3, 4)
    assert journal_heading(cut) == ("The newest 3 of 4 journaled signals (the table and its "
                                    "CSV hold these only).")
    assert journal_file_stem(cut) == "signal_journal_newest_3_of_4"
    assert len(trained.signals.journal_frame(priya, limit=2)) == 2


def test_each_side_s_calibrator_kind_is_registered_and_stated(trained, login) -> None:
    from core.services.signal_registry import calibrator_kinds, calibrator_label
    from core.services.signal_views import versions_frame

    used = trained.models.in_use()
    cals = used.artifact.calibrators
    mixed = replace(used.artifact, calibrators={
        "LONG": replace(cals["LONG"], kind="platt"), "SHORT": replace(cals["SHORT"],
                                                                      kind="isotonic")})
    assert calibrator_kinds(mixed) == "long platt, short isotonic"
    kinds = calibrator_kinds(used.artifact)
    assert kinds == (f"long {cals['LONG'].kind}, short {cals['SHORT'].kind}")
    assert used.version.report["calibrator_kinds"] == kinds
    assert calibrator_label(used.version) == kinds
    assert trained.models.state(login("priya")).calibrators == kinds
    assert versions_frame([used.version])["calibrated"][0].endswith(f"({kinds})")
    # the table names the held-out hit rate as the figures line does, not 'base_rate'
    assert versions_frame([used.version])["held-out hit rate"][0] == used.version.metrics[
        "base_rate"]
    from core.signals_cli import describe

    assert describe(used.version)[0].endswith(f"({kinds})")
    older = replace(used.version, report={}, calibrator_kind="platt")
    assert calibrator_label(older) == "long platt"


def test_the_edge_statement_follows_an_attached_evaluation_on_unseen_stocks(trained) -> None:
    from core.services.signal_views import edge_statement

    version = trained.models.in_use().version
    own = edge_statement(version)
    assert own.startswith(f"The edge is small: an AUC of {version.metrics['auc']:.2f} (long "
                          "setups, on held-out days of the training stocks, not on unseen "
                          "stocks)")
    base = {"ece": 0.03, "base_rate": 0.27, "n_predictions": 900,
            "meta": {"n_symbols": 10, "from": "2024-04-15", "to": "2025-09-30"}}
    none = trained.models.attach_evaluation_as(
        "cli", version.version,
        {**base, "auc": 0.49, "auc_ci_low": 0.33, "auc_ci_high": 0.57, "brier_skill": -0.0101})
    assert edge_statement(none) == (
        "No measurable edge: the evaluation on unseen stocks (python -m engines.evaluate) "
        "gives an AUC of 0.49 (90% CI 0.33–0.57), and an AUC of 0.50 is a coin, which its "
        "interval includes. Treat the probabilities as no better than the expected hit "
        "rate.")
    small = trained.models.attach_evaluation_as(
        "cli", version.version, {**base, "auc": 0.54, "auc_ci_low": 0.52, "auc_ci_high": 0.56})
    assert edge_statement(small).startswith(
        "The edge is small: the evaluation on unseen stocks (python -m engines.evaluate) gives "
        "an AUC of 0.54 (90% CI 0.52–0.56): of a random pair")
    same_stocks = trained.models.attach_evaluation_as("cli", version.version, {
        **base, "auc": 0.55, "meta": {**base["meta"], "out_of_symbol": False}})
    assert "the evaluation (out of time, but on the training stocks)" in edge_statement(
        same_stocks)


def test_the_held_out_dates_are_those_of_the_held_out_bars(trained) -> None:
    from core.clock import IST
    from engines.model import build_dataset, purged_folds

    used = trained.models.in_use()
    artifact, report = used.artifact, used.version.report
    data = build_dataset(trained.models.daily_bars(), artifact.spec)
    held = data[purged_folds(data, artifact.calibrated_at, TINY).holdout]["t"]
    first, last = (held.min().tz_convert(IST).date(), held.max().tz_convert(IST).date())
    assert (report["holdout_from"], report["holdout_to"]) == (str(first), str(last))
    assert last < used.version.calibration_to  # that is when the last label resolved
    from core.services.signal_views import figures_lines

    assert f"held out {first}..{last} on " in figures_lines(used.version)[0]


def test_a_scan_names_the_instruments_without_daily_bars(trained, login) -> None:
    from core.services.signal_views import no_bars_note

    frame = trained.signals.scan(login("kamla"))
    every = trained.signals.symbols(login("kamla"))
    bar_less = [s for s in every if s not in SYMBOLS]
    assert frame.attrs["no_bars_symbols"] == bar_less and len(bar_less) > 5
    assert frame.attrs["no_bars"] == len(bar_less)
    assert no_bars_note(bar_less) == (
        f"{len(bar_less)} instrument(s) have no daily bars yet: {', '.join(bar_less[:5])} and "
        f"{len(bar_less) - 5} more.")
    assert no_bars_note(bar_less[:2]) == (
        f"2 instrument(s) have no daily bars yet: {bar_less[0]}, {bar_less[1]}.")
    assert no_bars_note([]) is None


def test_the_scan_and_the_journal_name_the_direction_each_probability_is_of(
        trained, login) -> None:
    frame = trained.signals.scan(login("kamla"))
    holds = frame[frame["action"] == Action.HOLD.value]
    assert not holds.empty  # the tiny model leaves some HOLDs, whose direction is FLAT
    leans = frame["stop-loss [₹]"] < frame["entry [₹]"]
    assert list(frame["probability of"]) == [
        Direction.LONG.value if long else Direction.SHORT.value for long in leans]
    acting = frame[frame["action"] != Action.HOLD.value]
    assert list(acting["probability of"]) == list(acting["direction"])
    assert set(holds["probability of"]) <= {Direction.LONG.value, Direction.SHORT.value}
    journal = trained.signals.journal_frame(login("kamla")).set_index("trace_id")
    assert list(journal.loc[frame["trace_id"], "probability of"]) == list(
        frame["probability of"])


def test_the_held_out_hit_rate_and_the_expected_hit_rate_now_are_named_apart(
        trained, login) -> None:
    from core.services.signal_views import figures_lines

    used = trained.models.in_use()
    version, artifact = used.version, used.artifact
    lines = figures_lines(version)
    assert not any("base rate" in line for line in lines), lines
    assert f"held-out hit rate {version.metrics['base_rate']:.2f}" in lines[0]
    assert f"held-out hit rate {version.metrics['short_base_rate']:.2f}" in lines[1]
    assert lines[2] == (
        f"Expected hit rate now: long {artifact.base_rate_long:.2f}, short "
        f"{artifact.base_rate_short:.2f} — the long-run hit rate of resolved setups that the "
        "probabilities are levelled to (not the held-out hit rate above); a signal's edge is "
        "its probability minus this, and a BUY or SELL needs an edge of at least +0.03.")
    signal = trained.signals.generate(login("priya"), "INFY")
    model = next(e for e in signal.evidence if e.source == "model" and e.name.startswith("P("))
    base = (artifact.base_rate_long if model.name == "P(long)" else artifact.base_rate_short)
    # the rate to 3 decimals (4 where 3 would not subtract to the edge), the edge to 3
    shown = re.search(r"against the expected hit rate now of (0\.\d{3,4}) \(edge [+-]0\.\d{3}\)",
                      model.detail)
    assert shown is not None and float(shown.group(1)) == pytest.approx(base, abs=5e-4)
    assert "base rate" not in " ".join(e.detail for e in signal.evidence)
