"""Flux alone: the baseline drdrill's time-to-ready is compared with. The same embedded cluster,
the same repo served the same way, the same pinned controllers with the same flags — installed
and synced the way a user's script would, without drdrill's engine (no phases, no converge):
`kubectl apply` the CRDs, run the controllers, `kubectl apply` the sync objects. Readiness is
timed by the independent watcher's events and judged by harness.bench.judge.

    python -m harness.bench.alone --repo R --cluster clusters/x --expect N --out result.json
        [--requeue-dependency 30s] [--concurrent 4] [--helm] [--timeout 900]

TTR runs from the start of the cluster's creation to the judge's last Ready event, as
drdrill's does from the start of its rebuild's provision phase to converged.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from harness.bench import judge
from harness.command import Command, run
from harness.config import Config
from harness.errors import ProviderError
from harness.flux import FluxSettings, HostAddrs, controller_flags, hops
from harness.gc import write_owner
from harness.gitops.flux_config import FAST_REQUEUE
from harness.gitserver import GitServer, resolve_revision
from harness.procs import Supervisor
from harness.providers import ProviderContext, SupportsHostProcesses, get_provider
from harness.tools import EMBEDDED_TOOLS, FLUX_TOOLS, HELM_TOOLS, ensure_tools, flux_crds
from harness.waits import http_ok, poll_until

POLL_S = 0.2


def sync_manifest(url: str, branch: str, path: str, settings: FluxSettings) -> str:
    """What `flux bootstrap` writes into gotk-sync.yaml, at the intervals the drill uses."""
    docs = [
        {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
         "metadata": {"name": "flux-system", "namespace": "flux-system"},
         "spec": {"interval": settings.git_interval, "ref": {"branch": branch}, "url": url}},
        {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
         "metadata": {"name": "flux-system", "namespace": "flux-system"},
         "spec": {"interval": settings.kustomization_interval, "path": f"./{path.strip('./')}",
                  "prune": True,
                  "sourceRef": {"kind": "GitRepository", "name": "flux-system"}}},
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


class EventLog:
    """The watcher's JSON lines, read as they grow."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self._offset = 0
        self._partial = ""

    def read(self) -> list[dict[str, Any]]:
        if self.path.exists():
            with self.path.open(encoding="utf-8") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
                self._offset = fh.tell()
            lines = (self._partial + chunk).split("\n")
            self._partial = lines.pop()
            for line in lines:
                with contextlib.suppress(ValueError):
                    self.events.append(json.loads(line))
        return self.events


def _kubectl(kubectl: Path, kubeconfig: Path, *args: str, timeout_s: float = 120) -> None:
    run(Command.of(str(kubectl), f"--kubeconfig={kubeconfig}", *args).with_timeout(timeout_s))


def measure(repo: Path, cluster_path: str, expect: int, settings: FluxSettings, *,
            helm: bool, timeout_s: float, workdir: Path) -> dict[str, Any]:
    config = Config.from_env()
    tools = ensure_tools(config, (*EMBEDDED_TOOLS, *FLUX_TOOLS, *(HELM_TOOLS if helm else ()),
                                  "kubectl"))
    crds = flux_crds(config)
    rev = resolve_revision(repo, "HEAD")
    run_id = f"alone-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}"
    rundir = config.runs_dir / run_id
    write_owner(rundir)  # gc can tell a live baseline from a killed one's leftovers
    out: dict[str, Any] = {"run_id": run_id, "commit": rev.sha, "expect": expect}
    kubectl = tools["kubectl"].path
    peers = Supervisor(f"{run_id}-peers", workdir / "logs")
    with GitServer(rev, rundir / "git") as git:
        provider = get_provider("embedded")(ProviderContext(
            run_id=run_id, cluster_name="alone", workdir=rundir / "cluster", config=config,
            tools=tools))
        if not isinstance(provider, SupportsHostProcesses):
            raise ProviderError("Flux alone runs its controllers as host processes: the "
                                "embedded provider does, this one does not")
        try:
            t0 = time.monotonic()
            provider.create()
            kc = provider.kubeconfig
            out["provision_s"] = round(time.monotonic() - t0, 3)
            events_path = workdir / "alone-events.jsonl"
            peers.start("independent-watcher", [
                sys.executable, "-m", "harness.bench.watcher", str(kc), str(events_path),
                "--max-seconds", str(timeout_s + 120)], env={"KUBECONFIG": str(kc)})
            t_install = time.monotonic()
            for crd in crds:
                _kubectl(kubectl, kc, "apply", "--server-side", "-f", str(crd))
            _kubectl(kubectl, kc, "create", "namespace", "flux-system")
            _kubectl(kubectl, kc, "wait", "--for=condition=Established", "crd", "--all",
                     "--timeout=60s")
            out["flags"] = _start_controllers(provider, tools, settings, helm=helm)
            out["install_s"] = round(time.monotonic() - t_install, 3)
            sync = rundir / "gotk-sync.yaml"
            sync.write_text(sync_manifest(git.url, rev.branch, cluster_path, settings),
                            encoding="utf-8")
            t_sync = time.monotonic()
            _kubectl(kubectl, kc, "apply", "-f", str(sync))
            log = EventLog(events_path)
            deadline = t_sync + timeout_s
            ready_at: dict[str, float | None] = {}
            polls = 0
            while time.monotonic() < deadline:
                polls += 1
                ready_at = judge.ready_times(log.read(), rev.sha)
                last = judge.last_ready(ready_at)
                if last is not None and len(ready_at) >= expect:
                    out.update(verdict="passed", ttr_s=round(last - t0, 3),
                               sync_to_ready_s=round(last - t_sync, 3))
                    break
                if polls % 25 == 0 and not provider.is_up():
                    out.update(verdict="broken", error="the embedded cluster stopped")
                    break
                time.sleep(POLL_S)
            else:
                pending = sorted(r for r, t in ready_at.items() if t is None)
                out.update(verdict="timeout", error=f"{len(pending)} of {len(ready_at)} "
                           f"objects (expected {expect}) not ready after {timeout_s:.0f}s: "
                           f"{', '.join(pending[:10])}")
            out["hops"] = logged_hops(provider.supervisor.log_dir, _controllers(helm),
                                      log.events, ready_at)
            out["objects"] = len(ready_at)
            out["events"] = len(log.events)
            out["ready_at_s"] = {r: None if t is None else round(t - t0, 3)
                                 for r, t in ready_at.items()}
        finally:
            peers.stop_all(grace_s=2)
            if out.get("verdict") != "passed":
                with contextlib.suppress(Exception):  # diagnostics only; never hide the error
                    provider.dump_logs(workdir / "cluster-logs")
            provider.delete()
    shutil.rmtree(rundir, ignore_errors=True)
    return out


