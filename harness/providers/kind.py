"""kind clusters on the user's Docker, through the real `kind` CLI.

The cluster config is generated from the drill's options (workers, node image or Kubernetes
version, port mappings on 127.0.0.1) and the cluster runs on a Docker network of its own,
`drdrill-<run>`, labelled with the run id, so `drdrill gc` finds both by label.

Flux is installed in-cluster from the pinned release through `harness.flux.install`: the
controllers' Deployments use the images `ghcr.io/fluxcd/<controller>:<pinned version>`.
The harness's Git server listens on loopback only; `git_url` adds a relay on the Docker
network's gateway address (the host side of the bridge, reachable from the node containers and
nothing outside this machine's bridges) that carries connections to it.

This module also holds what kind and k3d share: the Docker check and the relay.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import logging
import re
import shutil
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from harness.command import Command, run
from harness.config import Config
from harness.errors import (
    CommandError,
    ConfigError,
    DockerUnavailable,
    ProviderError,
    ToolError,
)
from harness.flux.install import (
    FLUX_ALL,
    FLUX_CONTROLLERS,
    FLUX_IMAGE_REGISTRY,
    flux_images,
    install_flux_in_cluster,
)
from harness.gc import KEEP_LABEL, OWNER_LABEL, RUN_ID_LABEL
from harness.kube import api_client, request
from harness.pki import write_secret
from harness.procs import owner_token
from harness.providers import ClusterLifecycle, ProviderContext
from harness.tools import ResolvedTool, ensure_tools
from harness.waits import Deadline

log = logging.getLogger(__name__)

KIND_NODE_IMAGE_REPO = "kindest/node"
CREATE_TIMEOUT_S = 600.0


# -- names -------------------------------------------------------------------------------------

def cluster_name(run_id: str, cluster: str, *, max_len: int = 40) -> str:
    """`drdrill-<run id>-<cluster>`, lower-case DNS-label characters; runs with long ids get a
    stable hash instead (the same for `drdrill gc`, which recomputes it)."""
    slug = re.sub(r"[^a-z0-9]+", "-", run_id.lower()).strip("-")
    name = f"drdrill-{slug}-{cluster}"
    if len(name) > max_len:
        name = f"drdrill-{hashlib.sha256(run_id.encode()).hexdigest()[:10]}-{cluster}"
    return name[:max_len]


def network_name(run_id: str) -> str:
    return cluster_name(run_id, "net", max_len=60)


# -- Docker ----------------------------------------------------------------------------------

def docker_client() -> Any:
    from python_on_whales import DockerClient

    return DockerClient()


def check_docker() -> str:
    """The Docker engine's version, or DockerUnavailable saying what is missing."""
    from python_on_whales.client_config import ClientNotFoundError
    from python_on_whales.exceptions import DockerException

    try:
        info = docker_client().system.info()
    except ClientNotFoundError:
        raise DockerUnavailable("the docker CLI is not on PATH",
                                fix="install Docker (the CLI and an engine), e.g. "
                                    "apt-get install docker.io") from None
    except DockerException as exc:
        tail = (exc.stderr or "").strip().splitlines()[-1:] or ["(no output)"]
        raise DockerUnavailable(f"no Docker engine answers: {tail[0]}",
                                fix="start the Docker engine (systemctl start docker, or "
                                    "dockerd), and check DOCKER_HOST") from None
    version = str(getattr(info, "server_version", "") or "")
    if not version:
        raise DockerUnavailable("no Docker engine answers (docker info has no server version)",
                                fix="start the Docker engine and check DOCKER_HOST")
    return version


def network_gateway(inspect: Mapping[str, Any]) -> str:
    """The IPv4 gateway of a network from `docker network inspect` JSON (one element)."""
    for cfg in ((inspect.get("IPAM") or {}).get("Config") or []):
        gw = cfg.get("Gateway")
        if gw and ":" not in gw:
            return str(gw)
    raise ProviderError(f"network {inspect.get('Name')!r} has no IPv4 gateway")


def inspect_network(name: str) -> dict[str, Any]:
    """`docker network inspect` as JSON (through Command, so it is logged like every CLI)."""
    res = run(Command.of("docker", "network", "inspect", name).with_timeout(30))
    data = json.loads(res.stdout)
    if not data:
        raise ProviderError(f"docker network {name} does not exist")
    return dict(data[0])


