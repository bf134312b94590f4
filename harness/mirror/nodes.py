"""What a node's containerd needs to pull through the mirror: one `hosts.toml` per registry
(containerd's registry host configuration), and how a kind cluster mounts them. Providers ask
here; they never write registry configuration themselves."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.mirror.refs import DOCKER_HUB, mirror_host_segment

CERTS_DIR = "/etc/containerd/certs.d"
CONTAINERD_PATCH = ('[plugins."io.containerd.grpc.v1.cri".registry]\n'
                    f'  config_path = "{CERTS_DIR}"\n')
"""kind merges this into the node's containerd config: read registry hosts from CERTS_DIR."""
COMMON_REGISTRIES = ("docker.io", "ghcr.io", "quay.io", "registry.k8s.io", "gcr.io",
                     "public.ecr.aws", "mcr.microsoft.com", "lscr.io", "codeberg.org")
"""Mirrored on every node even when the repo does not name them: a chart's own images are
only known once it renders in the cluster, and they come from these."""


PROXY_DROPIN = "/etc/systemd/system/containerd.service.d/drdrill-proxy.conf"
NO_PROXY = ("localhost", "127.0.0.1", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
            ".svc", ".cluster.local")
"""What containerd reaches directly, not through the `registries` proxy: the mirror, the run
network, cluster addresses."""


def containerd_proxy_dropin(proxy_url: str, *, no_proxy: Iterable[str]) -> str:
    """A systemd drop-in giving the node's containerd the allow-listing proxy."""
    skip = ",".join(dict.fromkeys(no_proxy))
    return ("# drdrill: --egress registries; pulls the mirror lacks go through the proxy\n"
            "[Service]\n"
            f'Environment="HTTP_PROXY={proxy_url}" "HTTPS_PROXY={proxy_url}" '
            f'"NO_PROXY={skip}"\n')


def upstream_server(registry: str) -> str:
    return "https://registry-1.docker.io" if registry == DOCKER_HUB else f"https://{registry}"


def hosts_toml(registry: str, mirror_address: str, *, fallback: bool) -> str:
    """containerd's hosts.toml for `registry`: pull and resolve from the mirror's
    `/v2/<registry>/...` (override_path keeps the registries apart in one mirror). Without
    `fallback` the upstream is never tried: `server` is the mirror too, so a miss is a 404
    from the mirror, not a DNS lookup or connection that leaves the machine."""
    path = f"http://{mirror_address}/v2/{mirror_host_segment(registry)}"
    server = upstream_server(registry) if fallback else path
    lines = [f"# drdrill: {registry} through the drill's registry mirror",
             f'server = "{server}"']
    if not fallback:
        lines.append("override_path = true")
    lines += ["", f'[host."{path}"]', '  capabilities = ["pull", "resolve"]',
              "  override_path = true", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class NodeMirrorConfig:
    """Files for a host folder mounted at CERTS_DIR, plus the containerd patch."""

    files: Mapping[str, str]
    """`<registry>/hosts.toml` -> content."""
    registries: tuple[str, ...]

    def write(self, folder: Path) -> Path:
        for rel, text in self.files.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return folder

    def kind_patch(self, cfg: dict[str, Any], folder: Path) -> dict[str, Any]:
        """`cfg` (a kind Cluster config) with every node mounting `folder` read-only at
        CERTS_DIR and containerd told to read it."""
        out = dict(cfg)
        out["nodes"] = [{**node, "extraMounts": [*node.get("extraMounts", []),
                                                 {"hostPath": str(folder),
                                                  "containerPath": CERTS_DIR,
                                                  "readOnly": True}]}
                        for node in cfg.get("nodes", [])]
        out["containerdConfigPatches"] = [*cfg.get("containerdConfigPatches", []),
                                          CONTAINERD_PATCH]
        return out


def node_config(registries: Iterable[str], mirror_address: str, *,
                fallback: bool = False) -> NodeMirrorConfig:
    """hosts.toml for each registry (the repo's and COMMON_REGISTRIES), all to the mirror."""
    names = tuple(sorted(dict.fromkeys((*registries, *COMMON_REGISTRIES))))
    return NodeMirrorConfig({f"{r}/hosts.toml": hosts_toml(r, mirror_address, fallback=fallback)
                             for r in names}, names)


def registries_named(dependencies: Iterable[Any]) -> list[str]:
    """The registry hosts among preflight's external dependencies (container registries and
    OCI sources), which the nodes must pull through the mirror."""
    from urllib.parse import urlsplit

    hosts: list[str] = []
    for dep in dependencies:
        if dep.kind == "container-registry":
            hosts.append(str(dep.url))
        elif dep.kind == "oci-registry" and str(dep.url).startswith("oci://"):
            hosts.append(urlsplit(str(dep.url)).netloc)
    return sorted(dict.fromkeys(h for h in hosts if h and "${" not in h))
