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
              "images_pulled": {"ghcr.io/drdrill-fixtures/busybox": 2,
                                "ghcr.io/drdrill-fixtures/charts/hello": 1},
              "repository_kinds": {"ghcr.io/drdrill-fixtures/busybox": "image",
                                   "ghcr.io/drdrill-fixtures/charts/hello": "chart"},
              "images_from_mirror": 1, "charts_from_mirror": 1, "pull_span_s": 4.0}
    egress = summary("mirror", mirror, blocked_lookups(parse_dns_log(DNS_LOG), pods_by_ip(PODS)),
                     refused_packets={"node-1": 7})
    report = _report(egress)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["egress"]["policy"] == "mirror"
    assert [(x["what"], x["repository"]) for x in data["egress"]["reached"]] == [
        ("image", "ghcr.io/drdrill-fixtures/busybox"),
        ("chart", "ghcr.io/drdrill-fixtures/charts/hello")]
    assert any(b["pod"] == "external-dns-5c7f-abcde" and b["host"] == "api.cloudflare.com"
               for b in data["egress"]["blocked"])
    assert [w["pod"] for w in data["egress"]["writers_blocked"]] == [
        "velero-1", "external-dns-5c7f-abcde"]
    md = render_markdown(report)
    assert "### What this recovery tried to reach" in md and "### External writers blocked" in md
    assert "`network/external-dns-5c7f-abcde`" in md and "`api.cloudflare.com`" in md
    assert "1 images and 1 charts from the mirror, 2.5 MB pulled over 4 s" in md
    from harness.report.markdown import render_summary

    summary_md = render_summary(report)  # report.md
    assert "- Egress policy `mirror`: 1 images and 1 charts from the mirror" in summary_md
    assert "external writers blocked: `backup/velero-1` -> `s3.amazonaws.com`" in summary_md
    assert "`network/external-dns-5c7f-abcde` -> `api.cloudflare.com`" in summary_md
    html = render_html(report)
    assert 'id="egress"' in html and "External writers blocked" in html
    assert "<code>network/external-dns-5c7f-abcde</code>" in html
    assert "<code>api.cloudflare.com</code>" in html
    assert "What this recovery tried to reach" not in render_markdown(_report({}))


def test_registries_policy_pieces():
    from pathlib import Path

    from harness.mirror.egress import proxy_blocked
    from harness.mirror.nodes import containerd_proxy_dropin
    from harness.mirror.proxy import allowed_hosts, refusals, tinyproxy_config

    assert allowed_hosts(["ghcr.io", "docker.io", "example.org:5000"]) == [
        "auth.docker.io", "docker.io", "example.org", "ghcr.io",
        "pkg-containers.githubusercontent.com", "production.cloudflare.docker.com",
        "registry-1.docker.io"]
    conf, rules = tinyproxy_config(listen="172.18.0.1", port=3128, hosts=["ghcr.io"],
                                   filter_file=Path("/w/allow"), log_file=Path("/w/log"),
                                   clients=["172.18.0.0/16"])
    assert "FilterDefaultDeny Yes" in conf and "Listen 172.18.0.1" in conf
    assert "Allow 172.18.0.0/16" in conf and rules == "^ghcr\\.io$\n"
    log = ['CONNECT   Dec 06 04:24:48.345 [1]: Connect (file descriptor 5): 172.18.0.3',
           'CONNECT   Dec 06 04:24:48.345 [1]: Request (file descriptor 5): CONNECT quay.io:443',
           'NOTICE    Dec 06 04:24:48.345 [1]: Proxying refused on filtered domain "quay.io"',
           'NOTICE    Dec 06 04:24:49.345 [1]: Proxying refused on filtered domain "quay.io"']
    assert refusals(log) == [{"host": "quay.io", "client": "172.18.0.3"}] * 2
    [entry] = proxy_blocked({"refused": refusals(log)})
    assert entry["owner"] == "node 172.18.0.3 (containerd)" and entry["attempts"] == 2
    assert entry["via"] == "proxy" and entry["host"] == "quay.io"
    dropin = containerd_proxy_dropin("http://172.18.0.1:3128", no_proxy=["172.18.0.1"])
    assert dropin.startswith("# drdrill") and "[Service]" in dropin
    assert '"HTTPS_PROXY=http://172.18.0.1:3128"' in dropin and '"NO_PROXY=172.18.0.1"' in dropin


def test_the_run_reports_the_last_rounds_egress_and_redirects_once():
    from types import SimpleNamespace

    from harness.drill import _egress, _mirror_redirects
    from harness.gitops.inputs import Obj

    s = SimpleNamespace(provider_rounds={
        1: {"egress": {"policy": "mirror", "blocked": [{"host": "a"}], "reached": []}},
        2: {"egress": {"policy": "mirror", "blocked": [], "reached": [{"what": "image"}]}},
        3: {"cluster": "no egress record"}})
    out = _egress(s)
    assert out["blocked"] == [] and out["reached"] == [{"what": "image"}]
    assert out["rounds"] == {"round1": {"blocked": 1, "reached": 0},
                             "round2": {"blocked": 0, "reached": 1}}
    assert _egress(SimpleNamespace(provider_rounds={})) == {}

    repo = Obj({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
                "metadata": {"name": "charts", "namespace": "flux-system"},
                "spec": {"url": "https://charts.example.org"}}, "flux-system",
               "Kustomization/flux-system/flux-system", "clusters/dev/repos.yaml")
    s = SimpleNamespace(model=SimpleNamespace(rendered=(repo,)), mirror_changes=[],
                        provider=SimpleNamespace(mirror_address="172.18.0.1:5000"))
    [patch] = _mirror_redirects(s)
    assert patch["target"]["kind"] == "HelmRepository"
    s.provider.mirror_address = "172.18.0.1:6000"  # round 2: another port, the same source
    _mirror_redirects(s)
    assert s.mirror_changes == ["HelmRepository/flux-system/charts: https://charts.example.org "
                                "-> oci://172.18.0.1:5000/charts.example.org (the drill's "
                                "registry mirror)"]
    s.provider = SimpleNamespace()  # embedded: no mirror, no patches
    assert _mirror_redirects(s) == ()
