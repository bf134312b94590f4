"""The embedded control plane's flags and kwok nodes, shared by every provider that runs it
(locally: `embedded`; on a lab host over SSH: `lab` with the embedded distribution).

Paths are strings because they may name files on another machine.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from harness.errors import HarnessError, ProviderError
from harness.kube import request
from harness.pki import ClusterPKI

SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.1.0.0/16"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
PORT_NAMES = ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok")


@dataclass(frozen=True)
class Layout:
    """Where one control plane keeps its files and which loopback ports it listens on."""

    cluster: str
    data_dir: str
    kubeconfig: str
    pki: ClusterPKI
    ports: Mapping[str, int]

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['etcd']}"


def etcd_args(lay: Layout) -> list[str]:
    peer = f"http://127.0.0.1:{lay.ports['etcd-peer']}"
    return [
        f"--name={lay.cluster}", f"--data-dir={lay.data_dir}/etcd",
        f"--listen-client-urls={lay.etcd_url}", f"--advertise-client-urls={lay.etcd_url}",
        f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={lay.cluster}={peer}",
        "--unsafe-no-fsync",  # a drill cluster is thrown away; fsync only costs time
        "--quota-backend-bytes=1073741824",
        "--log-level=warn",
    ]


def apiserver_args(lay: Layout) -> list[str]:
    pki = lay.pki
    return [
        f"--etcd-servers={lay.etcd_url}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
        f"--secure-port={lay.ports['apiserver']}",
        f"--cert-dir={lay.data_dir}/apiserver-certs",
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
    ]


def _client_args(lay: Layout, port: str) -> list[str]:
    kc = lay.kubeconfig
    return [f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}", "--bind-address=127.0.0.1",
            f"--secure-port={lay.ports[port]}", "--leader-elect=false"]


def controller_manager_args(lay: Layout) -> list[str]:
    pki = lay.pki
    return [
        *_client_args(lay, "controller-manager"),
        f"--cert-dir={lay.data_dir}/kcm-certs",
        f"--service-account-private-key-file={pki.sa_private}",
        f"--root-ca-file={pki.ca.cert}",
        f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}",
        "--use-service-account-credentials=false",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--v=1",
    ]


def scheduler_args(lay: Layout) -> list[str]:
    return [*_client_args(lay, "scheduler"), "--v=1"]


def kwok_args(lay: Layout) -> list[str]:
    return [
        f"--kubeconfig={lay.kubeconfig}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        "--manage-nodes-with-label-selector=",
        f"--cidr={POD_CIDR}",
        "--node-ip=10.0.0.1",
        "--node-lease-duration-seconds=40",
        f"--server-address=127.0.0.1:{lay.ports['kwok']}",
    ]


def register_kwok_nodes(api: Any, names: Iterable[str], labels: Mapping[str, str]) -> None:
    """Create kwok-managed Node objects (kwok keeps them Ready and runs their pods)."""
    core = k8s.CoreV1Api(api)
    for name in names:
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                           "kubernetes.io/arch": "amd64", "type": "kwok", **labels},
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


def nodes_ready(api: Any, want: int) -> tuple[bool, str]:
    """(at least `want` nodes Ready, what was seen). Raw JSON: model decoding costs CPU."""
    try:
        nodes = request(api, "GET", "/api/v1/nodes", timeout_s=5, retry_budget_s=0)["items"]
    except (ApiException, OSError, HarnessError, Urllib3Error) as exc:
        return False, f"list nodes failed: {exc}"
    ready = [n["metadata"]["name"] for n in nodes
             if any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (n.get("status") or {}).get("conditions") or [])]
    return len(ready) >= want, f"{len(ready)}/{want} nodes Ready"


class ReadyzProbe:
    """GET /readyz as the cluster admin over one kept-alive TLS connection: building the TLS
    context and handshaking on every probe costs the harness real CPU."""

    def __init__(self, pki: ClusterPKI, port: int) -> None:
        self.port = port
        self._ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
        self._ctx.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
        self._conn: http.client.HTTPSConnection | None = None

    def __call__(self) -> tuple[bool, str]:
        if self._conn is None:
            self._conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=2,
                                                     context=self._ctx)
        try:
            self._conn.request("GET", "/readyz")
            resp = self._conn.getresponse()
            body = resp.read(300).decode(errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return False, str(exc)
        return resp.status == 200, f"HTTP {resp.status}: {body}"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
