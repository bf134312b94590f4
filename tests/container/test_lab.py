"""The lab provider against real sshd in containers: a drill that loses host A and recovers
onto host B, host-key verification that touches nothing, and inventory/SSH errors that name
the host and field within seconds."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.config import Config
from harness.drill import DrillOptions, run_drill
from harness.errors import CommandError, HostKeyError, InventoryError, SSHError
from harness.gc import run_processes
from harness.providers import ProviderContext
from harness.providers.lab import LabProvider
from tests.container import labhost as lh

pytestmark = pytest.mark.container


def _no_drill_state(lab, name: str) -> None:
    """The host is as before the drill: no work folder, no process of ours."""
    assert "MISSING" in lab.exec(name, "sh", "-c", "test -e /var/tmp/drdrill || echo MISSING")
    ps = lab.exec(name, "ps", "-eo", "args")
    assert "kube-apiserver" not in ps and "etcd" not in ps and "controller" not in ps, ps


def _provider(inventory: Path, tmp_path: Path, run_id: str, **options) -> LabProvider:
    ctx = ProviderContext(run_id=run_id, cluster_name="r1", workdir=tmp_path / "r1",
                          config=Config.from_env(state_dir=tmp_path / "state"),
                          options={"inventory": str(inventory), **options})
    return LabProvider(ctx)


@pytest.mark.slow
def test_lab_drill_converges_on_a_and_recovers_onto_spare_b(lab, fixture_repo, tmp_path):
    lab.start("host-a", "host-b")
    inventory = lab.inventory(["host-a"], ["host-b"], extra="recover_to: spare\n")
    out = tmp_path / "report"
    started = time.monotonic()
    report, _ = run_drill(DrillOptions(
        repo=fixture_repo("chain3"), cluster="clusters/dev", provider="lab",
        report_dir=out, run_id=lab.run_id, converge_timeout_s=240,
        config=Config.from_env(state_dir=tmp_path / "state"),
        provider_options={"inventory": str(inventory)}))
    took = time.monotonic() - started
    data = json.loads((out / "report.json").read_text())
    assert report.verdict == "passed", data.get("error")

    phases = {(p["round"], p["name"]): p for p in data["phases"]}
    for rnd in (1, 2):
        for name in ("provision", "bootstrap", "converge", "verify"):
            assert phases[(rnd, name)]["outcome"] == "passed"
    lab_info = data["settings"]["provider"]
    rounds = {r: d["host"] for r, d in data["settings"]["provider_rounds"].items()}
    assert rounds["round1"]["name"] == "host-a" and rounds["round2"]["name"] == "host-b"
    for rnd, host in (("round1", "host-a"), ("round2", "host-b")):
        rec = rounds[rnd]
        assert rec["host_key"] == "ssh-ed25519 " + lh.fingerprint_of(lab.hosts[host])
        assert rec["verified_by"].startswith("known_hosts")
        assert rec["timings"]["upload_s"] > 0 and rec["timings"]["control_plane_s"] > 0
    assert "wipe_s" in rounds["round1"]["timings"]  # the disaster wiped host A
    assert lab_info["recover_to"] == "spare" and lab_info["host"]["name"] == "host-b"
    ks = {o["name"] for o in data["objects"] if o["round"] == 2 and o["kind"] == "Kustomization"}
    assert ks == {"flux-system", "crds", "controllers", "apps"}
    assert 0 < data["time_to_ready_s"] < took
    print(f"\nlab drill: TTR {data['time_to_ready_s']:.1f}s (first build "
          f"{data['settings']['first_build_ttr_s']:.1f}s), whole drill {took:.0f}s; "
          f"host-a {rounds['round1']['timings']}, host-b {rounds['round2']['timings']}")

    for host in ("host-a", "host-b"):
        _no_drill_state(lab, host)
    assert lab.run_id not in run_processes()[0]
    assert not (tmp_path / "state" / lab.run_id).exists()


def test_changed_host_key_fails_clearly_and_touches_nothing(lab, tmp_path):
    (a,) = lab.start("host-a")
    inventory = lab.inventory(["host-a"])
    # The host was "reinstalled": known_hosts still holds the old key.
    old = lh.make_keypair(tmp_path / "old-host-key", "old")
    (tmp_path / "known_hosts").write_text(
        f"[127.0.0.1]:{a.port} {' '.join(old.public_line.split()[:2])}\n")
    provider = _provider(inventory, tmp_path, lab.run_id)
    started = time.monotonic()
    with pytest.raises(HostKeyError) as err:
        provider.create()
    assert time.monotonic() - started < 5
    msg = str(err.value)
    assert "host-a" in msg and "known_hosts" in msg and "MISMATCH" in msg
    assert lh.fingerprint_of(a) in msg  # the key it presented
    assert err.value.field == "known_hosts"
    _no_drill_state(lab, "host-a")
    # sshd saw no login at all: the client hung up before authenticating.
    logs = lh.container_logs(a)
    assert "Accepted publickey" not in logs, logs


def test_unknown_host_key_is_refused_without_trust_on_first_use(lab, tmp_path):
    lab.start("host-a")
    inventory = lab.inventory(["host-a"])
    (tmp_path / "known_hosts").write_text("")
    with pytest.raises(InventoryError) as err:  # caught at load, before any connection
        _provider(inventory, tmp_path, lab.run_id)
    assert "host-a" in str(err.value) and err.value.field == "known_hosts"


def test_trust_on_first_use_pins_the_key_then_enforces_it(lab, tmp_path):
    (a,) = lab.start("host-a")
    pins = tmp_path / "pinned_known_hosts"
    inventory = lab.inventory(["host-a"], extra="trust_on_first_use: true\n",
                              host_fields={"host-a": {"known_hosts": str(pins)}})
    from harness.inventory import load_inventory
    from harness.ssh import check_reachable

    spec = load_inventory(inventory).primary
    first = check_reachable([spec])["host-a"]
    assert first["verified_by"].startswith("pinned on first use")
    assert pins.read_text().startswith(f"[127.0.0.1]:{a.port} ssh-ed25519 ")
    again = check_reachable([spec])["host-a"]
    assert again["verified_by"].startswith("known_hosts")
    other = lh.make_keypair(tmp_path / "other", "other")
    pins.write_text(f"[127.0.0.1]:{a.port} {' '.join(other.public_line.split()[:2])}\n")
    with pytest.raises(HostKeyError):  # a changed key is refused even with TOFU on
        check_reachable([spec])


def test_unreachable_host_names_host_and_field_within_seconds(lab, tmp_path):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    lab.start("host-a")
    inventory = lab.inventory(["host-a"], host_fields={"host-a": {"port": closed}})
    key = lab.hosts["host-a"].known_hosts_line.split(" ", 1)[1]
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{closed} {key}\n")
    provider = _provider(inventory, tmp_path, lab.run_id)
    started = time.monotonic()
    with pytest.raises(SSHError) as err:
        provider.create()
    assert time.monotonic() - started < 3
    assert err.value.host == "host-a" and err.value.field == "port"
    assert "Connection refused" in str(err.value)


def test_wrong_key_names_host_and_field_within_seconds(lab, tmp_path):
    lab.start("host-a")
    stranger = lh.make_keypair(tmp_path / "not-authorized", "stranger")
    inventory = lab.inventory(["host-a"],
                              host_fields={"host-a": {"key": str(stranger.private)}})
    provider = _provider(inventory, tmp_path, lab.run_id)
    started = time.monotonic()
    with pytest.raises(SSHError) as err:
        provider.create()
    assert time.monotonic() - started < 5
    assert err.value.host == "host-a" and err.value.field == "key"
    assert str(stranger.private) in str(err.value)
    _no_drill_state(lab, "host-a")


def test_unreachable_spare_fails_in_round_one_before_the_primary_is_touched(lab, tmp_path):
    lab.start("host-a")
    key = lab.hosts["host-a"].known_hosts_line.split(" ", 1)[1]
    inventory = lab.inventory(["host-a"], ["host-gone"], extra="recover_to: spare\n",
                              host_fields={"host-gone": {"host_key": f'"{key}"'}})
    provider = _provider(inventory, tmp_path, lab.run_id)
    started = time.monotonic()
    with pytest.raises(SSHError) as err:
        provider.create()
    assert time.monotonic() - started < 5
    assert err.value.host == "host-gone" and err.value.field == "port"
    _no_drill_state(lab, "host-a")


def test_inventory_typo_fails_in_milliseconds_naming_file_host_field(lab, tmp_path):
    lab.start("host-a")
    inventory = lab.inventory(["host-a"])
    inventory.write_text(inventory.read_text().replace("address:", "adress:"))
    started = time.monotonic()
    with pytest.raises(InventoryError) as err:
        _provider(inventory, tmp_path, lab.run_id)
    assert time.monotonic() - started < 0.5
    msg = str(err.value)
    assert str(inventory) in msg and "host host-a" in msg and "adress" in msg
    assert "did you mean 'address'" in msg


def test_drill_with_bad_inventory_is_broken_and_says_why(lab, fixture_repo, tmp_path):
    stranger = lh.make_keypair(tmp_path / "not-authorized", "stranger")
    lab.start("host-a")
    inventory = lab.inventory(["host-a"],
                              host_fields={"host-a": {"key": str(stranger.private)}})
    out = tmp_path / "report"
    started = time.monotonic()
    report, _ = run_drill(DrillOptions(
        repo=fixture_repo("chain3"), cluster="clusters/dev", provider="lab", report_dir=out,
        run_id=lab.run_id, config=Config.from_env(state_dir=tmp_path / "state"),
        provider_options={"inventory": str(inventory)}))
    assert time.monotonic() - started < 30  # preflight renders the repo; SSH fails at once
    assert report.verdict == "broken"
    assert "host-a" in report.error and "field key" in report.error
    provision = [p for p in report.phases if p.name == "provision"]
    assert provision and provision[0].outcome == "broken"
    _no_drill_state(lab, "host-a")


def test_log_streaming_and_file_copy(lab, tmp_path):
    import threading

    from harness.inventory import load_inventory
    from harness.ssh import SSHHost

    lab.start("host-a")
    spec = load_inventory(lab.inventory(["host-a"])).primary
    with SSHHost(spec) as h:
        src = tmp_path / "blob"
        src.write_bytes(b"x" * 300_000)
        h.put(src, "/root/blob", mode=0o600)
        assert h.run(["stat", "-c", "%s %a", "/root/blob"]).stdout.split() == ["300000", "600"]
        back = h.get("/root/blob", tmp_path / "back")
        assert back.read_bytes() == src.read_bytes()
        lines: list[str] = []
        stop = threading.Event()

        def on_line(line: str) -> None:
            lines.append(line)
            if len(lines) >= 3:
                stop.set()

        rc = h.stream("for i in 1 2 3 4 5 6; do echo line $i; sleep 0.2; done; sleep 31",
                      on_line, stop=stop, timeout_s=20)
        assert rc is None and lines[:3] == ["line 1", "line 2", "line 3"]
        assert h.stream("echo done; exit 3", lines.append, timeout_s=10) == 3
        assert lines[-1] == "done"
        with pytest.raises(CommandError) as err:
            h.run(["sleep", "10"], timeout_s=0.5)
        assert "timed out" in str(err.value) and err.value.argv[0] == "ssh"
    # hanging up on the streamed command stopped it with its session
    time.sleep(0.5)
    assert "sleep 31" not in lab.exec("host-a", "ps", "-eo", "args")


@pytest.mark.slow
def test_ctrl_c_during_a_lab_drill_leaves_nothing_on_the_host(lab, fixture_repo, tmp_path):
    """`drdrill drill --provider lab` (inventory from DRDRILL_INVENTORY), interrupted with
    SIGINT while Flux reconciles on host A: teardown wipes the host, nothing is left here."""
    import os
    import signal
    import subprocess
    import sys

    lab.start("host-a")
    inventory = lab.inventory(["host-a"])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DRDRILL_INVENTORY": str(inventory),
           "DRDRILL_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "drill", "--provider", "lab",
         "--repo", str(fixture_repo("chain3")), "--cluster", "clusters/dev",
         "--report-dir", str(tmp_path / "report")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=Path(__file__).resolve().parents[2])
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if "phase converge ..." in line:
            break
    assert any("phase converge" in line for line in seen), "".join(seen)
    assert "kube-apiserver" in lab.exec("host-a", "ps", "-eo", "args")
    # The host's processes are marked for the lab's own wipe, not as this machine's run
    # processes: a `drdrill gc` here (the container shares the kernel) must leave them alone.
    env = lab.exec("host-a", "sh", "-c", "cat /proc/[0-9]*/environ | tr '\\0' '\\n'")
    assert "DRDRILL_LAB_DIR=" in env and "DRDRILL_RUN_ID=" not in env
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + rest  # 128 + SIGINT, after the report
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["verdict"] == "broken" and "interrupted" in report["error"]
    assert report["interrupted_by"] == "SIGINT"
    _no_drill_state(lab, "host-a")
    assert report["run_id"] not in run_processes()[0]


FAKE_INSTALL = """#!/bin/sh
# Stands in for k3s's install.sh (air-gapped mode): records what it was asked, writes the
# files the real one writes, and an uninstall script. No cluster starts.
set -e
[ "$INSTALL_K3S_SKIP_DOWNLOAD" = true ] || { echo "would download" >&2; exit 7; }
echo "[INFO] fake k3s install: $INSTALL_K3S_EXEC"
mkdir -p /etc/rancher/k3s
echo "$INSTALL_K3S_EXEC" > /etc/rancher/k3s/install-exec
cat > /etc/rancher/k3s/k3s.yaml <<EOF2
apiVersion: v1
kind: Config
clusters:
- cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
  name: default
