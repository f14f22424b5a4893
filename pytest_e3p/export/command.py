"""`python -m pytest_e3p export RESULTS.json KIND[=DEST] ...`: export a results file a run wrote
earlier, through the same code as --e3p-export, so a team can load its old runs into a new tool."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..config import export_spec
from ..storage.history import CommitInfo
from ..storage.results import ResultsFileError, load_for_command
from ..text import terminal_safe
from . import ExportContext, export_results

EXIT_CODES = """exit status:
  0  every export written
  1  an export NOT written (its line says why and what to do)
  2  the results file cannot be read, or a KIND is not an export"""


def _export_spec(text: str) -> tuple[str, str]:
    try:
        return export_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: not an export: {exc}") from None


def _export_command(args: argparse.Namespace) -> int:
    try:
        rf = load_for_command(args.results)
    except ResultsFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # the commit a history file recorded; a plain results file names none, and the working tree's
    # HEAD today need not be the code that ran then, so none is tagged
    commit = CommitInfo.from_dict(rf.extra.get("commit"))
    ctx = ExportContext(Path(args.results), args.report, commit if commit.sha else None)
    failed = 0
    for done in export_results(rf, args.exports, ctx):
        print(terminal_safe(done.line), file=sys.stderr if done.failed else sys.stdout)
        failed += done.failed
    return 1 if failed else 0


def add_cli(subparsers: Any) -> None:
    """Add `export RESULTS KIND[=DEST]... [--report DIR]` to cli.main's subcommands."""
    p = subparsers.add_parser(
        "export",
        help="export a results file as csv, openmetrics, mlflow or bencher (as --e3p-export does)",
        description="Export a results file written by --e3p-results (or a baseline, or a history file) to the tools a team "
        "watches. Default destinations are next to the results file (RESULTS.csv, RESULTS.prom, RESULTS.bencher.json) and "
        "sqlite:///mlflow.db for MLflow.",
        epilog=EXIT_CODES,
    )
    p.add_argument("results", metavar="RESULTS", help="the results file (--e3p-results)")
    p.add_argument(
        "exports",
        metavar="KIND[=DEST]",
        nargs="+",
        type=_export_spec,
        help="csv[=PATH], openmetrics[=PATH.prom or http://HOST:PORT, a Pushgateway], mlflow[=TRACKING_URI], bencher[=PATH]",
    )
    p.add_argument("--report", type=Path, default=None, metavar="DIR", help="the folder report.md and its plots are in: MLflow attaches them")
    p.set_defaults(run=_export_command)
