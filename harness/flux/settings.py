"""Flux controller settings and the ONE builder of their flags (host process or pod)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class FluxSettings:
    """Controller settings a drill runs with; they go into every report so runs compare.

    The defaults are drill-tuned: Flux's stock `--requeue-dependency` is 30s, which would
    dominate the time-to-ready of a small repo without saying anything about recovery.
    """

    requeue_dependency: str = "2s"
    concurrent: int = 6
    git_interval: str = "1m"
    kustomization_interval: str = "10m"
    extra_flags: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def flags(self, controller: str) -> list[str]:
        common = [f"--concurrent={self.concurrent}",
                  f"--requeue-dependency={self.requeue_dependency}"]
        return common + list(self.extra_flags.get(controller, ()))


@dataclass(frozen=True)
class HostAddrs:
    """Where a controller run as a host process listens (loopback ports the provider gave)."""

    storage_path: Path
    storage_port: int
    metrics_port: int
    health_port: int


def controller_flags(name: str, settings: FluxSettings, *,
                     host: HostAddrs | None = None) -> list[str]:
    """The ONE builder of a Flux controller's flags, as `flux install` sets them plus the
    drill's settings: for a host process (`host`: loopback addresses, no leader election) or
    for an in-cluster pod (`host=None`: the stock ports, storage in the pod, leader election)."""
    flags = ["--watch-all-namespaces=true", "--log-level=info", "--log-encoding=json",
             f"--enable-leader-election={'false' if host else 'true'}"]
    if name in ("source-controller", "source-watcher"):  # both serve artifacts
        if host is None:
            flags += ["--storage-path=/data",
                      f"--storage-adv-addr={name}.$(RUNTIME_NAMESPACE).svc.cluster.local."]
        else:
            flags += [f"--storage-path={host.storage_path}",
                      f"--storage-addr=127.0.0.1:{host.storage_port}",
                      f"--storage-adv-addr=127.0.0.1:{host.storage_port}"]
    if name == "kustomize-controller":
        flags.append("--no-remote-bases=true")  # a drill renders from the commit under test only
    if host is not None:
        flags += [f"--metrics-addr=127.0.0.1:{host.metrics_port}",
                  f"--health-addr=127.0.0.1:{host.health_port}"]
    return flags + settings.flags(name)
