"""The egress guard of a drill cluster and what it saw. Under the `mirror` policy the nodes'
lock (DRDRILL-EGRESS, in drdrill's node image) refuses every address outside the run, and
the cluster's DNS is the drill's own: CoreDNS answers cluster names, answers every outside
name NXDOMAIN itself (never forwards) and logs it. Afterwards the log says which pod asked for
which outside host; the mirror's access log says what the recovery did reach."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DNS_TAG = "drdrill-dns"
COREFILE = f"""# drdrill: a drill cluster's DNS never forwards outside names; it answers them
# NXDOMAIN and logs who asked (the report's "what this recovery tried to reach").
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {{
    errors
    health {{
        lameduck 5s
    }}
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus :9153
    cache 30
    loadbalance
}}
.:53 {{
    errors
    log . "{DNS_TAG} {{remote}} {{name}} {{type}} {{rcode}}"
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""
"""kubeadm's Corefile with `forward . /etc/resolv.conf` replaced: outside names stop here."""

_DNS_LINE = re.compile(DNS_TAG + r" (?P<ip>\S+) (?P<name>\S+) (?P<type>\S+) (?P<rcode>\S+)")
_LOCAL_SUFFIXES = (".cluster.local.", ".in-addr.arpa.", ".ip6.arpa.", ".svc.", ".local.")

WRITER_HINTS: tuple[tuple[str, str], ...] = (
    ("external-dns", "DNS records (external-dns)"),
    ("cert-manager", "DNS-01 challenge records (cert-manager)"),
    ("acme", "DNS-01 challenge records (ACME solver)"),
    ("pushsecret", "secrets pushed to a vault (PushSecret)"),
    ("external-secrets", "a secret store (external-secrets)"),
    ("velero", "backups to object storage (velero)"),
    ("volsync", "backups to object storage (volsync)"),
    ("k8up", "backups to object storage (k8up)"),
    ("restic", "backups to object storage (restic)"),
    ("kopia", "backups to object storage (kopia)"),
    ("backup", "backups (a backup job)"),
    ("cloudflare", "DNS or tunnels (Cloudflare)"),
    ("discord", "chat webhooks (Discord)"),
    ("slack", "chat webhooks (Slack)"),
    ("apprise", "notifications (apprise)"),
    ("ntfy", "notifications (ntfy)"),
    ("gotify", "notifications (gotify)"),
    ("webhook", "webhooks"),
)
"""Substrings of a pod's owner, name or image -> what it would have written outside."""


@dataclass(frozen=True)
class Lookup:
    client_ip: str
    name: str
    qtype: str
    rcode: str


def parse_dns_log(lines: Iterable[str]) -> list[Lookup]:
    """The outside names CoreDNS answered itself (cluster names are not in this log)."""
    out = []
    for line in lines:
        m = _DNS_LINE.search(line)
        if not m:
            continue
        name = m.group("name").lower()
        if name.endswith(_LOCAL_SUFFIXES) or name in (".", "cluster.local."):
            continue
        ip = m.group("ip")  # {remote}: the client's address, IPv6 in brackets
        ip = ip[1:ip.index("]")] if ip.startswith("[") and "]" in ip else ip
        out.append(Lookup(ip, name.rstrip("."), m.group("type"), m.group("rcode")))
    return out


def writer_kind(*texts: str) -> str | None:
    low = " ".join(texts).lower()
    return next((what for hint, what in WRITER_HINTS if hint in low), None)


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    owner: str
    images: tuple[str, ...]


def pods_by_ip(pods: Iterable[Mapping[str, Any]]) -> dict[str, PodInfo]:
    from harness.podcauses import owner_of

    out: dict[str, PodInfo] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        spec = pod.get("spec") or {}
        if spec.get("hostNetwork"):
            continue
        info = PodInfo(str(meta.get("namespace", "")), str(meta.get("name", "")),
                       owner_of(pod), tuple(str(c.get("image", ""))
                                            for c in spec.get("containers") or []))
        for entry in status.get("podIPs") or [{"ip": status.get("podIP")}]:
            if entry.get("ip"):
                out[str(entry["ip"])] = info
    return out


def blocked_lookups(lookups: Iterable[Lookup],
                    pods: Mapping[str, PodInfo]) -> list[dict[str, Any]]:
    """One entry per (pod, host): who asked, how often, and what it would have written."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for q in lookups:
        pod = pods.get(q.client_ip)
        who = (pod.namespace, pod.name) if pod else ("", q.client_ip)
        key = (f"{who[0]}/{who[1]}", q.name)
        if key in seen:
            seen[key]["attempts"] += 1
            continue
        writer = writer_kind(pod.owner, pod.name, *pod.images) if pod else None
        seen[key] = {"namespace": pod.namespace if pod else "",
                     "pod": pod.name if pod else "",
                     "owner": pod.owner if pod else f"address {q.client_ip} (no pod now)",
                     "host": q.name, "via": "dns", "refused_by": "drill DNS (NXDOMAIN)",
                     "attempts": 1, "writer": writer}
    return sorted(seen.values(), key=lambda e: (e["namespace"], e["pod"], e["host"]))


def reached(mirror: Mapping[str, Any], git_url: str | None = None) -> list[dict[str, Any]]:
    """What the recovery reached, all inside the drill: the mirror (each repository pulled)
    and the drill's Git server."""
    out: list[dict[str, Any]] = []
    if git_url:
        out.append({"what": "git", "host": git_url, "through": "drill Git server"})
    kinds = mirror.get("repository_kinds") or {}
    for repo, pulls in sorted((mirror.get("images_pulled") or {}).items()):
        out.append({"what": kinds.get(repo, "registry"), "host": repo.split("/", 1)[0],
                    "repository": repo,
                    "through": f"drill mirror {mirror.get('address', '')}", "pulls": pulls})
    return out


def proxy_blocked(proxy: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Hosts the `registries` proxy refused a node's containerd, one entry per (node, host)."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for r in proxy.get("refused") or []:
        key = (str(r.get("client", "")), str(r.get("host", "")))
        if key in seen:
            seen[key]["attempts"] += 1
            continue
        seen[key] = {"namespace": "", "pod": "", "owner": f"node {key[0]} (containerd)",
                     "host": key[1], "via": "proxy", "refused_by": "allow-list proxy",
                     "attempts": 1, "writer": None}
    return list(seen.values())


def summary(policy: str, mirror: Mapping[str, Any], blocked: list[dict[str, Any]], *,
            refused_packets: Mapping[str, int] | None = None,
            git_url: str | None = None) -> dict[str, Any]:
    """report.json's `egress`: policy, reached, blocked, writers (the blocked that write)."""
    blocked = [*blocked, *proxy_blocked(mirror.get("proxy") or {})]
    return {"policy": policy, "reached": reached(mirror, git_url), "blocked": blocked,
            "writers_blocked": [b for b in blocked if b.get("writer")],
            "refused_packets": dict(refused_packets or {}),
            "mirror": {**{k: mirror.get(k) for k in ("address", "pulled_bytes", "missing",
                                                     "first_pull_at", "last_pull_at",
                                                     "pull_span_s", "images_from_mirror",
                                                     "charts_from_mirror") if k in mirror},
                       "repositories_pulled": len(mirror.get("images_pulled") or {})}}


# -- on a live cluster -------------------------------------------------------------------------

COUNTER_ARGV = ("iptables", "-L", "DRDRILL-EGRESS", "-v", "-x", "-n")
"""Run on a node (docker exec): the lock's rules with their packet counters."""


def refused_packets(iptables_listing: str) -> int:
    """Packets the lock's final REJECT/DROP rule refused (from `COUNTER_ARGV`'s output)."""
    total = 0
    for line in iptables_listing.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[0].isdigit() and parts[2] in ("REJECT", "DROP"):
            total += int(parts[0])
    return total


def guard_dns(api: Any) -> None:
    """Make the cluster's DNS the drill's own (COREFILE) and restart CoreDNS onto it."""
    import hashlib

    from harness.kube import request

    request(api, "PATCH", "/api/v1/namespaces/kube-system/configmaps/coredns",
            body={"data": {"Corefile": COREFILE}},
            content_type="application/merge-patch+json")
    stamp = hashlib.sha256(COREFILE.encode()).hexdigest()[:12]
    request(api, "PATCH", "/apis/apps/v1/namespaces/kube-system/deployments/coredns",
            body={"spec": {"template": {"metadata": {"annotations": {
                "drdrill.dev/dns-guard": stamp}}}}},
            content_type="application/strategic-merge-patch+json")


def observe(api: Any, policy: str, mirror: Mapping[str, Any], *,
            refused: Mapping[str, int] | None = None,
            git_url: str | None = None) -> dict[str, Any]:
    """The `egress` summary of a live cluster: CoreDNS's log of outside names, mapped to the
    pods that asked (read before the cluster goes)."""
    from kubernetes.client import CoreV1Api

    from harness.kube import request

    core = CoreV1Api(api)
    lines: list[str] = []
    dns = request(api, "GET", "/api/v1/namespaces/kube-system/pods",
                  query=[("labelSelector", "k8s-app=kube-dns")]).get("items") or []
    for pod in dns:
        name = str((pod.get("metadata") or {}).get("name", ""))
        text = core.read_namespaced_pod_log(name, "kube-system", _request_timeout=20)
        lines += str(text or "").splitlines()
    pods = request(api, "GET", "/api/v1/pods").get("items") or []
    blocked = blocked_lookups(parse_dns_log(lines), pods_by_ip(pods))
    return summary(policy, mirror, blocked, refused_packets=refused, git_url=git_url)

