"""Long-running child processes: own process group, log file each, stopped TERM-then-KILL.

Every child carries DRDRILL_RUN_ID in its environment, so `drdrill gc` can find the
processes of a run that was killed with -9 by reading /proc/<pid>/environ.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ProcessExitedError, ProviderError

log = logging.getLogger(__name__)

RUN_ID_ENV = "DRDRILL_RUN_ID"
OWNER_ENV = "DRDRILL_OWNER"
"""The owner token (see `owner_token`) of the harness process that started the child."""
SCOPE_ENV = "DRDRILL_SCOPE"
"""Which part of the run started the child (a cluster's folder), so a provider can check that
exactly its own processes are gone."""


def process_start_ticks(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), so a recycled pid is not mistaken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime), counted after the parenthesised command name (it may hold spaces).
    return int(stat.rsplit(")", 1)[1].split()[19])


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def pid_namespace() -> str:
    """The pid namespace this process lives in (`pid:[4026531836]` -> `4026531836`)."""
    try:
        return str(Path("/proc/self/ns/pid").readlink()).partition("[")[2].rstrip("]") or "unknown"
    except OSError:
        return "unknown"


def owner_token() -> str:
    """`<pid>:<start ticks>:<boot id>:<pid namespace>` of this process: a pid alone means
    nothing after a reboot, a recycled pid, or seen from another pid namespace (a CI container
    sharing a Docker daemon)."""
    pid = os.getpid()
    return f"{pid}:{process_start_ticks(pid)}:{boot_id()}:{pid_namespace()}"


def token_liveness(token: str) -> str:
    """`alive`, `dead` or `unknown` for an owner token, from what this process can really see:
    only a token of this boot and this pid namespace can be checked; anything else (another
    namespace, another machine, an older token without them) is `unknown`."""
    parts = token.split(":")
    if len(parts) != 4 or not parts[0].isdigit():
        return "unknown"
    pid, start, boot, ns = parts
    if boot != boot_id() or ns != pid_namespace() or ns == "unknown":
        return "unknown"
    return "alive" if str(process_start_ticks(int(pid))) == start else "dead"


def process_environ(pid: int) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return dict(v.decode(errors="replace").split("=", 1) for v in raw if b"=" in v)


def drill_processes() -> Iterator[tuple[int, dict[str, str]]]:
    """(pid, environment) of every visible process that carries DRDRILL_RUN_ID, except this one."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        env = process_environ(int(entry.name))
        if env and env.get(RUN_ID_ENV):
            yield int(entry.name), env


def scoped_processes(run_id: str, scope: str) -> list[str]:
    """`process <pid> (<command>)` for each live process of `run_id` started under `scope`."""
    out = []
    for pid, env in drill_processes():
        if env.get(RUN_ID_ENV) == run_id and env.get(SCOPE_ENV) == scope:
            try:
                cmd = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            out.append(f"process {pid} ({cmd})")
    return out


LISTEN_PORTS_FLOOR = 10000
RESERVE_S = 300.0
"""How long a handed-out port stays reserved for its process to bind it."""


def _listen_range() -> tuple[int, int] | None:
    """Ports below the kernel's ephemeral range: outgoing connections (every client of every
    cluster on the machine) draw their local ports from that range, so a port picked there can
    be taken between the pick and the component's bind ("address already in use")."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return (LISTEN_PORTS_FLOOR, low - 1) if low - 1 - LISTEN_PORTS_FLOOR >= 2000 else None


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _reservations() -> Iterator[dict[str, float]]:
    """The machine-wide table of ports drdrill processes handed out lately (port -> expiry),
    under an exclusive lock: two drills starting at once never pick the same port."""
    import fcntl
    import json

    from harness.config import Config

    path = Config.from_env().cache_dir / "ports.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        try:
            table = {k: float(v) for k, v in json.loads(fh.read() or "{}").items()}
        except (ValueError, AttributeError):
            table = {}
        now = time.time()
        table = {k: v for k, v in table.items() if v > now}
        yield table
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(table))


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports for servers to listen on: outside the ephemeral range where
    the kernel allows, and reserved machine-wide for a few minutes so no other drill takes them."""
    span = _listen_range()
    if span is None:
        return _kernel_ports(count, host)
    import secrets

    low, high = span
    picks: list[int] = []
    with _reservations() as taken:
        for _ in range(50 * count):
            if len(picks) == count:
                break
            port = low + secrets.randbelow(high - low + 1)
            if port not in picks and str(port) not in taken and _bindable(host, port):
                picks.append(port)
        if len(picks) < count:
            return _kernel_ports(count, host)
        expiry = time.time() + RESERVE_S
        taken.update({str(p): expiry for p in picks})
    return picks


def _kernel_ports(count: int, host: str) -> list[int]:
    """`count` distinct ports that were free a moment ago (held open together, then released)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            return "\n".join(fh.read().decode("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Managed:
    name: str
    argv: tuple[str, ...]
    log: Path
    proc: subprocess.Popen[bytes]
    env: Mapping[str, str] | None = None
    """The extra environment it was started with, so a restart gets the same."""

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Supervisor:
    """Starts and stops the processes of one cluster; stop order is the reverse of start."""

    run_id: str
    log_dir: Path
    children: list[Managed] = field(default_factory=list)
    scope: str = ""
    """Set as DRDRILL_SCOPE on every child (default: the log folder's parent)."""

    def __post_init__(self) -> None:
        self.scope = self.scope or str(self.log_dir.parent)

    def leftovers(self) -> list[str]:
        """Processes of this supervisor's scope still alive, found in /proc (grandchildren
        included), not from its own bookkeeping."""
        return scoped_processes(self.run_id, self.scope)

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> Managed:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        full_env = {**os.environ, **(env or {}), RUN_ID_ENV: self.run_id,
                    OWNER_ENV: owner_token(), SCOPE_ENV: self.scope}
        log.debug("start %s: %s", name, " ".join(argv))
        with log_path.open("ab") as out:
            try:
                proc = subprocess.Popen(
                    list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=full_env, cwd=cwd, start_new_session=True,
                )
            except OSError as exc:
                raise ProviderError(f"cannot start {name} ({argv[0]}): {exc}") from exc
        managed = Managed(name, tuple(argv), log_path, proc, dict(env) if env else None)
        self.children.append(managed)
        return managed

    def check(self) -> None:
        """Raise ProcessExitedError for the first child that is no longer running."""
        for child in self.children:
            rc = child.proc.poll()
            if rc is not None:
                raise ProcessExitedError(child.name, rc, child.log, log_tail(child.log))

    def stop(self, name: str, *, grace_s: float = 5.0) -> None:
        for child in [c for c in self.children if c.name == name]:
            _terminate([child], grace_s)
            self.children.remove(child)

    def stop_all(self, *, grace_s: float = 5.0) -> None:
        _terminate(list(reversed(self.children)), grace_s)
        self.children.clear()

    def pids(self) -> list[int]:
        return [c.pid for c in self.children]


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _terminate(children: Sequence[Managed], grace_s: float) -> None:
    for child in children:
        if child.proc.poll() is None:
            _signal_group(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            child.proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            log.info("%s did not stop within %.0fs of SIGTERM; sending SIGKILL", child.name,
                        grace_s)
    for child in children:
        # The group may hold grandchildren even when the leader is gone.
        _signal_group(child.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(timeout=5)
