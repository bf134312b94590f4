"""`drdrill gc`: remove what runs killed with -9 left behind, never touching live runs.

A run is live while the process that owns it is alive (same pid *and* same start time, so a
recycled pid does not count). Leftovers are found three ways: run folders under the runs dir,
processes whose environment carries DRDRILL_RUN_ID, and Docker containers and networks
carrying the `drdrill.dev/run-id` label (kind/k3d clusters, lab-host test containers).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError
from harness.procs import OWNER_ENV, RUN_ID_ENV, owner_token, process_start_ticks

OWNER_FILE = "owner.json"


def write_owner(run_dir: Path) -> None:
    """Mark `run_dir` as owned by this process (called when a run starts)."""
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (run_dir / OWNER_FILE).write_text(json.dumps({"owner": owner_token(),
                                                  "created": time.time()}))


def token_alive(token: str) -> bool:
    """Is the harness process named by an owner token (`pid:start`) still running?"""
    pid, _, start = token.partition(":")
    return pid.isdigit() and str(process_start_ticks(int(pid))) == start


def owner_alive(run_dir: Path) -> bool:
    try:
        token = str(json.loads((run_dir / OWNER_FILE).read_text())["owner"])
    except (OSError, ValueError, KeyError):
        return False
    return token_alive(token)


def run_processes() -> tuple[dict[str, list[int]], set[str]]:
    """(run id -> pids carrying DRDRILL_RUN_ID, run ids whose owning harness is alive)."""
    found: dict[str, list[int]] = {}
    live: set[str] = set()
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        values = dict(v.decode(errors="replace").split("=", 1) for v in env if b"=" in v)
        rid = values.get(RUN_ID_ENV)
        if rid:
            found.setdefault(rid, []).append(int(entry.name))
            if token_alive(values.get(OWNER_ENV, "")):
                live.add(rid)
    return found, live


def parse_age(raw: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", raw)
    if not m:
        raise ConfigError(f"--older-than {raw!r} is not a duration",
                          fix="use a number with s, m, h or d, e.g. 30m or 2h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


@dataclass(frozen=True)
class Swept:
    run_id: str
    pids: tuple[int, ...]
    removed: str | None
    docker: tuple[str, ...] = ()
    """Containers and networks removed, as `container <name>` / `network <name>`."""


RUN_ID_LABEL = "drdrill.dev/run-id"
OWNER_LABEL = "drdrill.dev/owner"
"""`<pid>:<start ticks>` of the process that made a container/network: alive means in use."""


def _docker(*args: str) -> str | None:
    """stdout of a docker CLI call, or None when there is no CLI or no engine (gc must not
    fail or hang on a machine without Docker)."""
    if shutil.which("docker") is None:
        return None
    try:
        res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=30,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout if res.returncode == 0 else None


def docker_leftovers() -> tuple[dict[str, list[tuple[str, str]]], set[str]]:
    """(run id -> [("container" | "network", name)] for everything labelled with a run id,
    run ids whose owner label names a live process). Containers attached to a labelled network
    (kind's nodes carry no labels of ours) count for that network's run."""
    found: dict[str, list[tuple[str, str]]] = {}
    live: set[str] = set()
    labels = '\t{{.Label "' + RUN_ID_LABEL + '"}}\t{{.Label "' + OWNER_LABEL + '"}}'
    rows = [("container", line) for line in (_docker(
        "ps", "-a", "--filter", f"label={RUN_ID_LABEL}", "--format", "{{.Names}}" + labels)
        or "").splitlines()]
    rows += [("network", line) for line in (_docker(
        "network", "ls", "--filter", f"label={RUN_ID_LABEL}", "--format", "{{.Name}}" + labels)
        or "").splitlines()]
    for kind, line in rows:
        name, rid, owner = [*line.split("\t"), "", ""][:3]
        if not (name and rid):
            continue
        if owner and token_alive(owner):
            live.add(rid)
        items = found.setdefault(rid, [])
        if kind == "network":
            attached = _docker("ps", "-a", "--filter", f"network={name}", "--format",
                               "{{.Names}}") or ""
            items += [("container", c) for c in attached.split() if ("container", c) not in items]
        if (kind, name) not in items:
            items.append((kind, name))
    return found, live


def remove_docker(items: list[tuple[str, str]]) -> None:
    """Containers first (with their anonymous volumes), then the networks they were on."""
    containers = [name for kind, name in items if kind == "container"]
    if containers:
        _docker("rm", "-f", "-v", *containers)
    for kind, name in items:
        if kind == "network":
            _docker("network", "rm", name)


def gc(runs_dir: Path, *, older_than_s: float = 0.0, run_id: str | None = None,
       dry_run: bool = False) -> tuple[list[Swept], list[str]]:
    """Sweep dead runs; returns (what was swept, run ids skipped because they are alive)."""
    procs, live = run_processes()
    dirs = {p.name: p for p in runs_dir.iterdir() if p.is_dir()} if runs_dir.is_dir() else {}
    docker, docker_live = docker_leftovers()
    live |= docker_live
    ids = {run_id} if run_id else set(dirs) | set(procs) | set(docker)
    swept: list[Swept] = []
    alive: list[str] = []
    now = time.time()
    for rid in sorted(ids):
        d = dirs.get(rid)
        if rid in live or (d is not None and owner_alive(d)):
            alive.append(rid)
            continue
        if d is not None and now - d.stat().st_mtime < older_than_s:
            continue
        pids = tuple(procs.get(rid, ()))
        dock = docker.get(rid, [])
        if not dry_run:
            remove_docker(dock)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)
        if pids or d is not None or dock:
            swept.append(Swept(rid, pids, str(d) if d else None,
                               tuple(f"{kind} {name}" for kind, name in dock)))
    return swept, alive