def run_labels(run_id: str, *, keep: bool = False) -> dict[str, str]:
    """The labels every Docker resource of a run carries (`drdrill gc` reads them)."""
    return {RUN_ID_LABEL: run_id, OWNER_LABEL: owner_token(),
            **({KEEP_LABEL: "always"} if keep else {})}


def ensure_network(name: str, run_id: str, *, keep: bool = False) -> bool:
    """Create the run's network (labelled with the run id) unless it exists; -> created."""
    existing = run(Command.of("docker", "network", "ls", "-q", "--filter", f"name=^{name}$")
                   .with_timeout(30)).stdout.strip()
    if existing:
        return False
    labels = [a for k, v in run_labels(run_id, keep=keep).items() for a in ("--label", f"{k}={v}")]
    run(Command.of("docker", "network", "create", *labels, name).with_timeout(60))
    return True


def remove_network(name: str) -> None:
    """Remove a network; ProviderError when it is still there afterwards."""
    res = run(Command.of("docker", "network", "rm", name).with_timeout(60), check=False)
    if res.returncode != 0 and "No such network" not in res.stderr \
            and "not found" not in res.stderr:
        raise ProviderError(f"docker network rm {name} failed: {res.stderr.strip()}")


def docker_names(*args: str) -> list[str]:
    """Names from a `docker ps`/`docker network ls` filter query; ProviderError when Docker
    cannot answer (then nothing can be said to be gone)."""
    res = run(Command.of("docker", *args, "--format", "{{.Names}}" if args[0] == "ps"
                         else "{{.Name}}").with_timeout(30), check=False)
    if res.returncode != 0:
        raise ProviderError(f"docker {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout.split()


def cli_path(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ProviderError(f"the {name} CLI is not on PATH",
                            fix=f"install {name} (a release binary, or `go install` of its "
                                "module) and put it on PATH")
    return found


# -- a relay from the Docker bridge to a loopback port ----------------------------------------

class Relay:
    """Listen on `bind` (a Docker network's gateway) and carry each connection to
    127.0.0.1:`target_port`. Containers on that network reach the harness's loopback Git
    server through it; nothing else is exposed."""

    def __init__(self, bind: str, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((bind, 0))
        except OSError as exc:
            self._sock.close()
            raise ProviderError(f"cannot listen on the Docker gateway {bind}: {exc}") from None
        self._sock.listen(32)
        self.address: tuple[str, int] = self._sock.getsockname()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True,
                                        name=f"relay-{bind}-{self.address[1]}")
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._carry, args=(conn,), daemon=True).start()

    def _carry(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            # A reset on either side just ends the copy; the other direction is told by the
            # half-close.
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pipe, args=(upstream, conn), daemon=True)
        back.start()
        pipe(conn, upstream)
        back.join(timeout=30)
        conn.close()
        upstream.close()

    def close(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=2)


def relayed_url(local_url: str, relay: Relay) -> str:
    parts = urlsplit(local_url)
    host, port = relay.address
    return urlunsplit((parts.scheme, f"{host}:{port}", parts.path, parts.query, parts.fragment))


# -- kind ------------------------------------------------------------------------------------

def parse_kind_version(text: str) -> str:
    """`kind v0.29.0 go1.24.2 linux/amd64` -> `v0.29.0`."""
    m = re.search(r"\bkind (v\d+\.\d+\.\d+\S*)", text)
    if not m:
        raise ProviderError(f"cannot read the kind version from {text.strip()[:120]!r}")
    return m.group(1)


def parse_kind_clusters(stdout: str) -> list[str]:
    """`kind get clusters` prints one name a line (it has no JSON output); the 'No kind
    clusters found.' notice goes to stderr."""
    return [line.strip() for line in stdout.splitlines() if line.strip()]


def port_mappings(raw: Any) -> list[dict[str, Any]]:
    """`["8080:80", {"hostPort": 8443, "containerPort": 443}]` -> kind extraPortMappings, all
    on 127.0.0.1 (a drill exposes nothing beyond this machine)."""
    if not raw:
        return []
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if isinstance(item, str):
            m = re.fullmatch(r"(\d+):(\d+)(?:/(tcp|udp|sctp))?", item.strip(), re.IGNORECASE)
            if not m:
                raise ConfigError(f"port mapping {item!r} is not HOST:CONTAINER[/proto]")
            out.append({"hostPort": int(m.group(1)), "containerPort": int(m.group(2)),
                        "listenAddress": "127.0.0.1",
                        "protocol": (m.group(3) or "tcp").upper()})
        elif isinstance(item, Mapping) and {"hostPort", "containerPort"} <= set(item):
            out.append({"listenAddress": "127.0.0.1", "protocol": "TCP", **dict(item)})
        else:
            raise ConfigError(f"port mapping {item!r} is not HOST:CONTAINER or a mapping with "
                              "hostPort and containerPort")
    return out


def node_image(options: Mapping[str, Any]) -> str | None:
    if options.get("image"):
        return str(options["image"])
    version = options.get("kubernetes_version")
    if version:
        v = str(version)
        return f"{KIND_NODE_IMAGE_REPO}:{v if v.startswith('v') else 'v' + v}"
    return None  # kind's default image for its release


@dataclass(frozen=True)
class NodeTuning:
    """What the generated kind config adapts to the Docker host and the node image."""

    drdrill_node: bool = False
    """The node image is drdrill's own (harness/images/kind_node.py)."""
    etcd_tag: str = ""
    """kubeadm's etcd image tag on drdrill's node image (the pinned etcd, not kubeadm's)."""
    cgroup_v1: bool = False
    """The Docker host runs cgroup v1: kubelet >= 1.35 refuses it unless failCgroupV1 is off."""
    restrict_oom_score_adj: bool = False
    """The engine's root lacks CAP_SYS_RESOURCE: containerd must not lower oom_score_adj."""


def kind_config(name: str, options: Mapping[str, Any], *, image: str | None = None,
                tuning: NodeTuning | None = None) -> dict[str, Any]:
    """The kind Cluster config for a drill cluster."""
    workers = int(options.get("workers", 0))
    if workers < 0:
        raise ConfigError(f"workers must be 0 or more, got {workers}")
    image = image or node_image(options)
    tune = tuning or NodeTuning()
    control: dict[str, Any] = {"role": "control-plane"}
    mappings = port_mappings(options.get("port_mappings"))
    if mappings:
        control["extraPortMappings"] = mappings
    nodes = [control] + [{"role": "worker"} for _ in range(workers)]
    if image:
        for node in nodes:
            node["image"] = image
    cfg: dict[str, Any] = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": name,
        "networking": {"apiServerAddress": "127.0.0.1", "apiServerPort": 0},
        "nodes": nodes,
    }
    if tune.drdrill_node:
        # The node image's egress lock lets the pod network through: keep kubeadm on it.
        from harness.images.node_files import POD_SUBNET, SERVICE_SUBNET
        cfg["networking"].update(podSubnet=POD_SUBNET, serviceSubnet=SERVICE_SUBNET)
    patches = []
    if tune.cgroup_v1:
        patches.append("kind: KubeletConfiguration\nfailCgroupV1: false\n")
    if tune.drdrill_node and tune.etcd_tag:
        patches.append("kind: ClusterConfiguration\n"
                       f"etcd:\n  local:\n    imageTag: {tune.etcd_tag}\n")
    if patches:
        cfg["kubeadmConfigPatches"] = patches
    if tune.restrict_oom_score_adj:
        cfg["containerdConfigPatches"] = [
            '[plugins."io.containerd.grpc.v1.cri"]\n  restrict_oom_score_adj = true\n']
    return cfg


