"""The benchmark's sections, each measured in child processes (so CPU and RSS are one drill's
alone), collected into one result with the machine and its load next to every number."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.bench import genrepo, stats
from harness.bench.sections import REGISTERED
from harness.command import Command, run
from harness.errors import CommandError
from harness.gc import run_processes
from harness.gitops.flux_config import FAST_REQUEUE

SECTIONS = ("peers", "latency", "scaling", "parallel")
PROFILES: dict[str, dict[str, Any]] = {
    "repo": {"requeue_dependency": "30s", "concurrent": 4},
    "fast": {"requeue_dependency": FAST_REQUEUE, "concurrent": 6},
}
"""repo: what the generated repos configure, i.e. nothing, so kustomize-controller's own
defaults (--requeue-dependency=30s, --concurrent=4); fast: the drill-tuned settings."""
BUSY = ("go", "compile", "link", "asm", "cgo", "etcd", "kube-apiserver", "pytest", "kwok",
        "kustomize-contr", "source-control", "helm-controller")


@dataclass(frozen=True)
class BenchOptions:
    repo: Path
    inputs: Path | None
    out_dir: Path
    sections: tuple[str, ...] = SECTIONS
    sizes: tuple[int, ...] = (10, 50, 100, 200, 500, 1000)
    profiles: tuple[str, ...] = ("repo", "fast")
    max_depth: int = 7
    baseline: bool = True
    """Also run Flux alone on each generated repo (harness.bench.alone)."""
    profile_sizes: tuple[int, ...] = (200, 500)
    """Sizes whose drdrill run also samples the components' metrics and CPU profiles."""
    profile_s: int = 15
    parallel: tuple[int, ...] = (1, 2, 4)
    transitions: int = 50
    poll_samples: int = 10
    timeout_s: float = 900.0
    extra_env: dict[str, str] = field(default_factory=dict)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "memory": mem,
            "kernel": platform.release(), "python": platform.python_version(),
            "hostname_hash": f"{abs(hash(platform.node())) % 10**6:06d}"}


def activity(own_runs: Sequence[str] = ()) -> dict[str, Any]:
    """Load average and what else is running: how skewed the numbers next to it may be."""
    counts: dict[str, int] = {}
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            name = comm.read_text().strip()
        except OSError:
            continue
        if name in BUSY:
            counts[name] = counts.get(name, 0) + 1
    others = [r for r in run_processes()[0] if r not in own_runs]
    return {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "load_avg": [round(x, 2) for x in os.getloadavg()],
            "busy_processes": counts, "other_drdrill_runs": len(others)}


def _child(module: str, args: Sequence[str], out: Path, env: dict[str, str],
           timeout_s: float) -> dict[str, Any]:
    cmd = Command.of(sys.executable, "-m", module, *args, "--out", str(out)).with_env(
        PYTHONUNBUFFERED="1", **env).with_timeout(timeout_s)
    try:
        result = run(cmd, check=False)
    except CommandError as exc:  # timed out
        return {"verdict": "broken", "error": f"{module} did not finish: {exc.stderr[-500:]}"}
    if out.exists():
        data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return data
    return {"verdict": "broken", "error": f"{module} exited {result.returncode} without a "
                                          f"result: {result.stderr.strip()[-800:]}"}


def _drill(opts: BenchOptions, name: str, repo: Path, *, cluster: str | None = None,
           inputs: Path | None = None, peers: bool = False, helm: bool = False,
           flux: dict[str, Any] | None = None, profile_s: int = 0) -> dict[str, Any]:
    args = ["--repo", str(repo), "--report-root", str(opts.out_dir / "reports"),
            "--timeout", str(opts.timeout_s)]
    if cluster:
        args += ["--cluster", cluster]
    if inputs:
        args += ["--inputs", str(inputs)]
    if peers:
        args.append("--peers")
    if helm:
        args.append("--helm")
    if profile_s:
        args += ["--profile", str(profile_s)]
    settings = flux or {}
    args += ["--requeue-dependency", str(settings.get("requeue_dependency",
                                                      PROFILES["fast"]["requeue_dependency"])),
             "--concurrent", str(settings.get("concurrent", PROFILES["fast"]["concurrent"]))]
    return _child("harness.bench.one", args, opts.out_dir / f"{name}.json", opts.extra_env,
                  opts.timeout_s + 300)


WAITERS = ("drdrill", "kubectl-wait", "flux-poll")
"""The waiters that return: each is judged by how many objects it called ready too early."""


def _scaling_row(opts: BenchOptions, size: int, profile: str, repos: Path) -> dict[str, Any]:
    """drdrill's full rebuild and Flux alone on the same generated repo, same settings."""
    plan = genrepo.Plan(size, opts.max_depth)
    repo = repos / f"scale-{size}"
    if not repo.exists():
        genrepo.write_repo(repo, plan)
    flux = PROFILES[profile]
    name = f"scale-{size}-{profile}"
    alone: dict[str, Any] | None = None
    if opts.baseline:
        # Flux alone first: a cluster left behind by it would slow drdrill's row, not flatter it.
        alone = _child("harness.bench.alone", [
            "--repo", str(repo), "--cluster", genrepo.CLUSTER, "--expect",
            str(plan.flux_objects), "--timeout", str(opts.timeout_s),
            "--requeue-dependency", str(flux["requeue_dependency"]),
            "--concurrent", str(flux["concurrent"]), *(["--helm"] if plan.helm else [])],
            opts.out_dir / f"{name}-alone.json", opts.extra_env, opts.timeout_s + 300)
        alone["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    row = _drill(opts, name, repo, cluster=genrepo.CLUSTER, flux=flux, peers=True,
                 helm=plan.helm, profile_s=opts.profile_s if size in opts.profile_sizes else 0)
    return scaling_figures(row, alone, size=size, profile=profile, plan=plan)


