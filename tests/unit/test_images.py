"""Offline image building blocks and the kind node recipe, without Docker: dpkg status
parsing, package subsets on a merged-/usr rootfs, docker-archive tarballs, the recipe hash,
the kind config's host adaptations, node readiness, and the CI runc wrapper."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from harness.images import kind_node, node_files
from harness.images.rootfs import (
    copy_packages,
    package_closure,
    write_docker_archive,
)
from harness.providers import kind as kind_mod

pytestmark = pytest.mark.unit

STATUS = """Package: libc6
Status: install ok installed
Depends: libgcc-s1

Package: libgcc-s1
Status: install ok installed
Pre-Depends: libc6 (>= 2.34)

Package: iptables
Status: install ok installed
Depends: libxtables12 (= 1.8.9-2), libc6 (>= 2.34) | libc6-udeb,
 netbase

Package: libxtables12
Status: install ok installed
Depends: libc6

Package: netbase
Status: deinstall ok config-files
"""


def fake_rootfs(root: Path) -> Path:
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr/sbin").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")  # merged /usr, as bookworm
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(STATUS)
    (root / "usr/lib/x86_64-linux-gnu/libc.so.6").write_text("libc")
    (root / "usr/sbin/iptables-nft").write_text("#!/bin/sh\n")
    (root / "etc/alternatives").mkdir(parents=True)
    (root / "etc/alternatives/iptables").symlink_to("/usr/sbin/iptables-nft")
    (root / "usr/sbin/iptables").symlink_to("/etc/alternatives/iptables")
    (root / "var/lib/dpkg/info/libc6:amd64.list").write_text(
        "/.\n/lib\n/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu/libc.so.6\n")
    (root / "var/lib/dpkg/info/iptables.list").write_text("/.\n/usr\n/usr/sbin\n"
                                                           "/usr/sbin/iptables-nft\n")
    return root


def test_closure_follows_depends_and_skips_what_is_not_installed(tmp_path):
    root = fake_rootfs(tmp_path / "rootfs")
    assert package_closure(root, ["iptables"]) == ["iptables", "libc6", "libgcc-s1",
                                                   "libxtables12"]
    assert package_closure(root, ["libc6"]) == ["libc6", "libgcc-s1"]


def test_copy_packages_keeps_merged_usr_and_alternatives(tmp_path):
    root = fake_rootfs(tmp_path / "rootfs")
    dest = tmp_path / "dest"
    copy_packages(root, ["libc6", "iptables"], dest)
    assert (dest / "lib").is_symlink() and (dest / "lib/x86_64-linux-gnu/libc.so.6").exists()
    assert (dest / "usr/lib/x86_64-linux-gnu/libc.so.6").read_text() == "libc"
    # update-alternatives' link is in no package list, yet iptables must be on PATH
    assert str((dest / "usr/sbin/iptables").readlink()) == "/etc/alternatives/iptables"
    assert str((dest / "etc/alternatives/iptables").readlink()) == "/usr/sbin/iptables-nft"
    with pytest.raises(Exception, match="not installed"):
        copy_packages(root, ["conntrack"], dest)


def test_docker_archive_has_manifest_config_and_layer(tmp_path):
    root = tmp_path / "root"
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/tool").write_text("#!/bin/sh\n")
    dest = tmp_path / "img.tar"
    write_docker_archive(root, dest, tags=["localhost/x/tool:v1"], entrypoint=["/tool"],
                         env={"PATH": "/usr/local/bin"}, user="65534:65534")
    with tarfile.open(dest) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == ["localhost/x/tool:v1"]
        config = json.load(tar.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
        layer = tar.extractfile(manifest[0]["Layers"][0])
        assert layer is not None
        with tarfile.open(fileobj=layer) as inner:
            names = inner.getnames()
    assert config["config"]["Entrypoint"] == ["/tool"] and config["config"]["User"] == "65534:65534"
    assert config["rootfs"]["diff_ids"][0].startswith("sha256:")
    assert "./usr/local/bin/tool" in names


def test_node_image_tag_changes_with_any_input(tmp_path):
    shas = {n: "a" * 64 for n in (*kind_node.node_tools(), "pause")}
    base = kind_node.Inputs(binaries={}, shas=shas)
    assert base.tag().startswith("drdrill/kind-node:v1.35.4-")
    assert base.tag() == kind_node.Inputs(binaries={}, shas=dict(shas)).tag()
    bumped = kind_node.Inputs(binaries={}, shas={**shas, "kubelet": "b" * 64})
    assert bumped.tag() != base.tag()
    images = {c.image for c in kind_node.components()}
    assert {"registry.k8s.io/kube-apiserver:v1.35.4", "registry.k8s.io/pause:3.10.1",
            "registry.k8s.io/etcd:v3.6.16", "registry.k8s.io/coredns/coredns:v1.13.1",
            kind_node.BUSYBOX_IMAGE} <= images
    files = kind_node.node_files(kind_node.components())
    assert 'sandbox_image = "registry.k8s.io/pause:3.10.1"' in files[
        "etc/containerd/config.toml"][0]
    assert files["kind/version"][0] == "v1.35.4\n"
    # the units that would act on the host from a privileged container are masked
    assert "systemd-sysctl.service" in node_files.MASKED_UNITS


def test_kind_config_adapts_to_the_host_and_the_node_image():
    tune = kind_mod.NodeTuning(drdrill_node=True, etcd_tag="v3.6.16", cgroup_v1=True,
                               restrict_oom_score_adj=True)
    cfg = kind_mod.kind_config("c", {"workers": 1}, image="drdrill/kind-node:v1", tuning=tune)
    assert {n["image"] for n in cfg["nodes"]} == {"drdrill/kind-node:v1"}
    assert "failCgroupV1: false" in cfg["kubeadmConfigPatches"][0]
    assert "imageTag: v3.6.16" in cfg["kubeadmConfigPatches"][1]
    assert "restrict_oom_score_adj = true" in cfg["containerdConfigPatches"][0]
    plain = kind_mod.kind_config("c", {})
    assert "kubeadmConfigPatches" not in plain and "containerdConfigPatches" not in plain


def test_node_conditions_name_every_node():
    nodes = [{"metadata": {"name": "a"},
              "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
             {"metadata": {"name": "b"},
              "status": {"conditions": [{"type": "Ready", "status": "False",
                                         "reason": "KubeletNotReady",
                                         "message": "cni plugin not initialized"}]}},
             {"metadata": {"name": "c"}, "status": {}}]
    got = kind_mod.node_conditions(nodes)
    assert got["a"] == "True"
    assert got["b"] == "False: KubeletNotReady cni plugin not initialized"
    assert got["c"].startswith("Unknown")


def test_runc_wrapper_drops_only_missing_capabilities(tmp_path, monkeypatch):
    wrapper = Path(__file__).resolve().parents[2] / ".ci" / "runc-capfilter"
    # The script execs runc when run; load its functions without the final call.
    source = wrapper.read_text().replace("\nmain(sys.argv[1:])", "")
    ns: dict[str, object] = {"__name__": "capfilter"}
    exec(compile(source, str(wrapper), "exec"), ns)
    monkeypatch.setitem(ns, "missing_caps", lambda: {"CAP_SYS_RESOURCE"})
    spec = {"process": {"capabilities": {"bounding": ["CAP_CHOWN", "CAP_SYS_RESOURCE"],
                                         "effective": ["CAP_SYS_RESOURCE"]}}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(spec))
    ns["filter_caps"](str(path), "process")  # type: ignore[operator]
    caps = json.loads(path.read_text())["process"]["capabilities"]
    assert caps == {"bounding": ["CAP_CHOWN"], "effective": []}
    proc = tmp_path / "process.json"
    proc.write_text(json.dumps({"capabilities": {"permitted": ["CAP_SYS_RESOURCE", "CAP_KILL"]}}))
    ns["filter_caps"](str(proc), None)  # type: ignore[operator]
    assert json.loads(proc.read_text())["capabilities"] == {"permitted": ["CAP_KILL"]}
    assert ns["option"](["exec", "--process", "/p.json", "id"], ("--process", "-p")) == "/p.json"  # type: ignore[operator]


def test_node_entrypoint_locks_egress_to_the_run_before_init(tmp_path):
    import subprocess

    from harness.images.node_files import POD_SUBNET
    from harness.providers.kind import NodeTuning, kind_config

    script = kind_node.node_files(kind_node.components())["usr/local/bin/entrypoint"][0]
    assert "@POD_SUBNET@" not in script
    lock = script.index("lock_egress iptables 4")
    assert lock < script.index('exec "$@"')
    assert f"-d {POD_SUBNET} -j RETURN" in script and "-j REJECT" in script
    (tmp_path / "entrypoint").write_text(script)
    subprocess.run(["bash", "-n", str(tmp_path / "entrypoint")], check=True)
    cfg = kind_config("c", {}, image="img", tuning=NodeTuning(drdrill_node=True))
    assert cfg["networking"]["podSubnet"] == POD_SUBNET
    assert "podSubnet" not in kind_config("c", {}, image="kindest/node:x")["networking"]
