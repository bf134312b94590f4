"""Benchmark of the speed and memory goals; prints a table (never a pass/fail test).

    python -m harness.bench [--repo .] [--runs 1]

Runs the full-rebuild drill of the sample repo on the embedded provider and reports, per run:
embedded cluster /readyz and nodes Ready, Flux controllers ready after the cluster, converge
after bootstrap, rebuild time-to-ready, harness CPU share of TTR (time the harness itself
spent, not waiting), how late readiness was seen after the object's Ready transition (the
API's timestamps have 1 s resolution, so that column is ±1 s), and the peak RSS of every
process of the run (control plane + Flux).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import statistics
import sys
import threading
from pathlib import Path
from typing import Any

from harness.config import Config
from harness.drill import Drill
from harness.gc import run_processes
from harness.runner import DrillOptions, new_run_id, run_drill

GOALS = {
    "cluster_readyz_s": 10.0,
    "flux_ready_after_cluster_s": 5.0,
    "converged_after_bootstrap_s": 30.0,
    "rebuild_ttr_s": 45.0,
    "harness_cpu_share_pct": 2.0,
    "peak_rss_mib": 1536.0,
}


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    """Samples the summed RSS of every process carrying this run's id, every 0.5 s."""

    def __init__(self, run_id: str) -> None:
        super().__init__(daemon=True)
        self.run_id = run_id
        self.peak_kib = 0
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(0.5):
            pids = run_processes()[0].get(self.run_id, [])
            self.peak_kib = max(self.peak_kib, sum(_rss_kib(p) for p in pids))

    def stop(self) -> None:
        self._stop.set()
        self.join(timeout=2)


def _seen_lag(report_dir: Path, rnd: int, started_at: str,
              offsets: dict[str, float]) -> list[float]:
    """Harness-seen time minus the Ready condition's lastTransitionTime, per object."""
    lags: list[float] = []
    path = report_dir / "diagnostics" / f"round{rnd}" / "kustomizations.yaml"
    if not path.exists():
        return lags
    import yaml

    t0 = dt.datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    for obj in yaml.safe_load_all(path.read_text()):
        if not obj:
            continue
        ref = f"Kustomization/{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        cond = next((c for c in obj.get("status", {}).get("conditions", [])
                     if c["type"] == "Ready" and c["status"] == "True"), None)
        if cond is None or ref not in offsets:
            continue
        ready = dt.datetime.fromisoformat(cond["lastTransitionTime"].replace("Z", "+00:00"))
        lags.append((t0 + dt.timedelta(seconds=offsets[ref]) - ready).total_seconds())
    return lags


def bench_once(repo: Path, inputs: Path | None, report_root: Path) -> dict[str, Any]:
    run_id = new_run_id("bench")
    drill = Drill(run_id)
    marks: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def on_phase(event: str, record: Any) -> None:
        marks[f"{event}:{drill.round}"] = drill.clock()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu[f"{event}:{drill.round}"] = usage.ru_utime + usage.ru_stime

    drill.listeners.append(on_phase)
    sampler = RssSampler(run_id)
    sampler.start()
    try:
        report, report_dir = run_drill(
            DrillOptions(repo=repo, inputs=inputs, run_id=run_id, config=Config.from_env(),
                         report_dir=report_root / run_id), drill=drill)
    finally:
        sampler.stop()
    phases = {(p.name, p.round): p for p in report.phases}
    out: dict[str, Any] = {"run_id": run_id, "verdict": report.verdict}
    prov = phases.get(("provision", 2))
    boot = phases.get(("bootstrap", 2))
    conv = phases.get(("converge", 2))
    if prov:
        out["cluster_readyz_s"] = prov.duration_s
    if boot:
        out["flux_ready_after_cluster_s"] = boot.duration_s
    if conv:
        out["converged_after_bootstrap_s"] = conv.duration_s
    out["rebuild_ttr_s"] = report.time_to_ready_s
    if report.time_to_ready_s and "start:provision:2" in cpu and "end:converge:2" in cpu:
        spent = cpu["end:converge:2"] - cpu["start:provision:2"]
        out["harness_cpu_share_pct"] = round(100 * spent / report.time_to_ready_s, 2)
    round_start = prov.offset_s if prov else 0.0
    offsets = {f"{o.kind}/{o.namespace}/{o.name}": round_start + (o.ready_after_s or 0.0)
               for o in report.objects if o.round == 2 and o.ready}
    lags = _seen_lag(report_dir, 2, report.started_at, offsets)
    if lags:
        out["ready_seen_lag_s_max"] = round(max(lags), 3)
    out["peak_rss_mib"] = round(sampler.peak_kib / 1024, 1)
    out["report"] = str(report_dir)
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    keys = [*GOALS, "ready_seen_lag_s_max"]
    print(f"{'metric':<30} {'goal':>8} " + " ".join(f"{'run ' + str(i + 1):>10}"
                                                   for i in range(len(rows))) + f" {'median':>10}")
    for key in keys:
        values = [r.get(key) for r in rows]
        nums = [v for v in values if isinstance(v, (int, float))]
        goal = GOALS.get(key)
        med = statistics.median(nums) if nums else None
        verdict = "" if goal is None or med is None else ("  ok" if med <= goal else "  OVER")
        print(f"{key:<30} {'' if goal is None else f'≤{goal:g}':>8} "
              + " ".join(f"{'' if v is None else f'{v:.2f}':>10}" for v in values)
              + f" {'' if med is None else f'{med:.2f}':>10}{verdict}")
    print(f"{'verdict':<30} {'':>8} " + " ".join(f"{r['verdict']:>10}" for r in rows))


def main(argv: list[str] | None = None) -> int:
    top = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, default=top)
    p.add_argument("--inputs", type=Path, default=top / "scenarios" / "inputs" / "homelab")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--report-root", type=Path, default=top / "reports" / "bench")
    p.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = p.parse_args(argv)
    rows = [bench_once(args.repo, args.inputs, args.report_root) for _ in range(args.runs)]
    print_table(rows)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
