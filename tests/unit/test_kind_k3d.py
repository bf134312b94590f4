"""kind and k3d up to the CLI boundary: generated configs, argv, errors when the CLI or Docker
is missing, and parsing of what the CLIs print (tests/data/recorded, see its README for which
files are recordings and which are samples). Live clusters: tests/container/test_live_kind_k3d.py.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from pathlib import Path

import pytest
import yaml

from harness.config import Config
from harness.errors import CommandError, ConfigError, DockerUnavailable, ProviderError
from harness.flux import FluxSettings
from harness.flux import install as flux_install
from harness.providers import (
    ProviderContext,
    SupportsFluxInstall,
    SupportsGitAccess,
    registry,
)
from harness.providers import k3d as k3d_mod
from harness.providers import kind as kind_mod
from harness.tools import flux_version

pytestmark = pytest.mark.unit

RECORDED = Path(__file__).resolve().parents[1] / "data" / "recorded"
RUN_ID = "20261128T151500Z-9b1e2d"


def ctx(tmp_path, **options) -> ProviderContext:
    return ProviderContext(run_id=RUN_ID, cluster_name="r1", workdir=tmp_path / "r1",
                           # An empty tools cache and no builds: a missing CLI stays missing.
                           config=Config.from_env(state_dir=tmp_path / "state",
                                                  cache_dir=tmp_path / "cache",
                                                  allow_build=False),
                           options=options)


def fake_cli(bin_dir: Path, name: str, script: str) -> Path:
    """A stand-in for a CLI: records its argv (one line per call) and runs `script`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f'#!/bin/sh\necho "$0 $*" >> "{bin_dir}/calls.log"\n{script}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def only_fakes(tmp_path, monkeypatch):
    """PATH holds the fake CLIs plus the few tools their scripts use, nothing else (so a real
    docker/kind/k3d on this machine cannot answer instead)."""
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("cat", "cp", "printf", "echo"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def calls(bin_dir: Path) -> list[str]:
    path = bin_dir / "calls.log"
    return path.read_text().splitlines() if path.exists() else []


DOCKER_OK = """case "$1 $2" in
  "system info") echo '{"ServerVersion":"20.10.24+dfsg1","ID":"x"}' ;;
  "network ls") echo "" ;;
  "network create") echo "f00d" ;;
  "network rm") echo "$3" ;;
  "network inspect") cat "NETINSPECT" ;;
  "ps "*) [ -f "NETINSPECT.ps" ] && cat "NETINSPECT.ps"; true ;;
  *) echo "unexpected docker $*" >&2; exit 9 ;;
esac"""


# -- names, configs, argv ------------------------------------------------------------------

def test_cluster_names_carry_the_run_id_or_a_stable_hash():
    assert kind_mod.cluster_name(RUN_ID, "r1") == "drdrill-20261128t151500z-9b1e2d-r1"
    short = kind_mod.cluster_name(RUN_ID, "r1", max_len=32)
    assert short.startswith("drdrill-") and short.endswith("-r1") and len(short) <= 32
    assert short == kind_mod.cluster_name(RUN_ID, "r1", max_len=32)  # gc can recompute it
    assert kind_mod.network_name(RUN_ID) == "drdrill-20261128t151500z-9b1e2d-net"


def test_kind_config_from_options(tmp_path):
    cfg = kind_mod.kind_config("c1", {"workers": 2, "kubernetes_version": "1.33.1",
                                      "port_mappings": ["8080:80", "5353:53/udp"]})
    assert cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4" and cfg["name"] == "c1"
    assert cfg["networking"] == {"apiServerAddress": "127.0.0.1", "apiServerPort": 0}
    assert [n["role"] for n in cfg["nodes"]] == ["control-plane", "worker", "worker"]
    assert {n["image"] for n in cfg["nodes"]} == {"kindest/node:v1.33.1"}
    assert cfg["nodes"][0]["extraPortMappings"] == [
        {"hostPort": 8080, "containerPort": 80, "listenAddress": "127.0.0.1", "protocol": "TCP"},
        {"hostPort": 5353, "containerPort": 53, "listenAddress": "127.0.0.1", "protocol": "UDP"}]
    plain = kind_mod.kind_config("c1", {})
    assert plain["nodes"] == [{"role": "control-plane"}]  # kind's default image
    assert kind_mod.kind_config("c", {"image": "my/node:v1"})["nodes"][0]["image"] == "my/node:v1"
    with pytest.raises(ConfigError):
        kind_mod.kind_config("c", {"port_mappings": ["80"]})
    with pytest.raises(ConfigError):
        kind_mod.kind_config("c", {"workers": -1})
    # the config the recorded kind run used is what we generate for that name
    recorded = yaml.safe_load((RECORDED / "kind-v0.29.0-create-no-registry.config.yaml")
                              .read_text())
    assert kind_mod.kind_config(recorded["name"], {}) == recorded


def test_kind_create_argv():
    cmd = kind_mod.kind_create_command("/usr/local/bin/kind", "c1", Path("/w/kind.yaml"),
                                       Path("/w/kubeconfig"), network="drdrill-x-net")
    assert cmd.argv == ("/usr/local/bin/kind", "create", "cluster", "--name", "c1",
                        "--config", "/w/kind.yaml", "--kubeconfig", "/w/kubeconfig",
                        "--wait", "120s")
    assert cmd.env == {"KIND_EXPERIMENTAL_DOCKER_NETWORK": "drdrill-x-net"}
    assert cmd.timeout_s and cmd.timeout_s >= 300


def test_k3d_config_from_options():
    cfg = k3d_mod.k3d_config("c1", RUN_ID, "net1", {"agents": 2, "k3s_version": "v1.31.5+k3s1",
                                                    "port_mappings": ["8080:80"]})
    assert cfg["apiVersion"] == "k3d.io/v1alpha5" and cfg["kind"] == "Simple"
    assert cfg["metadata"] == {"name": "c1"} and cfg["servers"] == 1 and cfg["agents"] == 2
    assert cfg["image"] == "rancher/k3s:v1.31.5-k3s1" and cfg["network"] == "net1"
    assert cfg["kubeAPI"] == {"hostIP": "127.0.0.1"}
    assert cfg["ports"] == [{"port": "127.0.0.1:8080:80", "nodeFilters": ["loadbalancer"]}]
    opts = cfg["options"]
    assert opts["kubeconfig"] == {"updateDefaultKubeconfig": False,
                                  "switchCurrentContext": False}
    labels = [x["label"] for x in opts["runtime"]["labels"]]
    assert f"drdrill.dev/run-id={RUN_ID}" in labels
    assert any(x.startswith("drdrill.dev/owner=") for x in labels)
    assert {"arg": "--disable=traefik", "nodeFilters": ["server:*"]} in opts["k3s"]["extraArgs"]
    assert k3d_mod.k3s_image({"kubernetes_version": "1.31.5"}) == "rancher/k3s:v1.31.5-k3s1"
    assert k3d_mod.k3s_image({}) is None
    assert k3d_mod.k3d_create_command("k3d", Path("/w/c.yaml")).argv == (
        "k3d", "cluster", "create", "--config", "/w/c.yaml")


# -- parsing recorded outputs ------------------------------------------------------------

def test_parse_recorded_kind_outputs():
    assert kind_mod.parse_kind_version((RECORDED / "kind-v0.29.0-version.stdout")
                                       .read_text()) == "v0.29.0"
    assert kind_mod.parse_kind_clusters(
        (RECORDED / "kind-v0.29.0-get-clusters-none.stdout").read_text()) == []
    assert kind_mod.parse_kind_clusters("drdrill-a-r1\nkind\n") == ["drdrill-a-r1", "kind"]
    with pytest.raises(ProviderError):
        kind_mod.parse_kind_version("something else")


def test_parse_recorded_docker_network_inspect():
    data = json.loads((RECORDED / "docker-20.10-network-inspect.json").read_text())
    assert kind_mod.network_gateway(data[0]) == "172.19.0.1"
    assert data[0]["Labels"]["drdrill.dev/run-id"]
    with pytest.raises(ProviderError):
        kind_mod.network_gateway({"Name": "v6only", "IPAM": {"Config": [{"Gateway": "fd::1"}]}})


def test_parse_k3d_cluster_list_sample():
    clusters = k3d_mod.parse_cluster_list(
        (RECORDED / "k3d-v5.8-cluster-list.sample.json").read_text())
    (c,) = clusters
    assert c.name == "drdrill-3f9c2a71d0-r1" and c.network.endswith("-net")
    assert (c.servers_running, c.servers, c.agents_running, c.agents) == (1, 1, 0, 1)
    assert not c.running  # the agent is stopped
    assert [(n, r) for n, r, _ in c.nodes] == [
        ("k3d-drdrill-3f9c2a71d0-r1-server-0", "server"),
        ("k3d-drdrill-3f9c2a71d0-r1-agent-0", "agent"),
        ("k3d-drdrill-3f9c2a71d0-r1-serverlb", "loadbalancer")]
    assert k3d_mod.parse_cluster_list("[]") == []
    with pytest.raises(ProviderError):
        k3d_mod.parse_cluster_list("INFO[0000] no JSON here")
    assert k3d_mod.parse_k3d_version(
        (RECORDED / "k3d-v5.8-version.sample.stdout").read_text()) == "v5.8.3"


# -- missing CLI, missing Docker, failing CLI ---------------------------------------------

def test_missing_cli_is_named(tmp_path, only_fakes):
    empty = Config(cache_dir=tmp_path / "cache", allow_build=False)
    ok, why = kind_mod.KindProvider.availability(empty)
    assert not ok and why.startswith("no kind on PATH and the pinned kind v") \
        and "DRDRILL_ALLOW_BUILD" in why
    ok, why = k3d_mod.K3dProvider.availability(empty)
    assert not ok and why == "the k3d CLI is not on PATH"
    for cls, cli in ((kind_mod.KindProvider, "kind"), (k3d_mod.K3dProvider, "k3d")):
        provider = cls(ctx(tmp_path))
        with pytest.raises(ProviderError) as err:
            provider.create()
        assert f"the {cli} CLI is not on PATH" in str(err.value)
        assert not (tmp_path / "r1").exists()  # cleaned up after the failed start


def test_providers_finds_the_pinned_kind_in_the_cache_as_the_drill_does(tmp_path, only_fakes):
    """No kind on PATH, but the pinned one in the tools cache: `drdrill providers` finds it
    (the drill would create with it), and goes on to name what else is missing."""
    from harness.tools import cache_path, load_manifest

    config = Config(cache_dir=tmp_path / "cache", allow_build=False)
    spec = load_manifest().tools["kind"]
    fake_cli(cache_path(config, spec).parent, "kind",
             f'echo "kind {spec.version} go1.24.2 linux/amd64"')
    ok, why = kind_mod.KindProvider.availability(config)
    assert not ok and f"kind {spec.version} found" in why and "docker CLI is not on PATH" in why


def test_missing_docker_is_named(tmp_path, only_fakes):
    fake_cli(only_fakes, "kind", 'echo "kind v0.29.0 go1.24.2 linux/amd64"')
    ok, why = kind_mod.KindProvider.availability(Config())
    assert not ok and "docker CLI is not on PATH" in why and "kind v0.29.0 found" in why
    with pytest.raises(DockerUnavailable) as err:
        kind_mod.KindProvider(ctx(tmp_path)).create()
    assert "docker CLI is not on PATH" in str(err.value)


def test_docker_engine_down_is_named(tmp_path, only_fakes):
    fake_cli(only_fakes, "docker", 'echo "Cannot connect to the Docker daemon at '
                                   'unix:///var/run/docker.sock. Is the docker daemon running?"'
                                   ' >&2; exit 1')
    fake_cli(only_fakes, "k3d", 'printf "k3d version v5.8.3\\nk3s version v1.31.5-k3s1 '
                                '(default)\\n"')
    ok, why = k3d_mod.K3dProvider.availability(Config())
    assert not ok and "no Docker engine answers" in why and "Is the docker daemon running" in why
    with pytest.raises(DockerUnavailable) as err:
        k3d_mod.K3dProvider(ctx(tmp_path)).create()
    assert "fix: start the Docker engine" in str(err.value)


def test_kind_create_failure_keeps_kinds_output_and_cleans_up(tmp_path, only_fakes):
    """The recorded failure of a kind create on a machine without registry access goes through
    the real run(): argv, exit code and kind's own message are in the error; the network the
    provider made is removed again, and kind is asked to delete the half-made cluster."""
    (only_fakes / "NETINSPECT").write_text((RECORDED / "docker-20.10-network-inspect.json")
                                           .read_text())
    fake_cli(only_fakes, "docker", DOCKER_OK.replace("NETINSPECT", str(only_fakes / "NETINSPECT")))
    stderr = RECORDED / "kind-v0.29.0-create-no-registry.stderr"
    fake_cli(only_fakes, "kind", f"""case "$1" in
  version) cat {RECORDED / 'kind-v0.29.0-version.stdout'} ;;
  create) cat {stderr} >&2; exit 1 ;;
  delete) echo "Deleting cluster \\"$4\\" ..." >&2 ;;
  get) cat {RECORDED / 'kind-v0.29.0-get-clusters-none.stderr'} >&2 ;;
esac""")
    # egress=open: no registry mirror (the recorded gateway is no address of this machine).
    provider = kind_mod.KindProvider(ctx(tmp_path, workers=1, image="kindest/node:v1.33.1",
                                         egress="open"))
    with pytest.raises(CommandError) as err:
        provider.create()
    e = err.value
    assert e.returncode == 1 and e.argv[1:4] == ["create", "cluster", "--name"]
    assert "failed to pull image" in str(e) and "kindest/node:v1.33.1" in str(e)
    assert "node image must be present locally" in str(e)
    log = calls(only_fakes)
    name = "drdrill-20261128t151500z-9b1e2d-r1"
    net = "drdrill-20261128t151500z-9b1e2d-net"
    assert any(c.endswith(f"network create --label drdrill.dev/run-id={RUN_ID} --label "
                          f"drdrill.dev/owner={kind_mod.owner_token()} {net}") for c in log)
    assert any(c.endswith(f"delete cluster --name {name} --kubeconfig "
                          f"{tmp_path / 'r1' / 'kubeconfig'}") for c in log)
    assert log[-1].endswith(f"network rm {net}")
    assert not (tmp_path / "r1").exists()
    assert provider.is_up() is False


def test_a_failing_kind_delete_raises_and_the_containers_are_named(tmp_path, only_fakes,
                                                                  monkeypatch):
    """A delete the CLI refuses is an error, not a log line; the network and the workdir are
    still removed; the gone-check asks Docker by kind's own label, not the (removed) kubeconfig."""
    (only_fakes / "NETINSPECT").write_text((RECORDED / "docker-20.10-network-inspect.json")
                                           .read_text())
    fake_cli(only_fakes, "docker", DOCKER_OK.replace("NETINSPECT", str(only_fakes / "NETINSPECT")))
    fake_cli(only_fakes, "kind", f"""case "$1" in
  version) cat {RECORDED / 'kind-v0.29.0-version.stdout'} ;;
  create) : > "$8" ;;
  delete) echo "ERROR: failed to delete cluster: permission denied" >&2; exit 1 ;;
esac""")
    monkeypatch.setattr(kind_mod, "wait_nodes_ready", lambda kc, expected, timeout: {})
    provider = kind_mod.KindProvider(ctx(tmp_path, image="kindest/node:v1.33.1", egress="open"))
    provider.create()
    (only_fakes / "NETINSPECT.ps").write_text(f"{provider.cluster}-control-plane\n")
    with pytest.raises(ProviderError) as err:
        provider.delete()
    assert "could not delete cluster" in str(err.value) and "permission denied" in str(err.value)
    assert "drdrill gc --run-id" in str(err.value)
    assert not (tmp_path / "r1").exists()
    assert calls(only_fakes)[-1].endswith(f"network rm {provider.network}")
    assert provider.leftovers() == [f"container {provider.cluster}-control-plane"]
    assert provider.is_up() is True  # the node container runs; no kubeconfig left to ask with
    (only_fakes / "NETINSPECT.ps").unlink()
    assert provider.leftovers() == [] and provider.is_up() is False


def test_k3d_lifecycle_through_the_cli_boundary(tmp_path, only_fakes, monkeypatch):
    waited: list[tuple[Path, int]] = []
    monkeypatch.setattr(k3d_mod, "wait_nodes_ready",
                        lambda kc, expected, timeout: waited.append((kc, expected)) or {})
    (only_fakes / "NETINSPECT").write_text((RECORDED / "docker-20.10-network-inspect.json")
                                           .read_text())
    fake_cli(only_fakes, "docker", DOCKER_OK.replace("NETINSPECT", str(only_fakes / "NETINSPECT")))
    listing = RECORDED / "k3d-v5.8-cluster-list.sample.json"
    fake_cli(only_fakes, "k3d", f"""case "$1 $2" in
  "version ") printf "k3d version v5.8.3\\nk3s version v1.31.5-k3s1 (default)\\n" ;;
  "cluster create") cp "$4" "{only_fakes}/created-config.yaml" ;;
  "kubeconfig get") printf "apiVersion: v1\\nkind: Config\\nclusters: []\\n" ;;
  "cluster list") cat {listing} ;;
  "cluster delete") echo "INFO[0000] Deleting cluster '$3'" >&2 ;;
esac""")
    provider = k3d_mod.K3dProvider(ctx(tmp_path, agents=1))
    provider.create()
    try:
        created = yaml.safe_load((only_fakes / "created-config.yaml").read_text())
        assert created == provider.config and created["network"] == provider.network
        kc = provider.kubeconfig
        assert kc.exists() and oct(kc.stat().st_mode & 0o777) == "0o600"
        assert waited == [(kc, 2)]  # the server and the one agent, every node Ready
        assert provider.describe()["k3d_version"] == "v5.8.3"
        state = provider.state()
        assert state is None  # the sample lists another cluster name
    finally:
        provider.delete()
    log = calls(only_fakes)
    assert any(c.endswith(f"cluster delete {provider.cluster}") for c in log)
    assert log[-1].endswith(f"network rm {provider.network}")


# -- Flux in-cluster, Git access -------------------------------------------------------------

def test_flux_manifests_use_the_pinned_images():
    docs = flux_install.flux_manifests(FluxSettings(requeue_dependency="2s", concurrent=4))
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert ("Deployment", "source-controller") in kinds
    assert ("Deployment", "kustomize-controller") in kinds
    assert ("Service", "source-controller") in kinds
    deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    for name, dep in deps.items():
        c = dep["spec"]["template"]["spec"]["containers"][0]
        assert c["image"] == f"ghcr.io/fluxcd/{name}:{flux_version()}"
        assert "--requeue-dependency=2s" in c["args"] and "--concurrent=4" in c["args"]
        assert dep["metadata"]["namespace"] == "flux-system"
        assert "hostNetwork" not in dep["spec"]["template"]["spec"]
    src = deps["source-controller"]["spec"]["template"]["spec"]["containers"][0]
    assert "--storage-adv-addr=source-controller.$(RUNTIME_NAMESPACE).svc.cluster.local." \
        in src["args"]
    lab = flux_install.flux_manifests(FluxSettings(), host_network_node="node-a",
                                  images=flux_install.flux_images(registry="registry.lan/fluxcd"))
    pod = next(d for d in lab if d["kind"] == "Deployment"
               and d["metadata"]["name"] == "source-controller")["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["nodeSelector"]["kubernetes.io/hostname"] == "node-a"
    assert pod["containers"][0]["image"].startswith("registry.lan/fluxcd/source-controller:")


def test_providers_declare_flux_install_and_git_access(tmp_path):
    for cls in (kind_mod.KindProvider, k3d_mod.K3dProvider):
        p = cls(ctx(tmp_path))
        assert isinstance(p, SupportsFluxInstall) and isinstance(p, SupportsGitAccess)
    names = registry()
    assert {"kind", "k3d", "lab"} <= set(names)


def test_relay_carries_connections_to_a_loopback_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    target = server.getsockname()[1]

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"hello " + conn.recv(100))

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    relay = kind_mod.Relay("127.0.0.1", target)
    try:
        url = kind_mod.relayed_url(f"http://127.0.0.1:{target}/repo.git", relay)
        assert url == f"http://127.0.0.1:{relay.address[1]}/repo.git"
        with socket.create_connection(relay.address, timeout=5) as c:
            c.sendall(b"git")
            c.shutdown(socket.SHUT_WR)
            assert c.recv(100) == b"hello git"
    finally:
        relay.close()
        server.close()
    with pytest.raises(OSError):
        socket.create_connection(relay.address, timeout=1)


def test_availability_is_reported_for_every_provider(monkeypatch):
    monkeypatch.delenv("DRDRILL_INVENTORY", raising=False)
    from harness.providers.lab import LabProvider

    ok, why = LabProvider.availability(Config())
    assert not ok and "--inventory" in why and "DRDRILL_INVENTORY" in why
    assert os.environ.get("DRDRILL_INVENTORY") is None


def test_a_broken_docker_fails_the_live_kind_drills_and_the_kind_fault_row(monkeypatch,
                                                                           tmp_path):
    """`.ci/run` must never go green with no kind drill run: when the Docker check errors, the
    live kind tests' fixture and the fault matrix's kind row raise, they do not skip."""
    from tests.container import test_live_kind_k3d as live
    from tests.integration import test_fault_matrix as matrix

    def broken() -> None:
        raise DockerUnavailable("docker: Cannot connect to the Docker daemon")

    monkeypatch.setattr(live, "check_docker", broken)
    monkeypatch.setattr(kind_mod, "check_docker", broken)
    fixture = live.clean_host._get_wrapped_function()  # the function under @pytest.fixture
    with pytest.raises(DockerUnavailable):
        next(fixture())
    with pytest.raises(DockerUnavailable):
        matrix.test_fault_kind("kind-SIGINT-kind-create", lambda name: tmp_path, tmp_path)
