"""The signal model registry: versions in ``model_versions``, artifacts as files under MODEL_DIR.

Each trained model is written to ``MODEL_DIR/<version>.model`` and registered with its SHA-256,
size, training and calibration windows, features, barrier spec and walk-forward metrics. At most
one version is active. Loading checks the file against the registered hash; a missing or corrupt
file is a clear :class:`~engines.model.ModelFileError`, and :meth:`ModelRegistry.in_use` then
falls back to the previous good version and says so (the Signals page shows the reason).

Training, re-fitting the calibrator and activating are admin work: :meth:`ModelRegistry.retrain`
and :meth:`ModelRegistry.activate` take the acting user and refuse (audited) anyone but an admin
or super admin. The worker and the retrain CLI call the ``*_as`` variants with an operator name
("worker", "cli"), which the audit trail records in place of a user.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import audit, authz
from core.clock import format_ist, now_ist, to_ist
from core.config import Settings
from core.domain import Actor, Interval
from core.errors import NotFound, ValidationError
from core.marketdata.store import all_instruments, load_bars
from core.services.base import ServiceBase
from db.engine import Database
from db.models import ModelStatus, ModelVersionRow
from engines.features import MIN_BARS
from engines.labels import resolved_at
from engines.model import (
    ModelArtifact,
    ModelConfig,
    ModelFileError,
    load_artifact,
    refit_calibrator,
    train,
)
from engines.signal_types import Direction
from engines.signals import SignalConfig

log = logging.getLogger("sher.signals.registry")

Progress = Callable[[str], None]
DATA_SOURCE = "daily bars of the desk's instruments"
#: The action rule signals are built with (engines.signals.build_signal's default).
ACTION_RULE = SignalConfig()


def _quiet(_message: str) -> None:
    """A progress callback that shows nothing."""


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered model version, as pages and the CLI see it."""

    version: str
    status: ModelStatus
    created_at: datetime
    created_by: str
    trained_at: datetime | None
    train_from: date | None
    train_to: date | None
    calibrator_kind: str | None
    calibrated_at: datetime | None
    calibration_from: date | None
    calibration_to: date | None
    base_version: str | None
    data_source: str | None
    n_symbols: int
    features: tuple[str, ...]
    spec: dict[str, Any]
    metrics: dict[str, float]
    report: dict[str, Any]
    sha256: str | None
    size_bytes: int | None
    message: str | None
    activated_at: datetime | None
    activated_by: str | None

    @property
    def is_active(self) -> bool:
        """Whether this is the active version."""
        return self.status is ModelStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class ModelInUse:
    """The model signals are computed with now, and why it is not the active one (if not)."""

    artifact: ModelArtifact
    version: ModelVersion
    fallback_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ModelState:
    """What the Signals page says about the model: in use, being trained, or missing."""

    in_use: ModelVersion | None
    fallback_reason: str | None
    training: ModelVersion | None
    problem: str | None  # why there is no model in use, in plain words
    ceilings: tuple[str, ...] = ()  # why the model in use cannot give a BUY or a SELL
    calibrators: str | None = None  # each side's calibrator: "long platt, short isotonic"
    highest: tuple[float, float] | None = None  # the highest long and short probabilities


def _to_version(row: ModelVersionRow) -> ModelVersion:
    return ModelVersion(
        version=row.version, status=row.status, created_at=row.created_at,
        created_by=row.created_by, trained_at=row.trained_at, train_from=row.train_from,
        train_to=row.train_to, calibrator_kind=row.calibrator_kind,
        calibrated_at=row.calibrated_at, calibration_from=row.calibration_from,
        calibration_to=row.calibration_to, base_version=row.base_version,
        data_source=row.data_source, n_symbols=row.n_symbols,
        features=tuple(json.loads(row.features)), spec=json.loads(row.spec),
        metrics=json.loads(row.metrics), report=json.loads(row.report), sha256=row.sha256,
        size_bytes=row.size_bytes, message=row.message, activated_at=row.activated_at,
        activated_by=row.activated_by)


