"""The `registries` egress policy's allow-listing proxy: Debian's tinyproxy, run by the drill on
the run network's gateway, passing only the registries (and their blob CDNs) the repo names;
every other host is refused and logged. The nodes' containerd uses it for what the mirror
lacks; nothing is opened on the nodes themselves."""

from __future__ import annotations

import re
import shutil
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from harness.errors import ConfigError, MirrorError
from harness.procs import Supervisor, free_ports, log_tail

CDNS: dict[str, tuple[str, ...]] = {
    "docker.io": ("registry-1.docker.io", "auth.docker.io",
                  "production.cloudflare.docker.com"),
    "ghcr.io": ("pkg-containers.githubusercontent.com",),
    "quay.io": ("cdn.quay.io", "cdn01.quay.io", "cdn02.quay.io", "cdn03.quay.io"),
    "registry.k8s.io": ("prod-registry-k8s-io-us-east-1.s3.dualstack.us-east-1.amazonaws.com",
                        "us-central1-docker.pkg.dev", "europe-west1-docker.pkg.dev"),
    "gcr.io": ("storage.googleapis.com",),
}
"""Where each registry redirects blob downloads: a pull needs these too."""


def allowed_hosts(registries: Iterable[str]) -> list[str]:
    out: list[str] = []
    for reg in registries:
        host = reg.split(":")[0].lower()
        out += [host, *CDNS.get(host, ())]
    return sorted(dict.fromkeys(h for h in out if h))


def tinyproxy_config(*, listen: str, port: int, hosts: Iterable[str], filter_file: Path,
                     log_file: Path, clients: Iterable[str]) -> tuple[str, str]:
    """(tinyproxy.conf, filter file): only `hosts` (exact names), HTTPS by CONNECT to 443 and
    plain HTTP, from `clients` (the run network) only."""
    names = list(hosts)
    conf = [f"Port {port}", f"Listen {listen}", "Timeout 120", "MaxClients 64",
            f'LogFile "{log_file}"', "LogLevel Connect", "DisableViaHeader Yes",
            f'Filter "{filter_file}"', "FilterType ere", "FilterDefaultDeny Yes",
            "ConnectPort 443", *(f"Allow {c}" for c in clients)]
    rules = [f"^{re.escape(h)}$" for h in names]
    return "\n".join(conf) + "\n", "\n".join(rules) + "\n"


_REFUSED = re.compile(r'Proxying refused on filtered (?:domain|url) "(?P<host>[^"]+)"')
_CONNECT = re.compile(r"Connect \(file descriptor \d+\): (?P<client>\S+)")


def refusals(lines: Iterable[str]) -> list[dict[str, str]]:
    """Hosts the proxy refused, each with the client (a node) whose connection asked."""
    out: list[dict[str, str]] = []
    client = ""
    for line in lines:
        m = _CONNECT.search(line)
        if m:
            client = m.group("client").strip("[]")
            continue
        m = _REFUSED.search(line)
        if m:
            out.append({"host": m.group("host").split(":")[0], "client": client})
    return out


@dataclass
class AllowListProxy:
    """`with AllowListProxy(...) as proxy:` runs tinyproxy on `host` until the block ends."""

    hosts: tuple[str, ...]
    work_dir: Path
    run_id: str
    host: str = "127.0.0.1"
    clients: tuple[str, ...] = ("127.0.0.1",)
    port: int = 0
    _sup: Supervisor | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "tinyproxy.log"

    def __enter__(self) -> AllowListProxy:
        binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
        if not Path(binary).exists():
            raise ConfigError("the registries egress policy needs tinyproxy (an allow-listing "
                              "proxy), which is not installed",
                              fix="apt-get install tinyproxy, or use --egress mirror")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_ports(1, self.host)[0]
        conf, rules = tinyproxy_config(listen=self.host, port=self.port, hosts=self.hosts,
                                       filter_file=self.work_dir / "allow",
                                       log_file=self.log_path, clients=self.clients)
        (self.work_dir / "allow").write_text(rules)
        (self.work_dir / "tinyproxy.conf").write_text(conf)
        self._sup = Supervisor(self.run_id, self.work_dir / "logs", scope=str(self.work_dir))
        self._sup.start("tinyproxy", [binary, "-d", "-c", str(self.work_dir / "tinyproxy.conf")])
        try:
            self._wait_up()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_up(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self._sup is not None
            self._sup.check()
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise MirrorError(f"tinyproxy did not listen on {self.url}: "
                          + log_tail(self.work_dir / "logs" / "tinyproxy.log", 8))

    def refused(self) -> list[dict[str, str]]:
        try:
            return refusals(self.log_path.read_text(errors="replace").splitlines())
        except OSError:
            return []

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "allowed": list(self.hosts), "refused": self.refused()}

    def close(self) -> None:
        if self._sup is not None:
            self._sup.stop_all()
            self._sup = None

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