def scaling_figures(row: dict[str, Any], alone: dict[str, Any] | None, *, size: int,
                    profile: str, plan: genrepo.Plan) -> dict[str, Any]:
    """The row's headline figures under the names `drdrill bench --json` promises."""
    pr = row.get("peers") or {}
    flux_alone = None if alone is None or alone.get("verdict") != "passed" \
        else alone.get("ttr_s")
    row.update(
        size=size, profile=profile, helmreleases=plan.helmreleases, depth=plan.depth,
        flux_objects=plan.flux_objects,
        requeue_dependency=PROFILES[profile]["requeue_dependency"],
        concurrent=PROFILES[profile]["concurrent"],
        flux_alone=alone, flux_alone_ttr_s=flux_alone,
        ttr_over_flux_alone=None if row.get("verdict") != "passed" else
        _round(stats.ratio(row.get("ttr_s"), flux_alone)),
        objects_early={w: None if (pr.get(w) or {}).get("too_early") is None
                       else len(pr[w]["too_early"]) for w in WAITERS if w in pr},
        harness_cpu_pct=row.get("harness_cpu_share_pct"),
        harness_rss_mib=row.get("harness_peak_rss_mib"),
        load=[round(x, 2) for x in os.getloadavg()])
    return row


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _uses_helm(repo: Path) -> bool:
    """Does the drill of `repo` (its only cluster) meet HelmReleases? As preflight finds out."""
    from harness.config import Config
    from harness.gitops.model import analyze
    from harness.gitops.preflight import default_cluster
    from harness.gitserver import resolve_revision
    from harness.tools import ensure_tools

    rev = resolve_revision(repo, "HEAD")
    kustomize = ensure_tools(Config.from_env(), ["kustomize"])["kustomize"].path
    return analyze(rev.path, default_cluster(rev.path), kustomize=kustomize).uses_helm


def run_bench(opts: BenchOptions, say: Callable[[str], None]) -> dict[str, Any]:
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    options = {"sizes": list(opts.sizes), "profiles": list(opts.profiles),
               "baseline": opts.baseline, "parallel": list(opts.parallel),
               "transitions": opts.transitions, "sections": list(opts.sections)}
    result: dict[str, Any] = {"schema_version": 2, "started_at": dt.datetime.now(dt.UTC)
                              .isoformat(timespec="seconds"), "machine": machine(),
                              "options": options, "activity": {"start": activity()}}
    t0 = time.monotonic()
    if "peers" in opts.sections:
        say("peers: full rebuild of the sample repo with kubectl wait and the flux CLI")
        result["peers"] = _drill(opts, "peers", opts.repo, inputs=opts.inputs, peers=True,
                                 helm=_uses_helm(opts.repo))
        result["activity"]["peers"] = activity()
    if "latency" in opts.sections:
        say(f"latency: {opts.transitions} Ready transitions")
        result["latency"] = _child(
            "harness.bench.probe", ["--transitions", str(opts.transitions), "--poll-samples",
                                    str(opts.poll_samples)],
            opts.out_dir / "latency.json", opts.extra_env, 600)
        result["activity"]["latency"] = activity()
    with tempfile.TemporaryDirectory(prefix="drdrill-bench-repos-") as tmp:
        repos = Path(tmp)
        if "scaling" in opts.sections:
            result["scaling"] = []
            for size in opts.sizes:
                for profile in opts.profiles:
                    say(f"scaling: {size} Kustomizations, {profile} profile"
                        + (" (Flux alone, then drdrill)" if opts.baseline else ""))
                    row = _scaling_row(opts, size, profile, repos)
                    row["activity"] = activity()
                    result["scaling"].append(row)
    if "parallel" in opts.sections:
        result["parallel"] = []
        one: float | None = None
        for n in opts.parallel:
            say(f"parallel: {n} drill{'s' if n > 1 else ''} at once")
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
                rows = list(pool.map(lambda i, n=n: _drill(
                    opts, f"parallel-{n}-{i}", opts.repo, inputs=opts.inputs), range(n)))
            wall = time.monotonic() - started
            leftovers = {r["run_id"]: len(run_processes()[0].get(r["run_id"], []))
                         for r in rows if "run_id" in r}
            if n == 1:
                one = wall
            failed = [r.get("error") or r.get("verdict") for r in rows
                      if r.get("verdict") != "passed"]
            result["parallel"].append({
                "drills": n, "wall_s": round(wall, 2),
                "speedup": None if one is None else round(stats.speedup(n, one, wall), 2),
                "ttr_s": [r.get("ttr_s") for r in rows], "failed": failed,
                "leftover_processes": sum(leftovers.values()),
                "clashes": len(failed) + sum(1 for v in leftovers.values() if v),
                "activity": activity()})
    for name, section in REGISTERED.items():
        if name in opts.sections:
            say(f"{name}: measuring")
            result[name] = section.measure(opts, say)
            result["activity"][name] = activity()
    result["activity"]["end"] = activity()
    result["duration_s"] = round(time.monotonic() - t0, 1)
    return result
