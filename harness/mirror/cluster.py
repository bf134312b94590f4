"""The mirror as one drill cluster sees it: the registry listening where the nodes reach it
(a local address on the cluster's network) and the node configuration that points every
registry the repo names at it. A provider enters one per cluster it creates."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from harness.config import Config
from harness.errors import ConfigError, MirrorError
from harness.mirror.nodes import (
    NO_PROXY,
    PROXY_DROPIN,
    NodeMirrorConfig,
    containerd_proxy_dropin,
    node_config,
)
from harness.mirror.proxy import AllowListProxy, allowed_hosts
from harness.mirror.server import MirrorRegistry, storage_lock

log = logging.getLogger(__name__)

EGRESS_POLICIES = ("mirror", "registries", "open")
"""`mirror`: nodes reach only their network (the mirror, the Git relay) and pull everything
through the mirror; `registries`: what the mirror lacks, the nodes' containerd may pull from
the registries the repo names, through an allow-listing proxy on the gateway (the node lock
stays); `open`: no mirror, the node's egress lock is lifted and images come from their
registries (for users who accept that a drill cluster reaches the world)."""


def check_policy(policy: str) -> str:
    if policy not in EGRESS_POLICIES:
        raise ConfigError(f"egress policy {policy!r} is not one of {', '.join(EGRESS_POLICIES)}",
                          fix="pass --egress mirror (the default), registries or open")
    return policy


@dataclass
class ClusterMirror:
    """`with ClusterMirror(config, host=gateway, ...) as m:` then `m.kind_config(cfg)`."""

    config: Config
    host: str
    run_id: str
    work_dir: Path
    registries: Sequence[str] = ()
    policy: str = "mirror"
    clients: Sequence[str] = ()
    """Who may use the `registries` proxy (the run network's subnet)."""
    registry: MirrorRegistry | None = None
    proxy: AllowListProxy | None = None
    node: NodeMirrorConfig | None = None
    _lock: Any = field(default=None, repr=False)
    proxy_seen: dict[str, Any] = field(default_factory=dict)

    @property
    def hosts_dir(self) -> Path:
        return self.work_dir / "certs.d"

    def __enter__(self) -> ClusterMirror:
        from harness.mirror import open_mirror

        check_policy(self.policy)
        self.registry = open_mirror(self.config, host=self.host, run_id=self.run_id,
                                    work_dir=self.work_dir / "registry")
        self._lock = storage_lock(self.registry.storage, exclusive=False)
        self._lock.__enter__()
        try:
            self.registry.__enter__()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        try:
            if self.policy == "registries":
                self.proxy = AllowListProxy(tuple(allowed_hosts(self.registries)),
                                            self.work_dir / "proxy", self.run_id,
                                            host=self.host, clients=tuple(self.clients))
                self.proxy.__enter__()
        except BaseException:
            self.close()
            raise
        self.node = node_config(self.registries, self.registry.address,
                                fallback=self.proxy is not None)
        self.node.write(self.hosts_dir)
        if self.proxy is not None:
            self.proxy_dropin.write_text(containerd_proxy_dropin(
                self.proxy.url, no_proxy=(self.host, *NO_PROXY)))
        log.info("registry mirror for the nodes at %s (%d registries)", self.registry.url,
                 len(self.node.registries))
        return self

    @property
    def proxy_dropin(self) -> Path:
        return self.work_dir / "containerd-proxy.conf"

    def kind_config(self, cfg: dict[str, Any]) -> dict[str, Any]:
        assert self.node is not None, "enter the ClusterMirror first"
        out = self.node.kind_patch(cfg, self.hosts_dir)
        if self.proxy is not None:  # containerd reads it at boot (systemd drop-in)
            out["nodes"] = [{**n, "extraMounts": [*n.get("extraMounts", []), {
                "hostPath": str(self.proxy_dropin), "containerPath": PROXY_DROPIN,
                "readOnly": True}]} for n in out["nodes"]]
        return out

    def describe(self) -> dict[str, Any]:
        """For the report: where the mirror ran, what the nodes pulled from it."""
        if self.registry is None:
            return {"policy": self.policy}
        stats = self.registry.pulls()
        kinds = self._kinds(stats.manifests)
        return {"policy": self.policy, "address": self.registry.address,
                "images_from_mirror": sum(1 for k in kinds.values() if k == "image"),
                "charts_from_mirror": sum(1 for k in kinds.values() if k == "chart"),
                "repository_kinds": kinds,
                "storage": str(self.registry.storage),
                "registries": list(self.node.registries if self.node else ()),
                "images_pulled": dict(sorted(stats.manifests.items())),
                "pulled_bytes": stats.blob_bytes,
                "missing": list(stats.misses),
                "first_pull_at": stats.first_at, "last_pull_at": stats.last_at,
                "pull_span_s": stats.span_s,
                **({"proxy": self.proxy.describe()} if self.proxy is not None else
                   {"proxy": self.proxy_seen} if self.proxy_seen else {})}

    def _kinds(self, repos: Iterable[str]) -> dict[str, str]:
        """repository -> image | chart, from what the mirror holds (a Helm chart's manifest
        has Helm's config media type)."""
        from harness.mirror.oci import HELM_CONFIG

        assert self.registry is not None
        client = self.registry.client()
        out: dict[str, str] = {}
        for repo in repos:
            try:
                tags = client.tags(repo)
                m = client.get_manifest(repo, tags[0]) if tags else None
            except MirrorError:
                m = None
            out[repo] = "chart" if m is not None and not m.is_index and \
                (m.doc.get("config") or {}).get("mediaType") == HELM_CONFIG else "image"
        return out

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy_seen = self.proxy.describe()
            self.proxy.close()
            self.proxy = None
        if self.registry is not None:
            self.registry.close()
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
