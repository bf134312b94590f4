"""Find a pinned binary without building it: the tools folder, PATH (at the pinned version), the
cache; and the cache itself (verified stamps, atomic installs, the lock builders share).

Resolution order, per tool: `Config.tools_dir`, PATH (only at the pinned version), the cache
under `Config.tools_cache`; `harness.tools.ensure` adds the ways of filling the cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.command import Command, run
from harness.config import Config
from harness.errors import CommandError, ToolVersionError
from harness.tools.buildinfo import read_build_info
from harness.tools.manifest import ToolSpec, load_manifest

log = logging.getLogger(__name__)

Source = Literal["dir", "path", "cache", "downloaded", "built"]

VERSION_CHECK_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class ResolvedTool:
    """A pinned binary that was found (or built) and answered with its pinned version."""

    name: str
    version: str
    path: Path
    source: Source
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "path": str(self.path),
                "source": self.source, "sha256": self.sha256}


def _same_version(a: str, b: str) -> bool:
    return a.strip().removeprefix("v") == b.strip().removeprefix("v")


class Unusable(Exception):
    """A candidate binary is not the pinned version (or does not run); `reason` says why."""

    def __init__(self, reason: str, found_version: str | None = None, *,
                 unverifiable: bool = False) -> None:
        self.reason = reason
        self.found_version = found_version
        self.unverifiable = unverifiable  # runs and looks right, but does not say its version
        super().__init__(reason)


def check_version(spec: ToolSpec, binary: Path) -> str:
    """Run `binary` with the spec's version args; return the version it is, or raise Unusable."""
    if not os.access(binary, os.X_OK):
        raise Unusable(f"{binary} is not executable")
    cmd = Command.of(binary, *spec.version_args).with_timeout(VERSION_CHECK_TIMEOUT_S)
    try:
        result = run(cmd, check=False)
    except CommandError as exc:
        raise Unusable(f"`{' '.join(cmd.argv)}` did not finish: "
                       f"{exc.stderr.strip()[-200:]}") from exc
    except OSError as exc:  # exec format error and friends
        raise Unusable(f"`{' '.join(cmd.argv)}` could not run: {exc}") from exc
    output = f"{result.stdout}\n{result.stderr}"
    argv = " ".join(cmd.argv)
    if spec.expect_regex and not re.search(spec.expect_regex, output):
        raise Unusable(f"`{argv}` (exit {result.returncode}) did not print "
                       f"{spec.expect_regex!r}: {output.strip()[:200]!r}")
    if spec.version_from == "buildinfo":
        info = read_build_info(binary)
        found = info.module_version(spec.module) if info else None
        if found is None:
            raise Unusable(f"{binary} has no Go build info naming {spec.module}'s version",
                           unverifiable=True)
        return found
    assert spec.version_regex is not None  # parse_manifest guarantees it
    match = re.search(spec.version_regex, output)
    if match is None:
        raise Unusable(f"`{argv}` (exit {result.returncode}) printed no version matching "
                       f"{spec.version_regex!r}: {output.strip()[:200]!r}")
    return match.group(1)


def verified(spec: ToolSpec, binary: Path) -> str:
    """check_version, but also insist on the pinned version."""
    found = check_version(spec, binary)
    if not _same_version(found, spec.version):
        raise Unusable(f"{binary} is {spec.name} {found}, not the pinned {spec.version}", found)
    return found


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- the cache ------------------------------------------------------------------------------

def cache_path(config: Config, spec: ToolSpec) -> Path:
    return config.tools_cache / spec.name / spec.version / spec.name


def _stamp_path(binary: Path) -> Path:
    return binary.with_name(binary.name + ".stamp.json")


def _stamp_key(binary: Path) -> dict[str, int]:
    st = binary.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def write_stamp(binary: Path, version: str, sha: str) -> None:
    """Record that `binary` (as it is now: size + mtime) was verified, with its sha256."""
    stamp = {**_stamp_key(binary), "version": version, "sha256": sha}
    tmp = _stamp_path(binary).with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(stamp), encoding="utf-8")
    tmp.replace(_stamp_path(binary))


def _read_stamp(binary: Path) -> dict[str, Any] | None:
    try:
        stamp = json.loads(_stamp_path(binary).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict):
        return None
    try:
        key = _stamp_key(binary)
    except OSError:
        return None
    if any(stamp.get(k) != v for k, v in key.items()):
        return None
    return stamp


