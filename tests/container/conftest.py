"""Lab hosts as containers (see labhost.py): one image per recipe, hosts per test, and a check
at the end of the session that no container, network or process of ours is left."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

from harness.gc import run_processes
from tests.container import labhost as lh

SESSION_RUN_PREFIX = f"ctest-{secrets.token_hex(3)}"
BUILD_TIMES: dict[str, float] = {}


def _cache_dir() -> Path:
    return Path(os.environ.get("DRDRILL_CACHE_DIR") or Path.home() / ".cache" / "drdrill")


@pytest.fixture(scope="session")
def lab_image() -> str:
    """The lab-host image tag; built with debootstrap on first use (about a minute)."""
    ok, why = lh.docker_available()
    if not ok:
        pytest.skip(f"no Docker engine for lab-host containers: {why}")
    tag, took = lh.ensure_image(_cache_dir())
    BUILD_TIMES["lab-host image"] = took
    return tag


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_behind():
    """After the suite: no container or network labelled with one of our run ids, and no
    process carrying one in its environment (fixtures clean up; gc's label sweep is only a
    backstop for killed runs)."""
    yield
    if not lh.docker_available()[0]:
        return
    left = [c for rid in lh.run_ids_with_prefix(SESSION_RUN_PREFIX)
            for c in lh.containers_with_label(rid) + lh.networks_with_label(rid)]
    procs = {rid: pids for rid, pids in run_processes()[0].items()
             if rid.startswith(SESSION_RUN_PREFIX)}
    assert not left, f"containers/networks left behind: {left}"
    assert not procs, f"processes left behind: {procs}"


def pytest_terminal_summary(terminalreporter):
    for what, took in BUILD_TIMES.items():
        terminalreporter.write_line(f"{what}: {f'built in {took:.0f}s' if took else 'cached'}")


class Lab:
    """Start container hosts for one test; `inventory()` writes a YAML inventory for them."""

    def __init__(self, image: str, workdir: Path) -> None:
        self.image = image
        self.workdir = workdir
        self.run_id = f"{SESSION_RUN_PREFIX}-{secrets.token_hex(3)}"
        self.client = lh.make_keypair(workdir / "id_ed25519", "drdrill-test")
        self.hosts: dict[str, lh.LabHost] = {}

    def start(self, *names: str) -> list[lh.LabHost]:
        for name in names:
            self.hosts[name] = lh.start_host(tag=self.image, run_id=self.run_id, name=name,
                                             client_pub=self.client.public_line,
                                             workdir=self.workdir)
        for name in names:
            lh.wait_sshd(self.hosts[name])
        return [self.hosts[n] for n in names]

    def known_hosts(self, path: Path | None = None) -> Path:
        path = path or self.workdir / "known_hosts"
        path.write_text("".join(h.known_hosts_line + "\n" for h in self.hosts.values()))
        return path

    def inventory(self, hosts: list[str], spare: list[str] = (), *, extra: str = "",
                  host_fields: dict[str, dict] | None = None, name="inventory.yaml") -> Path:
        host_fields = host_fields or {}

        def entry(n: str) -> str:
            fields = {"name": n, "address": "127.0.0.1",
                      "port": self.hosts[n].port if n in self.hosts else 1,
                      **host_fields.get(n, {})}
            return "  - {" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}\n"

        text = (f"distribution: embedded\n{extra}"
                f"defaults: {{user: root, key: {self.client.private}, "
                f"known_hosts: {self.known_hosts()}}}\n"
                "hosts:\n" + "".join(entry(n) for n in hosts))
        if spare:
            text += "spare:\n" + "".join(entry(n) for n in spare)
        path = self.workdir / name
        path.write_text(text)
        return path

    def exec(self, name: str, *cmd: str) -> str:
        return lh.exec_in(self.hosts[name], *cmd)

    def cleanup(self) -> None:
        for h in self.hosts.values():
            lh.remove_host(h)
        deadline = time.monotonic() + 10
        while lh.containers_with_label(self.run_id) and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture
def lab(lab_image, tmp_path):
    lab = Lab(lab_image, tmp_path)
    try:
        yield lab
    finally:
        lab.cleanup()
