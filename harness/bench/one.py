"""One measured full-rebuild drill, run in its own process so its CPU seconds and peak RSS are
the harness's alone; with `--peers`, the kubectl and flux CLI waits and the independent watcher
run against the rebuilt cluster next to drdrill's own watch.

    python -m harness.bench.one --repo R --out result.json [--cluster C] [--inputs I]
        [--requeue-dependency 2s] [--concurrent 6] [--peers]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness.bench import judge, metrics, stats
from harness.bench.peers import Peer, exit_of, flux_watch_ready, kubectl_met, start_peer
from harness.config import Config
from harness.core.recorder import Drill
from harness.drill import DrillOptions, new_run_id, run_drill
from harness.errors import HarnessError
from harness.flux import FluxSettings
from harness.gc import run_processes
from harness.gitops.flux_config import FAST_REQUEUE
from harness.procs import Supervisor

HEALTH_POLL_S = 5.0
"""kustomize-controller polls the health of wait: true objects every 5 s (not a flag)."""


def _rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):  # the process may be gone already
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    """Samples the summed RSS of every process carrying this run's id, every 0.5 s."""

    def __init__(self, run_id: str) -> None:
        super().__init__(daemon=True)
        self.run_id = run_id
        self.peak_kib = 0
        self.cpu_marks: list[tuple[float, float]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.5):
            pids = run_processes()[0].get(self.run_id, [])
            self.peak_kib = max(self.peak_kib, sum(_rss_kib(p) for p in pids))
            # Scanning /proc costs CPU in this process: keep account so the harness's own
            # CPU share can be measured without the measuring.
            self.cpu_marks.append((time.monotonic(), time.thread_time()))

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds this sampler used between two monotonic instants."""
        inside = [cpu for t, cpu in self.cpu_marks if start <= t <= end]
        before = [cpu for t, cpu in self.cpu_marks if t < start]
        return (inside[-1] - (before[-1] if before else 0.0)) if inside else 0.0

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=2)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class PeerRound:
    """Starts the independent watcher when round 2's cluster answers, and the peers' waits the
    moment drdrill has applied the sync objects (where a user's CI script would start them)."""

    def __init__(self, drill: Drill, config: Config, workdir: Path, *, uses_helm: bool,
                 rnd: int = 2) -> None:
        self.drill, self.config, self.workdir, self.rnd = drill, config, workdir, rnd
        self.uses_helm = uses_helm
        # Their own run id: the peers' memory is not the cluster's, nor are they its leftovers.
        self.sup = Supervisor(f"{drill.run_id}-peers", workdir / "logs")
        self.peers: dict[str, Peer] = {}
        self.tools: dict[str, Path] = {}
        self.profile_s = 0
        """> 0: sample the components' metrics over the converge, and take a CPU profile of
        this many seconds of the controllers 10 s into it."""
        self.sampler: metrics.Sampler | None = None
        self.profiles: dict[str, str] = {}
        self._profiler: threading.Thread | None = None

    def kubeconfig(self) -> Path:
        return self.config.runs_dir / self.drill.run_id / f"round{self.rnd}" / "kubeconfig"

    def on_phase(self, event: str, record: Any) -> None:
        if event == "start:report":
            # Before teardown: a waiter that the cluster's end would stop must not count as
            # having returned.
            self.stop()
            return
        if event == "end:converge" and self.drill.round == self.rnd and self.sampler:
            self.sampler.stop()
        if self.drill.round != self.rnd or record is None or record.outcome != "passed":
            return
        env = {"KUBECONFIG": str(self.kubeconfig())}
        if event == "end:provision":
            self.sup.start("independent-watcher", [
                sys.executable, "-m", "harness.bench.watcher", str(self.kubeconfig()),
                str(self.workdir / "events.jsonl"), "--max-seconds", "900"], env=env)
        elif event == "end:bootstrap":
            if self.profile_s > 0:
                self._start_profiling()
            kubectl = str(self.tools["kubectl"])
            waits = [[kubectl, "wait", "--for=condition=Ready", "kustomizations", "--all",
                      "-A", "--timeout=600s"]]
            if self.uses_helm:
                waits.append([kubectl, "wait", "--for=condition=Ready", "helmreleases",
                              "--all", "-A", "--timeout=600s"])
            self.peers["kubectl-wait"] = start_peer(self.sup, "kubectl-wait", waits,
                                                    self.workdir / "kubectl-wait.jsonl", env)
            if "flux" in self.tools:
                flux = str(self.tools["flux"])
                self.peers["flux-watch"] = start_peer(
                    self.sup, "flux-watch", [[flux, "get", "kustomizations", "-A", "--watch"]],
                    self.workdir / "flux-watch.jsonl", env)
                self.peers["flux-poll"] = start_peer(
                    self.sup, "flux-poll", [[flux, "resume", "kustomization", "flux-system",
                                             "-n", "flux-system", "--timeout=10m"]],
                    self.workdir / "flux-poll.jsonl", env)

    def _start_profiling(self) -> None:
        from harness.kube import api_client

        self.sampler = metrics.Sampler(self.drill.run_id, api_client(self.kubeconfig()))
        self.sampler.start()

        def profile() -> None:
            time.sleep(10)
            self.profiles = metrics.cpu_profile(
                self.drill.run_id, ("kustomize-controller", "helm-controller",
                                    "source-controller"), self.profile_s,
                self.workdir / "pprof")

        self._profiler = threading.Thread(target=profile, daemon=True)
        self._profiler.start()

    def profile_result(self) -> dict[str, Any]:
        """The sampled metrics and the profiles' top functions (after the drill)."""
        if self.sampler is None:
            return {}
        self.sampler.stop()
        if self._profiler is not None:
            self._profiler.join(timeout=self.profile_s + 60)
        tops = {n: metrics.top(Path(p)) if not p.startswith("error") else p
                for n, p in self.profiles.items()}
        return {"metrics": self.sampler.summary(), "pprof": self.profiles, "pprof_top": tops}

    def stop(self) -> None:
        self.sup.stop_all(grace_s=2)


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def measure(opts: DrillOptions, *, peers: bool, workdir: Path,
            uses_helm: bool = False, profile_s: int = 0) -> dict[str, Any]:
    """Run the drill; return its figures (and the peers' next to them). `uses_helm`: the
    user's script waits for HelmReleases too (the caller knows the repo)."""
    assert opts.run_id is not None
    drill = Drill(opts.run_id)
    marks: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def on_phase(event: str, record: Any) -> None:
        marks[f"{event}:{drill.round}"] = time.monotonic()
        cpu[f"{event}:{drill.round}"] = _cpu()

    drill.listeners.append(on_phase)
    peer_round: PeerRound | None = None
    flux_error: str | None = None
    if peers:
        from harness.tools import BENCH_TOOLS, ensure_tools

        tools = ensure_tools(opts.config, ["kubectl"])
        try:
            tools.update(ensure_tools(opts.config, BENCH_TOOLS))
        except HarnessError as exc:  # without the flux CLI the table says so
            flux_error = str(exc)
        peer_round = PeerRound(drill, opts.config, workdir, uses_helm=uses_helm)
        peer_round.profile_s = profile_s
        peer_round.tools = {n: t.path for n, t in tools.items()}
        drill.listeners.append(peer_round.on_phase)
    sampler = RssSampler(opts.run_id)
    sampler.start()
    try:
        report, report_dir = run_drill(opts, drill=drill, progress=lambda line: None)
    finally:
        sampler.stop()
        if peer_round is not None:
            peer_round.stop()
    phases = {(p.name, p.round): p for p in report.phases}
    out: dict[str, Any] = {"run_id": opts.run_id, "verdict": report.verdict,
                           "error": report.error, "report": str(report_dir)}
    for key, name in (("provision_s", "provision"), ("bootstrap_s", "bootstrap"),
                      ("converge_s", "converge")):
        if (name, 2) in phases:
            out[key] = phases[(name, 2)].duration_s
    ttr = report.time_to_ready_s
    out["ttr_s"] = ttr
    last = max((o.round for o in report.objects), default=0)
    out["objects"] = sum(1 for o in report.objects if o.round == last)
    out["objects_ready"] = sum(1 for o in report.objects if o.round == last and o.ready)
    out["objects_round"] = last
    # The rebuild's recovery; a drill that never got there is measured over the round it
    # was stuck in (e.g. a converge timeout), so its watching still shows.
    rnd = 2 if ttr else max((r for r in (1, 2) if f"start:provision:{r}" in cpu
                             and f"end:converge:{r}" in cpu), default=None)
    if rnd is not None:
        start, end = marks[f"start:provision:{rnd}"], marks[f"end:converge:{rnd}"]
        spent = cpu[f"end:converge:{rnd}"] - cpu[f"start:provision:{rnd}"] - \
            sampler.cpu_between(start, end)
        if peer_round is not None and peer_round.sampler is not None:
            peer_round.sampler.stop()
            spent -= peer_round.sampler.cpu_s  # the metrics sampler is measuring, not drdrill
        out["harness_cpu_s"] = round(spent, 3)
        out["harness_cpu_share_pct"] = round(100 * spent / (end - start), 2)
        out["cpu_window"] = f"round {rnd}" + ("" if ttr else " (did not converge)")
    out["harness_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                        / 1024, 1)
    out["cluster_peak_rss_mib"] = round(sampler.peak_kib / 1024, 1)
    out["flux"] = report.settings.get("flux", {})
    out["critical_path"] = [dataclasses.asdict(h) for h in report.critical_path]
    if peer_round is not None and "start:provision:2" in marks and "end:converge:2" in marks:
        out["peers"] = _judge_peers(report, peer_round, marks)
        if flux_error:
            out["peers"]["flux_cli_error"] = flux_error
    if peer_round is not None and profile_s > 0:
        out["perf"] = peer_round.profile_result()
    return out


def _judge_peers(report: Any, peer_round: PeerRound, marks: dict[str, float]) -> dict[str, Any]:
    t0 = marks["start:provision:2"]
    done = marks["end:converge:2"]
    events = _events(peer_round.workdir / "events.jsonl")
    ready_at = judge.ready_times(events, report.revision)
    drdrill_seen = {f"{o.kind}/{o.namespace}/{o.name}": t0 + o.ready_after_s
                    for o in report.objects if o.round == 2 and o.ready_after_s is not None}
    lags = [drdrill_seen[r] - t for r, t in ready_at.items()
            if t is not None and r in drdrill_seen]
    last_ready = max((t for t in ready_at.values() if t is not None), default=None)
    out: dict[str, Any] = {
        "objects_seen_by_independent_watcher": len(ready_at),
        "drdrill": {"returned_after_s": round(done - t0, 3),
                    # Also any object drdrill converged without having seen ready itself.
                    "too_early": sorted(set(stats.too_early(ready_at, done))
                                        | {r for r in ready_at if r not in drdrill_seen}),
                    "detection": stats.summary(lags),
                    "after_last_ready_s": None if last_ready is None else
                    round(done - last_ready, 3)},
    }
    for name, peer in peer_round.peers.items():
        stamps = peer.stamps()
        ended = exit_of(stamps)
        row: dict[str, Any] = {"argv": [s["start"] for s in stamps if "start" in s]}
        if ended is not None:
            row.update(returned_after_s=round(ended[0] - t0, 3), rc=ended[1],
                       too_early=stats.too_early(ready_at, ended[0]))
        else:
            row.update(returned_after_s=None, rc=None, too_early=None,
                       note="still waiting when drdrill's drill ended (stopped)")
        if name == "kubectl-wait":
            met = kubectl_met(stamps)
            row["detection"] = stats.summary([
                met[r.rsplit("/", 1)[1]] - t for r, t in ready_at.items()
                if t is not None and r.startswith(("Kustomization/", "HelmRelease/"))
                and r.rsplit("/", 1)[1] in met])
        if name == "flux-watch":
            shown = flux_watch_ready(stamps, report.revision)
            row["detection"] = stats.summary([
                shown[r.split("/", 1)[1]] - t for r, t in ready_at.items()
                if t is not None and r.startswith("Kustomization/")
                and r.split("/", 1)[1] in shown])
        out[name] = row
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.bench.one", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--cluster")
    p.add_argument("--inputs", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--requeue-dependency", default=FAST_REQUEUE)
    p.add_argument("--concurrent", type=int, default=6)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--peers", action="store_true")
    p.add_argument("--helm", action="store_true", help="the repo defines HelmReleases")
    p.add_argument("--report-root", type=Path, required=True)
    p.add_argument("--profile", type=int, default=0, metavar="SECONDS",
                   help="sample the components' metrics and take CPU profiles this long")
    args = p.parse_args(argv)
    run_id = new_run_id("bench")
    workdir = args.out.parent / f"{args.out.stem}-work"
    workdir.mkdir(parents=True, exist_ok=True)
    opts = DrillOptions(repo=args.repo, cluster=args.cluster, inputs=args.inputs, run_id=run_id,
                        config=Config.from_env(), report_dir=args.report_root / run_id,
                        converge_timeout_s=args.timeout,
                        flux=FluxSettings(requeue_dependency=args.requeue_dependency,
                                          concurrent=args.concurrent))
    result = measure(opts, peers=args.peers, workdir=workdir, uses_helm=args.helm,
                     profile_s=args.profile)
    result["load_avg_after"] = list(os.getloadavg())
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0 if result["verdict"] == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
