"""The kind provider asks harness.mirror for its nodes' registry configuration: up to the kind
CLI boundary (a fake kind records the config it was given), with the real pinned registry
listening on the network's gateway (here 127.0.0.1, the recorded network's gateway rewritten)."""

from __future__ import annotations

import json
import urllib.request

import pytest
import yaml

from harness.config import Config
from harness.errors import CommandError
from harness.mirror.nodes import CERTS_DIR, CONTAINERD_PATCH
from harness.providers import ProviderContext
from harness.providers import kind as kind_mod
from harness.tools import MIRROR_TOOLS, ensure_tools
from tests.unit.test_kind_k3d import DOCKER_OK, RECORDED, RUN_ID, calls, fake_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def only_fakes(tmp_path, monkeypatch):
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("cat", "cp", "printf", "echo"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def test_kind_nodes_pull_through_the_mirror_on_the_gateway(tmp_path, only_fakes):
    registry_dir = ensure_tools(Config.from_env(), MIRROR_TOOLS)["registry"].path.parent
    inspect = json.loads((RECORDED / "docker-20.10-network-inspect.json").read_text())
    inspect[0]["IPAM"]["Config"][0]["Gateway"] = "127.0.0.1"
    (only_fakes / "NETINSPECT").write_text(json.dumps(inspect))
    fake_cli(only_fakes, "docker", DOCKER_OK.replace("NETINSPECT", str(only_fakes / "NETINSPECT")))
    seen = tmp_path / "seen"
    # kind create: keep the config it was given, then fail (no Docker cluster is made here).
    fake_cli(only_fakes, "kind", f"""case "$1" in
  version) cat {RECORDED / 'kind-v0.29.0-version.stdout'} ;;
  create) cp "$6" {seen}.yaml; exit 1 ;;
  delete) echo deleted >&2 ;;
esac""")
    cfg = Config.from_env(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache",
                          tools_dir=registry_dir, allow_build=False)
    provider = kind_mod.KindProvider(ProviderContext(
        run_id=RUN_ID, cluster_name="r1", workdir=tmp_path / "r1", config=cfg,
        options={"image": "kindest/node:v1.33.1", "mirror_registries": ["ghcr.io", "x.io"]}))
    with pytest.raises(CommandError):
        provider.create()
    assert any(" create cluster " in c for c in calls(only_fakes))
    given = yaml.safe_load((tmp_path / "seen.yaml").read_text())
    assert CONTAINERD_PATCH in given["containerdConfigPatches"]
    mounts = given["nodes"][0]["extraMounts"]
    assert [m["containerPath"] for m in mounts] == [CERTS_DIR] and mounts[0]["readOnly"]
    described = provider.describe()["mirror"]
    # create failed: the provider deleted what it made, the mirror included, and kept its tally
    assert described["policy"] == "mirror" and described["address"].startswith("127.0.0.1:")
    assert {"ghcr.io", "x.io", "docker.io"} <= set(described["registries"])
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{described['address']}/v2/", timeout=2)
    assert described["storage"] == str(tmp_path / "cache" / "mirror")
    assert not (tmp_path / "r1").exists()


def test_registries_policy_adds_the_proxy_and_its_containerd_dropin(tmp_path, only_fakes):
    import shutil as sh

    from harness.mirror.nodes import PROXY_DROPIN

    if sh.which("tinyproxy", path="/usr/bin:/usr/sbin:/bin") is None:
        pytest.skip("tinyproxy is not installed (.ci/run installs Debian's)")
    registry_dir = ensure_tools(Config.from_env(), MIRROR_TOOLS)["registry"].path.parent
    inspect = json.loads((RECORDED / "docker-20.10-network-inspect.json").read_text())
    inspect[0]["IPAM"]["Config"][0]["Gateway"] = "127.0.0.1"
    (only_fakes / "NETINSPECT").write_text(json.dumps(inspect))
    fake_cli(only_fakes, "docker", DOCKER_OK.replace("NETINSPECT", str(only_fakes / "NETINSPECT")))
    seen = tmp_path / "seen"
    fake_cli(only_fakes, "kind", f"""case "$1" in
  version) cat {RECORDED / 'kind-v0.29.0-version.stdout'} ;;
  create) cp "$6" {seen}.yaml; cp {tmp_path}/r1/mirror/containerd-proxy.conf {seen}.conf;
          exit 1 ;;
  delete) echo deleted >&2 ;;
esac""")
    cfg = Config.from_env(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache",
                          tools_dir=registry_dir, allow_build=False)
    provider = kind_mod.KindProvider(ProviderContext(
        run_id=RUN_ID, cluster_name="r1", workdir=tmp_path / "r1", config=cfg,
        options={"image": "kindest/node:v1.33.1", "mirror_registries": ["ghcr.io"],
                 "egress": "registries"}))
    with pytest.raises(CommandError):
        provider.create()
    given = yaml.safe_load((tmp_path / "seen.yaml").read_text())
    paths = [m["containerPath"] for m in given["nodes"][0]["extraMounts"]]
    assert paths == [CERTS_DIR, PROXY_DROPIN]
    dropin = (tmp_path / "seen.conf").read_text()
    proxy = provider.describe()["mirror"]["proxy"]
    assert f'"HTTPS_PROXY={proxy["url"]}"' in dropin and proxy["url"].startswith("http://127.")
    assert "ghcr.io" in proxy["allowed"] and "pkg-containers.githubusercontent.com" in \
        proxy["allowed"]
    with pytest.raises(OSError):
        urllib.request.urlopen(proxy["url"], timeout=2)  # stopped with the cluster
