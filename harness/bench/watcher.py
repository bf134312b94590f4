"""The benchmark's second, independent watcher: its own process and connection, writing every
watch event of the Flux kinds with its arrival time (CLOCK_MONOTONIC, which every process on
the machine shares) as one JSON line. Readiness transitions are judged from these lines, so
drdrill is measured against the apiserver's events, not against itself.

    python -m harness.bench.watcher KUBECONFIG OUT --kinds kustomizations,... --max-seconds S
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from harness.gitops.kinds import KindSpec, by_kind

# The gitops kinds table (API coordinates only), not converge's: the judge of these events
# must share nothing with drdrill's own watch.
KINDS = {k.plural: k for k in map(by_kind, ("Kustomization", "GitRepository", "HelmRelease"))}


def trimmed(obj: dict[str, Any]) -> dict[str, Any]:
    """The fields Flux's documented readiness reads (see harness.bench.judge); the rest is
    dropped to keep the file small. Of a HelmRelease's history only the newest entry."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    kept = {k: status.get(k) for k in ("conditions", "observedGeneration",
                                       "lastAppliedRevision", "lastAttemptedRevision",
                                       "artifact") if k in status}
    if status.get("history"):
        kept["history"] = [{k: v for k, v in (status["history"][0] or {}).items()
                            if k in ("chartVersion", "status", "version")}]
    return {
        "metadata": {k: meta.get(k) for k in ("name", "namespace", "generation",
                                              "resourceVersion", "deletionTimestamp")},
        "spec": {k: (obj.get("spec") or {}).get(k) for k in ("suspend", "dependsOn")},
        "status": kept,
    }


def watch_kind(api: Any, kind: KindSpec, out: TextIO, lock: threading.Lock,
               stop: threading.Event, deadline: float) -> None:
    """List then watch one kind until `stop` or `deadline`, resuming after drops and 410s; a
    kind whose CRD is not installed yet is retried every 50 ms."""
    from kubernetes import watch
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    client = CustomObjectsApi(api)
    rv: str | None = None

    def emit(etype: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        line = json.dumps({"t": time.monotonic(), "type": etype, "kind": kind.kind,
                           "ref": f"{kind.kind}/{meta.get('namespace')}/{meta.get('name')}",
                           "object": trimmed(obj)})
        with lock:
            out.write(line + "\n")
            out.flush()

    while not stop.is_set() and time.monotonic() < deadline:
        try:
            if rv is None:
                listing = client.list_cluster_custom_object(kind.group, kind.version, kind.plural)
                for item in listing.get("items", []):
                    emit("ADDED", item)
                rv = listing["metadata"]["resourceVersion"]
            w = watch.Watch()
            for event in w.stream(client.list_cluster_custom_object, kind.group, kind.version,
                                  kind.plural, resource_version=rv, timeout_seconds=5,
                                  allow_watch_bookmarks=True):
                if stop.is_set():
                    w.stop()
                    return
                obj = event["object"]
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    emit(event["type"], obj)
        except ApiException as exc:
            if exc.status == 410:
                rv = None
            stop.wait(0.05)
        except (HTTPError, OSError, ValueError):
            stop.wait(0.05)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.bench.watcher", description=__doc__)
    p.add_argument("kubeconfig", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--kinds", default="kustomizations,gitrepositories,helmreleases")
    p.add_argument("--max-seconds", type=float, default=1800.0)
    args = p.parse_args(argv)
    from harness.kube import api_client

    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    deadline = time.monotonic() + args.max_seconds
    lock = threading.Lock()
    with args.out.open("a", encoding="utf-8") as out:
        threads = []
        for plural in args.kinds.split(","):
            # One client per kind: each watch has its own connection, as drdrill's do.
            t = threading.Thread(target=watch_kind, args=(
                api_client(args.kubeconfig), KINDS[plural], out, lock, stop, deadline),
                daemon=True)
            t.start()
            threads.append(t)
        while not stop.wait(0.2) and time.monotonic() < deadline:
            pass
        stop.set()
        for t in threads:
            t.join(timeout=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
