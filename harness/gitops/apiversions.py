"""apiVersions against what the pinned release serves: the Flux CRDs of v2.9.2 (one version per
kind, the kinds table) and Kubernetes v1.35's built-in APIs. A removed version makes the repo
invalid (Flux or the API server would refuse the object), naming the release that removed it and
the fix; a deprecated one is a warning. Offline and table-driven: no cluster code."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from harness.gitops.kinds import FLUX_GROUPS, KINDS

FLUX_RELEASE = "v2.9.2"
KUBE_RELEASE = "v1.35"

# Flux API versions and the release that removed them (fluxcd/flux2 discussion 5572); other
# versions of a Flux group that v2.9.2's CRDs do not serve are "not served by v2.9.2".
FLUX_REMOVED: Mapping[tuple[str, str], str] = {
    ("source.toolkit.fluxcd.io", "v1beta1"): "Flux v2.7",
    ("kustomize.toolkit.fluxcd.io", "v1beta1"): "Flux v2.7",
    ("helm.toolkit.fluxcd.io", "v2beta1"): "Flux v2.7",
    ("image.toolkit.fluxcd.io", "v1beta1"): "Flux v2.7",
    ("notification.toolkit.fluxcd.io", "v1beta1"): "Flux v2.7",
    ("source.toolkit.fluxcd.io", "v1beta2"): "Flux v2.8",
    ("kustomize.toolkit.fluxcd.io", "v1beta2"): "Flux v2.8",
    ("helm.toolkit.fluxcd.io", "v2beta2"): "Flux v2.8",
    ("notification.toolkit.fluxcd.io", "v1beta2"): "Flux v2.8",
}

# Kubernetes built-in API versions removed by v1.35 (the deprecated API migration guide):
# group/version -> (kinds, or () for every kind of it; the release that removed them).
KUBE_REMOVED: Mapping[str, tuple[tuple[str, ...], str]] = {
    "extensions/v1beta1": ((), "Kubernetes v1.22 (workloads: v1.16)"),
    "apps/v1beta1": ((), "Kubernetes v1.16"),
    "apps/v1beta2": ((), "Kubernetes v1.16"),
    "networking.k8s.io/v1beta1": ((), "Kubernetes v1.22"),
    "rbac.authorization.k8s.io/v1beta1": ((), "Kubernetes v1.22"),
    "apiextensions.k8s.io/v1beta1": ((), "Kubernetes v1.22"),
    "admissionregistration.k8s.io/v1beta1": ((), "Kubernetes v1.22"),
    "apiregistration.k8s.io/v1beta1": ((), "Kubernetes v1.22"),
    "scheduling.k8s.io/v1beta1": ((), "Kubernetes v1.22"),
    "certificates.k8s.io/v1beta1": ((), "Kubernetes v1.22"),
    "coordination.k8s.io/v1beta1": ((), "Kubernetes v1.22"),
    "storage.k8s.io/v1beta1": (("CSIDriver", "CSINode", "StorageClass", "VolumeAttachment"),
                               "Kubernetes v1.22"),
    "policy/v1beta1": ((), "Kubernetes v1.25"),
    "batch/v1beta1": ((), "Kubernetes v1.25"),
    "discovery.k8s.io/v1beta1": ((), "Kubernetes v1.25"),
    "events.k8s.io/v1beta1": ((), "Kubernetes v1.25"),
    "node.k8s.io/v1beta1": ((), "Kubernetes v1.25"),
    "autoscaling/v2beta1": ((), "Kubernetes v1.25"),
    "autoscaling/v2beta2": ((), "Kubernetes v1.26"),
    "flowcontrol.apiserver.k8s.io/v1beta1": ((), "Kubernetes v1.26"),
    "flowcontrol.apiserver.k8s.io/v1beta2": ((), "Kubernetes v1.29"),
    "flowcontrol.apiserver.k8s.io/v1beta3": ((), "Kubernetes v1.32"),
}
KUBE_CURRENT: Mapping[str, str] = {
    "Deployment": "apps/v1", "DaemonSet": "apps/v1", "StatefulSet": "apps/v1",
    "ReplicaSet": "apps/v1", "Ingress": "networking.k8s.io/v1",
    "IngressClass": "networking.k8s.io/v1", "NetworkPolicy": "networking.k8s.io/v1",
    "CronJob": "batch/v1", "PodDisruptionBudget": "policy/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2", "CustomResourceDefinition":
    "apiextensions.k8s.io/v1", "ClusterRole": "rbac.authorization.k8s.io/v1",
    "ClusterRoleBinding": "rbac.authorization.k8s.io/v1", "Role": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1", "PriorityClass": "scheduling.k8s.io/v1",
    "StorageClass": "storage.k8s.io/v1", "CSIDriver": "storage.k8s.io/v1",
    "ValidatingWebhookConfiguration": "admissionregistration.k8s.io/v1",
    "MutatingWebhookConfiguration": "admissionregistration.k8s.io/v1",
    "EndpointSlice": "discovery.k8s.io/v1", "RuntimeClass": "node.k8s.io/v1",
    "Lease": "coordination.k8s.io/v1", "APIService": "apiregistration.k8s.io/v1",
    "FlowSchema": "flowcontrol.apiserver.k8s.io/v1",
    "PriorityLevelConfiguration": "flowcontrol.apiserver.k8s.io/v1",
    "CertificateSigningRequest": "certificates.k8s.io/v1", "Event": "events.k8s.io/v1",
}
"""Where a kind of a removed Kubernetes version lives now (PodSecurityPolicy: nowhere)."""
KUBE_DEPRECATED: Mapping[str, str] = {
    "resource.k8s.io/v1beta1": "deprecated since Kubernetes v1.34 (use resource.k8s.io/v1)",
    "resource.k8s.io/v1beta2": "deprecated since Kubernetes v1.34 (use resource.k8s.io/v1)",
}

_SERVED = {(k.group, k.kind): k.version for k in KINDS if k.group in FLUX_GROUPS and
           k.controller != "flux-operator"}


@dataclass(frozen=True)
class VersionFinding:
    severity: str
    """"invalid" (removed) or "warning" (deprecated)."""
    file: str
    obj: str
    message: str
    fix: str


def check(objects: Iterable[tuple[Mapping[str, object], str, str]]) -> list[VersionFinding]:
    """(document, repo file, ref) of every rendered object -> findings, one per
    (apiVersion, kind, file) so a folder of 50 old manifests is one line each, not 50."""
    out: dict[tuple[str, str, str], VersionFinding] = {}
    for doc, file, ref in objects:
        api, kind = str(doc.get("apiVersion") or ""), str(doc.get("kind") or "")
        group, _, version = api.rpartition("/")
        key = (api, kind, file)
        if key in out or not version:
            continue
        finding = _flux(group, version, kind, file, ref) if group in FLUX_GROUPS else \
            _kube(api, kind, file, ref)
        if finding is not None:
            out[key] = finding
    return list(out.values())


def _flux(group: str, version: str, kind: str, file: str, ref: str) -> VersionFinding | None:
    served = _SERVED.get((group, kind))
    if served is None or served == version:
        return None
    removed = FLUX_REMOVED.get((group, version))
    when = f"removed in {removed}" if removed else f"not served by Flux {FLUX_RELEASE}"
    return VersionFinding(
        "invalid", file, ref,
        f"{ref} uses {group}/{version}, {when}: the pinned Flux {FLUX_RELEASE} serves "
        f"{kind} only as {group}/{served}, so the apply fails",
        f"run `flux migrate -f .` (Flux CLI >= 2.7) or set apiVersion: {group}/{served}")


def _kube(api: str, kind: str, file: str, ref: str) -> VersionFinding | None:
    removed = KUBE_REMOVED.get(api)
    if removed is not None and (not removed[0] or kind in removed[0]):
        current = KUBE_CURRENT.get(kind)
        return VersionFinding(
            "invalid", file, ref,
            f"{ref} uses {api}, removed in {removed[1]}: the API server of Kubernetes "
            f"{KUBE_RELEASE} does not serve it",
            f"set apiVersion: {current}" if current else
            f"{kind} is gone from Kubernetes; remove it or replace it (see the Kubernetes "
            "deprecated API migration guide)")
    if api in KUBE_DEPRECATED:
        return VersionFinding("warning", file, ref, f"{ref} uses {api}, "
                              f"{KUBE_DEPRECATED[api]}", "update apiVersion before it is removed")
    return None


__all__ = ["FLUX_REMOVED", "KUBE_REMOVED", "VersionFinding", "check"]
