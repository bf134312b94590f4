"""The default cluster: real etcd, kube-apiserver, controller-manager and scheduler as local
processes, with kwok simulating the nodes and their pods. No Docker, no cloud.

Every process listens on loopback ports picked at create time and writes into the cluster's
own folder, so several clusters run side by side.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.config import Config
from harness.controlplane import (
    PORT_NAMES,
    Layout,
    ReadyzProbe,
    apiserver_args,
    controller_manager_args,
    etcd_args,
    kwok_args,
    nodes_ready,
    register_kwok_nodes,
    scheduler_args,
)
from harness.errors import ProviderError
from harness.kube import api_client
from harness.pki import ClusterPKI, create_pki, kubeconfig_yaml, write_secret
from harness.procs import Supervisor, free_ports, port_in_use
from harness.providers import ClusterLifecycle, ProviderContext
from harness.tools import EMBEDDED_TOOLS, FLUX_TOOLS, ResolvedTool, list_tools
from harness.waits import http_ok, poll_until

log = logging.getLogger(__name__)



class EmbeddedProvider(ClusterLifecycle):
    """A cluster made of upstream binaries on this machine (see module docstring)."""

    name = "embedded"

    def __init__(self, ctx: ProviderContext) -> None:
        missing = [t for t in EMBEDDED_TOOLS if t not in ctx.tools]
        if missing:
            raise ProviderError(f"embedded provider needs the pinned tools {missing}",
                                fix="run `drdrill tools ensure` (or pass --tools-dir)")
        self.ctx = ctx
        self.node_count = int(ctx.options.get("nodes", 3))
        self.startup_timeout_s = float(ctx.options.get("startup_timeout_s", 90))
        self.workdir = ctx.workdir
        self._data = self.workdir / "data"
        self._sup = Supervisor(ctx.run_id, self.workdir / "logs")
        self._pki: ClusterPKI | None = None
        self._kubeconfig = self.workdir / "kubeconfig"
        self._ports: dict[str, int] = {}
        self._api: Any = None
        self._probe: ReadyzProbe | None = None
        self.flags: dict[str, list[str]] = {}

    def restart_component(self, name: str, *, down_s: float = 0.0, crash: bool = False) -> None:
        """Stop one process of the cluster (a control-plane component or a host-process Flux
        controller) and start it again with the same flags and environment after `down_s`
        seconds (fault injection: an apiserver restart, etcd gone for a while). `crash`: kill
        it with SIGKILL, as an OOM kill or a node-level crash would."""
        child = next((c for c in self._sup.children if c.name == name), None)
        if child is None:
            raise ProviderError(f"no running component {name!r}",
                                fix=f"use one of: {', '.join(c.name for c in self._sup.children)}")
        self._sup.stop(name, grace_s=0.0 if crash else 2.0)
        time.sleep(down_s)
        self._sup.start(name, list(child.argv), env=child.env)

    @staticmethod
    def required_tools(options: Mapping[str, Any]) -> tuple[str, ...]:
        """Pinned binaries preflight must resolve for this provider."""
        return (*EMBEDDED_TOOLS, *FLUX_TOOLS)

    @staticmethod
    def availability(config: Config) -> tuple[bool, str]:
        """Can a cluster start here now? (for `drdrill providers`; never builds anything)"""
        tools = {t["name"]: t for t in list_tools(config)}
        missing = [n for n in (*EMBEDDED_TOOLS, *FLUX_TOOLS)
                   if tools.get(n, {}).get("path") is None]
        if not missing:
            return True, "all pinned binaries present"
        if shutil.which(config.go):
            return True, f"will build {', '.join(missing)} with Go on first use (minutes)"
        return False, (f"missing {', '.join(missing)} and no Go to build them: pass --tools-dir "
                       "or install Go")

    # -- ClusterProvider -------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig

    @property
    def supervisor(self) -> Supervisor:
        return self._sup

    @property
    def data_dir(self) -> Path:
        return self._data

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self._ports['apiserver']}"

    def ports(self, count: int) -> list[int]:
        return free_ports(count)

    def delete(self) -> None:
        # A short grace: the cluster is being thrown away, and kube-apiserver's graceful
        # shutdown would otherwise hold teardown for many seconds.
        self._sup.stop_all(grace_s=2.0)
        left = self._sup.leftovers()
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        if self._api is not None:
            with contextlib.suppress(Exception):
                self._api.close()
            self._api = None
        shutil.rmtree(self.workdir, ignore_errors=True)
        if left:
            raise ProviderError(f"cluster {self.ctx.cluster_name}: still running after "
                                f"SIGKILL: {', '.join(left)}",
                                fix=f"drdrill gc --run-id {self.ctx.run_id}")

    def leftovers(self) -> list[str]:
        """Processes of this cluster in /proc, its ports still answering, its folder."""
        left = self._sup.leftovers()
        left += [f"port 127.0.0.1:{port} ({name}) still answers"
                 for name, port in self._ports.items()
                 if name != "etcd-peer" and port_in_use(port)]
        if self.workdir.exists():
            left.append(f"folder {self.workdir}")
        return left

    def is_up(self) -> bool:
        if not self._ports or not port_in_use(self._ports["apiserver"]):
            return False
        if self._pki is None or not self._pki.ca.cert.exists():
            return True  # something answers on the API port, but no longer as this cluster
        ok, _ = self._readyz()
        return ok and nodes_ready(self._api, self.node_count)[0]

    def dump_logs(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        for f in sorted(self._sup.log_dir.glob("*.log")):
            target = dest / f.name
            shutil.copyfile(f, target)
            out.append(target)
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "nodes": self.node_count,
            # Which machine it was: new-hardware's report names both targets.
            "api_url": self.api_url if self._ports else None,
            "workdir": str(self.workdir),
            "versions": {n: self.ctx.tools[n].version for n in EMBEDDED_TOOLS},
            "flags": self.flags,
        }

    # -- internals -------------------------------------------------------------------------
    def _tool(self, name: str) -> ResolvedTool:
        return self.ctx.tools[name]

    def _start(self, name: str, args: list[str]) -> None:
        self.flags[name] = args
        self._sup.start(name, [str(self._tool(name).path), *args])

    def _create(self) -> None:
        self._data.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._pki = create_pki(self.workdir / "pki")
        self._ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
        lay = Layout(self.ctx.cluster_name, str(self._data), str(self._kubeconfig), self._pki,
                     self._ports)
        self._start("etcd", etcd_args(lay))
        poll_until(lambda: http_ok(f"{lay.etcd_url}/health"), timeout_s=self.startup_timeout_s,
                   what="etcd /health", abort=self._sup.check, interval_s=0.05)
        self._start("kube-apiserver", apiserver_args(lay))
        poll_until(self._readyz, timeout_s=self.startup_timeout_s, what="kube-apiserver /readyz",
                   abort=self._sup.check, interval_s=0.1)
        write_secret(self._kubeconfig, kubeconfig_yaml(
            server=self.api_url, pki=self._pki,
            name=f"drdrill-{self.ctx.cluster_name}").encode())
        self._start("kube-controller-manager", controller_manager_args(lay))
        self._start("kube-scheduler", scheduler_args(lay))
        self._start("kwok", kwok_args(lay))
        self._api = api_client(self._kubeconfig)
        register_kwok_nodes(self._api, [f"kwok-{self.ctx.cluster_name}-{i}"
                                        for i in range(self.node_count)],
                            {"drdrill.dev/run-id": self.ctx.run_id})
        poll_until(lambda: nodes_ready(self._api, self.node_count),
                   timeout_s=self.startup_timeout_s, what="kwok nodes Ready",
                   abort=self._sup.check, interval_s=0.1)

    def _readyz(self) -> tuple[bool, str]:
        if self._probe is None:
            assert self._pki is not None
            self._probe = ReadyzProbe(self._pki, self._ports["apiserver"])
        return self._probe()
