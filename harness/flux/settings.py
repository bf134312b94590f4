"""The ONE builder of a Flux controller's flags, for a host process and for a pod. The
settings themselves come from the repo (harness.gitops.flux_config.FluxSettings); this module
adds only what the drill must own: addresses, storage, leader election and the log format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.gitops.flux_config import FluxSettings

NOTIFICATION = "notification-controller"
STORAGE_CONTROLLERS = ("source-controller", "source-watcher")
"""Both serve artifacts over HTTP."""
EVENTS_POD_URL = "http://notification-controller.flux-system.svc.cluster.local./"


@dataclass(frozen=True)
class HostAddrs:
    """Where a controller run as a host process listens (loopback ports the provider gave)."""

    storage_path: Path
    storage_port: int
    metrics_port: int
    health_port: int
    events_url: str | None = None
    """notification-controller's event endpoint, when it runs (other controllers post there)."""
    receiver_port: int | None = None
    """notification-controller's webhook receiver (its own)."""


def controller_flags(name: str, settings: FluxSettings, *,
                     host: HostAddrs | None = None, events: bool = False) -> list[str]:
    """A controller's flags as `flux install` sets them, plus the repo's settings: for a host
    process (`host`: loopback addresses, no leader election) or for an in-cluster pod
    (`host=None`: the stock ports, storage in the pod, leader election). `events`: the pod's
    notification-controller runs, so events go to its Service."""
    flags = ["--log-encoding=json",
             f"--enable-leader-election={'false' if host else 'true'}"]
    repo = settings.flags(name)
    names = {f.split("=", 1)[0] for f in repo}
    if "--watch-all-namespaces" not in names:
        flags.insert(0, "--watch-all-namespaces=true")
    if "--log-level" not in names:
        flags.insert(1, "--log-level=info")
    if name in STORAGE_CONTROLLERS:
        if host is None:
            flags += ["--storage-path=/data",
                      f"--storage-adv-addr={name}.$(RUNTIME_NAMESPACE).svc.cluster.local."]
        else:
            flags += [f"--storage-path={host.storage_path}",
                      f"--storage-addr=127.0.0.1:{host.storage_port}",
                      f"--storage-adv-addr=127.0.0.1:{host.storage_port}"]
    if name == "image-reflector-controller":
        flags.append(f"--storage-path={host.storage_path if host else '/data'}")
    if name == "kustomize-controller" and "--no-remote-bases" not in names:
        flags.append("--no-remote-bases=true")  # a drill renders from the commit under test only
    if name == NOTIFICATION:
        if host is not None:
            assert host.events_url is not None and host.receiver_port is not None
            flags += [f"--events-addr={host.events_url.removeprefix('http://').rstrip('/')}",
                      f"--receiverAddr=127.0.0.1:{host.receiver_port}"]
    elif host is not None and host.events_url:
        flags.append(f"--events-addr={host.events_url}")
    elif host is None and events:
        flags.append(f"--events-addr={EVENTS_POD_URL}")
    if host is not None:
        flags += [f"--metrics-addr=127.0.0.1:{host.metrics_port}",
                  f"--health-addr=127.0.0.1:{host.health_port}"]
    return flags + repo


__all__ = ["FluxSettings", "HostAddrs", "controller_flags"]
