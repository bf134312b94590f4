"""`drdrill bench`: drdrill against what a user would write instead, and how drills scale;
prints one table and writes the JSON behind it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.argtypes import positive_int

QUICK = {"sizes": (10,), "parallel": (1, 2), "poll_samples": 5}


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers, "
                                         "e.g. 10,50,200") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every number must be 1 or more")
    return values


def _choices(what: str, allowed: Iterable[str], text: str) -> tuple[str, ...]:
    """A comma-separated subset of `allowed`, or the argparse error naming the unknown ones."""
    options = tuple(allowed)
    picked = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in picked if s not in options]
    if unknown or not picked:
        raise argparse.ArgumentTypeError(f"unknown {what}(s) {', '.join(unknown) or text!r}; "
                                         f"choose from {', '.join(options)}")
    return picked


def _sections(text: str) -> tuple[str, ...]:
    from harness.bench.run import SECTIONS
    from harness.bench.sections import REGISTERED

    return _choices("section", (*SECTIONS, *REGISTERED), text)


def _profiles(text: str) -> tuple[str, ...]:
    from harness.bench.run import PROFILES

    return _choices("profile", PROFILES, text)


def add_bench_command(sub: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    top = Path(__file__).resolve().parents[2]
    p: argparse.ArgumentParser = sub.add_parser(
        "bench", help="benchmark drdrill against kubectl wait and the flux CLI, and its scaling",
        description=__doc__)
    configure(p, top)
    p.set_defaults(func=cmd_bench)
    return p


def configure(p: argparse.ArgumentParser, top: Path) -> None:
    from harness.bench.run import SECTIONS

    p.add_argument("--repo", type=Path, default=top, help="the repo of the peers and parallel "
                   "sections (default: the sample repo)")
    p.add_argument("--inputs", type=Path, default=top / "scenarios" / "inputs" / "homelab",
                   help="its manual inputs (default scenarios/inputs/homelab)")
    p.add_argument("--sections", type=_sections, default=SECTIONS,
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    p.add_argument("--sizes", type=_ints,
                   help="Kustomizations per generated repo (default 10,50,100,200,500,1000)")
    p.add_argument("--profiles", type=_profiles, help="Flux settings of the scaling rows: "
                   "repo (what the repo configures: Flux's defaults) and/or fast (default both)")
    p.add_argument("--profile-sizes", type=_ints, help="sizes whose drdrill run also samples "
                   "every component's metrics and takes controller CPU profiles "
                   "(default 200,500)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip the Flux-alone run of each scaling row")
    p.add_argument("--parallel", type=_ints, help="drills at once (default 1,2,4)")
    p.add_argument("--transitions", type=positive_int, default=50,
                   help="Ready transitions for the detection latency (default 50)")
    p.add_argument("--timeout", type=positive_int, default=900,
                   help="converge deadline per round of each drill, seconds (default 900)")
    p.add_argument("--quick", action="store_true",
                   help="sizes 10, parallel 1,2, 5 flux poll samples: minutes, not a quarter hour")
    p.add_argument("--out-dir", type=Path, default=top / "reports" / "bench",
                   help="where the per-drill results and reports go (default reports/bench)")
    p.add_argument("--json", type=Path, dest="json_path", metavar="PATH",
                   help="write the whole result as JSON here (default OUT_DIR/<stamp>/bench.json)")
    p.add_argument("--include", type=Path, metavar="BENCH_JSON", action="append",
                   help="carry the scaling rows of sizes not measured now over from an earlier "
                        "result (they keep their own time and load)")
    p.add_argument("--readme", type=Path, metavar="README",
                   help="also put the table into this README's '## Benchmark' section")


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.bench.run import BenchOptions, run_bench
    from harness.bench.table import render, update_readme

    # --quick picks small defaults; what is given explicitly still wins.
    picked: dict[str, Any] = dict(QUICK) if args.quick else {}
    for key in ("sizes", "parallel", "profiles", "profile_sizes"):
        if getattr(args, key) is not None:
            picked[key] = getattr(args, key)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out_dir = args.out_dir / stamp
    opts = BenchOptions(repo=args.repo.resolve(), inputs=args.inputs.resolve()
                        if args.inputs else None, out_dir=out_dir, sections=args.sections,
                        baseline=args.baseline, transitions=args.transitions,
                        timeout_s=float(args.timeout), **picked)

    def say(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)

    result = run_bench(opts, say)
    for earlier in args.include or []:
        carry_over(result, json.loads(earlier.read_text(encoding="utf-8")))
    table = render(result)
    print(table)
    json_path = args.json_path or out_dir / "bench.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    say(f"result: {json_path}")
    if args.readme:
        update_readme(args.readme, table)
        say(f"table written into {args.readme}")
    return 0


def carry_over(result: dict[str, Any], earlier: dict[str, Any]) -> None:
    """Add `earlier`'s scaling rows for the (size, profile) pairs `result` lacks, marked with
    when they ran."""
    have = {_key(r) for r in result.get("scaling") or []}
    for row in earlier.get("scaling") or []:
        if _key(row) not in have:
            row.setdefault("measured_in", earlier.get("started_at"))
            result.setdefault("scaling", []).append(row)
    result["scaling"] = sorted(result.get("scaling") or [], key=_key)


def _key(row: dict[str, Any]) -> tuple[int, str]:
    return (row.get("size") or 0, str(row.get("profile") or ""))


def main(argv: list[str] | None = None) -> int:
    top = Path(__file__).resolve().parents[2]
    p = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__)
    configure(p, top)
    return cmd_bench(p.parse_args(argv))
