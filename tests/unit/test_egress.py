"""The egress guard's record: CoreDNS's log of outside names mapped to the pods that asked,
writers among them, the lock's refused-packet counters, and the report section in JSON,
Markdown and HTML."""

from __future__ import annotations

import json

import pytest

from harness.mirror.egress import (
    COREFILE,
    DNS_TAG,
    blocked_lookups,
    parse_dns_log,
    pods_by_ip,
    refused_packets,
    summary,
)

pytestmark = pytest.mark.unit

DNS_LOG = [
    "[INFO] plugin/reload: Running configuration SHA512 = 1f2e",
    f"[INFO] {DNS_TAG} 10.244.1.7 api.cloudflare.com. A NXDOMAIN",
    f"[INFO] {DNS_TAG} 10.244.1.7 api.cloudflare.com. AAAA NXDOMAIN",
    f"[INFO] {DNS_TAG} 10.244.1.7 api.cloudflare.com. A NXDOMAIN",
    f"[INFO] {DNS_TAG} 10.244.1.7 api.cloudflare.com.web.svc.cluster.local. A NXDOMAIN",
    f"[INFO] {DNS_TAG} 10.244.2.3 hooks.slack.com. A NXDOMAIN",
    f"[INFO] {DNS_TAG} [fd00::5] s3.amazonaws.com. A NXDOMAIN",
    f"[INFO] {DNS_TAG} 10.244.9.9 example.org. A NXDOMAIN",
]

PODS = [
    {"metadata": {"namespace": "network", "name": "external-dns-5c7f-abcde", "ownerReferences": [
        {"kind": "ReplicaSet", "name": "external-dns-5c7f", "controller": True}]},
     "spec": {"containers": [{"image": "registry.k8s.io/external-dns/external-dns:v0.15"}]},
     "status": {"podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}]}},
    {"metadata": {"namespace": "apps", "name": "notifier-0", "ownerReferences": [
        {"kind": "StatefulSet", "name": "notifier", "controller": True}]},
     "spec": {"containers": [{"image": "ghcr.io/o/notifier:1"}]},
     "status": {"podIP": "10.244.2.3"}},
    {"metadata": {"namespace": "kube-system", "name": "kube-proxy-x"},
     "spec": {"hostNetwork": True, "containers": [{"image": "kube-proxy"}]},
     "status": {"podIP": "172.18.0.2"}},
    {"metadata": {"namespace": "backup", "name": "velero-1"},
     "spec": {"containers": [{"image": "velero/velero:v1"}]},
     "status": {"podIPs": [{"ip": "fd00::5"}]}},
]


def test_outside_names_are_parsed_and_cluster_names_left_out():
    lookups = parse_dns_log(DNS_LOG)
    assert [(q.client_ip, q.name, q.qtype) for q in lookups] == [
        ("10.244.1.7", "api.cloudflare.com", "A"), ("10.244.1.7", "api.cloudflare.com", "AAAA"),
        ("10.244.1.7", "api.cloudflare.com", "A"), ("10.244.2.3", "hooks.slack.com", "A"),
        ("fd00::5", "s3.amazonaws.com", "A"), ("10.244.9.9", "example.org", "A")]


def test_each_pod_and_host_once_with_attempts_owner_and_writer():
    blocked = blocked_lookups(parse_dns_log(DNS_LOG), pods_by_ip(PODS))
    rows = {(b["namespace"], b["pod"], b["host"]): b for b in blocked}
    dns = rows[("network", "external-dns-5c7f-abcde", "api.cloudflare.com")]
    assert dns["attempts"] == 3 and dns["owner"] == "ReplicaSet/external-dns-5c7f"
    assert dns["writer"] == "DNS records (external-dns)" and dns["via"] == "dns"
    assert rows[("apps", "notifier-0", "hooks.slack.com")]["writer"] is None
    assert rows[("backup", "velero-1", "s3.amazonaws.com")]["writer"] == \
        "backups to object storage (velero)"
    gone = rows[("", "", "example.org")]
    assert gone["owner"] == "address 10.244.9.9 (no pod now)" and gone["writer"] is None


def test_refused_packets_are_read_from_the_lock_counters():
    listing = """Chain DRDRILL-EGRESS (2 references)
    pkts      bytes target     prot opt in     out     source               destination
     120     7200 RETURN     all  --  *      *       0.0.0.0/0            172.18.0.0/16
       0        0 RETURN     all  --  *      *       0.0.0.0/0            10.244.0.0/16
       7      420 REJECT     all  --  *      *       0.0.0.0/0            0.0.0.0/0
"""
    assert refused_packets(listing) == 7
    assert refused_packets("iptables: No chain/target/match by that name.") == 0


def test_the_corefile_never_forwards():
    assert not [line for line in COREFILE.splitlines() if line.strip().startswith("forward")]
    assert "template ANY ANY" in COREFILE
    assert "kubernetes cluster.local" in COREFILE and DNS_TAG in COREFILE


def _report(egress):
    from harness.report.model import DrillReport

    return DrillReport(run_id="r", scenario="full-rebuild", provider="kind", repo="/repo",
                       revision="abc", verdict="passed", started_at="2026-12-06T04:00:00Z",
                       time_to_ready_s=42.0, rto_target_s=None, phases=(), objects=(),
                       manual_steps=(), critical_path=(), settings={}, diagnostics={},
                       egress=egress)


def test_report_sections_name_the_pod_and_host_in_json_markdown_and_html():
    from harness.report.html import render_html
    from harness.report.markdown import render_markdown

    mirror = {"address": "172.18.0.1:5000", "pulled_bytes": 2_500_000,
              "images_pulled": {"ghcr.io/drdrill-fixtures/busybox": 2}}
    egress = summary("mirror", mirror, blocked_lookups(parse_dns_log(DNS_LOG), pods_by_ip(PODS)),
                     refused_packets={"node-1": 7})
    report = _report(egress)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["egress"]["policy"] == "mirror"
    assert data["egress"]["reached"][0]["repository"] == "ghcr.io/drdrill-fixtures/busybox"
    assert any(b["pod"] == "external-dns-5c7f-abcde" and b["host"] == "api.cloudflare.com"
               for b in data["egress"]["blocked"])
    assert [w["pod"] for w in data["egress"]["writers_blocked"]] == [
        "velero-1", "external-dns-5c7f-abcde"]
    md = render_markdown(report)
    assert "### What this recovery tried to reach" in md and "### External writers blocked" in md
    assert "`network/external-dns-5c7f-abcde`" in md and "`api.cloudflare.com`" in md
    assert "2.5 MB pulled" in md
    html = render_html(report)
    assert 'id="egress"' in html and "External writers blocked" in html
    assert "<code>network/external-dns-5c7f-abcde</code>" in html
    assert "<code>api.cloudflare.com</code>" in html
    assert "What this recovery tried to reach" not in render_markdown(_report({}))