def _date(moment: datetime | date | None) -> date | None:
    if moment is None or type(moment) is date:
        return moment
    assert isinstance(moment, datetime)  # noqa: S101
    return moment.date()


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class ArtifactStore:
    """Model files under one folder, checked against their hash, loaded once per process."""

    def __init__(self, directory: Path) -> None:
        """Keep model files in ``directory`` (created on first write)."""
        self.directory = directory
        self._cache: dict[str, tuple[tuple[int, int, str], ModelArtifact]] = {}
        self._lock = threading.Lock()

    def path_for(self, version: str) -> Path:
        """Return the file a version's artifact lives in."""
        return self.directory / f"{version}.model"

    def write(self, artifact: ModelArtifact) -> tuple[Path, str, int]:
        """Write ``artifact`` atomically; return its path, SHA-256 and size in bytes."""
        data = artifact.to_bytes()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_for(artifact.version)
        partial = path.with_suffix(".partial")
        partial.write_bytes(data)
        os.replace(partial, path)
        return path, hashlib.sha256(data).hexdigest(), len(data)

    def read(self, version: str, sha256: str | None) -> ModelArtifact:
        """Return the artifact of ``version`` after checking its file against ``sha256``.

        Raises ModelFileError naming the version and the file when the file is missing, does
        not match the registered hash, or is not a model artifact. A file unchanged since the
        last load (same size, modification time and hash) is served from memory.
        """
        path = self.path_for(version)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise ModelFileError(
                f"Model {version}: its file {path} is missing; restore it or train a new model"
            ) from None
        signature = (stat.st_size, stat.st_mtime_ns, sha256 or "")
        with self._lock:
            cached = self._cache.get(version)
        if cached is not None and cached[0] == signature:
            return cached[1]
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and digest != sha256:
            raise ModelFileError(
                f"Model {version}: file {path} has SHA-256 {digest[:12]}…, the registry expects "
                f"{sha256[:12]}… (the file changed or is corrupt); restore it or train a new model"
            )
        try:
            artifact = load_artifact(data)
        except ModelFileError as exc:
            raise ModelFileError(f"Model {version}: file {path} is unreadable: {exc}") from exc
        with self._lock:
            self._cache[version] = (signature, artifact)
        return artifact


