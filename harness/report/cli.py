"""`drdrill report trend` and `report merge`: time-to-ready and manual steps across past drills
(one history, or many repos, clusters and providers on one fleet page), with a regression check
the nightly job can fail on."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.argtypes import non_negative, positive_int
from harness.report.fleet import run_merge
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


def _rule_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threshold", type=non_negative, default=THRESHOLD_PCT, metavar="PCT",
                   help=f"percent over the median that counts (default {THRESHOLD_PCT:g})")
    p.add_argument("--floor", type=non_negative, default=FLOOR_S, metavar="SECONDS",
                   help="seconds over the median that count, so tiny runs don't flap "
                        f"(default {FLOOR_S:g})")
    p.add_argument("--window", type=positive_int, default=WINDOW, metavar="N",
                   help=f"how many previous converged runs make the median (default {WINDOW})")


def add_report_commands(subparsers: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Register `report trend` and `report merge` on a CLI's subparsers; each sets `func`."""
    report: argparse.ArgumentParser = subparsers.add_parser(
        "report", help="work with drill reports (trends across runs, the fleet page)")
    sub = report.add_subparsers(dest="report_command", metavar="{trend,merge,allure}",
                                required=True)
    trend = sub.add_parser(
        "trend", help="time-to-ready per phase and manual steps over past runs; flags a "
                      "regression (exit 1)",
        description="Read every */report.json under --history, write trend.svg and trend.md "
                    "into --out and print the table. " + TREND_RULE)
    trend.add_argument("--history", type=Path, default=Path("reports"), metavar="DIR",
                       help="folder of run folders holding report.json (default reports)")
    trend.add_argument("--out", type=Path, metavar="DIR",
                       help="where to write trend.svg and trend.md (default: --history)")
    _rule_options(trend)
    trend.set_defaults(func=cmd_trend)
    merge = sub.add_parser(
        "merge", help="one fleet page (HTML, Markdown, JSON) from the reports of many repos, "
                      "clusters and providers; exit 1 on any regression",
        description="Read every */report.json under each DIR (CI matrix cells, a kept history; "
                    "a run found twice counts once) and write fleet.html, fleet.md and "
                    "fleet.json into --out: per scenario x provider x repo x cluster the latest "
                    "verdict, time-to-ready against the RTO, manual steps and a trend line, "
                    "worst first. " + TREND_RULE.replace("the newest run", "each group's "
                                                         "newest run"))
    merge.add_argument("dirs", type=Path, nargs="+", metavar="DIR",
                       help="folders holding run folders with report.json")
    merge.add_argument("--out", type=Path, default=Path("fleet-report"), metavar="DIR",
                       help="where to write fleet.html, fleet.md, fleet.json "
                            "(default fleet-report)")
    _rule_options(merge)
    merge.set_defaults(func=cmd_merge)
    allure = sub.add_parser(
        "allure", help="one Allure 3 report of the drills under DIR...: time-to-ready and phases "
                       "as performance metrics, an RTO quality gate, history as JSONL",
        description="Collect every allure-results folder under each DIR, generate one Allure 3 "
                    "report (npm allure, pinned in harness/tools.toml, installed into the cache "
                    "on first use) into --out. Each drill's time-to-ready, recovery phases and "
                    "manual steps are performance metrics; a drill with an RTO gets a quality "
                    "gate holding its time-to-ready to it (exit 1 when one fails). --history "
                    "keeps Allure's history (JSONL) between runs: pass the same file every night.")
    allure.add_argument("dirs", type=Path, nargs="+", metavar="DIR",
                        help="folders holding run folders (each with allure-results/)")
    allure.add_argument("--out", type=Path, default=Path("allure-report"), metavar="DIR",
                        help="where to write the report (default allure-report)")
    allure.add_argument("--history", type=Path, metavar="FILE",
                        help="Allure's history file (JSONL), read and appended to")
    allure.add_argument("--name", default="drdrill", help="the report's title")
    allure.set_defaults(func=_cmd_allure)
    return report


def _cmd_allure(args: argparse.Namespace) -> int:
    from harness.cli.allure import cmd_allure

    return cmd_allure(args)


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


def cmd_merge(args: argparse.Namespace) -> int:
    return run_merge(args.dirs, args.out, threshold_pct=args.threshold, floor_s=args.floor,
                     window=args.window, warn=_warn)


def cmd_trend(args: argparse.Namespace) -> int:
    def warn(line: str) -> None:
        print(line, file=sys.stderr)

    return run_trend(args.history, args.out, threshold_pct=args.threshold, floor_s=args.floor,
                     window=args.window, warn=warn)