def from_cache(config: Config, spec: ToolSpec) -> ResolvedTool | None:
    """The cached binary of `spec`, verified (once per install: the stamp), or None."""
    binary = cache_path(config, spec)
    if not binary.is_file():
        return None
    stamp = _read_stamp(binary)
    if stamp and _same_version(str(stamp.get("version", "")), spec.version):
        # Verified when it was installed and unchanged since (same size and mtime).
        return ResolvedTool(spec.name, spec.version, binary, "cache", str(stamp["sha256"]))
    try:
        verified(spec, binary)
    except Unusable as why:
        log.warning("cached %s is unusable and will be rebuilt: %s", spec.name, why.reason)
        return None
    sha = sha256_file(binary)
    write_stamp(binary, spec.version, sha)
    return ResolvedTool(spec.name, spec.version, binary, "cache", sha)


def install_into_cache(config: Config, spec: ToolSpec, fresh: Path, *,
                       trust_unverifiable: bool = False) -> None:
    """Verify a fresh binary, then move it into the cache atomically (same filesystem).

    Raises Unusable when `fresh` is not the pinned version; the caller names where it came from.
    `trust_unverifiable`: a download whose checksum or digest matched may lack a version
    stamp (release builds without module info); it is used, and the log says so.
    """
    try:
        verified(spec, fresh)
    except Unusable as why:
        if not (trust_unverifiable and why.unverifiable):
            raise
        log.warning("%s %s: cannot read its version (%s); trusted by its verified checksum",
                    spec.name, spec.version, why.reason)
    target = cache_path(config, spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    sha = sha256_file(fresh)
    fresh.replace(target)
    write_stamp(target, spec.version, sha)


@contextmanager
def file_lock(path: Path, *, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive fcntl lock on `path`; call `on_wait` once if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --- resolution without building ------------------------------------------------------------

def _from_dir(config: Config, spec: ToolSpec) -> ResolvedTool | None:
    if config.tools_dir is None:
        return None
    binary = config.tools_dir / spec.name
    if not binary.is_file():
        return None
    try:
        verified(spec, binary)
    except Unusable as why:
        if why.unverifiable:
            # Release binaries built with `go build main.go` carry no module version; the
            # user chose this folder, so trust it but say so.
            log.warning("%s: cannot verify the version (%s); using it because --tools-dir "
                        "names it", binary, why.reason)
        else:
            raise ToolVersionError(
                f"{spec.name} in the tools folder {config.tools_dir} is unusable: {why.reason}",
                tool=spec.name, version=spec.version,
                fix=f"put {spec.name} {spec.version} at {binary}, or remove it from that folder "
                    "so drdrill looks on PATH, in its cache, or builds it") from None
    return ResolvedTool(spec.name, spec.version, binary, "dir", sha256_file(binary))


def _from_path(spec: ToolSpec) -> ResolvedTool | None:
    found = shutil.which(spec.name)
    if found is None:
        return None
    binary = Path(found)
    try:
        verified(spec, binary)
    except Unusable as why:
        log.info("skipping %s on PATH: %s", binary, why.reason)
        return None
    return ResolvedTool(spec.name, spec.version, binary, "path", sha256_file(binary))


def resolve_existing(config: Config, spec: ToolSpec) -> ResolvedTool | None:
    """Steps 1-3 of the resolution order; None when the tool must be built."""
    return _from_dir(config, spec) or _from_path(spec) or from_cache(config, spec)


def list_tools(config: Config) -> list[dict[str, str | None]]:
    """Every pinned tool and where it resolves now, without building anything.

    Keys: name, version, path, source ("dir" | "path" | "cache" | "missing"), sha256, and
    error (why a binary in the tools folder was rejected, else None).
    """
    rows: list[dict[str, str | None]] = []
    for name, spec in load_manifest().tools.items():
        row: dict[str, str | None] = {"name": name, "version": spec.version, "path": None,
                                      "source": "missing", "sha256": None, "error": None}
        try:
            found = resolve_existing(config, spec)
        except ToolVersionError as exc:
            row["error"] = str(exc)
        else:
            if found is not None:
                row.update(found.to_dict())
        rows.append(row)
    return rows
