"""What a user would run instead of drdrill, started next to it and timed where they print:
`kubectl wait` (the hand-written baseline), `flux get --watch` (a stream) and the 2 s poll of
the flux CLI's waits (`flux resume` waits like `flux reconcile` does, without triggering one)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.procs import Supervisor

FLUX_POLL_S = 2.0
"""rootArgs.pollInterval of the flux CLI v2.9.2 (cmd/flux/main.go): reconcile/resume waits."""
FLUX_CHECK_POLL_S = 5.0
"""`flux check --poll-interval` default (cmd/flux/check.go)."""


@dataclass(frozen=True)
class Peer:
    name: str
    out: Path
    """The stamp file (JSON lines from harness.bench.stamp)."""

    def stamps(self) -> list[dict[str, Any]]:
        return read_stamps(self.out)


def start_peer(sup: Supervisor, name: str, commands: Sequence[Sequence[str]], out: Path,
               env: Mapping[str, str]) -> Peer:
    """Start `commands` one after another under the stamper, as a child of `sup`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    sup.start(name, [sys.executable, "-m", "harness.bench.stamp", str(out), "--",
                     *(json.dumps(list(c)) for c in commands)], env=env)
    return Peer(name, out)


def read_stamps(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by SIGTERM
    return out


def exit_of(stamps: Sequence[Mapping[str, Any]]) -> tuple[float, int] | None:
    """(time, rc) of the last command's exit, or None if it never exited (it was stopped)."""
    exits = [s for s in stamps if "exit" in s]
    starts = [s for s in stamps if "start" in s]
    if not exits:
        return None
    last = exits[-1]
    # The stamper stops at the first failing command; otherwise every command must have exited.
    if last["exit"] != 0 or len(exits) == len(starts):
        return float(last["t"]), int(last["exit"])
    return None


_MET = re.compile(r"^(?P<res>[\w.-]+)/(?P<name>[\w.-]+) condition met$")


def kubectl_met(stamps: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """name -> when `kubectl wait` printed "<resource>/<name> condition met"."""
    out: dict[str, float] = {}
    for s in stamps:
        m = _MET.match(str(s.get("line", "")).strip())
        if m:
            out.setdefault(m["name"], float(s["t"]))
    return out


def flux_watch_ready(stamps: Sequence[Mapping[str, Any]], revision: str) -> dict[str, float]:
    """`namespace/name` -> when `flux get kustomizations -A --watch` first printed its row with
    READY True at `revision` (columns NAMESPACE NAME REVISION SUSPENDED READY MESSAGE; the
    CLI shortens the SHA, so a prefix of it matches)."""
    sha = revision.rsplit(":", 1)[-1]
    out: dict[str, float] = {}
    for s in stamps:
        cols = str(s.get("line", "")).split()
        if len(cols) < 5 or cols[0] == "NAMESPACE":
            continue
        ns, name, rev, ready = cols[0], cols[1], cols[2], cols[4]
        shown = rev.rsplit(":", 1)[-1]
        if ready == "True" and len(shown) >= 7 and sha.startswith(shown):
            out.setdefault(f"{ns}/{name}", float(s["t"]))
    return out
