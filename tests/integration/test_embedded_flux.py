"""A real embedded cluster with real Flux reconciling a repo served by the local Git server."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import yaml

from harness.config import Config
from harness.converge import DEFAULT_KINDS, HELM_RELEASES, Converger
from harness.flux import FluxRuntime, FluxSettings, sync_objects
from harness.gitops.model import analyze
from harness.gitserver import GitServer, resolve_revision
from harness.kube import api_client, apply_all, load_yaml_docs
from harness.procs import port_in_use
from harness.providers import ProviderContext
from harness.providers.embedded import EmbeddedProvider
from harness.tools import EMBEDDED_TOOLS, FLUX_TOOLS, HELM_TOOLS, ensure_tools, flux_crds
from tests.conftest import sample_inputs

pytestmark = pytest.mark.integration

TOP = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tools():
    # helm-controller too: the sample repo installs a chart (infrastructure/services)
    return ensure_tools(Config.from_env(), (*EMBEDDED_TOOLS, *FLUX_TOOLS, *HELM_TOOLS,
                                            "kustomize"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text(
    ).split()[2]


def test_cluster_lifecycle_leaves_nothing_behind(tools, tmp_path):
    workdir = tmp_path / "cluster"
    provider = EmbeddedProvider(ProviderContext("lifecycle", "t", workdir, Config.from_env(),
                                                tools))
    provider.create()
    try:
        assert provider.is_up()
        assert provider.kubeconfig.stat().st_mode & 0o777 == 0o600
        pids = provider.supervisor.pids()
        ports = list(provider._ports.values())
        assert len(pids) == 5
        from kubernetes import client as k8s

        api = api_client(provider.kubeconfig)
        nodes = k8s.CoreV1Api(api).list_node().items
        assert len(nodes) == 3
        api.close()
    finally:
        provider.delete()
    assert not provider.is_up()
    assert not any(_alive(p) for p in pids)
    assert not any(port_in_use(p) for p in ports)
    assert not workdir.exists()


def _converge_repo(tools, repo: Path, cluster: str, workdir: Path, inputs: list[dict] = ()):
    rev = resolve_revision(repo)
    model = analyze(rev.path, cluster, kustomize=tools["kustomize"].path)
    with GitServer(rev, workdir / "git") as git, EmbeddedProvider(
            ProviderContext(f"it-{workdir.name}", "t", workdir / "c", Config.from_env(),
                            tools)) as cluster_:
        api = api_client(cluster_.kubeconfig)
        try:
            settings = FluxSettings(profile="fast")
            FluxRuntime(cluster_, api, tools, flux_crds(Config.from_env()), settings).install()
            if inputs:
                apply_all(api, inputs)
            apply_all(api, sync_objects(url=git.url, branch=rev.branch, path=model.cluster_path,
                                        settings=settings, patches=model.sync_patches))
            kinds = (*DEFAULT_KINDS, HELM_RELEASES) if model.uses_helm else DEFAULT_KINDS
            result = Converger(api, f"{rev.branch}@sha1:{rev.sha}", model.expected(),
                               kinds=kinds).run(timeout_s=180)
        finally:
            api.close()
    return rev, model, result


def test_sample_repo_converges_at_the_served_commit(tools, sample_repo, tmp_path):
    inputs = sample_inputs()
    rev, model, result = _converge_repo(tools, sample_repo, "clusters/homelab", tmp_path, inputs)
    kustomizations = {r: t for r, t in result.objects.items() if t.kind == "Kustomization"}
    assert set(kustomizations) == {o.ref for o in model.kustomizations}
    for t in kustomizations.values():
        assert t.revision == f"main@sha1:{rev.sha}", t
    apps = result.objects["Kustomization/flux-system/apps"]
    infra = result.objects["Kustomization/flux-system/infrastructure"]
    assert apps.ready_after_s >= infra.ready_after_s  # apps dependsOn infrastructure
    assert result.critical_path()[-1].ref == "Kustomization/flux-system/apps"


def test_two_clusters_side_by_side_both_converge(tools, fixture_repo, tmp_path):
    repos = [fixture_repo("chain3"), fixture_repo("home-ops")]
    home_inputs = list(load_yaml_docs(repos[1] / "inputs" / "cluster-secrets.yaml"))
    results: dict[str, object] = {}

    def run(name, repo, cluster, inputs):
        try:
            results[name] = _converge_repo(tools, repo, cluster, tmp_path / name, inputs)
        except BaseException as exc:  # reported below
            results[name] = exc

    threads = [threading.Thread(target=run, args=("a", repos[0], "clusters/dev", [])),
               threading.Thread(target=run, args=("b", repos[1], "kubernetes/flux/cluster",
                                                  home_inputs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=400)
    for name in ("a", "b"):
        assert not isinstance(results.get(name), BaseException), results.get(name)
        _, model, result = results[name]
        assert {o.ref for o in model.kustomizations} <= set(result.objects)


def test_sops_repo_with_generated_age_key_converges(tools, fixture_repo, tmp_path):
    from tests.conftest import age_identity

    repo = fixture_repo("sops-substitute")
    inputs = list(load_yaml_docs(repo / "inputs" / "prod-secrets.yaml"))
    inputs.append(yaml.safe_load(f"""
apiVersion: v1
kind: Secret
metadata: {{name: sops-age, namespace: flux-system}}
stringData: {{age.agekey: "{age_identity()}"}}
"""))
    rev, _, result = _converge_repo(tools, repo, "clusters/prod", tmp_path, inputs)
    assert result.objects["Kustomization/flux-system/apps"].revision == f"main@sha1:{rev.sha}"
