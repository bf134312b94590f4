"""The mirror as one drill cluster sees it: the registry listening where the nodes reach it
(a local address on the cluster's network) and the node configuration that points every
registry the repo names at it. A provider enters one per cluster it creates."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from harness.config import Config
from harness.errors import ConfigError
from harness.mirror.nodes import NodeMirrorConfig, node_config
from harness.mirror.server import MirrorRegistry, storage_lock

log = logging.getLogger(__name__)

EGRESS_POLICIES = ("mirror", "open")
"""`mirror`: nodes reach only their network (the mirror, the Git relay) and pull everything
through the mirror; `open`: no mirror, the node's egress lock is lifted and images come from
their registries (for users who accept that a drill cluster reaches the world)."""


def check_policy(policy: str) -> str:
    if policy not in EGRESS_POLICIES:
        raise ConfigError(f"egress policy {policy!r} is not one of {', '.join(EGRESS_POLICIES)}",
                          fix="pass --provider-option egress=mirror (the default) or "
                              "egress=open")
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
    registry: MirrorRegistry | None = None
    node: NodeMirrorConfig | None = None
    _lock: Any = field(default=None, repr=False)

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
        self.node = node_config(self.registries, self.registry.address)
        self.node.write(self.hosts_dir)
        log.info("registry mirror for the nodes at %s (%d registries)", self.registry.url,
                 len(self.node.registries))
        return self

    def kind_config(self, cfg: dict[str, Any]) -> dict[str, Any]:
        assert self.node is not None, "enter the ClusterMirror first"
        return self.node.kind_patch(cfg, self.hosts_dir)

    def describe(self) -> dict[str, Any]:
        """For the report: where the mirror ran, what the nodes pulled from it."""
        if self.registry is None:
            return {"policy": self.policy}
        stats = self.registry.pulls()
        return {"policy": self.policy, "address": self.registry.address,
                "storage": str(self.registry.storage),
                "registries": list(self.node.registries if self.node else ()),
                "images_pulled": dict(sorted(stats.manifests.items())),
                "pulled_bytes": stats.blob_bytes,
                "missing": list(stats.misses),
                "first_pull_at": stats.first_at, "last_pull_at": stats.last_at}

    def close(self) -> None:
        if self.registry is not None:
            self.registry.close()
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
