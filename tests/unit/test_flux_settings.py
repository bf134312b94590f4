"""FluxSettings -> flags: the repo's settings, Flux's defaults left to the binary, the profile
and options over them, one --feature-gates; and the builder owns only addresses and storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.flux.settings import HostAddrs, controller_flags
from harness.gitops.flux_config import FluxSettings, Setting, parse_flag

pytestmark = pytest.mark.unit


def test_gates_from_repo_and_scenario_merge_into_one_flag():
    repo = (Setting("kustomize-controller", "feature-gates/ExternalArtifact", "true",
                    "x.yaml:3"), Setting("kustomize-controller", "concurrent", "20", "x.yaml:9"))
    s = FluxSettings(repo=repo, extra_flags={"kustomize-controller": [
        "--feature-gates=CancelHealthCheckOnNewRevision=true"]})
    flags = s.flags("kustomize-controller")
    assert "--concurrent=20" in flags
    assert [f for f in flags if f.startswith("--feature-gates")] == [
        "--feature-gates=ExternalArtifact=true,CancelHealthCheckOnNewRevision=true"]
    by = {x.flag: x.source for x in s.effective("kustomize-controller")}
    assert by["--concurrent=20"] == "x.yaml:9"
    assert by["--requeue-dependency=30s"] == "Flux default"


def test_options_and_profile_override_the_repo_and_say_so():
    repo = (Setting("kustomize-controller", "requeue-dependency", "5s", "k.yaml:16"),)
    fast = FluxSettings(repo=repo, profile="fast")
    assert fast.flags("kustomize-controller") == ["--requeue-dependency=2s"]
    assert fast.effective("kustomize-controller")[1].origin == "profile"
    opt = FluxSettings(repo=repo, requeue_dependency="7s", concurrent=9)
    assert sorted(opt.flags("kustomize-controller")) == ["--concurrent=9",
                                                         "--requeue-dependency=7s"]


def test_parse_flag_reads_gate_lists_and_bare_flags():
    assert [(s.name, s.value) for s in parse_flag("c", "--feature-gates=A=true,B=false", "f",
                                                  "repo")] == [("feature-gates/A", "true"),
                                                               ("feature-gates/B", "false")]
    assert parse_flag("c", "--enable-x", "f", "repo")[0].flag == "--enable-x"
    assert parse_flag("c", "not a flag", "f", "repo") == []


def test_the_builder_owns_addresses_and_lets_the_repo_set_the_rest(tmp_path: Path):
    repo = (Setting("kustomize-controller", "watch-all-namespaces", "false", "k.yaml:2"),
            Setting("kustomize-controller", "no-remote-bases", "false", "k.yaml:3"))
    host = HostAddrs(tmp_path, 1, 2, 3, events_url="http://127.0.0.1:4/")
    flags = controller_flags("kustomize-controller", FluxSettings(repo=repo), host=host)
    assert "--watch-all-namespaces=false" in flags and "--watch-all-namespaces=true" not in flags
    assert "--no-remote-bases=false" in flags and "--no-remote-bases=true" not in flags
    assert "--events-addr=http://127.0.0.1:4/" in flags
    assert "--metrics-addr=127.0.0.1:2" in flags and "--enable-leader-election=false" in flags
    pod = controller_flags("helm-controller", FluxSettings(), events=True)
    assert "--events-addr=http://notification-controller.flux-system.svc.cluster.local./" in pod
    nc = controller_flags("notification-controller", FluxSettings(), host=HostAddrs(
        tmp_path, 1, 2, 3, events_url="http://127.0.0.1:4/", receiver_port=5))
    assert "--events-addr=127.0.0.1:4" in nc and "--receiverAddr=127.0.0.1:5" in nc


def test_pods_of_every_controller_get_their_services_volumes_and_events():
    from harness.flux.install import FLUX_ALL, flux_manifests

    images = {c: f"ghcr.io/fluxcd/{c}:v0" for c in FLUX_ALL}
    docs = flux_manifests(FluxSettings(profile="fast"), images=images)
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert set(services) == {"source-controller", "source-watcher", "notification-controller",
                             "webhook-receiver"}
    assert services["webhook-receiver"]["spec"]["selector"] == {"app": "notification-controller"}
    deps = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in docs
            if d["kind"] == "Deployment"}
    assert set(deps) == set(FLUX_ALL)
    for name in ("source-controller", "source-watcher", "image-reflector-controller"):
        assert any(v["name"] == "data" for v in deps[name]["volumes"]), name
    args = deps["kustomize-controller"]["containers"][0]["args"]
    assert "--events-addr=http://notification-controller.flux-system.svc.cluster.local./" in args
    assert "--requeue-dependency=2s" in args
    ports = {p["name"] for p in deps["notification-controller"]["containers"][0]["ports"]}
    assert {"http", "http-webhook"} <= ports
