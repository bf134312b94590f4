"""The lab inventory: every mistake is named (file, host, field) at load time, in milliseconds;
plus the lab provider's pure helpers (host choice, kubeconfig rewrite, ports, k3s env)."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import time
from pathlib import Path

import pytest
import yaml

from harness.errors import ConfigError, InventoryError
from harness.inventory import load_inventory, read_known_hosts
from harness.providers.lab import (
    add_provider_options,
    k3s_install_env,
    listening_ports,
    pick_host,
    pick_ports,
    provider_options_from_args,
    rewrite_kubeconfig_server,
)

pytestmark = pytest.mark.unit

ED_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8vQ2s4Q0J0aHz1f2VjX1N0cmluZ0tleURhdGEwMDAw"
PRIVATE = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.fixture
def lab_dir(tmp_path):
    (tmp_path / "id").write_text(PRIVATE)
    (tmp_path / "known_hosts").write_text(
        f"[10.0.0.1]:2222 {ED_KEY}\n10.0.0.2 {ED_KEY}\n10.0.0.3 {ED_KEY}\n")
    return tmp_path


def write(lab_dir: Path, data: dict | str) -> Path:
    path = lab_dir / "lab.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def base(**top) -> dict:
    data = {
        "defaults": {"user": "root", "key": "id", "known_hosts": "known_hosts"},
        "hosts": [{"name": "node-a", "address": "10.0.0.1", "port": 2222, "role": "server"}],
        "spare": [{"name": "node-b", "address": "10.0.0.2"}],
    }
    data.update(top)
    return data


def load_error(lab_dir, data) -> InventoryError:
    started = time.monotonic()
    with pytest.raises(InventoryError) as err:
        load_inventory(write(lab_dir, data))
    assert time.monotonic() - started < 0.1  # milliseconds, not a network timeout
    return err.value


def test_a_valid_inventory(lab_dir):
    inv = load_inventory(write(lab_dir, base(distribution="embedded")))
    a = inv.primary
    assert (a.name, a.address, a.port, a.user, a.role, a.pool) == (
        "node-a", "10.0.0.1", 2222, "root", "server", "hosts")
    assert a.key == lab_dir / "id" and a.known_hosts == lab_dir / "known_hosts"
    assert a.known_hosts_name == "[10.0.0.1]:2222"
    assert [h.name for h in inv.spare] == ["node-b"] and inv.spare[0].known_hosts_name == \
        "10.0.0.2"
    assert inv.distribution == "embedded" and inv.recover_to == "same"
    assert inv.host("node-b").pool == "spare"


@pytest.mark.parametrize(("mutate", "host", "field", "words"), [
    (lambda d: d["hosts"][0].update(adress="x"), "node-a", "adress", "did you mean 'address'"),
    (lambda d: d["hosts"][0].pop("address"), "node-a", "address", "missing"),
    (lambda d: d["hosts"][0].update(port=70000), "node-a", "port", "1 to 65535"),
    (lambda d: d["hosts"][0].update(port="22"), "node-a", "port", "not a number"),
    (lambda d: d["hosts"][0].update(role="master"), "node-a", "role", "server, agent"),
    (lambda d: d["hosts"][0].update(key="nope"), "node-a", "key", "does not exist"),
    (lambda d: d["spare"][0].update(known_hosts="missing_kh"), "node-b", "known_hosts",
     "does not exist"),
    (lambda d: d["spare"][0].update(address="10.9.9.9"), "node-b", "known_hosts",
     "has no key for 10.9.9.9"),
    (lambda d: d["spare"][0].update(host_key="ssh-ed25519 not*base64"), "node-b", "host_key",
     "base64"),
    (lambda d: d["spare"][0].update(host_key="ssh-dss AAAA"), "node-b", "host_key",
     "<type> <base64>"),
    (lambda d: d["spare"][0].update(address="10.0.0.1", port=2222), "node-b", "address",
     "other hardware"),
    (lambda d: d["spare"][0].update(name="node-a"), "node-a", "name", "used twice"),
    (lambda d: d["hosts"][0].update(sudo="yes"), "node-a", "sudo", "true or false"),
    (lambda d: d["hosts"][0].update(work_dir="relative"), "node-a", "work_dir", "absolute"),
    (lambda d: d["defaults"].update(usr="x"), None, "usr", "did you mean 'user'"),
], ids=["typo", "no-address", "port-range", "port-type", "role", "key-file", "kh-file",
        "kh-entry", "host-key-b64", "host-key-type", "same-hardware", "dup-name", "bool",
        "work-dir", "defaults-typo"])
def test_mistakes_name_file_host_and_field(lab_dir, mutate, host, field, words):
    data = base()
    mutate(data)
    err = load_error(lab_dir, data)
    assert err.file == str(lab_dir / "lab.yaml") and err.field == field
    assert err.host == host
    msg = str(err)
    assert str(lab_dir / "lab.yaml") in msg and words in msg
    if host:
        assert f"host {host}" in msg


def test_top_level_mistakes(lab_dir):
    assert load_error(lab_dir, base(distribtion="k3s")).field == "distribtion"
    assert load_error(lab_dir, base(distribution="rke2")).field == "distribution"
    assert load_error(lab_dir, base(recover_to="elsewhere")).field == "recover_to"
    assert load_error(lab_dir, {**base(recover_to="spare"), "spare": None}).field == "spare"
    assert load_error(lab_dir, {**base(), "hosts": []}).field == "hosts"
    data = base()
    data["hosts"][0]["role"] = "agent"
    assert load_error(lab_dir, data).field == "role"
    data = base(distribution="embedded")
    data["hosts"].append({"name": "node-c", "address": "10.0.0.3"})
    assert "one host" in str(load_error(lab_dir, data))


def test_yaml_and_file_problems(lab_dir, tmp_path):
    err = load_error(lab_dir, "hosts:\n  - name: a\n   address: x\n")
    assert "invalid YAML at line" in str(err)
    with pytest.raises(InventoryError) as missing:
        load_inventory(tmp_path / "nope.yaml")
    assert "does not exist" in str(missing.value) and "nope.yaml" in str(missing.value)
    assert "mapping" in str(load_error(lab_dir, "- just a list\n"))


def test_public_key_given_as_key_file_is_explained(lab_dir):
    (lab_dir / "id.pub").write_text(ED_KEY + " me\n")
    data = base()
    data["defaults"]["key"] = "id.pub"
    assert "that is a public key" in str(load_error(lab_dir, data))


def test_no_host_key_source_is_refused_unless_trust_on_first_use(lab_dir):
    data = base()
    data["defaults"]["known_hosts"] = "fresh_known_hosts"  # does not exist yet
    err = load_error(lab_dir, data)
    assert err.field == "known_hosts" and "trust_on_first_use" in str(err)
    inv = load_inventory(write(lab_dir, {**data, "trust_on_first_use": True}))
    assert inv.primary.trust_on_first_use and inv.primary.known_hosts == \
        lab_dir / "fresh_known_hosts"


def test_host_key_instead_of_known_hosts(lab_dir):
    data = base()
    data["spare"][0] = {"name": "node-b", "address": "10.7.7.7", "host_key": ED_KEY + " c"}
    inv = load_inventory(write(lab_dir, data))
    assert inv.spare[0].host_key == ED_KEY


def test_hashed_known_hosts_entries_are_matched(tmp_path):
    salt = b"0123456789abcdef0123"
    digest = hmac.new(salt, b"[10.1.1.1]:2200", hashlib.sha1).digest()
    line = (f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()} "
            f"{ED_KEY}\n@revoked 10.1.1.1 {ED_KEY}\n")
    (tmp_path / "kh").write_text(line)
    assert read_known_hosts(tmp_path / "kh", "[10.1.1.1]:2200") == [tuple(ED_KEY.split())]
    assert read_known_hosts(tmp_path / "kh", "10.1.1.1") == []


# -- lab provider helpers --------------------------------------------------------------------

def test_round_one_uses_the_primary_and_recovery_the_spare(lab_dir):
    inv = load_inventory(write(lab_dir, base()))
    assert pick_host(inv, "r1", "spare").name == "node-a"
    assert pick_host(inv, "r2", "spare").name == "node-b"
    assert pick_host(inv, "r2", "same").name == "node-a"
    with pytest.raises(InventoryError) as err:
        pick_host(inv, "r3", "spare")
    assert err.value.field == "spare"


def test_kubeconfig_server_is_rewritten(tmp_path):
    k3s = yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [
        {"name": "default", "cluster": {"server": "https://127.0.0.1:6443",
                                        "certificate-authority-data": "Q0E="}}]})
    out = yaml.safe_load(rewrite_kubeconfig_server(k3s, "192.168.1.10"))
    assert out["clusters"][0]["cluster"]["server"] == "https://192.168.1.10:6443"
    assert out["clusters"][0]["cluster"]["certificate-authority-data"] == "Q0E="
    out = yaml.safe_load(rewrite_kubeconfig_server(k3s, "127.0.0.1", 40001))
    assert out["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:40001"
    out = yaml.safe_load(rewrite_kubeconfig_server(k3s, "fd00::5"))
    assert out["clusters"][0]["cluster"]["server"] == "https://[fd00::5]:6443"


def test_listening_ports_and_picking():
    ss = ("LISTEN 0      4096       127.0.0.1:2379       0.0.0.0:*\n"
          "LISTEN 0      128          0.0.0.0:22         0.0.0.0:*\n"
          "LISTEN 0      128             [::]:22            [::]:*\n")
    used = listening_ports(ss)
    assert used == {2379, 22}
    ports = pick_ports(5, used | set(range(20000, 32760)))
    assert len(set(ports)) == 5 and all(32760 <= p < 32768 for p in ports)


def test_k3s_install_environment(lab_dir):
    inv = load_inventory(write(lab_dir, base()))
    env = k3s_install_env(role="server", host=inv.primary, version="v1.31.4+k3s1", airgap=True,
                          extra_args=["--disable=traefik"])
    assert env["INSTALL_K3S_VERSION"] == "v1.31.4+k3s1"
    assert env["INSTALL_K3S_SKIP_DOWNLOAD"] == "true"
    assert env["INSTALL_K3S_EXEC"].split() == [
        "server", "--node-name=node-a", "--tls-san=10.0.0.1", "--write-kubeconfig-mode=0600",
        "--https-listen-port=6443", "--disable=traefik"]
    agent = k3s_install_env(role="agent", host=inv.spare[0], version=None, airgap=False,
                            server_url="https://10.0.0.1:6443", token="T")
    assert agent == {"INSTALL_K3S_EXEC": "agent --node-name=node-b",
                     "K3S_URL": "https://10.0.0.1:6443", "K3S_TOKEN": "T"}


def test_cli_provider_options(lab_dir):
    parser = argparse.ArgumentParser()
    add_provider_options(parser)
    inv = write(lab_dir, base())
    args = parser.parse_args(["--inventory", str(inv), "--recover-to", "spare",
                              "-O", "k3s_version=v1.31.4+k3s1", "-O", "workers=2",
                              "--provider-option", "wipe-existing=true",
                              "-O", "port_mappings=[8080:80]"])
    assert provider_options_from_args(args) == {
        "inventory": str(inv), "recover_to": "spare", "k3s_version": "v1.31.4+k3s1",
        "workers": 2, "wipe_existing": True, "port_mappings": ["8080:80"]}
    with pytest.raises(ConfigError):
        provider_options_from_args(parser.parse_args(["-O", "novalue"]))
    (lab_dir / "lab.yaml").write_text("hosts: [{name: a, adress: x}]\n")
    with pytest.raises(InventoryError):  # a bad inventory fails when the options are read
        provider_options_from_args(parser.parse_args(["--inventory", str(inv)]))
