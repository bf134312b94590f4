"""Lab hosts over SSH: the cluster is built on machines from an inventory (harness/inventory.py).

Distributions:
- `k3s` (for real labs): installs k3s on the inventory's servers and agents (online with the
  upstream install script, or air-gapped from local artifacts), fetches the kubeconfig and
  rewrites its server address; the disaster wipes it with k3s's own uninstall scripts. Flux
  runs in-cluster; its source-controller uses the host network on the server, where an SSH
  reverse tunnel brings the harness's Git server to the host's loopback.
- `embedded` (for tests): the pinned etcd/kube-apiserver/kcm/scheduler/kwok and the Flux
  controllers are copied to the host and run there as processes, as the embedded provider runs
  them locally. The PKI is made here; the harness reaches the apiserver through an SSH local
  forward, and the controllers reach the Git server through an SSH reverse forward, so nothing
  listens on anything but loopback, on either side.

Round 1 builds on the inventory's first server; with the option `recover_to=spare`, round N
builds on the (N-1)th host of the spare pool, as when the hardware is lost. Before anything is
changed anywhere, every host the drill will use is connected to, its host key verified and the
login tried, so a wrong key or an unreachable spare fails in seconds and touches nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import random
import re
import shlex
import shutil
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from harness.config import Config
from harness.controlplane import (
    Layout,
    ReadyzProbe,
    apiserver_args,
    controller_manager_args,
    etcd_args,
    kwok_args,
    nodes_ready,
    register_kwok_nodes,
    scheduler_args,
)
from harness.errors import (
    ConfigError,
    HarnessError,
    InventoryError,
    ProcessExitedError,
    ProviderError,
    SSHError,
)
from harness.inventory import RECOVER_TO, HostSpec, Inventory, load_inventory
from harness.kube import api_client
from harness.pki import CertPair, ClusterPKI, create_pki, kubeconfig_yaml, write_secret
from harness.providers import ClusterLifecycle, ProviderContext
from harness.ssh import SSHHost, check_reachable
from harness.tools import EMBEDDED_TOOLS, FLUX_TOOLS, ResolvedTool, ensure_tools
from harness.waits import poll_until

log = logging.getLogger(__name__)

INVENTORY_ENV = "DRDRILL_INVENTORY"
API_ACCESS = ("direct", "tunnel")
K3S_INSTALL_URL = "https://get.k3s.io"
K3S_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
K3S_TOKEN_FILE = "/var/lib/rancher/k3s/server/node-token"  # noqa: S105 - a path
K3S_IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
LAB_DIR_ENV = "DRDRILL_LAB_DIR"
"""Set on every process the provider starts on a host: the wipe's sweep finds exactly those.
Not DRDRILL_RUN_ID: that marks processes of *this* machine's runs for `drdrill gc`, which would
take a lab host sharing this kernel (a container) for a dead run's leftovers and kill it."""
LAB_RUN_ENV = "DRDRILL_LAB_RUN_ID"



# -- CLI options (wired into `drdrill drill` by harness/cli.py) ------------------------------

def add_provider_options(parser: argparse.ArgumentParser) -> None:
    """Options of `drdrill drill` for providers that need more than a name (lab, kind, k3d)."""
    g = parser.add_argument_group("provider options (lab, kind, k3d)")
    g.add_argument("--inventory", type=Path, default=None,
                   help=f"lab inventory YAML (default ${INVENTORY_ENV})")
    g.add_argument("--distribution", choices=("k3s", "embedded"), default=None,
                   help="lab: what to install on the hosts (default: the inventory's)")
    g.add_argument("--recover-to", choices=RECOVER_TO, default=None,
                   help="lab: rebuild on the same host or a host of the spare pool "
                        "(default: the inventory's recover_to, else same)")
    g.add_argument("--egress", choices=("mirror", "registries", "open"), default=None,
                   help="kind: what the cluster may reach: only the drill's registry mirror "
                        "and Git server (mirror, the default), also the registries the repo "
                        "names through an allow-listing proxy (registries), or anything (open)")
    g.add_argument("--provider-option", "-O", action="append", default=[], metavar="KEY=VALUE",
                   help="any provider option, e.g. -O k3s_version=v1.31.4+k3s1, "
                        "-O airgap_dir=DIR, -O image=kindest/node:v1.33.1 (repeatable)")


