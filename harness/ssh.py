"""SSH to lab hosts with paramiko: verified host keys, commands with deadlines, file copy, log
streaming and port forwarding (both ways), all over one connection per host.

Why paramiko: the harness is synchronous and runs every wait with a deadline in plain threads;
paramiko is synchronous, mature, and gives direct access to the transport, so the host key is
checked *before* authentication and before any command, with our own error messages (asyncssh
would need an event loop beside the harness; fabric adds nothing over paramiko here).

Host keys are never trusted blindly: the key a host presents must be the inventory's
`host_key` or one of its entries in `known_hosts`; with `trust_on_first_use` an unknown host's
key is pinned into that known_hosts file, but a *changed* key is always refused.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import paramiko

from harness.command import Result
from harness.errors import CommandError, HostKeyError, SSHError
from harness.inventory import HostSpec, known_keys

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 60.0
_RSA_ALGS = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")


def fingerprint(kind: str, b64: str) -> str:
    """OpenSSH's `SHA256:...` fingerprint of a public key blob."""
    digest = hashlib.sha256(base64.b64decode(b64)).digest()
    return f"{kind} SHA256:{base64.b64encode(digest).decode().rstrip('=')}"


def _load_private_key(spec: HostSpec) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(spec.key)
    except paramiko.PasswordRequiredException:
        raise SSHError(f"the key file {spec.key} is protected by a passphrase",
                       host=spec.name, target=spec.target, field="key",
                       fix="use a key without a passphrase for drills (a deploy-style key "
                           "for the lab), or decrypt a copy of it") from None
    except (paramiko.SSHException, OSError, ValueError) as exc:
        raise SSHError(f"the key file {spec.key} cannot be loaded: {exc}", host=spec.name,
                       target=spec.target, field="key") from None


