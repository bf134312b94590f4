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
        storage, s_metrics, s_health, k_metrics, k_health = host.ports(5)
        source_args = [
            "--watch-all-namespaces=true",
            f"--storage-path={flux_dir / 'artifacts'}",
            f"--storage-addr=127.0.0.1:{storage}",
            f"--storage-adv-addr=127.0.0.1:{storage}",
            f"--metrics-addr=127.0.0.1:{s_metrics}",
            f"--health-addr=127.0.0.1:{s_health}",
            "--enable-leader-election=false",
            "--log-encoding=json",
            *self.settings.flags("source-controller"),
        ]
        kustomize_args = [
            "--watch-all-namespaces=true",
            f"--metrics-addr=127.0.0.1:{k_metrics}",
            f"--health-addr=127.0.0.1:{k_health}",
            "--enable-leader-election=false",
            "--log-encoding=json",
            "--no-remote-bases=true",
            *self.settings.flags("kustomize-controller"),
        ]
        controllers = [("source-controller", source_args, s_health),
                       ("kustomize-controller", kustomize_args, k_health)]
        if HELM_TOOLS[0] in self.tools:  # only resolved for repos with HelmReleases
            h_metrics, h_health = host.ports(2)
            controllers.append(("helm-controller", [
                "--watch-all-namespaces=true",
                f"--metrics-addr=127.0.0.1:{h_metrics}",
                f"--health-addr=127.0.0.1:{h_health}",
                "--enable-leader-election=false",
                "--log-encoding=json",
                *self.settings.flags("helm-controller"),
            ], h_health))
        if WATCHER_TOOLS[0] in self.tools:  # only resolved for repos with ArtifactGenerators
            (flux_dir / "watcher").mkdir(parents=True, exist_ok=True)
            w_storage, w_metrics, w_health = host.ports(3)
            controllers.append(("source-watcher", [
                "--watch-all-namespaces=true",
                f"--storage-path={flux_dir / 'watcher'}",
                f"--storage-addr=127.0.0.1:{w_storage}",
                f"--storage-adv-addr=127.0.0.1:{w_storage}",
                f"--metrics-addr=127.0.0.1:{w_metrics}",
                f"--health-addr=127.0.0.1:{w_health}",
                "--enable-leader-election=false",
                "--log-encoding=json",
                *self.settings.flags("source-watcher"),
            ], w_health))
        for name, args, _ in controllers:
            self.controller_flags[name] = args
            host.supervisor.start(name, [str(self.tools[name].path), *args], env=env)
        for name, _, port in controllers:
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