def provider_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The options `add_provider_options` parsed, as DrillOptions.provider_options."""
    options: dict[str, Any] = {}
    for raw in getattr(args, "provider_option", None) or []:
        key, sep, value = raw.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--provider-option {raw!r} is not KEY=VALUE",
                              fix="e.g. --provider-option recover_to=spare")
        options[key.strip().replace("-", "_")] = _option_value(value)
    inventory = getattr(args, "inventory", None)
    if inventory is not None:
        options["inventory"] = str(inventory)
        load_inventory(inventory)  # a typo fails now, before any phase starts
    for name in ("distribution", "recover_to", "egress"):
        value = getattr(args, name, None)
        if value is not None:
            options[name] = value
    return options


def _option_value(raw: str) -> Any:
    """KEY=VALUE values as YAML scalars/lists (3 -> int, true -> bool, [a, b] -> list)."""
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def inventory_path(options: Mapping[str, Any]) -> Path | None:
    raw = options.get("inventory") or os.environ.get(INVENTORY_ENV)
    return Path(str(raw)).expanduser() if raw else None


# -- pure helpers (unit-tested) ----------------------------------------------------------------

def round_of(cluster_name: str) -> int:
    m = re.fullmatch(r"r(\d+)", cluster_name)
    return int(m.group(1)) if m else 1


def pick_host(inventory: Inventory, cluster_name: str, recover_to: str) -> HostSpec:
    """Round 1 (and every round with recover_to=same): the first server; round N with
    recover_to=spare: the (N-1)th spare."""
    rnd = round_of(cluster_name)
    if rnd <= 1 or recover_to == "same":
        return inventory.primary
    index = rnd - 2
    if index >= len(inventory.spare):
        raise InventoryError(
            f"round {rnd} recovers onto a spare host, but the spare pool has "
            f"{len(inventory.spare)}", file=inventory.path, field="spare",
            fix="add a host under `spare:`, or use recover_to=same")
    return inventory.spare[index]


def rewrite_kubeconfig_server(text: str, host: str, port: int | None = None) -> str:
    """k3s writes `server: https://127.0.0.1:6443`; point every cluster at `host[:port]`."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not data.get("clusters"):
        raise ProviderError("the kubeconfig from the host has no clusters")
    for entry in data["clusters"]:
        cluster = entry.get("cluster") or {}
        parts = urlsplit(str(cluster.get("server", "")))
        new_port = port if port is not None else (parts.port or 6443)
        netloc = f"[{host}]:{new_port}" if ":" in host else f"{host}:{new_port}"
        cluster["server"] = urlunsplit((parts.scheme or "https", netloc, parts.path, "", ""))
    return yaml.safe_dump(data, sort_keys=False)


def listening_ports(ss_output: str) -> set[int]:
    """Ports in `ss -Hltn` output (column 4, `addr:port`)."""
    ports: set[int] = set()
    for line in ss_output.splitlines():
        cols = line.split()
        if len(cols) >= 4 and ":" in cols[3]:
            tail = cols[3].rsplit(":", 1)[1]
            if tail.isdigit():
                ports.add(int(tail))
    return ports


def pick_ports(count: int, used: set[int], rng: random.Random | None = None) -> list[int]:
    """`count` distinct ports in 20000-32767 (below Linux's ephemeral range) not in `used`."""
    rng = rng or random.SystemRandom()
    free = [p for p in range(20000, 32768) if p not in used]
    return rng.sample(free, count)


def k3s_install_env(*, role: str, host: HostSpec, version: str | None, airgap: bool,
                    server_url: str | None = None, token: str | None = None,
                    extra_args: list[str] | None = None, api_port: int = 6443) -> dict[str, str]:
    """Environment for k3s's install script on one host."""
    if role == "server":
        exec_args = ["server", f"--node-name={host.name}", f"--tls-san={host.address}",
                     "--write-kubeconfig-mode=0600", f"--https-listen-port={api_port}",
                     *(extra_args or [])]
    else:
        exec_args = ["agent", f"--node-name={host.name}"]
    env = {"INSTALL_K3S_EXEC": " ".join(exec_args)}
    if version:
        env["INSTALL_K3S_VERSION"] = version
    if airgap:
        env["INSTALL_K3S_SKIP_DOWNLOAD"] = "true"
    if role != "server":
        assert server_url and token
        env["K3S_URL"] = server_url
        env["K3S_TOKEN"] = token
    return env


# -- the provider ---------------------------------------------------------------------------

