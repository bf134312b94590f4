"""The drill's registry mirror: the pinned CNCF distribution registry as a child process, its
storage in a cache folder that outlives runs (~/.cache/drdrill/mirror by default)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import platform
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from harness.command import Command, run
from harness.config import Config
from harness.errors import ConfigError, MirrorError, RegistryUnreachable
from harness.mirror.oci import Registry
from harness.procs import Supervisor, free_ports, log_tail

log = logging.getLogger(__name__)

START_TIMEOUT_S = 20.0


def mirror_dir(config: Config) -> Path:
    """Where the mirror keeps its content across runs."""
    return config.mirror_dir or config.cache_dir / "mirror"


def host_platform() -> str:
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower())
    return f"linux/{arch}"


def registry_config(storage: Path, addr: str, *, platforms: tuple[str, ...]) -> str:
    """distribution's configuration (JSON is YAML): filesystem storage with deletes, an access
    log (the drill counts pulls from it), and index validation only for the platforms the
    mirror keeps, since it copies no other children of a multi-platform index."""
    plat = [{"os": p.split("/")[0], "architecture": p.split("/")[1]} for p in platforms]
    cfg = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "json", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(storage)},
                    "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": addr, "secret": secrets.token_hex(16)},
        "validation": {"manifests": {"indexes": {"platforms": "list",
                                                 "platformlist": plat}}},
    }
    return json.dumps(cfg, indent=2)


@dataclass
class MirrorRegistry:
    """`with MirrorRegistry(...) as mirror:` runs the registry on `host`:`port` (port 0: a
    free one) until the block ends. `host` must be a local address: loopback for the CLI, the
    kind network's gateway for a drill (where kind nodes reach it)."""

    binary: Path
    storage: Path
    work_dir: Path
    run_id: str
    host: str = "127.0.0.1"
    port: int = 0
    platforms: tuple[str, ...] = field(default_factory=lambda: (host_platform(),))
    remove_work_dir: bool = False
    """The work folder (config, log) goes with the registry: nobody reads it afterwards."""
    _sup: Supervisor | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "logs" / "registry.log"

    def client(self) -> Registry:
        return Registry(self.url, name=f"mirror {self.address}")

    def __enter__(self) -> MirrorRegistry:
        if not _is_local(self.host):
            raise ConfigError(f"the mirror must listen on a local address, not {self.host}")
        self.storage.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_ports(1, self.host)[0]
        cfg = self.work_dir / "registry.json"
        cfg.write_text(registry_config(self.storage, self.address, platforms=self.platforms))
        self._sup = Supervisor(self.run_id, self.work_dir / "logs", scope=str(self.work_dir))
        self._sup.start("registry", [str(self.binary), "serve", str(cfg)])
        try:
            self._wait_up()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            assert self._sup is not None
            self._sup.check()
            try:
                self.client().ping()
                return
            except RegistryUnreachable as exc:
                last = exc.message
            time.sleep(0.1)
        raise MirrorError(f"the mirror registry did not answer on {self.url} within "
                          f"{START_TIMEOUT_S:.0f}s: {last}\n    "
                          + log_tail(self.log_path, 8).replace("\n", "\n    "))

    def close(self) -> None:
        if self._sup is not None:
            self._sup.stop_all()
            self._sup = None
        if self.remove_work_dir:
            import shutil

            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def pulls(self) -> PullStats:
        """What clients fetched from this registry so far, read from its access log."""
        return pull_stats(self.log_path)


def _is_local(host: str) -> bool:
    if host in ("127.0.0.1", "::1", "localhost"):
        return True
    import socket

    try:
        probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            probe.bind((host, 0))
        finally:
            probe.close()
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class PullStats:
    manifests: Counter[str]
    """repository -> manifest requests (GET or HEAD) answered 200, by a node's containerd or
    Flux: each is a reference resolved from the mirror."""
    blob_bytes: int
    misses: tuple[str, ...]
    """repository:reference asked for and not there (404)."""
    first_at: str | None
    last_at: str | None

    @property
    def span_s(self) -> float | None:
        """Seconds from the first pull to the last (the access log's one-second stamps)."""
        if not self.first_at or not self.last_at:
            return None
        from datetime import datetime

        fmt = "%d/%b/%Y:%H:%M:%S %z"
        return (datetime.strptime(self.last_at, fmt)
                - datetime.strptime(self.first_at, fmt)).total_seconds()


_ACCESS = re.compile(r'"(GET|HEAD) /v2/(?P<repo>.+?)/(?P<what>manifests|blobs)/(?P<ref>[^ ?"]+)'
                     r'[^"]*" (?P<status>\d{3}) (?P<size>\d+|-)')
_STAMP = re.compile(r"\[(\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\]")


def pull_stats(log_file: Path) -> PullStats:
    manifests: Counter[str] = Counter()
    misses: list[str] = []
    size = 0
    first = last = None
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        m = _ACCESS.search(line)
        if not m:
            continue
        stamp = _STAMP.search(line)
        if stamp:
            first = first or stamp.group(1)
            last = stamp.group(1)
        status = int(m.group("status"))
        if m.group("what") == "manifests" and status == 200:
            # containerd resolves a tag with HEAD and skips the GET when it holds the digest
            manifests[m.group("repo")] += 1
        elif m.group("what") == "manifests" and status == 404:
            misses.append(f"{m.group('repo')}:{m.group('ref')}")
        elif m.group("what") == "blobs" and m.group(1) == "GET" and m.group("size") != "-":
            size += int(m.group("size"))
    return PullStats(manifests, size, tuple(dict.fromkeys(misses)), first, last)


@contextmanager
def storage_lock(storage: Path, *, exclusive: bool) -> Iterator[None]:
    """Shared while registries serve the storage, exclusive for garbage collection."""
    storage.mkdir(parents=True, exist_ok=True)
    fd = os.open(storage / ".drdrill.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def garbage_collect(binary: Path, storage: Path, work_dir: Path) -> str:
    """`registry garbage-collect --delete-untagged` on the storage (no registry may serve it)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg = work_dir / "registry-gc.json"
    cfg.write_text(registry_config(storage, "127.0.0.1:0", platforms=(host_platform(),)))
    res = run(Command.of(binary, "garbage-collect", "--delete-untagged", cfg).with_timeout(600))
    return res.stdout