def lacks_sys_resource() -> bool:
    """This machine's root lacks CAP_SYS_RESOURCE (some CI VMs): containerd in a node cannot
    lower pods' oom_score_adj. Read from our own bounding set; the engine runs here as root."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    bnd = next((int(line.split()[1], 16) for line in status.splitlines()
                if line.startswith("CapBnd:")), None)
    return bnd is not None and not bnd >> 24 & 1  # CAP_SYS_RESOURCE = 24


def docker_cgroup_version() -> str:
    """`docker info`'s cgroup version ("1" or "2"; "" when the engine does not say)."""
    res = run(Command.of("docker", "info", "-f", "{{.CgroupVersion}}").with_timeout(30),
              check=False)
    return res.stdout.strip() if res.returncode == 0 else ""


def node_conditions(nodes: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Node name -> its Ready condition ("True", or "False: <reason> <message>")."""
    out = {}
    for node in nodes:
        ready = next((c for c in (node.get("status") or {}).get("conditions") or []
                      if c.get("type") == "Ready"), None)
        if ready is None:
            out[node["metadata"]["name"]] = "Unknown: no Ready condition yet"
        elif ready.get("status") == "True":
            out[node["metadata"]["name"]] = "True"
        else:
            out[node["metadata"]["name"]] = (f"{ready.get('status')}: {ready.get('reason')} "
                                             f"{(ready.get('message') or '')[:160]}").strip()
    return out


def wait_nodes_ready(kubeconfig: Path, expected: int, timeout_s: float) -> dict[str, float]:
    """Until `expected` nodes exist and every one is Ready; -> node -> seconds to Ready.

    On timeout the error names every node and its Ready condition."""
    started = time.monotonic()
    deadline = Deadline(timeout_s)
    ready_at: dict[str, float] = {}
    seen: dict[str, str] = {}
    api = api_client(kubeconfig)
    try:
        while True:
            try:
                nodes = request(api, "GET", "/api/v1/nodes").get("items", [])
                seen = node_conditions(nodes)
            except Exception as exc:  # noqa: BLE001 - the API may blink while nodes join
                seen = seen or {"(api)": f"{type(exc).__name__}: {str(exc)[:160]}"}
            for name, cond in seen.items():
                if cond == "True":
                    ready_at.setdefault(name, round(time.monotonic() - started, 2))
            if len(seen) >= expected and all(c == "True" for c in seen.values()):
                return ready_at
            if deadline.expired:
                detail = "; ".join(f"{n}: {c}" for n, c in sorted(seen.items())) or "no nodes"
                raise ProviderError(
                    f"{len(ready_at)} of {expected} nodes Ready after {timeout_s:.0f}s: {detail}",
                    fix="read the node logs in the drill's diagnostics (kind export logs)")
            # Node status arrives every few seconds (kubelet's heartbeat); a short re-read.
            time.sleep(min(1.0, deadline.remaining))
    finally:
        with contextlib.suppress(Exception):
            api.close()


def kind_create_command(kind: str, name: str, config: Path, kubeconfig: Path, *,
                        network: str, wait: str = "120s") -> Command:
    return (Command.of(kind, "create", "cluster", "--name", name, "--config", config,
                       "--kubeconfig", kubeconfig, "--wait", wait)
            .with_env(KIND_EXPERIMENTAL_DOCKER_NETWORK=network)
            .with_timeout(CREATE_TIMEOUT_S))


class DockerCliProvider(ClusterLifecycle):
    """What the kind and k3d providers share: a cluster and a network named after the run on
    this machine's Docker, a config file generated from the drill's options, and Flux
    installed in-cluster from the pinned images."""

    cli: str = ""
    """The CLI that creates the cluster (`kind`, `k3d`)."""
    name_max: int = 40
    cluster_label: str = ""
    """The label the CLI puts on the cluster's node containers, with the cluster name."""

    @staticmethod
    def required_tools(options: Mapping[str, Any]) -> tuple[str, ...]:
        """The Flux controllers' pinned binaries: their images are made from them here and
        loaded into the cluster (helm-controller is added for repos with HelmReleases)."""
        return FLUX_CONTROLLERS

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self.cluster = cluster_name(ctx.run_id, ctx.cluster_name, max_len=self.name_max)
        self.network = network_name(ctx.run_id)
        self.workdir = ctx.workdir
        self._kubeconfig = self.workdir / "kubeconfig"
        self.config = self.make_config(ctx)  # a bad option fails now, before any phase
        self.registry = str(ctx.options.get("flux_image_registry", FLUX_IMAGE_REGISTRY))
        self.startup_timeout_s = float(ctx.options.get("startup_timeout_s", 300))
        self._relay: Relay | None = None
        self._created = False
        self._created_network = False
        self.docker_version: str | None = None
        self.cli_version: str | None = None
        self.flux_load_s: float | None = None
        self.flags: dict[str, Any] = {}

    @abc.abstractmethod
    def make_config(self, ctx: ProviderContext) -> dict[str, Any]:
        """The CLI's cluster config for this drill."""

    @staticmethod
    @abc.abstractmethod
    def parse_version(out: str) -> str:
        """The version the CLI's `version` command prints."""

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig

    def cli_binary(self) -> str:
        """The CLI to run (default: from PATH)."""
        return cli_path(self.cli)

    def cli_found(self) -> str | None:
        """The CLI this provider created with (or would use), None when it is gone."""
        return shutil.which(self.cli)

    # -- SupportsFluxInstall / SupportsGitAccess -------------------------------------------
    def install_flux(self, api: Any, tools: Mapping[str, ResolvedTool], crds: list[Path],
                     settings: Any) -> dict[str, Any]:
        """Images of the controllers made from the pinned binaries, loaded into the nodes (no
        registry needed), then the Deployments; with no binaries resolved, the upstream
        images from `flux_image_registry` (the nodes must pull them)."""
        controllers = {c: tools[c] for c in FLUX_ALL if c in tools}
        images: dict[str, str] | None = None
        if controllers:
            from harness.images.kind_node import flux_archives

            archives = flux_archives(self.ctx.config, controllers, registry=self.registry)
            started = time.monotonic()
            self.load_images([path for _, path in archives.values()])
            self.flux_load_s = round(time.monotonic() - started, 1)
            images = {c: image for c, (image, _) in archives.items()}
        self.flags = install_flux_in_cluster(api, settings, timeout_s=self.startup_timeout_s,
                                             images=images, registry=self.registry)
        return self.flags

    def load_images(self, archives: Sequence[Path]) -> None:
        """Import docker-archive tarballs into every node of the cluster."""
        raise ProviderError(f"{self.cli} cannot load local images")

    def git_url(self, local_url: str) -> str:
        port = urlsplit(local_url).port
        if port is None:
            return local_url
        if self._relay is None:
            self._relay = Relay(network_gateway(inspect_network(self.network)), port)
        return relayed_url(local_url, self._relay)

    def _prepare(self) -> tuple[str, Path]:
        """Docker and the CLI answer, the config is written and the run's network exists;
        from here on delete() asks the CLI to remove what it made. Returns (cli, config)."""
        cli = self.cli_binary()
        self.docker_version = check_docker()
        self.cli_version = self.parse_version(
            run(Command.of(cli, "version").with_timeout(30)).stdout)
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cfg = self.workdir / f"{self.cli}-config.yaml"
        cfg.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self._created_network = ensure_network(self.network, self.ctx.run_id,
                                               keep=self.ctx.keep) or self._created_network
        self._created = True
        return cli, cfg

    @abc.abstractmethod
    def delete_command(self) -> Command:
        """The CLI call that deletes the cluster."""

    def delete(self) -> None:
        """The CLI deletes the cluster, then the run's network and the workdir go; every step
        runs, and a failing one raises ProviderError at the end (never just a log line)."""
        problems: list[str] = []
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        if self._created:
            if self.cli_found() is None:
                problems.append(f"the {self.cli} CLI is gone, so cluster {self.cluster} cannot "
                                "be deleted")
            else:
                res = run(self.delete_command().with_timeout(180), check=False)
                if res.returncode != 0:
                    problems.append(f"{self.cli} could not delete cluster {self.cluster}: "
                                    f"{res.stderr.strip()[-300:]}")
                else:
                    self._created = False
        if self._created_network:
            try:
                remove_network(self.network)
                self._created_network = False
            except ProviderError as exc:
                problems.append(str(exc))
        shutil.rmtree(self.workdir, ignore_errors=True)
        if problems:
            raise ProviderError("; ".join(problems), fix=f"drdrill gc --run-id {self.ctx.run_id}")

    def containers(self, *, running: bool = False) -> list[str]:
        """The cluster's node containers, asked from Docker by the CLI's own label."""
        return docker_names("ps", *(() if running else ("-a",)), "--filter",
                            f"label={self.cluster_label}={self.cluster}")

    def leftovers(self) -> list[str]:
        """Containers and the run's network as Docker sees them, and the workdir."""
        if self.docker_version is None:
            return [f"folder {self.workdir}"] if self.workdir.exists() else []
        left = [f"container {c}" for c in self.containers()]
        left += [f"network {n}" for n in docker_names(
            "network", "ls", "--filter", f"name=^{self.network}$")]
        if self.workdir.exists():
            left.append(f"folder {self.workdir}")
        return left

    def is_up(self) -> bool:
        """Node containers running (Docker says so), and /readyz answers when a kubeconfig is
        still there to ask with."""
        if self.docker_version is None or not self.containers(running=True):
            return False
        return not self._kubeconfig.exists() or _readyz(self._kubeconfig)


class KindProvider(DockerCliProvider):
    """A kind cluster on this machine's Docker (see module docstring)."""

    name = "kind"
    cli = "kind"
    cluster_label = "io.x-k8s.kind.cluster"
    uses_mirror = True
    """The drill passes the registries the repo names (`mirror_registries`)."""

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        self.wait = str(ctx.options.get("wait", "120s"))
        self.nodes_ready_timeout_s = float(ctx.options.get("nodes_ready_timeout_s", 300))
        self._kind: str | None = None
        self.node_image_tag: str | None = node_image(ctx.options)
        self.timings: dict[str, Any] = {}
        from harness.mirror.cluster import check_policy

        self.egress = check_policy(str(ctx.options.get("egress", "mirror")))
        self._mirror: Any = None
        self._mirror_seen: dict[str, Any] = {}
        self._egress_seen: dict[str, Any] = {}

    def make_config(self, ctx: ProviderContext) -> dict[str, Any]:
        return kind_config(self.cluster, ctx.options)

    def cli_binary(self) -> str:
        """The user's kind from PATH (its version goes into the report), else the pinned one
        from the cache, built from the Go module proxy if missing (tools.toml)."""
        if self._kind is None:
            found = shutil.which("kind")
            if found is None:
                try:
                    found = str(ensure_tools(self.ctx.config, ["kind"])["kind"].path)
                except ToolError as exc:
                    raise ProviderError(f"the kind CLI is not on PATH, and the pinned kind "
                                        f"cannot be had: {exc.message}", fix=exc.fix) from None
            self._kind = found
        return self._kind

    def cli_found(self) -> str | None:
        return self._kind if self._kind and Path(self._kind).exists() else shutil.which("kind")

    def _node_image(self) -> None:
        """Use the image the options name, else drdrill's node image (built once, cached)."""
        tuning = NodeTuning(cgroup_v1=docker_cgroup_version() == "1",
                            restrict_oom_score_adj=lacks_sys_resource())
        if self.node_image_tag is None:
            from harness.images.kind_node import ensure_node_image, kubeadm_etcd_tag

            built = ensure_node_image(self.ctx.config, progress=lambda m: log.info("%s", m))
            self.node_image_tag = built.tag
            self.timings["node_image_build_s"] = round(built.built_s, 1)
            tuning = NodeTuning(drdrill_node=True, etcd_tag=kubeadm_etcd_tag(),
                                cgroup_v1=tuning.cgroup_v1,
                                restrict_oom_score_adj=tuning.restrict_oom_score_adj)
        self.config = kind_config(self.cluster, self.ctx.options, image=self.node_image_tag,
                                  tuning=tuning)

    @staticmethod
    def parse_version(out: str) -> str:
        return parse_kind_version(out)

    @staticmethod
    def availability(config: Config) -> tuple[bool, str]:
        """Resolved as the drill resolves it (cli_binary): PATH, else the pinned kind from the
        cache; one that must still be built is named, never built here."""
        from harness.tools import load_manifest, resolve_existing

        spec = load_manifest().tools["kind"]
        found = shutil.which("kind")
        if found is None:
            pinned = resolve_existing(config, spec)
            found = str(pinned.path) if pinned is not None else None
        return cli_availability(
            "kind", ["version"], parse_kind_version, KIND_NODE_IMAGE_REPO, path=found,
            missing=f"no kind on PATH and the pinned kind {spec.version} is not built yet "
                    + ("(the first kind drill, or `drdrill tools ensure --only kind`, builds it "
                       "from the Go module proxy)" if config.allow_build else
                       "(and building is turned off: DRDRILL_ALLOW_BUILD)"))

    # -- ClusterProvider -------------------------------------------------------------------
    def _create(self) -> None:
        self.cli_binary()
        check_docker()
        self._node_image()
        kind, cfg = self._prepare()
        if self.egress != "open":
            self._use_mirror(cfg)
        started = time.monotonic()
        run(kind_create_command(kind, self.cluster, cfg, self._kubeconfig,
                                network=self.network, wait=self.wait),
            fix="read kind's output above; without access to a registry the node image must "
                "be present locally (docker load) or drdrill's own (leave image unset)")
        self.timings["kind_create_s"] = round(time.monotonic() - started, 1)
        self._kubeconfig.chmod(0o600)
        # kind --wait covers the control plane only; a drill needs every node.
        ready = wait_nodes_ready(self._kubeconfig, len(self.config["nodes"]),
                                 self.nodes_ready_timeout_s)
        self.timings["nodes_ready_s"] = ready
        self.timings["all_nodes_ready_s"] = round(time.monotonic() - started, 1)
        if self.config.get("networking", {}).get("podSubnet"):  # drdrill's node image
            self._check_egress_locked()
            if self.egress == "open":
                self._open_egress()
        if self._mirror is not None:
            from harness.mirror.egress import guard_dns

            guard_dns(api_client(self._kubeconfig))

    @property
    def mirror_address(self) -> str | None:
        """host:port of the registry mirror the nodes pull from (the drill points Flux's chart
        sources at it too), while the cluster exists."""
        return self._mirror.registry.address if self._mirror is not None else None

    def _use_mirror(self, cfg: Path) -> None:
        """Run the drill's registry mirror on the run network's gateway (the one host address
        the nodes' egress lock lets through) and point every node's containerd at it; what
        to write is harness.mirror's business, never this provider's."""
        from harness.mirror.cluster import ClusterMirror

        net = inspect_network(self.network)
        subnets = [c.get("Subnet") for c in (net.get("IPAM") or {}).get("Config") or []
                   if c.get("Subnet") and ":" not in c.get("Subnet")]
        self._mirror = ClusterMirror(
            self.ctx.config, network_gateway(net), self.ctx.run_id,
            self.workdir / "mirror", tuple(self.ctx.options.get("mirror_registries", ())),
            self.egress, clients=tuple(subnets)).__enter__()
        self.config = self._mirror.kind_config(self.config)
        cfg.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def _open_egress(self) -> None:
        """egress=open: the user accepts that the cluster reaches the world (and pulls from
        the registries themselves); the lock's chain is emptied, not the node rebuilt."""
        for node in self.containers(running=True):
            for tables in ("iptables", "ip6tables"):
                run(Command.of("docker", "exec", node, tables, "-F", "DRDRILL-EGRESS")
                    .with_timeout(30))

    def _check_egress_locked(self) -> None:
        """Every node of drdrill's image refuses traffic to addresses outside the run (its
        entrypoint's egress lock); a node without it would let pods reach the world."""
        names = run(Command.of("docker", "ps", "--filter",
                               f"label={self.cluster_label}={self.cluster}",
                               "--format", "{{.Names}}").with_timeout(30)).stdout.split()
        for node in names:
            try:
                run(Command.of("docker", "exec", node, "iptables", "-C", "OUTPUT", "-o", "eth0",
                               "-j", "DRDRILL-EGRESS").with_timeout(30))
            except CommandError as exc:
                raise ProviderError(
                    f"kind node {node} has no egress lock (chain DRDRILL-EGRESS): {exc}",
                    fix="rebuild drdrill's node image (`drdrill kind-image build`) and read "
                        "the node's entrypoint output (`docker logs " + node + "`)") from None
        self.timings["egress_locked_nodes"] = len(names)

    def load_images(self, archives: Sequence[Path]) -> None:
        for archive in archives:
            run(Command.of(self.cli_binary(), "load", "image-archive", archive,
                           "--name", self.cluster).with_timeout(600))

    def delete(self) -> None:
        if self._mirror is not None:  # before the cluster and the workdir (its logs) go
            try:
                self._mirror_seen = self._mirror.describe()
                self._egress_seen = self._observe_egress()
            finally:
                self._mirror.close()
                self._mirror = None
        super().delete()

    def _observe_egress(self) -> dict[str, Any]:
        """What the guard refused, read from the live cluster (best effort: a cluster that
        never came up has nothing to say, and that must not hide why)."""
        from harness.mirror.egress import COUNTER_ARGV, observe, refused_packets

        if not self._kubeconfig.exists():
            return {}
        try:
            refused = {node: refused_packets(run(Command.of("docker", "exec", node,
                                                            *COUNTER_ARGV).with_timeout(30),
                                                 check=False).stdout)
                       for node in self.containers(running=True)}
            git = f"{self._relay.address[0]}:{self._relay.address[1]}" if self._relay else None
            return observe(api_client(self._kubeconfig), self.egress, self._mirror_seen,
                           refused=refused, git_url=git)
        except Exception as exc:  # noqa: BLE001 - teardown must go on; the report says why
            log.warning("reading what the egress guard refused failed: %s", exc)
            return {"policy": self.egress, "error": str(exc)}

    def delete_command(self) -> Command:
        # --kubeconfig: kind would otherwise edit the user's ~/.kube/config
        return Command.of(self._kind or "kind", "delete", "cluster", "--name", self.cluster,
                          "--kubeconfig", self._kubeconfig)

    def dump_logs(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        if not self._created:
            return []
        out = dest / "kind"
        run(Command.of(self.cli_binary(), "export", "logs", out, "--name", self.cluster)
            .with_timeout(180))
        return sorted(p for p in out.rglob("*") if p.is_file())

    def describe(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "network": self.network,
                "kind_version": self.cli_version, "docker_version": self.docker_version,
                "node_image": self.node_image_tag or "drdrill's (built at create)",
                "timings": {**self.timings, "flux_images_load_s": self.flux_load_s},
                "nodes": len(self.config["nodes"]),
                "flux_images": self.flags.get("images") or flux_images(registry=self.registry),
                "mirror": self._mirror.describe() if self._mirror is not None
                else self._mirror_seen or {"policy": self.egress},
                "egress": self._egress_seen,
                "flags": {k: v for k, v in self.flags.items() if k != "images"}}



# -- shared helpers --------------------------------------------------------------------------

def cli_availability(cli: str, version_args: Sequence[str], parse: Any,
                     image_repo: str = "", *, path: str | None = None,
                     missing: str = "") -> tuple[bool, str]:
    """(ok, why) for `drdrill providers`: the CLI (`path`, default from PATH) with its version,
    Docker, and whether a node image is already in the local Docker (else creating a cluster
    needs a registry). `missing` says why no CLI was found."""
    path = path or shutil.which(cli)
    if path is None:
        return False, missing or f"the {cli} CLI is not on PATH"
    try:
        version = parse(run(Command.of(path, *version_args).with_timeout(20)).stdout)
    except (CommandError, ProviderError) as exc:
        return False, f"{path} does not answer `{cli} {' '.join(version_args)}`: " \
                      f"{str(exc).splitlines()[0]}"
    try:
        docker = check_docker()
    except DockerUnavailable as exc:
        return False, f"{cli} {version} found, but {exc.message}"
    local = run(Command.of("docker", "image", "ls", "-q", image_repo).with_timeout(20),
                check=False).stdout.split() if image_repo else []
    images = (f"{image_repo} images present locally" if local else
              f"no {image_repo} image in the local Docker: the first cluster pulls one, so it "
              "needs registry access (or `docker load` one)")
    return True, (f"{cli} {version}, Docker {docker}; {images}; the Flux controller images "
                  f"({FLUX_IMAGE_REGISTRY}) must be pullable or preloaded too")


def readyz(api: Any, timeout_s: float = 5) -> tuple[bool, str]:
    """GET /readyz (plain text, so not through kube.request's JSON decoding)."""
    try:
        serialized = api.param_serialize(method="GET", resource_path="/readyz",
                                         auth_settings=["BearerToken"])
        resp = api.call_api(*serialized, _request_timeout=timeout_s)
        body = resp.read().decode(errors="replace").strip()
    except Exception as exc:  # noqa: BLE001 - "not ready" is the answer, whatever the reason
        return False, f"{type(exc).__name__}: {str(exc)[:200]}"
    return resp.status == 200, f"HTTP {resp.status}: {body[:200]}"


def _readyz(kubeconfig: Path) -> bool:
    api = None
    try:
        api = api_client(kubeconfig)
        return readyz(api)[0]
    except Exception:  # noqa: BLE001 - "not up" is the answer, whatever the reason
        return False
    finally:
        if api is not None:
            with contextlib.suppress(Exception):
                api.close()


def write_kubeconfig(path: Path, text: str) -> Path:
    return write_secret(path, text.encode())
