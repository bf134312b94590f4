"""The one table of Flux and flux-operator kinds: API group, version, plural, the readiness rule
Flux applies, the controller that serves the kind, and which fields name Secrets/ConfigMaps
(manual inputs) or remotes (external dependencies). Preflight, converge and diagnostics all
read this table, so a kind is added in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Readiness = Literal["artifact", "applied", "ready", "static"]
"""artifact: Ready=True for the current generation, status.artifact.revision is the revision
(only the source under test must match the commit); applied: also status.lastAppliedRevision
(Kustomization); ready: Ready=True for the current generation; static: no status to wait for
(HelmRepository of type oci is never reconciled)."""

SOURCE_CONTROLLER = "source-controller"
KUSTOMIZE_CONTROLLER = "kustomize-controller"
HELM_CONTROLLER = "helm-controller"
SOURCE_WATCHER = "source-watcher"
NOTIFICATION_CONTROLLER = "notification-controller"
IMAGE_REFLECTOR = "image-reflector-controller"
IMAGE_AUTOMATION = "image-automation-controller"
FLUX_OPERATOR = "flux-operator"

RUNNABLE_CONTROLLERS = frozenset({SOURCE_CONTROLLER, KUSTOMIZE_CONTROLLER, HELM_CONTROLLER,
                                  SOURCE_WATCHER, NOTIFICATION_CONTROLLER, IMAGE_REFLECTOR,
                                  IMAGE_AUTOMATION})
"""Controllers of the pinned Flux release that drdrill runs (their CRDs are installed)."""


@dataclass(frozen=True)
class KindSpec:
    kind: str
    group: str
    version: str
    """The storage version drdrill watches."""
    plural: str
    controller: str
    readiness: Readiness
    secret_refs: tuple[str, ...] = ()
    """Dotted spec paths whose value is a `{name: ...}` Secret reference."""
    url_field: str | None = None
    """Dotted spec path of the remote this object fetches (an external dependency)."""

    @property
    def runnable(self) -> bool:
        return self.controller in RUNNABLE_CONTROLLERS

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


SOURCE = "source.toolkit.fluxcd.io"
_SRC_SECRETS = ("secretRef", "certSecretRef", "proxySecretRef", "verify.secretRef")

KINDS: tuple[KindSpec, ...] = (
    KindSpec("GitRepository", SOURCE, "v1", "gitrepositories", SOURCE_CONTROLLER, "artifact",
             _SRC_SECRETS, "url"),
    KindSpec("OCIRepository", SOURCE, "v1", "ocirepositories", SOURCE_CONTROLLER, "artifact",
             _SRC_SECRETS, "url"),
    KindSpec("HelmRepository", SOURCE, "v1", "helmrepositories", SOURCE_CONTROLLER, "ready",
             _SRC_SECRETS, "url"),
    KindSpec("HelmChart", SOURCE, "v1", "helmcharts", SOURCE_CONTROLLER, "artifact",
             ("verify.secretRef",)),
    KindSpec("Bucket", SOURCE, "v1", "buckets", SOURCE_CONTROLLER, "artifact", _SRC_SECRETS,
             "endpoint"),
    KindSpec("ExternalArtifact", SOURCE, "v1", "externalartifacts", SOURCE_WATCHER, "artifact"),
    KindSpec("ArtifactGenerator", "source.extensions.fluxcd.io", "v1beta1", "artifactgenerators",
             SOURCE_WATCHER, "ready"),
    KindSpec("Kustomization", "kustomize.toolkit.fluxcd.io", "v1", "kustomizations",
             KUSTOMIZE_CONTROLLER, "applied",
             ("decryption.secretRef", "kubeConfig.secretRef")),
    KindSpec("HelmRelease", "helm.toolkit.fluxcd.io", "v2", "helmreleases", HELM_CONTROLLER,
             "ready", ("kubeConfig.secretRef",)),
    KindSpec("Alert", "notification.toolkit.fluxcd.io", "v1beta3", "alerts",
             NOTIFICATION_CONTROLLER, "static"),
    KindSpec("Provider", "notification.toolkit.fluxcd.io", "v1beta3", "providers",
             NOTIFICATION_CONTROLLER, "static", ("secretRef", "certSecretRef")),
    KindSpec("Receiver", "notification.toolkit.fluxcd.io", "v1", "receivers",
             NOTIFICATION_CONTROLLER, "ready", ("secretRef",)),
    KindSpec("ImageRepository", "image.toolkit.fluxcd.io", "v1", "imagerepositories",
             IMAGE_REFLECTOR, "ready", ("secretRef", "certSecretRef"), "image"),
    KindSpec("ImagePolicy", "image.toolkit.fluxcd.io", "v1", "imagepolicies", IMAGE_REFLECTOR,
             "ready"),
    KindSpec("ImageUpdateAutomation", "image.toolkit.fluxcd.io", "v1", "imageupdateautomations",
             IMAGE_AUTOMATION, "ready"),
    KindSpec("FluxInstance", "fluxcd.controlplane.io", "v1", "fluxinstances", FLUX_OPERATOR,
             "ready"),
    KindSpec("FluxReport", "fluxcd.controlplane.io", "v1", "fluxreports", FLUX_OPERATOR,
             "static"),
    KindSpec("ResourceSet", "fluxcd.controlplane.io", "v1", "resourcesets", FLUX_OPERATOR,
             "ready"),
    KindSpec("ResourceSetInputProvider", "fluxcd.controlplane.io", "v1",
             "resourcesetinputproviders", FLUX_OPERATOR, "ready", ("secretRef",), "url"),
)

_BY_KEY: dict[tuple[str, str], KindSpec] = {(k.group, k.kind): k for k in KINDS}
FLUX_GROUPS = frozenset(k.group for k in KINDS)


def group_of(api_version: object) -> str:
    text = str(api_version or "")
    return text.split("/", 1)[0] if "/" in text else ""


def lookup(api_version: object, kind: object) -> KindSpec | None:
    """The table row for an object's apiVersion/kind, any version of the group."""
    return _BY_KEY.get((group_of(api_version), str(kind)))


def spec_of(obj: Mapping[str, Any]) -> KindSpec | None:
    return lookup(obj.get("apiVersion"), obj.get("kind"))


def by_kind(kind: str) -> KindSpec:
    for k in KINDS:
        if k.kind == kind:
            return k
    raise KeyError(kind)


def dig(node: Any, dotted: str) -> Any:
    """The value at a dotted path of nested mappings, or None."""
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node
