"""Transient faults against the real embedded apiserver/etcd, and secrets kept out of reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
from harness.providers import ProviderContext
from harness.providers.embedded import EmbeddedProvider
from harness.tools import EMBEDDED_TOOLS, FLUX_TOOLS, HELM_TOOLS, ensure_tools, flux_crds
from tests.conftest import age_identity, planted_secrets, sample_inputs

pytestmark = pytest.mark.integration
TOP = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tools():
    # helm-controller too: the sample repo installs a chart (infrastructure/services)
    return ensure_tools(Config.from_env(), (*EMBEDDED_TOOLS, *FLUX_TOOLS, *HELM_TOOLS,
                                            "kustomize"))


@pytest.mark.parametrize(("component", "down_s"), [("kube-apiserver", 0.5), ("etcd", 3.0)])
def test_converges_through_a_control_plane_restart(tools, sample_repo, tmp_path, component,
                                                   down_s):
    rev = resolve_revision(sample_repo)
    model = analyze(rev.path, "clusters/homelab", kustomize=tools["kustomize"].path)
    inputs = sample_inputs()
    with GitServer(rev, tmp_path / "git") as git, EmbeddedProvider(ProviderContext(
            f"fault-{component}", "t", tmp_path / "c", Config.from_env(), tools)) as cluster:
        api = api_client(cluster.kubeconfig)
        try:
            settings = FluxSettings(profile="fast")
            FluxRuntime(cluster, api, tools, flux_crds(Config.from_env()), settings).install()
            apply_all(api, inputs)
            apply_all(api, sync_objects(url=git.url, branch=rev.branch, path=model.cluster_path,
                                        settings=settings))
            fired = threading.Event()

            def inject(done, total, obj):
                # Once the source is ready, take the component away mid-converge.
                if not fired.is_set() and obj.kind == "GitRepository":
                    fired.set()
                    threading.Thread(target=cluster.restart_component, args=(component,),
                                     kwargs={"down_s": down_s}, daemon=True).start()

            result = Converger(api, f"main@sha1:{rev.sha}", model.expected(),
                               kinds=(*DEFAULT_KINDS, HELM_RELEASES),
                               on_change=inject).run(timeout_s=180)
        finally:
            api.close()
    assert fired.is_set()
    assert all(t.ready_after_s is not None for t in result.objects.values())
    assert "Kustomization/flux-system/apps" in result.objects


def test_secrets_never_reach_the_report(fixture_repo, tmp_path):
    """Plant an age key and a marker secret; grep every artifact the drill wrote."""
    repo = fixture_repo("sops-substitute")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    marker = "drdrill-planted-" + os.urandom(6).hex()
    age = age_identity()
    prod = next(iter(load_yaml_docs(repo / "inputs" / "prod-secrets.yaml")))
    planted, markers = planted_secrets()
    prod["stringData"] = {k: marker for k in (prod.get("stringData") or {"DB_PASSWORD": ""})}
    prod["stringData"]["planted"] = planted
    (inputs / "prod-secrets.yaml").write_text(yaml.safe_dump(prod))
    (inputs / "sops-age.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "sops-age", "namespace": "flux-system"},
        "stringData": {"age.agekey": age}}))
    out = tmp_path / "report"
    env = {**os.environ, "DRDRILL_STATE_DIR": str(tmp_path / "state")}
    res = subprocess.run([sys.executable, "-m", "harness.cli", "drill", "--repo", str(repo),
                          "--cluster", "clusters/prod", "--inputs", str(inputs),
                          "--report-dir", str(out)], env=env, cwd=TOP, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((out / "report.json").read_text())
    assert {i["name"] for i in report["manual_inputs"]} >= {"sops-age", "prod-secrets"}
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 10  # report, junit, allure, diagnostics, logs
    for path in files:
        text = path.read_bytes().decode("utf-8", "replace")
        assert marker not in text, path
        assert age not in text and "AGE-SECRET-KEY-1" not in text, path
        assert "PRIVATE KEY-----" not in text, path
        assert not [m for m in markers if m in text], path
    console = res.stdout + res.stderr
    assert marker not in console and age not in console
    assert not [m for m in markers if m in console]


def test_every_secret_form_is_redacted_in_every_artifact_and_the_console(tmp_path):
    """Plant every secret form in the component logs, a phase error, a progress line and a log
    warning of a drill (the `procs` cluster of the fault matrix); grep everything it wrote."""
    from tests.conftest import FIXTURE_REPOS, git_commit_tree

    planted, markers = planted_secrets()
    repo = tmp_path / "repo"
    git_commit_tree([FIXTURE_REPOS / "chain3"], repo)
    out = tmp_path / "report"
    env = {**os.environ, "DRDRILL_STATE_DIR": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1",
           "DRDRILL_FAULT": "procs,plant", "DRDRILL_PLANT": planted,
           "DRDRILL_PLANT_TOKEN": markers[0]}
    res = subprocess.run([sys.executable, "-m", "tests.integration.faultkit", "drill",
                          "--provider", "procs", "--repo", str(repo), "--cluster", "clusters/dev",
                          "--report-dir", str(out)], env=env, cwd=TOP, capture_output=True,
                         text=True, timeout=300)
    console = res.stdout + res.stderr
    assert res.returncode == 2 and "planted failure" in console, console
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "broken" and "K3S_TOKEN=[REDACTED]" in report["error"]
    files = [p for p in out.rglob("*") if p.is_file()]
    logs = [p for p in files if p.suffix == ".log"]
    assert logs and all("K3S_TOKEN=[REDACTED]" in p.read_text() for p in logs)
    for path in files:
        text = path.read_bytes().decode("utf-8", "replace")
        assert not [m for m in markers if m in text], path
        assert "PRIVATE KEY-----" not in text, path
    assert "K3S_TOKEN=[REDACTED]" in console and "procs provider describing itself" in console
    assert not [m for m in markers if m in console], console