contexts: [{context: {cluster: default, user: default}, name: default}]
current-context: default
users: [{name: default, user: {token: fake}}]
EOF2
u=/usr/local/bin/k3s-uninstall.sh
printf '#!/bin/sh\\nrm -rf /etc/rancher /var/lib/rancher /usr/local/bin/k3s %s\\n' $u > $u
chmod +x $u
"""


def test_k3s_airgap_install_and_wipe_through_ssh(lab, tmp_path, caplog):
    """The k3s distribution up to the cluster: artifacts copied over SSH, the installer run
    with the right environment, the kubeconfig fetched and rewritten, and the wipe on failure
    (no k3s can run in these containers, so /readyz never answers)."""
    from harness.waits import WaitTimeout

    lab.start("host-a", "host-k")
    airgap = tmp_path / "airgap"
    airgap.mkdir()
    (airgap / "install.sh").write_text(FAKE_INSTALL)
    (airgap / "k3s").write_text("#!/bin/sh\necho fake k3s\n")
    (airgap / "k3s-airgap-images-amd64.tar.zst").write_bytes(b"\0" * 1024)
    inventory = lab.inventory(["host-a"])
    inventory.write_text(inventory.read_text().replace("distribution: embedded",
                                                       "distribution: k3s"))
    provider = _provider(inventory, tmp_path, lab.run_id, airgap_dir=str(airgap),
                         startup_timeout_s=3, api_access="tunnel", k3s_version="v1.31.4+k3s1")
    caplog.set_level("INFO", logger="harness.providers.lab")
    with pytest.raises(WaitTimeout) as err:
        provider.create()
    streamed = [r.getMessage() for r in caplog.records if "k3s install on host-a" in
                r.getMessage()]
    assert any("fake k3s install: server --node-name=host-a --tls-san=127.0.0.1 "
               "--write-kubeconfig-mode=0600 --https-listen-port=6443" in m for m in streamed)
    assert "k3s /readyz on host-a" in str(err.value) and "not ready after 3s" in str(err.value)
    # the wipe ran k3s's uninstall script and removed the drill's upload folder
    gone = lab.exec("host-a", "sh", "-c", "ls /etc/rancher /usr/local/bin/k3s "
                    "/var/lib/rancher/k3s/agent/images /var/tmp/drdrill/*/ 2>&1")
    assert gone.count("No such file") == 4, gone

    # a host that already runs a k3s the drill did not install is refused, untouched
    lab.exec("host-k", "sh", "-c", "printf '#!/bin/sh\\n' > /usr/local/bin/k3s && "
                                   "chmod +x /usr/local/bin/k3s")
    inventory = lab.inventory(["host-k"], name="k.yaml")
    inventory.write_text(inventory.read_text().replace("distribution: embedded",
                                                       "distribution: k3s"))
    provider = _provider(inventory, tmp_path, lab.run_id, airgap_dir=str(airgap))
    with pytest.raises(SSHError) as refused:
        provider.create()
    assert "already installed" in str(refused.value) and "wipe_existing" in str(refused.value)
    assert "/usr/local/bin/k3s" in lab.exec("host-k", "ls", "/usr/local/bin/k3s")
