"""Market data: importing bars (uploads, the CLI, the sample) and the instrument master.

Each file is all-or-nothing: it is parsed and validated completely before one transaction
writes its instrument (when new), its bars and the audit entry.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit, authz
from core.domain import STORED_INTERVALS, Actor, Instrument, Interval
from core.errors import NotFound, ValidationError
from core.marketdata import store
from core.marketdata.importer import ImportReport, ParsedBars, read_bars, read_bars_file
from core.marketdata.instruments import instrument_row, sample_files, sample_master
from core.services.base import ServiceBase
from core.services.charts import INTERVAL_LABELS, clear_bar_cache
from db.models import BarRow, InstrumentRow

IMPORT_ACTION = "marketdata.import"
LOAD_SAMPLE_ACTION = "marketdata.load_sample"

#: ``progress(done, total, report)`` after each sample file.
Progress = Callable[[int, int, ImportReport], None]


def _known(session: Session) -> frozenset[str]:
    """Return the symbols of the instrument master (to catch a file declared as another)."""
    return frozenset(session.scalars(select(InstrumentRow.symbol)).all())


class MarketDataService(ServiceBase):
    """Import OHLCV bars and read the instrument master."""

    # -- importing -------------------------------------------------------------------------
    @staticmethod
    def check_declared_symbol(symbol: str | None, filenames: Sequence[str]) -> None:
        """Refuse a declared symbol given with more than one file: it names one file's symbol.

        The CLI refuses ``--symbol`` with more than one path likewise. Raises ValidationError.
        """
        if symbol and len(filenames) > 1:
            names = ", ".join(filenames[:5]) + (", …" if len(filenames) > 5 else "")
            raise ValidationError(
                f"A typed symbol names one file's symbol; got {symbol!r} with "
                f"{len(filenames)} files ({names}): upload one file with it, or leave Symbol "
                "empty so each file's symbol comes from its symbol column or its name. "
                "Nothing was imported."
            )

    def import_csv(
        self,
        actor: Actor,
        filename: str,
        data: bytes,
        symbol: str | None = None,
        interval: str | None = None,
        replace: bool = False,
    ) -> ImportReport:
        """Validate and store one uploaded CSV; only admins and super admins may.

        Raises ValidationError (rule, rows, values) and writes nothing if any row breaks a
        rule, or if the file has other values for bars already stored and ``replace`` is
        False; PermissionDenied (audited) for other roles.
        """
        with self.db.transaction() as session:
            role = self._fresh_role(session, actor)
            if role not in authz.USER_MANAGERS:
                self._deny(
                    actor,
                    IMPORT_ACTION,
                    f"file:{filename[:100]}",
                    f"Your role {role.value!r} may not import market data; ask a household admin",
                )
            started = time.perf_counter()
            try:
                parsed = read_bars(
                    data, filename, symbol=symbol, interval=interval, known_symbols=_known(session)
                )
                report = self._store(session, parsed, actor, started, replace=replace)
            except ValidationError as exc:  # _store refuses before it writes anything
                self._refused(actor, filename, exc)  # in its own transaction, like _deny
                raise
        clear_bar_cache()  # after the commit, so charts cannot re-cache the old bars
        return report

    def import_file(
        self, path: Path | str, symbol: str | None = None, interval: str | None = None,
        replace: bool = False,
    ) -> ImportReport:
        """Validate and store one CSV file (a system call for the CLI; audited as the system).

        Refused as :meth:`import_csv` is, ``replace`` included.
        """
        started = time.perf_counter()
        with self.db.transaction() as session:
            known = _known(session)
        try:
            parsed = read_bars_file(path, symbol=symbol, interval=interval, known_symbols=known)
        except ValidationError as exc:
            self._refused(None, Path(path).name, exc)
            raise
        try:
            with self.db.transaction() as session:
                report = self._store(session, parsed, None, started, replace=replace)
        except ValidationError as exc:
            self._refused(None, Path(path).name, exc)
            raise
        clear_bar_cache()
        return report

    def load_sample(self, progress: Progress | None = None) -> list[ImportReport]:
        """Load the instrument master and every sample file (a system call, e.g. the launcher).

        One transaction per file; a refused file raises after the files before it are stored.
        """
        with self.db.transaction() as session:
            store.upsert_instruments(session, sample_master())
        files = [
            (path, interval) for interval in STORED_INTERVALS for path in sample_files(interval)
        ]
        reports: list[ImportReport] = []
        for done, (path, interval) in enumerate(files, start=1):
            started = time.perf_counter()
            parsed = read_bars_file(path, interval=interval)
            with self.db.transaction() as session:
                reports.append(self._store(session, parsed, None, started, audited=False,
                                           replace=True))  # the sample is the shipped truth
            clear_bar_cache()
            if progress is not None:
                progress(done, len(files), reports[-1])
        with self.db.transaction() as session:
            self._audit(
                session,
                None,
                LOAD_SAMPLE_ACTION,
                "marketdata:sample",
                {
                    "files": len(reports),
                    "bars": sum(r.rows_kept for r in reports),
                    "dropped": sum(r.rows_dropped for r in reports),
                },
            )
        return reports

    def _refused(self, actor: Actor | None, filename: str, exc: ValidationError) -> None:
        """Audit a file refused for a rule as a failed import (who, the file, the rule).

        In its own transaction: the import's rolls back. A CLI import (no actor) is audited
        with no household, as the system.
        """
        with self.db.transaction() as session:
            self._audit(
                session, actor, IMPORT_ACTION, f"file:{filename[:100]}",
                {"file": filename, "refused": str(exc)}, outcome=audit.FAILED,
            )

    def _store(
        self,
        session: Session,
        parsed: ParsedBars,
        actor: Actor | None,
        started: float,
        audited: bool = True,
        replace: bool = False,
    ) -> ImportReport:
        """Store ``parsed``; refuse (before writing) to change stored bars unless ``replace``."""
        report = parsed.report
        known = store.instrument(session, report.symbol)
        changes = store.BarChanges()
        if known is not None:
            changes = store.changed_bars(session, known.id, report.interval, parsed.bars)
            if changes.count and not replace:
                raise ValidationError(_replacing(report, changes))
        if known is None:
            instrument_id = store.upsert_instruments(session, [instrument_row(report.symbol)])[
                report.symbol
            ]
        else:
            instrument_id = known.id
        store.upsert_bars(session, instrument_id, report.interval, parsed.bars)
        report = dataclasses.replace(report, replaced=changes.count, new_instrument=known is None,
                                     seconds=time.perf_counter() - started)
        if audited:
            self._audit(
                session, actor, IMPORT_ACTION, f"instrument:{report.symbol}", report.summary()
            )
        return report

    # -- reading ---------------------------------------------------------------------------
    def has_bars(self) -> bool:
        """Return whether any bar is stored (the launcher loads the sample when not)."""
        with self.db.transaction() as session:
            return session.scalar(select(BarRow.instrument_id).limit(1)) is not None

    def bar_count(self, interval: Interval | None = None) -> int:
        """Return how many bars are stored (optionally of one interval)."""
        with self.db.transaction() as session:
            return store.bar_count(session, interval)

    def search_instruments(self, actor: Actor, query: str) -> list[Instrument]:
        """Return instruments whose symbol or name contains ``query`` (symbol prefix first)."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            return store.search_instruments(session, query)

    def instrument(self, actor: Actor, symbol: str) -> Instrument:
        """Return the NSE instrument ``symbol``; raise NotFound (a ValidationError) if absent."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            found = store.instrument(session, symbol.strip())
        if found is None:
            raise NotFound(f"Unknown symbol {symbol.strip().upper()!r}")
        return found


def _replacing(report: ImportReport, changes: store.BarChanges) -> str:
    """Return the refusal of a file that would replace stored bars with other values."""
    daily = report.interval is not Interval.M5

    def when(stamp: pd.Timestamp | None) -> str:
        moment = pd.Timestamp(stamp)
        return moment.strftime("%Y-%m-%d") if daily else moment.strftime("%Y-%m-%d %H:%M IST")

    def values(bar: tuple[float, ...]) -> str:
        return " / ".join([*(f"{v:.2f}" for v in bar[:4]), f"{bar[4]:,.0f}"])

    span = (f"on {when(changes.first)}" if changes.first == changes.last
            else f"from {when(changes.first)} to {when(changes.last)}")
    return (
        f"{changes.count:,} stored {INTERVAL_LABELS[report.interval]} bar(s) of {report.symbol} "
        f"{span} have other values in this file (first, {when(changes.first)}: stored open / "
        f"high / low / close / volume {values(changes.stored)}, file {values(changes.new)}). "
        "Importing would replace them: import it again with 'Replace stored bars that differ' "
        "ticked (on the command line: --replace), or remove those rows. Nothing was imported."
    )
