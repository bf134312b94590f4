"""The drill's CoreDNS configuration, outside half, run by the pinned CoreDNS: an outside name
is answered NXDOMAIN here (no forward) and logged in the line the egress record parses. (The
cluster half needs a Kubernetes API: it is the live kind drill's.)"""

from __future__ import annotations

import secrets
import socket
import struct
import subprocess
import time

import pytest

from harness.config import Config
from harness.mirror.egress import COREFILE, parse_dns_log
from harness.procs import free_ports
from harness.tools import ensure_tools

pytestmark = pytest.mark.integration


def _query(port: int, name: str) -> int:
    """rcode of an A query for `name` sent to 127.0.0.1:port."""
    qid = secrets.randbelow(65536)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(packet, ("127.0.0.1", port))
        reply, _ = s.recvfrom(512)
    assert struct.unpack(">H", reply[:2])[0] == qid
    return struct.unpack(">H", reply[2:4])[0] & 0xF


def test_outside_names_are_answered_here_and_logged(tmp_path):
    coredns = ensure_tools(Config.from_env(), ["coredns"])["coredns"].path
    port = free_ports(1)[0]
    outside = COREFILE[COREFILE.index(".:53 {"):].replace(".:53 {", f".:{port} {{", 1)
    (tmp_path / "Corefile").write_text(outside)
    log = (tmp_path / "coredns.log").open("wb")
    proc = subprocess.Popen([str(coredns), "-conf", str(tmp_path / "Corefile")], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                rcode = _query(port, "api.cloudflare.com")
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "coredns.log").read_text()
                assert time.monotonic() < deadline, "CoreDNS did not answer"
                time.sleep(0.2)
        assert rcode == 3  # NXDOMAIN, answered locally
        assert _query(port, "hooks.slack.com") == 3
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    lookups = parse_dns_log((tmp_path / "coredns.log").read_text().splitlines())
    assert [(q.client_ip, q.name, q.qtype, q.rcode) for q in lookups] == [
        ("127.0.0.1", "api.cloudflare.com", "A", "NXDOMAIN"),
        ("127.0.0.1", "hooks.slack.com", "A", "NXDOMAIN")]


def test_the_whole_corefile_serves_both_halves(tmp_path):
    """The full Corefile as a cluster runs it (the kubernetes plugin pointed at an address with
    no API behind it): it parses, serves, answers an outside name NXDOMAIN itself and logs it,
    and routes cluster names to the kubernetes plugin (not logged)."""
    coredns = ensure_tools(Config.from_env(), ["coredns"])["coredns"].path
    dns, health, ready, metrics, api = free_ports(5)
    text = (COREFILE.replace("cluster.local:53 in-addr.arpa:53 ip6.arpa:53",
                             f"cluster.local:{dns} in-addr.arpa:{dns} ip6.arpa:{dns}")
            .replace(".:53 {", f".:{dns} {{")
            .replace("health {", f"health :{health} {{")
            .replace("    ready\n", f"    ready :{ready}\n")
            .replace("prometheus :9153", f"prometheus 127.0.0.1:{metrics}")
            .replace("pods insecure", f"endpoint http://127.0.0.1:{api}\n        pods insecure"))
    (tmp_path / "Corefile").write_text(text)
    log = (tmp_path / "coredns.log").open("wb")
    proc = subprocess.Popen([str(coredns), "-conf", str(tmp_path / "Corefile")], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30  # the kubernetes plugin waits ~5 s for its API
        while True:
            try:
                rcode = _query(dns, "api.cloudflare.com")
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "coredns.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "coredns.log").read_text()
                time.sleep(0.3)
        assert rcode == 3
        _query(dns, "kubernetes.default.svc.cluster.local")  # answered by the plugin (unsynced)
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    names = [q.name for q in parse_dns_log((tmp_path / "coredns.log").read_text().splitlines())]
    assert "api.cloudflare.com" in names
    assert not [n for n in names if n.endswith("cluster.local")]
