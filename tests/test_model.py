"""The calibrated XGBoost model: purged folds, calibration, no look-ahead, artifact bytes."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from core.errors import ValidationError
from engines import metrics
from engines.bars import IST
from engines.features import FEATURES, MIN_BARS, compute_features
from engines.model import (
    ModelArtifact,
    ModelConfig,
    ModelFileError,
    build_dataset,
    load_artifact,
    predict,
    predict_frame,
    purged_folds,
    refit_calibrator,
    schedule,
    train,
    train_on,
    universe_center,
)
from engines.signal_types import BarrierSpec, Direction

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "nse_daily"
SYMBOLS = ("RELIANCE", "TCS", "INFY", "SBIN")
SPEC = BarrierSpec()
FAST = ModelConfig(n_rounds=30)
AS_OF = datetime(2025, 3, 3, tzinfo=IST)


def sample_bars(symbol: str) -> pd.DataFrame:
    frame = pd.read_csv(SAMPLE / f"{symbol}.csv")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp"))).tz_convert(IST)
    return frame[["open", "high", "low", "close", "volume"]].astype(float)


@pytest.fixture(scope="module")
def universe() -> dict[str, pd.DataFrame]:
    return {s: sample_bars(s) for s in SYMBOLS}


@pytest.fixture(scope="module")
def dataset(universe: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return build_dataset(universe, SPEC)


@pytest.fixture(scope="module")
def artifact(dataset: pd.DataFrame) -> ModelArtifact:
    return train_on(dataset, AS_OF, SPEC, FAST)


def test_no_training_label_window_overlaps_a_later_fold(dataset: pd.DataFrame) -> None:
    as_of = pd.Timestamp(AS_OF)
    folds = purged_folds(dataset, AS_OF, FAST)
    trees, fit, hold = dataset[folds.trees], dataset[folds.fit], dataset[folds.holdout]
    calibration = dataset[folds.calibration]
    assert len(trees) > 1000 and len(fit) > 100 and len(hold) > 100
    # Every label window [t, t+H] of a fold ends before the next fold's first bar.
    assert trees["resolved"].max() < calibration["t"].min()
    assert trees["resolved"].max() < folds.calibration_start
    assert fit["resolved"].max() < hold["t"].min()
    assert calibration["resolved"].max() < as_of
    # The purge gap is H bars: the last tree label's bar is at least H bars before the fold.
    days = dataset.loc[dataset["symbol"] == "TCS", "t"]
    last_tree_bar = trees.loc[trees["symbol"] == "TCS", "t"].max()
    first_fold_bar = calibration.loc[calibration["symbol"] == "TCS", "t"].min()
    gap = int(((days > last_tree_bar) & (days < first_fold_bar)).sum())
    assert gap >= SPEC.horizon_bars - 1


def test_artifact_windows_follow_each_other(artifact: ModelArtifact) -> None:
    assert artifact.train_from < artifact.train_to < artifact.calibration_from
    assert artifact.calibration_to < artifact.trained_at == artifact.calibrated_at
    assert artifact.features == FEATURES and artifact.spec == SPEC
    assert artifact.calibrator_kind in ("isotonic", "platt")
    assert {"auc", "brier", "ece", "base_rate", "short_auc", "short_ece"} <= set(artifact.metrics)
    assert 0.15 < artifact.base_rate_long < 0.45 and 0.1 < artifact.base_rate_short < 0.45


def test_training_is_the_same_whether_or_not_later_bars_exist(
    universe: dict[str, pd.DataFrame], artifact: ModelArtifact
) -> None:
    cut = {s: b[b.index < AS_OF] for s, b in universe.items()}
    again = train(cut, AS_OF, SPEC, FAST)
    assert again.version == artifact.version  # the version hashes the trees
    assert again.calibrators == artifact.calibrators
    assert again.metrics == artifact.metrics


def _synthetic(rng: np.random.Generator, days: int, start: str) -> pd.DataFrame:
    """Return a data set where P(y_long = 1) = sigmoid(-1 + roc_5) exactly."""
    symbols = 20
    t = pd.date_range(start, periods=days, freq="B", tz="UTC")
    frame = pd.DataFrame(rng.normal(0.0, 1.0, (days * symbols, len(FEATURES))),
                         columns=list(FEATURES))
    frame["symbol"] = np.tile([f"S{i}" for i in range(symbols)], days)
    frame["t"] = np.repeat(t, symbols)
    frame["resolved"] = frame["t"] + pd.Timedelta(days=14)  # ten business days later
    p_long = 1.0 / (1.0 + np.exp(-(-1.0 + frame["roc_5"])))
    p_short = 1.0 / (1.0 + np.exp(-(-1.2 - 0.7 * frame["rsi_14"])))
    frame["y_long"] = (rng.uniform(size=len(frame)) < p_long).astype(float)
    frame["y_short"] = (rng.uniform(size=len(frame)) < p_short).astype(float)
    frame["p_long"], frame["p_short"] = p_long, p_short
    return frame


def test_calibrated_probabilities_match_a_known_probability() -> None:
    rng = np.random.default_rng(11)
    history = _synthetic(rng, 500, "2022-01-03")
    as_of = history["t"].max() + pd.Timedelta(days=1)
    model = train_on(history, as_of.to_pydatetime(), SPEC, ModelConfig(n_rounds=60))
    fresh = _synthetic(rng, 500, "2024-06-03")
    probs = predict_frame(model, fresh)
    for side in ("long", "short"):
        p, y = probs[f"p_{side}"].to_numpy(), fresh[f"y_{side}"].to_numpy()
        truth = metrics.ece(fresh[f"p_{side}"].to_numpy(), y)  # sampling noise alone (~0.01)
        # The rest is the level's sampling error: ~2,600 labels in the calibration window.
        assert metrics.ece(p, y) < min(0.03, truth + 0.02), side
        assert np.abs(p - fresh[f"p_{side}"].to_numpy()).mean() < 0.05, side
        assert metrics.auc(p, y) > metrics.auc(fresh[f"p_{side}"].to_numpy(), y) - 0.02, side
    assert model.metrics["ece"] < 0.05 and model.metrics["auc"] > 0.65


def test_scores_beyond_the_calibration_window_get_its_edge_forecast(
    artifact: ModelArtifact,
) -> None:
    calibrator = artifact.calibrators["LONG"]
    assert calibrator.low < 0.0 < calibrator.high  # 5% and 95% of the window's centred scores
    edge_high, edge_low = calibrator.center + calibrator.high, calibrator.center + calibrator.low
    far = calibrator.apply(np.array([edge_high + 5.0, edge_low - 5.0]))
    np.testing.assert_allclose(far, calibrator.apply(np.array([edge_high, edge_low])))


def test_refit_calibrator_keeps_the_trees_and_uses_a_later_window(
    universe: dict[str, pd.DataFrame], artifact: ModelArtifact, dataset: pd.DataFrame
) -> None:
    later = datetime(2025, 4, 7, tzinfo=IST)
    refitted = refit_calibrator(artifact, universe, later, FAST)
    assert refitted.version == artifact.version and refitted.trained_at == artifact.trained_at
    assert refitted.calibrated_at == later
    assert refitted.calibration_from > artifact.train_to
    assert refitted.calibration_to > artifact.calibration_to
    rows = dataset.tail(50)
    for direction in (Direction.LONG, Direction.SHORT):
        np.testing.assert_array_equal(refitted.raw_scores(rows, direction),
                                      artifact.raw_scores(rows, direction))


def test_artifact_bytes_round_trip(artifact: ModelArtifact, dataset: pd.DataFrame) -> None:
    loaded = load_artifact(artifact.to_bytes())
    assert loaded == artifact  # every field but the boosters, compared below by prediction
    rows = dataset.tail(200)
    pd.testing.assert_frame_equal(predict_frame(loaded, rows), predict_frame(artifact, rows))


def _rewrite_manifest(data: bytes, **changes: object) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for name in source.namelist():
            blob = source.read(name)
            if name == "manifest.json":
                blob = json.dumps({**json.loads(blob), **changes}).encode()
            target.writestr(name, blob)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(lambda b: b[: len(b) // 2], "corrupt or truncated", id="truncated"),
        pytest.param(lambda b: b"not a model at all", "corrupt or truncated", id="garbage"),
        pytest.param(lambda b: b"", "corrupt or truncated", id="empty"),
        pytest.param(lambda b: _rewrite_manifest(b, format_version=99),
                     "format version 99.*reads version 1", id="newer format"),
        pytest.param(lambda b: _rewrite_manifest(b, format="pickle"),
                     "not a SHER signal model", id="other format"),
    ],
)
def test_a_damaged_model_file_raises_a_clear_model_file_error(
    artifact: ModelArtifact, damage: object, message: str
) -> None:
    data = damage(artifact.to_bytes())  # type: ignore[operator]
    with pytest.raises(ModelFileError, match=message):
        load_artifact(data)
    assert issubclass(ModelFileError, ValidationError)


def test_a_model_file_with_garbled_trees_is_refused(artifact: ModelArtifact) -> None:
    source = zipfile.ZipFile(io.BytesIO(artifact.to_bytes()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for name in source.namelist():
            blob = source.read(name)
            target.writestr(name, blob[:40] if name.endswith(".ubj") else blob)
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        load_artifact(buffer.getvalue())


def test_predict_gives_the_last_bar_with_ranked_contributions(
    universe: dict[str, pd.DataFrame], artifact: ModelArtifact
) -> None:
    bars = universe["SBIN"]
    prediction = predict(artifact, bars, top=5, symbol="SBIN")
    last = predict_frame(artifact, compute_features(bars).iloc[[-1]]).iloc[0]
    assert prediction.p_long == pytest.approx(last["p_long"])
    assert prediction.p_short == pytest.approx(last["p_short"])
    assert prediction.model_version == artifact.version
    assert prediction.base_rate_long == artifact.base_rate_long
    for contributions in (prediction.contributions_long, prediction.contributions_short):
        assert len(contributions) == 5
        pushes = [abs(c.push) for c in contributions]
        assert pushes == sorted(pushes, reverse=True)
        assert {c.feature for c in contributions} <= set(FEATURES)


def test_all_contributions_add_up_to_the_raw_score(
    universe: dict[str, pd.DataFrame], artifact: ModelArtifact
) -> None:
    bars = universe["TCS"]
    prediction = predict(artifact, bars, top=len(FEATURES))
    row = compute_features(bars).iloc[[-1]]
    raw = artifact.raw_scores(row, Direction.LONG)[0]
    matrix = xgb.DMatrix(row.to_numpy(dtype=np.float32), feature_names=list(FEATURES))
    bias = artifact.boosters["LONG"].predict(matrix, pred_contribs=True)[0, -1]
    total = sum(c.push for c in prediction.contributions_long)
    assert len(prediction.contributions_long) == len(FEATURES)
    assert total + bias == pytest.approx(raw, abs=1e-4)


def test_each_prediction_is_centred_on_the_reference_universes_mean_of_its_own_day(
    artifact: ModelArtifact, dataset: pd.DataFrame
) -> None:
    days = dataset["t"].drop_duplicates().iloc[-3:]
    rows = dataset[(dataset["symbol"] == "SBIN") & dataset["t"].isin(days)]
    reference = dataset[(dataset["symbol"] != "SBIN") & dataset["t"].isin(days)]
    probs = predict_frame(artifact, rows, reference)
    for direction in (Direction.LONG, Direction.SHORT):
        means = pd.Series(artifact.raw_scores(reference, direction)).groupby(
            reference["t"].to_numpy()).mean()
        centred = artifact.raw_scores(rows, direction) - means.reindex(rows["t"]).to_numpy()
        calibrator = replace(artifact.calibrators[direction.value], center=0.0)
        np.testing.assert_allclose(probs[f"p_{direction.value.lower()}"].to_numpy(),
                                   calibrator.apply(centred))


def test_a_day_without_reference_bars_falls_back_to_the_stored_centre(
    artifact: ModelArtifact, dataset: pd.DataFrame
) -> None:
    rows = dataset[dataset["symbol"] == "SBIN"].tail(3)
    elsewhere = dataset[dataset["t"] < rows["t"].min()]  # no reference bar on these days
    pd.testing.assert_frame_equal(predict_frame(artifact, rows, elsewhere),
                                  predict_frame(artifact, rows))


def test_the_universe_centre_on_day_t_ignores_later_bars_and_matches_the_frame_path(
    universe: dict[str, pd.DataFrame], artifact: ModelArtifact, dataset: pd.DataFrame
) -> None:
    when = universe["SBIN"].index[-40]
    full = universe_center(artifact, universe, when)
    cut = universe_center(artifact, {s: b[b.index <= when] for s, b in universe.items()}, when)
    assert full == cut
    same_day = dataset[dataset["t"] == pd.Timestamp(when).tz_convert("UTC")]
    assert full["LONG"] == pytest.approx(artifact.raw_scores(same_day, Direction.LONG).mean())
    bars = universe["SBIN"][universe["SBIN"].index <= when]
    prediction = predict(artifact, bars, symbol="SBIN", center=full)
    row = same_day[same_day["symbol"] == "SBIN"]
    framed = predict_frame(artifact, row, same_day).iloc[0]
    assert prediction.p_long == pytest.approx(framed["p_long"])
    assert prediction.p_short == pytest.approx(framed["p_short"])
    missing = universe_center(artifact, universe, when + pd.Timedelta(hours=1))
    assert all(np.isnan(v) for v in missing.values())


def test_predict_with_too_little_history_names_the_bars_needed(
    universe: dict[str, pd.DataFrame], artifact: ModelArtifact
) -> None:
    with pytest.raises(ValidationError, match=rf"SBIN has 120 daily bars.*{MIN_BARS}"):
        predict(artifact, universe["SBIN"].iloc[:120], symbol="SBIN")


def test_training_without_enough_history_is_refused(universe: dict[str, pd.DataFrame]) -> None:
    short = {s: b.iloc[:200] for s, b in universe.items()}
    with pytest.raises(ValidationError, match=f"needs at least {MIN_BARS}|no symbol has"):
        train(short, AS_OF, SPEC, FAST)


def test_schedule_refits_trees_monthly_and_the_calibrator_weekly() -> None:
    times = schedule(datetime(2024, 4, 15, tzinfo=IST), datetime(2024, 6, 4, tzinfo=IST))
    models = [t.date().isoformat() for t, kind in times if kind == "model"]
    calibrators = [t.date().isoformat() for t, kind in times if kind == "calibrator"]
    assert models == ["2024-04-15", "2024-05-01", "2024-06-01"]
    assert calibrators == ["2024-04-22", "2024-04-29", "2024-05-06", "2024-05-13",
                           "2024-05-20", "2024-05-27", "2024-06-03"]


def test_config_refuses_unknown_features_and_calibrators() -> None:
    with pytest.raises(ValueError, match="subset of FEATURES"):
        ModelConfig(features=("rsi_14", "astrology"))
    with pytest.raises(ValueError, match=r"isotonic.*platt"):
        ModelConfig(calibrators=("beta",))
    with pytest.raises(ValueError, match=r"clip_quantile must be in \[0, 0.5\); got 0.5"):
        ModelConfig(clip_quantile=0.5)
