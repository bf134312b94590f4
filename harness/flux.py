"""Flux on a cluster: pinned CRDs, the real controllers as host processes, and the sync objects."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ProviderError
from harness.kube import apply_all, ensure_namespace, load_yaml_docs, wait_crds_established
from harness.providers import ClusterProvider, SupportsFluxInstall, SupportsHostProcesses
from harness.tools import FLUX_TOOLS, HELM_TOOLS, WATCHER_TOOLS, ResolvedTool
from harness.waits import http_ok, poll_until

log = logging.getLogger(__name__)

FLUX_NAMESPACE = "flux-system"
SYNC_NAME = "flux-system"


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


@dataclass
class FluxRuntime:
    """Installs Flux into `provider`'s cluster and runs its controllers next to it."""

    provider: ClusterProvider
    api: Any
    tools: Mapping[str, ResolvedTool]
    crds: Sequence[Path]
    settings: FluxSettings = field(default_factory=FluxSettings)
    startup_timeout_s: float = 60
    controller_flags: dict[str, list[str]] = field(default_factory=dict)

    def install(self) -> None:
        """CRDs established, namespace present, controllers healthy."""
        crd_names: list[str] = []
        docs: list[dict[str, Any]] = []
        for path in self.crds:
            for doc in load_yaml_docs(path):
                docs.append(doc)
                crd_names.append(doc["metadata"]["name"])
        apply_all(self.api, docs, source="flux CRDs")
        ensure_namespace(self.api, FLUX_NAMESPACE)
        wait_crds_established(self.api, crd_names, timeout_s=self.startup_timeout_s)
        if isinstance(self.provider, SupportsFluxInstall):
            self.controller_flags.update(self.provider.install_flux(
                self.api, self.tools, list(self.crds), self.settings))
        else:
            self._start_controllers()

    def _start_controllers(self) -> None:
        host = self.provider
        if not isinstance(host, SupportsHostProcesses):
            raise ProviderError(
                f"provider {self.provider.name!r} cannot run Flux controllers as host processes",
                fix="install Flux in-cluster for this provider (flux install)")
        missing = [t for t in FLUX_TOOLS if t not in self.tools]
        if missing:
            raise ProviderError(f"Flux controllers not resolved: {missing}",
                                fix="run `drdrill tools ensure`")
        running = {c.name for c in host.supervisor.children if c.proc.poll() is None}
        if self.controller_flags and running >= set(self.controller_flags):
            return  # bootstrap again: the controllers run already, as `flux bootstrap` leaves them
        flux_dir = host.data_dir / "flux"
        for sub in ("tmp", "artifacts"):
            (flux_dir / sub).mkdir(parents=True, exist_ok=True)
        env = {
            "KUBECONFIG": str(self.provider.kubeconfig),
            "RUNTIME_NAMESPACE": FLUX_NAMESPACE,
            "TMPDIR": str(flux_dir / "tmp"),
        }
        controllers = [c for c in (*FLUX_TOOLS, *HELM_TOOLS, *WATCHER_TOOLS) if c in self.tools]
        started: list[tuple[str, list[str], int]] = []
        for name in controllers:
            storage_dir = flux_dir / ("watcher" if name == "source-watcher" else "artifacts")
            storage_dir.mkdir(parents=True, exist_ok=True)
            storage, metrics, health = host.ports(3)
            args = controller_flags(name, self.settings, host=HostAddrs(
                storage_path=storage_dir, storage_port=storage,
                metrics_port=metrics, health_port=health))
            started.append((name, args, health))
        for name, args, _ in started:
            self.controller_flags[name] = args
            host.supervisor.start(name, [str(self.tools[name].path), *args], env=env)
        for name, _, port in started:
            poll_until(functools.partial(http_ok, f"http://127.0.0.1:{port}/readyz"),
                       timeout_s=self.startup_timeout_s, what=f"{name} /readyz",
                       abort=host.supervisor.check, interval_s=0.05)

    def describe(self) -> dict[str, Any]:
        return {
            "controllers": {n: self.tools[n].version for n in (*FLUX_TOOLS, *HELM_TOOLS,
                                                               *WATCHER_TOOLS)
                            if n in self.tools},
            "flags": self.controller_flags,
            "requeue_dependency": self.settings.requeue_dependency,
            "concurrent": self.settings.concurrent,
            "git_interval": self.settings.git_interval,
            # Not a flag: kustomize-controller polls the health of `wait`/healthChecks objects
            # every 5s (internal/controller/kustomization_controller.go), so each Kustomization
            # with wait: true costs up to 5s after its apply.
            "health_check_poll_interval": "5s (fixed in kustomize-controller)",
        }


def sync_objects(*, url: str, branch: str, path: str, settings: FluxSettings,
                 patches: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """The GitRepository + root Kustomization that `flux bootstrap` would have created."""
    git_repo = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": SYNC_NAME, "namespace": FLUX_NAMESPACE},
        "spec": {"url": url, "ref": {"branch": branch}, "interval": settings.git_interval,
                 "timeout": "60s"},
    }
    root_spec: dict[str, Any] = {
        "interval": settings.kustomization_interval,
        "path": "./" + path.strip("./") if path not in ("", ".") else "./",
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": SYNC_NAME},
        "timeout": "5m",
    }
    if patches:
        root_spec["patches"] = [dict(p) for p in patches]
    root = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": SYNC_NAME, "namespace": FLUX_NAMESPACE},
        "spec": root_spec,
    }
    return [git_repo, root]
