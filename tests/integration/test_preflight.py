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
from harness.gitops.inputs import check_inputs, load_inputs
from harness.gitops.model import analyze
from harness.tools import ensure_tools

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kustomize():
    return ensure_tools(Config.from_env(), ["kustomize"])["kustomize"].path


def ks(model):
    return {o.key: set(o.depends_on) for o in model.kustomizations}


def required_inputs(model):
    return {(i.kind, i.namespace, i.name) for i in model.manual_inputs if i.required}


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
    assert by_name["prod-overrides"].status == "optional"
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


def test_bootstrap_repo_components_are_patched_out(fixture_repo, kustomize):
    """gotk-components.yaml of a bootstrap repo would replace the drill's pinned controllers:
    every one of its objects gets a delete patch, and the report says so."""
    model = analyze(fixture_repo("kind-bootstrap"), "clusters/staging", kustomize=kustomize)
    targets = {(p["target"]["kind"], p["target"]["name"]) for p in model.sync_patches}
    assert targets == {("GitRepository", "flux-system"), ("Kustomization", "flux-system"),
                       ("Namespace", "flux-system"),
                       ("ServiceAccount", "source-controller"),
                       ("ServiceAccount", "kustomize-controller"),
                       ("Deployment", "source-controller"),
                       ("Deployment", "kustomize-controller")}
    note = next(c for c in model.local_changes if "gotk-components.yaml" in c)
    assert "5 objects of Flux v2.4.0" in note and "Deployment" in note
    ks_names = {o.name for o in model.kustomizations}
    assert {"apps", "flux-system"} <= ks_names


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
    [item] = [i for i in model.manual_inputs if i.required]
    assert item.needed_by == ("HelmRelease/web/hello",) and item.field == "spec.valuesFrom[1]"


def rendered(model, kind, name):
    [o] = [o for o in model.rendered if o.kind == kind and o.name == name]
    return o


def test_render_quirks_as_kustomize_controller(fixture_repo, kustomize):
    model = analyze(fixture_repo("render-quirks"), "clusters/dev", kustomize=kustomize,
                    collect=True)
    assert model.verdict == "ok", model.problems
    assert set(ks(model)) == {"flux-system/flux-system", "flux-system/config",
                              "flux-system/plain", "flux-system/overlay-a",
                              "flux-system/overlay-b"}
    web = rendered(model, "Deployment", "web")
    assert web.namespace == "quirks"  # targetNamespace on a generated kustomization.yaml
    assert web.doc["metadata"]["labels"]["patched-by"] == "flux"  # spec.patches
    container = web.doc["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/example/app:1.2.3"  # substitute + substituteFrom
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"MODE": "fallback", "SHELL_VAR": "${HOME}"}
    svc = rendered(model, "Service", "web")
    assert [p["targetPort"] for p in svc.doc["spec"]["ports"]] == [80, 9090]  # &port twice
    assert {("ConfigMap", "team-a", "team-settings"), ("ConfigMap", "team-b", "team-settings"),
            ("ConfigMap", "quirks", "app-settings")} <= model.produced
    # targetNamespace puts objects in team-a/team-b, which nothing in the repo creates: a
    # real kustomize-controller fails with `namespaces "team-a" not found`.
    assert required_inputs(model) == {("Namespace", "", "team-a"), ("Namespace", "", "team-b")}
    assert {i.name: i.status for i in model.manual_inputs}["maybe-vars"] == "optional"


def test_secret_zero_inventory(fixture_repo, kustomize):
    model = analyze(fixture_repo("secret-zero"), "clusters/main", kustomize=kustomize,
                    collect=True)
    status = {(i.kind, i.namespace, i.name): i for i in model.manual_inputs}
    assert status[("Secret", "external-secrets", "onepassword-connect-token")].status == "missing"
    assert "that very store" in status[("Secret", "external-secrets",
                                        "onepassword-connect-token")].why
    assert status[("Secret", "apps", "vault-token")].status == "missing"
    assert status[("Secret", "external-secrets", "bitwarden-access-token")].status == \
        "produced-at-runtime"
    assert status[("Secret", "apps", "web-values")].status == "produced-at-runtime"
    assert status[("Secret", "apps", "shared-tls")].status == "produced-at-runtime"
    assert status[("ConfigMap", "apps", "ca-bundle")].status == "produced-at-runtime"
    assert status[("ConfigMap", "apps", "web-extra")].status == "optional"
    sops = status[("Secret", "flux-system", "sops-age")]
    assert sops.status == "missing" and "kustomize-controller" in sops.needed_by
    git = status[("Secret", "flux-system", "flux-system")]
    assert git.status == "missing" and git.replaced_in_drill and "FluxInstance" in git.why
    deps = {(d.kind, d.url) for d in model.external_dependencies}
    assert {("git", "ssh://git@github.com/example/fleet.git"),
            ("git", "https://git.example.org/team/manifests.git"),
            ("helm-repository", "https://charts.jetstack.io"),
            ("oci-registry", "oci://ghcr.io/kyverno/charts"),
            ("oci-registry", "oci://registry.example.org/charts/web"),
            ("container-registry", "docker.io"), ("container-registry", "ghcr.io"),
            ("container-registry", "quay.io")} <= deps
    assert {lim.obj for lim in model.limits} == {"HelmRelease/flux-system/cert-manager",
                                                 "HelmRelease/flux-system/kyverno"}
    # notification-controller runs in the drill now: its kinds limit nothing.
    assert model.verdict == "ok" and not model.problems
    assert "notification-controller" in model.controllers()


