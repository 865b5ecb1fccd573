"""Import bars from the command line, into the database named by DATABASE_URL.

``python -m core.marketdata import PATH... [--symbol SYM] [--interval 5m|1d]`` imports each file
in its own transaction (all or nothing per file) and prints its report; the exit code is 1 if
any file was refused. ``python -m core.marketdata load-sample [--if-empty]`` loads the
instrument master and every sample file.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Sequence

from core.domain import STORED_INTERVALS, Interval
from core.errors import TradingError
from core.marketdata.importer import ImportReport
from core.services import build_services


def interval_summary(reports: Sequence[ImportReport], seconds: dict[Interval, float]) -> list[str]:
    """Return one line per interval: files, bars kept, rows dropped, seconds."""
    by_interval: dict[Interval, list[ImportReport]] = defaultdict(list)
    for report in reports:
        by_interval[report.interval].append(report)
    return [
        f"sample {interval.value}: {len(group)} files, "
        f"{sum(r.rows_kept for r in group):,} bars, "
        f"{sum(r.rows_dropped for r in group):,} rows dropped, "
        f"{seconds.get(interval, sum(r.seconds for r in group)):.1f} s"
        for interval, group in by_interval.items()
    ]


def _import(paths: Sequence[str], symbol: str | None, interval: str | None,
            replace: bool = False) -> int:
    services = build_services()
    refused = 0
    try:
        for path in paths:
            try:
                report = services.marketdata.import_file(path, symbol=symbol, interval=interval,
                                                         replace=replace)
            except TradingError as exc:
                refused += 1
                print(f"REFUSED {exc}", file=sys.stderr)
                continue
            print("\n".join(report.describe()))
    finally:
        services.db.dispose()
    if refused:
        print(refused_summary(refused, len(paths)))
    return 1 if refused else 0


def refused_summary(refused: int, total: int) -> str:
    """Return the closing line of an import in which ``refused`` of ``total`` files failed."""
    if refused >= total:
        return f"{refused} of {total} file(s) refused. Nothing was imported."
    imported = total - refused
    verb = "was" if imported == 1 else "were"
    return f"{refused} of {total} file(s) refused; the other {imported} {verb} imported."


def _load_sample(if_empty: bool) -> int:
    services = build_services()
    try:
        if if_empty and services.marketdata.has_bars():
            print("SHER: market data already present; sample not loaded.")
            return 0
        print("SHER: loading the sample market data ...", flush=True)
        seconds: dict[Interval, float] = defaultdict(float)
        last = time.perf_counter()

        def _tick(_done: int, _total: int, report: ImportReport) -> None:
            nonlocal last
            now = time.perf_counter()
            seconds[report.interval] += now - last
            last = now

        try:
            reports = services.marketdata.load_sample(progress=_tick)
        except TradingError as exc:
            print(f"REFUSED {exc}", file=sys.stderr)
            return 1
    finally:
        services.db.dispose()
    for line in interval_summary(reports, seconds):
        print(f"SHER: {line}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m core.marketdata", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    importing = commands.add_parser("import", help="import CSV files of bars")
    importing.add_argument("paths", nargs="+", metavar="PATH")
    importing.add_argument("--symbol", help="the NSE symbol of the file (default: from the file)")
    importing.add_argument(
        "--interval",
        choices=[i.value for i in STORED_INTERVALS],
        help="bar interval (default: inferred from the times)",
    )
    importing.add_argument(
        "--replace",
        action="store_true",
        help="replace stored bars that have other values (default: refuse such a file)",
    )
    sample = commands.add_parser("load-sample", help="load the instrument master and sample")
    sample.add_argument(
        "--if-empty", action="store_true", help="do nothing when bars are already stored"
    )
    args = parser.parse_args(argv)
    if args.command == "import":
        if args.symbol and len(args.paths) > 1:
            parser.error("--symbol names one file's symbol; give a single PATH with it")
        return _import(args.paths, args.symbol, args.interval, args.replace)
    return _load_sample(args.if_empty)


if __name__ == "__main__":
    sys.exit(main())
