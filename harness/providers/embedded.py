"""The default cluster: real etcd, kube-apiserver, controller-manager and scheduler as local
processes, with kwok simulating the nodes and their pods. No Docker, no cloud.

Every process listens on loopback ports picked at create time and writes into the cluster's
own folder, so several clusters run side by side.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import shutil
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from harness.config import Config
from harness.errors import HarnessError, ProviderError
from harness.kube import api_client, request
from harness.pki import ClusterPKI, create_pki, kubeconfig_yaml, write_secret
from harness.procs import Supervisor, free_ports
from harness.providers import ProviderContext
from harness.tools import EMBEDDED_TOOLS, FLUX_TOOLS, ResolvedTool, list_tools
from harness.waits import http_ok, poll_until

log = logging.getLogger(__name__)

SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.1.0.0/16"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"


class EmbeddedProvider:
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
        self._ssl: ssl.SSLContext | None = None
        self._probe: http.client.HTTPSConnection | None = None
        self.flags: dict[str, list[str]] = {}

    def restart_component(self, name: str, *, down_s: float = 0.0) -> None:
        """Stop one control-plane process and start it again with the same flags after
        `down_s` seconds (fault injection: an apiserver restart, etcd gone for a while)."""
        child = next((c for c in self._sup.children if c.name == name), None)
        if child is None:
            raise ProviderError(f"no running component {name!r}",
                                fix=f"use one of: {', '.join(c.name for c in self._sup.children)}")
        self._sup.stop(name, grace_s=2.0)
        time.sleep(down_s)
        self._sup.start(name, list(child.argv))

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

    def create(self) -> None:
        try:
            self._create()
        except BaseException:
            self.delete()
            raise

    def delete(self) -> None:
        # A short grace: the cluster is being thrown away, and kube-apiserver's graceful
        # shutdown would otherwise hold teardown for many seconds.
        self._sup.stop_all(grace_s=2.0)
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        if self._api is not None:
            with contextlib.suppress(Exception):
                self._api.close()
            self._api = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def is_up(self) -> bool:
        if not self._ports or self._pki is None or not self._pki.ca.cert.exists():
            return False
        ok, _ = self._readyz()
        return ok and self._nodes_ready()[0]

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
            "versions": {n: self.ctx.tools[n].version for n in EMBEDDED_TOOLS},
            "flags": self.flags,
        }

    def __enter__(self) -> EmbeddedProvider:
        self.create()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.delete()

    # -- internals -------------------------------------------------------------------------
    def _tool(self, name: str) -> ResolvedTool:
        return self.ctx.tools[name]

    def _start(self, name: str, args: list[str]) -> None:
        self.flags[name] = args
        self._sup.start(name, [str(self._tool(name).path), *args])

    def _create(self) -> None:
        self._data.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._pki = pki = create_pki(self.workdir / "pki")
        names = ["etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok"]
        self._ports = dict(zip(names, free_ports(len(names)), strict=True))
        p = self._ports
        etcd_url = f"http://127.0.0.1:{p['etcd']}"
        peer_url = f"http://127.0.0.1:{p['etcd-peer']}"
        self._start("etcd", [
            f"--name={self.ctx.cluster_name}",
            f"--data-dir={self._data / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster={self.ctx.cluster_name}={peer_url}",
            "--unsafe-no-fsync",  # a drill cluster is thrown away; fsync only costs time
            "--quota-backend-bytes=1073741824",
            "--log-level=warn",
        ])
        poll_until(lambda: http_ok(f"{etcd_url}/health"), timeout_s=self.startup_timeout_s,
                   what="etcd /health", abort=self._sup.check, interval_s=0.05)

        self._start("kube-apiserver", [
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={p['apiserver']}",
            f"--cert-dir={self._data / 'apiserver-certs'}",
            f"--tls-cert-file={pki.apiserver.cert}", f"--tls-private-key-file={pki.apiserver.key}",
            f"--client-ca-file={pki.ca.cert}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_public}",
            f"--service-account-signing-key-file={pki.sa_private}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--anonymous-auth=false",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",  # the loopback address is not a valid Endpoint
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
        ])
        poll_until(self._readyz, timeout_s=self.startup_timeout_s, what="kube-apiserver /readyz",
                   abort=self._sup.check, interval_s=0.1)
        write_secret(self._kubeconfig, kubeconfig_yaml(
            server=self.api_url, pki=pki, name=f"drdrill-{self.ctx.cluster_name}").encode())

        kc = str(self._kubeconfig)
        self._start("kube-controller-manager", [
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={p['controller-manager']}",
            f"--cert-dir={self._data / 'kcm-certs'}",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki.sa_private}",
            f"--root-ca-file={pki.ca.cert}",
            f"--cluster-signing-cert-file={pki.ca.cert}",
            f"--cluster-signing-key-file={pki.ca.key}",
            "--use-service-account-credentials=false",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--v=1",
        ])
        self._start("kube-scheduler", [
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={p['scheduler']}",
            "--leader-elect=false",
            "--v=1",
        ])
        self._start("kwok", [
            f"--kubeconfig={kc}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            "--manage-nodes-with-label-selector=",
            f"--cidr={POD_CIDR}",
            "--node-ip=10.0.0.1",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{p['kwok']}",
        ])
        self._api = api_client(self._kubeconfig)
        self._register_nodes()
        poll_until(self._nodes_ready, timeout_s=self.startup_timeout_s, what="kwok nodes Ready",
                   abort=self._sup.check, interval_s=0.1)

    def _readyz(self) -> tuple[bool, str]:
        """GET /readyz over one kept-alive TLS connection (a handshake per probe costs CPU)."""
        assert self._pki is not None
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=str(self._pki.ca.cert))
            self._ssl.load_cert_chain(str(self._pki.admin.cert), str(self._pki.admin.key))
        if self._probe is None:
            self._probe = http.client.HTTPSConnection("127.0.0.1", self._ports["apiserver"],
                                                      timeout=2, context=self._ssl)
        try:
            self._probe.request("GET", "/readyz")
            resp = self._probe.getresponse()
            body = resp.read(300).decode(errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            self._probe.close()
            self._probe = None
            return False, str(exc)
        return resp.status == 200, f"HTTP {resp.status}: {body}"

    def _register_nodes(self) -> None:
        core = k8s.CoreV1Api(self._api)
        for i in range(self.node_count):
            name = f"kwok-{self.ctx.cluster_name}-{i}"
            node = {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {KWOK_NODE_ANNOTATION: "fake",
                                    "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                               "kubernetes.io/arch": "amd64", "type": "kwok",
                               "drdrill.dev/run-id": self.ctx.run_id},
                },
                "status": {
                    "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                    "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                },
            }
            try:
                core.create_node(node)
            except ApiException as exc:
                if exc.status != 409:
                    raise ProviderError(f"cannot register node {name}: {exc.reason}") from exc

    def _nodes_ready(self) -> tuple[bool, str]:
        try:  # raw JSON: the client's model deserialisation is the costly part of a poll
            nodes = request(self._api, "GET", "/api/v1/nodes", timeout_s=5,
                            retry_budget_s=0)["items"]
        except (ApiException, OSError, HarnessError, Urllib3Error) as exc:
            return False, f"list nodes failed: {exc}"
        ready = [n["metadata"]["name"] for n in nodes
                 if any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (n.get("status") or {}).get("conditions") or [])]
        return len(ready) >= self.node_count, f"{len(ready)}/{self.node_count} nodes Ready"