def cli(*args, env=None):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_preflight_cli_json_and_exit_codes(fixture_repo, kustomize):
    import json

    repo = fixture_repo("secret-zero")
    res = cli("preflight", "--repo", repo, "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["verdict"] == "clean" and data["kustomizations"] == 4
    for item in data["manual_inputs"]:
        assert {"kind", "namespace", "name", "needed_by", "status"} <= set(item)
        assert item["status"] in ("missing", "supplied", "produced-at-runtime", "optional")
    assert all({"url", "kind", "used_by"} <= set(d) for d in data["external_dependencies"])
    assert all({"file", "object", "message", "fix"} <= set(p) for p in data["problems"])
    # --inputs that lacks a required input: incomplete, exit 2
    empty = repo.parent / "no-inputs"
    empty.mkdir()
    res = cli("preflight", "--repo", repo, "--inputs", empty, "--json")
    assert res.returncode == 2 and json.loads(res.stdout)["verdict"] == "incomplete"
    # broken repo: invalid, exit 2, the file and object named
    res = cli("preflight", "--repo", fixture_repo("broken-cycle"), "--cluster", "clusters/dev")
    assert res.returncode == 2 and "INVALID" in res.stdout and "flux-system/a" in res.stdout
    md = cli("inventory", "--repo", repo, "--markdown")
    assert md.returncode == 0 and "| missing | Secret |" in md.stdout


def test_preflight_loads_no_cluster_code(fixture_repo, kustomize):
    import subprocess
    import sys

    code = ("import sys, contextlib, io\n"
            "from harness.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    rc = main(['preflight', '--repo', {str(fixture_repo('chain3'))!r}, '--json'])\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'urllib3')"
            " or m.startswith(('harness.providers', 'harness.kube', 'harness.flux',"
            " 'harness.drill', 'harness.converge')))\n"
            "print(rc, bad)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.stdout.strip() == "0 []", res.stdout + res.stderr


def test_external_artifacts_rebuilt_from_artifact_generator(fixture_repo, kustomize):
    model = analyze(fixture_repo("artifact-generator"), "clusters/dev", kustomize=kustomize,
                    collect=True)
    assert model.verdict == "ok", model.problems
    assert model.uses_watcher
    assert ks(model)["flux-system/apps"] == {"flux-system/controllers"}
    assert {("ConfigMap", "infra", "settings"), ("Deployment", "web", "web")} <= model.produced
    assert ("container-registry", "ghcr.io") in {(d.kind, d.url)
                                                 for d in model.external_dependencies}


def test_inventory_is_not_preflight_and_explains_an_invalid_repo(fixture_repo, kustomize):
    repo = fixture_repo("broken-cycle")
    inv = cli("inventory", "--repo", repo, "--cluster", "clusters/dev")
    pre = cli("preflight", "--repo", repo, "--cluster", "clusters/dev")
    assert inv.stdout != pre.stdout and inv.returncode == pre.returncode == 2
    assert inv.stdout.startswith("inventory of ") and "INCOMPLETE: the repo is invalid" in \
        inv.stdout and "flux-system/a" in inv.stdout


def test_preflight_reads_the_commit_not_the_working_tree(fixture_repo, kustomize):
    repo = fixture_repo("broken-cycle")
    fixed = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: default\n"
    for name in ("a", "b", "c"):  # an uncommitted fix is not what Flux gets
        (repo / "clusters" / "dev" / f"{name}.yaml").write_text(fixed)
    res = cli("preflight", "--repo", repo, "--cluster", "clusters/dev")
    assert res.returncode == 2 and "INVALID" in res.stdout, res.stdout
    assert "uncommitted change(s) are not what Flux gets" in res.stdout


def test_substitute_from_a_secret_the_same_kustomization_applies(tmp_path, kustomize):
    (tmp_path / "clusters" / "dev").mkdir(parents=True)
    (tmp_path / "apps").mkdir()
    (tmp_path / "clusters" / "dev" / "apps.yaml").write_text(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n"
        "  name: apps\n  namespace: flux-system\nspec:\n  interval: 10m\n  path: ./apps\n"
        "  prune: true\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n"
        "  postBuild:\n    substituteFrom:\n      - kind: Secret\n        name: vars\n")
    (tmp_path / "apps" / "vars.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: vars\n  namespace: flux-system\n"
        "stringData:\n  DOMAIN: example.org\n")
    (tmp_path / "apps" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: site\n  namespace: flux-system\n"
        "data:\n  host: ${DOMAIN}\n")
    model = analyze(tmp_path, "clusters/dev", kustomize=kustomize)
    item = next(i for i in model.manual_inputs if i.name == "vars")
    assert item.required and "chicken-and-egg" in item.why and item.keys == ("DOMAIN",)


def test_credentials_of_the_store_backend_made_through_that_store_are_manual(tmp_path,
                                                                             kustomize):
    (tmp_path / "clusters" / "dev").mkdir(parents=True)
    (tmp_path / "clusters" / "dev" / "all.yaml").write_text("""\
apiVersion: v1
kind: Namespace
metadata: {name: es}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: connect}
spec:
  provider:
    onepassword:
      connectHost: http://connect.es.svc:8080
      auth:
        secretRef:
          connectTokenSecretRef: {name: connect-token, namespace: es, key: token}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: connect-creds, namespace: es}
spec:
  secretStoreRef: {kind: ClusterSecretStore, name: connect}
  target: {name: connect-creds}
  dataFrom: [{extract: {key: connect}}]
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: connect, namespace: es}
spec:
  interval: 1h
  chart: {spec: {chart: connect, sourceRef: {kind: HelmRepository, name: op}}}
  values:
    connect: {credentialsName: connect-creds}
""")
    model = analyze(tmp_path, "clusters/dev", kustomize=kustomize)
    creds = next(i for i in model.manual_inputs if i.name == "connect-creds")
    assert creds.required and "the store this release serves" in creds.why
