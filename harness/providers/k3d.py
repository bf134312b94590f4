"""k3d clusters (k3s in Docker) on the user's Docker, through the real `k3d` CLI.

As with kind: the config is generated from the drill's options (agents, k3s image or version,
port mappings on 127.0.0.1), the cluster joins the run's own labelled Docker network, every
node container carries the `drdrill.dev/run-id` label (k3d's runtime labels), Flux is the
pinned release installed in-cluster, and the Git server is relayed onto the network gateway.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.command import Command, run
from harness.config import Config
from harness.errors import ConfigError, ProviderError
from harness.flux.install import flux_images
from harness.providers import ProviderContext
from harness.providers.kind import (
    DockerCliProvider,
    cli_availability,
    run_labels,
    wait_nodes_ready,
    write_kubeconfig,
)
from harness.report.redact import write_report_file

log = logging.getLogger(__name__)

K3S_IMAGE_REPO = "rancher/k3s"
CREATE_TIMEOUT_S = 600.0
NAME_MAX = 32
"""k3d derives container and host names from the cluster name; keep it short."""


def parse_k3d_version(text: str) -> str:
    """`k3d version v5.8.3\\nk3s version v1.31.5-k3s1 (default)` -> `v5.8.3`."""
    m = re.search(r"k3d version (v\d+\.\d+\.\d+\S*)", text)
    if not m:
        raise ProviderError(f"cannot read the k3d version from {text.strip()[:120]!r}")
    return m.group(1)


@dataclass(frozen=True)
class K3dCluster:
    """What the harness reads from one element of `k3d cluster list -o json`."""

    name: str
    servers_running: int
    servers: int
    agents_running: int
    agents: int
    network: str | None
    nodes: tuple[tuple[str, str, bool], ...]
    """(container name, role, running)"""

    @property
    def running(self) -> bool:
        return self.servers > 0 and self.servers_running == self.servers \
            and self.agents_running == self.agents


def parse_cluster_list(stdout: str) -> list[K3dCluster]:
    """Parse `k3d cluster list [NAME] -o json` (a JSON array; `[]` when there is none)."""
    try:
        data = json.loads(stdout or "[]")
    except ValueError as exc:
        raise ProviderError(f"`k3d cluster list -o json` printed no JSON: {exc}: "
                            f"{stdout.strip()[:200]!r}") from None
    if not isinstance(data, list):
        raise ProviderError("`k3d cluster list -o json` did not print a JSON array")
    out = []
    for item in data:
        nodes = tuple((str(n.get("name", "")), str(n.get("role", "")),
                       bool((n.get("State") or {}).get("Running")))
                      for n in item.get("nodes") or [])
        out.append(K3dCluster(
            name=str(item.get("name", "")),
            servers_running=int(item.get("serversRunning", 0)),
            servers=int(item.get("serversCount", 0)),
            agents_running=int(item.get("agentsRunning", 0)),
            agents=int(item.get("agentsCount", 0)),
            network=(item.get("network") or {}).get("name"),
            nodes=nodes))
    return out


def k3s_image(options: Mapping[str, Any]) -> str | None:
    if options.get("image"):
        return str(options["image"])
    version = options.get("k3s_version") or options.get("kubernetes_version")
    if version:
        v = str(version)
        v = v if v.startswith("v") else "v" + v
        # rancher/k3s tags spell `+k3s1` as `-k3s1`; a bare Kubernetes version gets `-k3s1`.
        v = v.replace("+", "-")
        return f"{K3S_IMAGE_REPO}:{v if '-k3s' in v else v + '-k3s1'}"
    return None  # k3d's default k3s for its release


def k3d_ports(raw: Any) -> list[dict[str, Any]]:
    """`["8080:80"]` -> k3d port specs on the load balancer, bound to 127.0.0.1."""
    if not raw:
        return []
    out = []
    for item in raw if isinstance(raw, list) else [raw]:
        m = re.fullmatch(r"(\d+):(\d+)(?:/(tcp|udp))?", str(item).strip(), re.IGNORECASE)
        if not m:
            raise ConfigError(f"port mapping {item!r} is not HOST:CONTAINER[/proto]")
        proto = f"/{m.group(3).lower()}" if m.group(3) else ""
        out.append({"port": f"127.0.0.1:{m.group(1)}:{m.group(2)}{proto}",
                    "nodeFilters": ["loadbalancer"]})
    return out


def k3d_config(name: str, run_id: str, network: str,
               options: Mapping[str, Any], *, keep: bool = False) -> dict[str, Any]:
    """The k3d `Simple` config (k3d.io/v1alpha5) for a drill cluster."""
    agents = int(options.get("agents", options.get("workers", 0)))
    if agents < 0:
        raise ConfigError(f"agents must be 0 or more, got {agents}")
    timeout = str(options.get("wait", "180s"))
    cfg: dict[str, Any] = {
        "apiVersion": "k3d.io/v1alpha5",
        "kind": "Simple",
        "metadata": {"name": name},
        "servers": 1,
        "agents": agents,
        "network": network,
        "kubeAPI": {"hostIP": "127.0.0.1"},
        "options": {
            "k3d": {"wait": True, "timeout": timeout},
            "k3s": {"extraArgs": [
                # A drill measures Flux; the bundled ingress and its load balancer only cost.
                {"arg": "--disable=traefik", "nodeFilters": ["server:*"]},
            ]},
            "kubeconfig": {"updateDefaultKubeconfig": False, "switchCurrentContext": False},
            "runtime": {"labels": [
                {"label": f"{label}={value}",
                 "nodeFilters": ["server:*", "agent:*", "loadbalancer"]}
                for label, value in run_labels(run_id, keep=keep).items()]},
        },
    }
    image = k3s_image(options)
    if image:
        cfg["image"] = image
    ports = k3d_ports(options.get("port_mappings"))
    if ports:
        cfg["ports"] = ports
    return cfg


def k3d_create_command(k3d: str, config: Path) -> Command:
    return Command.of(k3d, "cluster", "create", "--config", config).with_timeout(CREATE_TIMEOUT_S)


class K3dProvider(DockerCliProvider):
    """A k3d cluster on this machine's Docker (see module docstring)."""

    name = "k3d"
    cli = "k3d"
    name_max = NAME_MAX
    cluster_label = "k3d.cluster"

    def make_config(self, ctx: ProviderContext) -> dict[str, Any]:
        return k3d_config(self.cluster, ctx.run_id, self.network, ctx.options, keep=ctx.keep)

    @staticmethod
    def parse_version(out: str) -> str:
        return parse_k3d_version(out)

    @staticmethod
    def availability(config: Config) -> tuple[bool, str]:
        return cli_availability("k3d", ["version"], parse_k3d_version, K3S_IMAGE_REPO)

    def _create(self) -> None:
        k3d, cfg = self._prepare()
        run(k3d_create_command(k3d, cfg),
            fix="read k3d's output above; without access to a registry the k3s image (and "
                "k3d's tools/proxy images) must be present locally (docker load)")
        kubeconfig = run(Command.of(k3d, "kubeconfig", "get", self.cluster)
                         .with_timeout(60)).stdout
        write_kubeconfig(self._kubeconfig, kubeconfig)
        # Every server and agent Ready, not only the API (unverified here: no k3s image).
        wait_nodes_ready(self._kubeconfig, 1 + int(self.config["agents"]),
                         float(self.ctx.options.get("nodes_ready_timeout_s", 300)))

    def load_images(self, archives: Sequence[Path]) -> None:
        for archive in archives:
            run(Command.of(self.cli_binary(), "image", "import", archive, "--cluster",
                           self.cluster).with_timeout(600))

    def delete_command(self) -> Command:
        return Command.of("k3d", "cluster", "delete", self.cluster)

    def state(self) -> K3dCluster | None:
        res = run(Command.of("k3d", "cluster", "list", "-o", "json").with_timeout(30),
                  check=False)
        if res.returncode != 0:
            return None
        return next((c for c in parse_cluster_list(res.stdout) if c.name == self.cluster), None)

    def dump_logs(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        if not self._created:
            return []
        out = []
        listing = run(Command.of("k3d", "cluster", "list", self.cluster, "-o", "json")
                      .with_timeout(30), check=False)
        path = dest / "k3d-cluster.json"  # holds the K3S_TOKEN= of every node's environment
        write_report_file(path, listing.stdout)
        out.append(path)
        names = run(Command.of("docker", "ps", "-a", "--filter",
                               f"label=k3d.cluster={self.cluster}", "--format", "{{.Names}}")
                    .with_timeout(30), check=False).stdout.split()
        for name in names:
            logs = run(Command.of("docker", "logs", "--timestamps", name).with_timeout(60),
                       check=False)
            path = dest / f"{name}.log"
            write_report_file(path, logs.stdout + logs.stderr)
            out.append(path)
        return out

    def describe(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "network": self.network,
                "k3d_version": self.cli_version, "docker_version": self.docker_version,
                "k3s_image": self.config.get("image", "k3d's default"),
                "agents": self.config["agents"],
                "flux_images": self.flags.get("images") or flux_images(registry=self.registry),
                "flags": {k: v for k, v in self.flags.items() if k != "images"}}
