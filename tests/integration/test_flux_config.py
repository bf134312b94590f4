"""The repo's own Flux settings, read offline with the pinned kustomize: flux-system patches and
a FluxInstance, each setting with the file and line (or profile) it came from."""

from __future__ import annotations

import pytest

from harness.config import Config
from harness.gitops.flux_config import FluxSettings
from harness.gitops.model import analyze
from harness.tools import ensure_tools

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kustomize():
    return ensure_tools(Config.from_env(), ["kustomize"])["kustomize"].path


def sources(settings: FluxSettings, controller: str) -> dict[str, str]:
    return {s.flag: s.source for s in settings.effective(controller)}


def test_flux_system_patches_and_the_source_watcher_gate(fixture_repo, kustomize):
    model = analyze(fixture_repo("flux-settings"), "clusters/dev", kustomize=kustomize)
    flux = model.flux
    assert "source-watcher" in flux.components and "placeholder" in flux.components_source
    ks = sources(flux, "kustomize-controller")
    assert ks["--concurrent=3"] == "clusters/dev/flux-system/kustomization.yaml:10"
    assert ks["--requeue-dependency=3s"] == "clusters/dev/flux-system/kustomization.yaml:13"
    assert ks["--feature-gates=CancelHealthCheckOnNewRevision=true"] == \
        "clusters/dev/flux-system/gates-patch.yaml:3"
    assert "source-watcher" in ks["--feature-gates=ExternalArtifact=true"]
    assert sources(flux, "source-controller")["--concurrent=3"].endswith("kustomization.yaml:10")
    assert "--concurrent=3" not in sources(flux, "source-watcher")  # not a patch target
    gates = [f for f in flux.flags("kustomize-controller") if f.startswith("--feature-gates")]
    assert gates == ["--feature-gates=CancelHealthCheckOnNewRevision=true,ExternalArtifact=true"]


def test_flux_instance_profiles_patches_and_sharding(fixture_repo, kustomize):
    model = analyze(fixture_repo("flux-instance"), "clusters/prod", kustomize=kustomize)
    flux = model.flux
    assert flux.components == ("source-controller", "kustomize-controller", "helm-controller",
                               "notification-controller", "source-watcher")
    ks = sources(flux, "kustomize-controller")
    assert "spec.cluster.size=medium" in ks["--concurrent=10"]
    assert "spec.cluster.size=medium" in ks["--requeue-dependency=5s"]
    assert "multitenant" in ks["--default-service-account=flux-tenant"]
    assert "multitenant" in ks["--no-cross-namespace-refs=true"]
    assert ks["--sops-age-secret=sops-age"].endswith("(clusters/prod/flux-instance.yaml:33)")
    assert "ExternalArtifact" in " ".join(ks)
    assert sources(flux, "source-controller")["--concurrent=5"].startswith("FluxInstance flux")
    assert any("shard" in n for n in flux.notes)
    sops = next(i for i in model.manual_inputs if i.name == "sops-age")
    assert sops.keys == ("*.agekey",) and "age.agekey" in sops.template()


def test_nothing_in_the_repo_means_flux_defaults_and_fast_is_explicit(fixture_repo, kustomize):
    model = analyze(fixture_repo("chain3"), "clusters/dev", kustomize=kustomize)
    assert model.flux.repo == ()
    repo = FluxSettings(profile="repo").with_repo(model.flux)
    assert {s.flag: s.origin for s in repo.effective("kustomize-controller")} == {
        "--concurrent=4": "flux-default", "--requeue-dependency=30s": "flux-default"}
    assert repo.flags("kustomize-controller") == []
    fast = FluxSettings(profile="fast").with_repo(model.flux)
    assert fast.flags("kustomize-controller") == ["--requeue-dependency=2s"]
    assert fast.flags("notification-controller") == []  # it has no such flag
