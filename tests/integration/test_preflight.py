"""Preflight against real repos (needs only the pinned kustomize): graph, inventory, errors."""

from __future__ import annotations

import time

import pytest

from harness.config import Config
from harness.errors import (
    DependencyCycleError,
    InputError,
    ManifestError,
    MissingPathError,
    UnknownDependencyError,
)
from harness.repo import analyze, check_inputs, load_inputs
from harness.tools import ensure_tools

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kustomize():
    return ensure_tools(Config.from_env(), ["kustomize"])["kustomize"].path


def ks(model):
    return {o.key: set(o.depends_on) for o in model.kustomizations}


def required_inputs(model):
    return {(i.kind, i.namespace, i.name) for i in model.manual_inputs if not i.replaced_in_drill}


def test_sample_repo_graph_and_inventory(sample_repo, kustomize):
    model = analyze(sample_repo, "clusters/homelab", kustomize=kustomize)
    # a three-level chain: infrastructure -> services (a HelmRelease) -> apps
    assert ks(model) == {
        "flux-system/flux-system": set(),
        "flux-system/infrastructure": set(),
        "flux-system/secrets": {"flux-system/infrastructure"},
        "flux-system/services": {"flux-system/infrastructure"},
        "flux-system/apps": {"flux-system/services", "flux-system/secrets"},
    }
    assert model.uses_helm
    assert required_inputs(model) == {("Secret", "flux-system", "cluster-secrets"),
                                      ("Secret", "flux-system", "sops-age")}
    by_name = {i.name: i for i in model.manual_inputs}
    assert by_name["cluster-secrets"].needed_by == ("Kustomization/flux-system/apps",)
    assert "substituteFrom" in by_name["cluster-secrets"].field
    assert by_name["sops-age"].needed_by == ("Kustomization/flux-system/secrets",)
    assert by_name["sops-age"].field == "spec.decryption.secretRef"


def test_home_ops_layout(fixture_repo, kustomize):
    model = analyze(fixture_repo("home-ops"), "kubernetes/flux/cluster", kustomize=kustomize)
    graph = ks(model)
    assert graph["flux-system/echo-server"] == {"flux-system/redis"}
    assert {"flux-system/cluster-apps", "flux-system/redis", "flux-system/whoami"} <= set(graph)
    assert required_inputs(model) == {("Secret", "flux-system", "cluster-secrets")}


def test_chain3(fixture_repo, kustomize):
    model = analyze(fixture_repo("chain3"), "clusters/dev", kustomize=kustomize)
    assert ks(model)["flux-system/apps"] == {"flux-system/controllers"}
    assert ks(model)["flux-system/controllers"] == {"flux-system/crds"}
    assert required_inputs(model) == set()


def test_sops_and_substitute_inventory(fixture_repo, kustomize):
    repo = fixture_repo("sops-substitute")
    model = analyze(repo, "clusters/prod", kustomize=kustomize)
    assert required_inputs(model) == {("Secret", "flux-system", "sops-age"),
                                      ("Secret", "flux-system", "prod-secrets")}
    by_name = {i.name: i for i in model.manual_inputs}
    assert by_name["sops-age"].field == "spec.decryption.secretRef"
    assert by_name["sops-age"].automatable is False
    # The repo's inputs/ folder holds prod-secrets but not the age key: preflight names it.
    with pytest.raises(InputError) as err:
        check_inputs(model, load_inputs(repo / "inputs"), repo / "inputs")
    assert "sops-age" in str(err.value) and "Kustomization/flux-system/apps" in str(err.value)
    assert "prod-secrets" not in str(err.value)


def test_flux_bootstrap_repo_is_patched_to_run_locally(fixture_repo, kustomize):
    model = analyze(fixture_repo("flux-bootstrap"), "clusters/staging", kustomize=kustomize)
    deploy_key = [i for i in model.manual_inputs if i.replaced_in_drill]
    assert [(i.kind, i.namespace, i.name) for i in deploy_key] == [
        ("Secret", "flux-system", "flux-system")]
    assert required_inputs(model) == set()
    kinds = {p["target"]["kind"] for p in model.sync_patches}
    assert kinds == {"GitRepository", "Kustomization"}
    assert any("ssh://" in c for c in model.local_changes)


@pytest.mark.parametrize(("fixture", "error", "needles"), [
    ("broken-missing-path", MissingPathError, ["flux-system/apps", "./apps/development",
                                               "clusters/dev/apps.yaml"]),
    ("broken-cycle", DependencyCycleError, ["flux-system/a", "flux-system/b", "flux-system/c"]),
    ("broken-invalid-yaml", ManifestError, ["apps/dev/podinfo/deployment.yaml",
                                            "flux-system/apps"]),
    ("broken-unknown-dep", UnknownDependencyError, ["flux-system/apps", "flux-system/database",
                                                    "clusters/dev/apps.yaml"]),
])
def test_broken_repos_fail_fast_naming_file_and_object(fixture_repo, kustomize, fixture, error,
                                                        needles):
    repo = fixture_repo(fixture)
    started = time.monotonic()
    with pytest.raises(error) as err:
        analyze(repo, "clusters/dev", kustomize=kustomize)
    assert time.monotonic() - started < 10
    for needle in needles:
        assert needle in str(err.value), f"{needle!r} not in: {err.value}"
    assert err.value.fix


def test_missing_cluster_path_lists_choices(sample_repo, kustomize):
    with pytest.raises(MissingPathError) as err:
        analyze(sample_repo, "clusters/nope", kustomize=kustomize)
    assert "clusters/homelab" in str(err.value)


def test_helm_release_with_chart_in_git(fixture_repo, kustomize):
    model = analyze(fixture_repo("helm-git-chart"), "clusters/dev", kustomize=kustomize)
    assert model.uses_helm
    assert "HelmRelease/web/hello" in model.expected()
    # the ConfigMap is rendered by the repo; the Secret is not
    assert required_inputs(model) == {("Secret", "web", "hello-secrets")}
    [item] = model.manual_inputs
    assert item.needed_by == ("HelmRelease/web/hello",) and item.field == "spec.valuesFrom[1]"