class LabProvider(ClusterLifecycle):
    """A cluster on lab hosts reached over SSH (see module docstring)."""

    name = "lab"

    @staticmethod
    def required_tools(options: Mapping[str, Any]) -> tuple[str, ...]:
        """Pinned binaries preflight must resolve: the embedded control plane needs them all,
        k3s brings its own (Flux then runs in-cluster)."""
        path = inventory_path(options)
        distribution = options.get("distribution") or (
            load_inventory(path).distribution if path is not None else "k3s")
        return (*EMBEDDED_TOOLS, *FLUX_TOOLS) if distribution == "embedded" else ()

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        path = inventory_path(ctx.options)
        if path is None:
            raise ConfigError("the lab provider needs an inventory",
                              fix=f"pass --inventory FILE (or set {INVENTORY_ENV})")
        self.inventory = load_inventory(path)
        self.distribution = str(ctx.options.get("distribution") or self.inventory.distribution)
        if self.distribution not in ("k3s", "embedded"):
            raise ConfigError(f"unknown lab distribution {self.distribution!r}",
                              fix="use k3s or embedded")
        self.recover_to = str(ctx.options.get("recover_to") or self.inventory.recover_to)
        if self.recover_to not in RECOVER_TO:
            raise ConfigError(f"recover_to must be one of {', '.join(RECOVER_TO)}, got "
                              f"{self.recover_to!r}")
        self.round = round_of(ctx.cluster_name)
        self.host = pick_host(self.inventory, ctx.cluster_name, self.recover_to)
        self.node_count = int(ctx.options.get("nodes", 3))
        self.startup_timeout_s = float(ctx.options.get("startup_timeout_s", 120))
        self.connect_timeout_s = float(ctx.options.get("connect_timeout_s", 5))
        self.api_access = str(ctx.options.get("api_access",
                                              "tunnel" if self.distribution == "embedded"
                                              else "direct"))
        if self.api_access not in API_ACCESS:
            raise ConfigError(f"api_access must be one of {', '.join(API_ACCESS)}")
        self.airgap_dir = (Path(str(ctx.options["airgap_dir"])).expanduser()
                           if ctx.options.get("airgap_dir") else None)
        if self.distribution == "k3s" and self.airgap_dir is not None:
            airgap_artifacts(self.airgap_dir)  # fail now, not after connecting
        self.workdir = ctx.workdir
        self._kubeconfig = self.workdir / "kubeconfig"
        self._ssh: dict[str, SSHHost] = {}
        self._touched: set[str] = set()
        self._api: Any = None
        self._api_port_local: int | None = None
        self._probe: ReadyzProbe | None = None
        self._pki: ClusterPKI | None = None
        self._ports: dict[str, int] = {}
        self._pids: dict[str, int] = {}
        self.flags: dict[str, list[str]] = {}
        self.timings: dict[str, float] = {}
        self.verified: dict[str, dict[str, Any]] = {}
        self.k3s_hosts: list[HostSpec] = []

    @staticmethod
    def availability(config: Config) -> tuple[bool, str]:
        path = inventory_path({})
        if path is None:
            return False, (f"needs an inventory of hosts: pass --inventory FILE to `drdrill "
                           f"drill` or set {INVENTORY_ENV}")
        try:
            inv = load_inventory(path)
        except InventoryError as exc:
            return False, str(exc).splitlines()[0]
        down = []
        for h in inv.all_hosts:
            try:
                socket.create_connection((h.address, h.port), timeout=1).close()
            except OSError as exc:
                down.append(f"{h.name} ({h.address}:{h.port}: {exc.strerror or exc})")
        summary = (f"inventory {path}: {inv.distribution}, hosts "
                   f"{', '.join(h.name for h in inv.hosts)}; spare "
                   f"{', '.join(h.name for h in inv.spare) or 'none'}")
        if down:
            return False, f"{summary}; unreachable: {', '.join(down)}"
        return True, summary

    # -- ClusterProvider -------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig

    @property
    def remote_dir(self) -> str:
        return f"{self.host.work_dir.rstrip('/')}/{self.ctx.run_id}/{self.ctx.cluster_name}"

    def create(self) -> None:
        started = time.monotonic()
        try:
            super().create()
        finally:
            self.timings["create_s"] = round(time.monotonic() - started, 3)

    def _create(self) -> None:
        self._preflight()
        if self.distribution == "embedded":
            self._create_embedded()
        else:
            self._create_k3s()

    def delete(self) -> None:
        if self._api is not None:
            with contextlib.suppress(Exception):
                self._api.close()
            self._api = None
        started = time.monotonic()
        failed: list[str] = []
        for name in sorted(self._touched):
            spec = self.inventory.host(name)
            try:
                h = self._connect(spec)
                if self.distribution == "embedded":
                    self._wipe_embedded(h)
                    left = host_leftovers(h, self.remote_dir, k3s=False)
                else:
                    self._wipe_k3s(h, spec)
                    left = host_leftovers(h, spec.work_dir.rstrip("/") + "/" + self.ctx.run_id,
                                          k3s=True,
                                          api_port=int(self.ctx.options.get("api_port", 6443)))
                if left:  # the host's word, not the wipe script's exit code
                    raise ProviderError(f"still there after the wipe: {', '.join(left)}")
                self._touched.discard(name)
            except (HarnessError, OSError) as exc:
                failed.append(f"lab host {name}: wiping failed, it may keep drill leftovers "
                              f"under {self.remote_dir}: {exc}")
        for h in self._ssh.values():
            h.close()
        self._ssh.clear()
        self._api_port_local = None
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        self._pids.clear()
        if self.timings.get("create_s") is not None:
            self.timings["wipe_s"] = round(time.monotonic() - started, 3)
        shutil.rmtree(self.workdir, ignore_errors=True)
        if failed:
            raise ProviderError("; ".join(failed),
                                fix="wipe the host by hand (or rerun the drill: it wipes the "
                                    "run folder first), then `drdrill gc --run-id "
                                    f"{self.ctx.run_id}`")

    def leftovers(self) -> list[str]:
        """Hosts whose wipe failed, and the local workdir."""
        left = [f"lab host {name}: drill files under {self.remote_dir}"
                for name in sorted(self._touched)]
        if self.workdir.exists():
            left.append(f"folder {self.workdir}")
        return left

    def is_up(self) -> bool:
        if self._api is None:
            return False
        ok, _ = self._readyz()
        return ok and self._nodes_ready()[0]

    def dump_logs(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        h = self._ssh.get(self.host.name)
        if h is None or not h.connected:
            return []
        out: list[Path] = []
        if self.distribution == "embedded":
            logs = f"{self.remote_dir}/logs"
            try:
                names = sorted(h.sftp.listdir(logs))
            except OSError:
                names = []
            for name in names:
                out.append(h.get(f"{logs}/{name}", dest / f"{self.host.name}-{name}"))
        else:
            for spec in self.k3s_hosts:
                unit = "k3s" if spec.role == "server" and spec is self.k3s_hosts[0] \
                    else "k3s-agent"
                hh = self._ssh.get(spec.name)
                if hh is None:
                    continue
                res = hh.run(["journalctl", "-u", unit, "--no-pager", "-n", "5000"],
                             check=False, sudo=True, timeout_s=60)
                path = dest / f"{spec.name}-{unit}.log"
                path.write_text(res.stdout + res.stderr)
                out.append(path)
        return out

    def describe(self) -> dict[str, Any]:
        """This round's host, how it was verified and its timings; the runner keeps one per
        round (settings.provider_rounds)."""
        return {
            "distribution": self.distribution,
            "inventory": str(self.inventory.path),
            "recover_to": self.recover_to,
            "host": self._record(),
            "spare_pool": [h.name for h in self.inventory.spare],
            "flags": self.flags,
        }

    # -- SupportsFluxInstall / SupportsGitAccess -------------------------------------------
    def install_flux(self, api: Any, tools: Mapping[str, ResolvedTool], crds: list[Path],
                     settings: Any) -> dict[str, Any]:
        started = time.monotonic()
        try:
            if self.distribution == "embedded":
                return self._flux_on_host(settings)
            from harness.flux.install import install_flux_in_cluster

            flags = install_flux_in_cluster(api, settings, host_network_node=self.host.name,
                                            timeout_s=self.startup_timeout_s)
            self.flags.update(flags)
            return flags
        finally:
            self.timings["flux_install_s"] = round(time.monotonic() - started, 3)

    def git_url(self, local_url: str) -> str:
        """The harness's Git server, brought to the host's loopback by an SSH reverse forward
        (source-controller runs on the host, or in the host's network namespace on k3s)."""
        parts = urlsplit(local_url)
        if parts.port is None:
            return local_url
        remote_port = self._host_ssh().forward_remote(parts.port, parts.hostname or "127.0.0.1")
        return urlunsplit((parts.scheme, f"127.0.0.1:{remote_port}", parts.path, parts.query,
                           parts.fragment))

    # -- internals: connections ------------------------------------------------------------
    def _connect(self, spec: HostSpec) -> SSHHost:
        h = self._ssh.get(spec.name)
        if h is not None and h.connected:
            return h
        h = SSHHost(spec, connect_timeout_s=self.connect_timeout_s).connect()
        self._ssh[spec.name] = h
        return h

    def _host_ssh(self) -> SSHHost:
        return self._connect(self.host)

    def _preflight(self) -> None:
        """Verify and log in to every host this drill will use before changing anything."""
        specs = [self.host]
        if self.distribution == "k3s":
            specs += [a for a in self.inventory.agents if a not in specs]
        if self.round == 1 and self.recover_to == "spare":
            spare = pick_host(self.inventory, "r2", "spare")
            if spare not in specs:
                specs.append(spare)
        started = time.monotonic()
        self.verified = check_reachable(specs, connect_timeout_s=self.connect_timeout_s)
        self.timings["preflight_hosts_s"] = round(time.monotonic() - started, 3)
        self._connect(self.host)

    def _record(self) -> dict[str, Any]:
        v = self.verified.get(self.host.name, {})
        return {**self.host.describe(), "round": self.round, "host_key": v.get("host_key"),
                "verified_by": v.get("verified_by"), "timings": dict(self.timings),
                "agents": [a.name for a in self.k3s_hosts[1:]]}


    # -- internals: embedded control plane on the host ------------------------------------
    def _tools(self) -> dict[str, ResolvedTool]:
        wanted = (*EMBEDDED_TOOLS, *FLUX_TOOLS)
        have = {n: t for n, t in self.ctx.tools.items() if n in wanted}
        missing = [n for n in wanted if n not in have]
        if missing:
            have.update(ensure_tools(self.ctx.config, missing))
        return have

    def _sh(self, script: str, *, timeout_s: float = 60, check: bool = True) -> str:
        return self._host_ssh().run(["sh", "-c", script], timeout_s=timeout_s,
                                    check=check).stdout

    def _create_embedded(self) -> None:
        h = self._host_ssh()
        tools = self._tools()
        arch = h.run(["uname", "-m"]).stdout.strip()
        if arch != platform.machine():
            raise ProviderError(f"host {self.host.name} is {arch}, but the pinned binaries "
                                f"here are {platform.machine()}",
                                fix="use a host of the same architecture for the embedded "
                                    "distribution")
        rd = self.remote_dir
        q = shlex.quote
        self._touched.add(self.host.name)
        self._sh(f"umask 077 && mkdir -p {q(rd)}/bin {q(rd)}/pki {q(rd)}/data {q(rd)}/logs "
                 f"{q(rd)}/pids {q(rd)}/flux/tmp {q(rd)}/flux/artifacts")
        started = time.monotonic()
        for name, tool in tools.items():
            h.put(tool.path, f"{rd}/bin/{name}", mode=0o755)
        self.timings["upload_s"] = round(time.monotonic() - started, 3)
        started = time.monotonic()
        names = ["etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok"]
        used = listening_ports(h.run(["ss", "-Hltn"]).stdout)
        self._ports = dict(zip(names, pick_ports(len(names), used), strict=True))
        p = self._ports
        self._pki = pki = create_pki(self.workdir / "pki", hosts=("127.0.0.1", "localhost"))
        remote = _remote_pki(pki, f"{rd}/pki")
        for local_pair, remote_pair in ((pki.ca, remote.ca), (pki.apiserver, remote.apiserver),
                                        (pki.admin, remote.admin)):
            h.put_bytes(local_pair.cert.read_bytes(), str(remote_pair.cert))
            h.put_bytes(local_pair.key.read_bytes(), str(remote_pair.key))
        h.put_bytes(pki.sa_private.read_bytes(), str(remote.sa_private))
        h.put_bytes(pki.sa_public.read_bytes(), str(remote.sa_public))
        remote_kc = f"{rd}/kubeconfig"
        h.put_bytes(kubeconfig_yaml(server=f"https://127.0.0.1:{p['apiserver']}", pki=remote,
                                    name=f"drdrill-{self.ctx.cluster_name}").encode(), remote_kc)
        lay = Layout(self.ctx.cluster_name, f"{rd}/data", remote_kc, remote, p)
        self._start("etcd", etcd_args(lay))
        poll_until(lambda: h.http_get(p["etcd"], "/health"), timeout_s=self.startup_timeout_s,
                   what=f"etcd /health on {self.host.name}", abort=self._check, interval_s=0.1)
        self._start("kube-apiserver", apiserver_args(lay))
        self._api_port_local = h.forward_local(p["apiserver"])
        write_secret(self._kubeconfig, kubeconfig_yaml(
            server=f"https://127.0.0.1:{self._api_port_local}", pki=pki,
            name=f"drdrill-lab-{self.host.name}").encode())
        poll_until(self._readyz, timeout_s=self.startup_timeout_s,
                   what=f"kube-apiserver /readyz on {self.host.name}", abort=self._check,
                   interval_s=0.2)
        self._start("kube-controller-manager", controller_manager_args(lay))
        self._start("kube-scheduler", scheduler_args(lay))
        self._start("kwok", kwok_args(lay))
        self._api = api_client(self._kubeconfig)
        register_kwok_nodes(self._api, [f"kwok-{self.host.name}-{i}"
                                        for i in range(self.node_count)],
                            {"drdrill.dev/run-id": self.ctx.run_id,
                             "drdrill.dev/lab-host": self.host.name})
        poll_until(self._nodes_ready, timeout_s=self.startup_timeout_s,
                   what=f"kwok nodes Ready on {self.host.name}", abort=self._check,
                   interval_s=0.2)
        self.timings["control_plane_s"] = round(time.monotonic() - started, 3)

    def _start(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> None:
        rd = self.remote_dir
        q = shlex.quote
        self.flags[name] = args
        env_words = " ".join(f"{k}={q(v)}" for k, v in {
            LAB_RUN_ENV: self.ctx.run_id, LAB_DIR_ENV: rd, **(env or {})}.items())
        # setsid: its own process group (stopped as one), and it outlives the SSH session.
        script = (f"cd {q(rd)} && env {env_words} setsid nohup {q(f'{rd}/bin/{name}')} "
                  f"{shlex.join(args)} >{q(f'{rd}/logs/{name}.log')} 2>&1 </dev/null & "
                  f"echo $! >{q(f'{rd}/pids/{name}')}; echo $!")
        self._pids[name] = int(self._sh(script).strip())

    def _check(self) -> None:
        """Raise ProcessExitedError for the first process on the host that is gone."""
        if not self._pids:
            return
        script = " ; ".join(f"kill -0 {pid} 2>/dev/null || echo {name}"
                            for name, pid in self._pids.items())
        dead = self._sh(script, check=False).split()
        if dead:
            name = dead[0]
            path = f"{self.remote_dir}/logs/{name}.log"
            tail = self._host_ssh().run(["tail", "-n", "30", path], check=False).stdout
            raise ProcessExitedError(f"{name} on {self.host.name}", None, Path(path), tail)

    def _flux_on_host(self, settings: Any) -> dict[str, Any]:
        h = self._host_ssh()
        rd = self.remote_dir
        used = listening_ports(h.run(["ss", "-Hltn"]).stdout) | set(self._ports.values())
        storage, s_metrics, s_health, k_metrics, k_health = pick_ports(5, used)
        env = {"KUBECONFIG": f"{rd}/kubeconfig", "RUNTIME_NAMESPACE": "flux-system",
               "TMPDIR": f"{rd}/flux/tmp"}
        from harness.flux.settings import HostAddrs, controller_flags

        source_args = controller_flags("source-controller", settings, host=HostAddrs(
            storage_path=Path(f"{rd}/flux/artifacts"), storage_port=storage,
            metrics_port=s_metrics, health_port=s_health))
        kustomize_args = controller_flags("kustomize-controller", settings, host=HostAddrs(
            storage_path=Path(f"{rd}/flux/artifacts"), storage_port=storage,
            metrics_port=k_metrics, health_port=k_health))
        flags: dict[str, Any] = {}
        for name, args in (("source-controller", source_args),
                           ("kustomize-controller", kustomize_args)):
            self._start(name, args, env)
            flags[name] = args
        for name, port in (("source-controller", s_health), ("kustomize-controller", k_health)):
            poll_until(lambda port=port: h.http_get(port, "/readyz"),  # type: ignore[misc]
                       timeout_s=self.startup_timeout_s, what=f"{name} /readyz on "
                       f"{self.host.name}", abort=self._check, interval_s=0.1)
        return flags

    def _wipe_embedded(self, h: SSHHost) -> None:
        """Stop this cluster's processes (by pid group, then by their environment as a
        backstop) and remove its folder; the host is as it was before the drill."""
        rd = self.remote_dir
        q = shlex.quote
        script = f"""
cd / ; pids=""
for f in {q(rd)}/pids/*; do [ -f "$f" ] && pids="$pids $(cat "$f")"; done
for p in $pids; do kill -TERM -- -"$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; done
i=0; while [ $i -lt 30 ]; do
  alive=""; for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
  [ -z "$alive" ] && break; sleep 0.1; i=$((i+1))
done
for p in $pids; do kill -KILL -- -"$p" 2>/dev/null; done
for e in /proc/[0-9]*/environ; do
  if tr '\\0' '\\n' <"$e" 2>/dev/null | grep -qxF {q(f'{LAB_DIR_ENV}={rd}')}; then
    p=${{e#/proc/}}; kill -KILL "${{p%/environ}}" 2>/dev/null
  fi
done
rm -rf {q(rd)}
rmdir {q(str(Path(rd).parent))} {q(self.host.work_dir)} 2>/dev/null || true
"""
        h.run(["sh", "-c", script], timeout_s=60)

    def _readyz(self) -> tuple[bool, str]:
        if self.distribution == "embedded":
            if self._pki is None or self._api_port_local is None:
                return False, "no tunnel to the apiserver"
            if self._probe is None or self._probe.port != self._api_port_local:
                self._probe = ReadyzProbe(self._pki, self._api_port_local)
            return self._probe()
        if self._api is None:
            return False, "no client yet"
        from harness.providers.kind import readyz

        return readyz(self._api)

    def _nodes_ready(self) -> tuple[bool, str]:
        want = self.node_count if self.distribution == "embedded" else len(self.k3s_hosts)
        return nodes_ready(self._api, want)

    # -- internals: k3s ----------------------------------------------------------------------
    def _create_k3s(self) -> None:
        server = self.host
        agents = list(self.inventory.agents)
        self.k3s_hosts = [server, *agents]
        started = time.monotonic()
        for spec in self.k3s_hosts:
            self._refuse_foreign_k3s(self._connect(spec), spec)
        version = self.ctx.options.get("k3s_version")
        extra = self.ctx.options.get("k3s_args") or []
        if isinstance(extra, str):
            extra = shlex.split(extra)
        api_port = int(self.ctx.options.get("api_port", 6443))
        self._install_k3s(server, k3s_install_env(
            role="server", host=server, version=str(version) if version else None,
            airgap=self.airgap_dir is not None, extra_args=[str(a) for a in extra],
            api_port=api_port))
        h = self._connect(server)
        poll_until(lambda: (h.run(["test", "-s", K3S_KUBECONFIG], check=False,
                                  sudo=True).returncode == 0, "waiting for k3s.yaml"),
                   timeout_s=self.startup_timeout_s, what=f"k3s kubeconfig on {server.name}")
        raw = h.run(["cat", K3S_KUBECONFIG], sudo=True).stdout
        if self.api_access == "tunnel":
            self._api_port_local = h.forward_local(api_port)
            text = rewrite_kubeconfig_server(raw, "127.0.0.1", self._api_port_local)
        else:
            text = rewrite_kubeconfig_server(raw, server.address, api_port)
        write_secret(self._kubeconfig, text.encode())
        if agents:
            token = h.run(["cat", K3S_TOKEN_FILE], sudo=True).stdout.strip()
            url = f"https://{server.address}:{api_port}"
            for agent in agents:
                self._install_k3s(agent, k3s_install_env(
                    role="agent", host=agent, version=str(version) if version else None,
                    airgap=self.airgap_dir is not None, server_url=url, token=token))
        self._api = api_client(self._kubeconfig)
        poll_until(self._readyz, timeout_s=self.startup_timeout_s,
                   what=f"k3s /readyz on {server.name}", interval_s=0.5)
        poll_until(self._nodes_ready, timeout_s=self.startup_timeout_s,
                   what=f"k3s nodes Ready ({', '.join(s.name for s in self.k3s_hosts)})",
                   interval_s=0.5)
        self.timings["control_plane_s"] = round(time.monotonic() - started, 3)

    def _refuse_foreign_k3s(self, h: SSHHost, spec: HostSpec) -> None:
        """A k3s the drill did not install is someone's cluster: never wipe it unasked."""
        found = h.run(["sh", "-c", "test -e /usr/local/bin/k3s || test -d /var/lib/rancher/k3s"],
                      check=False).returncode == 0
        if found and not self.ctx.options.get("wipe_existing"):
            raise SSHError("k3s is already installed there; the drill will not wipe a "
                           "cluster it did not make", host=spec.name, target=spec.target,
                           fix="uninstall it (k3s-uninstall.sh), or pass -O wipe_existing=true "
                               "to let the drill wipe it first")
        if found:
            self._touched.add(spec.name)
            self._wipe_k3s(h, spec)

    def _install_k3s(self, spec: HostSpec, env: dict[str, str]) -> None:
        h = self._connect(spec)
        self._touched.add(spec.name)
        q = shlex.quote
        work = f"{spec.work_dir.rstrip('/')}/{self.ctx.run_id}"
        h.run(["mkdir", "-p", work])
        started = time.monotonic()
        if self.airgap_dir is not None:
            arts = airgap_artifacts(self.airgap_dir)
            h.put(arts["install.sh"], f"{work}/install.sh", mode=0o755)
            h.put(arts["k3s"], f"{work}/k3s", mode=0o755)
            staged = [f"install -m 0755 {q(work + '/k3s')} /usr/local/bin/k3s",
                      f"mkdir -p {K3S_IMAGES_DIR}"]
            for image in arts["images"]:
                h.put(image, f"{work}/{image.name}", mode=0o644)
                staged.append(f"mv {q(work + '/' + image.name)} {K3S_IMAGES_DIR}/")
            h.run(["sh", "-c", " && ".join(staged)], sudo=True, timeout_s=300)
            installer = f"sh {q(work + '/install.sh')}"
        else:
            installer = f"curl -sfL {K3S_INSTALL_URL} | sh -s -"
        env_words = " ".join(f"{k}={q(v)}" for k, v in env.items())
        log_path = self.workdir / "logs" / f"k3s-install-{spec.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a", encoding="utf-8") as sink:
            def on_line(line: str) -> None:
                sink.write(line + "\n")
                log.info("k3s install on %s: %s", spec.name, line)

            rc = h.stream(f"env {env_words} {installer}", on_line, sudo=True,
                          timeout_s=self.startup_timeout_s * 3)
        self.timings[f"k3s_install_{spec.name}_s"] = round(time.monotonic() - started, 3)
        if rc != 0:
            raise ProviderError(f"installing k3s on {spec.name} failed (exit {rc}); "
                                f"log: {log_path}",
                                fix="read the log; for hosts without internet pass "
                                    "-O airgap_dir=DIR with k3s, install.sh and the airgap "
                                    "images")

    def _wipe_k3s(self, h: SSHHost, spec: HostSpec) -> None:
        script = ("if [ -x /usr/local/bin/k3s-uninstall.sh ]; then /usr/local/bin/k3s-uninstall.sh;"
                  " elif [ -x /usr/local/bin/k3s-agent-uninstall.sh ]; then "
                  "/usr/local/bin/k3s-agent-uninstall.sh; fi; "
                  f"rm -rf {shlex.quote(spec.work_dir.rstrip('/') + '/' + self.ctx.run_id)}")
        h.run(["sh", "-c", script], sudo=True, timeout_s=300)


def host_leftovers(h: SSHHost, run_dir: str, *, k3s: bool, api_port: int | None = None,
                   ) -> list[str]:
    """Ask the host what of this cluster it still has: the run's folder, processes carrying
    the run's folder in their environment, and for k3s its service, processes and API port."""
    q = shlex.quote
    script = f"""
[ -e {q(run_dir)} ] && echo "folder {run_dir}"
for e in /proc/[0-9]*/environ; do
  if tr '\\0' '\\n' <"$e" 2>/dev/null | grep -qxF {q(f'{LAB_DIR_ENV}={run_dir}')}; then
    p=${{e#/proc/}}; echo "process ${{p%/environ}}"
  fi
done
"""
    if k3s:
        script += """
for s in k3s k3s-agent; do
  systemctl is-active --quiet "$s" 2>/dev/null && echo "service $s active"
done
pgrep -x k3s >/dev/null 2>&1 && echo "process k3s"
pgrep -f 'k3s (server|agent)' >/dev/null 2>&1 && echo "process k3s server/agent"
"""
    if api_port is not None:
        script += (f"(ss -ltn 2>/dev/null || netstat -ltn 2>/dev/null) | "
                   f"grep -q ':{int(api_port)} ' && echo 'port {int(api_port)} listening'\n")
    res = h.run(["sh", "-c", script], sudo=k3s, timeout_s=60, check=False)
    return [f"{line.strip()} on {h.spec.name}" for line in res.stdout.splitlines()
            if line.strip()]


def airgap_artifacts(folder: Path) -> dict[str, Any]:
    """k3s's air-gap install inputs in `folder`: the `k3s` binary, `install.sh`, and the
    `k3s-airgap-images-<arch>.tar[.gz|.zst]` image archives (as k3s's releases name them)."""
    if not folder.is_dir():
        raise ConfigError(f"airgap_dir {folder} is not a folder",
                          fix="download k3s, install.sh and k3s-airgap-images-*.tar.zst of "
                              "one k3s release into a folder and pass it")
    missing = [n for n in ("k3s", "install.sh") if not (folder / n).is_file()]
    images = sorted(p for p in folder.glob("k3s-airgap-images-*") if p.is_file())
    if missing or not images:
        what = missing + ([] if images else ["k3s-airgap-images-<arch>.tar.zst"])
        raise ConfigError(f"airgap_dir {folder} lacks {', '.join(what)}",
                          fix="put the k3s release's binary, install.sh and airgap image "
                              "archive there")
    return {"k3s": folder / "k3s", "install.sh": folder / "install.sh", "images": images}


def _remote_pki(pki: ClusterPKI, remote_dir: str) -> ClusterPKI:
    """The same PKI, with the paths it has on the host."""
    def at(p: Path) -> Path:
        return Path(remote_dir) / p.name

    def pair(cp: CertPair) -> CertPair:
        return CertPair(at(cp.cert), at(cp.key))

    return ClusterPKI(pair(pki.ca), pair(pki.apiserver), pair(pki.admin), at(pki.sa_private),
                      at(pki.sa_public))


__all__ = ["LabProvider", "add_provider_options", "pick_host", "provider_options_from_args",
           "rewrite_kubeconfig_server"]
