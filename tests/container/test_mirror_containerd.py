"""The hosts.toml drdrill gives kind nodes, read by a real containerd (Debian's, the one kind
nodes run; started here on a private socket and root): images of ghcr.io and docker.io come
from the mirror, and a miss is answered by the mirror, never by the upstream."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.config import Config
from harness.mirror.artifacts import layer_from_files, push_image
from harness.mirror.nodes import node_config
from harness.mirror.server import MirrorRegistry
from harness.tools import MIRROR_TOOLS, ensure_tools

pytestmark = pytest.mark.container

CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")


@pytest.fixture
def containerd() -> Iterator[tuple[str, Path]]:
    if CONTAINERD is None or CTR is None:
        pytest.skip("containerd and ctr are not installed (Debian's docker.io brings them)")
    top = Path(tempfile.mkdtemp(prefix="drd-ctd-", dir="/tmp"))  # short: a unix socket path
    sock = top / "c.sock"
    (top / "config.toml").write_text(
        f'version = 2\nroot = "{top}/root"\nstate = "{top}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{sock}"\n')
    log = (top / "containerd.log").open("wb")
    proc = subprocess.Popen([CONTAINERD, "--config", str(top / "config.toml")], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert proc.poll() is None, (top / "containerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "containerd did not start"
            time.sleep(0.1)
        yield str(sock), top
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
        subprocess.run(["umount", "-R", str(top / "root")], capture_output=True, check=False)
        shutil.rmtree(top, ignore_errors=True)


def _fetch(sock: str, hosts: Path, ref: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CTR or "ctr", "--address", sock, "--namespace", "drdrill-test",
                           "content", "fetch", "--hosts-dir", str(hosts), ref],
                          capture_output=True, text=True, timeout=60, check=False)


def test_containerd_pulls_every_registry_from_the_mirror(containerd, tmp_path):
    sock, _ = containerd
    binary = ensure_tools(Config.from_env(), MIRROR_TOOLS)["registry"].path
    mirror = MirrorRegistry(binary, tmp_path / "storage", tmp_path / "work",
                            f"test-{uuid.uuid4().hex[:6]}")
    with mirror:
        client = mirror.client()
        for repo in ("ghcr.io/drdrill-fixtures/busybox", "docker.io/library/busybox"):
            layer = layer_from_files({"bin/x": repo.encode()}, tmp_path / "l.tar")
            push_image(client, repo, "1.36", [layer], {"architecture": "amd64", "os": "linux"})
        hosts = node_config(["ghcr.io"], mirror.address).write(tmp_path / "certs.d")
        assert (hosts / "docker.io" / "hosts.toml").is_file()  # common registries too

        # ctr takes only full names (the CRI plugin normalises `busybox` to these itself).
        for ref in ("ghcr.io/drdrill-fixtures/busybox:1.36", "docker.io/library/busybox:1.36"):
            res = _fetch(sock, hosts, ref)
            assert res.returncode == 0, res.stderr
        miss = _fetch(sock, hosts, "ghcr.io/nobody/absent:1")
        assert miss.returncode != 0
        stats = mirror.pulls()
    assert stats.manifests["ghcr.io/drdrill-fixtures/busybox"] >= 1
    assert stats.manifests["docker.io/library/busybox"] >= 1
    # The miss was asked of the mirror (and only there: the upstream server is the mirror).
    assert any(m.startswith("ghcr.io/nobody/absent") for m in stats.misses), stats


def test_registries_policy_falls_back_through_the_allow_list_proxy(containerd, tmp_path):
    """`--egress registries`: what the mirror lacks, containerd asks the upstream through the
    proxy, which refuses a host not on its list (before any lookup) and logs it."""
    import os

    from harness.mirror.proxy import AllowListProxy

    if shutil.which("tinyproxy") is None:
        pytest.skip("tinyproxy is not installed (.ci/run installs Debian's)")
    sock, _ = containerd
    binary = ensure_tools(Config.from_env(), MIRROR_TOOLS)["registry"].path
    with MirrorRegistry(binary, tmp_path / "storage", tmp_path / "work",
                        f"test-{uuid.uuid4().hex[:6]}") as mirror, \
            AllowListProxy(("registry.example.invalid",), tmp_path / "proxy",
                           f"test-{uuid.uuid4().hex[:6]}") as proxy:
        hosts = node_config(["ghcr.io"], mirror.address, fallback=True).write(tmp_path / "h")
        assert 'server = "https://ghcr.io"' in (hosts / "ghcr.io" / "hosts.toml").read_text()
        env = {**os.environ, "HTTPS_PROXY": proxy.url, "HTTP_PROXY": proxy.url,
               "NO_PROXY": "127.0.0.1"}
        res = subprocess.run([CTR or "ctr", "--address", sock, "--namespace", "drdrill-test",
                              "content", "fetch", "--hosts-dir", str(hosts),
                              "ghcr.io/nobody/absent:1"], capture_output=True, text=True,
                             timeout=60, check=False, env=env)
        assert res.returncode != 0
        refused = proxy.refused()
        misses = mirror.pulls().misses
    assert any(m.startswith("ghcr.io/nobody/absent") for m in misses)  # the mirror first
    assert {r["host"] for r in refused} == {"ghcr.io"}, refused  # then the proxy said no
