"""Operator tool for the signal models: ``python -m core.signals_cli train|activate|list|attach``.

Run on the desk's machine against DATABASE_URL, like ``python -m core.marketdata``: there is no
login (whoever can run it can already read the database); every change is audited with the
operator name ``cli``. The same actions are on the Signals page for admins.

- ``train [--activate] [--evaluation REPORT.json]``: train a version on every instrument's
  daily bars in the database, register it, optionally attach an ``engines.evaluate`` report
  and activate it (the previous version stays available).
- ``activate VERSION``: make a registered version the active one.
- ``list``: print the registered versions with their status, windows and figures.
- ``attach VERSION REPORT.json``: attach an ``engines.evaluate`` report to a version.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import TradingError
from core.services import Services, build_services
from core.services.signal_registry import ModelVersion, calibrator_label
from core.services.signal_views import figures_lines

OPERATOR = "cli"


def _read_report(path: str) -> dict[str, Any]:
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"sher signals: cannot read evaluation report {path}: {exc}") from exc
    if not isinstance(report, dict):
        raise SystemExit(f"sher signals: {path} does not hold a JSON object")
    return report


def describe(version: ModelVersion) -> list[str]:
    """Return the lines ``list`` prints for one version."""
    head = (f"{version.version}  {version.status.value:<8}  by {version.created_by}  "
            f"trees {version.train_from}..{version.train_to}  "
            f"calibrated {version.calibration_from}..{version.calibration_to} "
            f"({calibrator_label(version)})")
    if version.message:
        return [head, f"    {version.message}"]
    return [head, *(f"    {line}" for line in figures_lines(version))]


def _run(services: Services, args: argparse.Namespace) -> int:
    registry = services.models
    if args.command == "train":
        evaluation = _read_report(args.evaluation) if args.evaluation else None
        version = registry.train_as(OPERATOR, progress=print, activate=args.activate)
        if evaluation is not None:
            version = registry.attach_evaluation_as(OPERATOR, version.version, evaluation)
        print("\n".join(describe(version)))
    elif args.command == "activate":
        version = registry.activate_as(OPERATOR, args.version)
        print(f"{version.version} is now the active signal model.")
    elif args.command == "attach":
        version = registry.attach_evaluation_as(OPERATOR, args.version,
                                                _read_report(args.report))
        print("\n".join(describe(version)))
    else:
        versions = registry.all_versions()
        if not versions:
            print("No signal model is registered yet; run: python -m core.signals_cli train "
                  "--activate")
        for version in versions:
            print("\n".join(describe(version)))
    return 0


def parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    top = argparse.ArgumentParser(prog="python -m core.signals_cli",
                                  description="Train, activate and list SHER's signal models.")
    commands = top.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a new version on the database's bars")
    train.add_argument("--activate", action="store_true", help="make it the active version")
    train.add_argument("--evaluation", metavar="REPORT.json",
                       help="attach this python -m engines.evaluate report")
    activate = commands.add_parser("activate", help="make a version the active one")
    activate.add_argument("version")
    commands.add_parser("list", help="list the registered versions")
    attach = commands.add_parser("attach", help="attach an evaluation report to a version")
    attach.add_argument("version")
    attach.add_argument("report", metavar="REPORT.json")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (1 with the rule-and-values message on refusal)."""
    args = parser().parse_args(argv)
    try:
        services = build_services()
        try:
            return _run(services, args)
        finally:
            services.db.dispose()
    except TradingError as exc:
        print(f"sher signals: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
