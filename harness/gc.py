"""`drdrill gc`: remove what runs killed with -9 left behind, never touching live or kept runs.

Leftovers are found three ways: run folders under the runs dir, processes whose environment
carries DRDRILL_RUN_ID, and Docker containers and networks carrying the `drdrill.dev/run-id`
label (kind/k3d clusters, lab-host test containers).

Whether a run's owner is alive is decided only from what this process can really see: the owner
token holds pid, start time, boot id and pid namespace (harness.procs.owner_token). A token of
another namespace or boot (a CI container on a shared Docker daemon) is *unknown*: such a run is
left alone unless `--older-than` says it is stale or `--run-id` names it. Kept clusters
(`--keep-cluster`) carry a marker (a `kept.json` in the run folder, and the `drdrill.dev/keep`
label on Docker resources); they are listed, and removed only with `--run-id` or
`--include-kept`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ConfigError
from harness.procs import OWNER_ENV, RUN_ID_ENV, drill_processes, owner_token, token_liveness

OWNER_FILE = "owner.json"
KEPT_FILE = "kept.json"
RUN_ID_LABEL = "drdrill.dev/run-id"
OWNER_LABEL = "drdrill.dev/owner"
"""The owner token of the process that made a container/network: alive means in use."""
KEEP_LABEL = "drdrill.dev/keep"
"""Set on Docker resources of a `--keep-cluster always` run: plain `drdrill gc` leaves them."""


def write_owner(run_dir: Path) -> None:
    """Mark `run_dir` as owned by this process (called when a run starts)."""
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (run_dir / OWNER_FILE).write_text(json.dumps({"owner": owner_token(),
                                                  "created": time.time()}))


def write_kept(run_dir: Path, why: str, **detail: str) -> None:
    """Mark the run's cluster as kept on purpose: `drdrill gc` lists it and leaves it alone."""
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (run_dir / KEPT_FILE).write_text(json.dumps({"why": why, "kept_at": time.time(), **detail}))


def _owner_of(run_dir: Path) -> str | None:
    try:
        return str(json.loads((run_dir / OWNER_FILE).read_text())["owner"])
    except (OSError, ValueError, KeyError):
        return None


def parse_age(raw: str | None) -> float | None:
    if raw is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", raw)
    if not m:
        raise ConfigError(f"--older-than {raw!r} is not a duration",
                          fix="use a number with s, m, h or d, e.g. 30m or 2h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


@dataclass
class RunTrace:
    """Everything of one run id that this machine can see."""

    run_id: str
    folder: Path | None = None
    pids: list[int] = field(default_factory=list)
    docker: list[tuple[str, str]] = field(default_factory=list)
    """("container" | "network", name)."""
    owners: set[str] = field(default_factory=set)
    kept: bool = False
    created: list[float] = field(default_factory=list)
    """Epoch seconds each trace came into being (folder, process, container)."""

    @property
    def liveness(self) -> str:
        seen = {token_liveness(t) for t in self.owners}
        if "alive" in seen:
            return "alive"
        return "dead" if seen == {"dead"} else "unknown"

    @property
    def age_s(self) -> float | None:
        return time.time() - min(self.created) if self.created else None


@dataclass(frozen=True)
class Swept:
    run_id: str
    pids: tuple[int, ...]
    removed: str | None
    docker: tuple[str, ...] = ()
    """Containers and networks removed, as `container <name>` / `network <name>`."""
    failed: tuple[str, ...] = ()
    """What could not be removed (`container <name>`, `process <pid>`, `folder <path>`)."""


LEFT_ALONE = ("alive", "kept", "unknown", "young")
"""Why gc leaves a run alone: its owner runs; it is kept; its owner cannot be checked from here
(another pid namespace or boot); it is younger than --older-than."""


@dataclass
class GcResult:
    swept: list[Swept] = field(default_factory=list)
    left: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in LEFT_ALONE})
    """Reason (one of LEFT_ALONE) -> run ids."""


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


