"""Full drills on real kind / k3d clusters: `nox -s drill-kind`, `nox -s drill-k3d`.

kind runs here for real: drdrill builds its own node image offline (Debian rootfs, the pinned
kubelet/kubeadm and kubeadm's component images; harness/images/kind_node.py) and the Flux
controllers' images from the pinned binaries, so nothing is pulled. These tests are marked
`kind` (deselect with `-m "not kind"`); they need Docker that can start privileged containers
(.ci/docker-up sets that up on CI machines whose root lacks a capability).

k3d still needs a pullable or preloaded rancher/k3s image (no k3s binary can be built here):
it skips unless one is present or DRDRILL_LIVE_CLUSTERS=1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.config import Config
from harness.drill import DrillOptions, new_run_id, run_drill
from harness.providers.kind import check_docker
from tests.container import labhost as lh

pytestmark = pytest.mark.container

SYSCTLS = ("kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom",
           "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "kernel/pid_max")


def _can_create(cli: str, image_repo: str) -> None:
    if shutil.which(cli) is None:
        pytest.skip(f"the {cli} CLI is not on PATH")
    check_docker()  # k3d may skip for want of its image, never because Docker broke
    if os.environ.get("DRDRILL_LIVE_CLUSTERS") == "1":
        return
    local = subprocess.run(["docker", "image", "ls", "-q", image_repo], capture_output=True,
                           text=True, check=False).stdout.split()
    if not local:
        pytest.skip(f"no {image_repo} image in the local Docker and DRDRILL_LIVE_CLUSTERS is "
                    "not 1 (set it where the images can be pulled)")


def _out(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False).stdout


def host_state() -> dict[str, object]:
    """What a kind run could leave on this machine: links, iptables rules, mounts, cgroups of
    containers, and the host's non-namespaced kernel tunables that kubelet sets."""
    iptables = {t: sorted(line for line in _out("iptables-save", "-t", t).splitlines()
                          if not line.startswith(("#", ":")))
                for t in ("filter", "nat")} if shutil.which("iptables-save") else {}
    # cgroups of containers that no longer exist (other tests' live containers have theirs).
    live = set(_out("docker", "ps", "-aq", "--no-trunc").split())
    base = Path("/sys/fs/cgroup/memory/docker")
    cgroups = sorted(p.name for p in base.glob("*") if p.is_dir() and p.name not in live) \
        if base.is_dir() else []
    # veth pairs come and go with other tests' containers; bridges and the rest are compared.
    links = [name for name in re.findall(r"^\d+: ([^:@]+)", _out("ip", "-o", "link"), re.M)
             if not name.startswith("veth")]
    return {
        "links": sorted(links),
        "iptables": iptables,
        "mounts": sorted(line.split()[1] for line in
                         Path("/proc/self/mounts").read_text().splitlines()),
        "cgroups": cgroups,
        "sysctls": {k: Path("/proc/sys", k).read_text().strip() for k in SYSCTLS
                    if Path("/proc/sys", k).exists()},
    }


def _diff(before: dict[str, object], after: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, old in before.items():
        new = after[key]
        if old != new:
            out[key] = {"before": old, "after": new}
    return out


def _drill(provider: str, repo: Path, cluster: str, tmp_path: Path,
           **options: object) -> dict[str, object]:
    run_id = new_run_id("live")
    out = tmp_path / "report"
    report, _ = run_drill(DrillOptions(
        repo=repo, cluster=cluster, provider=provider,
        report_dir=out, run_id=run_id, converge_timeout_s=600,
        config=Config.from_env(state_dir=tmp_path / "state"), provider_options=dict(options)))
    data = json.loads((out / "report.json").read_text())
    assert report.verdict == "passed", data.get("error")
    assert data["time_to_ready_s"] > 0
    left = lh.containers_with_label(run_id) + lh.networks_with_label(run_id)
    assert not left, f"containers/networks left behind: {left}"
    assert not data["leftovers"], data["leftovers"]
    return data


def _kind_rounds(data: dict[str, object], nodes: int) -> list[dict[str, object]]:
    """Both rounds' provider descriptions; each names every node Ready."""
    settings = data["settings"]
    assert isinstance(settings, dict)
    rounds = [settings["provider_rounds"][f"round{r}"] for r in (1, 2)]
    for rnd in rounds:
        assert rnd["kind_version"] == "v0.33.0"
        assert rnd["node_image"].startswith("drdrill/kind-node:v1.35.4-")
        ready = rnd["timings"]["nodes_ready_s"]
        assert len(ready) == nodes, ready
        assert rnd["timings"]["kind_create_s"] > 0
        images = rnd["flux_images"]
        assert images["source-controller"].endswith(":v1.9.3")
    phases = [(p["name"], p["outcome"]) for p in data["phases"]]
    assert phases.count(("provision", "passed")) == 2 and ("disaster", "passed") in phases
    return rounds


@pytest.fixture
def clean_host():
    """The machine is as it was after the drill (containers, networks, links, rules, mounts,
    cgroups, kernel tunables). A Docker that does not answer fails the kind drills: `.ci/run`
    must never go green with no kind drill run."""
    check_docker()
    before = host_state()
    yield
    assert _diff(before, host_state()) == {}


@pytest.mark.kind
@pytest.mark.slow
def test_full_rebuild_on_kind_two_nodes(fixture_repo, tmp_path, clean_host):
    """Real kubelets on two nodes, real Flux pods, the workload's pods really Ready; the
    disaster deletes the node containers."""
    data = _drill("kind", fixture_repo("kind-apps"), "clusters/dev", tmp_path, workers=1)
    rounds = _kind_rounds(data, nodes=2)
    assert {o["name"] for o in data["objects"]} >= {"infrastructure", "apps"}
    assert rounds[0]["cluster"] != rounds[1]["cluster"]
    for rnd in rounds:  # the disaster and the teardown really removed the node containers
        left = _out("docker", "ps", "-aq", "--filter",
                    f"label=io.x-k8s.kind.cluster={rnd['cluster']}").split()
        assert left == [], f"node containers of {rnd['cluster']} still exist"


@pytest.mark.kind
@pytest.mark.slow
def test_kind_helm_release_converges(fixture_repo, tmp_path, clean_host):
    data = _drill("kind", fixture_repo("kind-helm"), "clusters/dev", tmp_path)
    rounds = _kind_rounds(data, nodes=1)
    assert rounds[0]["flux_images"]["helm-controller"].endswith(":v1.6.2")
    assert any(o["kind"] == "HelmRelease" and o["name"] == "hello" for o in data["objects"])


@pytest.mark.kind
@pytest.mark.slow
def test_kind_flux_bootstrap_repo_with_components_converges(fixture_repo, tmp_path, clean_host):
    data = _drill("kind", fixture_repo("kind-bootstrap"), "clusters/staging", tmp_path)
    _kind_rounds(data, nodes=1)
    text = json.dumps(data)
    assert "gotk-components.yaml" in text and "ssh://git@github.com/example/fleet" in text


@pytest.mark.k3d
@pytest.mark.slow
def test_full_rebuild_on_k3d(fixture_repo, tmp_path):
    _can_create("k3d", "rancher/k3s")
    data = _drill("k3d", fixture_repo("chain3"), "clusters/dev", tmp_path)
    assert data["settings"]["provider"]["k3d_version"]
