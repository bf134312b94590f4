"""`python -m tests.integration.reaper OUT CMD...`: run CMD as a child subreaper and judge, from
outside the harness, what CMD's process tree leaves behind.

Linux re-parents an orphan to its nearest subreaper ancestor, so every process CMD starts, however
deep and even after its parent died or started a new session, stays a descendant of this process.
While CMD runs, the tree is sampled (pid, start time, argv, and every TCP port it listens on);
when CMD has exited, whatever of the tree still runs after a short grace is a leftover. This
asks neither drdrill nor its environment-variable finder (`drdrill gc`) anything.

OUT gets JSON: `{"pid", "rc", "seen": [...], "ports": [...], "left": [...]}`. The first line on
stdout is `reaper: drill pid N`. With REAPER_KEEP=1 leftovers are left running (a kill -9 row
hands them to `drdrill gc`); otherwise they are killed so the machine stays clean.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 3.0


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, start time in clock ticks) of a live, non-zombie process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[19])


def _argv(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()[:200]
    return ""


def descendants(root: int) -> dict[int, int]:
    """pid -> start time of every live process below `root`."""
    parent: dict[int, int] = {}
    start: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                parent[int(entry.name)], start[int(entry.name)] = st
    out: dict[int, int] = {}
    frontier = [root]
    while frontier:
        nxt = [p for p, pp in parent.items() if pp in frontier and p not in out]
        for p in nxt:
            out[p] = start[p]
        frontier = nxt
    return out


def _listening(pids: set[int]) -> set[int]:
    inodes: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = str(fd.readlink())
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    proc = subprocess.Popen(argv[1:])
    with contextlib.suppress(OSError):
        print(f"reaper: drill pid {proc.pid}", flush=True)
    me = os.getpid()
    seen: dict[int, tuple[int, str]] = {}
    ports: set[int] = set()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            tree = descendants(me)
            for pid, start in tree.items():
                if pid not in seen:
                    seen[pid] = (start, _argv(pid))
            ports.update(_listening(set(tree)))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rc = proc.wait()
    deadline = time.monotonic() + GRACE_S
    left: dict[int, int] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:  # reap re-parented orphans that ended
                pass
        left = descendants(me)
        if not left:
            break
        time.sleep(0.1)
    done.set()
    sampler.join()
    report = {"pid": proc.pid, "rc": rc,
              "seen": [{"pid": p, "start": s, "argv": a} for p, (s, a) in sorted(seen.items())],
              "ports": sorted(ports),
              "left": [{"pid": p, "start": s, "argv": seen.get(p, (s, _argv(p)))[1]}
                       for p, s in sorted(left.items())]}
    out.write_text(json.dumps(report, indent=1))
    if left and os.environ.get("REAPER_KEEP") != "1":
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, 0)[0] > 0:
                pass
    return 128 - rc if rc < 0 else rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
