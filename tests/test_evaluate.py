"""The evaluation CLI end to end on a few sample files, its bad input, and the replay's honesty."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engines.evaluate import main, read_bars_dir, simulate
from engines.model import DEFAULT_SPEC, ModelConfig, build_dataset, predict_frame, train_on

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "nse_daily"
TEST_SYMBOLS = ("RELIANCE", "TCS")
TRAIN_SYMBOLS = ("INFY", "SBIN", "ICICIBANK", "HDFCBANK", "AXISBANK", "WIPRO", "BEL")
FAST = ModelConfig(n_rounds=10)
HEADLINE = (
    "n_predictions", "base_rate", "base_rate_train", "brier", "brier_baseline", "brier_skill",
    "ece", "ece_base_rate", "auc", "auc_ci_low", "auc_ci_high", "top_decile_hit_rate",
    "reliability",
)
REPORT_KEYS = (*HEADLINE, "short", "n_signals", "signal_hit_rate", "by_regime", "by_confidence",
               "meta")


def _folder(tmp: Path, name: str, symbols: tuple[str, ...]) -> Path:
    folder = tmp / name
    folder.mkdir()
    for symbol in symbols:
        shutil.copy(SAMPLE / f"{symbol}.csv", folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("evaluate")
    # The training folder also holds the test symbols: the CLI must leave them out.
    return _folder(tmp, "test", TEST_SYMBOLS), _folder(tmp, "train", TRAIN_SYMBOLS + TEST_SYMBOLS)


def test_cli_writes_every_key_and_never_trains_on_the_test_stocks(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    test_dir, train_dir = folders
    out = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "engines.evaluate", "--data", str(test_dir), "--from",
         "2025-05-02", "--to", "2025-07-01", "--out", str(out), "--train-data", str(train_dir),
         "--rounds", "10", "--n-boot", "20"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("unseen 2025-05-02..")
    report = json.loads(out.read_text())
    assert set(REPORT_KEYS) <= set(report)
    assert set(HEADLINE) <= set(report["short"])
    meta = report["meta"]
    assert meta["symbols"] == sorted(TEST_SYMBOLS)
    assert not set(meta["train_symbols"]) & set(TEST_SYMBOLS)
    assert meta["from"] == "2025-05-02" and meta["to"] < "2025-07-01"
    assert meta["config"]["refit_model_every"] == "MS"
    assert meta["n_model_fits"] >= 2  # the May and June model re-fits
    days = pd.read_csv(SAMPLE / "RELIANCE.csv")["timestamp"].str.slice(0, 10)
    sessions = int(((days >= "2025-05-02") & (days < "2025-07-01")).sum())
    assert report["n_predictions"] == len(TEST_SYMBOLS) * sessions
    assert 0.0 <= report["ece"] <= 1.0 and 0.0 <= report["auc"] <= 1.0
    assert sum(row["n"] for row in report["reliability"]) == report["n_predictions"]
    assert report["brier_skill"] == pytest.approx(
        1 - report["brier"] / report["brier_baseline"])


def test_cli_walk_forward_says_its_folds_are_not_out_of_symbol(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    _, train_dir = folders
    out = tmp_path / "wf.json"
    assert main(["--data", str(train_dir), "--walk-forward", "--from", "2025-06-02", "--to",
                 "2025-07-01", "--out", str(out), "--rounds", "10", "--n-boot", "20"]) == 0
    report = json.loads(out.read_text())
    assert report["meta"]["out_of_symbol"] is False
    assert "not out of symbol" in report["meta"]["note"]
    assert report["meta"]["n_symbols"] == len(list(train_dir.glob("*.csv")))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda tmp: tmp / "nowhere", "does not exist", id="missing folder"),
        pytest.param(lambda tmp: tmp, "holds no SYMBOL.csv files", id="no CSV files"),
        pytest.param(
            lambda tmp: (tmp / "BAD.csv").write_text("timestamp,open,high,low\n2024-01-01,1,2,0\n")
            and tmp, r"BAD.csv lacks columns \['close', 'volume'\]", id="missing columns"),
        pytest.param(
            lambda tmp: (tmp / "BAD.csv").write_text(
                "timestamp,open,high,low,close,volume\nyesterday,1,2,0,1,5\n") and tmp,
            "BAD.csv has unreadable rows", id="unreadable timestamp"),
    ],
)
def test_bad_data_folder_is_a_clear_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, message: str
) -> None:
    folder = make(tmp_path)  # type: ignore[operator]
    code = main(["--data", str(folder), "--from", "2025-01-01", "--out", str(tmp_path / "r.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("evaluate: ")
    assert pd.Series([err]).str.contains(message).all(), err


def test_too_little_history_is_a_clear_error(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.read_csv(SAMPLE / "TCS.csv").head(100)
    (tmp_path / "TCS.csv").write_text(frame.to_csv(index=False))
    code = main(["--data", str(tmp_path), "--from", "2021-01-01", "--out",
                 str(tmp_path / "r.json")])
    assert code == 2
    assert "no symbol has the 252 daily bars" in capsys.readouterr().err


def _universes(folders: tuple[Path, Path]) -> tuple[dict[str, pd.DataFrame],
                                                  dict[str, pd.DataFrame]]:
    """Return the test bars and the training bars without the test symbols."""
    test_dir, train_dir = folders
    test = read_bars_dir(test_dir)
    return test, {s: b for s, b in read_bars_dir(train_dir).items() if s not in test}


def test_replay_is_the_same_whether_or_not_later_bars_exist(
    folders: tuple[Path, Path],
) -> None:
    test, train = _universes(folders)
    cut = pd.Timestamp("2025-06-20", tz="Asia/Kolkata")
    full = simulate(test, train, date(2025, 5, 26), date(2025, 6, 20), cfg=FAST)
    truncated = simulate({s: b[b.index < cut] for s, b in test.items()},
                         {s: b[b.index < cut] for s, b in train.items()},
                         date(2025, 5, 26), date(2025, 6, 20), cfg=FAST)
    columns = ["symbol", "t", "p_long", "p_short", "version"]
    pd.testing.assert_frame_equal(full[columns], truncated[columns])
    # Every prediction comes from a model trained no later than its bar.
    trained = pd.to_datetime(full["version"].str.slice(4, 12)).dt.tz_localize("Asia/Kolkata")
    assert (trained <= full["t"].dt.tz_convert("Asia/Kolkata")).all()
    assert np.isfinite(full[["p_long", "p_short"]].to_numpy()).all()


def test_a_model_calibrated_on_raw_scores_is_replayed_without_same_day_centring(
    folders: tuple[Path, Path],
) -> None:
    test, train = _universes(folders)
    raw_cfg = replace(FAST, cross_sectional=False)
    start, end = date(2025, 5, 26), date(2025, 5, 27)  # one day: one fit, no re-fit
    replayed = simulate(test, train, start, end, cfg=raw_cfg)
    model = train_on(build_dataset(train, DEFAULT_SPEC),
                     pd.Timestamp(start, tz="Asia/Kolkata").to_pydatetime(), DEFAULT_SPEC, raw_cfg)
    rows = build_dataset(test, DEFAULT_SPEC)
    rows = rows[rows["t"].isin(replayed["t"])]
    expected = predict_frame(model, rows)
    assert len(replayed) == len(TEST_SYMBOLS) == len(expected)
    np.testing.assert_allclose(replayed["p_long"].to_numpy(), expected["p_long"].to_numpy())