class ModelRegistry(ServiceBase):
    """Train, register, activate and load the signal model's versions."""

    def __init__(self, db: Database, settings: Settings,
                 cfg: ModelConfig | None = None) -> None:
        """Bind to ``db``; model files live in ``settings.resolved_model_dir()``."""
        super().__init__(db, settings)
        self.cfg = cfg or ModelConfig()
        self.store = ArtifactStore(settings.resolved_model_dir())

    # -- reading --------------------------------------------------------------------------
    def versions(self, actor: Actor) -> list[ModelVersion]:
        """Return every registered version, newest first (any logged-in user)."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            return self._all(session)

    def all_versions(self) -> list[ModelVersion]:
        """Return every registered version, newest first (for operator tools and jobs)."""
        with self.db.transaction() as session:
            return self._all(session)

    def _all(self, session: Session) -> list[ModelVersion]:
        rows = session.scalars(select(ModelVersionRow).order_by(ModelVersionRow.id.desc()))
        return [_to_version(row) for row in rows]

    def in_use(self) -> ModelInUse:
        """Return the model to compute signals with: the active one, else the previous good one.

        Raises NotFound saying what to do when no model is active (or the first one is still
        being trained), and ModelFileError when neither the active nor any earlier version loads.
        """
        with self.db.transaction() as session:
            versions = self._all(session)
        active = next((v for v in versions if v.is_active), None)
        if active is None:
            raise NotFound(self._no_model_reason(versions))
        try:
            return ModelInUse(self.store.read(active.version, active.sha256), active)
        except ModelFileError as exc:
            problem = str(exc)
            log.error("active model unusable: %s", problem)
        earlier = sorted(
            (v for v in versions if v.status is ModelStatus.READY and v.sha256),
            key=lambda v: (v.activated_at is not None, v.activated_at or v.created_at),
            reverse=True)
        for candidate in earlier:
            try:
                artifact = self.store.read(candidate.version, candidate.sha256)
            except ModelFileError as exc:
                log.error("fallback model unusable: %s", exc)
                continue
            reason = (f"{problem}. Using {candidate.version}, the previous good version, until "
                      "an admin restores the file or activates another version.")
            return ModelInUse(artifact, candidate, reason)
        raise ModelFileError(f"{problem}. No earlier version loads either; an admin must train "
                             "a new model (Signals page → Model, or python -m core.signals_cli "
                             "train --activate)")

    def state(self, actor: Actor) -> ModelState:
        """Return what the page should say about the model now."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            versions = self._all(session)
        training = next((v for v in versions if v.status is ModelStatus.TRAINING), None)
        try:
            used = self.in_use()
        except (NotFound, ModelFileError) as exc:
            return ModelState(None, None, training, str(exc))
        calibrators = used.artifact.calibrators
        return ModelState(used.version, used.fallback_reason, training, None,
                          action_ceilings(used.artifact), calibrator_kinds(used.artifact),
                          (calibrators[Direction.LONG.value].highest(),
                           calibrators[Direction.SHORT.value].highest()))

    @staticmethod
    def _no_model_reason(versions: list[ModelVersion]) -> str:
        training = next((v for v in versions if v.status is ModelStatus.TRAINING), None)
        if training is not None:
            return (f"The signal model {training.version} is being trained by "
                    f"{training.created_by} (started {format_ist(training.created_at)}); "
                    "signals appear when it finishes, usually within two minutes.")
        return ("No signal model is active yet. An admin trains one on the Signals page (Model "
                "→ Train a new version) or runs `python -m core.signals_cli train --activate`; "
                "the worker trains the first one itself when it starts with daily bars loaded.")

    # -- training -------------------------------------------------------------------------
    def _require_admin(self, actor: Actor, action: str, what: str) -> None:
        with self.db.transaction() as session:
            role = self._fresh_role(session, actor)
        if role not in authz.USER_MANAGERS:
            self._deny(actor, action, "model_registry",
                       f"Your role {role.value!r} may not {what}; only an admin or super admin "
                       "may train or activate signal models")

    def retrain(self, actor: Actor, progress: Progress = _quiet,
                activate: bool = False) -> ModelVersion:
        """Train a new version on every instrument's daily bars (admins only, audited)."""
        self._require_admin(actor, "model.train", "train a signal model")
        return self._train(actor, actor.username, progress, activate)

    def train_as(self, operator: str, progress: Progress = _quiet,
                 activate: bool = False) -> ModelVersion:
        """Train a new version for an operator tool (the worker, the CLI), audited as it."""
        return self._train(None, operator, progress, activate)

    def daily_bars(self, min_bars: int = MIN_BARS) -> dict[str, pd.DataFrame]:
        """Return every active instrument's daily bars that are long enough to learn from."""
        with self.db.transaction() as session:
            found = {}
            for instrument in all_instruments(session):
                bars = load_bars(session, instrument.id, Interval.D1)
                if len(bars) >= min_bars:
                    found[instrument.symbol] = bars
        return found

    def _train(self, actor: Actor | None, operator: str, progress: Progress,
               activate: bool) -> ModelVersion:
        progress("Loading daily bars from the database")
        bars = self.daily_bars()
        if not bars:
            raise ValidationError(
                f"No instrument has the {MIN_BARS} daily bars training needs; import daily bars "
                "(Admin → Import data, or python -m core.marketdata load-sample) first")
        version = self._start_row(f"xgb-{now_ist():%Y%m%d-%H%M%S}", operator)
        progress(f"Training {version} on {len(bars)} symbols (purged, calibrated on the "
                 "recent window)")
        try:
            artifact = train(bars, training_time(bars), cfg=self.cfg, version=version)
            progress("Writing the model file and registering it")
            return self._finish(actor, operator, artifact, bars, None, activate)
        except Exception as exc:
            self._fail(actor, operator, version, exc)
            raise

    def refit_calibrator_as(self, operator: str, progress: Progress = _quiet) -> ModelVersion:
        """Re-fit the active model's calibrator on the recent window and activate the result.

        The trees are reused (``base_version`` records whose); the new calibrated version is
        registered and activated, the previous one stays available.
        """
        used = self.in_use()
        progress("Loading daily bars from the database")
        bars = self.daily_bars()
        base = used.version.base_version or used.version.version
        version = self._start_row(f"{base}-c{now_ist():%m%d%H%M}", operator)
        progress(f"Re-fitting the calibrator of {base} as {version}")
        try:
            artifact = replace(refit_calibrator(used.artifact, bars, training_time(bars),
                                                cfg=self.cfg), version=version)
            return self._finish(None, operator, artifact, bars, base, activate=True)
        except Exception as exc:
            self._fail(None, operator, version, exc)
            raise

    def scheduled_calibrator_refit(self, operator: str,
                                   progress: Progress = _quiet) -> ModelVersion | None:
        """Run the weekly calibrator re-fit, or return None when there is nothing to re-fit.

        Nothing to do without an active model, or when the active version was made today (a
        monthly re-fit or a first model calibrates too).
        """
        active = next((v for v in self.all_versions() if v.is_active), None)
        if active is None or to_ist(active.created_at).date() == now_ist().date():
            return None
        return self.refit_calibrator_as(operator, progress)

    def _start_row(self, version: str, operator: str) -> str:
        """Register ``version`` (or ``version-2``... if taken) as TRAINING; return the name."""
        with self.db.transaction() as session:
            taken = set(session.scalars(select(ModelVersionRow.version)
                                        .where(ModelVersionRow.version.like(f"{version}%"))))
            name = next(v for v in (version, *(f"{version}-{n}" for n in range(2, 100)))
                        if v not in taken)
            session.add(ModelVersionRow(version=name, status=ModelStatus.TRAINING,
                                        created_by=operator, created_at=now_ist()))
        return name

    def _finish(self, actor: Actor | None, operator: str, artifact: ModelArtifact,
                bars: Mapping[str, pd.DataFrame], base_version: str | None,
                activate: bool) -> ModelVersion:
        n_symbols = len(bars)
        path, digest, size = self.store.write(artifact)
        report = evaluation_report(artifact, n_symbols, self.cfg, bars)
        with self.db.transaction() as session:
            row = session.scalar(select(ModelVersionRow)
                                 .where(ModelVersionRow.version == artifact.version))
            assert row is not None  # noqa: S101  (written by _start_row)
            row.status = ModelStatus.READY
            row.trained_at = artifact.trained_at
            row.train_from, row.train_to = _date(artifact.train_from), _date(artifact.train_to)
            row.calibrator_kind = artifact.calibrator_kind
            row.calibrated_at = artifact.calibrated_at
            row.calibration_from = _date(artifact.calibration_from)
            row.calibration_to = _date(artifact.calibration_to)
            row.base_version = base_version
            row.data_source = DATA_SOURCE
            row.n_symbols = n_symbols
            row.features = _json(list(artifact.features))
            row.spec = _json(asdict(artifact.spec))
            row.metrics = _json(dict(artifact.metrics))
            row.report = _json(report)
            row.artifact_path, row.sha256, row.size_bytes = str(path), digest, size
            self._audit_as(session, actor, operator, "model.train", artifact.version,
                           {"n_symbols": n_symbols, "sha256": digest, "base": base_version,
                            "metrics": dict(artifact.metrics)})
            if activate:
                self._activate(session, actor, operator, row)
            return _to_version(row)

    def _fail(self, actor: Actor | None, operator: str, version: str, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"[:500]
        log.error("training %s failed: %s", version, message)
        with self.db.transaction() as session:
            session.execute(update(ModelVersionRow).where(ModelVersionRow.version == version)
                            .values(status=ModelStatus.FAILED, message=message))
            self._audit_as(session, actor, operator, "model.train", version,
                           {"error": message}, outcome=audit.FAILED)

    def fail_stale_training(self, operator: str) -> int:
        """Mark versions left TRAINING by a stopped process as FAILED; return how many.

        Only the one worker trains in the background, so at its start nothing is still running.
        """
        with self.db.transaction() as session:
            result = session.execute(
                update(ModelVersionRow).where(ModelVersionRow.status == ModelStatus.TRAINING)
                .values(status=ModelStatus.FAILED,
                        message=f"training stopped: the process ended before it finished "
                                f"(found by {operator} at {format_ist(now_ist())})"))
            return int(getattr(result, "rowcount", 0) or 0)

    def has_usable_state(self) -> bool:
        """Return whether a version is active or being trained (the worker need not train)."""
        with self.db.transaction() as session:
            return session.scalar(select(ModelVersionRow.id).where(ModelVersionRow.status.in_(
                [ModelStatus.ACTIVE, ModelStatus.TRAINING])).limit(1)) is not None

    def attach_evaluation_as(self, operator: str, version: str,
                             evaluation: Mapping[str, Any]) -> ModelVersion:
        """Attach an ``engines.evaluate`` JSON report to a version (shown beside its figures)."""
        missing = [key for key in ("auc", "ece", "base_rate", "n_predictions")
                   if key not in evaluation]
        if missing:
            raise ValidationError(f"Not an evaluation report: keys {', '.join(missing)} are "
                                  "missing (write one with python -m engines.evaluate)")
        with self.db.transaction() as session:
            row = session.scalar(select(ModelVersionRow)
                                 .where(ModelVersionRow.version == version))
            if row is None:
                raise NotFound(f"Model version {version!r} does not exist")
            report = json.loads(row.report)
            report["evaluation"] = dict(evaluation)
            row.report = _json(report)
            self._audit_as(session, None, operator, "model.evaluation", version,
                           {"auc": evaluation.get("auc"), "ece": evaluation.get("ece")})
            return _to_version(row)

    # -- activation -----------------------------------------------------------------------
    def activate(self, actor: Actor, version: str) -> ModelVersion:
        """Make ``version`` the active model (admins only, audited); the old one stays ready."""
        self._require_admin(actor, "model.activate", "activate a signal model")
        return self._activate_version(actor, actor.username, version)

    def activate_as(self, operator: str, version: str) -> ModelVersion:
        """Activate ``version`` for an operator tool (the CLI), audited as it."""
        return self._activate_version(None, operator, version)

    def _activate_version(self, actor: Actor | None, operator: str,
                          version: str) -> ModelVersion:
        with self.db.transaction() as session:
            row = session.scalar(select(ModelVersionRow)
                                 .where(ModelVersionRow.version == version))
            if row is None:
                raise NotFound(f"Model version {version!r} does not exist")
            if row.status not in (ModelStatus.READY, ModelStatus.ACTIVE):
                raise ValidationError(f"Model {version} is {row.status.value}; only a ready "
                                      "version can be activated")
            self.store.read(row.version, row.sha256)  # refuse a version whose file is bad
            self._activate(session, actor, operator, row)
            return _to_version(row)

    def _activate(self, session: Session, actor: Actor | None, operator: str,
                  row: ModelVersionRow) -> None:
        previous = session.scalar(select(ModelVersionRow.version).where(
            ModelVersionRow.status == ModelStatus.ACTIVE, ModelVersionRow.id != row.id))
        session.execute(update(ModelVersionRow)
                        .where(ModelVersionRow.status == ModelStatus.ACTIVE,
                               ModelVersionRow.id != row.id)
                        .values(status=ModelStatus.READY, active_slot=None))
        session.flush()
        row.status, row.active_slot = ModelStatus.ACTIVE, 1
        row.activated_at, row.activated_by = now_ist(), operator
        self._audit_as(session, actor, operator, "model.activate", row.version,
                       {"previous": previous})

    def _audit_as(self, session: Session, actor: Actor | None, operator: str, action: str,
                  version: str, details: Mapping[str, Any], outcome: str = audit.OK) -> None:
        if actor is not None:
            self._audit(session, actor, action, f"model:{version}", details, outcome)
            return
        audit.append(session, audit.AuditEvent(
            action=action, resource=f"model:{version}", actor_username=operator,
            outcome=outcome, details={**details, "operator": operator}))


def training_time(bars: Mapping[str, pd.DataFrame]) -> datetime:
    """Return the ``as_of`` to train at: now, or just after the last bar if the data is older.

    Labels count only once resolved before ``as_of``; a desk whose newest bars are months old
    (the sample data) trains as of the day after its last bar rather than on an empty window.
    """
    last = max(frame.index[-1] for frame in bars.values()).to_pydatetime()
    return min(now_ist(), last + timedelta(days=1))


def holdout_bars(artifact: ModelArtifact, bars: Mapping[str, pd.DataFrame],
                 cfg: ModelConfig) -> tuple[date, date] | None:
    """Return the IST dates of the first and last held-out bar the metrics were scored on.

    The held-out rows are the bars from the split (the last ``holdout_fraction`` of the
    calibration window) whose label resolved before the calibration time, as
    :func:`engines.model.purged_folds` takes them: the last one is ``horizon_bars`` bars before
    the data's end, not the day its label resolved (the calibration window's end). None when no
    bar is held out.
    """
    start = pd.Timestamp(artifact.calibration_from)
    cutoff = pd.Timestamp(artifact.calibrated_at)
    split = start + (cutoff - start) * (1.0 - cfg.holdout_fraction)
    held: list[pd.Timestamp] = []
    for frame in bars.values():
        index = pd.DatetimeIndex(frame.index)
        resolved = pd.DatetimeIndex(resolved_at(index, artifact.spec))
        featured = np.arange(len(index)) >= MIN_BARS - 1  # build_dataset's rows
        chosen = index[featured & (index >= split) & (resolved < cutoff)]
        if len(chosen):
            held += [chosen.min(), chosen.max()]
    if not held:
        return None
    return to_ist(min(held)).date(), to_ist(max(held)).date()


def evaluation_report(artifact: ModelArtifact, n_symbols: int, cfg: ModelConfig,
                      bars: Mapping[str, pd.DataFrame] | None = None) -> dict[str, Any]:
    """Return the evaluation report registered with a version: its measured figures in context.

    The figures are the artifact's held-out metrics: the last ``holdout_fraction`` of the
    calibration window, after the trees' label window (out of time on the training symbols,
    not out of symbol). The context says on what data, which dates and when they were measured;
    ``holdout_from``/``holdout_to`` are the held-out bars' dates (:func:`holdout_bars`, from
    ``bars``; without them, the split day and the calibration window's end).
    """
    start = pd.Timestamp(artifact.calibration_from)
    split = start + (pd.Timestamp(artifact.calibrated_at) - start) * (1.0 - cfg.holdout_fraction)
    held = holdout_bars(artifact, bars, cfg) if bars is not None else None
    holdout_from, holdout_to = held or (split.date(), _date(artifact.calibration_to))
    return {
        "version": artifact.version,
        "measured_at": now_ist().isoformat(),
        "data": f"{DATA_SOURCE} ({n_symbols} symbols)",
        "validation": "out of time on the training symbols (not out of symbol)",
        "holdout_from": str(holdout_from),
        "holdout_to": str(holdout_to),
        "train_from": str(_date(artifact.train_from)),
        "train_to": str(_date(artifact.train_to)),
        "calibrator": artifact.calibrator_kind,
        "calibrator_kinds": calibrator_kinds(artifact),
        "calibration_from": str(_date(artifact.calibration_from)),
        "calibration_to": str(_date(artifact.calibration_to)),
        "base_rate_long": artifact.base_rate_long,
        "base_rate_short": artifact.base_rate_short,
        "metrics": dict(artifact.metrics),
        "spec": asdict(artifact.spec),
    }


def action_ceilings(artifact: ModelArtifact, rule: SignalConfig | None = None
                    ) -> tuple[str, ...]:
    """Return one sentence per action the model cannot give, its highest probability too low.

    A BUY needs ``p_long >= base_rate_long + min_edge`` (a SELL likewise on the short side);
    when the long calibrator's highest output is below that, no signal can be a BUY.
    """
    rule = rule or ACTION_RULE
    sides = ((Direction.LONG, "BUY", "long", artifact.base_rate_long),
             (Direction.SHORT, "SELL", "short", artifact.base_rate_short))
    blocked = []
    for direction, action, name, base in sides:
        top = artifact.calibrators[direction.value].highest()
        need = base + rule.min_edge
        if top < need - 1e-12:
            blocked.append((action, name, top, need, base))
    every = "every signal is HOLD" if len(blocked) == 2 else None
    return tuple(
        f"This model version cannot give a {action}: its highest {name} probability is "
        f"{top:.3f}, below the {need:.3f} a {action} needs (expected hit rate {base:.3f} + edge "
        f"{rule.min_edge:.2f}); " + (every or f"no signal is a {action}") + "."
        for action, name, top, need, base in blocked)


def calibrator_kinds(artifact: ModelArtifact) -> str:
    """Return each side's calibrator kind, e.g. ``long platt, short isotonic``.

    ``ModelArtifact.calibrator_kind`` (and the registry's column) is the LONG side's only.
    """
    return ", ".join(f"{direction.value.lower()} {artifact.calibrators[direction.value].kind}"
                     for direction in (Direction.LONG, Direction.SHORT))


def calibrator_label(version: ModelVersion) -> str | None:
    """Return a version's calibrator kinds per side when its report has them, else its one
    registered kind (the long side's, for versions registered before both were kept)."""
    kinds = version.report.get("calibrator_kinds")
    if isinstance(kinds, str):
        return kinds
    return f"long {version.calibrator_kind}" if version.calibrator_kind else None
