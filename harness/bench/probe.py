"""Detection latency: status patches flip Kustomizations to Ready one at a time on a cluster
with no Flux controllers (nothing else moves them); the independent watcher's event time is
the transition, and drdrill's watch, `kubectl wait`, `flux get --watch` and the flux CLI's
2 s poll are each timed against it.

    python -m harness.bench.probe --out result.json [--transitions 50] [--poll-samples 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from harness.bench import judge, stats
from harness.bench.one import _events
from harness.bench.peers import FLUX_POLL_S, exit_of, flux_watch_ready, kubectl_met, start_peer
from harness.config import Config
from harness.drill import new_run_id
from harness.procs import Supervisor

REVISION = "main@sha1:" + "0" * 40
NAMESPACE = "flux-system"


def _patch_ready(api: Any, name: str) -> None:
    from harness.kube import request

    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    request(api, "PATCH", f"/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/{NAMESPACE}/"
            f"kustomizations/{name}/status", content_type="application/merge-patch+json",
            body={"status": {"observedGeneration": 1, "lastAppliedRevision": REVISION,
                             "conditions": [{"type": "Ready", "status": "True",
                                             "reason": "ReconciliationSucceeded",
                                             "message": "bench", "observedGeneration": 1,
                                             "lastTransitionTime": stamp}]}})


def probe(config: Config, workdir: Path, *, transitions: int = 50, poll_samples: int = 10,
          spacing_s: float = 0.2) -> dict[str, Any]:
    from harness.converge import Converger
    from harness.kube import (
        api_client,
        apply_all,
        ensure_namespace,
        load_yaml_docs,
        wait_crds_established,
    )
    from harness.providers import ProviderContext
    from harness.providers.embedded import EmbeddedProvider
    from harness.tools import BENCH_TOOLS, EMBEDDED_TOOLS, ensure_tools, flux_crds

    tools = ensure_tools(config, [*EMBEDDED_TOOLS, "kubectl"])
    flux: Path | None = None
    try:
        flux = ensure_tools(config, BENCH_TOOLS)["flux"].path
    except Exception:  # noqa: BLE001 - without the flux CLI the table says "not built"
        flux = None
    run_id = new_run_id("latency")
    names = [f"probe-{i:03d}" for i in range(transitions)]
    poll_names = names[:poll_samples] if flux else []
    result: dict[str, Any] = {"transitions": transitions, "spacing_s": spacing_s}
    with tempfile.TemporaryDirectory(prefix="drdrill-bench-") as tmp, EmbeddedProvider(
            ProviderContext(run_id, "lat", Path(tmp), config, tools)) as cluster:
        api = api_client(cluster.kubeconfig)
        sup = Supervisor(run_id, workdir / "logs")
        env = {"KUBECONFIG": str(cluster.kubeconfig)}
        try:
            crds = [d for p in flux_crds(config) if "kustomization" in p.name
                    for d in load_yaml_docs(p)]
            apply_all(api, crds)
            wait_crds_established(api, [c["metadata"]["name"] for c in crds], timeout_s=30)
            ensure_namespace(api, NAMESPACE)
            apply_all(api, [{
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                "metadata": {"name": n, "namespace": NAMESPACE},
                # suspend: false spelled out, so `flux resume` patches nothing.
                "spec": {"interval": "1h", "path": "./", "prune": False, "suspend": False,
                         "sourceRef": {"kind": "GitRepository", "name": "none"}}}
                for n in names])
            events = workdir / "probe-events.jsonl"
            sup.start("independent-watcher", [
                sys.executable, "-m", "harness.bench.watcher", str(cluster.kubeconfig),
                str(events), "--kinds", "kustomizations", "--max-seconds", "600"], env=env)
            kubectl = start_peer(sup, "kubectl-wait", [[
                str(tools["kubectl"].path), "wait", "--for=condition=Ready", "kustomizations",
                "--all", "-n", NAMESPACE, "--timeout=300s"]], workdir / "probe-kubectl.jsonl",
                env)
            watch = start_peer(sup, "flux-watch", [[str(flux), "get", "kustomizations", "-A",
                                                    "--watch"]],
                               workdir / "probe-flux-watch.jsonl", env) if flux else None
            polls = {n: start_peer(sup, f"flux-poll-{n}", [[
                str(flux), "resume", "kustomization", n, "-n", NAMESPACE, "--timeout=300s"]],
                workdir / f"probe-flux-poll-{n}.jsonl", env) for n in poll_names}
            seen: dict[str, float] = {}

            def mark(_done: int, _total: int, obj: Any) -> None:
                seen.setdefault(obj.name, time.monotonic())

            converger = Converger(api_client(cluster.kubeconfig), REVISION,
                                  {f"Kustomization/{NAMESPACE}/{n}" for n in names},
                                  start=time.monotonic(), on_change=mark)
            watcher = threading.Thread(target=converger.run, kwargs={"timeout_s": 300},
                                       daemon=True)
            watcher.start()
            # Every waiter must be waiting before the first patch, or a slow start would be
            # timed as a quick detection: the flux waits say so, the rest get a moment more.
            ready_by = time.monotonic() + 60
            while time.monotonic() < ready_by and not (
                    all(any("waiting for" in str(x.get("line", "")) for x in p.stamps())
                        for p in polls.values())
                    and (watch is None or any("line" in x for x in watch.stamps()))):
                time.sleep(0.1)
            time.sleep(2.0)
            patched: dict[str, float] = {}
            for n in names:
                time.sleep(spacing_s)
                patched[n] = time.monotonic()
                _patch_ready(api, n)
            watcher.join(timeout=30)
            deadline = time.monotonic() + 3 * FLUX_POLL_S + 5
            while time.monotonic() < deadline and not all(
                    exit_of(p.stamps()) for p in [kubectl, *polls.values()]):
                time.sleep(0.2)
        finally:
            sup.stop_all(grace_s=2)
            api.close()
    ready_at = {r.rsplit("/", 1)[1]: t for r, t in
                judge.ready_times(_events(events), REVISION).items() if t is not None}

    def lag(got: dict[str, float]) -> list[float]:
        return [got[n] - ready_at[n] for n in names if n in got and n in ready_at]

    result["drdrill"] = stats.summary(lag(seen))
    result["api_to_event"] = stats.summary([ready_at[n] - patched[n] for n in names
                                            if n in ready_at and n in patched])
    result["kubectl-wait"] = stats.summary(lag(kubectl_met(kubectl.stamps())))
    if watch is not None:
        result["flux-watch"] = stats.summary(lag({
            k.split("/", 1)[1]: v for k, v in
            flux_watch_ready(watch.stamps(), REVISION).items()}))
    if polls:
        returned = {n: e[0] for n, p in polls.items() if (e := exit_of(p.stamps())) and e[1] == 0}
        result["flux-poll"] = {**stats.summary(lag(returned)), "poll_interval_s": FLUX_POLL_S}
    result["missing"] = {"independent": len(names) - len(ready_at),
                         "drdrill": len(names) - len(seen)}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.bench.probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--transitions", type=int, default=50)
    p.add_argument("--poll-samples", type=int, default=10)
    args = p.parse_args(argv)
    workdir = args.out.parent / f"{args.out.stem}-work"
    workdir.mkdir(parents=True, exist_ok=True)
    result = probe(Config.from_env(), workdir, transitions=args.transitions,
                   poll_samples=args.poll_samples)
    result["load_avg_after"] = list(os.getloadavg())
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
