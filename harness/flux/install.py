"""Flux on a cluster, the only way providers get it: pinned CRDs, the real controllers as host
processes or as in-cluster Deployments (kind, k3d, lab's k3s), and the sync objects."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ProviderError
from harness.flux.settings import FluxSettings, HostAddrs, controller_flags
from harness.kube import apply_all, ensure_namespace, load_yaml_docs, request, wait_crds_established
from harness.providers import ClusterProvider, SupportsFluxInstall, SupportsHostProcesses
from harness.tools import (
    FLUX_TOOLS,
    HELM_TOOLS,
    IMAGE_TOOLS,
    NOTIFICATION_TOOLS,
    WATCHER_TOOLS,
    ResolvedTool,
)
from harness.waits import Deadline, http_ok, poll_until

log = logging.getLogger(__name__)

FLUX_NAMESPACE = "flux-system"
SYNC_NAME = "flux-system"
FLUX_CONTROLLERS = ("source-controller", "kustomize-controller")
FLUX_ALL = (*FLUX_TOOLS, *HELM_TOOLS, *WATCHER_TOOLS, *NOTIFICATION_TOOLS, *IMAGE_TOOLS)
"""Every controller of the pinned release drdrill runs, as processes or pods; all but source-
and kustomize-controller only for repos whose kinds need them (the runner resolves them then)."""
FLUX_IMAGE_REGISTRY = "ghcr.io/fluxcd"


_STORAGE = {"source-watcher": "watcher", "image-reflector-controller": "images"}
"""Each storage-owning controller's folder under the run's flux/ (source-controller: artifacts)."""


def describe_settings(settings: FluxSettings, controllers: Sequence[str]) -> dict[str, Any]:
    """The report's Flux settings: each setting of each running controller and its source."""
    kc = {s.name: s for s in settings.effective("kustomize-controller")}
    return {
        "profile": settings.profile,
        "components": list(settings.components),
        "components_source": settings.components_source,
        "settings": settings.describe(controllers),
        "requeue_dependency": kc["requeue-dependency"].value,
        "concurrent": int(kc["concurrent"].value),
        "git_interval": settings.git_interval,
        "notes": list(settings.notes),
    }


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
        controllers = [c for c in FLUX_ALL if c in self.tools]
        events_url = receiver = None
        if NOTIFICATION_TOOLS[0] in controllers:
            events, receiver = host.ports(2)
            events_url = f"http://127.0.0.1:{events}/"
        started: list[tuple[str, list[str], int]] = []
        for name in controllers:
            storage_dir = flux_dir / _STORAGE.get(name, "artifacts")
            storage_dir.mkdir(parents=True, exist_ok=True)
            storage, metrics, health = host.ports(3)
            args = controller_flags(name, self.settings, host=HostAddrs(
                storage_path=storage_dir, storage_port=storage,
                metrics_port=metrics, health_port=health, events_url=events_url,
                receiver_port=receiver))
            started.append((name, args, health))
        for name, args, _ in started:
            self.controller_flags[name] = args
            host.supervisor.start(name, [str(self.tools[name].path), *args], env=env)
        for name, _, port in started:
            poll_until(functools.partial(http_ok, f"http://127.0.0.1:{port}/readyz"),
                       timeout_s=self.startup_timeout_s, what=f"{name} /readyz",
                       abort=host.supervisor.check, interval_s=0.05)

    def describe(self) -> dict[str, Any]:
        running = [n for n in FLUX_ALL if n in self.tools]
        return {
            "controllers": {n: self.tools[n].version for n in running},
            "flags": self.controller_flags,
            **describe_settings(self.settings, running),
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


# -- Flux in-cluster (kind, k3d, lab's k3s) -------------------------------------------------

def flux_images(tools: Mapping[str, ResolvedTool] | None = None,
                registry: str = FLUX_IMAGE_REGISTRY) -> dict[str, str]:
    """Controller -> image, each tagged with that controller's own pinned version."""
    from harness.tools import load_manifest

    pinned = load_manifest().tools
    names = [c for c in FLUX_ALL if c in tools] if tools else list(FLUX_CONTROLLERS)
    return {c: f"{registry}/{c}:{(tools[c].version if tools else pinned[c].version)}"
            for c in names}


def flux_controller_args(settings: FluxSettings, *,
                         controllers: Sequence[str] = FLUX_CONTROLLERS,
                         host_network: bool = False) -> dict[str, list[str]]:
    """The in-cluster controllers' flags, from the one builder the host processes use too."""
    events = NOTIFICATION_TOOLS[0] in controllers
    args = {c: controller_flags(c, settings, events=events) for c in controllers}
    if host_network and "source-controller" in args:
        # On the host's network the stock ports may be taken; metrics are not needed.
        args["source-controller"].append("--metrics-addr=0")
    return args


_SERVICES: Mapping[str, Sequence[tuple[str, int, str]]] = {
    # controller -> (Service name, port, target port name), as `flux install` makes them.
    "source-controller": (("source-controller", 80, "http"),),
    "source-watcher": (("source-watcher", 80, "http"),),
    "notification-controller": (("notification-controller", 80, "http"),
                                ("webhook-receiver", 80, "http-webhook")),
}


def flux_manifests(settings: FluxSettings, *, images: Mapping[str, str] | None = None,
                   host_network_node: str | None = None) -> list[dict[str, Any]]:
    """ServiceAccounts, a cluster-admin binding, the source-controller Service and one
    Deployment per controller in `images` (default: source- and kustomize-controller).

    `host_network_node`: run source-controller in that node's network namespace (lab k3s: the
    harness's Git server is tunnelled to the node's loopback)."""
    images = dict(images or flux_images())
    controllers = list(images)
    args = flux_controller_args(settings, controllers=controllers,
                                host_network=host_network_node is not None)
    labels = {"app.kubernetes.io/part-of": "flux", "app.kubernetes.io/managed-by": "drdrill"}
    docs: list[dict[str, Any]] = []
    for c in controllers:
        docs.append({"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": c, "namespace": FLUX_NAMESPACE, "labels": labels}})
    docs.append({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "drdrill-flux-reconciler", "labels": labels},
        # As `flux install`'s cluster-reconciler binding: the controllers apply anything.
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": c, "namespace": FLUX_NAMESPACE}
                     for c in controllers],
    })
    for c in controllers:
        for svc, port, target in _SERVICES.get(c, ()):
            docs.append({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": svc, "namespace": FLUX_NAMESPACE,
                             "labels": {**labels, "control-plane": "controller"}},
                "spec": {"type": "ClusterIP", "selector": {"app": c},
                         "ports": [{"name": target, "port": port, "protocol": "TCP",
                                    "targetPort": target}]},
            })
    for c in controllers:
        ports = [{"containerPort": 8080, "name": "http-prom", "protocol": "TCP"},
                 {"containerPort": 9440, "name": "healthz", "protocol": "TCP"}]
        mounts = [{"name": "temp", "mountPath": "/tmp"}]  # noqa: S108 - in the pod
        volumes: list[dict[str, Any]] = [{"name": "temp", "emptyDir": {}}]
        readiness: dict[str, Any] = {"httpGet": {"path": "/readyz", "port": "healthz"}}
        if c in ("source-controller", "source-watcher"):
            ports.insert(0, {"containerPort": 9090, "name": "http", "protocol": "TCP"})
            readiness = {"httpGet": {"path": "/", "port": "http"}}
        if c == "notification-controller":
            ports += [{"containerPort": 9090, "name": "http", "protocol": "TCP"},
                      {"containerPort": 9292, "name": "http-webhook", "protocol": "TCP"}]
        if c in ("source-controller", "source-watcher", "image-reflector-controller"):
            mounts.append({"name": "data", "mountPath": "/data"})
            volumes.append({"name": "data", "emptyDir": {}})
        pod: dict[str, Any] = {
            "serviceAccountName": c,
            "terminationGracePeriodSeconds": 10,
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "securityContext": {"fsGroup": 1337},
            "containers": [{
                "name": "manager", "image": images[c], "imagePullPolicy": "IfNotPresent",
                "args": args[c],
                "env": [{"name": "RUNTIME_NAMESPACE",
                         "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                "ports": ports,
                "readinessProbe": readiness,
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "healthz"}},
                "resources": {"limits": {"cpu": "1000m", "memory": "1Gi"},
                              "requests": {"cpu": "50m", "memory": "64Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "volumeMounts": mounts,
            }],
            "volumes": volumes,
        }
        if c == "source-controller" and host_network_node is not None:
            pod["hostNetwork"] = True
            pod["dnsPolicy"] = "ClusterFirstWithHostNet"
            pod["nodeSelector"] = {**pod["nodeSelector"],
                                   "kubernetes.io/hostname": host_network_node}
        docs.append({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": c, "namespace": FLUX_NAMESPACE,
                         "labels": {**labels, "control-plane": "controller",
                                    "app.kubernetes.io/component": c}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": c}},
                     "template": {"metadata": {"labels": {"app": c}}, "spec": pod}},
        })
    return docs


def install_flux_in_cluster(api: Any, settings: Any, *, timeout_s: float = 300,
                            host_network_node: str | None = None,
                            images: Mapping[str, str] | None = None,
                            registry: str = FLUX_IMAGE_REGISTRY) -> dict[str, Any]:
    """Apply `flux_manifests` and wait until every Deployment is Available; on timeout the
    error names each pod's waiting reason (ErrImagePull for an image the nodes cannot get)."""
    images = dict(images or flux_images(registry=registry))
    docs = flux_manifests(settings, images=images, host_network_node=host_network_node)
    apply_all(api, docs, source="drdrill in-cluster Flux")
    deadline = Deadline(timeout_s)
    last = ""
    while not deadline.expired:
        pending = []
        for c in images:
            dep = request(api, "GET", f"/apis/apps/v1/namespaces/{FLUX_NAMESPACE}/"
                                      f"deployments/{c}")
            conds = {x.get("type"): x.get("status")
                     for x in (dep.get("status") or {}).get("conditions") or []}
            if conds.get("Available") != "True":
                pending.append(c)
        if not pending:
            return {"images": images, **flux_controller_args(
                settings, controllers=list(images),
                host_network=host_network_node is not None)}
        last = _pod_reasons(api) or f"waiting for {', '.join(pending)}"
        # Deployments report through status conditions only; a short re-read is the watch's
        # equivalent here and keeps this independent of the client's watch plumbing.
        time.sleep(min(1.0, deadline.remaining))
    raise ProviderError(f"the Flux controllers did not become Available within "
                        f"{timeout_s:.0f}s: {last}",
                        fix="the nodes must be able to pull "
                            f"{', '.join(images.values())} (or have them preloaded, e.g. "
                            "`kind load docker-image`)")


def _pod_reasons(api: Any) -> str:
    try:
        pods = request(api, "GET", f"/api/v1/namespaces/{FLUX_NAMESPACE}/pods").get("items", [])
    except Exception:  # noqa: BLE001 - only for the message
        return ""
    out = []
    for pod in pods:
        for st in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (st.get("state") or {}).get("waiting")
            if waiting:
                out.append(f"{pod['metadata']['name']}: {waiting.get('reason')} "
                           f"{(waiting.get('message') or '')[:160]}")
    return "; ".join(out)
