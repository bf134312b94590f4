"""`drdrill report trend`: time-to-ready and manual steps across past drills, with a regression
check the nightly job can fail on."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.argtypes import non_negative, positive_int
from harness.report.trend import FLOOR_S, MIN_BASELINE, THRESHOLD_PCT, WINDOW, run_trend

TREND_RULE = (
    "Regression rule: the newest run's time-to-ready is compared with the median of the "
    "previous --window runs (of the same scenario, provider, repo and cluster) that converged; "
    "it is a REGRESSION, exit code 1, when it is over that median by more than --threshold "
    "percent AND by more than --floor seconds. At least "
    f"{MIN_BASELINE} earlier converged runs are needed. A newest run that did not converge is "
    "not a regression (its own verdict failed). Unreadable report.json files and other schema "
    "versions are skipped with a warning. Exit 2: no history to read."
)


def add_report_commands(subparsers: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Register `report trend` on a CLI's subparsers; the command sets `func(args)`."""
    report: argparse.ArgumentParser = subparsers.add_parser(
        "report", help="work with drill reports (trends across runs)")
    sub = report.add_subparsers(dest="report_command", metavar="{trend}", required=True)
    trend = sub.add_parser(
        "trend", help="time-to-ready per phase and manual steps over past runs; flags a "
                      "regression (exit 1)",
        description="Read every */report.json under --history, write trend.svg and trend.md "
                    "into --out and print the table. " + TREND_RULE)
    trend.add_argument("--history", type=Path, default=Path("reports"), metavar="DIR",
                       help="folder of run folders holding report.json (default reports)")
    trend.add_argument("--out", type=Path, metavar="DIR",
                       help="where to write trend.svg and trend.md (default: --history)")
    trend.add_argument("--threshold", type=non_negative, default=THRESHOLD_PCT, metavar="PCT",
                       help=f"percent over the median that counts (default {THRESHOLD_PCT:g})")
    trend.add_argument("--floor", type=non_negative, default=FLOOR_S, metavar="SECONDS",
                       help="seconds over the median that count, so tiny runs don't flap "
                            f"(default {FLOOR_S:g})")
    trend.add_argument("--window", type=positive_int, default=WINDOW, metavar="N",
                       help=f"how many previous converged runs make the median (default {WINDOW})")
    trend.set_defaults(func=cmd_trend)
    return report


def cmd_trend(args: argparse.Namespace) -> int:
    def warn(line: str) -> None:
        print(line, file=sys.stderr)

    return run_trend(args.history, args.out, threshold_pct=args.threshold, floor_s=args.floor,
                     window=args.window, warn=warn)