def _docker_time(raw: str) -> float | None:
    """`2026-12-01 23:15:17 +0000 UTC` (docker's CreatedAt) -> epoch seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)? ([+-]\d{4})", raw.strip())
    if not m:
        return None
    return dt.datetime.strptime(f"{m.group(1)} {m.group(2)}", "%Y-%m-%d %H:%M:%S %z").timestamp()


def _process_started(pid: int) -> float | None:
    from harness.procs import process_start_ticks

    ticks = process_start_ticks(pid)
    try:
        btime = next(float(line.split()[1]) for line in
                     Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    return None if ticks is None else btime + ticks / os.sysconf("SC_CLK_TCK")


def docker_leftovers() -> dict[str, list[tuple[str, str]]]:
    """Run id -> the ("container" | "network", name) items labelled with it (kind's node
    containers count for their labelled network's run)."""
    return {rid: t.docker for rid, t in _collect(None).items() if t.docker}


def _collect(runs_dir: Path | None) -> dict[str, RunTrace]:
    traces: dict[str, RunTrace] = {}

    def trace(rid: str) -> RunTrace:
        return traces.setdefault(rid, RunTrace(rid))

    if runs_dir is not None and runs_dir.is_dir():
        for d in runs_dir.iterdir():
            if d.is_dir():
                t = trace(d.name)
                t.folder = d
                t.kept |= (d / KEPT_FILE).exists()
                t.created.append(d.stat().st_mtime)
                owner = _owner_of(d)
                if owner:
                    t.owners.add(owner)
    for pid, env in drill_processes():
        t = trace(env[RUN_ID_ENV])
        t.pids.append(pid)
        if env.get(OWNER_ENV):
            t.owners.add(env[OWNER_ENV])
        started = _process_started(pid)
        if started is not None:
            t.created.append(started)
    labels = "".join(f'\t{{{{.Label "{k}"}}}}' for k in (RUN_ID_LABEL, OWNER_LABEL, KEEP_LABEL))
    rows = [("container", line) for line in (_docker(
        "ps", "-a", "--filter", f"label={RUN_ID_LABEL}", "--format",
        "{{.Names}}" + labels + "\t{{.CreatedAt}}") or "").splitlines()]
    rows += [("network", line) for line in (_docker(
        "network", "ls", "--filter", f"label={RUN_ID_LABEL}", "--format",
        "{{.Name}}" + labels + "\t{{.CreatedAt}}") or "").splitlines()]
    for kind, line in rows:
        name, rid, owner, keep, created = [*line.split("\t"), "", "", "", ""][:5]
        if not (name and rid):
            continue
        t = trace(rid)
        if owner:
            t.owners.add(owner)
        t.kept |= keep not in ("", "<no value>")
        stamp = _docker_time(created)
        if stamp is not None:
            t.created.append(stamp)
        if kind == "network":
            # kind's node containers carry no label of ours: they count for their network's run
            attached = _docker("ps", "-a", "--filter", f"network={name}", "--format",
                               "{{.Names}}") or ""
            t.docker += [("container", c) for c in attached.split()
                         if ("container", c) not in t.docker]
        if (kind, name) not in t.docker:
            t.docker.append((kind, name))
    return traces


def run_processes() -> tuple[dict[str, list[int]], set[str]]:
    """(run id -> pids carrying DRDRILL_RUN_ID, run ids whose owning harness is alive)."""
    found: dict[str, list[int]] = {}
    live: set[str] = set()
    for pid, env in drill_processes():
        rid = env[RUN_ID_ENV]
        found.setdefault(rid, []).append(pid)
        if token_liveness(env.get(OWNER_ENV, "")) == "alive":
            live.add(rid)
    return found, live


def remove_docker(items: list[tuple[str, str]]) -> list[str]:
    """Containers first (with their anonymous volumes), then the networks they were on;
    -> what Docker refused to remove (`container <name>` / `network <name>`)."""
    failed = [f"container {name}" for kind, name in items
              if kind == "container" and _docker("rm", "-f", "-v", name) is None]
    failed += [f"network {name}" for kind, name in items
               if kind == "network" and _docker("network", "rm", name) is None]
    return failed


def _running(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2:].split()[0] != "Z"


def gc(runs_dir: Path, *, older_than_s: float | None = None, run_id: str | None = None,
       dry_run: bool = False, include_kept: bool = False) -> GcResult:
    """Sweep runs whose owner is provably gone (or, with `older_than_s`, that are stale)."""
    traces = _collect(runs_dir)
    ids = [run_id] if run_id else sorted(traces)
    result = GcResult()
    for rid in ids:
        t = traces.get(rid)
        if t is None:
            continue
        state = t.liveness
        age = t.age_s
        if state == "alive":
            result.left["alive"].append(rid)
            continue
        if t.kept and not (run_id or include_kept):
            result.left["kept"].append(rid)
            continue
        if older_than_s is not None and (age is None or age < older_than_s):
            result.left["young"].append(rid)
            continue
        if state == "unknown" and older_than_s is None and not run_id:
            result.left["unknown"].append(rid)
            continue
        failed: list[str] = []
        if not dry_run:
            failed = remove_docker(t.docker)
            for pid in t.pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 2.0  # SIGKILL is not instant: give the kernel a moment
            while any(_running(pid) for pid in t.pids) and time.monotonic() < deadline:
                time.sleep(0.05)
            failed += [f"process {pid}" for pid in t.pids if _running(pid)]
            if t.folder is not None:
                shutil.rmtree(t.folder, ignore_errors=True)
                if t.folder.exists():
                    failed.append(f"folder {t.folder}")
        result.swept.append(Swept(rid, tuple(t.pids), str(t.folder) if t.folder else None,
                                  tuple(f"{kind} {name}" for kind, name in t.docker
                                        if f"{kind} {name}" not in failed), tuple(failed)))
    return result
