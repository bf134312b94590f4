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
from harness.command import Command, run
from harness.errors import CommandError
from harness.gc import run_processes
from harness.gitops.flux_config import FAST_REQUEUE

SECTIONS = ("peers", "latency", "scaling", "profiles", "parallel")
BENCH_FLUX = {"requeue_dependency": FAST_REQUEUE, "concurrent": 6}
"""The benchmark's drill tuning (`--flux-profile fast` and a little more concurrency)."""
FLUX_DEFAULTS = {"requeue_dependency": "30s", "concurrent": 4}
"""kustomize-controller's own defaults (--requeue-dependency=30s, --concurrent=4)."""
BUSY = ("go", "compile", "link", "asm", "cgo", "etcd", "kube-apiserver", "pytest", "kwok",
        "kustomize-contr", "source-control", "helm-controller")


@dataclass(frozen=True)
class BenchOptions:
    repo: Path
    inputs: Path | None
    out_dir: Path
    sections: tuple[str, ...] = SECTIONS
    sizes: tuple[int, ...] = (10, 50, 200, 500)
    max_depth: int = 5
    helm_every: int = 10
    """One HelmRelease per this many Kustomizations, at least one (0: none)."""
    profile_size: int = 10
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
           flux: dict[str, Any] | None = None) -> dict[str, Any]:
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
    settings = flux or {}
    args += ["--requeue-dependency", str(settings.get("requeue_dependency",
                                                      BENCH_FLUX["requeue_dependency"])),
             "--concurrent", str(settings.get("concurrent", BENCH_FLUX["concurrent"]))]
    return _child("harness.bench.one", args, opts.out_dir / f"{name}.json", opts.extra_env,
                  opts.timeout_s + 300)


def _scaling_row(opts: BenchOptions, size: int, name: str, repos: Path,
                 flux: dict[str, Any] | None = None) -> dict[str, Any]:
    helm = max(1, size // opts.helm_every) if opts.helm_every else 0
    plan = genrepo.Plan(size, opts.max_depth, helm)
    repo = repos / name
    if not repo.exists():
        genrepo.write_repo(repo, plan)
    row = _drill(opts, name, repo, cluster=genrepo.CLUSTER, flux=flux, peers=True,
                 helm=plan.helmreleases > 0)
    requeue = str((flux or {}).get("requeue_dependency", BENCH_FLUX["requeue_dependency"]))
    # wait: true hops pay kustomize-controller's 5 s health poll only for objects that are not
    # Current at its first, immediate poll; the generated ConfigMaps always are.
    floor = stats.chain_floor(plan.depth, requeue=requeue, health_poll_s=5.0, wait=False)
    row.update(size=size, helmreleases=plan.helmreleases, depth=plan.depth,
               requeue_dependency=requeue, floor_flux_s=floor.flux_s,
               floor_hops=floor.dependency_hops, floor_waited=floor.waited_hops)
    if row.get("provision_s") is not None and row.get("bootstrap_s") is not None:
        row["floor_s"] = round(row["provision_s"] + row["bootstrap_s"] + floor.flux_s, 3)
        row["ttr_over_floor"] = stats.ratio(row.get("ttr_s"), row["floor_s"])
    return row


def _uses_helm(repo: Path) -> bool:
    """Does the drill of `repo` (its only cluster) meet HelmReleases? As preflight finds out."""
    from harness.config import Config
    from harness.gitops.model import analyze
    from harness.gitserver import resolve_revision
    from harness.runner import default_cluster
    from harness.tools import ensure_tools

    rev = resolve_revision(repo, "HEAD")
    kustomize = ensure_tools(Config.from_env(), ["kustomize"])["kustomize"].path
    return analyze(rev.path, default_cluster(rev.path), kustomize=kustomize).uses_helm


def run_bench(opts: BenchOptions, say: Callable[[str], None]) -> dict[str, Any]:
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"schema_version": 1, "started_at": dt.datetime.now(dt.UTC)
                              .isoformat(timespec="seconds"), "machine": machine(),
                              "options": {"sizes": list(opts.sizes), "parallel":
                                          list(opts.parallel), "transitions": opts.transitions,
                                          "sections": list(opts.sections)},
                              "activity": {"start": activity()}}
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
                say(f"scaling: {size} Kustomizations")
                row = _scaling_row(opts, size, f"scale-{size}", repos)
                row["activity"] = activity()
                result["scaling"].append(row)
        if "profiles" in opts.sections:
            size = opts.profile_size
            say(f"profiles: {size} Kustomizations with Flux's defaults vs the drill profile")
            result["profiles"] = {
                "drill": next((r for r in result.get("scaling", []) if r.get("size") == size),
                              None) or _scaling_row(opts, size, f"scale-{size}", repos),
                "flux-defaults": _scaling_row(opts, size, f"defaults-{size}", repos,
                                              FLUX_DEFAULTS)}
            result["profiles"]["flux-defaults"]["activity"] = activity()
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
    result["activity"]["end"] = activity()
    result["duration_s"] = round(time.monotonic() - t0, 1)
    return result
