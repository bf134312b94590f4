"""apiVersions against the pinned Flux release and Kubernetes version: removed -> invalid naming
the release and the fix, deprecated -> a warning, current -> nothing."""

from __future__ import annotations

import pytest

from harness.gitops import apiversions

pytestmark = pytest.mark.unit


def doc(api: str, kind: str) -> dict[str, object]:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": "x"}}


def test_removed_flux_versions_name_the_release_and_flux_migrate():
    found = apiversions.check([
        (doc("helm.toolkit.fluxcd.io/v2beta1", "HelmRelease"), "a.yaml", "HelmRelease/ns/x"),
        (doc("kustomize.toolkit.fluxcd.io/v1beta2", "Kustomization"), "b.yaml",
         "Kustomization/flux-system/x"),
        (doc("image.toolkit.fluxcd.io/v1beta2", "ImagePolicy"), "c.yaml", "ImagePolicy/ns/x"),
        (doc("helm.toolkit.fluxcd.io/v2", "HelmRelease"), "ok.yaml", "HelmRelease/ns/y"),
        (doc("notification.toolkit.fluxcd.io/v1beta3", "Alert"), "ok.yaml", "Alert/ns/y"),
    ])
    by_file = {f.file: f for f in found}
    assert set(by_file) == {"a.yaml", "b.yaml", "c.yaml"}
    assert all(f.severity == "invalid" for f in found)
    assert "removed in Flux v2.7" in by_file["a.yaml"].message
    assert "helm.toolkit.fluxcd.io/v2" in by_file["a.yaml"].fix
    assert "flux migrate" in by_file["a.yaml"].fix
    assert "removed in Flux v2.8" in by_file["b.yaml"].message
    assert "not served by Flux v2.9.2" in by_file["c.yaml"].message


def test_removed_kubernetes_versions_and_a_deprecated_one():
    found = apiversions.check([
        (doc("networking.k8s.io/v1beta1", "Ingress"), "i.yaml", "Ingress/web/x"),
        (doc("policy/v1beta1", "PodSecurityPolicy"), "p.yaml", "PodSecurityPolicy//x"),
        (doc("storage.k8s.io/v1beta1", "CSIStorageCapacity"), "s.yaml", "CSIStorageCapacity/a/x"),
        (doc("resource.k8s.io/v1beta1", "ResourceClaim"), "r.yaml", "ResourceClaim/a/x"),
        (doc("apps/v1", "Deployment"), "d.yaml", "Deployment/a/x"),
    ])
    by_file = {f.file: f for f in found}
    assert by_file["i.yaml"].severity == "invalid"
    assert "Kubernetes v1.22" in by_file["i.yaml"].message
    assert by_file["i.yaml"].fix == "set apiVersion: networking.k8s.io/v1"
    assert "gone from Kubernetes" in by_file["p.yaml"].fix
    assert by_file["r.yaml"].severity == "warning"
    assert "s.yaml" not in by_file and "d.yaml" not in by_file  # only some v1beta1 kinds


def test_one_finding_per_version_kind_and_file():
    objs = [(doc("source.toolkit.fluxcd.io/v1beta2", "HelmRepository"), "many.yaml",
             f"HelmRepository/ns/r{i}") for i in range(50)]
    assert len(apiversions.check(objs)) == 1