class SSHHost:
    """One verified, authenticated SSH connection to an inventory host.

    `with SSHHost(spec) as h: h.run(["uname", "-m"])`. Thread-safe for concurrent channels.
    """

    def __init__(self, spec: HostSpec, *, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.spec = spec
        self.connect_timeout_s = connect_timeout_s
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._closers: list[Callable[[], None]] = []
        self.presented_key: str | None = None
        self.verified_by: str | None = None
        self.connect_s: float | None = None

    # -- connecting ------------------------------------------------------------------------
    def connect(self) -> SSHHost:
        spec = self.spec
        started = time.monotonic()
        pkey = _load_private_key(spec)  # before the network: a bad file fails at once
        expected = known_keys(spec)
        try:
            sock = socket.create_connection((spec.address, spec.port),
                                            timeout=self.connect_timeout_s)
        except socket.gaierror as exc:
            raise SSHError(f"cannot resolve {spec.address!r}: {exc.strerror}", host=spec.name,
                           target=spec.target, field="address") from None
        except TimeoutError:
            raise SSHError(f"no answer from {spec.address}:{spec.port} within "
                           f"{self.connect_timeout_s:.0f}s", host=spec.name, target=spec.target,
                           field="address",
                           fix="check that the host is up and the address and port are "
                               "right") from None
        except OSError as exc:
            raise SSHError(f"cannot connect to {spec.address}:{spec.port}: "
                           f"{exc.strerror or exc}", host=spec.name, target=spec.target,
                           field="port" if isinstance(exc, ConnectionRefusedError) else
                           "address", fix="check that sshd runs there and the address and "
                                          "port are right") from None
        transport = paramiko.Transport(sock)
        transport.banner_timeout = self.connect_timeout_s
        transport.handshake_timeout = self.connect_timeout_s
        if expected:
            # Offer only the key types we can verify, so the host presents one of those.
            types: list[str] = []
            for kind, _ in expected:
                types += list(_RSA_ALGS) if kind == "ssh-rsa" else [kind]
            options = transport.get_security_options()
            offered = [t for t in options.key_types if t in types]
            if offered:
                options.key_types = offered
        try:
            transport.start_client(timeout=self.connect_timeout_s)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            transport.close()
            raise SSHError(f"SSH handshake with {spec.address}:{spec.port} failed: {exc}",
                           host=spec.name, target=spec.target, field="port",
                           fix="check that the port is an SSH server's") from None
        try:
            self._verify_host_key(transport, expected)
            self._authenticate(transport, pkey)
        except BaseException:
            transport.close()
            raise
        transport.set_keepalive(15)
        self._transport = transport
        self.connect_s = time.monotonic() - started
        log.debug("ssh %s: connected in %.2fs (%s)", spec.name, self.connect_s, self.verified_by)
        return self

    def _verify_host_key(self, transport: paramiko.Transport,
                         expected: list[tuple[str, str]]) -> None:
        spec = self.spec
        key = transport.get_remote_server_key()
        kind, b64 = key.get_name(), key.get_base64()
        if kind.startswith("rsa-sha2-"):
            kind = "ssh-rsa"
        self.presented_key = fingerprint(kind, b64)
        if (kind, b64) in expected:
            self.verified_by = ("host_key in the inventory" if spec.host_key
                                else f"known_hosts {spec.known_hosts}")
            return
        field = "host_key" if spec.host_key else "known_hosts"
        if expected:
            raise HostKeyError(
                f"HOST KEY MISMATCH: the host presented {self.presented_key}, but the "
                f"inventory trusts {', '.join(fingerprint(k, b) for k, b in expected)} "
                f"({'host_key' if spec.host_key else spec.known_hosts}); it may be "
                "reinstalled hardware or someone in the middle. Nothing was sent to it.",
                host=spec.name, target=spec.target, field=field, presented=self.presented_key,
                expected=[fingerprint(k, b) for k, b in expected],
                fix="verify the new key out of band (the host's console), then replace the "
                    f"old entry for {spec.known_hosts_name} in {spec.known_hosts} "
                    f"(ssh-keygen -R '{spec.known_hosts_name}' -f {spec.known_hosts})")
        if not spec.trust_on_first_use:
            raise HostKeyError(
                f"unknown host key {self.presented_key}: {spec.known_hosts} has no entry for "
                f"{spec.known_hosts_name} and trust_on_first_use is off",
                host=spec.name, target=spec.target, field="known_hosts",
                presented=self.presented_key, expected=[],
                fix="add the host's key to known_hosts, set host_key, or set "
                    "trust_on_first_use: true in the inventory")
        _pin(spec, kind, b64)
        self.verified_by = f"pinned on first use into {spec.known_hosts}"
        log.warning("host %s: pinned its key %s into %s (trust_on_first_use)", spec.name,
                    self.presented_key, spec.known_hosts)

    def _authenticate(self, transport: paramiko.Transport, pkey: paramiko.PKey) -> None:
        spec = self.spec
        try:
            transport.auth_publickey(spec.user, pkey)
        except paramiko.BadAuthenticationType as exc:
            raise SSHError(f"the host does not accept public keys (it allows "
                           f"{', '.join(exc.allowed_types)})", host=spec.name,
                           target=spec.target, field="key") from None
        except paramiko.AuthenticationException:
            raise SSHError(f"the host refused the key {spec.key} for user {spec.user!r}",
                           host=spec.name, target=spec.target, field="key",
                           fix=f"add the public key to ~{spec.user}/.ssh/authorized_keys on "
                               "the host, or fix `key` / `user` in the inventory") from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise SSHError(f"authentication failed: {exc}", host=spec.name,
                           target=spec.target, field="key") from None

    @property
    def transport(self) -> paramiko.Transport:
        if self._transport is None or not self._transport.is_active():
            raise SSHError("not connected", host=self.spec.name, target=self.spec.target)
        return self._transport

    @property
    def connected(self) -> bool:
        return self._transport is not None and self._transport.is_active()

    def close(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer()
        self._closers.clear()
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
            self._sftp = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def __enter__(self) -> SSHHost:
        try:
            return self.connect()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- commands --------------------------------------------------------------------------
    def argv(self, command: str | Sequence[str], *, sudo: bool = False) -> tuple[str, ...]:
        """The argv a CommandError shows: `ssh user@host:port <remote command>`."""
        return ("ssh", self.spec.target, self._command(command, sudo))

    def _command(self, command: str | Sequence[str], sudo: bool) -> str:
        text = command if isinstance(command, str) else shlex.join(command)
        if sudo and self.spec.sudo:
            text = f"sudo -n sh -c {shlex.quote(text)}"
        return text

    def run(self, command: str | Sequence[str], *, timeout_s: float = COMMAND_TIMEOUT_S,
            check: bool = True, input_text: str | None = None, sudo: bool = False,
            fix: str | None = None) -> Result:
        """Run a command (argv list, or a shell string) to completion within `timeout_s`."""
        text = self._command(command, sudo)
        argv = self.argv(command, sudo=sudo)
        log.debug("ssh %s: %s", self.spec.name, text)
        try:
            chan = self.transport.open_session(timeout=self.connect_timeout_s)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise CommandError(argv, None, "", f"cannot open an SSH channel: {exc}",
                               fix=fix) from None
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout_s
        try:
            chan.exec_command(text)
            if input_text is not None:
                chan.sendall(input_text.encode())
            chan.shutdown_write()
            fd = chan.fileno()
            while True:
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                if chan.exit_status_ready() and not chan.recv_ready() \
                        and not chan.recv_stderr_ready():
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CommandError(argv, None, out.decode(errors="replace"),
                                       err.decode(errors="replace")
                                       + f"\n(timed out after {timeout_s:.0f}s)", fix=fix)
                select.select([fd], [], [], min(remaining, 0.2))
            rc = chan.recv_exit_status()
        except (paramiko.SSHException, OSError) as exc:
            raise CommandError(argv, None, out.decode(errors="replace"),
                               f"{err.decode(errors='replace')}\n(connection lost: {exc})",
                               fix=fix) from None
        finally:
            chan.close()
        result = Result(argv, rc, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and rc != 0:
            raise CommandError(argv, rc, result.stdout, result.stderr, fix=fix)
        return result

    def stream(self, command: str | Sequence[str], on_line: Callable[[str], None], *,
               stop: threading.Event | None = None, timeout_s: float | None = None,
               sudo: bool = False) -> int | None:
        """Run a command, handing each line of its combined output to `on_line` as it comes
        (log following, installer progress). Returns its exit code, or None when `stop` was
        set or `timeout_s` passed (the remote command is then hung up on)."""
        chan = self.transport.open_session(timeout=self.connect_timeout_s)
        chan.set_combine_stderr(True)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pending = b""
        try:
            if stop is not None:
                chan.get_pty()  # closing a pty hangs up on the command (`tail -F` stops)
            chan.exec_command(self._command(command, sudo))
            fd = chan.fileno()
            while True:
                if stop is not None and stop.is_set():
                    return None
                if deadline is not None and time.monotonic() > deadline:
                    return None
                while chan.recv_ready():
                    pending += chan.recv(65536)
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        on_line(line.decode(errors="replace").rstrip("\r"))
                if chan.exit_status_ready() and not chan.recv_ready():
                    if pending:
                        on_line(pending.decode(errors="replace").rstrip("\r"))
                    return chan.recv_exit_status()
                select.select([fd], [], [], 0.2)
        finally:
            chan.close()

    # -- files -----------------------------------------------------------------------------
    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = paramiko.SFTPClient.from_transport(self.transport)
            if self._sftp is None:
                raise SSHError("the host offers no SFTP subsystem", host=self.spec.name,
                               target=self.spec.target,
                               fix="enable `Subsystem sftp` in the host's sshd_config")
        return self._sftp

    def put(self, local: Path, remote: str, *, mode: int = 0o644) -> None:
        """Copy a file to the host (written under a temporary name, then renamed)."""
        tmp = f"{remote}.part{os.getpid()}"
        try:
            self.sftp.put(str(local), tmp, confirm=True)
            self.sftp.chmod(tmp, mode)
            try:
                self.sftp.posix_rename(tmp, remote)
            except OSError:  # a server without OpenSSH's posix-rename extension
                with contextlib.suppress(OSError):
                    self.sftp.remove(remote)
                self.sftp.rename(tmp, remote)
        except (OSError, paramiko.SSHException) as exc:
            with contextlib.suppress(OSError, paramiko.SSHException):
                self.sftp.remove(tmp)
            raise SSHError(f"copying {local} to {remote} failed: {exc}", host=self.spec.name,
                           target=self.spec.target) from None

    def put_bytes(self, data: bytes, remote: str, *, mode: int = 0o600) -> None:
        try:
            with self.sftp.open(remote, "wb") as fh:
                fh.chmod(mode)  # before the data: secrets are never world-readable
                fh.write(data)
        except (OSError, paramiko.SSHException) as exc:
            raise SSHError(f"writing {remote} failed: {exc}", host=self.spec.name,
                           target=self.spec.target) from None

    def get(self, remote: str, local: Path) -> Path:
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.sftp.get(remote, str(local))
        except (OSError, paramiko.SSHException) as exc:
            raise SSHError(f"copying {remote} from the host failed: {exc}",
                           host=self.spec.name, target=self.spec.target) from None
        return local

    def read_text(self, remote: str) -> str:
        try:
            with self.sftp.open(remote, "rb") as fh:
                return bytes(fh.read()).decode(errors="replace")
        except (OSError, paramiko.SSHException) as exc:
            raise SSHError(f"reading {remote} failed: {exc}", host=self.spec.name,
                           target=self.spec.target) from None

    # -- forwarding ------------------------------------------------------------------------
    def forward_local(self, remote_port: int, remote_host: str = "127.0.0.1") -> int:
        """Listen on a free 127.0.0.1 port here and carry each connection to
        `remote_host:remote_port` as seen from the host; returns the local port."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port: int = listener.getsockname()[1]
        stopped = threading.Event()

        def accept_loop() -> None:
            while not stopped.is_set():
                try:
                    conn, peer = listener.accept()
                except OSError:
                    return
                try:
                    chan = self.transport.open_channel(
                        "direct-tcpip", (remote_host, remote_port), peer,
                        timeout=self.connect_timeout_s)
                except (paramiko.SSHException, SSHError, OSError) as exc:
                    log.debug("ssh %s: forward to %s:%s failed: %s", self.spec.name,
                              remote_host, remote_port, exc)
                    conn.close()
                    continue
                _start_pump(conn, chan, f"ssh-fwd-{self.spec.name}")

        thread = threading.Thread(target=accept_loop, daemon=True,
                                  name=f"ssh-fwd-{self.spec.name}-{port}")
        thread.start()

        def close() -> None:
            stopped.set()
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
            thread.join(timeout=2)

        self._closers.append(close)
        return port

    def forward_remote(self, local_port: int, local_host: str = "127.0.0.1") -> int:
        """Ask the host to listen on its 127.0.0.1 (a port it picks) and carry each connection
        back to `local_host:local_port` here; returns the host's port. Nothing but loopback
        on either side is exposed."""
        def handler(chan: paramiko.Channel, origin: tuple[str, int],
                    server: tuple[str, int]) -> None:
            # Runs in paramiko's transport thread: hand off at once.
            def connect() -> None:
                try:
                    sock = socket.create_connection((local_host, local_port), timeout=5)
                except OSError as exc:
                    log.warning("ssh %s: reverse forward to %s:%s failed: %s", self.spec.name,
                                local_host, local_port, exc)
                    chan.close()
                    return
                _start_pump(sock, chan, f"ssh-rfwd-{self.spec.name}")

            threading.Thread(target=connect, daemon=True).start()

        try:
            port = self.transport.request_port_forward("127.0.0.1", 0, handler)
        except paramiko.SSHException as exc:
            raise SSHError(f"the host refused a reverse port forward: {exc}",
                           host=self.spec.name, target=self.spec.target,
                           fix="allow TCP forwarding in the host's sshd_config "
                               "(AllowTcpForwarding yes)") from None

        def close() -> None:
            with contextlib.suppress(Exception):
                self.transport.cancel_port_forward("127.0.0.1", port)

        self._closers.append(close)
        return int(port)

    def http_get(self, port: int, path: str = "/", *, timeout_s: float = 3.0,
                 host: str = "127.0.0.1") -> tuple[bool, str]:
        """GET http://host:port/path as the remote host sees it (health endpoints on the host's
        loopback); (True, summary) on HTTP 200. For `poll_until` probes."""
        try:
            chan = self.transport.open_channel("direct-tcpip", (host, port),
                                               ("127.0.0.1", 0), timeout=timeout_s)
        except (paramiko.SSHException, SSHError, OSError) as exc:
            return False, f"cannot reach {host}:{port} on the host: {exc}"
        try:
            chan.settimeout(timeout_s)
            chan.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            data = b""
            while len(data) < 4096:
                chunk = chan.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (OSError, paramiko.SSHException) as exc:
            return False, f"GET {host}:{port}{path} on the host failed: {exc}"
        finally:
            chan.close()
        status_line = data.split(b"\r\n", 1)[0].decode(errors="replace")
        parts = status_line.split()
        ok = len(parts) >= 2 and parts[1] == "200"
        body = data.partition(b"\r\n\r\n")[2][:200].decode(errors="replace")
        return ok, f"{status_line}: {body}" if status_line else "no answer"


def _start_pump(sock: socket.socket, chan: paramiko.Channel, name: str) -> None:
    threading.Thread(target=_pump, args=(sock, chan), daemon=True, name=name).start()


def _pump(sock: socket.socket, chan: paramiko.Channel) -> None:
    """Copy bytes both ways until either side closes (or resets: that ends the copy too)."""
    try:
        _copy_both_ways(sock, chan)
    finally:
        with contextlib.suppress(OSError):
            sock.close()
        chan.close()


def _copy_both_ways(sock: socket.socket, chan: paramiko.Channel) -> None:
    with contextlib.suppress(OSError, paramiko.SSHException):
        while True:
            ready, _, _ = select.select([sock.fileno(), chan.fileno()], [], [], 1.0)
            if sock.fileno() in ready:
                data = sock.recv(65536)
                if not data:
                    break
                chan.sendall(data)
            if chan.fileno() in ready:
                data = chan.recv(65536)
                if not data:
                    break
                sock.sendall(data)
            if chan.closed:
                break


def _pin(spec: HostSpec, kind: str, b64: str) -> None:
    """Append the host's key to its known_hosts file (trust on first use)."""
    spec.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with spec.known_hosts.open("a", encoding="utf-8") as fh:
        fh.write(f"{spec.known_hosts_name} {kind} {b64}\n")


def check_reachable(specs: Sequence[HostSpec], *,
                    connect_timeout_s: float = CONNECT_TIMEOUT_S) -> dict[str, dict[str, Any]]:
    """Connect to every host (in parallel), verify its key, log in, and run `true`; raise the
    first host's error. Touches nothing on the hosts. -> name -> {fingerprint, verified_by}."""
    results: dict[str, dict[str, Any]] = {}
    errors: dict[str, BaseException] = {}

    def probe(spec: HostSpec) -> None:
        try:
            with SSHHost(spec, connect_timeout_s=connect_timeout_s) as h:
                h.run(["true"], timeout_s=connect_timeout_s * 2)
                results[spec.name] = {"host_key": h.presented_key,
                                      "verified_by": h.verified_by,
                                      "connect_s": round(h.connect_s or 0, 3)}
        except BaseException as exc:  # noqa: BLE001 - re-raised below in inventory order
            errors[spec.name] = exc

    threads = [threading.Thread(target=probe, args=(s,), daemon=True) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for spec in specs:
        if spec.name in errors:
            raise errors[spec.name]
    return results