def logged_hops(log_dir: Path, controllers: tuple[str, ...], events: list[dict[str, Any]],
                ready_at: dict[str, float | None]) -> dict[str, dict[str, Any]]:
    """Every Kustomization's successful reconcile split as its controller logged it, the
    requeue delay counted from its last dependency's Ready event (as judged)."""
    lines: list[hops.LogLine] = []
    for name in controllers:
        with contextlib.suppress(OSError):
            lines += hops.parse((log_dir / f"{name}.log").read_text(
                encoding="utf-8", errors="replace").splitlines())
    by_ref: dict[str, list[hops.LogLine]] = {}
    for line in lines:
        by_ref.setdefault(line.ref, []).append(line)
    deps: dict[str, list[str]] = {}
    for ev in events:
        obj = ev.get("object") or {}
        ns = (obj.get("metadata") or {}).get("namespace")
        deps[str(ev["ref"])] = [f"Kustomization/{d.get('namespace') or ns}/{d.get('name')}"
                                for d in (obj.get("spec") or {}).get("dependsOn") or []]
    wall = time.time() - time.monotonic()  # the watcher's times are CLOCK_MONOTONIC
    first = min((float(e["t"]) for e in events), default=time.monotonic())
    out: dict[str, dict[str, Any]] = {}
    for ref in ready_at:
        if not ref.startswith("Kustomization/"):
            continue
        dep_ready = [ready_at.get(d) for d in deps.get(ref, [])]
        dep_t = max((t for t in dep_ready if t is not None), default=None)
        got = hops.split(by_ref.get(ref, []), ref, not_before=wall + first - 1.0,
                         dependency_ready=None if dep_t is None else wall + dep_t)
        if got is not None:
            out[ref] = got.to_dict()
    return out


def _controllers(helm: bool) -> tuple[str, ...]:
    return (*FLUX_TOOLS, *(HELM_TOOLS if helm else ()))


def _start_controllers(provider: Any, tools: Any, settings: FluxSettings, *,
                       helm: bool) -> dict[str, list[str]]:
    """Run the controllers as `flux install` would, as host processes next to the cluster:
    the flags come from the one flag builder, so they are drdrill's to the letter."""
    flux_dir = provider.data_dir / "flux"
    (flux_dir / "tmp").mkdir(parents=True, exist_ok=True)
    env = {"KUBECONFIG": str(provider.kubeconfig), "RUNTIME_NAMESPACE": "flux-system",
           "TMPDIR": str(flux_dir / "tmp")}
    health: list[tuple[str, int]] = []
    flags: dict[str, list[str]] = {}
    for name in _controllers(helm):
        storage_dir = flux_dir / "artifacts"
        storage_dir.mkdir(parents=True, exist_ok=True)
        storage, metrics, health_port = provider.ports(3)
        args = controller_flags(name, settings, host=HostAddrs(storage_dir, storage, metrics,
                                                               health_port))
        provider.supervisor.start(name, [str(tools[name].path), *args], env=env)
        health.append((name, health_port))
        flags[name] = args
    for name, port in health:
        poll_until(functools.partial(http_ok, f"http://127.0.0.1:{port}/readyz"),
                   timeout_s=60, what=f"{name} /readyz", abort=provider.supervisor.check,
                   interval_s=0.05)
    return flags


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.bench.alone", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--cluster", required=True, help="the cluster path the root syncs")
    p.add_argument("--expect", type=int, required=True,
                   help="Flux objects the repo makes (sync objects included)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--requeue-dependency", default=FAST_REQUEUE)
    p.add_argument("--concurrent", type=int, default=6)
    p.add_argument("--helm", action="store_true")
    p.add_argument("--timeout", type=float, default=900.0)
    args = p.parse_args(argv)
    workdir = args.out.parent / f"{args.out.stem}-work"
    workdir.mkdir(parents=True, exist_ok=True)
    settings = FluxSettings(requeue_dependency=args.requeue_dependency,
                            concurrent=args.concurrent)
    result = measure(args.repo, args.cluster, args.expect, settings, helm=args.helm,
                     timeout_s=args.timeout, workdir=workdir)
    result["load_avg_after"] = list(os.getloadavg())
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0 if result.get("verdict") == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
